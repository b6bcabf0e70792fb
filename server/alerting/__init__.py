"""Alerts and people: the alert state machine, paging, escalation, live updates, the 1-3-5 report
and weekly summary, and the words people read (wording: Beijing time, page text, Chinese names).

May import: server.access, server.core, protocol.
"""

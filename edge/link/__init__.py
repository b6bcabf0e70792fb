"""Reaching the server: the durable outbox, the MQTT v5 link and the SMS fallback.

May import: edge.config, protocol.
"""

"""Talking to nodes: the one MQTT client factory, ingest, commands, the private broker and its
supervisor.

May import: server.fleet, server.alerting, server.access, server.core, protocol.
"""

"""Reaching the server: the durable outbox, the one MQTT client factory (diag uses it too), the
MQTT v5 link and the SMS fallback.

May import: edge.config, protocol.
"""

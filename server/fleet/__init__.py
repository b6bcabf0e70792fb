"""The nodes as a fleet: heartbeat watch, health history, model rollout and the learning dataset.

May import: server.alerting, server.access, server.core, protocol.
"""

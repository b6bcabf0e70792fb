"""Running and looking after the node: remote commands, heartbeat health, diagnostics, preview,
systemd notify.

May import: edge.link, edge.site, edge.warning, edge.rules, edge.vision, edge.camera,
edge.config, protocol.
"""

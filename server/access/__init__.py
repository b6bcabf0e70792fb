"""Who may do what: accounts and sessions, signed acknowledge links, grid scope, the registry.

May import: server.core, protocol.
"""

"""The server's ground floor: the ServerError root, config, secret checks, address checks,
database models and migrations, clock, metrics.

May import: protocol. Nothing else of server.
"""

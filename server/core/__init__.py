"""The server's ground floor: config, secret checks, address checks, database models and
migrations, clock, metrics.

May import: protocol. Nothing else of server.
"""

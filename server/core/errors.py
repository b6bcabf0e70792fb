"""The server's one error root: each error it raises on purpose is a ServerError and a builtin."""

from __future__ import annotations


class ServerError(Exception):
    """Root of every server error; each subclass also derives from the matching builtin
    (ValueError, RuntimeError, …), and server/cli.py catches it once: message, exit 2."""

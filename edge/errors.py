"""The node's one error root: every error edge raises on purpose derives from EdgeError.

Like gpiozero's exc.py, each error also derives from the matching builtin (ValueError for
bad input, RuntimeError for a device or model that fails), so callers may catch either.
Imports nothing, so every edge layer (config included) may import it.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of the node's own errors; pondwatch-edge prints the message and exits 2."""

"""Deciding: the rule engine that turns tracked people in zones into events, and the per-frame
pipeline.

May import: edge.vision, edge.camera, edge.config, protocol.
"""

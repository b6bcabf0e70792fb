"""Seeing people: the detector seam, tracking, detection windows, zones and stature geometry,
motion and background gates, snapshots.

May import: edge.config, protocol. Never rules, site, link, ops, model or the root wiring.
"""

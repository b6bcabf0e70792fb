"""The node's eyes: frame sources (picamera2, OpenCV, files) and the camera's own health.

May import: edge.config, protocol. Nothing else of edge.
"""

"""The pond's own kit and view: kit (lifebuoy, sign, rope, poles) checks, enrolment, and the site
watch.

May import: edge.camera, edge.vision, edge.config, protocol.
"""

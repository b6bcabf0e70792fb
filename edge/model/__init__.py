"""The model lifecycle: the model store (fetch, verify, describe), export, train, eval, push and
deploy; the manifest schema and look-ups are edge.manifest's.

May import: edge.vision, edge.config, edge.manifest, protocol.
"""

"""The model lifecycle: the model store and manifest, fetch, export, train, eval, push and deploy.

May import: edge.vision, edge.config, protocol.
"""

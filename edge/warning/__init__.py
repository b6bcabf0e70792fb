"""Warning on the spot: horn, voice and light through gpiozero and the sound card.

May import: edge.config, protocol.
"""

"""PondWatch edge node: camera, detection, rules, outbox and MQTT link on a Raspberry Pi."""

__version__ = "0.1.0"

"""PondWatch edge node: camera, detection, rules, outbox and MQTT link on a Raspberry Pi.

Layers, bottom to top (each may import only the ones below it; see pyproject's
import-linter contracts): errors (EdgeError, importable by every layer); manifest; config;
camera, vision; rules; site, link, warning; ops, model; service, replay; cli.
"""

__version__ = "0.1.0"

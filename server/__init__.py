"""PondWatch server: MQTT ingest, alerts, paging, web UI and HTTP API.

Layers, bottom to top (each may import only the ones below it; see pyproject's
import-linter contracts): core; access; alerting; fleet; link; api; and at the root the
wiring: services, app, runner, cli.
"""

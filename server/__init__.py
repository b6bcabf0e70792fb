"""PondWatch server: MQTT ingest, alerts, paging, web UI and HTTP API."""

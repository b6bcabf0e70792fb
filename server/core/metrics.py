"""Prometheus metrics of one server instance, in its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Counters and gauges the ingest, alert and paging parts update."""

    def __init__(self) -> None:
        """Create every metric in a fresh registry (several servers may share a process)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("pondwatch_ingest_messages_total", "MQTT messages taken in.",
                                ["kind"], registry=r)
        self.rejected = Counter("pondwatch_ingest_rejected_total",
                                "MQTT messages rejected, by reason.", ["reason"], registry=r)
        self.duplicates = Counter("pondwatch_ingest_duplicates_total",
                                  "Events received again (same id).", registry=r)
        self.events = Counter("pondwatch_events_total", "Events stored.", ["type"], registry=r)
        self.queue_depth = Gauge("pondwatch_ingest_queue_depth", "Messages waiting to be written.",
                                 registry=r)
        self.mqtt_connected = Gauge("pondwatch_mqtt_connected", "1 while connected to the broker.",
                                    registry=r)
        self.alerts_opened = Counter("pondwatch_alerts_opened_total", "Alerts opened.", ["kind"],
                                     registry=r)
        self.open_alerts = Gauge("pondwatch_alerts_open", "Alerts not yet resolved.", registry=r)
        self.pages = Counter("pondwatch_pages_total", "Page delivery attempts per channel.",
                             ["channel", "result"], registry=r)
        self.page_latency = Histogram(
            "pondwatch_page_latency_seconds", "Alert opened → page handed to the channel.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r)
        self.escalations = Counter("pondwatch_escalation_steps_total", "Escalation steps fired.",
                                   registry=r)
        self.broker_restarts = Counter("pondwatch_broker_restarts_total",
                                       "Private broker restarts.", registry=r)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

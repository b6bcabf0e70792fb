"""Benchmark the node-to-server link: server ingest vs a bare paho subscriber; outbox commits/s.

Run: .venv/bin/python bench/link.py [--events 2000]
Writes the `link` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from edge.link.outbox import Outbox  # noqa: E402
from protocol import Event, Topics  # noqa: E402
from server.core.config import parse_config  # noqa: E402
from server.core.db import EventRow  # noqa: E402
from server.link.broker import Mosquitto, free_port  # noqa: E402
from server.runner import Server  # noqa: E402

T = Topics()
NODE, POND = "bench-01", "bench-pond"


def bare_subscriber(broker: Mosquitto, n: int) -> tuple[mqtt.Client, threading.Event, list[float]]:
    """A paho v5 subscriber that parses each event's JSON and notes when the n-th arrived."""
    done = threading.Event()
    stamps: list[float] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        json.loads(m.payload)
        stamps.append(time.perf_counter())
        if len(stamps) >= n:
            done.set()
    c.on_message = on_message
    sub = threading.Event()
    c.on_subscribe = lambda *a: sub.set()
    c.connect("127.0.0.1", broker.port)
    c.subscribe(T.event(NODE), qos=1)
    c.loop_start()
    sub.wait(5)
    return c, done, stamps


def publish(broker: Mosquitto, events: list[bytes]) -> float:
    """Publish every event at QoS 1 as fast as the broker takes them; return the start time."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    start = time.perf_counter()
    infos = [c.publish(T.event(NODE), e, qos=1) for e in events]
    for info in infos:
        info.wait_for_publish(30)
    c.loop_stop()
    c.disconnect()
    return start


def ingest_vs_bare(n: int, work: Path) -> dict[str, float]:
    """Both subscribers on one broker in the same run; events/s for each."""
    reg = work / "registry.yaml"
    reg.write_text(yaml.safe_dump({
        "stations": [{"id": "s", "name": "站"}],
        "grids": [{"id": "g", "name": "网格", "station": "s", "constable": "p"}],
        "ponds": [{"id": POND, "name": "塘", "village": "村", "grid": "g", "lat": 0, "lon": 0}],
        "nodes": [{"id": NODE, "pond": POND}],
        "people": [{"id": "p", "name": "人", "role": "constable", "notify": []}],
    }, allow_unicode=True))
    events = [Event.make("person_near_water", NODE, POND, track_id=i).to_wire() for i in range(n)]
    payloads = [json.dumps(e).encode() for e in events]
    with Mosquitto(data_dir=work / "mq") as broker:
        port = free_port()
        cfg = parse_config({"environment": "dev", "secret_key": "bench-secret-0123456789",
                            "database": f"sqlite:///{work / 'server.db'}",
                            "mqtt": {"url": broker.url}, "registry": str(reg),
                            "http": {"bind": f"127.0.0.1:{port}"}})
        with Server(cfg) as srv:
            assert srv.services.ingest and srv.services.ingest.connected.wait(10)
            bare, bare_done, stamps = bare_subscriber(broker, n)
            start = publish(broker, payloads)
            bare_done.wait(120)
            bare_s = stamps[-1] - start
            while True:
                with srv.services.sessions() as s:
                    count = s.scalar(select(func.count()).select_from(EventRow)) or 0
                if count >= n:
                    break
                time.sleep(0.01)
            server_s = time.perf_counter() - start
            bare.loop_stop()
    return {"bare_eps": n / bare_s, "server_eps": n / server_s}


def outbox_commits(n: int, work: Path) -> dict[str, float]:
    """Outbox puts per second with synchronous=FULL (as shipped) and NORMAL, same run."""
    out: dict[str, float] = {}
    for mode in ("FULL", "NORMAL"):
        box = Outbox(work / f"outbox-{mode}.db")
        box._db.execute(f"PRAGMA synchronous={mode}")
        evs = [Event.make("child_near_water", NODE, POND, track_id=i) for i in range(n)]
        t0 = time.perf_counter()
        for ev in evs:
            box.put(ev)
        out[mode] = n / (time.perf_counter() - t0)
        box.close()
    return out


def main() -> int:
    """Run both measurements and record them."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        link = ingest_vs_bare(args.events, work)
        box = outbox_commits(args.events, work)
    ratio = link["server_eps"] / link["bare_eps"]
    print(f"bare paho subscriber: {link['bare_eps']:.0f} events/s")
    print(f"server ingest (commit + ack to node): {link['server_eps']:.0f} events/s "
          f"(ratio {ratio:.2f})")
    print(f"outbox FULL: {box['FULL']:.0f} commits/s, NORMAL: {box['NORMAL']:.0f} commits/s "
          f"(FULL/NORMAL {box['FULL'] / box['NORMAL']:.2f})")
    write_section("link", f"""Script: `bench/link.py --events {args.events}`

| measurement | events/s | ratio |
| --- | --- | --- |
| bare paho v5 subscriber (JSON parse only), same broker, same run | {link['bare_eps']:.0f} | 1.00 |
| server ingest: validate, commit (SQLite WAL), MQTT ack, node ack | {link['server_eps']:.0f} \
| {ratio:.2f} |
| node outbox put, `synchronous=FULL` (as shipped) | {box['FULL']:.0f} \
| {box['FULL'] / box['NORMAL']:.2f} of NORMAL |
| node outbox put, `synchronous=NORMAL` (not shipped, for scale) | {box['NORMAL']:.0f} | 1.00 |

Both subscribers read the same {args.events} QoS 1 events published as fast as Mosquitto takes them;
the server's time ends when its database holds every event. Events are `person_near_water`
(no paging). A Raspberry Pi's SD card commits far slower than this machine's disk: measure on the Pi
before relying on the outbox figure there.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())

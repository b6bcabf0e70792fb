"""Benchmark: event published → first page handed to a json:// receiver, p50/p99.

Runs, side by side in one process: a bare Apprise json:// post to the same receiver (the
floor), one alert at a time through the whole server (MQTT → ingest → DB → escalation →
Apprise), and 1,000 alerts raised at once at 1,000 ponds. Writes docs/benchmarks.md.

    .venv/bin/python bench/paging.py [--burst 1000] [--single 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 2000  # event → first page; tests/server/test_walking_skeleton.py only waits for it
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.report import write_section  # noqa: E402
from protocol.payloads import Event, encode  # noqa: E402
from protocol.topics import Topics  # noqa: E402
from server.alerting.paging import apprise_send  # noqa: E402
from server.core.config import parse_config  # noqa: E402
from server.core.db import Alert, EventRow  # noqa: E402
from server.link.broker import Mosquitto, free_port  # noqa: E402
from server.runner import Server  # noqa: E402


class Receiver:
    """Records the arrival time of each page by the pond id in its path."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.cond:
                    outer.arrived.setdefault(self.path.strip("/"), time.perf_counter())
                    outer.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]

    def wait(self, keys: set[str], timeout: float) -> None:
        end = time.monotonic() + timeout
        with self.cond:
            while not keys <= self.arrived.keys():
                if not self.cond.wait(max(0.0, end - time.monotonic())) and \
                        time.monotonic() > end:
                    raise TimeoutError(f"{len(keys - self.arrived.keys())} pages missing")


def registry(n: int, port: int) -> str:
    """n ponds, each in its own grid whose constable pages to /p{i}."""
    lines = ["stations:", "  - {id: st, name: 站, duty_desk: [], area_officers: []}", "grids:"]
    lines += [f"  - {{id: g{i}, name: 网格{i}, station: st, constable: c{i}}}" for i in range(n)]
    lines.append("ponds:")
    lines += [f"  - {{id: p{i}, name: 塘{i}, village: 村, grid: g{i}}}" for i in range(n)]
    lines.append("nodes:")
    lines += [f"  - {{id: n{i}, pond: p{i}}}" for i in range(n)]
    lines.append("people:")
    lines += [f"  - {{id: c{i}, name: 警{i}, role: constable, "
              f"notify: ['json://127.0.0.1:{port}/p{i}']}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) in milliseconds."""
    s = sorted(values)
    return 1000 * s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    """Run the three measurements and record them."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--single", type=int, default=30)
    ap.add_argument("--workers", type=int, default=8, help="paging_workers")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rx = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-"))

    apprise_send(f"json://127.0.0.1:{rx.port}/warmup", "t", "m", None)  # load the plugin once
    bare = []
    for i in range(args.single):
        t0 = time.perf_counter()
        apprise_send(f"json://127.0.0.1:{rx.port}/bare{i}", "t", "m", None)
        rx.wait({f"bare{i}"}, 10)
        bare.append(rx.arrived[f"bare{i}"] - t0)

    n = max(args.burst, args.single)
    (tmp / "registry.yaml").write_text(registry(n, rx.port), encoding="utf-8")
    results: dict[str, list[float]] = {}
    wall = ingest_s = 0.0
    with Mosquitto(data_dir=tmp / "mq") as broker:
        port = free_port()
        cfg = parse_config({
            "environment": "dev", "secret_key": "bench-secret-key-0123456789",
            "database": f"sqlite:///{tmp / 'server.db'}", "mqtt": {"url": broker.url},
            "http": {"bind": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
            "registry": str(tmp / "registry.yaml"), "paging_workers": args.workers})
        topics = Topics()
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-node",
                          protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        with Server(cfg) as srv:
            assert srv.services.ingest and srv.services.ingest.connected.wait(10)
            single = []
            for i in range(args.single):  # one alert at a time
                ev = Event.make("sos", f"n{i}", f"p{i}")
                t0 = time.perf_counter()
                pub.publish(topics.event(f"n{i}"), encode(ev), qos=1)
                rx.wait({f"p{i}"}, 10)
                single.append(rx.arrived[f"p{i}"] - t0)
            results["single"] = single
            with srv.services.sessions() as s, s.begin():  # stop their escalation
                for a in s.scalars(select(Alert)):
                    a.state, a.next_step_at = "resolved", None
            with rx.cond:
                rx.arrived.clear()
            sent: dict[str, float] = {}
            t_start = time.perf_counter()
            for i in range(args.burst):
                ev = Event.make("person_in_water", f"n{i}", f"p{i}")
                sent[f"p{i}"] = time.perf_counter()
                pub.publish(topics.event(f"n{i}"), encode(ev), qos=1)
            want = args.single + args.burst
            while True:  # poll until the whole burst is committed
                with srv.services.sessions() as s:
                    if s.scalar(select(func.count()).select_from(EventRow)) >= want:
                        break
                time.sleep(0.01)
            ingest_s = time.perf_counter() - t_start
            rx.wait(set(sent), 300)
            wall = time.perf_counter() - t_start
            results["burst"] = [rx.arrived[k] - t for k, t in sent.items()]
        pub.disconnect()
        pub.loop_stop()

    rows = [("bare Apprise json:// post (floor)", bare),
            ("one alert: event → first page", results["single"]),
            (f"{args.burst} alerts at once: event → first page", results["burst"])]
    floor = statistics.median(bare)
    table = ["| measurement | n | p50 ms | p99 ms | p50 ÷ floor |",
             "| --- | --- | --- | --- | --- |"]
    for name, vals in rows:
        table.append(f"| {name} | {len(vals)} | {pct(vals, 0.5):.1f} | {pct(vals, 0.99):.1f} | "
                     f"{statistics.median(vals) / floor:.1f}× |")
    single_max = max(results["single"]) * 1000
    body = "\n".join(table) + (
        f"\n\nGoal: one alert's event → first page within {GOAL_MS} ms (tests wait for the page,"
        f" this bench times it): slowest of {len(results['single'])} {single_max:.0f} ms, "
        f"{'met' if single_max <= GOAL_MS else 'MISSED'}."
        f"\n\nBurst: {args.burst} pages delivered in {wall:.1f} s "
        f"({args.burst / wall:.0f} pages/s) with paging_workers={args.workers}, SQLite WAL,"
        " local Mosquitto, receiver in the same process;"
        f" the burst's events were all committed after {ingest_s:.2f} s"
        f" ({args.burst / ingest_s:.0f} events/s)."
        "\nThe floor is one Apprise json:// POST to the same local receiver; the server path"
        " adds MQTT, the ingest commit, the escalation claim and the delivery record.\n")
    print(body)
    print(json.dumps({k: [round(v * 1000, 1) for v in vals][:5] for k, vals in results.items()}))
    if not args.no_write:
        write_section("paging", "Script: `bench/paging.py`\n\n" + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

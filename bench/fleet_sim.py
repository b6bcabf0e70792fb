"""Benchmark: a fleet of N simulated nodes against real server process(es).

Every simulated node is a real MQTT v5 client (Last Will, retained status, QoS 1 events,
QoS 0 heartbeats every 30 s carrying interval_s, subscriptions to its ack and cmd topics).
Many paho clients share one selector loop per worker process (client.socket(), loop_read,
loop_write, loop_misc), so 10,000 clients need no thread each. Events go at a set rate, each
to a pond that has no alert yet, and every pond's constable pages a real json:// receiver,
so event → page is measured end to end. Reports ingest rate, event → page p50/p99, server
CPU and RSS, database growth per day and nodes wrongly marked offline (must be 0), and keeps
one row per set-up in docs/benchmarks.md.

    .venv/bin/python bench/fleet_sim.py --nodes 2000 --rate 10 --duration 120
    .venv/bin/python bench/fleet_sim.py --nodes 10000 --replicas 2 --postgres
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from bench.paging import Receiver, pct, registry  # noqa: E402
from bench.report import DOC, write_section  # noqa: E402
from protocol.payloads import Event, Health, Status, encode  # noqa: E402
from protocol.topics import Topics  # noqa: E402
from server.core.db import Alert, Delivery, EventRow, Node  # noqa: E402
from server.link.broker import Mosquitto, free_port  # noqa: E402

SECTION = "Fleet simulation (`bench/fleet_sim.py`)"
T = Topics()


@dataclass(frozen=True)
class Plan:
    """What one worker process simulates."""

    first: int
    count: int
    nodes: int
    port: int
    heartbeat_s: float
    start_at: float  # perf_counter when the measured window opens (events start)
    events: tuple[tuple[float, int], ...]  # (seconds after start_at, node index)
    end_at: float


def _health(now: datetime, interval: float) -> bytes:
    """A heartbeat with the fields a real node sends."""
    return encode(Health(ts=now, version="0.1.0", uptime_s=3600, fps=5.0, inference_ms=180.0,
                         cpu_percent=41.0, temperature_c=52.3, throttled=False,
                         memory_percent=38.0, disk_free_mb=9000, camera="ok", outbox_depth=0,
                         model="person-offline.pt", config_hash="3f2a9c",
                         equipment={"lifebuoy": "present", "pole": "present"},
                         interval_s=interval))


def worker(plan: Plan, out: Any) -> None:
    """Connect plan.count clients and drive them from one selector until plan.end_at."""
    sel = selectors.DefaultSelector()
    clients: list[mqtt.Client] = []
    errors = 0
    for i in range(plan.first, plan.first + plan.count):
        nid = f"n{i}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{nid}",
                        protocol=mqtt.MQTTv5)
        c.will_set(T.status(nid), encode(Status(state="offline", ts=datetime.now(UTC),
                                                version="0.1.0")), qos=1, retain=True)
        c.connect("127.0.0.1", plan.port, keepalive=120)
        c.subscribe([(T.ack(nid), 1), (T.cmd(nid), 1)])
        c.publish(T.status(nid), encode(Status(state="online", ts=datetime.now(UTC),
                                               version="0.1.0")), qos=1, retain=True)
        c.loop_write()
        sock = c.socket()
        assert sock is not None
        sel.register(sock, selectors.EVENT_READ, c)
        clients.append(c)
        if len(clients) % 200 == 0:  # read CONNACKs now and then while connecting
            for key, _ in sel.select(0):
                key.data.loop_read(10)
    n = len(clients)
    # Heartbeats spread evenly over the interval, starting now.
    t0 = time.perf_counter()
    next_hb = [t0 + plan.heartbeat_s * k / n for k in range(n)]
    hb_ptr, sent_hb = 0, 0  # next_hb rises with k, so due heartbeats come round in order
    events, ev_ptr = list(plan.events), 0
    sent: list[tuple[int, float]] = []
    next_misc = t0 + 1.0
    while True:
        now = time.perf_counter()
        if now >= plan.end_at:
            break
        while ev_ptr < len(events) and plan.start_at + events[ev_ptr][0] <= now:
            idx = events[ev_ptr][1]
            c = clients[idx - plan.first]
            ev = Event.make("child_near_water", f"n{idx}", f"p{idx}", track_id=1, zone="bank",
                            stature_m=1.1)
            c.publish(T.event(f"n{idx}"), encode(ev), qos=1)
            c.loop_write()
            sent.append((idx, time.perf_counter()))
            ev_ptr += 1
        for _ in range(n):  # heartbeats due now
            k = hb_ptr
            if next_hb[k] > now:
                break
            next_hb[k] += plan.heartbeat_s
            c = clients[k]
            c.publish(T.health(f"n{plan.first + k}"), _health(datetime.now(UTC),
                                                               plan.heartbeat_s), qos=0)
            c.loop_write()
            sent_hb += 1
            hb_ptr = (hb_ptr + 1) % n
        for key, _ in sel.select(0.02):
            if key.data.loop_read(10) != mqtt.MQTT_ERR_SUCCESS:
                errors += 1
                sel.unregister(key.fileobj)
        if now >= next_misc:
            next_misc = now + 1.0
            for c in clients:
                c.loop_misc()
                if c.want_write():
                    c.loop_write()
    out.put({"sent": sent, "heartbeats": sent_hb, "errors": errors, "clients": n})
    for c in clients:
        c.disconnect()  # clean: no Last Will
        c.loop_write()


def metric(port: int, name: str) -> float:
    """Sum of a Prometheus counter over its labels on one replica."""
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body, re.M))


def db_bytes(url: str, path: Path | None) -> int:
    """Database size: the SQLite file after a checkpoint, or pg_database_size."""
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            if path is not None:  # pages in use once the WAL is folded in (not file sizes)
                c.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
                pages = c.scalar(text("PRAGMA page_count")) or 0
                free = c.scalar(text("PRAGMA freelist_count")) or 0
                return int((pages - free) * (c.scalar(text("PRAGMA page_size")) or 0))
            return int(c.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    finally:
        eng.dispose()


def stages(url: str) -> dict[str, tuple[float, float]]:
    """p50/p99 ms of each step: node → commit, commit → step claimed, claimed → page sent."""
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            rows = c.execute(select(EventRow.ts, EventRow.received_at, Delivery.created_at,
                                    Delivery.sent_at)
                             .join(Alert, Alert.first_event_id == EventRow.id)
                             .join(Delivery, Delivery.alert_id == Alert.id)
                             .where(Delivery.step == 0, Delivery.sent_at.is_not(None))).all()
    finally:
        eng.dispose()
    got: dict[str, list[float]] = {"ingest": [], "escalate": [], "send": []}
    for ts, rec, made, sent in rows:
        for key, a, b in (("ingest", ts, rec), ("escalate", rec, made), ("send", made, sent)):
            got[key].append((b - a).total_seconds())
    return {k: (pct(v, 0.5), pct(v, 0.99)) for k, v in got.items() if v}


def fleet_state(url: str) -> tuple[int, int]:
    """(nodes offline, node_offline alerts) in the database."""
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            off = c.scalar(select(func.count()).select_from(Node).where(Node.state == "offline"))
            tasks = c.scalar(select(func.count()).select_from(Alert)
                             .where(Alert.kind == "node_offline"))
            return int(off or 0), int(tasks or 0)
    finally:
        eng.dispose()


def start_servers(tmp: Path, args: argparse.Namespace, db: str, broker: Mosquitto,
                  reg: Path) -> list[tuple[subprocess.Popen[bytes], int]]:
    """pondwatch-server run, once per replica, sharing ingest when there are several."""
    out = []
    for r in range(args.replicas):
        port = free_port()
        mq: dict[str, Any] = {"url": broker.url}
        if args.replicas > 1:
            mq["shared_group"] = "pondwatch"
        cfg = {"environment": "dev", "secret_key": "bench-secret-key-0123456789",
               "database": db, "mqtt": mq, "registry": str(reg) if r == 0 else None,
               "http": {"bind": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
               "paging_workers": args.workers, "ingest_queue": 20000}
        path = tmp / f"server{r}.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PONDWATCH_MQTT_CLIENT_ID=f"bench-r{r}")
        log = (tmp / f"server{r}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "run", str(path)],
                                cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 600  # the first one imports the whole registry
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()[
                        "mqtt_connected"]:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {r} did not start; see {tmp / f'server{r}.log'}")
            time.sleep(0.5)
        out.append((proc, port))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One fleet run; returns the figures."""
    need = args.nodes + 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="pw-fleet-"))
    rx = Receiver()
    reg = tmp / "registry.yaml"
    reg.write_text(registry(args.nodes, rx.port), encoding="utf-8")
    pg_dir = None
    if args.postgres:
        pg_dir = Path(tempfile.mkdtemp(prefix="pw-fleet-pg-"))  # pg.sh hands it to postgres
        db = subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "start", str(pg_dir)],
                            check=True, capture_output=True, text=True).stdout.strip()
        db_path = None
    else:
        db_path = tmp / "server.db"
        db = f"sqlite:///{db_path}"
    servers: list[tuple[subprocess.Popen[bytes], int]] = []
    with Mosquitto(data_dir=tmp / "mq") as broker:
        try:
            t_setup = time.perf_counter()
            servers = start_servers(tmp, args, db, broker, reg)
            setup_s = time.perf_counter() - t_setup
            procs = [psutil.Process(p.pid) for p, _ in servers]
            wpn = -(-args.nodes // args.procs)
            n_events = int(args.rate * args.duration)
            connect_s = max(20.0, args.nodes / 400)  # time allowed for connecting
            start_at = time.perf_counter() + connect_s + args.heartbeat
            end_at = start_at + args.duration + args.drain
            order = list(range(args.nodes)) * (1 + n_events // max(1, args.nodes))
            schedule = [(k / args.rate, order[k]) for k in range(n_events)]
            out: Any = mp.get_context("fork").Queue()
            workers = []
            for w in range(args.procs):
                first = w * wpn
                count = min(wpn, args.nodes - first)
                mine = tuple((t, i) for t, i in schedule if first <= i < first + count)
                plan = Plan(first, count, args.nodes, broker.port, args.heartbeat, start_at,
                            mine, end_at)
                p = mp.get_context("fork").Process(target=worker, args=(plan, out))
                p.start()
                workers.append(p)
            time.sleep(max(0.0, start_at - time.perf_counter()))
            msgs0 = sum(metric(port, "pondwatch_ingest_messages_total") for _, port in servers)
            cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
            bcpu0 = sum(psutil.Process(broker.pid or 0).cpu_times()[:2])
            size0, w0 = db_bytes(db, db_path), time.perf_counter()
            rss = [0] * len(procs)
            while time.perf_counter() < start_at + args.duration:
                rss = [max(r, p.memory_info().rss) for r, p in zip(rss, procs, strict=True)]
                time.sleep(1.0)
            window = time.perf_counter() - w0
            msgs1 = sum(metric(port, "pondwatch_ingest_messages_total") for _, port in servers)
            cpu = [(sum(p.cpu_times()[:2]) - c0) / window for p, c0 in zip(procs, cpu0,
                                                                            strict=True)]
            bcpu = (sum(psutil.Process(broker.pid or 0).cpu_times()[:2]) - bcpu0) / window
            size1 = db_bytes(db, db_path)
            results = [out.get(timeout=args.drain + 120) for _ in workers]
            for p in workers:
                p.join(30)
            firsts: dict[int, float] = {}
            for r in results:
                for idx, t in r["sent"]:
                    firsts.setdefault(idx, t)
            try:
                rx.wait({f"p{i}" for i in firsts}, 60)
            except TimeoutError as exc:
                print(f"warning: {exc}", file=sys.stderr)
            lat = [rx.arrived[f"p{i}"] - t for i, t in firsts.items() if f"p{i}" in rx.arrived]
            offline, tasks = fleet_state(db)
            steps = stages(db)
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(30)
            if pg_dir is not None:
                subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "stop", str(pg_dir)],
                               check=False)
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "nodes": args.nodes, "rate": args.rate, "replicas": args.replicas,
        "db": "PostgreSQL" if args.postgres else "SQLite", "duration": round(window),
        "ingest": (msgs1 - msgs0) / window,
        "offered": args.nodes / args.heartbeat + args.rate,
        "pages": len(lat), "events": len(firsts),
        "p50": pct(lat, 0.5) if lat else float("nan"),
        "p99": pct(lat, 0.99) if lat else float("nan"),
        "cpu": cpu, "rss": [r / 2**20 for r in rss], "broker_cpu": bcpu,
        "growth_mb_day": (size1 - size0) / window * 86400 / 2**20,
        "offline": offline, "tasks": tasks, "setup_s": setup_s,
        "errors": sum(r["errors"] for r in results),
        "clients": sum(r["clients"] for r in results),
        "stages": steps, "load": load_before,
        "slowest": [round(x * 1000) for x in sorted(lat)[-5:]],
        "median_ms": statistics.median(lat) * 1000 if lat else 0,
    }


def row(r: dict[str, Any]) -> str:
    """One markdown table row."""
    cpu = " + ".join(f"{c * 100:.0f}%" for c in r["cpu"])
    rss = " + ".join(f"{m:.0f}" for m in r["rss"])
    return (f"| {r['nodes']:,} | {r['rate']:g} | {r['replicas']} | {r['db']} | "
            f"{r['ingest']:.0f} / {r['offered']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} | "
            f"{r['pages']}/{r['events']} | {cpu} | {rss} | {r['broker_cpu'] * 100:.0f}% | "
            f"{r['growth_mb_day']:.0f} | {r['offline']} | {r['duration']} | "
            f"{r['load'][0]:.1f} |")


HEAD = ("| nodes | events/s | replicas | database | ingest msg/s (measured / offered) | "
        "event→page p50 ms | p99 ms | pages/events | server CPU (of one core) | "
        "server RSS MiB | broker CPU | DB growth MB/day | wrongly offline | window s | "
        "load avg before |\n" + "| --- " * 15 + "|")


def record(r: dict[str, Any]) -> None:
    """Replace this set-up's row in docs/benchmarks.md, keeping the others."""
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    m = re.search(rf"<!-- bench:{re.escape(SECTION)} -->(.*?)<!-- /bench", old, re.S)
    rows = [ln for ln in (m.group(1) if m else "").splitlines()
            if ln.startswith("| ") and not ln.startswith(("| nodes", "| ---"))]
    key = row(r).split("|")[1:5]
    rows = [ln for ln in rows if ln.split("|")[1:5] != key] + [row(r)]
    rows.sort(key=lambda ln: (int(ln.split("|")[1].strip().replace(",", "")), ln))
    notes = m.group(1).split("<!-- notes -->", 1)[1] if m and "<!-- notes -->" in m.group(1) \
        else ""
    write_section(SECTION, "Script: `bench/fleet_sim.py` (one row per set-up, the latest run "
                  "of each).\n\n" + HEAD + "\n" + "\n".join(rows) + "\n\n<!-- notes -->"
                  + notes)


def main() -> int:
    """Parse arguments, run once, print and record."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--rate", type=float, default=10.0, help="events per second, fleet-wide")
    ap.add_argument("--duration", type=float, default=120.0, help="measured window, s")
    ap.add_argument("--heartbeat", type=float, default=30.0, help="heartbeat interval, s")
    ap.add_argument("--drain", type=float, default=15.0, help="s after the window for pages")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL cluster")
    ap.add_argument("--procs", type=int, default=0, help="client worker processes")
    ap.add_argument("--workers", type=int, default=8, help="paging_workers")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, DB)")
    args = ap.parse_args()
    args.procs = args.procs or max(1, min(4, -(-args.nodes // 2500)))
    r = run(args)
    print(HEAD + "\n" + row(r))
    print(f"setup {r['setup_s']:.0f} s, clients {r['clients']}, client errors {r['errors']}, "
          f"node_offline tasks {r['tasks']}, slowest pages ms {r['slowest']}")
    print("stages p50/p99 ms (UTC timestamps in the database, not comparable below 1 ms): "
          + ", ".join(f"{k} {a:.0f}/{b:.0f}" for k, (a, b) in r["stages"].items()))
    if not args.no_write:
        record(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())

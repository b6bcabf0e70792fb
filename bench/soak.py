#!/usr/bin/env python3
"""Soak: `pondwatch-edge run` on a looped real clip while the broker is killed every "hour".

A real Mosquitto (SIGKILLed and restarted, persistence on), the real server (SQLite) acking
what it stores, and the node as its own process (`python -m edge.cli run`) on the ONNX run
time, playing child_to_bank looped N times as one file. Every `--hour-s` real seconds stands
for an hour: the broker is killed and comes back after `--outage-s`. The node's RSS, CPU
share, open files, threads, outbox depth and file size are sampled at the start and the end
(and every simulated hour); events per hour are counted from the node's own log; at the end
every event id the node logged must be in the server's database (0 lost).

The node's file source plays at the clip's own rate (edge/service.py: no faster-than-real-time
mode), so the soak runs in real time: 10x is not possible without changing the node.

    nice -n 10 .venv/bin/python bench/soak.py --loops 30 --hour-s 60 [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START, END = "<!-- bench:soak:start -->", "<!-- bench:soak:end -->"
EVENT_LINE = re.compile(r"edge\.service: event (\S+) ([0-9a-f]{32})")


def looped_clip(src: Path, out: Path, loops: int) -> float:
    """Write src repeated `loops` times as one file; its length in seconds."""
    import cv2
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 5.0
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for _ in range(loops):
        for f in frames:
            vw.write(f)
    vw.release()
    return loops * len(frames) / fps


def sample(pid: int, outbox: Path, t0: float, cpu0: float) -> dict[str, Any]:
    """RSS, CPU share since (t0, cpu0), open files, threads and outbox of the node now."""
    status = Path(f"/proc/{pid}/status").read_text()
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / tick
    now = time.monotonic()
    depth = None
    if outbox.exists():
        with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if "outbox" in names:
                depth = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    size = sum(p.stat().st_size for p in outbox.parent.glob(outbox.name + "*"))
    return {"t": round(now - t0, 1), "cpu_s": cpu,
            "cpu_pct": round(100 * (cpu - cpu0) / max(now - t0, 1e-6), 1),
            "rss_mb": round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1),  # type: ignore[union-attr]
            "threads": int(re.search(r"Threads:\s+(\d+)", status).group(1)),  # type: ignore[union-attr]
            "open_files": len(os.listdir(f"/proc/{pid}/fd")),
            "outbox_depth": depth, "outbox_kb": round(size / 1024, 1)}


def server_ids(db: Path) -> set[str]:
    """Event ids the server stored."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return {r[0] for r in c.execute("SELECT id FROM events")}


def main() -> int:
    """Run the soak; print (and with --write record) the report."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--loops", type=int, default=30, help="times the clip is played")
    ap.add_argument("--hour-s", type=float, default=60.0, help="real seconds per simulated hour")
    ap.add_argument("--outage-s", type=float, default=10.0, help="broker down this long")
    ap.add_argument("--model", default="build/exports/person-offline.onnx")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import yaml

    from bench.land_set import scenes_dir
    from server.core.config import parse_config
    from server.link.broker import Mosquitto, free_port
    from server.runner import Server
    from tests.e2e.test_link_faults import server_dict

    work = Path(tempfile.mkdtemp(prefix="pw-soak-"))
    scenes = scenes_dir()
    length = looped_clip(scenes / "child_to_bank.mp4", work / "loop.mp4", args.loops)
    port = free_port()
    broker = Mosquitto(port=port, data_dir=work / "mq").start()
    raw_server = server_dict(work, broker.url)
    server = Server(parse_config(raw_server)).start()
    raw = yaml.safe_load((scenes / "child_to_bank.yaml").read_text())
    raw.update(node_id="heyuan-01", pond_id="heyuan-shantang", equipment=[],
               outbox=str(work / "outbox.db"))
    raw["camera"]["source"] = str(work / "loop.mp4")
    raw["model"]["path"] = str(ROOT / args.model)
    raw["mqtt"] = {"url": broker.url, "keepalive_s": 5}
    raw["health"] = {"interval_s": 30}
    (work / "node.yaml").write_text(yaml.safe_dump(raw))
    log_path = work / "node.log"
    from bench.footprint import unit_env
    env = {**os.environ, "PONDWATCH_MQTT_PASSWORD": "unused", "OMP_NUM_THREADS": "1",
           **unit_env()}
    with log_path.open("w") as log_file:
        node = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(work / "node.yaml")],
                                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    t0 = time.monotonic()
    time.sleep(20)                      # model loaded, first frames through
    first = sample(node.pid, work / "outbox.db", t0, 0.0)
    samples, outages, hours_at = [first], 0, [datetime.now()]
    hourly = [first]
    next_kill = time.monotonic() + args.hour_s
    try:
        while node.poll() is None:
            if time.monotonic() >= next_kill and time.monotonic() - t0 < length:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError, AttributeError):
                    hourly.append(sample(node.pid, work / "outbox.db", t0, 0.0))
                broker.kill()
                outages += 1
                hours_at.append(datetime.now())
                time.sleep(args.outage_s)
                broker = Mosquitto(port=port, data_dir=work / "mq").start()
                next_kill += args.hour_s
            # the node may exit between poll and sample
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, AttributeError):
                samples.append(sample(node.pid, work / "outbox.db", t0, 0.0))
            if time.monotonic() - t0 > length + 300:
                node.terminate()
                break
            time.sleep(1.0)
    finally:
        if node.poll() is None:
            node.terminate()
        node.wait(30)
    wall = time.monotonic() - t0
    text = log_path.read_text()
    emitted = [(m.group(1), m.group(2)) for m in EVENT_LINE.finditer(text)]
    stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
              for m in re.finditer(r"^(\S+ \S+),\d+ \S+ edge\.service: event ", text, re.M)]
    per_hour = [sum(1 for s in stamps if a <= s < b)
                for a, b in zip(hours_at, [*hours_at[1:], datetime.max], strict=True)]
    time.sleep(2)
    stored = server_ids(work / "server.db")
    lost = sorted(i for _, i in emitted if i not in stored)
    server.stop()
    broker.stop()
    hours = max(1, outages)
    # the end: the last sample while the clip still played (not the node shutting down)
    last = [x for x in samples if x["t"] <= length - 2][-1]
    cpu_share = round(100 * (last["cpu_s"] - first["cpu_s"]) / max(last["t"] - first["t"], 1), 1)
    report = {
        "clip_s": round(length, 1), "wall_s": round(wall, 1), "node_exit": node.returncode,
        "simulated_hours": outages, "hour_s": args.hour_s, "outage_s": args.outage_s,
        "start": first, "end": last, "cpu_pct_between": cpu_share,
        "hourly": [{k: x[k] for k in ("t", "rss_mb", "threads", "open_files", "outbox_depth",
                                      "outbox_kb")} for x in hourly],
        "events": len(emitted), "events_per_hour": round(len(emitted) / hours, 1),
        "events_first_hour": per_hour[0], "events_last_full_hour": per_hour[-2]
        if len(per_hour) > 1 else None,
        "kinds": {k: sum(1 for kk, _ in emitted if kk == k) for k in {k for k, _ in emitted}},
        "stored": len(stored), "lost": len(lost), "lost_ids": lost[:10],
        "load_avg": os.getloadavg(), "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"}
    print(json.dumps(report, indent=1))
    if args.write:
        (ROOT / "build").mkdir(exist_ok=True)
        (ROOT / "build" / "bench-soak.json").write_text(json.dumps(report, indent=1))
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())

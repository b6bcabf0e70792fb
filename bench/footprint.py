#!/usr/bin/env python3
"""Footprint benchmark: a node on a Pi-like budget, on each run time side by side.

Each run time (Ultralytics on the .pt, onnxruntime on its ONNX export, ncnn on its NCNN
export) runs in its own process pinned to one core (`taskset -c CORE`) under a 1 GiB
address-space limit (`prlimit --as`: stricter than a 1 GB cgroup, which this machine does not
let a session create; systemd-run has no bus here). The process plays real clips in real time
into the latest-frame slot, as the camera thread does, and runs the node's pipeline into an
SQLite outbox: frames per second handled, frames dropped, capture → decision and
capture → event-in-outbox latency, peak RSS (VmHWM) and whether torch was imported. A run time
that cannot start under the limit is reported as such and run again without it (taskset
only), so its figures still stand beside the others.

    nice -n 10 .venv/bin/python bench/footprint.py [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENES = ("child_to_bank", "child_leaves", "person_into_water", "two_children")
MEM_LIMIT = 1 << 30
START, END = "<!-- bench:footprint:start -->", "<!-- bench:footprint:end -->"


def worker(scenes: Path, model: str, out: Path) -> dict[str, Any]:
    """In the limited process: real-time play of the clips through the pipeline into an outbox."""
    import numpy as np

    from edge.camera.sources import LatestFrameSlot, open_source
    from edge.config import load_config
    from edge.link.outbox import Outbox
    from edge.rules.pipeline import Pipeline
    from edge.vision.detector import load_detector
    from edge.vision.offline import ultralytics_offline
    ultralytics_offline()
    frame_ms: list[float] = []
    event_ms: list[float] = []
    dropped = handled = played = 0
    det = None
    wall = 0.0
    for scene in SCENES:
        cfg = load_config(scenes / f"{scene}.yaml")
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": model})})
        det = det or load_detector(cfg.model)
        det.reset()
        src = open_source(str(scenes / f"{scene}.mp4"), cfg.camera.fps)
        pipe = Pipeline(cfg, det)
        box = Outbox(out / f"{scene}.db")
        slot = LatestFrameSlot()
        captured: dict[float, float] = {}
        done = threading.Event()
        count = [0]

        def capture(src: Any = src, slot: LatestFrameSlot = slot,
                    captured: dict[float, float] = captured, done: threading.Event = done,
                    count: list[int] = count) -> None:
            """Decode and play the clip at its own rate (a camera: nothing held in memory),
            stamping each frame's capture time."""
            start = time.monotonic()
            t0: float | None = None
            while (item := src.read()) is not None:
                f, t = item
                t0 = t if t0 is None else t0
                t -= t0
                count[0] += 1
                delay = start + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                captured[t] = time.monotonic()
                slot.put(f, t)
            done.set()
        t0 = time.monotonic()
        th = threading.Thread(target=capture, daemon=True)
        th.start()
        while True:
            got = slot.take(timeout=0.5)
            if got is None:
                if done.is_set():
                    break
                continue
            f, t = got
            for em in pipe.process(f, time.monotonic(), datetime.now(UTC)):
                box.put(em.event, em.snapshot)
                event_ms.append((time.monotonic() - captured[t]) * 1000)
            frame_ms.append((time.monotonic() - captured[t]) * 1000)
            handled += 1
        th.join()
        wall += time.monotonic() - t0
        src.close()
        played += count[0]
        dropped += slot.dropped
        box.close()
    hwm = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())

    def pct(v: list[float], q: float) -> float | None:
        return round(float(np.percentile(np.array(v), q)), 1) if v else None
    return {"played": played, "handled": handled, "dropped": dropped,
            "fps": round(handled / wall, 2), "events": len(event_ms),
            "frame_p50_ms": pct(frame_ms, 50), "frame_p95_ms": pct(frame_ms, 95),
            "event_p50_ms": pct(event_ms, 50), "event_p95_ms": pct(event_ms, 95),
            "rss_mb": round(int(hwm.group(1)) / 1024, 1) if hwm else None,
            "torch": "torch" in sys.modules, "ultralytics": "ultralytics" in sys.modules}


def unit_env() -> dict[str, str]:
    """The malloc setting of systemd/pondwatch-edge.service, so each run time runs as the
    node does."""
    unit = (ROOT / "systemd" / "pondwatch-edge.service").read_text()
    m = re.search(r"^Environment=MALLOC_TRIM_THRESHOLD_=(\d+)$", unit, re.M)
    return {"MALLOC_TRIM_THRESHOLD_": m.group(1)} if m else {}


def run_limited(scenes: Path, model: str, core: int, limit: bool) -> dict[str, Any]:
    """One worker process on one core, under the memory limit when `limit`."""
    with tempfile.TemporaryDirectory(prefix="pw-footprint-") as tmp:
        cmd = ["taskset", "-c", str(core)]
        if limit:
            cmd += ["prlimit", f"--as={MEM_LIMIT}"]
        cmd += [sys.executable, str(Path(__file__).resolve()), "--worker", str(scenes), model,
                tmp]
        env = {**os.environ, "OMP_NUM_THREADS": "1", **unit_env()}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return {"failed": f"exit {proc.returncode}: {tail[0][:160]}"}
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def exports(pt: Path) -> dict[str, str]:
    """The .pt and its ONNX and NCNN exports (bench/runtimes.py makes them, with trust records)."""
    from bench.runtimes import exports_of
    return {k: str(v) for k, v in exports_of(pt, ["onnx", "ncnn"]).items()}


def table(results: dict[str, dict[str, Any]], core: int) -> str:
    """The Markdown section."""
    load = os.getloadavg()
    lines = [
        "## Footprint on a Pi-like budget (bench/footprint.py)", "",
        f"One core (`taskset -c {core}`), a 1 GiB address-space limit (`prlimit --as`), "
        f"{len(SCENES)} clips ({', '.join(SCENES)}) played in real time at 5 fps into the "
        "latest-frame slot, the node pipeline into an SQLite outbox; each run time in its own "
        f"process, one after another in one run. Machine: {os.uname().machine}, "
        f"{os.cpu_count()} cores shared with a training run; load average after the run "
        f"{load[0]:.2f}. {datetime.now(UTC):%Y-%m-%d}.", "",
        "| run time | limit | peak RSS MB | frames/s (of 5) | dropped | capture→decision p50 / "
        "p95 ms | capture→outbox p50 / p95 ms | events | torch imported |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"| {name} | 1 GiB | — | — | — | — | — | — | cannot start: "
                         f"{r['failed']} |")
            continue
        lines.append(
            f"| {name} | {r['limit']} | {r['rss_mb']} | {r['fps']} | {r['dropped']} of "
            f"{r['played']} | {r['frame_p50_ms']} / {r['frame_p95_ms']} | "
            f"{r['event_p50_ms']} / {r['event_p95_ms']} | {r['events']} | "
            f"{'yes' if r['torch'] else 'no'} |")
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace (or append) this benchmark's section in docs/benchmarks.md."""
    doc = ROOT / "docs" / "benchmarks.md"
    old = doc.read_text(encoding="utf-8")
    block = f"{START}\n{text.rstrip()}\n{END}"
    if START in old and END in old:
        new = old[:old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    doc.write_text(new, encoding="utf-8")


def main() -> int:
    """Run each run time on the budget; print (and with --write record) the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="models/person-offline.pt")
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="record in docs/benchmarks.md")
    args = ap.parse_args()
    from bench.land_set import scenes_dir
    scenes = scenes_dir()
    files = exports((ROOT / args.model).resolve())
    results: dict[str, dict[str, Any]] = {}
    for name, key in (("ultralytics (.pt)", "pt"), ("onnxruntime (.onnx)", "onnx"),
                      ("ncnn (NCNN folder)", "ncnn")):
        r = run_limited(scenes, files[key], args.core, limit=True)
        if "failed" in r:
            results[f"{name}, under the limit"] = r
            r = run_limited(scenes, files[key], args.core, limit=False)
            r["limit"] = "none"
        else:
            r["limit"] = "1 GiB"
        results[name] = r
        print(name, json.dumps(r), flush=True)
    text = table(results, args.core)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

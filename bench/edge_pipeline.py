#!/usr/bin/env python3
"""Edge pipeline benchmark: pipeline vs bare predict, latency, RSS, idle CPU, formats."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
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

from edge.vision.offline import ultralytics_offline  # noqa: E402

ultralytics_offline()  # before anything imports Ultralytics

import numpy as np  # noqa: E402

from edge.camera.sources import LatestFrameSlot, open_source  # noqa: E402
from edge.config import NodeConfig, load_config  # noqa: E402
from edge.replay import EPOCH, replay_ids  # noqa: E402
from edge.rules.pipeline import Pipeline  # noqa: E402
from edge.vision.detector import UltralyticsDetector  # noqa: E402
from edge.vision.types import TRACK_FLOOR  # noqa: E402
from edge.vision.windows import detect_people, region_window, zoom_windows  # noqa: E402

THROUGHPUT_SCENES = ("child_to_bank", "person_into_water")
VIEW_SCENES = ("child_to_bank_shore", "children_side_by_side", "adult_on_bank_quay", "wader")
LATENCY_SCENES = ("child_to_bank", "child_leaves", "person_into_water", "two_children")
START, END = "<!-- bench:edge_pipeline:start -->", "<!-- bench:edge_pipeline:end -->"


def scenes_dir() -> Path:
    """Generated clips, made the same way (and in the same cache) as the test fixture."""
    from bench.land_set import scenes_dir as shared
    return shared()


def frames_of(path: Path, fps: float) -> list[tuple[np.ndarray, float]]:
    """All frames of a clip at the node's rate, in memory."""
    src = open_source(str(path), fps)
    out = []
    while (item := src.read()) is not None:
        out.append(item)
    src.close()
    return out


def people_frames(sd: Path, scene: str, fps: float) -> list[np.ndarray]:
    """The frames of a clip in which its truth has someone in view."""
    truth = json.loads((sd / f"{scene}.truth.json").read_text())["frames"]
    return [f for (f, _), tr in zip(frames_of(sd / f"{scene}.mp4", fps), truth, strict=False)
            if tr["persons"]]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values."""
    return float(np.percentile(np.array(values), q)) if values else float("nan")


# ------------------------------------------------------------------ 1. throughput
def throughput(cfg: NodeConfig, frames: list[np.ndarray], rounds: int) -> dict[str, float]:
    """Frames/s of bare model.predict and of the full pipeline, alternating A/B rounds."""
    from ultralytics import YOLO  # type: ignore[attr-defined]
    bare = YOLO(cfg.model.path, task="detect")
    det = UltralyticsDetector(cfg.model)
    classes = det.classes  # the same class filter the detector uses
    for f in frames[:3]:  # warm both up
        bare.predict(f, imgsz=cfg.model.imgsz, conf=cfg.model.conf, classes=classes, verbose=False)
        det.track(f)
    bare_s, pipe_s = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for f in frames:
            bare.predict(f, imgsz=cfg.model.imgsz, conf=cfg.model.conf, classes=classes,
                         verbose=False)
        bare_s.append(time.perf_counter() - t0)
        det.reset()
        pipe = Pipeline(cfg, det, ids=replay_ids(cfg.node_id, "bench"), idle=False)
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            pipe.process(f, i / cfg.camera.fps, EPOCH)
        pipe_s.append(time.perf_counter() - t0)
    n = len(frames)
    bare_fps = n / statistics.median(bare_s)
    pipe_fps = n / statistics.median(pipe_s)
    return {"frames": n, "rounds": rounds, "bare_fps": bare_fps, "pipe_fps": pipe_fps,
            "ratio": pipe_fps / bare_fps}


# ------------------------------------------------------------------ 1b. regions and zoom cost
def views_cost(cfg: NodeConfig, busy: list[np.ndarray], empty: list[np.ndarray],
               det: UltralyticsDetector, rounds: int) -> dict[str, float]:
    """Per-frame cost of the node's detection step (zones' region + zoom windows + merge)
    against one whole-frame inference at imgsz on the same frames, A/B alternating."""
    floor = min(TRACK_FLOOR, cfg.model.conf)
    for f in busy[:2] + empty[:2]:      # warm up both paths and both input sizes
        detect_people(cfg, det, f)
        det.predict([f], cfg.model.imgsz, floor)
    out: dict[str, float] = {}
    for label, frames in (("busy", busy), ("empty", empty)):
        bare_s, step_s = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for f in frames:
                det.predict([f], cfg.model.imgsz, floor)
            bare_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for f in frames:
                detect_people(cfg, det, f)
            step_s.append(time.perf_counter() - t0)
        bare, step = statistics.median(bare_s), statistics.median(step_s)
        h, w = frames[0].shape[:2]
        zooms = [len(zoom_windows([c for c in _first_pass(cfg, det, f, floor)],
                                  region_window(cfg, w, h), cfg, w, h)) for f in frames]
        out[f"{label}_frames"] = len(frames)
        out[f"{label}_bare_ms"] = 1000 * bare / len(frames)
        out[f"{label}_step_ms"] = 1000 * step / len(frames)
        out[f"{label}_ratio"] = step / bare
        out[f"{label}_zooms"] = sum(zooms) / len(frames)
    return out


def _first_pass(cfg: NodeConfig, det: UltralyticsDetector, frame: np.ndarray,
                floor: float) -> list[Any]:
    """Pass-1 candidates in frame pixels (to count the zoom windows they ask for)."""
    from edge.vision.windows import shift
    h, w = frame.shape[:2]
    win = region_window(cfg, w, h)
    crop = frame[win[1]:win[3], win[0]:win[2]]
    return [shift(c, win) for c in det.predict([crop], cfg.model.imgsz, floor)[0]]


# ------------------------------------------------------------------ 2. latency
def latency(cfg_dir: Path, scenes: tuple[str, ...], det: UltralyticsDetector,
            outbox_dir: Path) -> dict[str, Any]:
    """Real-time play through the latest-frame slot into the outbox: capture→decision and
    capture→event-in-outbox latencies."""
    from edge.link.outbox import Outbox
    frame_ms: list[float] = []
    event_ms: list[float] = []
    dropped = 0
    for scene in scenes:
        cfg = load_config(cfg_dir / f"{scene}.yaml")
        frames = frames_of(cfg_dir / f"{scene}.mp4", cfg.camera.fps)
        det.reset()
        pipe = Pipeline(cfg, det)
        box = Outbox(outbox_dir / f"{scene}.db")
        slot = LatestFrameSlot()
        captured: dict[float, float] = {}
        done = threading.Event()

        def capture(frames: list[tuple[np.ndarray, float]] = frames,
                    slot: LatestFrameSlot = slot, captured: dict[float, float] = captured,
                    done: threading.Event = done) -> None:
            """Play the clip at its own rate, stamping each frame's capture time."""
            start = time.monotonic()
            for f, t in frames:
                delay = start + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                captured[t] = time.monotonic()
                slot.put(f, t)
            done.set()
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
        th.join()
        dropped += slot.dropped
        box.close()
    return {"frames": len(frame_ms), "events": len(event_ms), "dropped": dropped,
            "frame_p50": pct(frame_ms, 50), "frame_p95": pct(frame_ms, 95),
            "event_p50": pct(event_ms, 50), "event_p95": pct(event_ms, 95),
            "event_max": max(event_ms) if event_ms else float("nan")}


# ------------------------------------------------------------------ 3. idle CPU
def idle_cpu(cfg: NodeConfig, frames: list[np.ndarray], det: UltralyticsDetector,
             seconds: float) -> dict[str, float]:
    """CPU share (of one core) of the pipeline at the camera rate on a static scene,
    with and without the idle gate."""
    out = {}
    for label, idle in (("awake", False), ("idle", True)):
        det.reset()
        pipe = Pipeline(cfg, det, idle=idle)
        period = 1.0 / cfg.camera.fps
        n = int(seconds * cfg.camera.fps)
        wall0, cpu0 = time.monotonic(), time.process_time()
        for i in range(n):
            due = wall0 + i * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pipe.process(frames[i % len(frames)], i * period, EPOCH)
        wall = time.monotonic() - wall0
        out[label] = 100.0 * (time.process_time() - cpu0) / wall
        out[f"{label}_detected"] = pipe.stats.detected_frames / n
    out["ratio"] = out["idle"] / out["awake"]
    return out


def still_figure_cpu(cfg: NodeConfig, frames: list[np.ndarray], det: Any, seconds: float,
                     learn_s: float) -> dict[str, float]:
    """CPU (share of one core per second of scene) on a still scene with a person-shaped
    figure on the bank, at the camera rate: the node as it was (nothing learned: the figure
    keeps the gate awake) and as it is (learned after learn_s), over the last `seconds`."""
    from scripts.make_scenes import assets_dir
    from tests.edge.rules.test_still import figure, paste
    fig = figure(assets_dir())
    scene = [paste(f, fig) for f in frames]
    out: dict[str, float] = {}
    for label, learn in (("unlearned", 0.0), ("learned", learn_s)):
        run_cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(
            update={"still_learn_s": learn})})
        det.reset()
        pipe = Pipeline(run_cfg, det)
        period = 1.0 / cfg.camera.fps
        warm = int((learn_s + 5.0) * cfg.camera.fps)
        n = warm + int(seconds * cfg.camera.fps)
        wall0 = time.monotonic()
        cpu0 = t_mark = 0.0
        ran0 = 0
        for i in range(n):
            if i == warm:
                cpu0, t_mark, ran0 = time.process_time(), time.monotonic(), \
                    pipe.stats.detected_frames
            due = wall0 + i * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pipe.process(scene[i % len(scene)], i * period, EPOCH)
        # CPU seconds per second of scene: the share of a core needed to keep up with the
        # camera (a saturated, busy run falls behind real time on a shared machine)
        out[label] = 100.0 * (time.process_time() - cpu0) / ((n - warm) * period)
        out[f"{label}_wall_share"] = 100.0 * (time.process_time() - cpu0) / (
            time.monotonic() - t_mark)
        out[f"{label}_detected"] = (pipe.stats.detected_frames - ran0) / (n - warm)
        out[f"{label}_idle"] = float(pipe.stats.idle)
    return out


# ------------------------------------------------------------------ 4. memory
def node_rss_mb(cfg_dir: Path, scene: str, out_dir: Path) -> float:
    """Peak RSS of a separate process replaying one scene (the node's own footprint)."""
    code = ("import re, sys; from edge.cli import main; rc = main(sys.argv[1:]); "  # VmHWM is
            "print('RSS', re.search(r'VmHWM:\\s+(\\d+)', "  # per process image, unlike
            "open('/proc/self/status').read()).group(1))")  # ru_maxrss, kept across exec
    proc = subprocess.run(
        [sys.executable, "-c", code, "replay", str(cfg_dir / f"{scene}.yaml"), "--source",
         str(cfg_dir / f"{scene}.mp4"), "--events-out", str(out_dir / "rss.jsonl")],
        cwd=ROOT, capture_output=True, text=True, check=True)
    m = re.search(r"^RSS (\d+)$", proc.stdout, re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


# ------------------------------------------------------------------ 5. formats
def formats(model_path: Path, frames: list[np.ndarray], sizes: tuple[int, ...],
            reps: int) -> tuple[dict[tuple[str, int], tuple[float, float] | str], list[str]]:
    """(median, best) inference ms per export format and size (exports made offline here);
    best is the figure least disturbed by other jobs on a shared machine."""
    from ultralytics import YOLO  # type: ignore[attr-defined]
    results: dict[tuple[str, int], tuple[float, float] | str] = {}
    notes = []
    work = Path(tempfile.mkdtemp(prefix="pw-formats-"))
    try:
        for size in sizes:
            for fmt in ("pytorch", "onnx", "openvino", "ncnn"):
                pt = work / f"m{size}.pt"
                shutil.copy(model_path, pt)
                try:
                    if fmt == "pytorch":
                        path = str(pt)
                    else:
                        kw: dict[str, Any] = {"format": fmt, "imgsz": size}
                        if fmt == "onnx":
                            kw["simplify"] = _has("onnxslim")
                        if fmt in ("openvino", "ncnn") and not _has(fmt):
                            raise RuntimeError(f"{fmt} is not installed")
                        if fmt == "ncnn" and not _has("pnnx"):
                            raise RuntimeError("pnnx is not installed")
                        path = YOLO(str(pt)).export(**kw)
                    model = YOLO(path, task="detect")
                    for f in frames[:3]:
                        model.predict(f, imgsz=size, verbose=False)
                    ms = []
                    for i in range(reps):
                        t0 = time.perf_counter()
                        model.predict(frames[i % len(frames)], imgsz=size, verbose=False)
                        ms.append((time.perf_counter() - t0) * 1000)
                    results[(fmt, size)] = (statistics.median(ms), min(ms))
                except Exception as exc:  # a format that cannot be produced here is reported
                    results[(fmt, size)] = "n/a"
                    notes.append(f"{fmt} @ {size}: {type(exc).__name__}: {str(exc)[:120]}")
                print(f"  {fmt:9s} {size}: {results[(fmt, size)]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results, notes


def _has(module: str) -> bool:
    """True when a Python module can be imported."""
    import importlib.util
    return importlib.util.find_spec(module) is not None


# ------------------------------------------------------------------ report
def machine() -> str:
    """CPU model, cores, RAM, OS and library versions."""
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        model = m.group(1).strip() if m else model
    except OSError:
        pass
    mem = 0.0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    import torch
    import ultralytics
    return (f"{model}, {os.cpu_count()} cores, {mem:.0f} GB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"
            f" (CPU, {torch.get_num_threads()} threads), Ultralytics {ultralytics.__version__}")


def previous_formats() -> list[str]:
    """The export-format table of the section as last written (kept by --no-formats runs)."""
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if START not in text or END not in text:
        return []
    old = text[text.index(START):text.index(END)].splitlines()
    head = next((i for i, ln in enumerate(old) if ln.startswith("Inference per frame")), None)
    if head is None:
        return []
    end = next((i for i in range(head + 2, len(old)) if not old[i].strip()), len(old))
    return [old[head] + " (kept from that earlier run; this run used --no-formats)", "",
            *old[head + 2:end], ""]


def write_section(text: str) -> None:
    """Replace (or append) this benchmark's section in docs/benchmarks.md."""
    doc = ROOT / "docs" / "benchmarks.md"
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    block = f"{START}\n{text.rstrip()}\n{END}"
    if START in old and END in old:
        new = old[:old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new, encoding="utf-8")


def main() -> int:
    """Run every part, print the figures, and record them in docs/benchmarks.md."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3, help="A/B rounds of the throughput part")
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--reps", type=int, default=20, help="timed frames per format and size")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 480, 640])
    p.add_argument("--no-formats", action="store_true")
    p.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--still-only", metavar="MODEL", help="only the still-figure CPU part, on "
                   "this model file (any run time); prints, writes nothing")
    p.add_argument("--learn-s", type=float, default=20.0, help="still_learn_s of that part")
    p.add_argument("--idle-fps", type=float, help="rules.idle_fps of that part (default: the "
                   "scene config's)")
    args = p.parse_args()
    if args.still_only:
        sd = scenes_dir()
        scfg = load_config(sd / "empty_static.yaml")
        scfg = scfg.model_copy(update={"model": scfg.model.model_copy(
            update={"path": args.still_only})})
        if args.idle_fps:
            scfg = scfg.model_copy(update={"rules": scfg.rules.model_copy(
                update={"idle_fps": args.idle_fps})})
        from edge.vision.detector import load_detector
        still = [f for f, _ in frames_of(sd / "empty_static.mp4", scfg.camera.fps)]
        r = still_figure_cpu(scfg, still, load_detector(scfg.model), args.idle_seconds,
                             args.learn_s)
        print(f"load average {os.getloadavg()[0]:.2f}; still figure on the bank, "
              f"{args.idle_seconds:.0f} s at {scfg.camera.fps:g} fps, idle_fps "
              f"{scfg.rules.idle_fps:g}: " + json.dumps({k: round(v, 3) for k, v in r.items()}))
        return 0

    sd = scenes_dir()
    cfg = load_config(sd / f"{THROUGHPUT_SCENES[0]}.yaml")
    frames = [f for s in THROUGHPUT_SCENES for f, _ in frames_of(sd / f"{s}.mp4", cfg.camera.fps)]
    host = machine()
    load = os.getloadavg()[0]
    print(f"machine: {host}; load average {load:.2f} at start")
    print(f"1. throughput on {len(frames)} frames ({', '.join(THROUGHPUT_SCENES)}), "
          f"imgsz {cfg.model.imgsz} ...", flush=True)
    tp = throughput(cfg, frames, args.rounds)
    print(f"   bare predict {tp['bare_fps']:.2f} fps, pipeline {tp['pipe_fps']:.2f} fps, "
          f"ratio {tp['ratio']:.3f}")

    det = UltralyticsDetector(cfg.model)
    print("1b. detection step (zones' region + zoom windows) vs one whole-frame inference ...",
          flush=True)
    busy = [f for s in VIEW_SCENES for f in people_frames(sd, s, cfg.camera.fps)]
    empty_cfg = load_config(sd / "empty_static.yaml")
    empty = [f for f, _ in frames_of(sd / "empty_static.mp4", empty_cfg.camera.fps)]
    vc = views_cost(cfg, busy, empty, det, args.rounds)
    print(f"   someone in view: {vc['busy_step_ms']:.0f} vs {vc['busy_bare_ms']:.0f} ms/frame, "
          f"ratio {vc['busy_ratio']:.2f} ({vc['busy_zooms']:.2f} zoom windows/frame); empty: "
          f"{vc['empty_step_ms']:.0f} vs {vc['empty_bare_ms']:.0f} ms, ratio "
          f"{vc['empty_ratio']:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        print("2. latency, real-time play through the slot into the outbox ...", flush=True)
        lat = latency(sd, LATENCY_SCENES, det, Path(tmp))
    print(f"   frame→decision p50 {lat['frame_p50']:.0f} ms, p95 {lat['frame_p95']:.0f} ms "
          f"({lat['frames']} frames, {lat['dropped']} dropped); frame→event in outbox p50 "
          f"{lat['event_p50']:.0f} ms, p95 {lat['event_p95']:.0f} ms ({lat['events']} events)")

    print("3. idle-mode CPU share on empty_static ...", flush=True)
    static_cfg = load_config(sd / "empty_static.yaml")
    static = [f for f, _ in frames_of(sd / "empty_static.mp4", static_cfg.camera.fps)]
    idle = idle_cpu(static_cfg, static, det, args.idle_seconds)
    print(f"   awake {idle['awake']:.1f} % of a core, idle {idle['idle']:.1f} %, ratio "
          f"{idle['ratio']:.3f} (detector ran on {idle['idle_detected']:.0%} of frames)")

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        node_mb = node_rss_mb(sd, "child_to_bank", Path(tmp))
    print(f"4. peak RSS: node replay process {node_mb:.0f} MB; this benchmark process "
          f"{rss_mb:.0f} MB (three models, clips held in memory)")

    fmt_res: dict[tuple[str, int], tuple[float, float] | str] = {}
    notes: list[str] = []
    if not args.no_formats:
        print("5. inference per export format ...", flush=True)
        fmt_res, notes = formats(Path(cfg.model.path), frames, tuple(args.sizes), args.reps)
    fmt_load = os.getloadavg()[0]

    if args.no_write:
        return 0
    lines = [
        "## Edge pipeline (`bench/edge_pipeline.py`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: {host}. The machine was shared "
        f"with other jobs (1-minute load average {load:.2f} at start), so treat single figures "
        "as ±10 %; the ratios are measured side by side in one run.",
        f"Model: offline person detector `{Path(cfg.model.path).name}` (YOLOv8), "
        f"conf {cfg.model.conf}, ByteTrack. Frames: generated scenes ({sd.name}), 960x540.",
        "",
        "| figure | measured |",
        "| --- | --- |",
        f"| bare `model.predict`, imgsz {cfg.model.imgsz} | {tp['bare_fps']:.2f} frames/s |",
        f"| full pipeline (track + zones + rules + snapshots, idle gate off) | "
        f"{tp['pipe_fps']:.2f} frames/s |",
        f"| **ratio pipeline / bare** (goal ≥ 0.90; {tp['frames']} frames, median of "
        f"{tp['rounds']} A/B rounds) | **{tp['ratio']:.3f}** |",
        f"| detection step per frame with someone in view (zones' region + "
        f"{vc['busy_zooms']:.2f} zoom windows/frame at {cfg.model.zoom_imgsz}) vs one "
        f"whole-frame inference at {cfg.model.imgsz} ({vc['busy_frames']:.0f} frames of "
        f"{', '.join(VIEW_SCENES)}) | {vc['busy_step_ms']:.0f} vs {vc['busy_bare_ms']:.0f} ms, "
        f"**ratio {vc['busy_ratio']:.2f}** (budget ≤ 2) |",
        f"| detection step per frame on the empty scene vs one whole-frame inference "
        f"({vc['empty_frames']:.0f} frames of empty_static) | {vc['empty_step_ms']:.0f} vs "
        f"{vc['empty_bare_ms']:.0f} ms, **ratio {vc['empty_ratio']:.2f}** (budget ≤ 1) |",
        f"| capture → decision, p50 / p95 ({lat['frames']} frames at 5 fps, real time, "
        f"{lat['dropped']} dropped) | {lat['frame_p50']:.0f} / {lat['frame_p95']:.0f} ms |",
        f"| capture → event in the SQLite outbox, p50 / p95 / max ({lat['events']} events) | "
        f"{lat['event_p50']:.0f} / {lat['event_p95']:.0f} / {lat['event_max']:.0f} ms |",
        f"| peak RSS of a node process replaying child_to_bank (`pondwatch-edge replay`) | "
        f"{node_mb:.0f} MB |",
        f"| peak RSS of this benchmark process (3 models, clips in memory; before exports) | "
        f"{rss_mb:.0f} MB |",
        f"| CPU on a static scene at 5 fps, idle gate off → on (share of one core) | "
        f"{idle['awake']:.1f} % → {idle['idle']:.1f} % (ratio {idle['ratio']:.2f}; detector on "
        f"{idle['idle_detected']:.0%} of frames) |",
        "",
    ]
    if not fmt_res:
        lines += previous_formats()
    if fmt_res:
        sizes = sorted({s for _, s in fmt_res})
        lines += ["Inference per frame, median (best) ms of "
                  f"{args.reps} frames, `model.predict` incl. pre/post-processing, exported here "
                  f"offline; load average {fmt_load:.2f} after this part:", "",
                  "| format | " + " | ".join(f"imgsz {s}" for s in sizes) + " |",
                  "| --- |" + " --- |" * len(sizes)]
        for fmt in ("pytorch", "onnx", "openvino", "ncnn"):
            cells = [fmt_res.get((fmt, s), "n/a") for s in sizes]
            lines.append(f"| {fmt} | " + " | ".join(
                f"{c[0]:.0f} ({c[1]:.0f})" if isinstance(c, tuple) else str(c)
                for c in cells) + " |")
        lines.append("")
        lines += [f"- {n}" for n in notes]
        if notes:
            lines.append("")
    lines += [
        "For scale, **published Raspberry Pi 5 figures (not measured here)**:",
        "",
        "- Arm, *Arm Runtime for YOLO26 on Raspberry Pi 5* (model card, Hugging Face "
        "`Arm/Arm-Runtime-for-YOLO26-on-Raspberry-Pi-5`): YOLO26n at 640x640, batch 1, "
        "inference only: NCNN 67.2 ms, OpenVINO 102.0 ms, ONNX Runtime 126.9 ms, ExecuTorch "
        "136.9 ms per image.",
        "- Q-engineering, YoloV10-ncnn-Raspberry-Pi-4 README (GitHub): YOLOv8 nano 640x640 "
        "with ncnn on a Raspberry Pi 5: 20 FPS (≈ 50 ms), inference only.",
        "",
        "Reading: at 5 detection frames/s a Pi 5 needs ≤ 200 ms per frame for the whole "
        "pipeline; the published NCNN figures leave room for 640 input, PyTorch on the Pi "
        "does not reliably, so production nodes should run an NCNN or OpenVINO export.",
    ]
    write_section("\n".join(lines))
    print("docs/benchmarks.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

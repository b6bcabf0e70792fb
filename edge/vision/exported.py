"""The torch-free detector: an exported YOLO model run by onnxruntime or ncnn behind the seam.

Neither run time imports torch or Ultralytics: the letterbox, decoding and NMS are
edge.vision.yolo_io's, the tracking edge.vision.bytetrack's. The model's class names and input
size come from the export's own metadata (ONNX metadata_props; NCNN's metadata.yaml).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from edge.config import ModelConfig
from edge.trust import ModelTrustError, check_model
from edge.vision.bytetrack import ByteTrack
from edge.vision.tracking import TrackerError
from edge.vision.types import (
    TRACK_FLOOR,
    Candidate,
    Detection,
    DetectorError,
    labelled,
    meaning_map,
)
from edge.vision.yolo_io import REG_MAX, decode, head_output, letterbox, nms

log = logging.getLogger(__name__)


class Network(Protocol):
    """One exported network: its class names, its fixed input (H, W) if any, and a run."""

    names: dict[int, str]
    fixed: tuple[int, int] | None

    def run(self, blob: np.ndarray) -> np.ndarray:
        """The raw output for one (1, 3, H, W) input."""


def _names(raw: Any) -> dict[int, str]:
    """Class names from export metadata: a dict, or its repr as ONNX stores it."""
    value = ast.literal_eval(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict) or not value:
        raise ValueError(f"no class names in the export's metadata (got {raw!r})")
    return {int(k): str(v) for k, v in value.items()}


class OnnxNetwork:
    """An ONNX export on onnxruntime's CPU provider."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        """Open the session and read names and input shape from the model."""
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_cpu_mem_arena = False   # memory first: 30 MB less at ~20 % more time
        opts.enable_mem_pattern = False
        self._session = ort.InferenceSession(str(path), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        self.names = _names(meta.get("names"))
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        h, w = inp.shape[2], inp.shape[3]
        self.fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def run(self, blob: np.ndarray) -> np.ndarray:
        """The first output for one input."""
        return np.asarray(self._session.run(None, {self._input: blob})[0])


def _head_maps(param: str) -> list[tuple[str, str]] | None:
    """The blob names of a Detect head's per-scale (box, class) maps in an NCNN param file.

    An NCNN export bakes its input size into the head (reshapes to 8400 anchors, anchor points
    as weights), while every layer up to the head's last convolutions takes any size. The head
    ends in two Concats of Reshaped convolution outputs, one per branch: the one a Sigmoid
    takes holds the class maps, the other (4 * REG_MAX channels) the box maps. None when the
    graph has no such head (e.g. an end-to-end one).
    """
    layers = [line.split() for line in param.splitlines()[2:] if line.strip()]
    made_by: dict[str, list[str]] = {}
    for layer in layers:
        n_in, n_out = int(layer[2]), int(layer[3])
        for top in layer[4 + n_in:4 + n_in + n_out]:
            made_by[top] = layer

    def conv_maps(blob: str) -> list[tuple[str, int]] | None:
        """(conv output, channels) of each Reshaped convolution a Concat joins, else None."""
        cat = made_by.get(blob)
        if cat is None or cat[0] != "Concat":
            return None
        out = []
        for bottom in cat[4:4 + int(cat[2])]:
            reshape = made_by.get(bottom)
            conv = made_by.get(reshape[4]) if reshape and reshape[0] == "Reshape" else None
            if reshape is None or conv is None or conv[0] != "Convolution":
                return None
            channels = dict(kv.split("=", 1) for kv in conv[4 + int(conv[2]) + int(conv[3]):])
            out.append((reshape[4], int(channels["0"])))
        return out

    cls = [m for layer in layers if layer[0] == "Sigmoid" and (m := conv_maps(layer[4]))]
    box = [m for top in made_by if (m := conv_maps(top)) and m not in cls
           and all(c == 4 * REG_MAX for _, c in m)]
    if len(cls) != 1 or len(box) != 1 or len(cls[0]) != len(box[0]):
        return None
    return [(b, c) for (b, _), (c, _) in zip(box[0], cls[0], strict=True)]


class NcnnNetwork:
    """An NCNN export folder (model.ncnn.param, model.ncnn.bin, metadata.yaml) on ncnn's CPU.

    Run up to its head's per-scale maps, which take any input size, and decoded here
    (yolo_io.head_output): so a frame is letterboxed to a stride multiple as for the .pt, not
    padded to the export's square (which lost 0.07 recall on water-people, issue 20). A graph
    whose head is not recognised runs whole, at its export size.
    """

    def __init__(self, folder: Path, threads: int = 0) -> None:
        """Load param and weights; names and the export size from metadata.yaml."""
        import ncnn
        meta = yaml.safe_load((folder / "metadata.yaml").read_text(encoding="utf-8")) or {}
        self.names = _names(meta.get("names"))
        size = meta.get("imgsz", 640)
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        param = folder / "model.ncnn.param"
        self._maps = _head_maps(param.read_text(encoding="utf-8", errors="replace"))
        self.fixed: tuple[int, int] | None = None if self._maps else (h, w)
        if self._maps is None:
            log.warning("NCNN export %s: no Detect head found; it runs at its export size "
                        "%dx%d only (frames padded square)", folder, w, h)
        self._net = ncnn.Net()
        self._net.opt.use_vulkan_compute = False
        # memory first: winograd and packed-sgemm weights cost ~110 MB more on a 44 MB
        # model, for ~1.5x the speed (bench/footprint.py)
        self._net.opt.use_winograd_convolution = False
        self._net.opt.use_sgemm_convolution = False
        if threads:
            self._net.opt.num_threads = threads
        for load, name in ((self._net.load_param, "model.ncnn.param"),
                           (self._net.load_model, "model.ncnn.bin")):
            if load(str(folder / name)) != 0:
                raise ValueError(f"ncnn cannot load {folder / name}")
        self._ncnn = ncnn

    def run(self, blob: np.ndarray) -> np.ndarray:
        """The Detect head's raw output for one input."""
        ex = self._net.create_extractor()
        ex.input(self._net.input_names()[0], self._ncnn.Mat(blob[0]))
        if self._maps is None:
            _, out = ex.extract(self._net.output_names()[0])
            return np.array(out)[None]
        maps = [(np.array(ex.extract(b)[1]), np.array(ex.extract(c)[1])) for b, c in self._maps]
        return head_output(maps, (blob.shape[2], blob.shape[3]))


def open_network(path: Path, runtime: str) -> Network:
    """The network of an ONNX file (onnxruntime) or an NCNN folder (ncnn)."""
    if runtime == "onnxruntime":
        return OnnxNetwork(path)
    if runtime == "ncnn":
        return NcnnNetwork(path if path.is_dir() else path.parent)
    raise DetectorError(f"unknown model run time {runtime!r}")


class ExportedDetector:
    """An ONNX or NCNN export, run without torch, tracked by ByteTrack (edge.vision.bytetrack)."""

    def __init__(self, model_cfg: ModelConfig, runtime: str) -> None:
        """Check the file is trusted, open it on its run time, map its classes."""
        self.cfg = model_cfg
        path = Path(model_cfg.path)
        try:
            verdict = check_model(path, model_cfg)
        except ModelTrustError as exc:
            raise DetectorError(str(exc)) from exc
        try:
            self._net = open_network(path, runtime)
        except DetectorError:
            raise
        except Exception as exc:  # onnxruntime and ncnn raise their own types for a bad file
            raise DetectorError(f"cannot load model {path} on {runtime}: {exc}") from exc
        names = self._net.names
        wanted = meaning_map(model_cfg.labels)
        self._meaning = {i: wanted[n.lower()] for i, n in names.items() if n.lower() in wanted}
        if not self._meaning:
            raise DetectorError(
                f"model {path} has classes {sorted(names.values())}, none of which the label "
                f"map {model_cfg.labels} names")
        self._classes = sorted(self._meaning)
        try:
            self._tracker = ByteTrack(model_cfg.tracker)
        except TrackerError as exc:
            raise DetectorError(str(exc)) from exc
        log.info("model %s on %s (%s): classes %s", path, runtime, verdict.how,
                 {names[i]: m for i, m in self._meaning.items()})

    @property
    def class_names(self) -> dict[int, str]:
        """The model's own class names."""
        return dict(self._net.names)

    def predict(self, crops: Sequence[np.ndarray], imgsz: int, floor: float
                ) -> list[list[Candidate]]:
        """Candidates (pixel boxes in each crop) of the label map's classes, >= floor."""
        out: list[list[Candidate]] = []
        for crop in crops:
            blob, lb = letterbox(crop, imgsz, fixed=self._net.fixed)
            boxes, scores, cls = decode(self._net.run(blob), floor, self._classes)
            keep = nms(boxes, scores, cls)
            h, w = crop.shape[:2]
            px = lb.to_frame(boxes[keep], w, h)
            out.append([Candidate((float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                                  float(s), int(k))
                        for b, s, k in zip(px, scores[keep], cls[keep], strict=True)])
        return out

    def label(self, c: Candidate, w: int, h: int) -> Detection:
        """A frame-pixel candidate as a Detection with its meaning, normalised to 0..1."""
        return labelled(c, w, h, self._meaning[c.cls], self._net.names[c.cls])

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Whole-frame detections at or above cfg.conf, without track ids."""
        h, w = frame.shape[:2]
        return [self.label(c, w, h)
                for c in self.predict([frame], self.cfg.imgsz, self.cfg.conf)[0]]

    def track(self, frame: np.ndarray, detections: Sequence[Detection] | None = None
              ) -> list[Detection]:
        """Feed one frame's detections (default: whole-frame ones >= TRACK_FLOOR) to the
        tracker; returns those that belong to a track, with its id."""
        if detections is None:
            h, w = frame.shape[:2]
            floor = min(TRACK_FLOOR, self.cfg.conf)
            detections = [self.label(c, w, h)
                          for c in self.predict([frame], self.cfg.imgsz, floor)[0]]
        return self._tracker.update(frame, detections)

    def reset(self) -> None:
        """Forget all tracks and restart track ids."""
        self._tracker.reset()

"""Node configuration: the YAML schema from DESIGN.md as strict pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edge.errors import EdgeError
from edge.manifest import operating_conf, operating_conf_water
from edge.trust import signed_operating_conf
from protocol.digest import sha256_file
from protocol.signing import KEY_PREFIX, MAX_TRUSTED_KEYS
from protocol.topics import DEFAULT_PREFIX, NODE_ID_PATTERN, check_node_id
from protocol.validation import StrictModel, field_errors, read_yaml

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Unit, Unit]


class ConfigError(EdgeError, ValueError):
    """A node config that cannot be used; the message names the file and field."""


class CameraConfig(StrictModel):
    """Where frames come from."""

    source: str | int = Field(
        "picamera2", description="picamera2, a USB index, /dev/videoN, rtsp://…, a video file "
        "or an image folder.")
    fps: float = Field(5.0, gt=0, le=60, description="Detection rate cap in frames per second.")
    width: int | None = Field(None, ge=64, le=4096, description="Requested capture width.")
    height: int | None = Field(None, ge=64, le=4096, description="Requested capture height.")
    stall_s: float = Field(10.0, gt=0, le=600, description="No frame for this long is a fault.")


DEFAULT_CONF = 0.25  # person-offline's operating point
Runtime = Literal["ultralytics", "onnxruntime", "ncnn"]


def runtime_for(path: str) -> Runtime:
    """The run time a model file needs: onnxruntime for .onnx, ncnn for an NCNN export
    (NAME_ncnn_model/ or its .param), Ultralytics (torch) for anything else."""
    name = Path(path.rstrip("/")).name
    if name.endswith(".onnx"):
        return "onnxruntime"
    if name.endswith("_ncnn_model") or name.endswith(".ncnn.param"):
        return "ncnn"
    return "ultralytics"


class ModelConfig(StrictModel):
    """The detector and what its classes mean."""

    path: str = Field("models/person.pt", description="The model: a .pt (Ultralytics run "
                      "time), an .onnx export or an NAME_ncnn_model/ folder "
                      "(`pondwatch-edge model export`).")
    runtime: Runtime | None = Field(None, description="What runs the model: ultralytics "
                                    "(torch; any file Ultralytics loads), onnxruntime (.onnx) "
                                    "or ncnn (NAME_ncnn_model/); neither of the last two "
                                    "imports torch. Left out: the one the file needs.")
    imgsz: int = Field(640, ge=64, le=1920, multiple_of=32, description="Inference size.")
    conf: float = Field(DEFAULT_CONF, gt=0, lt=1, description="Operating point: a track counts "
                        "as a person once its median score reaches this (Frigate's threshold); "
                        "eval scores stills at it. Left out, load_config takes the model's own "
                        "calibrated point: its signed entry's (NAME.pt.sig by a key of "
                        "trusted_keys), else the manifest.yaml's beside the weights, else the "
                        "default one's (operating_conf, measured with `pondwatch-edge eval`), "
                        "else 0.25 (person-offline's).")
    conf_water: float | None = Field(
        None, gt=0, lt=1, description="Operating point for people whose feet are in the water "
        "zone (swimmers show head and shoulders only, so the model is less sure of them). Left "
        "out with conf also left out: the model's own (operating_conf_water in its manifest "
        "entry); otherwise conf.")
    tracker: str = Field("pondwatch.yaml", description="Tracker config: edge/vision/trackers/ "
                         "(pondwatch.yaml), an Ultralytics one (bytetrack.yaml) or a path.")
    labels: dict[str, list[str]] = Field(
        default_factory=lambda: {"person": ["person"]},
        description="For each meaning (person, child, lifebuoy, …) the model class names.")
    zones_region: bool = Field(True, description="Detect on the zones' bounding region "
                               "(cropped, scaled to imgsz) instead of the whole frame.")
    zoom_windows: int = Field(2, ge=0, le=8, description="Zoom windows per frame around "
                              "small, unsure detections (0: off).")
    zoom_imgsz: int = Field(320, ge=64, le=1280, multiple_of=32,
                            description="Inference size of each zoom window.")
    zoom_below_px: float = Field(64.0, gt=0, le=1920, description="Zoom on detections "
                                 "shorter than this many model-input pixels.")
    zoom_below_conf: float = Field(0.5, gt=0, le=1, description="Zoom on detections "
                                   "below this confidence.")
    min_area: float = Field(0.0, ge=0, le=1, description="Smallest box, share of the frame.")
    max_area: float = Field(0.9, gt=0, le=1, description="Largest box, share of the frame.")
    min_ratio: float = Field(0.1, gt=0, le=20, description="Smallest box width/height.")
    max_ratio: float = Field(5.0, gt=0, le=20, description="Largest box width/height.")
    trusted_keys: list[Annotated[str, Field(min_length=1, max_length=400)]] = Field(
        default_factory=list, max_length=MAX_TRUSTED_KEYS,
        description="Public model keys the node trusts (the county's, from `pondwatch-edge "
        "model keygen`): `ed25519:BASE64` or the path of its .pub file. A model file loads "
        "only when PondWatch's own manifest pins its sha256 or a key listed here signed it "
        "(NAME.pt.sig beside it).")

    def conf_at(self, zone: str | None) -> float:
        """The operating point for a person whose feet are in this zone."""
        return self.conf_water if zone == "water" and self.conf_water is not None else self.conf

    @model_validator(mode="after")
    def _needs_person(self) -> ModelConfig:
        """Refuse a label map that cannot find people, and crossed filter bounds."""
        if not self.labels.get("person") and not self.labels.get("child"):
            raise ValueError("labels must map 'person' (or 'child') to at least one class name")
        if self.min_area >= self.max_area or self.min_ratio >= self.max_ratio:
            raise ValueError("min_area/min_ratio must be below max_area/max_ratio")
        if self.runtime not in (None, "ultralytics", runtime_for(self.path)):
            need = {"onnxruntime": "an .onnx file", "ncnn": "an NAME_ncnn_model/ folder"}
            raise ValueError(f"runtime {self.runtime} needs {need[self.runtime]}, "
                             f"not {self.path}")
        return self


class Zones(StrictModel):
    """Polygons in normalised frame coordinates."""

    water: list[Point] = Field(description="The water surface.")
    bank: list[Point] = Field(default_factory=list, description="The bank near the water.")

    @model_validator(mode="after")
    def _polygons(self) -> Zones:
        """Refuse a zone polygon with fewer than three points."""
        for name in ("water", "bank"):
            poly = getattr(self, name)
            if poly and len(poly) < 3:
                raise ValueError(f"zone {name} needs at least 3 points, got {len(poly)}")
        return self


class Reference(StrictModel):
    """A known height seen standing at one place in the frame."""

    foot: Point = Field(description="Foot point, normalised.")
    head: Point = Field(description="Head point, normalised.")
    height_m: float = Field(gt=0.3, lt=2.5, description="Real height in metres.")

    @model_validator(mode="after")
    def _upright(self) -> Reference:
        """Refuse a reference whose head is not above its foot."""
        if self.head[1] >= self.foot[1]:
            raise ValueError("head must be above foot (smaller y)")
        return self


class Stature(StrictModel):
    """Calibration for body height."""

    references: list[Reference] = Field(default_factory=list, description="Two or more.")
    child_max_m: float = Field(1.45, gt=0.5, lt=2.0, description="At or below: a child.")

    @model_validator(mode="after")
    def _enough(self) -> Stature:
        """Refuse a calibration that cannot be fitted."""
        if len(self.references) == 1:
            raise ValueError("references needs two or more entries at different rows (or none)")
        if self.references and len({round(r.foot[1], 3) for r in self.references}) < 2:
            raise ValueError("references must stand at two or more different foot rows")
        return self


class Rules(StrictModel):
    """Timing of the per-track rules."""

    dwell_s: float = Field(1.0, ge=0, le=60, description="Seconds in a zone before an alert.")
    clear_s: float = Field(10.0, gt=0, le=600, description="Seconds gone before the event ends.")
    confirm_frames: int = Field(3, ge=1, le=30, description="Confident frames to confirm a track.")
    reannounce_s: float = Field(120.0, ge=10, le=3600,
                                description="A child who stays is announced again this often.")
    submerged_s: float = Field(4.0, ge=1, le=60,
                               description="Vanished inside the water this long: submerged.")
    idle_fps: float = Field(0.2, gt=0, le=30, description="Detection rate while nothing moves "
                            "(any motion wakes the detector at once): 0.2 keeps an idle node "
                            "under 10 % of a core (bench/edge_pipeline.py --still-only).")
    still_learn_s: float = Field(
        180.0, ge=0, le=86400, description="A person-like box in a zone that neither moves nor "
        "changes for this long is learned as background (a post, a scarecrow, a net) until it "
        "changes; 0: never learn.")


class Equipment(StrictModel):
    """One rescue-kit item watched in a region of the frame."""

    item: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                      description="lifebuoy, sign, rope, poles.")
    roi: tuple[Unit, Unit, Unit, Unit] = Field(description="x, y, w, h normalised.")
    reference: str | None = Field(None, description="Reference image written by enrol.")
    missing_after_s: float = Field(600.0, ge=0, le=86400, description="Absence before an event.")
    check_every_s: float = Field(30.0, gt=0, le=3600, description="How often to check.")

    @model_validator(mode="after")
    def _inside(self) -> Equipment:
        """Refuse an equipment area outside the frame."""
        x, y, w, h = self.roi
        if w <= 0 or h <= 0 or x + w > 1.0001 or y + h > 1.0001:
            raise ValueError("roi must have positive size and lie inside the frame")
        return self


class Mqtt(StrictModel):
    """Broker connection."""

    url: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://",
                     description="mqtt://host:port or mqtts://host:port.")
    topic_prefix: str = Field(DEFAULT_PREFIX, description="Topic prefix.")
    username: str | None = Field(None, description="Defaults to the node id.")
    password_env: str = Field("PONDWATCH_MQTT_PASSWORD",
                              description="Environment variable holding the password.")
    password_file: str | None = Field(None, description="File (systemd credential) with it.")
    ca_file: str | None = Field(None, description="CA certificate for mqtts.")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive.")


class Gpio(StrictModel):
    """BCM pin numbers of the local warning hardware; omit what is not fitted."""

    horn: int | None = Field(None, ge=0, le=27, description="Horn relay output.")
    light: int | None = Field(None, ge=0, le=27, description="Warning light relay output.")
    status_led: int | None = Field(None, ge=0, le=27, description="Status LED output.")
    sos_button: int | None = Field(None, ge=0, le=27, description="SOS button input (to GND).")
    pir: int | None = Field(None, ge=0, le=27, description="PIR motion sensor input.")

    @model_validator(mode="after")
    def _distinct(self) -> Gpio:
        """Refuse one GPIO pin used by two devices."""
        used: dict[int, str] = {}
        for name, pin in self.model_dump().items():
            if pin is None:
                continue
            if pin in used:
                raise ValueError(f"{name} and {used[pin]} both use GPIO {pin}")
            used[pin] = name
        return self


class WarningConfig(StrictModel):
    """Local warning on the spot: horn relay, flashing light and the spoken warning."""

    voice: str | None = Field(None, description="WAV file to play; omitted: the built-in "
                              "Mandarin warning edge/warning/assets/warning_zh.wav.")
    audio_device: str | None = Field(None, max_length=64,
                                     description="ALSA device for aplay -D (default device).")
    repeat_s: float = Field(8.0, ge=1, le=600,
                            description="Seconds between announcements while danger stays.")
    max_repeats: int = Field(10, ge=1, le=100,
                             description="Cap on announcements (horn + voice) per event.")
    horn_s: float = Field(3.0, ge=0, le=60,
                          description="Horn relay on this long at each announcement.")
    flash_s: float = Field(0.5, ge=0.1, le=5, description="Half period of the flashing light.")
    light_max_s: float = Field(900.0, ge=10, le=86400,
                               description="The light stops flashing after this long.")


class HealthConfig(StrictModel):
    """Heartbeats, logs and remote commands."""

    interval_s: float = Field(30.0, ge=5, le=3600, description="Seconds between heartbeats.")
    log_file: str | None = Field(None, description="Log file for the logs command when "
                                 "journalctl is not available.")
    commands_seen: str | None = Field(None, description="Where seen command ids are kept; "
                                      "omitted: commands-seen.json beside the outbox.")


class SmsConfig(StrictModel):
    """Last-resort text messages through a 4G modem when the data link is down."""

    enabled: bool = Field(False, description="Text critical events that stay undelivered.")
    port: str = Field("/dev/ttyUSB2", min_length=1, description="Modem AT command serial port.")
    baud: int = Field(115200, ge=1200, le=4000000, description="Serial speed.")
    numbers: list[Annotated[str, Field(pattern=r"^\+?[0-9]{5,20}$")]] = Field(
        default_factory=list, max_length=10, description="Phone numbers to text.")
    after_s: float = Field(60.0, ge=5, le=3600,
                           description="Undelivered this long before texting.")
    encoding: Literal["ucs2", "gsm"] = Field(
        "ucs2", description="ucs2 for Chinese text, gsm for plain ASCII.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Wait for each modem answer.")
    retry_s: float = Field(60.0, ge=1, le=3600, description="Wait after a modem failure.")

    @model_validator(mode="after")
    def _numbers(self) -> SmsConfig:
        """Refuse SMS enabled without a number."""
        if self.enabled and not self.numbers:
            raise ValueError("sms.enabled needs at least one number")
        return self


class DeployConfig(StrictModel):
    """Models pushed by the server (model_update), and frames sent back for training."""

    server_url: str | None = Field(
        None, pattern=r"^https?://", description="Base URL of the PondWatch server; only "
        "model downloads under it are accepted, and only it gets the node's credentials. "
        "Unset: model_update is refused.")
    ca_file: str | None = Field(None, description="CA bundle for an https server_url.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Connect/read timeout.")
    allow_http: bool = Field(
        False, description="Development only: accept a plain-http server_url (a model download "
        "and its token in clear text). Production nodes use https.")
    learning_frames: bool = Field(
        False, description="Opt-in: send each critical event's person boxes and unannotated "
        "frame, so the constables' verdicts can train the next model (images that may show "
        "minors: kept like snapshots, and exported only by an admin). Off by default.")


    @model_validator(mode="after")
    def _https(self) -> DeployConfig:
        """Refuse a plain-http server_url unless allow_http says this is development."""
        if self.server_url and self.server_url.startswith("http://") and not self.allow_http:
            raise ValueError("server_url must be https:// (allow_http: true only in "
                             "development)")
        return self


class NodeConfig(StrictModel):
    """Everything one pond node needs."""

    node_id: str = Field(pattern=f"^{NODE_ID_PATTERN}$",
                         description="Unique node id (not `pondwatch` or `pondwatch-*`: the "
                         "server's broker accounts).")
    _not_reserved = field_validator("node_id")(check_node_id)
    pond_id: str = Field(min_length=1, max_length=64, description="The pond it watches.")
    camera: CameraConfig = Field(default_factory=CameraConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    zones: Zones
    stature: Stature = Field(default_factory=Stature)
    rules: Rules = Field(default_factory=Rules)
    equipment: list[Equipment] = Field(default_factory=list)
    mqtt: Mqtt = Field(default_factory=Mqtt)
    outbox: str = Field("/var/lib/pondwatch/outbox.db", description="SQLite outbox path.")
    snapshot_retention_days: float = Field(
        30, gt=0, le=365, description="Snapshots and frames still unsent in the outbox after "
        "this long are deleted (the event itself is still sent); images may show minors.")
    gpio: Gpio = Field(default_factory=Gpio)
    warning: WarningConfig = Field(default_factory=WarningConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    sms: SmsConfig = Field(default_factory=SmsConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)

    @model_validator(mode="after")
    def _unique_items(self) -> NodeConfig:
        """Refuse the same kit item listed twice."""
        items = [e.item for e in self.equipment]
        dupes = sorted({i for i in items if items.count(i) > 1})
        if dupes:
            raise ValueError(f"equipment lists {', '.join(dupes)} more than once")
        frame_s = 1.0 / self.camera.fps
        for e in self.equipment:   # checked >= 3 times within missing_after_s (edge/equipment)
            if 0 < e.missing_after_s < 3 * frame_s:
                raise ValueError(
                    f"equipment {e.item}: missing_after_s {e.missing_after_s:g} s is too short "
                    f"to check it three times at camera.fps {self.camera.fps:g} (needs at "
                    f"least {3 * frame_s:g} s, or 0 for 'missing at the first absent check')")
        return self

    @property
    def calibrated(self) -> bool:
        """True when stature can be estimated."""
        return len(self.stature.references) >= 2


def _resolve(base: Path, value: str) -> str:
    """A config-relative path made absolute; devices and URLs stay as they are."""
    if "://" in value or value.isdigit() or value.startswith("/dev/") or value == "picamera2":
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node config; relative paths are taken from the config's folder."""
    path = Path(path)
    raw = read_yaml(path, ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    try:
        cfg = NodeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(field_errors(exc, f"{path}:", first_only=False)) from exc
    base = path.resolve().parent
    updates: dict[str, Any] = {"outbox": _resolve(base, cfg.outbox)}
    src = cfg.camera.source
    if isinstance(src, str):
        updates["camera"] = cfg.camera.model_copy(update={"source": _resolve(base, src)})
    model_update: dict[str, Any] = {
        "path": _resolve(base, cfg.model.path),
        "trusted_keys": [k if k.startswith(KEY_PREFIX) else _resolve(base, k)
                         for k in cfg.model.trusted_keys]}
    if "conf" not in (raw.get("model") or {}):
        keyed = cfg.model.model_copy(update={"trusted_keys": model_update["trusted_keys"]})
        model_update["conf"] = (signed_operating_conf(model_update["path"], keyed)
                                or operating_conf(model_update["path"]) or DEFAULT_CONF)
        if "conf_water" not in (raw.get("model") or {}):
            model_update["conf_water"] = operating_conf_water(model_update["path"])
    updates["model"] = cfg.model.model_copy(update=model_update)
    updates["equipment"] = [
        e.model_copy(update={"reference": _resolve(base, e.reference)}) if e.reference else e
        for e in cfg.equipment
    ]
    if cfg.warning.voice:
        updates["warning"] = cfg.warning.model_copy(
            update={"voice": _resolve(base, cfg.warning.voice)})
    health_paths = {name: _resolve(base, value) for name in ("log_file", "commands_seen")
                    if (value := getattr(cfg.health, name))}
    updates["health"] = cfg.health.model_copy(update=health_paths)
    return cfg.model_copy(update=updates)


def config_hash(path: str | Path) -> str:
    """Short sha256 of the config file, reported in health."""
    return sha256_file(path)[:12]

"""Server configuration: the server.yaml schema from DESIGN.md as strict pydantic models."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol.signing import KEY_PREFIX, MAX_TRUSTED_KEYS, SignatureError, trusted_keys
from protocol.topics import DEFAULT_PREFIX
from protocol.validation import StrictModel, field_errors, read_yaml
from server.core import secret_strength
from server.core.errors import ServerError

log = logging.getLogger(__name__)

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "changeme", "secret", "placeholder", "dev"})
Target = Literal["constable", "backup", "area_officers", "duty_desk", "technicians"]


class ConfigError(ServerError, ValueError):
    """A server config that cannot be used; the message names the file and field."""


class MqttSettings(StrictModel):
    """How the server reaches the broker."""

    url: str | None = Field(
        None, description="mqtt://host:port or mqtts://…; omitted: a private loopback Mosquitto.")
    topic_prefix: str = Field(DEFAULT_PREFIX, min_length=1, description="Topic prefix.")
    client_id: str = Field("pondwatch-server", min_length=1, max_length=64,
                           description="Stable client id so the broker keeps the session.")
    session_expiry_s: int = Field(7 * 86400, ge=0, le=2**32 - 1,
                                  description="How long the broker queues for us while away "
                                  "(a replica in a shared_group defaults to 0).")
    receive_maximum: int = Field(100, ge=1, le=65535,
                                 description="Unacknowledged QoS 1 messages in flight to us.")
    username: str | None = Field(None, description="Broker account (env "
                                 "PONDWATCH_MQTT_USERNAME overrides it: one per replica); "
                                 "password from env PONDWATCH_MQTT_PASSWORD.")
    ca_file: Path | None = Field(None, description="CA bundle for mqtts://.")
    shared_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]+$",
        description="MQTT v5 shared subscription group for several server replicas.")
    data_dir: Path | None = Field(
        None, description="Persistence folder of the private broker (default: a 'mosquitto' "
        "folder beside the SQLite database, else a temporary one).")
    private_port: int | None = Field(
        None, ge=1024, le=65535,
        description="Loopback port of the private broker (default: any free port).")


class HttpSettings(StrictModel):
    """The web side."""

    bind: str = Field("127.0.0.1:8080", pattern=r"^[^:]+:\d{1,5}$", description="host:port.")
    public_url: str = Field("http://127.0.0.1:8080", pattern=r"^https?://",
                            description="Base of the links in pages.")
    secure_cookies: bool = Field(False, description="Mark session cookies Secure (HTTPS).")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list, description="Reverse proxies (addresses or CIDR) whose "
        "X-Forwarded-For names the client; the login throttle counts by that client address.")


class EscalationStep(StrictModel):
    """One step of an escalation policy."""

    after_s: float = Field(ge=0, le=86400, description="Seconds after the alert opened.")
    targets: list[Target] = Field(min_length=1, description="Who is paged at this step.")


def _default_steps() -> list[EscalationStep]:
    """Constable at once; +backup and area officer at 60 s; duty desk at 180 s."""
    return [
        EscalationStep(after_s=0, targets=["constable"]),
        EscalationStep(after_s=60, targets=["constable", "backup", "area_officers"]),
        EscalationStep(after_s=180, targets=["duty_desk"]),
    ]


class EscalationPolicy(StrictModel):
    """Steps for an unacknowledged critical alert, then repeats."""

    steps: list[EscalationStep] = Field(default_factory=_default_steps, min_length=1,
                                        description="Steps in time order.")
    repeat_s: float = Field(180, gt=0, le=86400,
                            description="After the last step, page its targets again this often.")
    on_scene_timeout_s: float = Field(
        300, gt=0, le=86400, description="Acknowledged but nobody on scene (已到场) after this "
        "long: page the constable again and the next step (the '5' of 1-3-5).")

    @model_validator(mode="after")
    def _ordered(self) -> EscalationPolicy:
        """Steps must be in time order."""
        times = [s.after_s for s in self.steps]
        if times != sorted(times):
            raise ValueError("steps must be in increasing after_s order")
        return self


class EscalationSettings(StrictModel):
    """Escalation policies by name; grids pick one, else `default`."""

    policies: dict[str, EscalationPolicy] = Field(
        default_factory=lambda: {"default": EscalationPolicy.model_validate({})},
        description="Named policies; `default` is used when a grid names none.")
    incident_clear_s: float = Field(
        600, ge=10, le=86400, description="A pond's critical events fold into its unresolved "
        "incident until nothing was heard of it (no event, no end of one) for this long; "
        "then a new visit opens a new alert.")

    @model_validator(mode="after")
    def _has_default(self) -> EscalationSettings:
        """A default policy must exist."""
        if "default" not in self.policies:
            raise ValueError("policies must include 'default'")
        return self

    def policy(self, name: str) -> EscalationPolicy:
        """A named policy, or the default."""
        return self.policies.get(name) or self.policies["default"]


class PagingSettings(StrictModel):
    """How pages (and the morning patrol list) go out on each person's channels."""

    attach_images: list[str] = Field(
        default_factory=list, max_length=32,
        description="Channel kinds (Apprise URL schemes, e.g. mailto, json) allowed to carry "
        "the snapshot as an attachment; the snapshot may show minors, so by default no "
        "channel does and every page carries only the signed link.")
    retries: int = Field(1, ge=0, le=5, description="Tries again on the same channel after a "
                         "failure (an error answer or a timeout) before the person's next "
                         "channel is tried.")
    retry_wait_s: float = Field(1.0, ge=0, le=30,
                                description="Wait before trying a channel again.")
    quiet_hours: str | None = Field(
        None, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Beijing hours (HH:MM-HH:MM, may span midnight) when non-urgent task pages "
        "(missing kit, camera faults, offline nodes, false alarms) wait until the end; urgent "
        "pages and the patrol list are never held. Unset: tasks page at any hour.")

    @field_validator("attach_images")
    @classmethod
    def _schemes(cls, v: list[str]) -> list[str]:
        """Lower-case URL schemes without '://'."""
        out = [s.strip().lower().removesuffix("://") for s in v]
        bad = [s for s in out if not s or not s.isalnum()]
        if bad:
            raise ValueError(f"not a channel kind (an Apprise URL scheme): {bad}")
        return out


class PatrolSettings(StrictModel):
    """The morning patrol list (巡查单) each constable and area officer gets."""

    enabled: bool = Field(True, description="Send the list every morning.")
    at: str = Field("07:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                    description="Beijing time the list goes out (HH:MM).")
    late_by_min: int = Field(240, ge=0, le=1440, description="A server started later than "
                             "this after `at` records the day as skipped instead of sending "
                             "a stale list.")
    lookback_days: int = Field(7, ge=1, le=60, description="Days back a starting server "
                               "records as skipped when it sent nothing on them.")


class GateSet(StrictModel):
    """A validation set a model must pass before it may be assigned to nodes."""

    name: str = Field(min_length=1, max_length=64,
                      description="Set name as recorded by `pondwatch-edge model train/eval`.")
    kind: Literal["water", "land", "scenes"] = Field(
        description="Real people in water, real people on land, or generated scenes.")
    floor: float = Field(ge=0, le=1, description="Lowest recall accepted.")
    max_false_per_image: float | None = Field(
        None, ge=0, le=100, description="Most false detections per image accepted (None: no "
        "ceiling); keeps a model from buying recall with false alarms.")


def _default_gate() -> list[GateSet]:
    """Real people in water and real people on land, each no worse than the shipped
    person-offline (measured with `pondwatch-edge eval`, models/README.md: water recall 0.529;
    land recall 0.719 at 0.41 false detections per image), so the county can always go back to
    it and a fine-tune that forgets standing people, or finds them only among many false
    alarms, is refused. The generated bank scenes stay as a third check."""
    return [GateSet(name="water-people-valid", kind="water", floor=0.50),
            GateSet(name="land-people-valid", kind="land", floor=0.719, max_false_per_image=0.41),
            GateSet(name="scenes-land", kind="scenes", floor=0.95)]


class ModelSettings(StrictModel):
    """Detector models the server hands out to nodes."""

    dir: Path | None = Field(None, description="Folder holding uploaded models (default: "
                             "models/ beside an SQLite database, else /var/lib/pondwatch/models).")
    gate: list[GateSet] = Field(default_factory=_default_gate,
                                description="Recall floors every assigned model must reach.")
    pond_floors: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Pond id -> set name -> a stricter (or looser) floor "
        "for that pond.")
    trusted_keys: list[Annotated[str, Field(min_length=1, max_length=400)]] = Field(
        default_factory=list, max_length=MAX_TRUSTED_KEYS,
        description="Public model keys (the county's, from `pondwatch-edge model keygen`): "
        "`ed25519:BASE64` or the path of its .pub file. An upload must carry a signature by "
        "one of them, and the gate reads only the figures it signed. Empty: no model can be "
        "uploaded.")
    download_ttl_s: int = Field(3600, ge=60, le=86400,
                                description="How long a model_update command may wait.")

    @model_validator(mode="after")
    def _both_kinds(self) -> ModelSettings:
        """At least one water set and one land set; pond floors name known sets."""
        kinds = {g.kind for g in self.gate}
        if not {"water", "land"} <= kinds:
            raise ValueError("gate needs at least one 'water' and one 'land' set (real people)")
        names = {g.name for g in self.gate}
        for pond, floors in self.pond_floors.items():
            unknown = set(floors) - names
            if unknown:
                raise ValueError(f"pond_floors.{pond}: unknown set(s) {sorted(unknown)}")
        try:
            trusted_keys(self.trusted_keys)
        except SignatureError as exc:
            raise ValueError(str(exc)) from exc
        return self


class ServerConfig(StrictModel):
    """The whole server.yaml."""

    environment: Literal["dev", "production"] = Field(
        "production", description="dev allows a generated secret key and plain cookies.")
    database: str = Field("sqlite:///pondwatch-server.db",
                          description="SQLAlchemy URL: sqlite:///… or postgresql+psycopg://…")
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings.model_validate({}),
                               description="Broker.")
    http: HttpSettings = Field(default_factory=lambda: HttpSettings.model_validate({}),
                               description="Web side.")
    registry: Path | None = Field(None, description="Registry YAML/CSV imported at start.")
    secret_key: str | None = Field(
        None, repr=False, description="Signing key; prefer env PONDWATCH_SECRET_KEY or "
        "secret_key_file. Placeholders are refused outside dev.")
    secret_key_file: Path | None = Field(None, description="File holding the signing key.")
    snapshot_dir: Path | None = Field(None, description="Unused; snapshots live in the database.")
    snapshot_retention_days: float = Field(30, gt=0, le=3650,
                                           description="Snapshots are deleted after this.")
    link_ttl_s: int = Field(24 * 3600, ge=60, le=30 * 86400,
                            description="How long an acknowledge link stays valid.")
    session_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 86400, description="Login lifetime.")
    link_snapshot_grace_s: int = Field(
        900, ge=0, le=7 * 86400, description="Ignored: an acknowledge link stops, snapshot "
        "included, when its alert is resolved (kept so configs that set it still load).")
    snapshot_roles: list[str] = Field(
        default_factory=lambda: ["admin", "constable", "area_officer", "duty_desk"],
        description="Logged-in roles allowed to see snapshots (they may show minors).")
    paging_workers: int = Field(8, ge=1, le=256, description="Parallel page deliveries.")
    paging: PagingSettings = Field(default_factory=lambda: PagingSettings.model_validate({}),
                                   description="Channels: images, retries, fall-through.")
    patrol: PatrolSettings = Field(default_factory=lambda: PatrolSettings.model_validate({}),
                                   description="The morning patrol list (巡查单).")
    false_alarm_budget: float = Field(
        1.0, ge=0, le=100, description="False alarms (误报) per node per week above which the "
        "report flags the node for a technician.")
    ingest_queue: int = Field(1000, ge=10, le=1_000_000, description="Ingest hand-off queue.")
    escalation: EscalationSettings = Field(
        default_factory=lambda: EscalationSettings.model_validate({}),
        description="Escalation policies.")
    task_repeat_s: float = Field(0, ge=0, le=7 * 86400,
                                 description="Re-page non-urgent tasks this often; 0 = once.")
    heartbeat_interval_s: float = Field(
        30, ge=1, le=86400,
        description="Heartbeat interval assumed for nodes whose heartbeat does not say it.")
    heartbeat_misses: int = Field(
        3, ge=1, le=100, description="Missed heartbeats after which a node counts as offline.")
    metrics_token: str | None = Field(
        None, repr=False, description="Bearer token /metrics requires when set; prefer env "
        "PONDWATCH_METRICS_TOKEN or metrics_token_file. Unset: /metrics is open.")
    metrics_token_file: Path | None = Field(None, description="File holding the metrics token.")
    models: ModelSettings = Field(default_factory=lambda: ModelSettings.model_validate({}),
                                  description="Models for the nodes: storage, gate, downloads.")
    health_history_days: float = Field(
        7, gt=0, le=366, description="Heartbeat samples kept for the fleet page's history.")
    map_tile_url: str | None = Field(
        None, pattern=r"^(https?://|/)[^\s\"'<>]*\{z\}[^\s\"'<>]*$",
        description="Map tiles for the pond map, e.g. http://tiles.local/{z}/{x}/{y}.png "
        "(must contain {z}, {x} and {y}); unset: a plain plot of the pond coordinates.")

    @field_validator("map_tile_url")
    @classmethod
    def _tile_placeholders(cls, v: str | None) -> str | None:
        """A tile URL names the zoom and both tile coordinates."""
        if v is not None and not all(p in v for p in ("{z}", "{x}", "{y}")):
            raise ValueError("must contain {z}, {x} and {y}")
        return v

    def resolved_secret(self) -> bytes:
        """The signing key: env, file, or config; a random one only in dev."""
        value = os.environ.get("PONDWATCH_SECRET_KEY") or self.secret_key
        if not value and self.secret_key_file:
            try:
                mode = self.secret_key_file.stat().st_mode
                if mode & 0o077:
                    raise ConfigError(f"secret_key_file: {self.secret_key_file} may be read by "
                                      f"its group or others (mode {oct(mode & 0o777)}); chmod "
                                      "600 it (it signs sessions and acknowledge links)")
                value = self.secret_key_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"secret_key_file: cannot read: {exc}") from exc
        weak = secret_strength.weakness(value) if value else "not set"
        if value and weak is None:
            return value.encode()
        if self.environment != "dev":
            raise ConfigError(f"secret_key: {weak}; set PONDWATCH_SECRET_KEY or secret_key_file "
                              "to a random key outside environment: dev (e.g. python3 -c "
                              "'import secrets; print(secrets.token_urlsafe(32))')")
        if value and value.lower() not in PLACEHOLDER_SECRETS and len(value) >= 16:
            log.warning("secret key is weak (%s); refused outside environment: dev", weak)
            return value.encode()
        log.warning("no usable secret key; generated a random one (links die with this process)")
        return secrets.token_bytes(32)

    def resolved_metrics_token(self) -> str | None:
        """The /metrics bearer token from env, file or config; None leaves /metrics open."""
        value = os.environ.get("PONDWATCH_METRICS_TOKEN") or self.metrics_token
        if not value and self.metrics_token_file:
            try:
                value = self.metrics_token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"metrics_token_file: cannot read: {exc}") from exc
            if not value:
                raise ConfigError(f"metrics_token_file: {self.metrics_token_file} is empty")
        if not value:
            return None
        if value.lower() in PLACEHOLDER_SECRETS or len(value) < 16:
            raise ConfigError("metrics_token: needs at least 16 characters and no placeholder")
        return value

    @property
    def bind_host(self) -> str:
        """Host part of http.bind."""
        return self.http.bind.rsplit(":", 1)[0]

    @property
    def bind_port(self) -> int:
        """Port part of http.bind."""
        return int(self.http.bind.rsplit(":", 1)[1])


def _relative(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve relative file paths and SQLite URLs against the config's folder."""
    for key in ("registry", "secret_key_file", "metrics_token_file", "snapshot_dir"):
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            data[key] = str(base / data[key])
    db = data.get("database")
    if isinstance(db, str) and db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        rest = db[len("sqlite:///"):]
        if rest and rest != ":memory:":
            data["database"] = f"sqlite:///{base / rest}"
    mqtt = data.get("mqtt")
    if (isinstance(mqtt, dict) and isinstance(mqtt.get("data_dir"), str)
            and not Path(mqtt["data_dir"]).is_absolute()):
        data["mqtt"] = dict(mqtt, data_dir=str(base / mqtt["data_dir"]))
    models = data.get("models")
    if isinstance(models, dict) and isinstance(models.get("trusted_keys"), list):
        data["models"] = dict(models, trusted_keys=[
            str(base / k) if isinstance(k, str) and not k.startswith(KEY_PREFIX)
            and not Path(k).is_absolute() else k for k in models["trusted_keys"]])
    return data


def parse_config(data: Any, source: str = "server config",
                 base: Path | None = None) -> ServerConfig:
    """Validate a mapping as a ServerConfig; raise ConfigError naming the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    if base is not None:
        data = _relative(dict(data), base)
    try:
        cfg = ServerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(field_errors(exc, f"{source}:", top="config")) from exc
    cfg.resolved_secret()
    cfg.resolved_metrics_token()
    return cfg


def load_config(path: str | Path) -> ServerConfig:
    """Read and validate server.yaml; raise ConfigError naming the file and field."""
    p = Path(path)
    return parse_config(read_yaml(p, ConfigError), str(p), p.parent.resolve())

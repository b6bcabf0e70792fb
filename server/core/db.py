"""Database models and engine: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns timezone-aware UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Aware → naive UTC before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Naive UTC → aware UTC after loading."""
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Station(Base):
    """A police station with its duty desk and area officers."""

    __tablename__ = "stations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    duty_desk: Mapped[list[str]] = mapped_column(JSON, default=list)
    area_officers: Mapped[list[str]] = mapped_column(JSON, default=list)


class Grid(Base):
    """A grid area (网格) with its constable and backup."""

    __tablename__ = "grids"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    constable_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    backup_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy: Mapped[str] = mapped_column(String(64), default="default")


class Pond(Base):
    """A hazardous water."""

    __tablename__ = "ponds"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    village: Mapped[str] = mapped_column(String(200), default="")
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id"))
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)


class Node(Base):
    """A camera node and what it last said about itself."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pond_id: Mapped[str] = mapped_column(ForeignKey("ponds.id"))
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    state_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Why the node went offline when it said so itself ("planned" on a clean stop).
    state_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    health_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # When the node counts as offline unless heard before (3 missed heartbeats).
    watch_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True,
                                                           index=True)


class Person(Base):
    """Someone who can be paged."""

    __tablename__ = "people"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    notify: Mapped[list[str]] = mapped_column(JSON, default=list)
    stations: Mapped[list[str]] = mapped_column(JSON, default=list,  # technicians only
                                                server_default="[]")


class RosterEntry(Base):
    """Who is primary or backup for a grid during a time range."""

    __tablename__ = "rosters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    grid_id: Mapped[str] = mapped_column(ForeignKey("grids.id"), index=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"))
    role: Mapped[str] = mapped_column(String(16))  # primary | backup
    starts: Mapped[datetime] = mapped_column(UTCDateTime)
    ends: Mapped[datetime] = mapped_column(UTCDateTime)


class EventRow(Base):
    """One event from a node, stored once per event id."""

    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    pond_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), nullable=True, index=True)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)


class Snapshot(Base):
    """The JPEG of one event, keyed by the node that sent it and the event id (a node can
    never fill another node's slot); may arrive before or after its event."""

    __tablename__ = "snapshots"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Alert(Base):
    """Events of one pond and kind folded into something a person acts on."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pond_id: Mapped[str] = mapped_column(ForeignKey("ponds.id"), index=True)
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64), default="")
    severity: Mapped[str] = mapped_column(String(16))
    urgent: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    on_scene_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    policy: Mapped[str] = mapped_column(String(64), default="default")
    step: Mapped[int] = mapped_column(Integer, default=0)
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    snapshot_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Who is involved: True a child, False an adult, None not known (critical kinds).
    child: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    people_seen: Mapped[int | None] = mapped_column(Integer, nullable=True)  # most boxes seen
    # The kind before the last upgrade (the incident got worse) and when.
    upgraded_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    upgraded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the escalation steps' after_s count from (opened_at; an upgrade re-bases it; None:
    # re-base when the next step fires).
    steps_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When someone last acted (ack, on scene, resolve): pages queued before it are skipped.
    acted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_alerts_fold", "pond_id", "kind", "subject", "state"),)


class TimelineEntry(Base):
    """A state change or delivery attempt of an alert."""

    __tablename__ = "timeline"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))  # state | delivery | event | note
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    person_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class Delivery(Base):
    """One page to one person for one escalation step; survives restarts until sent."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    person_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    # While 'sending': which server replica holds it and until when; an expired lease
    # is handed back to 'pending' by any replica.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # step | upgrade (it got worse) | on_scene_overdue (acknowledged, nobody on scene in time)
    reason: Mapped[str] = mapped_column(String(16), default="step", server_default="step")


class PatrolRun(Base):
    """One morning patrol list (巡查单) for one person and one Beijing day: sent, failed or
    skipped (the server was not running at the time), shown on the admin page."""

    __tablename__ = "patrol_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[str] = mapped_column(String(10), index=True)  # Beijing date, YYYY-MM-DD
    person_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # sending | sent | failed | skipped
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ux_patrol_runs_day_person", "day", "person_id", unique=True),)


class Silence(Base):
    """A maintenance window: events are recorded, nobody is paged."""

    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pond_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    starts: Mapped[datetime] = mapped_column(UTCDateTime)
    ends: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")


class EquipmentState(Base):
    """What the server believes about one kit item at one pond."""

    __tablename__ = "equipment"
    pond_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="unknown")  # present|missing|unknown
    since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CommandRow(Base):
    """A command sent to a node and the node's answer."""

    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    cmd: Mapped[str] = mapped_column(String(40))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    result_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HealthSample(Base):
    """One heartbeat's figures, kept for the fleet page's history (bounded retention)."""

    __tablename__ = "health_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    fps: Mapped[float | None] = mapped_column(Float, nullable=True)
    temperature_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    throttled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    outbox_depth: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (Index("ix_health_samples_node_at", "node_id", "at"),)


class User(Base):
    """A web user with a hashed password."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(32), default="admin")
    person_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ServerModel(Base):
    """A detector model an admin uploaded for the nodes, with its validation figures."""

    __tablename__ = "server_models"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    eval: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # the signer's document (protocol.signing): the gate and the nodes read only what it signs
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class ModelDownloadToken(Base):
    """A single-use token a model_update hands one node for one model file (its sha256 kept;
    the token itself only travels in the command)."""

    __tablename__ = "model_download_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModelAssignment(Base):
    """The model a pond's nodes should run; target '*' is every pond without its own."""

    __tablename__ = "model_assignments"
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(ForeignKey("server_models.name"))
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventFrame(Base):
    """The unannotated frame of a critical event (learning loop), keyed like snapshots by
    node and event id; kept like snapshots."""

    __tablename__ = "event_frames"
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class WebSession(Base):
    """One login: the cookie names it, logout or a password change deletes it."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's id
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"),
                                          index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEntry(Base):
    """Something done with data that may show minors, by whom and when: one row per dataset
    export (kept; the export itself falls under snapshot_retention_days)."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL, sane durability, foreign keys, and deleted rows overwritten (secure_delete:
    snapshots may show minors) on every SQLite connection."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL and cross-thread use."""
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessions(engine: Engine) -> sessionmaker[Any]:
    """A session factory that keeps loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def event_snapshot(s: Session, event_id: str | None) -> Snapshot | None:
    """An event's snapshot: the JPEG its own node sent under its id (None when the event or
    the snapshot is missing; another node's JPEG under that id is never it)."""
    ev = s.get(EventRow, event_id) if event_id else None
    if ev is None:
        return None
    return s.get(Snapshot, {"event_id": ev.id, "node_id": ev.node_id})

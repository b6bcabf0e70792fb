"""Registry import: stations, grids, ponds, nodes, people and rosters from YAML or CSV."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import apprise
import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from protocol.topics import NODE_ID_PATTERN, check_node_id
from protocol.validation import StrictModel
from server.core.db import Grid, Node, Person, Pond, RosterEntry, Station
from server.core.errors import ServerError

log = logging.getLogger(__name__)
ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Role = Literal["constable", "area_officer", "duty_desk", "technician", "admin"]
KINDS = ("stations", "grids", "ponds", "nodes", "people", "rosters")


class RegistryError(ServerError, ValueError):
    """A registry file that cannot be imported; names the file, line and field."""

    def __init__(self, file: str, line: int | None, fieldname: str, message: str) -> None:
        """Keep where the problem is for the message and for callers."""
        self.file, self.line, self.field = file, line, fieldname
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: field {fieldname}: {message}")


class _Row(StrictModel):
    """Base of every registry row: strict, trimmed."""

    model_config = ConfigDict(str_strip_whitespace=True)  # merged onto StrictModel's


def _split(value: Any) -> Any:
    """CSV cells hold lists as ';'-separated text."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(";") if v.strip()]
    return value


class StationRow(_Row):
    """A police station."""

    id: str = Field(pattern=ID, description="Station id.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    duty_desk: list[str] = Field(default_factory=list, description="People at the duty desk.")
    area_officers: list[str] = Field(default_factory=list, description="Area officers.")
    _lists = field_validator("duty_desk", "area_officers", mode="before")(
        classmethod(lambda cls, v: _split(v)))


class GridRow(_Row):
    """A grid area."""

    id: str = Field(pattern=ID, description="Grid id.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    station: str = Field(pattern=ID, description="Station the grid belongs to.")
    constable: str | None = Field(None, description="The grid constable's person id.")
    backup: str | None = Field(None, description="The backup person id.")
    policy: str = Field("default", description="Escalation policy name from server.yaml.")


class PondRow(_Row):
    """A hazardous water."""

    id: str = Field(pattern=ID, description="Pond id.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    village: str = Field("", max_length=200, description="Village.")
    grid: str = Field(pattern=ID, description="Grid id.")
    lat: float | None = Field(None, ge=-90, le=90, description="Latitude.")
    lon: float | None = Field(None, ge=-180, le=180, description="Longitude.")


class NodeRow(_Row):
    """A camera node."""

    id: str = Field(pattern=f"^{NODE_ID_PATTERN}$",
                    description="Node id (not `pondwatch` or `pondwatch-*`: server accounts).")
    pond: str = Field(pattern=ID, description="Pond the node watches.")
    _not_reserved = field_validator("id")(check_node_id)


class PersonRow(_Row):
    """Someone who can be paged."""

    id: str = Field(pattern=ID, description="Person id.")
    name: str = Field(min_length=1, max_length=200, description="Name.")
    role: Role = Field(description="constable, area_officer, duty_desk, technician or admin.")
    phone: str | None = Field(None, pattern=r"^\+?[0-9 -]{3,31}$", description="Phone number.")
    notify: list[str] = Field(default_factory=list, description="Apprise URLs.")
    stations: list[str] = Field(
        default_factory=list, description="Technicians only: stations whose camera faults and "
        "offline nodes they are paged for (none: every station without its own technician).")
    _lists = field_validator("notify", "stations", mode="before")(
        classmethod(lambda cls, v: _split(v)))

    @field_validator("stations")
    @classmethod
    def _stations_for_technicians(cls, v: list[str], info: ValidationInfo) -> list[str]:
        """Only technicians are attached to stations."""
        if v and info.data.get("role") != "technician":
            raise ValueError("only a technician is attached to stations")
        return v

    @field_validator("notify")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        """Every entry must be an Apprise URL Apprise can use."""
        for url in v:
            scheme = url.split("://", 1)[0]
            if "://" not in url:
                raise ValueError(f"{url!r} is not an Apprise URL (scheme://…)")
            if not apprise.Apprise().add(url):
                raise ValueError(f"Apprise cannot use the {scheme}:// URL (unknown service or "
                                 "missing parts)")
        return v


class RosterRow(_Row):
    """A duty range for one grid."""

    grid: str = Field(pattern=ID, description="Grid id.")
    person: str = Field(pattern=ID, description="Person on duty.")
    role: Literal["primary", "backup"] = Field(description="primary or backup.")
    starts: datetime = Field(description="Start, ISO 8601 with timezone.")
    ends: datetime = Field(description="End, ISO 8601 with timezone.")

    @field_validator("starts", "ends")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        """Roster times must carry a timezone."""
        if v.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2026-07-01T08:00:00+08:00")
        return v


MODELS: dict[str, type[_Row]] = {
    "stations": StationRow, "grids": GridRow, "ponds": PondRow,
    "nodes": NodeRow, "people": PersonRow, "rosters": RosterRow,
}


@dataclass
class Registry:
    """Validated rows of every kind, each with its source file and line."""

    rows: dict[str, list[tuple[Any, str, int | None]]] = field(
        default_factory=lambda: {k: [] for k in KINDS})
    missing: list[tuple[str, int | None, str, str, str]] = field(default_factory=list)


class _LineLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A YAML loader that records the line of each mapping under '__line__'."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    """A mapping plus the line it starts on."""
    data: dict[str, Any] = loader.construct_mapping(node, deep=True)
    data["__line__"] = node.start_mark.line + 1
    return data


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _validate(reg: Registry, kind: str, raw: dict[str, Any], file: str, line: int | None) -> None:
    """Validate one raw row and add it, or raise RegistryError."""
    raw = {k: v for k, v in raw.items() if k != "__line__"}
    try:
        row = MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or kind
        raise RegistryError(file, line, f"{kind}.{where}", err["msg"]) from exc
    reg.rows[kind].append((row, file, line))


def _read(path: Path, encoding: str = "utf-8", newline: str | None = None) -> str:
    """The text of a registry file; RegistryError when it cannot be read or is not UTF-8."""
    try:
        with path.open(encoding=encoding, newline=newline) as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(str(path), None, "file", f"cannot read: {exc}") from exc


def parse_yaml(path: Path, reg: Registry) -> None:
    """Add the rows of a registry YAML file."""
    try:
        data = yaml.load(_read(path), Loader=_LineLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RegistryError(str(path), mark.line + 1 if mark else None, "yaml", str(exc)) from exc
    if not isinstance(data, dict):
        raise RegistryError(str(path), 1, "top level", "must be a mapping of kinds")
    for key, items in data.items():
        if key == "__line__":
            continue
        if key not in MODELS:
            raise RegistryError(str(path), data["__line__"], key,
                                f"unknown section; expected one of {', '.join(KINDS)}")
        if not isinstance(items, list):
            raise RegistryError(str(path), data["__line__"], key, "must be a list")
        for item in items:
            if not isinstance(item, dict):
                raise RegistryError(str(path), None, key, "every entry must be a mapping")
            _validate(reg, key, item, str(path), item.get("__line__"))


def parse_csv(path: Path, reg: Registry, kind: str | None = None) -> None:
    """Add the rows of one CSV file; its name (e.g. ponds.csv) or a `kind` column says the kind."""
    kind = kind or path.stem.split(".")[0].lower()
    reader = csv.DictReader(io.StringIO(_read(path, "utf-8-sig", newline=""), newline=""))
    for lineno_row in reader:
        line = reader.line_num
        row = {k.strip(): v for k, v in lineno_row.items()
               if k is not None and v not in ("", None)}
        row_kind = row.pop("kind", kind)
        if row_kind not in MODELS:
            raise RegistryError(str(path), line, "kind",
                                f"unknown kind {row_kind!r}; name the file e.g. ponds.csv")
        _validate(reg, row_kind, row, str(path), line)


def parse(path: str | Path) -> Registry:
    """Parse a YAML file, a CSV file, or a folder of CSV/YAML files."""
    p = Path(path)
    reg = Registry()
    files = sorted(p.iterdir()) if p.is_dir() else [p]
    if not p.exists():
        raise RegistryError(str(p), None, "file", "does not exist")
    for f in files:
        if f.suffix.lower() in (".yaml", ".yml"):
            parse_yaml(f, reg)
        elif f.suffix.lower() == ".csv":
            parse_csv(f, reg)
        elif not p.is_dir():
            raise RegistryError(str(f), None, "file", "must end in .yaml, .yml or .csv")
    _check_references(reg)
    return reg


def _check_references(reg: Registry) -> None:
    """Every id a row names must exist in this import (or is checked against the DB later)."""
    ids = {k: {r.id for r, _, _ in reg.rows[k]} for k in KINDS if k != "rosters"}
    for kind in KINDS:
        seen: set[str] = set()
        for row, file, line in reg.rows[kind]:
            rid = getattr(row, "id", None)
            if rid is not None:
                if rid in seen:
                    raise RegistryError(file, line, f"{kind}.id", f"duplicate id {rid!r}")
                seen.add(rid)
    refs = {
        "stations": [("duty_desk", "people"), ("area_officers", "people")],
        "grids": [("station", "stations"), ("constable", "people"), ("backup", "people")],
        "ponds": [("grid", "grids")],
        "nodes": [("pond", "ponds")],
        "people": [("stations", "stations")],
        "rosters": [("grid", "grids"), ("person", "people")],
    }
    for kind, pairs in refs.items():
        for row, file, line in reg.rows[kind]:
            for fname, target in pairs:
                value = getattr(row, fname)
                for v in value if isinstance(value, list) else [value]:
                    if v is not None and v not in ids[target]:
                        reg.missing.append((file, line, f"{kind}.{fname}", target, v))


_TABLES = {"stations": Station, "grids": Grid, "ponds": Pond, "nodes": Node, "people": Person}


def _resolve_missing(session: Session, reg: Registry) -> None:
    """References not in this import must already be in the database."""
    for file, line, fname, target, value in reg.missing:
        if session.get(_TABLES[target], value) is None:
            noun = "person" if target == "people" else target[:-1]
            raise RegistryError(file, line, fname, f"unknown {noun} {value!r}")


def apply(session: Session, reg: Registry) -> dict[str, int]:
    """Upsert every row into the session (caller commits); returns counts per kind."""
    _resolve_missing(session, reg)
    for row, _, _ in reg.rows["people"]:
        session.merge(Person(id=row.id, name=row.name, role=row.role, phone=row.phone,
                             notify=list(row.notify), stations=list(row.stations)))
    for row, _, _ in reg.rows["stations"]:
        session.merge(Station(id=row.id, name=row.name, duty_desk=list(row.duty_desk),
                              area_officers=list(row.area_officers)))
    session.flush()
    for row, _, _ in reg.rows["grids"]:
        session.merge(Grid(id=row.id, name=row.name, station_id=row.station,
                           constable_id=row.constable, backup_id=row.backup, policy=row.policy))
    session.flush()
    for row, _, _ in reg.rows["ponds"]:
        session.merge(Pond(id=row.id, name=row.name, village=row.village, grid_id=row.grid,
                           lat=row.lat, lon=row.lon))
    session.flush()
    for row, _, _ in reg.rows["nodes"]:
        existing = session.get(Node, row.id)
        if existing is None:
            session.add(Node(id=row.id, pond_id=row.pond))
        else:
            existing.pond_id = row.pond
    grids_with_roster = {row.grid for row, _, _ in reg.rows["rosters"]}
    for gid in grids_with_roster:
        session.execute(delete(RosterEntry).where(RosterEntry.grid_id == gid))
    for row, _, _ in reg.rows["rosters"]:
        session.add(RosterEntry(grid_id=row.grid, person_id=row.person, role=row.role,
                                starts=row.starts, ends=row.ends))
    session.flush()
    return {k: len(v) for k, v in reg.rows.items()}


def import_file(sessions: sessionmaker[Session], path: str | Path) -> dict[str, int]:
    """Parse and import in one transaction: all rows or none."""
    reg = parse(path)
    with sessions() as session, session.begin():
        counts = apply(session, reg)
    log.info("registry %s imported: %s", path, counts)
    return counts

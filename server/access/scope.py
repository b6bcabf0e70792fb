"""What one logged-in user may see and do, computed from the registry on every request."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.core.db import Grid, Node, Person, Pond, RosterEntry, Station, User

PAGED_ROLES = frozenset({"constable", "area_officer", "duty_desk"})
DEFAULT_SNAPSHOT_ROLES = ("admin", "constable", "area_officer", "duty_desk")


@dataclass(frozen=True)
class Scope:
    """What one logged-in user may see and do."""

    username: str
    role: str                 # constable|area_officer|duty_desk|technician|admin|viewer
    person_id: str | None
    everything: bool          # admin
    grid_ids: frozenset[str]
    pond_ids: frozenset[str]
    node_ids: frozenset[str]
    snapshots: bool           # may see snapshots of minors (never a viewer)
    may_act_on_alerts: bool   # ack / on scene / resolve: paged roles within scope + admin
    may_command_nodes: bool   # node commands, silences, enrol: technicians within scope + admin
    may_edit_registry: bool   # admin only

    def sees_grid(self, grid_id: str | None) -> bool:
        """Whether the grid is in scope."""
        return self.everything or (grid_id is not None and grid_id in self.grid_ids)

    def sees_pond(self, pond_id: str | None) -> bool:
        """Whether the pond is in scope."""
        return self.everything or (pond_id is not None and pond_id in self.pond_ids)

    def sees_node(self, node_id: str | None) -> bool:
        """Whether the node is in scope."""
        return self.everything or (node_id is not None and node_id in self.node_ids)

    @property
    def read_only(self) -> bool:
        """True when the user may not change anything."""
        return not (self.may_act_on_alerts or self.may_command_nodes or self.may_edit_registry)


def technician_stations(s: Session, person: Person) -> set[str]:
    """A technician's stations, plus every station no technician is attached to (those page
    every technician, so every technician must be able to open their nodes)."""
    techs = list(s.scalars(select(Person).where(Person.role == "technician")))
    owned = {st for p in techs for st in (p.stations or [])}
    orphans = set(s.scalars(select(Station.id))) - owned
    return set(person.stations or []) | orphans


def person_grids(s: Session, person_id: str, now: datetime | None = None) -> set[str]:
    """Grids a person sees: as constable, backup or on a roster; as area officer or duty desk
    of a station; as technician of a station (see technician_stations)."""
    grids = set(s.scalars(select(Grid.id).where(
        or_(Grid.constable_id == person_id, Grid.backup_id == person_id))))
    roster = select(RosterEntry.grid_id).where(RosterEntry.person_id == person_id)
    if now is not None:
        roster = roster.where(RosterEntry.ends > now)
    grids.update(s.scalars(roster))
    stations = {st.id for st in s.scalars(select(Station))
                if person_id in (st.area_officers or []) or person_id in (st.duty_desk or [])}
    person = s.get(Person, person_id)
    if person is not None and person.role == "technician":
        stations.update(technician_stations(s, person))
    if stations:
        grids.update(s.scalars(select(Grid.id).where(Grid.station_id.in_(stations))))
    return grids


def scope_for(s: Session, user: User, now: datetime | None = None,
              snapshot_roles: Collection[str] = DEFAULT_SNAPSHOT_ROLES) -> Scope:
    """The scope of a user from the registry as it is now (roster entries not yet ended)."""
    admin = user.role == "admin"
    if admin:
        grids: set[str] = set()
        ponds: set[str] = set()
        nodes: set[str] = set()
    else:
        grids = person_grids(s, user.person_id, now) if user.person_id else set()
        ponds = set(s.scalars(select(Pond.id).where(Pond.grid_id.in_(grids)))) if grids else set()
        nodes = set(s.scalars(select(Node.id).where(Node.pond_id.in_(ponds)))) if ponds else set()
    return Scope(
        username=user.username, role=user.role, person_id=user.person_id, everything=admin,
        grid_ids=frozenset(grids), pond_ids=frozenset(ponds), node_ids=frozenset(nodes),
        snapshots=admin or (user.role != "viewer" and user.role in snapshot_roles),
        may_act_on_alerts=admin or user.role in PAGED_ROLES,
        may_command_nodes=admin or user.role == "technician",
        may_edit_registry=admin)


def pond_filter(scope: Scope, column: InstrumentedAttribute[str] | InstrumentedAttribute[
        str | None] | ColumnElement[str]) -> ColumnElement[bool]:
    """A WHERE clause keeping rows whose pond column is in scope (true() for admins)."""
    if scope.everything:
        return true()
    if not scope.pond_ids:
        return false()
    return column.in_(sorted(scope.pond_ids))


def node_filter(scope: Scope, column: InstrumentedAttribute[str] | InstrumentedAttribute[
        str | None] | ColumnElement[str]) -> ColumnElement[bool]:
    """A WHERE clause keeping rows whose node column is in scope (true() for admins)."""
    if scope.everything:
        return true()
    if not scope.node_ids:
        return false()
    return column.in_(sorted(scope.node_ids))


def grid_filter(scope: Scope, column: InstrumentedAttribute[str] | ColumnElement[str]
                ) -> ColumnElement[bool]:
    """A WHERE clause keeping rows whose grid column is in scope (true() for admins)."""
    if scope.everything:
        return true()
    if not scope.grid_ids:
        return false()
    return column.in_(sorted(scope.grid_ids))

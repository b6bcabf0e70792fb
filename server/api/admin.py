"""Registry admin pages: every kind editable with the import's own validation, import and export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, File, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.access import registry
from server.api.deps import CurrentScope, Db, require
from server.api.pages import render
from server.core.db import Grid, Node, PatrolRun, Person, Pond, RosterEntry, Station
from server.core.errors import ServerError

router = APIRouter()
MAX_UPLOAD = 2 * 1024 * 1024
LIST_FIELDS = {"duty_desk", "area_officers", "notify", "stations"}
# Fields naming another registry row: the form offers those rows, the table shows their names.
REFS = {"station": "stations", "constable": "people", "backup": "people", "grid": "grids",
        "pond": "ponds", "person": "people", "duty_desk": "people", "area_officers": "people",
        "stations": "stations"}
CHOICES = {("people", "role"): ("constable", "area_officer", "duty_desk", "technician", "admin"),
           ("rosters", "role"): ("primary", "backup")}


def export_rows(s: Session) -> dict[str, list[dict[str, Any]]]:
    """The whole registry in the import format (YAML-ready), each kind sorted by id."""
    def clean(d: dict[str, Any]) -> dict[str, Any]:
        """Leave out empty optional values, as a hand-written file would."""
        return {k: v for k, v in d.items() if v not in (None, [], "")}
    return {
        "stations": [clean({"id": r.id, "name": r.name, "duty_desk": list(r.duty_desk or []),
                            "area_officers": list(r.area_officers or [])})
                     for r in s.scalars(select(Station).order_by(Station.id))],
        "grids": [clean({"id": r.id, "name": r.name, "station": r.station_id,
                         "constable": r.constable_id, "backup": r.backup_id,
                         "policy": r.policy if r.policy != "default" else None})
                  for r in s.scalars(select(Grid).order_by(Grid.id))],
        "ponds": [clean({"id": r.id, "name": r.name, "village": r.village, "grid": r.grid_id,
                         "lat": r.lat, "lon": r.lon})
                  for r in s.scalars(select(Pond).order_by(Pond.id))],
        "nodes": [{"id": r.id, "pond": r.pond_id}
                  for r in s.scalars(select(Node).order_by(Node.id))],
        "people": [clean({"id": r.id, "name": r.name, "role": r.role, "phone": r.phone,
                          "notify": list(r.notify or []), "stations": list(r.stations or [])})
                   for r in s.scalars(select(Person).order_by(Person.id))],
        "rosters": [{"_row": r.id, "grid": r.grid_id, "person": r.person_id, "role": r.role,
                     "starts": r.starts.isoformat(), "ends": r.ends.isoformat()}
                    for r in s.scalars(select(RosterEntry).order_by(RosterEntry.grid_id,
                                                                    RosterEntry.starts))],
    }


def fields(kind: str) -> list[dict[str, Any]]:
    """The form fields of one kind, from the import's row model."""
    model = registry.MODELS[kind]
    out = []
    for name, f in model.model_fields.items():
        ref = None if name == "id" else REFS.get(name)
        out.append({"name": name, "required": f.is_required(), "list": name in LIST_FIELDS,
                    "ref": ref, "choices": CHOICES.get((kind, name)),
                    "description": f.description or ""})
    return out


def names(data: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """Per kind with ids: id → display name, for references in the form and the tables."""
    return {k: {str(r["id"]): str(r.get("name", r["id"])) for r in rows}
            for k, rows in data.items() if k != "rosters"}


def _import_text(s: Session, text: str, filename: str, lines: bool) -> dict[str, int]:
    """Validate text exactly like `pondwatch-server import` and upsert it (caller commits);
    filename's name says the format (and, for CSV, the kind: ponds.csv)."""
    with tempfile.TemporaryDirectory(prefix="pondwatch-admin-") as d:
        path = Path(d) / filename
        path.write_text(text, encoding="utf-8")
        try:
            reg = registry.parse(path)
            return registry.apply(s, reg)
        except registry.RegistryError as exc:
            s.rollback()
            where = f"{filename} line {exc.line}: " if exc.line and lines else ""
            raise _Invalid(f"{where}{exc.field}: {str(exc).split(': ', 2)[-1]}") from exc


class _Invalid(ServerError, ValueError):
    """A registry edit the import validation refused; the message names the field."""


def _form_row(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """A registry row from form fields: blanks left out, lists split on ';' or new lines."""
    row: dict[str, Any] = {}
    for f in fields(kind):
        value = (form.get(f["name"]) or "").strip()
        if not value:
            continue
        row[f["name"]] = ([v.strip() for v in value.replace("\n", ";").split(";") if v.strip()]
                          if f["list"] else value)
    return row


def save_row(s: Session, kind: str, form: dict[str, str]) -> dict[str, Any]:
    """Validate one edited or new row as an import would and store it (caller commits)."""
    row = _form_row(kind, form)
    rows = [row]
    if kind == "rosters":  # an import replaces a grid's whole roster: keep the other entries
        keep = form.get("_row", "")
        rows += [{k: v for k, v in r.items() if k != "_row"} for r in export_rows(s)["rosters"]
                 if r["grid"] == row.get("grid") and str(r["_row"]) != keep]
    _import_text(s, yaml.safe_dump({kind: rows}, allow_unicode=True), "form.yaml", False)
    return row


def _page(request: Request, scope: Any, s: Session, **ctx: Any) -> Response:
    """The admin page with every kind, its rows and a form."""
    data = export_rows(s)
    runs = s.scalars(select(PatrolRun).order_by(PatrolRun.day.desc(), PatrolRun.person_id)
                     .limit(200)).all()
    return render(request, "admin.html", scope, kinds=list(registry.KINDS), data=data,
                  fields={k: fields(k) for k in registry.KINDS}, names=names(data),
                  patrol_runs=runs, **ctx)


@router.get("/admin")
def admin_page(request: Request, scope: CurrentScope, s: Db, kind: str | None = None,
               edit: str | None = None, saved: str | None = None) -> Response:
    """The registry, one table per kind; ?kind=&edit= opens a row in the form."""
    require(scope.may_edit_registry)
    current: dict[str, Any] = {}
    if kind in registry.KINDS and edit is not None:
        key = "_row" if kind == "rosters" else "id"
        current = next((r for r in export_rows(s)[kind] if str(r[key]) == edit), {})
        if not current:
            raise HTTPException(404, "not found")
    return _page(request, scope, s, kind=kind if kind in registry.KINDS else "ponds",
                 current=current, saved=saved, error=None)


@router.post("/admin/{kind}")
async def admin_save(request: Request, kind: str, scope: CurrentScope, s: Db) -> Response:
    """Save one row of a kind; a refused row comes back in the form with the reason."""
    require(scope.may_edit_registry)
    if kind not in registry.KINDS:
        raise HTTPException(404, "not found")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        row = save_row(s, kind, form)
    except _Invalid as exc:
        current = {k: v for k, v in form.items() if k != "csrf_token"}
        return _page(request, scope, s, kind=kind, current=current, saved=None,
                     error=str(exc), status_code=422)
    s.commit()
    return RedirectResponse(f"/admin?kind={kind}&saved={row.get('id', row.get('grid', ''))}",
                            status_code=303)


@router.post("/admin/rosters/{row_id}/delete")
def admin_roster_delete(row_id: int, scope: CurrentScope, s: Db) -> Response:
    """Remove one duty range (nothing refers to roster rows, so it simply goes)."""
    require(scope.may_edit_registry)
    row = s.get(RosterEntry, row_id)
    if row is None:
        raise HTTPException(404, "not found")
    s.delete(row)
    s.commit()
    return RedirectResponse(f"/admin?kind=rosters&saved={row.grid_id}", status_code=303)


@router.post("/admin-import")
async def admin_import(request: Request, scope: CurrentScope, s: Db,
                       file: Annotated[UploadFile, File()]) -> Response:
    """Import a registry YAML or CSV file: all of it or, on the first bad field, none."""
    require(scope.may_edit_registry)
    name = Path(file.filename or "registry.yaml").name
    suffix = next((x for x in (".yaml", ".yml", ".csv") if name.lower().endswith(x)), None)
    data = await file.read(MAX_UPLOAD + 1)
    error: str | None = None
    if suffix is None:
        error = "file: must end in .yaml, .yml or .csv"
    elif len(data) > MAX_UPLOAD:
        error = f"file: larger than {MAX_UPLOAD // 1024} KiB"
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            error = "file: not UTF-8 text"
        else:
            try:
                counts = _import_text(s, text, name, True)
            except _Invalid as exc:
                error = str(exc)
            else:
                s.commit()
                total = sum(counts.values())
                return RedirectResponse(f"/admin?saved=import-{total}", status_code=303)
    return _page(request, scope, s, kind="ponds", current={}, saved=None, error=error,
                 status_code=422)


@router.get("/admin/export.yaml")
def admin_export(scope: CurrentScope, s: Db) -> Response:
    """The whole registry as a YAML file `pondwatch-server import` reads back."""
    require(scope.may_edit_registry)
    data = export_rows(s)
    for r in data["rosters"]:
        r.pop("_row")
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return Response(text, media_type="application/yaml; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="registry.yaml"',
                             "Cache-Control": "no-store"})

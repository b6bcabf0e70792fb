"""Access scoped to each person's grids, and who may act: both sides of every rule (real SQLite,
the real app through TestClient)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.access import auth
from server.access.scope import Scope, pond_filter, scope_for
from server.app import create_app
from server.core.db import Alert, User
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import JPEG, Harness, P
from tests.server.conftest import PageReceiver
from tests.server.core.test_postgres import PG_URL, pg_url  # noqa: F401  (fixture)

PASSWORD = "pass-word-123"
# Three stations; quanjiang has two grids, beishan one, nanling one and no technician.
REGISTRY = """
stations:
  - {{id: quanjiang, name: 泉江派出所, duty_desk: [duty-quanjiang], area_officers: [liu-min]}}
  - {{id: beishan, name: 北山派出所, duty_desk: [duty-beishan], area_officers: [zhao-lei]}}
  - {{id: nanling, name: 南岭派出所}}
grids:
  - {{id: gongyu, name: 共裕网格, station: quanjiang, constable: guo-yong, backup: kang-donghai}}
  - {{id: dongshan, name: 东山网格, station: quanjiang, constable: kang-donghai}}
  - {{id: xishan, name: 西山网格, station: beishan, constable: li-xi}}
  - {{id: nanshan, name: 南山网格, station: nanling}}
ponds:
  - {{id: heyuan-shantang, name: 禾源山塘, village: 禾源村, grid: gongyu, lat: 26.33, lon: 114.52}}
  - {{id: xiatang, name: 下塘, village: 下村, grid: dongshan}}
  - {{id: xitang, name: 西塘, village: 西村, grid: xishan}}
  - {{id: nantang, name: 南塘, village: 南村, grid: nanshan}}
nodes:
  - {{id: heyuan-01, pond: heyuan-shantang}}
  - {{id: xiatang-01, pond: xiatang}}
  - {{id: xitang-01, pond: xitang}}
  - {{id: nantang-01, pond: nantang}}
people:
  - {{id: guo-yong, name: 郭勇, role: constable, notify: ["{url}guo-yong"]}}
  - {{id: kang-donghai, name: 康东海, role: constable, notify: ["{url}kang-donghai"]}}
  - {{id: li-xi, name: 李西, role: constable, notify: ["{url}li-xi"]}}
  - {{id: sun-li, name: 孙力, role: constable, notify: ["{url}sun-li"]}}
  - {{id: liu-min, name: 刘敏, role: area_officer, notify: ["{url}liu-min"]}}
  - {{id: zhao-lei, name: 赵磊, role: area_officer, notify: ["{url}zhao-lei"]}}
  - {{id: duty-quanjiang, name: 泉江值班台, role: duty_desk, notify: ["{url}duty-quanjiang"]}}
  - {{id: duty-beishan, name: 北山值班台, role: duty_desk, notify: ["{url}duty-beishan"]}}
  - {{id: tech-wang, name: 王工, role: technician, stations: [quanjiang],
     notify: ["{url}tech-wang"]}}
  - {{id: tech-zhou, name: 周工, role: technician, stations: [beishan],
     notify: ["{url}tech-zhou"]}}
rosters:
  - {{grid: dongshan, person: sun-li, role: primary,
     starts: "2026-07-01T00:00:00+00:00", ends: "2026-07-02T00:00:00+00:00"}}
  - {{grid: xishan, person: sun-li, role: backup,
     starts: "2026-06-01T00:00:00+00:00", ends: "2026-06-30T00:00:00+00:00"}}
"""
# username: (role, person)
USERS = {
    "admin": ("admin", None),
    "guo": ("constable", "guo-yong"),        # constable of gongyu
    "kang": ("constable", "kang-donghai"),   # constable of dongshan, backup of gongyu
    "li": ("constable", "li-xi"),            # constable of xishan (the other station)
    "sun": ("constable", "sun-li"),          # on the dongshan roster today only
    "liu": ("area_officer", "liu-min"),      # area officer of quanjiang
    "duty-bs": ("duty_desk", "duty-beishan"),
    "wang": ("technician", "tech-wang"),     # technician of quanjiang
    "zhou": ("technician", "tech-zhou"),     # technician of beishan
    "viewer": ("viewer", "guo-yong"),        # read-only view of guo-yong's grid
}


class Site:
    """A harness with the two-station registry, users for every role and one client each."""

    def __init__(self, tmp_path: Path, receiver: PageReceiver, **extra: Any) -> None:
        reg = tmp_path / "scope-registry.yaml"
        reg.write_text(REGISTRY.format(url=receiver.url("")), encoding="utf-8")
        self.h = Harness(tmp_path, receiver, registry=str(reg), **extra)
        with self.h.svc.sessions() as s, s.begin():
            for name, (role, person) in USERS.items():
                auth.set_user(s, name, PASSWORD, role, person)
        self.app = create_app(self.h.svc)
        self._clients: dict[str, TestClient] = {}

    def client(self, user: str) -> TestClient:
        """A TestClient logged in through the login form as user."""
        if user not in self._clients:
            c = TestClient(self.app, follow_redirects=False)
            token = re.search(r'name="csrf_token" value="(\w+)"', c.get("/login").text).group(1)
            r = c.post("/login", data={"username": user, "password": PASSWORD,
                                       "csrf_token": token})
            assert r.headers["location"] == "/", f"{user} could not log in"
            c.headers["X-CSRF-Token"] = c.get("/api/me").json()["csrf_token"]
            self._clients[user] = c
        return self._clients[user]

    def alert(self, node: str, pond: str, snapshot: bool = True) -> int:
        """A child alert at the pond, with its snapshot, paged once."""
        ev = self.h.event(node=node, pond=pond, snapshot=snapshot)
        if snapshot:
            self.h.ing.process(Inbound(f"{P}/{node}/snapshot/{ev.id}", JPEG, 2, 1))
        self.h.tick()
        with self.h.svc.sessions() as s:
            return s.scalars(select(Alert.id).where(Alert.pond_id == pond)
                             .order_by(Alert.id.desc())).first()

    def scope(self, user: str) -> Scope:
        """The scope scope_for computes for a user now."""
        with self.h.svc.sessions() as s:
            return scope_for(s, s.get(User, user), self.h.clock.now(),
                             self.h.cfg.snapshot_roles)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self.h.close()


@pytest.fixture
def site(tmp_path: Path, receiver: PageReceiver) -> Iterator[Site]:
    s = Site(tmp_path, receiver)
    yield s
    s.close()


def test_scope_follows_the_registry_for_every_role(site: Site) -> None:
    grids = {u: set(site.scope(u).grid_ids) for u in USERS if u != "admin"}
    assert grids == {
        "guo": {"gongyu"}, "kang": {"gongyu", "dongshan"}, "li": {"xishan"},
        "sun": {"dongshan"},  # today's roster entry, not last month's on xishan
        "liu": {"gongyu", "dongshan"}, "duty-bs": {"xishan"},
        # technicians: their stations, and nanling, which pages every technician
        "wang": {"gongyu", "dongshan", "nanshan"}, "zhou": {"xishan", "nanshan"},
        "viewer": {"gongyu"}}
    wang = site.scope("wang")
    assert wang.node_ids == {"heyuan-01", "xiatang-01", "nantang-01"}
    assert wang.sees_node("heyuan-01") and not wang.sees_node("xitang-01")
    assert wang.pond_ids == {"heyuan-shantang", "xiatang", "nantang"}
    from server.alerting.escalation import technicians

    with site.h.svc.sessions() as s:   # whoever is paged for a node's faults can open it
        assert technicians(s, "nanling") == ["tech-wang", "tech-zhou"]
        assert technicians(s, "beishan") == ["tech-zhou"]
    assert site.scope("zhou").sees_node("nantang-01") and not site.scope("zhou").sees_node(
        "heyuan-01")
    admin = site.scope("admin")
    assert admin.everything and admin.sees_pond("xitang") and admin.sees_node("anything")
    viewer = site.scope("viewer")
    assert viewer.sees_pond("heyuan-shantang") and not viewer.sees_pond("xiatang")
    assert viewer.read_only and not viewer.snapshots
    site.h.clock.advance(86400)  # the roster entry ended
    assert site.scope("sun").grid_ids == frozenset()


def test_pond_filter_in_sql(site: Site) -> None:
    from server.core.db import Pond

    with site.h.svc.sessions() as s:
        for user, want in (("li", ["xitang"]),
                           ("admin", ["heyuan-shantang", "nantang", "xiatang", "xitang"]),
                           ("sun", ["xiatang"])):
            got = sorted(s.scalars(select(Pond.id).where(pond_filter(site.scope(user), Pond.id))))
            assert got == want, user
        nobody = Scope("x", "viewer", None, False, frozenset(), frozenset(), frozenset(),
                       False, False, False, False)
        assert list(s.scalars(select(Pond.id).where(pond_filter(nobody, Pond.id)))) == []


def test_another_grids_alert_is_404_everywhere(site: Site) -> None:
    mine = site.alert("heyuan-01", "heyuan-shantang")   # gongyu
    theirs = site.alert("xitang-01", "xitang")          # xishan
    guo, li = site.client("guo"), site.client("li")
    assert [a["id"] for a in guo.get("/api/alerts").json()] == [mine]
    assert [a["id"] for a in li.get("/api/alerts").json()] == [theirs]
    assert f'data-alert-id="{theirs}"' not in guo.get("/").text
    assert f'data-alert-id="{mine}"' in guo.get("/").text
    missing = 9999
    for url in (f"/api/alerts/{theirs}", f"/alerts/{theirs}", f"/alerts/{theirs}/snapshot.jpg"):
        r = guo.get(url)
        assert r.status_code == 404, url
        gone = guo.get(url.replace(str(theirs), str(missing)))
        assert (gone.status_code, gone.json()) == (404, r.json())  # cannot be counted
    assert guo.post(f"/api/alerts/{theirs}/actions", json={"action": "ack"}).status_code == 404
    assert guo.post(f"/alerts/{theirs}", data={"action": "ack"}).status_code == 404
    assert site.h.alert(theirs).state == "notified"
    assert guo.get(f"/api/alerts/{mine}").status_code == 200
    assert guo.get(f"/alerts/{mine}/snapshot.jpg").content == JPEG
    admin = site.client("admin")
    assert {a["id"] for a in admin.get("/api/alerts").json()} == {mine, theirs}


def test_ponds_report_and_silences_are_scoped(site: Site) -> None:
    site.alert("heyuan-01", "heyuan-shantang", snapshot=False)
    site.alert("xitang-01", "xitang", snapshot=False)
    li, wang = site.client("li"), site.client("wang")
    assert [p["id"] for p in li.get("/api/ponds").json()] == ["xitang"]
    assert [p["id"] for p in wang.get("/api/ponds").json()] == [
        "heyuan-shantang", "nantang", "xiatang"]
    page = li.get("/ponds").text
    assert "西塘" in page and "禾源山塘" not in page
    report = li.get("/report").text
    assert "西山网格" in report and "共裕网格" not in report and "全县" not in report
    rows = li.get("/report.csv").text
    assert "西塘" in rows and "禾源山塘" not in rows
    assert "共裕网格" not in li.get("/report-summary.csv").text
    assert "共裕网格" in site.client("admin").get("/report-summary.csv").text
    assert wang.post("/api/silences", json={"pond_id": "xiatang", "minutes": 30}
                     ).status_code == 201
    zhou = site.client("zhou")
    assert zhou.post("/api/silences", json={"node_id": "xitang-01", "minutes": 30}
                     ).status_code == 201
    assert "xitang-01" not in wang.get("/silences").text
    assert "xiatang" in wang.get("/silences").text
    assert "xiatang" not in zhou.get("/silences").text


def test_paged_roles_in_scope_and_admins_may_act_on_alerts(site: Site) -> None:
    a1 = site.alert("heyuan-01", "heyuan-shantang", snapshot=False)
    for user in ("viewer", "wang"):   # in scope, wrong role
        c = site.client(user)
        assert c.get(f"/api/alerts/{a1}").status_code == 200
        assert c.post(f"/api/alerts/{a1}/actions", json={"action": "ack"}).status_code == 403
        assert c.post(f"/alerts/{a1}", data={"action": "ack"}).status_code == 403
    assert site.h.alert(a1).state == "notified"
    assert site.client("guo").post(f"/api/alerts/{a1}/actions", json={"action": "ack"}
                                   ).json()["alert"]["acked_by"] == "guo"
    assert site.client("liu").post(f"/alerts/{a1}", data={"action": "on_scene"}
                                   ).status_code == 303
    assert site.client("admin").post(f"/api/alerts/{a1}/actions",
                                     json={"action": "resolve", "outcome": "real"}
                                     ).json()["alert"]["state"] == "resolved"
    a2 = site.alert("xitang-01", "xitang", snapshot=False)
    assert site.client("duty-bs").post(f"/api/alerts/{a2}/actions",
                                       json={"action": "ack"}).status_code == 200
    assert site.client("liu").post(f"/api/alerts/{a2}/actions",   # other station
                                   json={"action": "ack"}).status_code == 404


def test_technicians_in_scope_and_admins_command_nodes(site: Site) -> None:
    wang, zhou, guo, viewer = (site.client(u) for u in ("wang", "zhou", "guo", "viewer"))
    body: dict[str, Any] = {"cmd": "selftest"}
    # No broker in this harness: an allowed command gets past every check and is a 503.
    assert wang.post("/api/nodes/heyuan-01/commands", json=body).status_code == 503
    assert site.client("admin").post("/api/nodes/xitang-01/commands", json=body
                                     ).status_code == 503
    assert zhou.post("/api/nodes/heyuan-01/commands", json=body).status_code == 404
    assert guo.post("/api/nodes/heyuan-01/commands", json=body).status_code == 403
    assert viewer.post("/api/nodes/heyuan-01/commands", json=body).status_code == 403
    assert wang.post("/api/nodes/ghost/commands", json=body).status_code == 404


def test_command_reads_need_a_technician_in_scope(site: Site) -> None:
    from datetime import timedelta

    from server.core.db import CommandRow

    now = site.h.clock.now()
    with site.h.svc.sessions() as s, s.begin():
        s.add(CommandRow(id="c1", node_id="heyuan-01", cmd="enrol", args={}, created_at=now,
                         expires_at=now + timedelta(minutes=5), created_by="wang"))
    assert [c["id"] for c in site.client("wang").get("/api/nodes/heyuan-01/commands").json()
            ] == ["c1"]
    assert site.client("admin").get("/api/nodes/heyuan-01/commands").status_code == 200
    assert site.client("zhou").get("/api/nodes/heyuan-01/commands").status_code == 404
    for user in ("guo", "viewer"):
        assert site.client(user).get("/api/nodes/heyuan-01/commands").status_code == 403, user
    assert site.client("li").get("/api/nodes/heyuan-01/commands").status_code == 404


def test_silences_belong_to_technicians_in_scope_and_admins(site: Site) -> None:
    body = {"pond_id": "heyuan-shantang", "minutes": 30, "reason": "换镜头"}
    assert site.client("wang").post("/api/silences", json=body).status_code == 201
    assert site.client("admin").post("/api/silences", json=body).status_code == 201
    r = site.client("zhou").post("/api/silences", json=body)
    assert r.status_code == 422 and "unknown pond" in r.text  # outside scope reads as unknown
    for user in ("guo", "viewer", "liu"):
        assert site.client(user).post("/api/silences", json=body).status_code == 403, user
        assert site.client(user).post("/silences", data={"pond_id": "heyuan-shantang",
                                                         "minutes": "30"}).status_code == 403


def test_snapshots_only_for_allowed_roles_in_scope(site: Site) -> None:
    aid = site.alert("heyuan-01", "heyuan-shantang")
    for user in ("guo", "kang", "liu", "admin"):
        assert site.client(user).get(f"/alerts/{aid}/snapshot.jpg").content == JPEG, user
    for user in ("viewer", "wang"):   # in scope, but not for snapshots of minors
        assert site.client(user).get(f"/alerts/{aid}/snapshot.jpg").status_code == 403, user
        assert "snapshot.jpg" not in site.client(user).get(f"/alerts/{aid}").text
    for user in ("li", "zhou", "duty-bs"):
        assert site.client(user).get(f"/alerts/{aid}/snapshot.jpg").status_code == 404, user


def test_registry_editing_is_for_admins_only(site: Site) -> None:
    from server.core.db import Pond

    row = {"id": "xitang", "name": "西塘（改）", "village": "西村", "grid": "xishan"}
    for user in ("li", "duty-bs", "zhou", "viewer"):
        c = site.client(user)
        assert c.get("/admin").status_code == 403, user
        assert c.post("/admin/ponds", data=row).status_code == 403, user
        assert c.get("/admin/export.yaml").status_code == 403, user
    with site.h.svc.sessions() as s:
        assert s.get(Pond, "xitang").name == "西塘"
    assert site.client("admin").post("/admin/ponds", data=row).status_code == 303
    with site.h.svc.sessions() as s:
        assert s.get(Pond, "xitang").name == "西塘（改）"
    assert site.scope("admin").may_edit_registry
    for user in USERS:
        if user != "admin":
            assert not site.scope(user).may_edit_registry, user
    me = site.client("liu").get("/api/me").json()
    assert (me["may_edit_registry"], me["may_act_on_alerts"], me["may_command_nodes"]) == (
        False, True, False)


def test_adduser_ties_accounts_to_registry_people(tmp_path: Path, receiver: PageReceiver,
                                                  monkeypatch, capsys) -> None:
    from server.cli import main

    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY.format(url=receiver.url("")), encoding="utf-8")
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"environment: dev\nsecret_key: Kq3-vT9x_LmZ2wR7pY4nB8sD\n"
                   f"database: sqlite:///{tmp_path / 'u.db'}\nregistry: {reg}\n",
                   encoding="utf-8")
    monkeypatch.setenv("PONDWATCH_PASSWORD", PASSWORD)
    assert main(["adduser", str(cfg), "guo", "--role", "constable", "--person", "guo-yong"]) == 0
    assert main(["adduser", str(cfg), "li", "--role", "constable"]) == 2
    assert "role constable needs --person" in capsys.readouterr().err
    assert main(["adduser", str(cfg), "li", "--role", "viewer", "--person", "nobody"]) == 2
    assert "person 'nobody' is not in the registry" in capsys.readouterr().err
    monkeypatch.delenv("PONDWATCH_PASSWORD")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed-pass-123")  # the prompt
    assert main(["adduser", str(cfg), "ops", "--role", "admin"]) == 0
    from server.core.config import load_config
    from server.services import Services

    svc = Services(load_config(cfg))
    with svc.sessions() as s:
        guo, ops = s.get(User, "guo"), s.get(User, "ops")
        assert (guo.role, guo.person_id) == ("constable", "guo-yong")
        assert auth.check_password("typed-pass-123", ops.password_hash)
        assert s.get(User, "li") is None
        assert scope_for(s, guo).grid_ids == {"gongyu"}
    svc.engine.dispose()


def _get_routes(routes: list) -> Iterator[Any]:
    """Every GET APIRoute, also inside included routers."""
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute) and "GET" in route.methods:
            yield route
        elif hasattr(route, "original_router"):
            yield from _get_routes(route.original_router.routes)


def test_every_get_route_hides_other_grids(site: Site) -> None:
    """Walks the whole app (pages added later included): another grid's objects are 404 (or a
    403 for a route the role may not use at all), and no list shows their names or ids."""
    aid = site.alert("heyuan-01", "heyuan-shantang")
    with site.h.svc.sessions() as s:
        snap_id = s.get(Alert, aid).snapshot_event_id
    values = {"alert_id": str(aid), "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
              "snapshot_id": snap_id, "node": "heyuan-01", "pond": "heyuan-shantang"}
    skip = {"/live/alerts",            # a stream; its scope filter has its own test
            "/login", "/healthz", "/metrics", "/api/docs", "/api/openapi.json"}
    checked = 0
    for user in ("li", "zhou", "duty-bs"):   # the other station's constable, technician, desk
        c = site.client(user)
        for route in _get_routes(site.app.routes):
            if route.path in skip or route.path.startswith(("/a/", "/node-api/")):
                continue
            params = re.findall(r"\{(\w+)", route.path)
            if any(p not in values for p in params):
                raise AssertionError(f"no test value for {route.path}")
            r = c.get(re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], route.path))
            if params:
                assert r.status_code in (403, 404), (user, route.path, r.status_code)
            else:
                assert r.status_code in (200, 403), (user, route.path, r.status_code)
                for secret in ("禾源山塘", "heyuan-shantang", "heyuan-01", "共裕网格"):
                    assert secret not in r.text, (user, route.path, secret)
            checked += 1
    assert checked > 30


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="PONDWATCH_TEST_PG_URL not set")
def test_scope_and_sessions_on_postgres(tmp_path: Path, receiver: PageReceiver,
                                        pg_url: str) -> None:  # noqa: F811
    site = Site(tmp_path, receiver, database=pg_url)
    try:
        mine = site.alert("heyuan-01", "heyuan-shantang")
        theirs = site.alert("xitang-01", "xitang", snapshot=False)
        guo = site.client("guo")
        assert [a["id"] for a in guo.get("/api/alerts").json()] == [mine]
        assert guo.get(f"/api/alerts/{theirs}").status_code == 404
        assert guo.get(f"/alerts/{mine}/snapshot.jpg").content == JPEG
        assert site.scope("sun").grid_ids == {"dongshan"}
        assert guo.post("/logout").status_code == 303
        assert guo.get("/api/me").status_code == 401
    finally:
        site.close()


def _write_routes(routes: list) -> Iterator[Any]:
    """Every POST/PUT/PATCH/DELETE APIRoute, also inside included routers."""
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute) and route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            yield route
        elif hasattr(route, "original_router"):
            yield from _write_routes(route.original_router.routes)


# Each write route: a request that would act on 禾源山塘 (共裕网格) or its node heyuan-01, and the
# user in scope who may make it with the answer they get (None: admins only, not replayed).
# The harness has no broker: a command that got past every check is a 503.
WRITES: dict[str, tuple[dict[str, Any], str | None, int | None]] = {
    "/alerts/{alert_id}": ({"data": {"action": "ack"}}, "guo", 303),
    "/api/alerts/{alert_id}/actions": ({"json": {"action": "on_scene"}}, "guo", 200),
    "/fleet/{node_id}/commands": ({"data": {"cmd": "snapshot"}}, "wang", 503),
    "/api/nodes/{node_id}/commands": ({"json": {"cmd": "selftest"}}, "wang", 503),
    "/ponds/{pond_id}/snapshot": ({}, "wang", 503),
    "/silences": ({"data": {"pond_id": "heyuan-shantang", "minutes": "30"}}, "wang", 303),
    "/api/silences": ({"json": {"pond_id": "heyuan-shantang", "minutes": 30}}, "wang", 201),
    "/api/models": ({"files": {"file": ("m.pt", b"x")}, "data": {"name": "m"}}, None, None),
    "/api/models/{name}/assign": ({"json": {"pond_id": "heyuan-shantang"}}, None, None),
    "/admin/{kind}": ({"data": {"id": "heyuan-shantang", "name": "x", "grid": "xishan"}},
                      None, None),
    "/admin/rosters/{row_id}/delete": ({}, None, None),
    "/admin-import": ({"files": {"file": ("r.yaml", b"stations: []\n")}}, None, None),
}


def test_every_write_route_refuses_other_grids(site: Site) -> None:
    """Walks every POST route (routes added later included: one without a request here fails):
    the other station's constable, technician and duty desk are refused (403, 404, or 422
    naming the pond or node as unknown) and nothing changes; then the same request by someone
    in scope gets through, so each refusal was the scope's."""
    from server.core.db import CommandRow, Silence

    aid = site.alert("heyuan-01", "heyuan-shantang", snapshot=False)
    values = {"alert_id": str(aid), "node_id": "heyuan-01", "pond_id": "heyuan-shantang",
              "name": "pond-person-v2", "kind": "ponds", "row_id": "1"}
    skip = {"/login", "/logout",          # no object; the login form has its own tests
            "/a/{token}", "/api/ack/{token}"}  # a signed capability (test_ack_links.py)
    routes = [r for r in _write_routes(site.app.routes) if r.path not in skip]
    missing = {r.path for r in routes} - set(WRITES)
    assert not missing, f"no test request for {sorted(missing)}"

    def path(route: str) -> str:
        return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], route)

    for user in ("li", "zhou", "duty-bs"):
        c = site.client(user)
        for route in routes:
            request = WRITES[route.path][0]
            for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
                r = c.request(method, path(route.path), **request)
                assert r.status_code in (403, 404) or (
                    r.status_code == 422 and re.search(r"unknown (pond|node)", r.text)), (
                    user, method, route.path, r.status_code, r.text[:200])
    with site.h.svc.sessions() as s:
        assert s.scalars(select(CommandRow)).all() == []
        assert s.scalars(select(Silence)).all() == []
    assert site.h.alert(aid).state == "notified"
    assert site.scope("li").grid_ids == {"xishan"}  # the registry was not edited either
    for route, (request, allowed, status) in WRITES.items():
        if allowed is not None:
            r = site.client(allowed).post(path(route), **request)
            assert r.status_code == status, (allowed, route, r.status_code, r.text[:200])
    assert site.h.alert(aid).state == "on_scene"

"""Model upload, the recall gate, assignment per pond or all, fleet model status, node downloads."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from protocol import signing
from protocol.payloads import Health, encode
from server.access import auth
from server.app import create_app
from server.core.config import ConfigError, parse_config
from server.core.db import Person
from server.link.ingest import Inbound
from tests.server.alerting.test_escalation import Harness, P
from tests.server.conftest import PageReceiver

MODELS = Path(__file__).resolve().parents[3] / "models"
MANIFEST = MODELS / "manifest.yaml"
WEIGHTS = b"pretend weights " * 4096
SHA = hashlib.sha256(WEIGHTS).hexdigest()


def _basic(user: str, pw: str) -> dict[str, str]:
    """An HTTP Basic header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


ADMIN = _basic("admin", "admin-pass-1")
TECH = _basic("tech", "tech-pass-12")


@pytest.fixture(scope="module")
def county_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The county's model key, made for these tests."""
    key = tmp_path_factory.mktemp("keys") / "county.key"
    signing.generate(key)
    return key


def _pub(key: Path) -> str:
    return signing.public_text(signing.load_private(key).public_key())


@pytest.fixture
def env(tmp_path: Path, receiver: PageReceiver, county_key: Path) -> Any:
    """Services with users, the county's public model key, and a client."""
    h = Harness(tmp_path, receiver, models={
        "dir": str(tmp_path / "models"), "trusted_keys": [_pub(county_key)],
        "pond_floors": {"beitang": {"water-people-valid": 0.8}}})
    with h.svc.sessions() as s, s.begin():
        auth.set_user(s, "admin", "admin-pass-1", "admin")
        s.get(Person, "tech-wang").stations = ["quanjiang"]
        auth.set_user(s, "tech", "tech-pass-12", "technician", "tech-wang")
    client = TestClient(create_app(h.svc), follow_redirects=False)
    yield h, client
    client.close()
    h.close()


def _evals(water: float, land: float, sha: str = SHA, real_land: float = 0.75,
           land_false: float = 0.30) -> dict[str, Any]:
    """Figures as `pondwatch-edge model train --eval-set` records them."""
    return {"water-people-valid": {"recall": water, "sha256": sha},
            "land-people-valid": {"recall": real_land, "false_per_image": land_false,
                                  "sha256": sha},
            "scenes-land": {"recall": land, "sha256": sha}}


def _doc(name: str, evals: dict[str, Any] | None, data: bytes = WEIGHTS,
         key: Path | None = None) -> signing.SignatureDoc:
    """The signature of data and its entry (default key: the county's)."""
    entry = {"labels": {"person": ["Normal", "Fall"]}, "eval": evals,
             "sha256": hashlib.sha256(data).hexdigest()}
    return signing.sign(signing.load_private(key or KEY[0]), name,
                        hashlib.sha256(data).hexdigest(), len(data), entry)


KEY: list[Path] = []  # the county key of the running test (set by the autouse fixture)


@pytest.fixture(autouse=True)
def _key(county_key: Path) -> Any:
    KEY[:] = [county_key]
    yield


def _upload(client: TestClient, name: str, evals: dict[str, Any] | None,
            data: bytes = WEIGHTS, headers: dict[str, str] = ADMIN,
            doc: signing.SignatureDoc | None = None) -> Any:
    """POST a model with its signature (by the county's key unless doc is given)."""
    sig = doc or _doc(name, evals, data)
    return client.post("/api/models", headers=headers, files={"file": ("m.pt", data)},
                       data={"name": name, "signature": sig.model_dump_json()})


def test_upload_admin_only_and_checked(env: Any, tmp_path: Path) -> None:
    """Technicians cannot upload; a wrong digest, a duplicate name and bad JSON are refused."""
    _h, client = env
    assert _upload(client, "v1", _evals(0.6, 0.97), headers=TECH).status_code == 403
    assert client.post("/api/models").status_code == 401
    r = _upload(client, "v1", _evals(0.6, 0.97))
    assert r.status_code == 201 and r.json()["sha256"] == SHA
    assert _upload(client, "v1", None, data=b"other").status_code == 409
    assert "already stored" in _upload(client, "v1b", None,
                                       doc=_doc("v1b", None)).json()["detail"]
    bad = _upload(client, "v2", None, data=b"x", doc=_doc("v2", None, b"y"))
    assert bad.status_code == 409 and "the signature covers" in bad.json()["detail"]
    assert client.post("/api/models", headers=ADMIN, files={"file": ("m.pt", b"x")},
                       data={"name": "v3", "signature": _doc("v3", None, b"x").model_dump_json(),
                             "entry": "{"}).status_code == 422
    listed = client.get("/api/models", headers=TECH).json()
    assert [m["name"] for m in listed] == ["v1"]


def test_upload_must_be_signed_by_the_county(env: Any, tmp_path: Path) -> None:
    """Unsigned, signed by another key, signed for another name, or re-sent with raised
    figures (the payload changed after signing, or an entry beside it that differs): 409, and
    nothing is stored."""
    _h, client = env
    data = b"w" * 100
    r = client.post("/api/models", headers=ADMIN, files={"file": ("m.pt", data)},
                    data={"name": "v1", "entry": json.dumps({"labels": {}})})
    assert r.status_code == 409 and "not signed" in r.json()["detail"]
    other = tmp_path / "other.key"
    signing.generate(other)
    r = _upload(client, "v1", None, data=data, doc=_doc("v1", None, data, key=other))
    assert r.status_code == 409 and "not trusted here" in r.json()["detail"]
    r = _upload(client, "v1", None, data=data, doc=_doc("v9", None, data))
    assert r.status_code == 409 and "for model 'v9'" in r.json()["detail"]
    low = _doc("v1", _evals(0.30, 0.97, hashlib.sha256(data).hexdigest()), data)
    raised = low.model_copy(update={"payload": low.payload.replace('"recall": 0.3,',
                                                                   '"recall": 0.9,')})
    assert raised.payload != low.payload
    r = _upload(client, "v1", None, data=data, doc=raised)
    assert r.status_code == 409 and "does not match its payload" in r.json()["detail"]
    entry = json.loads(low.payload)["entry"]
    entry["eval"]["water-people-valid"]["recall"] = 0.9
    r = client.post("/api/models", headers=ADMIN, files={"file": ("m.pt", data)},
                    data={"name": "v1", "signature": low.model_dump_json(),
                          "entry": json.dumps(entry)})
    assert r.status_code == 409 and "differs from the signed entry" in r.json()["detail"]
    assert client.get("/api/models", headers=ADMIN).json() == []


def test_the_same_file_re_signed_replaces_its_signature(env: Any) -> None:
    """Uploading the stored file again under its name with a new valid signature (figures
    measured since, or a new county key) replaces the signature, labels and figures; the gate
    then reads the new ones."""
    _h, client = env
    data = b"r" * 100
    sha = hashlib.sha256(data).hexdigest()
    assert _upload(client, "v1", None, data=data).status_code == 201
    r = client.post("/api/models/v1/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409 and "not measured" in r.json()["detail"]
    again = _upload(client, "v1", _evals(0.9, 0.97, sha), data=data)
    assert again.status_code == 201 and again.json()["eval"]["scenes-land"]["recall"] == 0.97
    r = client.post("/api/models/v1/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 200, r.text
    assert len(client.get("/api/models", headers=ADMIN).json()) == 1


def test_gate_reads_only_signed_figures(env: Any) -> None:
    """Figures changed in the database after a signed upload count for nothing: the gate
    reads the signature's; a row without a signature is refused."""
    h, client = env
    low = hashlib.sha256(b"z" * 100).hexdigest()
    assert _upload(client, "low", _evals(0.30, 0.97, low), data=b"z" * 100).status_code == 201
    from server.core.db import ServerModel
    with h.svc.sessions() as s, s.begin():
        row = s.get(ServerModel, "low")
        row.eval = _evals(0.99, 0.99, low)  # a compromised row
    r = client.post("/api/models/low/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409 and "recall 0.300 < floor 0.500" in r.json()["detail"]
    with h.svc.sessions() as s, s.begin():
        s.get(ServerModel, "low").signature = None
    r = client.post("/api/models/low/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409 and "not signed" in r.json()["detail"]


def test_gate_names_set_and_figure(env: Any) -> None:
    """Unmeasured or too low recall is refused naming the set; a pond may be stricter."""
    _h, client = env
    _upload(client, "nofig", None, data=b"a" * 100)
    r = client.post("/api/models/nofig/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409 and "water-people-valid: not measured" in r.json()["detail"]
    _upload(client, "weak", _evals(0.30, 0.97, hashlib.sha256(b"b" * 100).hexdigest()),
            data=b"b" * 100)
    r = client.post("/api/models/weak/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409
    assert "water-people-valid: recall 0.300 < floor 0.500" in r.json()["detail"]
    assert "scenes-land" not in r.json()["detail"]
    _upload(client, "forgets", _evals(0.7, 0.80, hashlib.sha256(b"d" * 100).hexdigest()),
            data=b"d" * 100)  # better in water, worse on land: refused
    r = client.post("/api/models/forgets/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409
    assert "scenes-land: recall 0.800 < floor 0.950" in r.json()["detail"]
    _upload(client, "v1", _evals(0.6, 0.97))
    r = client.post("/api/models/v1/assign", headers=ADMIN, json={"pond_id": "beitang"})
    assert r.status_code == 409
    assert "recall 0.600 < floor 0.800 for pond beitang" in r.json()["detail"]
    r = client.post("/api/models/v1/assign", headers=ADMIN, json={"pond_id": None})
    assert r.status_code == 409  # 'all' must also pass every pond's own floors
    _upload(client, "stale", _evals(0.9, 0.9, sha="f" * 64), data=b"c" * 100)
    r = client.post("/api/models/stale/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409 and "measured on another file" in r.json()["detail"]
    assert client.post("/api/models/v1/assign", headers=TECH,
                       json={"pond_id": "xiatang"}).status_code == 403
    assert client.post("/api/models/nope/assign", headers=ADMIN,
                       json={"pond_id": "xiatang"}).status_code == 404
    assert client.post("/api/models/v1/assign", headers=ADMIN,
                       json={"pond_id": "no-such-pond"}).status_code == 404
    ok = client.post("/api/models/v1/assign", headers=ADMIN, json={"pond_id": "heyuan-shantang"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["figures"] == {"water-people-valid": 0.6, "land-people-valid": 0.75,
                                    "scenes-land": 0.97}
    assert ok.json()["not_sent"] == ["heyuan-01"]  # this harness has no broker connection
    listed = {m["name"]: m["assigned_to"] for m in client.get("/api/models", headers=ADMIN).json()}
    assert listed["v1"] == ["heyuan-shantang"]


def test_gate_refuses_a_model_that_forgets_land(env: Any) -> None:
    """Real land people are a gate of their own: too few found, or found among more false
    detections than person-offline makes, is refused naming the set and the figure."""
    _h, client = env
    few = hashlib.sha256(b"e" * 100).hexdigest()
    _upload(client, "few", _evals(0.9, 0.99, few, real_land=0.60), data=b"e" * 100)
    r = client.post("/api/models/few/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409
    assert "land-people-valid: recall 0.600 < floor 0.719" in r.json()["detail"]
    noisy = hashlib.sha256(b"g" * 100).hexdigest()
    _upload(client, "noisy", _evals(0.9, 0.99, noisy, real_land=0.76, land_false=0.81),
            data=b"g" * 100)
    r = client.post("/api/models/noisy/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409
    assert ("land-people-valid: 0.81 false detections per image > ceiling 0.41"
            in r.json()["detail"])
    unmeasured = {k: v for k, v in _evals(0.9, 0.99, few).items() if k != "land-people-valid"}
    _upload(client, "halfway", unmeasured, data=b"h" * 100)
    r = client.post("/api/models/halfway/assign", headers=ADMIN, json={"pond_id": "xiatang"})
    assert r.status_code == 409 and "land-people-valid: not measured" in r.json()["detail"]


def test_gate_refuses_pond_person_v1_on_its_own_figures(env: Any) -> None:
    """The committed pond-person-v1, uploaded with the figures its manifest entry records for
    its own sha256, is refused: it finds land people only among twice person-offline's false
    detections. person-offline's own figures pass, so a county can always go back to it."""
    _h, client = env
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["models"]
    v1 = manifest["pond-person-v1"]
    r = _upload(client, "pond-person-v1", v1["eval"], data=(MODELS / v1["file"]).read_bytes())
    assert r.status_code == 201 and r.json()["sha256"] == v1["sha256"]
    r = client.post("/api/models/pond-person-v1/assign", headers=ADMIN,
                    json={"pond_id": "xiatang"})
    assert r.status_code == 409
    detail = r.json()["detail"]
    fpi = v1["eval"]["land-people-valid"]["false_per_image"]
    assert f"land-people-valid: {fpi:.2f} false detections per image > ceiling 0.41" in detail
    base = manifest["person-offline"]
    stand_in = b"person-offline figures"   # its weights are fetched, not committed
    evals = {k: {**v, "sha256": hashlib.sha256(stand_in).hexdigest()}
             for k, v in base["eval"].items() if v.get("sha256") == base["sha256"]}
    _upload(client, "person-offline", evals, data=stand_in)
    r = client.post("/api/models/person-offline/assign", headers=ADMIN,
                    json={"pond_id": "xiatang"})
    assert r.status_code == 200, r.text
    v2 = manifest["pond-person-v2"]     # the default: passes on its own figures
    r = _upload(client, "pond-person-v2", v2["eval"], data=(MODELS / v2["file"]).read_bytes())
    assert r.status_code == 201 and r.json()["sha256"] == v2["sha256"]
    r = client.post("/api/models/pond-person-v2/assign", headers=ADMIN,
                    json={"pond_id": "xiatang"})
    assert r.status_code == 200, r.text


def _heartbeat(h: Harness, node: str, sha: str | None) -> None:
    """A heartbeat through the real ingest path."""
    hb = Health(ts=h.clock.now(), version="0.1.0", model="v1", model_format="pytorch",
                model_sha256=sha)
    h.ing.process(Inbound(f"{P}/{node}/health", encode(hb), 1, 1))


def test_fleet_flags_node_with_other_model(env: Any) -> None:
    """A node reporting another sha256 than its pond's assigned model is flagged."""
    h, client = env
    _upload(client, "v1", _evals(0.9, 0.97))
    assert client.post("/api/models/v1/assign", headers=ADMIN,
                       json={"pond_id": "heyuan-shantang"}).status_code == 200
    _heartbeat(h, "heyuan-01", SHA)
    _heartbeat(h, "xiatang-01", "e" * 64)
    rows = {r["node_id"]: r for r in client.get("/api/fleet/models", headers=TECH).json()}
    assert rows["heyuan-01"]["model_mismatch"] is False
    assert rows["heyuan-01"]["model_format"] == "pytorch"
    assert rows["xiatang-01"]["model_mismatch"] is None  # nothing assigned to its pond
    assert client.post("/api/models/v1/assign", headers=ADMIN,
                       json={"pond_id": None}).status_code == 200
    rows = {r["node_id"]: r for r in client.get("/api/fleet/models", headers=TECH).json()}
    assert rows["xiatang-01"]["model_mismatch"] is True
    assert rows["xiatang-01"]["assigned_model"] == "v1"
    assert rows["beitang-01"]["model_mismatch"] is None  # no heartbeat yet


def test_node_download_needs_its_single_use_token(env: Any) -> None:
    """Only the token a model_update carried, once, for that file while it is assigned to the
    node's pond, and before it expires; passwords are not accepted, guessing is throttled."""
    from datetime import timedelta

    from server.core.db import ModelDownloadToken
    from server.fleet import rollout

    h, client = env
    _upload(client, "v1", _evals(0.9, 0.97))
    url = f"/node-api/models/{SHA}"
    assert client.get(url, headers=ADMIN).status_code == 401  # passwords are not tokens
    client.post("/api/models/v1/assign", headers=ADMIN, json={"pond_id": "heyuan-shantang"})
    with h.svc.sessions() as s, s.begin():
        model = s.get(rollout.ServerModel, "v1")
        now = h.clock.now()
        args = rollout.update_args(s, h.svc.cfg, model, "heyuan-01", now)
        other = rollout.update_args(s, h.svc.cfg, model, "xiatang-01", now)
        late = rollout.update_args(s, h.svc.cfg, model, "heyuan-01", now)
        for row in s.query(ModelDownloadToken).all():
            if row.token_sha256 == hashlib.sha256(late["token"].encode()).hexdigest():
                row.expires_at = now - timedelta(seconds=1)
    assert args["signature"]["key_id"] and args["size"] == len(WEIGHTS)
    bearer = {"Authorization": f"Bearer {args['token']}"}
    assert client.get(f"/node-api/models/{'0' * 64}", headers=bearer).status_code == 401
    # a node of another pond holds a token for the file, but the file is not its pond's
    assert client.get(url, headers={"Authorization": f"Bearer {other['token']}"}
                      ).status_code == 401
    assert client.get(url, headers={"Authorization": f"Bearer {late['token']}"}
                      ).status_code == 401  # expired
    r = client.get(url, headers=bearer)
    assert r.status_code == 200 and r.content == WEIGHTS
    assert client.get(url, headers=bearer).status_code in (401, 429)  # single use


def test_guessing_tokens_is_throttled(env: Any) -> None:
    """Wrong tokens are throttled like web logins."""
    _h, client = env
    url = f"/node-api/models/{SHA}"
    codes = [client.get(url, headers={"Authorization": f"Bearer guess{i:020d}"}).status_code
             for i in range(8)]
    assert codes[0] == 401 and codes[-1] == 429


def test_trusted_keys_from_the_config_folder(tmp_path: Path, county_key: Path) -> None:
    """models.trusted_keys paths are taken from server.yaml's folder; a key that cannot be
    read or parsed is a config error naming it."""
    from server.core.config import load_config

    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "county.pub").write_text(_pub(county_key) + "\n")
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({"environment": "dev",
                                   "models": {"trusted_keys": ["keys/county.pub"]}}))
    assert load_config(cfg).models.trusted_keys == [str(keys / "county.pub")]
    cfg.write_text(yaml.safe_dump({"environment": "dev",
                                   "models": {"trusted_keys": ["keys/none.pub"]}}))
    with pytest.raises(ConfigError, match="models: .*keys/none.pub: cannot read"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        parse_config({"models": {"trusted_keys": ["ed25519:AAAA"]}})


def test_gate_config_needs_water_and_land() -> None:
    """A gate without a land set, or a pond floor for an unknown set, is a config error."""
    with pytest.raises(ConfigError, match="water.*land"):
        parse_config({"models": {"gate": [{"name": "w", "kind": "water", "floor": 0.5}]}})
    with pytest.raises(ConfigError, match="unknown set"):
        parse_config({"models": {"pond_floors": {"p": {"nope": 0.5}}}})


def test_models_resent_to_nodes_that_missed_them(config: Any) -> None:
    """A node heard running another model is sent model_update once; again only when that
    one expired unanswered; never again after it answered (an admin reads the refusal)."""
    import io
    from datetime import timedelta

    from sqlalchemy import select

    from server.core.db import CommandRow
    from server.fleet import rollout as server_models
    from server.runner import Server

    models = config.models.model_copy(update={"trusted_keys": [_pub(KEY[0])]})
    with Server(config.model_copy(update={"models": models})) as srv:
        svc = srv.services
        assert svc.ingest is not None and svc.ingest.connected.wait(10)
        now = svc.clock.now()
        with svc.sessions() as s, s.begin():
            server_models.store(s, svc.cfg, "v1", io.BytesIO(WEIGHTS),
                                _doc("v1", _evals(0.9, 0.97)), "admin", now)
            s.flush()
            server_models.assign(s, svc.cfg.models, "v1", "heyuan-shantang", "admin", now)
        assert svc.resend_models() == 0  # the node has not said what it runs
        hb = Health(ts=now, version="0.1.0", model="person-offline", model_sha256="e" * 64)
        svc.ingest.process(Inbound(f"{P}/heyuan-01/health", encode(hb), 1, 1))
        assert svc.resend_models() == 1
        assert svc.resend_models() == 0  # still waiting for the node
        with svc.sessions() as s, s.begin():
            row = s.scalars(select(CommandRow).where(CommandRow.cmd == "model_update")).one()
            assert row.node_id == "heyuan-01" and row.args["sha256"] == SHA
            assert row.args["url"].endswith(f"/node-api/models/{SHA}")
            row.expires_at = now - timedelta(seconds=1)  # the node was offline all along
        assert svc.resend_models() == 1
        with svc.sessions() as s, s.begin():
            for row in s.scalars(select(CommandRow)):
                row.result_at, row.ok = now, False
        assert svc.resend_models() == 0

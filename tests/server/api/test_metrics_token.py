"""/metrics: open without a token, bearer token when metrics_token is set; unreadable key files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.core.config import ConfigError
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver, make_config

TOKEN = "metrics-token-0123456789"


def _client(h: Harness) -> TestClient:
    return TestClient(create_app(h.svc), follow_redirects=False)


def test_metrics_open_without_token(tmp_path: Path, receiver: PageReceiver,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PONDWATCH_METRICS_TOKEN", raising=False)
    h = Harness(tmp_path, receiver)
    try:
        with _client(h) as c:
            r = c.get("/metrics")
            assert r.status_code == 200 and "pondwatch_alerts_open" in r.text
    finally:
        h.close()


@pytest.mark.parametrize("source", ["config", "env", "file"])
def test_metrics_token_required_when_set(tmp_path: Path, receiver: PageReceiver,
                                         monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    monkeypatch.delenv("PONDWATCH_METRICS_TOKEN", raising=False)
    extra: dict[str, str] = {}
    if source == "config":
        extra["metrics_token"] = TOKEN
    elif source == "env":
        monkeypatch.setenv("PONDWATCH_METRICS_TOKEN", TOKEN)
    else:
        (tmp_path / "metrics.token").write_text(TOKEN + "\n", encoding="utf-8")
        extra["metrics_token_file"] = str(tmp_path / "metrics.token")
    h = Harness(tmp_path, receiver, **extra)
    try:
        with _client(h) as c:
            r = c.get("/metrics")
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert "pondwatch_" not in r.text
            for bad in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
                assert c.get("/metrics", headers={"Authorization": bad}).status_code == 401
            ok = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200 and "pondwatch_alerts_open" in ok.text
            assert c.get("/healthz").status_code == 200  # liveness stays open
    finally:
        h.close()


@pytest.mark.parametrize(("extra", "match"), [
    ({"metrics_token": "short"}, "at least 16"),
    ({"metrics_token": "changeme"}, "at least 16"),
    ({"metrics_token_file": "/nonexistent/metrics.token"}, "cannot read"),
])
def test_bad_metrics_token_is_a_config_error(tmp_path: Path, receiver: PageReceiver,
                                             monkeypatch: pytest.MonkeyPatch,
                                             extra: dict[str, str], match: str) -> None:
    monkeypatch.delenv("PONDWATCH_METRICS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=match):
        make_config(tmp_path, receiver, **extra)


def test_empty_metrics_token_file_is_a_config_error(tmp_path: Path, receiver: PageReceiver,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PONDWATCH_METRICS_TOKEN", raising=False)
    (tmp_path / "empty.token").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        make_config(tmp_path, receiver, metrics_token_file=str(tmp_path / "empty.token"))


def test_open_metrics_on_public_bind_is_warned(tmp_path: Path, receiver: PageReceiver,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("PONDWATCH_METRICS_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="server.services"):
        h = Harness(tmp_path, receiver, http={"bind": "0.0.0.0:8080"})
        h.close()
    assert any("/metrics is open" in r.getMessage() for r in caplog.records)
    caplog.clear()
    (tmp_path / "b").mkdir()
    with caplog.at_level(logging.WARNING, logger="server.services"):
        h = Harness(tmp_path / "b", receiver)
        h.close()
    assert not any("/metrics is open" in r.getMessage() for r in caplog.records)


def test_unreadable_secret_key_file_is_a_config_error(tmp_path: Path, receiver: PageReceiver,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PONDWATCH_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="secret_key_file: cannot read"):
        make_config(tmp_path, receiver, secret_key=None,
                    secret_key_file=str(tmp_path / "missing.key"))

"""The node service on a real clip with mock GPIO: warns locally with no network, SOS button."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpiozero.pins.mock import MockFactory

from edge.config import load_config
from edge.link.outbox import Outbox
from edge.service import NodeService
from server.link.broker import free_port
from tests.support import wait_for

HORN, LIGHT, LED, SOS = 17, 27, 22, 5


class RecordingPlayer:
    """Stands in for the speaker: records what would be played."""

    def __init__(self) -> None:
        self.played: list[str] = []

    def play(self, path: str) -> None:
        self.played.append(path)

    def stop(self) -> None:
        pass

    @property
    def busy(self) -> bool:
        return False



@pytest.fixture
def offline_node(scenes_dir: Path, tmp_path: Path
                 ) -> Iterator[tuple[NodeService, Any, RecordingPlayer]]:
    """The child_to_bank clip, GPIO on the mock factory, and a broker that is not there."""
    raw = yaml.safe_load((scenes_dir / "child_to_bank.yaml").read_text())
    for section, key in (("camera", "source"), ("model", "path")):
        p = Path(str(raw[section][key]))
        raw[section][key] = str(p if p.is_absolute() else scenes_dir / p)
    raw["mqtt"] = {"url": f"mqtt://127.0.0.1:{free_port()}"}
    raw["outbox"] = str(tmp_path / "outbox.db")
    raw["gpio"] = {"horn": HORN, "light": LIGHT, "status_led": LED, "sos_button": SOS}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(raw))
    factory = MockFactory()
    player = RecordingPlayer()
    svc = NodeService(load_config(path), str(path), pin_factory=factory, player=player)
    yield svc, factory, player
    svc.close()
    factory.close()


def test_child_warned_on_the_spot_without_network(offline_node: Any) -> None:
    svc, factory, player = offline_node
    runner = threading.Thread(target=svc.run, daemon=True)
    runner.start()
    horn = factory.pin(HORN)
    box = Outbox(svc.cfg.outbox)
    wait_for(lambda: any(i.event["type"] == "child_near_water" for i in box.due(1e12, 50)),
             60, "a child_near_water event in the outbox")
    # How soon is not timed here: the warning acts when the event wakes its worker
    # (tests/edge/warning/test_local.py, on the fake clock).
    wait_for(lambda: horn.state, 15, "the horn")
    wait_for(lambda: factory.pin(LIGHT).state, 15, "the flashing light")
    wait_for(lambda: bool(player.played), svc.cfg.warning.horn_s + 15,
             "the spoken warning after the horn blast")
    assert not svc.link.connected.is_set()
    assert svc._status() == "no_broker"
    svc.stop_event.set()
    runner.join(20)


def test_sos_button_raises_a_critical_event(offline_node: Any) -> None:
    svc, factory, _ = offline_node
    button = factory.pin(SOS)
    button.drive_low()
    box = Outbox(svc.cfg.outbox)
    wait_for(lambda: any(i.event["type"] == "sos" for i in box.due(1e12, 50)), 5, "an sos event")
    [sos] = [i for i in box.due(1e12, 50) if i.event["type"] == "sos"]
    assert sos.severity == "critical" and sos.event["node_id"] == svc.cfg.node_id
    wait_for(lambda: factory.pin(HORN).state, 1.0, "the horn for SOS")


def test_remote_re_enrol_writes_references_from_the_live_view(offline_node: Any) -> None:
    import cv2

    from protocol import Command
    from protocol.payloads import utc_now

    svc, _, _ = offline_node
    assert all(v.startswith("unknown") for v in svc.site.kit.state().values())
    cap = cv2.VideoCapture(str(svc.cfg.camera.source))
    ok, frame = cap.read()
    cap.release()
    assert ok
    svc.slot.put(frame, 0.0)
    from datetime import timedelta
    cmd = Command(id="enrol-1", cmd="enrol", args={"frames": 3, "every_s": 0.01},
                  expires_at=utc_now() + timedelta(minutes=1))
    result = svc.handle_command(cmd)
    assert result is not None and result.ok, result
    assert "enrolled 2 item(s)" in str(result.result)
    for spec in svc.cfg.equipment:
        assert spec.reference and Path(spec.reference).exists()
    assert not any(v == "unknown:no_reference" for v in svc.site.kit.state().values())


def test_on_request_snapshot_is_a_whole_jpeg_within_the_limit(
        offline_node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A detailed frame whose plain JPEG is far over the limit is published shrunk to fit, as
    one valid JPEG (it was cut at 150,000 bytes: a broken image)."""
    from datetime import timedelta

    import cv2
    import numpy as np

    from protocol import Command
    from protocol.limits import MAX_SNAPSHOT_BYTES
    from protocol.payloads import utc_now

    svc, _, _ = offline_node
    frame = np.random.default_rng(7).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert len(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 70])[1]) > 2 * 150_000
    svc.slot.put(frame, 0.0)
    sent: list[tuple[str, bytes]] = []
    monkeypatch.setattr(svc.link.client, "publish",
                        lambda topic, payload, qos=0: sent.append((topic, payload)))
    cmd = Command(id="snap-1", cmd="snapshot", args={},
                  expires_at=utc_now() + timedelta(minutes=1))
    result = svc.handle_command(cmd)
    assert result is not None and result.ok, result
    assert isinstance(result.result, dict)
    [(topic, jpeg)] = sent
    assert topic == svc.link.topics.snapshot(svc.cfg.node_id, result.result["snapshot_id"])
    assert len(jpeg) <= MAX_SNAPSHOT_BYTES
    assert jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")  # whole, not cut
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] / img.shape[0] == pytest.approx(16 / 9, rel=0.01)
    assert result.result["bytes"] == len(jpeg)

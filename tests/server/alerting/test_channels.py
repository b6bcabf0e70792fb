"""The channels a county pages through, each by Apprise's own plugin against a local stand-in
that checks the vendor's documented request and answers like the vendor; failures are tried
again, then the person's next channel takes the page (fake clock, real HTTP and SMTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from apprise.plugins.dingtalk import NotifyDingTalk
from apprise.plugins.feishu import NotifyFeishu
from apprise.plugins.wecombot import NotifyWeComBot
from sqlalchemy import select

from server.core.db import Delivery, Person, TimelineEntry
from tests.server.alerting.test_escalation import Harness, smtp  # noqa: F401 (fixture)
from tests.server.alerting.vendors import VendorStandIn
from tests.server.conftest import PageReceiver

TOKEN, SECRET, PHONE = "abc123token", "SECa1b2c3d4", "+8613800000000"
FAST = "rto=0.5&cto=0.5"  # Apprise's read/connect timeouts, so a timeout test is quick


@pytest.fixture
def vendors(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, VendorStandIn]]:
    """One stand-in per vendor. DingTalk, WeCom and Feishu have their vendor's https host
    written into the Apprise plugin, so the plugin's notify_url is pointed at the stand-in
    (everything else is the plugin's own code: payload, signature, answer handling);
    SMSEagle's host is part of its URL."""
    out = {"dingtalk": VendorStandIn("dingtalk", TOKEN, SECRET),
           "wecombot": VendorStandIn("wecombot", TOKEN),
           "feishu": VendorStandIn("feishu", TOKEN),
           "smseagle": VendorStandIn("smseagle", TOKEN)}
    monkeypatch.setattr(NotifyDingTalk, "notify_url",
                        out["dingtalk"].base + "/robot/send?access_token={token}")
    monkeypatch.setattr(NotifyWeComBot, "notify_url",
                        out["wecombot"].base + "/cgi-bin/webhook/send?key={key}")
    monkeypatch.setattr(NotifyFeishu, "notify_url",
                        out["feishu"].base + "/open-apis/bot/v2/hook/{token}/")
    yield out
    for v in out.values():
        v.close()


def urls(vendors: dict[str, VendorStandIn]) -> dict[str, str]:
    """The Apprise URL a person's notify list holds for each vendor."""
    return {"dingtalk": f"dingtalk://{SECRET}@{TOKEN}/?{FAST}",
            "wecombot": f"wecombot://{TOKEN}/?{FAST}",
            "feishu": f"feishu://{TOKEN}/?{FAST}",
            "smseagle": f"smseagle://{TOKEN}@127.0.0.1:{vendors['smseagle'].port}/{PHONE}"
                        f"?{FAST}"}


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver) -> Iterator[Harness]:
    """Services on a fake clock; tries again at once (no pause between tries)."""
    harness = Harness(tmp_path, receiver, paging={"retries": 1, "retry_wait_s": 0})
    yield harness
    harness.close()


def set_channels(h: Harness, person: str, channels: list[str]) -> None:
    """Give one person these Apprise URLs, in order."""
    with h.svc.sessions() as s, s.begin():
        s.get(Person, person).notify = channels


def tries(h: Harness) -> list[tuple[str | None, str | None]]:
    """(channel, result) of every delivery try on the timeline, in order."""
    with h.svc.sessions() as s:
        return [(r.channel, r.result) for r in s.scalars(
            select(TimelineEntry).where(TimelineEntry.kind == "delivery")
            .order_by(TimelineEntry.id))]


@pytest.mark.parametrize("vendor", ["dingtalk", "wecombot", "feishu", "smseagle"])
def test_each_vendor_receives_the_page_in_its_documented_shape(
        h: Harness, vendors: dict[str, VendorStandIn], vendor: str) -> None:
    """One page through Apprise's plugin: the stand-in finds nothing wrong (DingTalk: a
    fresh timestamp and a matching HMAC-SHA256 sign) and the text leads with what and
    where, then the time and the acknowledge link."""
    stand_in = vendors[vendor]
    set_channels(h, "guo-yong", [urls(vendors)[vendor]])
    h.event("person_in_water", child=True, boxes=[(0.1, 0.5, 0.2, 0.9)])
    h.tick()
    assert stand_in.problems == []
    assert len(stand_in.accepted) == 1
    text = stand_in.text_of(stand_in.accepted[0])
    lines = [ln for ln in text.replace("\r\n", "\n").splitlines() if ln.strip()]
    body = lines[1:] if lines[0].startswith("【紧急】") else lines  # title line where sent
    assert body[0] == "儿童在水中｜禾源山塘（禾源村）"
    assert body[1].startswith("时间：") and re.search(r"/a/[A-Za-z0-9_.-]+", body[2])
    assert tries(h) == [(vendor, "ok")]
    if vendor == "dingtalk":
        q = stand_in.requests[0]["query"]
        assert q["timestamp"][0].isdigit() and q["sign"][0]
    if vendor == "smseagle":
        assert stand_in.accepted[0]["params"]["to"] == PHONE


def test_apprise_own_dingtalk_plugin_signs_twice_encoded(
        vendors: dict[str, VendorStandIn]) -> None:
    """Why server/alerting/channels.py exists: Apprise 2.3's own plugin url-encodes the sign,
    requests encodes it again, and a robot with 加签 answers 'sign not match' (in an HTTP 200,
    which Apprise counts as sent)."""
    plugin = NotifyDingTalk(**NotifyDingTalk.parse_url(f"dingtalk://{SECRET}@{TOKEN}/"))
    assert type(plugin) is NotifyDingTalk
    assert plugin.notify(body="测试", title="t") is True  # Apprise thinks it went out
    assert vendors["dingtalk"].problems == ["sign not match"]
    assert vendors["dingtalk"].accepted == []


def test_dingtalk_refuses_a_wrong_secret(h: Harness, vendors: dict[str, VendorStandIn]) -> None:
    """The stand-in really checks the signature: a robot configured with another secret gets
    DingTalk's 'sign not match' answer."""
    set_channels(h, "guo-yong", [f"dingtalk://SECwrong0000@{TOKEN}/?{FAST}"])
    h.event("sos")
    h.tick()
    assert vendors["dingtalk"].problems == ["sign not match"] * 2
    assert tries(h) == [("dingtalk", "failed"), ("dingtalk", "failed")]


@pytest.mark.parametrize(("vendor", "mode"), [
    ("dingtalk", "http_error"), ("dingtalk", "timeout"),
    ("wecombot", "http_error"), ("wecombot", "timeout"),
    ("feishu", "error"), ("feishu", "http_error"), ("feishu", "timeout"),
    ("smseagle", "error"), ("smseagle", "http_error"), ("smseagle", "timeout"),
])
def test_failure_is_tried_again_then_falls_through_to_the_next_channel(
        h: Harness, vendors: dict[str, VendorStandIn], receiver: PageReceiver, vendor: str,
        mode: str) -> None:
    """An error answer or no answer: the same channel once more (retries: 1), then the
    person's next channel (here json://) takes the page; one delivery, sent."""
    vendors[vendor].mode = mode
    set_channels(h, "guo-yong", [urls(vendors)[vendor], receiver.url("guo-yong")])
    h.event("person_in_water")
    h.tick()
    assert len(vendors[vendor].requests) == 2
    assert tries(h) == [(vendor, "failed"), (vendor, "failed"), ("json", "ok")]
    assert receiver.paths == ["/guo-yong"]
    with h.svc.sessions() as s:
        assert [d.status for d in s.scalars(select(Delivery))] == ["sent"]


@pytest.mark.parametrize("vendor", ["dingtalk", "wecombot"])
def test_errcode_in_an_http_200_answer_falls_through(
        h: Harness, vendors: dict[str, VendorStandIn], receiver: PageReceiver,
        vendor: str) -> None:
    """DingTalk and WeCom answer a refusal (here their rate limit) with HTTP 200 and an
    errcode: it counts as a failure, is tried again, and the next channel takes the page
    (Apprise's own plugins read only the HTTP status; server/alerting/channels.py)."""
    vendors[vendor].mode = "error"
    set_channels(h, "guo-yong", [urls(vendors)[vendor], receiver.url("guo-yong")])
    h.event("person_in_water")
    h.tick()
    assert len(vendors[vendor].requests) == 2 and vendors[vendor].accepted == []
    assert tries(h) == [(vendor, "failed"), (vendor, "failed"), ("json", "ok")]
    assert receiver.paths == ["/guo-yong"]


def test_every_channel_down_brings_the_next_step_forward(
        h: Harness, vendors: dict[str, VendorStandIn]) -> None:
    """DingTalk, WeCom, Feishu and SMS all failing: each tried twice, the delivery failed, and
    the next escalation step fires at once instead of at 60 s."""
    for v in vendors.values():
        v.mode = "http_error"
    u = urls(vendors)
    set_channels(h, "guo-yong", [u["dingtalk"], u["wecombot"], u["feishu"], u["smseagle"]])
    h.event("person_in_water")
    h.tick()
    assert [c for c, _ in tries(h)] == ["dingtalk"] * 2 + ["wecombot"] * 2 + ["feishu"] * 2 + [
        "smseagle"] * 2
    assert h.tick() == 1  # no clock advance: the step was brought forward
    assert sorted(h.paged()) == ["kang-donghai", "liu-min"]


def test_email_through_a_real_smtp_server(tmp_path: Path, receiver: PageReceiver,
                                          smtp) -> None:  # noqa: F811 (the fixture)
    """mailto:// to a local SMTP server: subject is the title, the body leads with what and
    where; no attachment unless mailto is in attach_images."""
    port, box = smtp
    h = Harness(tmp_path, receiver, paging={"retries": 0, "retry_wait_s": 0})
    try:
        set_channels(h, "guo-yong", [f"mailto://127.0.0.1:{port}?to=guo@example.com"
                                     f"&from=pw@example.com&mode=insecure"])
        h.event("person_submerged", child=False)
        h.tick()
        with box.cond:
            assert box.cond.wait_for(lambda: box.messages, 10)
        msg = message_from_bytes(box.messages[0])
        assert str(make_header(decode_header(msg["Subject"]))) == "【紧急】禾源山塘：成人没入水中"
        assert not any(p.get_content_maintype() == "image" for p in msg.walk())
        part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
        text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        assert text.splitlines()[0] == "成人没入水中｜禾源山塘（禾源村）"
    finally:
        h.close()


def test_email_refused_by_the_smtp_server_falls_through(tmp_path: Path,
                                                        receiver: PageReceiver) -> None:
    """An SMTP server that refuses the message (550): tried again, then the next channel."""
    from aiosmtpd.controller import Controller

    from server.link.broker import free_port

    class Refusing:
        def __init__(self) -> None:
            self.tries = 0

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            self.tries += 1
            return "550 mailbox unavailable"

    handler = Refusing()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    h = Harness(tmp_path, receiver, paging={"retries": 1, "retry_wait_s": 0})
    try:
        set_channels(h, "guo-yong", [f"mailto://127.0.0.1:{ctl.port}?to=guo@example.com"
                                     f"&from=pw@example.com&mode=insecure",
                                     receiver.url("guo-yong")])
        h.event("sos")
        h.tick()
        assert handler.tries == 2
        assert tries(h) == [("mailto", "failed"), ("mailto", "failed"), ("json", "ok")]
    finally:
        h.close()
        ctl.stop()


@pytest.mark.parametrize(("section", "value", "field"), [
    ("paging", {"attach_images": ["mail to"]}, "paging.attach_images"),
    ("paging", {"retries": 9}, "paging.retries"),
    ("escalation", {"incident_clear_s": 1}, "escalation.incident_clear_s"),
    ("false_alarm_budget", -1, "false_alarm_budget"),
])
def test_bad_paging_config_names_the_field(section: str, value: object, field: str) -> None:
    """Each new setting is bounded; the error names it."""
    from server.core.config import ConfigError, parse_config
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config({"environment": "dev", section: value})

"""A real headless Chromium opens an acknowledge link on a phone-sized screen and taps 已收到."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.runner import Server
from tests.server.conftest import FakeNode, PageReceiver

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
def test_phone_taps_received_and_dashboard_shows_it(config, receiver: PageReceiver,
                                                    node: FakeNode, monkeypatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("PONDWATCH_ADMIN_PASSWORD", "admin-pass-123")
    jpeg = (Path(__file__).parent / "snapshot.jpg")
    with Server(config) as srv:
        assert srv.services.ingest.connected.wait(10)
        ev = node.event("child_near_water", snapshot=True, stature_m=1.2)
        node.publish(node.topics.snapshot(node.node_id, ev.id), jpeg.read_bytes())
        page_msg = receiver.wait(1)[0]["message"]
        link = re.search(r"http://\S+/a/\S+", page_msg).group(0)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            try:
                ctx = browser.new_context(viewport={"width": 390, "height": 844},
                                          device_scale_factor=2, is_mobile=True, has_touch=True,
                                          locale="zh-CN")
                page = ctx.new_page()
                page.goto(link)
                expect(page.get_by_role("heading")).to_contain_text("禾源山塘")
                expect(page.locator("img.snap")).to_be_visible()
                assert page.locator("img.snap").evaluate("i => i.naturalWidth") > 0
                page.get_by_role("button", name="已收到").tap()
                expect(page.locator("#done")).to_contain_text("已收到")
                expect(page.locator("#state")).to_have_text("已收到")
                expect(page.get_by_role("button", name="已收到")).to_have_count(0)
                page.get_by_role("button", name="已到场").tap()
                expect(page.locator("#state")).to_have_text("已到场")

                page.goto(srv.url + "/")
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", "admin-pass-123")
                page.get_by_role("button", name="登录").click()
                row = page.locator("tr[data-alert-id]")
                expect(row).to_have_count(1)
                expect(row).to_have_attribute("data-state", "on_scene")
            finally:
                browser.close()

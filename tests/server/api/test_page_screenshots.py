"""The constable's page as a phone shows it, screenshotted in real headless Chromium for each
kind and for an upgrade: what and where on the first line, then time, link, people seen, all
on one screen. PNGs go to the test's tmp dir and to docs/img/ for docs/paging.md."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.link.broker import free_port
from tests.server.alerting.test_escalation import Harness
from tests.server.conftest import PageReceiver

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"
BOXES = [(0.1, 0.5, 0.2, 0.9), (0.5, 0.5, 0.6, 0.9)]
LINK = re.compile(r"(https?://\S+)")


def phone_html(page: dict[str, Any]) -> str:
    """A chat message as a phone app shows it: the title in bold, then the text, links live."""
    def line(text: str) -> str:
        return LINK.sub(r'<a href="\1">\1</a>', html.escape(text))
    body = "".join(f'<div class="ln">{line(t)}</div>' for t in page["message"].splitlines())
    return f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><style>
body{{margin:0;background:#ededed;font:17px/1.45 "Noto Sans CJK SC",sans-serif}}
.bubble{{margin:12px;padding:12px 14px;background:#fff;border-radius:10px;
word-break:break-all;box-shadow:0 1px 2px rgba(0,0,0,.15)}}
.title{{font-weight:700;margin-bottom:4px}}.title+.ln{{font-weight:700;color:#b00020}}
a{{color:#1565c0}}</style></head><body><div class="bubble" id="msg">
<div class="title">{html.escape(page["title"])}</div>{body}</div></body></html>"""


@pytest.fixture
def h(tmp_path: Path, receiver: PageReceiver) -> Iterator[Harness]:
    port = free_port()  # a fixed public URL: the same page text, the same PNG, every run
    harness = Harness(tmp_path, receiver, http={"bind": f"127.0.0.1:{port}",
                                                "public_url": "https://pondwatch.example.cn"})
    yield harness
    harness.close()


def pages_of_each_kind(h: Harness) -> dict[str, dict[str, Any]]:
    """One page per kind at three ponds, then a child's bank → water → under upgrade."""
    out: dict[str, dict[str, Any]] = {}
    h.event("sos", node="xiatang-01", pond="xiatang")
    h.tick()
    out["sos"] = h.receiver.pages[-1]
    h.event("person_in_water", node="beitang-01", pond="beitang", child=False, boxes=BOXES)
    h.tick()
    out["adult-in-water"] = h.receiver.for_path("guo-yong")[-1]
    h.event("child_near_water", stature_m=1.1, boxes=BOXES[:1])
    h.tick()
    out["child-on-bank"] = h.receiver.for_path("guo-yong")[-1]
    h.clock.advance(4)
    h.event("person_in_water", child=True, boxes=BOXES[:1])
    h.tick()
    out["upgrade-child-in-water"] = h.receiver.for_path("guo-yong")[-1]
    h.clock.advance(4)
    h.event("person_submerged", child=True)
    h.tick()
    out["upgrade-child-submerged"] = h.receiver.for_path("guo-yong")[-1]
    return out


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
def test_each_kind_reads_in_five_seconds_on_a_phone(h: Harness, tmp_path: Path) -> None:
    """Every page fits one phone screen, its first line (bold) says what and where, the next
    the time, then the acknowledge link; screenshots of each."""
    from playwright.sync_api import sync_playwright
    pages = pages_of_each_kind(h)
    firsts = {k: p["message"].splitlines()[0] for k, p in pages.items()}
    assert firsts == {"sos": "求救按钮被按下｜下塘（下村）",
                      "adult-in-water": "成人在水中｜北塘（北村）",
                      "child-on-bank": "儿童在岸边｜禾源山塘（禾源村）",
                      "upgrade-child-in-water": "儿童已落水｜禾源山塘（禾源村）",
                      "upgrade-child-submerged": "儿童已没入水中｜禾源山塘（禾源村）"}
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 390, "height": 844},
                                      device_scale_factor=1, is_mobile=True, has_touch=True,
                                      locale="zh-CN")
            tab = ctx.new_page()
            for kind, page in pages.items():
                tab.set_content(phone_html(page))
                bubble = tab.locator("#msg")
                box = bubble.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 844, kind
                first = tab.locator(".ln").first
                assert first.inner_text() == firsts[kind]
                fbox = first.bounding_box()
                assert fbox is not None and fbox["y"] < 80, kind  # right under the title
                size = first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
                assert size >= 16
                lines = tab.locator(".ln").all_inner_texts()
                assert lines[1].startswith("时间：") and "/a/" in lines[2], kind
                assert tab.locator(".ln a").first.get_attribute("href").startswith("http")
                shot = bubble.screenshot(path=str(tmp_path / f"page-{kind}.png"))
                assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) < 200_000
                (DOCS_IMG / f"page-{kind}.png").write_bytes(shot)
        finally:
            browser.close()

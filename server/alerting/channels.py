"""Fixes to Apprise plugins the county's channels need, registered over Apprise's own.

- DingTalk's robot documentation has the signature url-encoded once in the URL
  (`...&timestamp=T&sign=urlEncode(base64(HMAC-SHA256))`). Apprise 2.3's dingtalk:// plugin
  url-encodes it itself and hands it to requests as a parameter, which encodes it again, so a
  robot with 加签 answers 310000 "sign not match".
- DingTalk and WeCom answer errors (a rate limit, a bad signature, a wrong key) with HTTP 200
  and a non-zero `errcode`; Apprise's dingtalk:// and wecombot:// read only the HTTP status,
  so such a page counted as sent and never fell through to the person's next channel.

The classes below keep Apprise's URL parsing, validation, signature and payload shape; only
the request is sent here, with the signature encoded once and the answer's errcode read.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote

import requests
from apprise.plugins import N_MGR
from apprise.plugins.dingtalk import NotifyDingTalk
from apprise.plugins.wecombot import NotifyWeComBot

log = logging.getLogger(__name__)


def post_checked(plugin: Any, url: str, payload: dict[str, Any],
                 params: dict[str, str] | None = None) -> bool:
    """POST payload as JSON with the plugin's timeouts and TLS setting; True only for HTTP 200
    with errcode 0 (an answer that is not JSON counts as a failure)."""
    plugin.throttle()
    try:
        r = requests.post(url, data=json.dumps(payload).encode("utf-8"), params=params,
                          headers={"User-Agent": plugin.app_id,
                                   "Content-Type": "application/json; charset=utf-8"},
                          verify=plugin.verify_certificate, timeout=plugin.request_timeout,
                          allow_redirects=plugin.redirects)
    except requests.RequestException as exc:
        log.warning("%s: no answer: %s", plugin.service_name, exc)
        return False
    if r.status_code != requests.codes.ok:
        log.warning("%s answered HTTP %s", plugin.service_name, r.status_code)
        return False
    try:
        answer = r.json()
    except ValueError:
        log.warning("%s answered HTTP 200 without JSON", plugin.service_name)
        return False
    code = answer.get("errcode") if isinstance(answer, dict) else None
    if code != 0:
        log.warning("%s refused the message: errcode=%s errmsg=%s", plugin.service_name, code,
                    str(answer.get("errmsg") if isinstance(answer, dict) else answer)[:200])
        return False
    return True


class DingTalkChecked(NotifyDingTalk):  # type: ignore[no-untyped-call]
    """Apprise's DingTalk robot plugin: `sign` encoded once, errcode read."""

    def get_signature(self) -> tuple[str, str]:
        """(timestamp in ms, base64 signature) for requests to encode once."""
        timestamp, signature = super().get_signature()  # type: ignore[no-untyped-call]
        return timestamp, unquote(signature)

    def send(self, body: str, title: str = "", notify_type: Any = None,
             body_format: Any = None, **kwargs: Any) -> bool:
        """A text message (the title on the first line), as Apprise builds it."""
        payload = {"msgtype": "text", "at": {"atMobiles": self.targets, "isAtAll": False},
                   "text": {"content": f"{title}\r\n{body}" if title else body}}
        params = None
        if self.secret:
            timestamp, sign = self.get_signature()
            params = {"timestamp": timestamp, "sign": sign}
        return post_checked(self, self.notify_url.format(token=self.token), payload, params)


class WeComBotChecked(NotifyWeComBot):  # type: ignore[no-untyped-call]
    """Apprise's WeCom group robot plugin with the answer's errcode read."""

    def send(self, body: str, title: str = "", notify_type: Any = None,
             **kwargs: Any) -> bool:
        """A text message of the body, as Apprise builds it."""
        return post_checked(self, self.api_url, {"msgtype": "text", "text": {"content": body}})


def register() -> None:
    """Put the fixed plugins in Apprise's place for their URL schemes (idempotent)."""
    for schema, plugin in (("dingtalk", DingTalkChecked), ("wecombot", WeComBotChecked)):
        if N_MGR[schema] is not plugin:
            N_MGR.add(plugin, schemas=[schema], force=True)  # type: ignore[no-untyped-call]

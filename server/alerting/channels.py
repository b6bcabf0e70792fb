"""Fixes to Apprise plugins the county's channels need, registered over Apprise's own.

DingTalk's robot documentation has the signature url-encoded once in the URL
(`...&timestamp=T&sign=urlEncode(base64(HMAC-SHA256))`). Apprise 2.3's dingtalk:// plugin
url-encodes it itself and hands it to requests as a parameter, which encodes it again, so a
robot with 加签 answers 310000 "sign not match". DingTalkSignedOnce is Apprise's plugin with
the signature passed to requests un-encoded (requests encodes it once); everything else
(payload, targets, answer handling) stays Apprise's.
"""

from __future__ import annotations

from urllib.parse import unquote

from apprise.plugins import N_MGR
from apprise.plugins.dingtalk import NotifyDingTalk


class DingTalkSignedOnce(NotifyDingTalk):  # type: ignore[no-untyped-call]
    """Apprise's DingTalk robot plugin whose `sign` is url-encoded once, as DingTalk says."""

    def get_signature(self) -> tuple[str, str]:
        """(timestamp in ms, base64 signature) for requests to encode once."""
        timestamp, signature = super().get_signature()  # type: ignore[no-untyped-call]
        return timestamp, unquote(signature)


def register() -> None:
    """Put the fixed plugins in Apprise's place for their URL schemes (idempotent)."""
    if N_MGR["dingtalk"] is not DingTalkSignedOnce:
        N_MGR.add(DingTalkSignedOnce, schemas=["dingtalk"],  # type: ignore[no-untyped-call]
                  force=True)

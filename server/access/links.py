"""HMAC-signed, expiring tokens: per-recipient acknowledge links and session cookies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from server.core.errors import ServerError


class LinkError(ServerError, ValueError):
    """A token that is forged, damaged, for another purpose, or expired."""


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Inverse of _b64."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs small JSON claims with HMAC-SHA256 under one purpose."""

    def __init__(self, key: bytes, purpose: str) -> None:
        """Derive a per-purpose key so an ack link is never a valid cookie."""
        self._key = hmac.new(key, purpose.encode(), hashlib.sha256).digest()

    def sign(self, claims: dict[str, Any], expires_at: datetime) -> str:
        """A token carrying claims until expires_at."""
        body = dict(claims, exp=int(expires_at.timestamp()))
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
        return f"{payload}.{_b64(mac)}"

    def verify(self, token: str, now: datetime) -> dict[str, Any]:
        """The claims of a valid, unexpired token; LinkError otherwise."""
        try:
            payload, mac = token.split(".", 1)
            expected = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise LinkError("bad signature")
            claims: dict[str, Any] = json.loads(_unb64(payload))
        except LinkError:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise LinkError("damaged token") from exc
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            raise LinkError("damaged token")
        if now.timestamp() > claims["exp"]:
            raise LinkError("expired")
        return claims


@dataclass(frozen=True)
class AckClaims:
    """Who may act on which alert through a link, and until when."""

    alert_id: int
    person_id: str
    expires_at: datetime


class AckLinks:
    """Makes and checks per-recipient acknowledge links."""

    def __init__(self, key: bytes, public_url: str, ttl_s: int) -> None:
        """Links are public_url/a/TOKEN and live ttl_s seconds."""
        self._signer = Signer(key, "ack-link")
        self._base = public_url.rstrip("/")
        self._ttl = timedelta(seconds=ttl_s)

    def token(self, alert_id: int, person_id: str, now: datetime) -> str:
        """A token for one recipient of one alert."""
        return self._signer.sign({"a": alert_id, "p": person_id}, now + self._ttl)

    def url(self, alert_id: int, person_id: str, now: datetime) -> str:
        """The full acknowledge URL sent in a page."""
        return f"{self._base}/a/{self.token(alert_id, person_id, now)}"

    def check(self, token: str, now: datetime) -> AckClaims:
        """The claims of a valid link; LinkError otherwise."""
        c = self._signer.verify(token, now)
        if not isinstance(c.get("a"), int) or not isinstance(c.get("p"), str):
            raise LinkError("damaged token")
        return AckClaims(c["a"], c["p"], datetime.fromtimestamp(c["exp"], UTC))

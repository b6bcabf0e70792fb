"""Web users: scrypt password hashes, signed session cookies, role checks."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.db import User
from server.links import LinkError, Signer

log = logging.getLogger(__name__)
_N, _R, _P = 2**14, 8, 1
ROLES = ("admin", "constable", "area_officer", "duty_desk", "technician", "viewer")


def hash_password(password: str) -> str:
    """An scrypt hash with a random salt, as scrypt$n$r$p$salt$hash."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when password matches the stored hash."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def set_user(session: Session, username: str, password: str, role: str = "admin",
             person_id: str | None = None) -> User:
    """Create or update a user (caller commits)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    user = session.get(User, username)
    if user is None:
        user = User(username=username, password_hash=hash_password(password), role=role,
                    person_id=person_id)
        session.add(user)
    else:
        user.password_hash, user.role, user.person_id = hash_password(password), role, person_id
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user when the password is right, else None."""
    user = session.get(User, username)
    if user is None:
        hashlib.scrypt(b"x", salt=b"0" * 16, n=_N, r=_R, p=_P)  # same cost either way
        return None
    return user if check_password(password, user.password_hash) else None


def ensure_env_admin(session: Session) -> None:
    """Create or update user 'admin' from env PONDWATCH_ADMIN_PASSWORD when set."""
    password = os.environ.get("PONDWATCH_ADMIN_PASSWORD")
    if password:
        set_user(session, os.environ.get("PONDWATCH_ADMIN_USER", "admin"), password, "admin")
        log.info("admin user set from PONDWATCH_ADMIN_PASSWORD")


class LoginThrottle:
    """Refuses a user name for a while after too many wrong passwords."""

    def __init__(self, max_failures: int = 5, window_s: float = 300) -> None:
        """At most max_failures within window_s seconds."""
        self.max, self.window = max_failures, timedelta(seconds=window_s)
        self._fails: dict[str, list[datetime]] = {}
        self._lock = threading.Lock()

    def blocked(self, username: str, now: datetime) -> bool:
        """True while the name has too many recent failures."""
        with self._lock:
            recent = [t for t in self._fails.get(username, []) if now - t < self.window]
            self._fails[username] = recent
            return len(recent) >= self.max

    def failed(self, username: str, now: datetime) -> None:
        """Count one wrong password."""
        with self._lock:
            self._fails.setdefault(username, []).append(now)

    def succeeded(self, username: str) -> None:
        """Forget the failures of a name that just logged in."""
        with self._lock:
            self._fails.pop(username, None)


def login(session: Session, throttle: LoginThrottle, username: str, password: str,
          now: datetime) -> User | None:
    """authenticate() behind the throttle; None when wrong or throttled."""
    if throttle.blocked(username, now):
        log.warning("login for %s refused: too many failures", username[:64])
        return None
    user = authenticate(session, username, password)
    if user is None:
        throttle.failed(username, now)
    else:
        throttle.succeeded(username)
    return user


class Sessions:
    """Signed session cookies carrying the username and role."""

    COOKIE = "pw_session"

    def __init__(self, key: bytes, ttl_s: int) -> None:
        """Cookies live ttl_s seconds."""
        self._signer = Signer(key, "session")
        self._ttl = timedelta(seconds=ttl_s)

    def issue(self, user: User, now: datetime) -> str:
        """A cookie value for a logged-in user."""
        return self._signer.sign({"u": user.username, "r": user.role}, now + self._ttl)

    def read(self, cookie: str | None, now: datetime) -> tuple[str, str] | None:
        """(username, role) from a valid cookie, else None."""
        if not cookie:
            return None
        try:
            c = self._signer.verify(cookie, now)
        except LinkError:
            return None
        if not isinstance(c.get("u"), str) or not isinstance(c.get("r"), str):
            return None
        return c["u"], c["r"]

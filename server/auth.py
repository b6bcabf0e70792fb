"""Web users: scrypt password hashes, signed session cookies, role checks."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
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

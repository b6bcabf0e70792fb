"""Web users: scrypt password hashes, server-side sessions, CSRF tokens, login throttling."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.access.links import LinkError, Signer
from server.core.db import Person, User, WebSession
from server.core.errors import ServerError

log = logging.getLogger(__name__)
_N, _R, _P = 2**14, 8, 1
ROLES = ("admin", "constable", "area_officer", "duty_desk", "technician", "viewer")
MIN_PASSWORD = 8
MIN_ADMIN_PASSWORD = 12  # an admin can assign models to every node
MAX_USERNAME = 64        # longer names are refused unhashed and never become throttle keys


class UserError(ServerError, ValueError):
    """A web user that cannot be saved: unknown role, short password, no or unknown person."""


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
    """Create or update a user and revoke the sessions of an updated one (caller commits)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    least = MIN_ADMIN_PASSWORD if role == "admin" else MIN_PASSWORD
    if len(password) < least:
        raise UserError(f"password must have at least {least} characters"
                        + (" for an admin" if role == "admin" else ""))
    if not 0 < len(username) <= MAX_USERNAME:
        raise UserError(f"user name must have 1 to {MAX_USERNAME} characters")
    if role != "admin" and not person_id:
        raise UserError(f"role {role} needs --person PERSON_ID (the registry person this "
                         "user is); only admin may have none")
    if person_id and session.get(Person, person_id) is None:
        raise UserError(f"person {person_id!r} is not in the registry; import it first")
    user = session.get(User, username)
    if user is None:
        user = User(username=username, password_hash=hash_password(password), role=role,
                    person_id=person_id)
        session.add(user)
    else:
        user.password_hash, user.role, user.person_id = hash_password(password), role, person_id
        revoked = Sessions.revoke_user(session, username)
        if revoked:
            log.info("revoked %d sessions of %s", revoked, username)
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
    if not password:
        return
    name = os.environ.get("PONDWATCH_ADMIN_USER", "admin")
    user = session.get(User, name)
    if user is not None and user.role == "admin" and check_password(password, user.password_hash):
        return  # unchanged: keep its sessions across restarts
    set_user(session, name, password, "admin")
    log.info("admin user set from PONDWATCH_ADMIN_PASSWORD")


class LoginThrottle:
    """Counts wrong passwords per (name, IP) and per IP in a bounded table.

    A name is refused only from the address that guessed it, so nobody can lock the
    admin out of other machines; an address that guesses many names is refused as a whole.
    Entries expire after the window and the table never holds more than max_keys.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300, ip_failures: int = 20,
                 max_keys: int = 10_000) -> None:
        """max_failures per (name, IP) and ip_failures per IP within window_s seconds."""
        self.max, self.ip_max, self.window = max_failures, ip_failures, timedelta(seconds=window_s)
        self.max_keys = max_keys
        self._fails: OrderedDict[tuple[str, str], list[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys the table holds."""
        return len(self._fails)

    def _recent(self, key: tuple[str, str], now: datetime) -> list[datetime]:
        """The failures of key within the window (drops the key when none)."""
        recent = [t for t in self._fails.get(key, []) if now - t < self.window]
        if recent:
            self._fails[key] = recent
        else:
            self._fails.pop(key, None)
        return recent

    @staticmethod
    def source(ip: str) -> str:
        """The throttle's key for an address: an IPv4 address itself, an IPv6 address its /64
        (one host usually holds a whole /64, so counting single addresses would let it
        guess without end); anything else cut at 64 characters."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ip[:64]
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
            return str(ipaddress.IPv6Network((addr, 64), strict=False))
        return str(addr)

    def blocked(self, username: str, ip: str, now: datetime) -> bool:
        """True while this name from this IP, or this IP as a whole, failed too often."""
        ip, username = self.source(ip), username[:MAX_USERNAME]
        with self._lock:
            return (len(self._recent(("n", f"{ip}\n{username}"), now)) >= self.max
                    or len(self._recent(("ip", ip), now)) >= self.ip_max)

    def failed(self, username: str, ip: str, now: datetime) -> None:
        """Count one wrong password."""
        ip, username = self.source(ip), username[:MAX_USERNAME]
        with self._lock:
            self._push(("n", f"{ip}\n{username}"), self.max, now)
            self._push(("ip", ip), self.ip_max, now)
            self._evict(now)

    def _push(self, key: tuple[str, str], cap: int, now: datetime) -> None:
        """Append a failure to key, keeping its newest cap entries and moving it to the end."""
        times = self._fails.pop(key, [])
        self._fails[key] = [*times[-(cap - 1):], now] if cap > 1 else [now]

    def _evict(self, now: datetime) -> None:
        """Drop expired keys, then the oldest ones, down to max_keys."""
        if len(self._fails) <= self.max_keys:
            return
        for key in [k for k, v in self._fails.items() if not v or now - v[-1] >= self.window]:
            del self._fails[key]
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)

    def refused(self, ip: str, now: datetime) -> None:
        """Count an attempt made while blocked against the address (not the name)."""
        ip = self.source(ip)
        with self._lock:
            self._push(("ip", ip), self.ip_max, now)
            self._evict(now)

    def succeeded(self, username: str, ip: str) -> None:
        """Forget the failures of a name that just logged in from this IP."""
        ip, username = self.source(ip), username[:MAX_USERNAME]
        with self._lock:
            self._fails.pop(("n", f"{ip}\n{username}"), None)


def login(session: Session, throttle: LoginThrottle, username: str, password: str,
          now: datetime, ip: str = "unknown") -> User | None:
    """authenticate() behind the throttle; None when wrong or throttled. A name longer than
    MAX_USERNAME is refused at once (counted against the address, never hashed)."""
    if len(username) > MAX_USERNAME:
        throttle.refused(ip, now)
        return None
    if throttle.blocked(username, ip, now):
        throttle.refused(ip, now)
        log.warning("login for %r from %s refused: too many failures", username[:64], ip[:64])
        return None
    user = authenticate(session, username, password)
    if user is None:
        throttle.failed(username, ip, now)
    else:
        throttle.succeeded(username, ip)
    return user


@dataclass(frozen=True)
class Login:
    """A valid session: who, and the session id the CSRF token is bound to."""

    username: str
    sid: str


class Sessions:
    """Session cookies naming a row in web_sessions; deleting the row revokes the cookie."""

    COOKIE = "pw_session"
    PER_USER = 20  # newest sessions kept per user

    def __init__(self, key: bytes, ttl_s: int) -> None:
        """Cookies live ttl_s seconds."""
        self._signer = Signer(key, "session")
        self._csrf_key = hmac.new(key, b"csrf", hashlib.sha256).digest()
        self._ttl = timedelta(seconds=ttl_s)

    @staticmethod
    def _row_id(sid: str) -> str:
        """The stored id: a hash, so a database dump holds no usable cookie."""
        return hashlib.sha256(sid.encode()).hexdigest()

    def issue(self, s: Session, user: User, now: datetime) -> str:
        """Store a new session for a logged-in user and return its cookie (caller commits)."""
        s.execute(delete(WebSession).where(WebSession.expires_at <= now))
        old = list(s.scalars(select(WebSession.id).where(WebSession.username == user.username)
                             .order_by(WebSession.created_at.desc()).offset(self.PER_USER - 1)))
        if old:
            s.execute(delete(WebSession).where(WebSession.id.in_(old)))
        sid = secrets.token_urlsafe(24)
        s.add(WebSession(id=self._row_id(sid), username=user.username, created_at=now,
                         expires_at=now + self._ttl))
        return self._signer.sign({"s": sid, "u": user.username}, now + self._ttl)

    def read(self, s: Session, cookie: str | None, now: datetime) -> Login | None:
        """The session of a valid cookie whose row still exists, else None."""
        if not cookie:
            return None
        try:
            c = self._signer.verify(cookie, now)
        except LinkError:
            return None
        if not isinstance(c.get("u"), str) or not isinstance(c.get("s"), str):
            return None
        row = s.get(WebSession, self._row_id(c["s"]))
        if row is None or row.username != c["u"] or row.expires_at <= now:
            return None
        return Login(c["u"], c["s"])

    def revoke(self, s: Session, sid: str) -> None:
        """Delete one session (logout; caller commits)."""
        s.execute(delete(WebSession).where(WebSession.id == self._row_id(sid)))

    @staticmethod
    def revoke_user(s: Session, username: str) -> int:
        """Delete every session of a user (password or role change); how many."""
        res = s.execute(delete(WebSession).where(WebSession.username == username))
        return int(getattr(res, "rowcount", 0) or 0)

    def csrf_token(self, bound_to: str) -> str:
        """The CSRF token for a session id (or the login form's nonce)."""
        return hmac.new(self._csrf_key, bound_to.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, bound_to: str | None, token: str | None) -> bool:
        """Whether token is the CSRF token of bound_to."""
        if not bound_to or not token:
            return False
        return hmac.compare_digest(self.csrf_token(bound_to), token)

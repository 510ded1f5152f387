"""Operators: passwords hashed with Argon2id (argon2-cffi), sessions with an absolute and an idle
expiry (the cookie holds a random token; the store only its SHA-256), a CSRF token per session,
log-in throttled per user name and per client, and roles: viewer < operator < admin."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from ..errors import ConfigError, SafeCityError
from ..events.outbox import transaction
from .store import ROLES, ConsoleStore

SESSION_HOURS = 12.0
IDLE_MINUTES = 30.0
MIN_PASSWORD = 10
MAX_PASSWORD = 128
MIN_STRENGTH = 3  # zxcvbn's score, 0-4: 3 is "safely unguessable", about 10^8 guesses and more
_SCORED = 72  # zxcvbn scores at most this many characters (its own limit); the rest only adds
NAME_RE = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
# log-in throttle: this many failures in the window, then each further try waits, doubling to a cap
FREE_FAILURES = 5  # per client address, and per user name from one address
USER_FREE_FAILURES = 50  # per user name from all addresses together: one insider cannot lock anyone out
FAILURE_WINDOW_S = 15 * 60.0
LOCKOUT_S = 30.0
MAX_LOCKOUT_S = 15 * 60.0

_now = time.time  # the clocks, replaceable in tests without touching the time module
_monotonic = time.monotonic
_verifying = threading.BoundedSemaphore(2)  # Argon2 takes 64 MiB and ~50 ms a check: at most 2 at once
_hasher = PasswordHasher()  # Argon2id with the library's current recommended cost
_DUMMY_HASH = _hasher.hash("a password nobody has, so unknown names cost the same time")


class LoginBusy(SafeCityError):
    """Password checks are all in use (a flood of log-ins): answered 503, tried again later."""


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    csrf: str
    expires_at: float

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"user name {name!r}: expected 1-64 letters, digits or . _ - @")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def check_password(password: str, name: str) -> str:
    """Refuses a password a guesser would try early: short, long enough to slow the hash down, or
    weak by zxcvbn's estimate (common passwords, keyboard walks, repeats, dates, the user's own
    name and the product's)."""
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password is under {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"the password is over {MAX_PASSWORD} characters")
    if not password.isprintable():
        raise ConfigError("the password has control characters")
    verdict = zxcvbn(password[:_SCORED], user_inputs=[name, "safecity", "safe city", "console", "iccc"])
    if verdict["score"] < MIN_STRENGTH:
        hint = verdict["feedback"]["warning"] or "it is easy to guess"
        raise ConfigError(f"the password is too weak ({hint.rstrip('.')}): use a few uncommon words")
    return password


class Users:
    def __init__(self, store: ConsoleStore) -> None:
        self.store = store
        self._seen: dict[str, float] = {}  # session -> its last request (a restart restarts idling)

    def add(self, name: str, role: str, password: str, *, by: str) -> None:
        check_name(name)
        check_role(role)
        check_password(password, name)
        with self.store.lock:
            if self.store.db.execute("SELECT 1 FROM console_users WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"user {name!r} exists already")
            self.store.db.execute(
                "INSERT INTO console_users (name, role, pw_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, role, _hasher.hash(password), _now()),
            )
            self.store.audit(by, "user.add", name, f"role {role}")

    def set_password(self, name: str, password: str, *, by: str) -> None:
        check_password(password, name)
        self._update(name, "pw_hash = ?", _hasher.hash(password), by=by, action="user.password")
        self.end_sessions(name)

    def set_role(self, name: str, role: str, *, by: str) -> None:
        self._update(name, "role = ?", check_role(role), by=by, action="user.role", detail=role)
        self.end_sessions(name)

    def set_disabled(self, name: str, disabled: bool, *, by: str) -> None:
        action = "user.disable" if disabled else "user.enable"
        self._update(name, "disabled = ?", int(disabled), by=by, action=action)
        if disabled:
            self.end_sessions(name)

    def _update(
        self, name: str, assignment: str, value: Any, *, by: str, action: str, detail: str = ""
    ) -> None:
        db = self.store.db
        with self.store.lock, transaction(db, "BEGIN IMMEDIATE"):
            cur = db.execute(f"UPDATE console_users SET {assignment} WHERE name = ?", (value, name))
            if cur.rowcount == 0:
                raise ConfigError(f"no user {name!r}")
            admins = db.execute("SELECT COUNT(*) FROM console_users WHERE role = 'admin' AND NOT disabled")
            if admins.fetchone()[0] == 0:  # rolled back: someone must be able to manage the users
                raise ConfigError(f"{name} is the last enabled admin: make another admin first")
            self.store.audit(by, action, name, detail)

    def list(self) -> list[dict[str, Any]]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT name, role, created_at, disabled FROM console_users ORDER BY name"
            ).fetchall()
        return [dict(r) for r in rows]

    def verify(self, name: str, password: str) -> str | None:
        """The user's role when the password is right and the user enabled, else None (the same
        work either way: an unknown name is not faster to refuse)."""
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT role, pw_hash, disabled FROM console_users WHERE name = ?", (name,)
            ).fetchone()
        if not _verifying.acquire(timeout=5.0):
            raise LoginBusy("too many log-ins at once: try again in a moment")
        try:
            _hasher.verify(row["pw_hash"] if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        finally:
            _verifying.release()
        if row is None or row["disabled"]:
            return None
        if _hasher.check_needs_rehash(row["pw_hash"]):
            with self.store.lock:
                self.store.db.execute(
                    "UPDATE console_users SET pw_hash = ? WHERE name = ?", (_hasher.hash(password), name)
                )
        return str(row["role"])

    # -- sessions ----------------------------------------------------------------------------
    def start_session(self, name: str, role: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = _now()
        session = Session(name, role, secrets.token_urlsafe(32), now + SESSION_HOURS * 3600)
        for old, seen in list(self._seen.items()):
            if now - seen > IDLE_MINUTES * 60:
                self._seen.pop(old, None)
        with self.store.lock:
            self.store.db.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now,))
            self.store.db.execute(
                "INSERT INTO console_sessions (token_sha256, user, csrf, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (_digest(token), name, session.csrf, now, session.expires_at),
            )
        return token, session

    def session(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session for a cookie's token (its user still enabled, its role as of now); an
        idle one past IDLE_MINUTES ends. ``touch``: this request counts as activity."""
        if not token or len(token) > 200:
            return None
        now = _now()
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT s.csrf, s.expires_at, s.created_at, u.name, u.role, u.disabled, s.token_sha256 "
                "FROM console_sessions s JOIN console_users u ON u.name = s.user WHERE s.token_sha256 = ?",
                (_digest(token),),
            ).fetchone()
            if row is None or row["disabled"] or row["expires_at"] < now:
                return None
            seen = self._seen.get(row["token_sha256"], row["created_at"])
            if now - seen > IDLE_MINUTES * 60:
                sql = "DELETE FROM console_sessions WHERE token_sha256 = ?"
                self.store.db.execute(sql, (row["token_sha256"],))
                return None
            if touch:
                self._seen[row["token_sha256"]] = now
        return Session(row["name"], row["role"], row["csrf"], row["expires_at"])

    def end_session(self, token: str | None) -> None:
        if token:
            with self.store.lock:
                sql = "DELETE FROM console_sessions WHERE token_sha256 = ?"
                self.store.db.execute(sql, (_digest(token),))

    def end_sessions(self, name: str) -> None:
        with self.store.lock:
            self.store.db.execute("DELETE FROM console_sessions WHERE user = ?", (name,))


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())


class Throttle:
    """Failed log-ins per key (a client address; a user name from one address; a user name from
    everywhere): FREE_FAILURES in FAILURE_WINDOW_S go free (USER_FREE_FAILURES for a name from
    everywhere, so that five wrong guesses from one desk lock that desk out, not the operator it named),
    then the key waits LOCKOUT_S, doubling with each further failure, up to MAX_LOCKOUT_S. An admin can
    clear a name's lock (``clear``).

    ``attempt`` counts a try as failed before the password is checked (so parallel tries cannot slip
    past the limit together); ``succeeded`` takes that back, and clears the user name's failures only
    (a client's failures stay: logging in to one's own account does not reset guessing at others)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def _wait(self, key: str, now: float) -> float:
        times = [t for t in self._failures.get(key, ()) if now - t < FAILURE_WINDOW_S]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        extra = len(times) - (USER_FREE_FAILURES if key.startswith("user:") else FREE_FAILURES)
        if extra < 0:
            return 0.0
        return max(times[-1] + min(LOCKOUT_S * 2**extra, MAX_LOCKOUT_S) - now, 0.0)

    def attempt(self, *keys: str) -> tuple[float, float]:
        """(seconds to wait, 0 when the try may go ahead; the try's mark for ``succeeded``)."""
        now = _monotonic()
        with self._lock:
            wait = max((self._wait(k, now) for k in keys), default=0.0)
            if wait > 0:
                return wait, now
            if len(self._failures) > 100_000:  # a flood of names: forget the oldest keys
                for old in list(self._failures)[:50_000]:
                    del self._failures[old]
            for key in keys:
                self._failures.setdefault(key, []).append(now)
        return 0.0, now

    def clear(self, name: str) -> None:
        """Forget a user name's failures, from everywhere (an admin's unlock)."""
        with self._lock:
            for key in [
                k
                for k in self._failures
                if k == f"user:{name.lower()}" or k.startswith(f"pair:{name.lower()}|")
            ]:
                del self._failures[key]

    def succeeded(self, user_key: str, *others: str, mark: float) -> None:
        with self._lock:
            self._failures.pop(user_key, None)
            for key in others:
                if key.startswith("pair:"):  # this name from this address: right now
                    self._failures.pop(key, None)
                    continue
                times = self._failures.get(key)
                if times and mark in times:
                    times.remove(mark)

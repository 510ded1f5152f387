"""The webhook bridge: each stored event, in store order, as an HTTP POST of its JSON, signed:
``X-Safecity-Signature: sha256=HEX`` is HMAC-SHA256 of ``TIMESTAMP.BODY`` under the shared secret,
``X-Safecity-Timestamp`` that Unix time (a receiver refuses old ones: no replays). A 2xx delivers it;
a 5xx, 408, 429 or a network error is retried with exponential backoff. An event the receiver keeps
refusing (``max_attempts`` answers of 5xx/408/429, or one 4xx, which no retry mends) goes to the dead
letters and the bridge goes on; a receiver that cannot be reached is waited for (the bridge lags, and
says so in its metrics), so an outage dead-letters nothing."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Bridge, Stored
from .state import BridgeState

log = logging.getLogger(__name__)

RETRYABLE = {408, 425, 429}
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0
TIMEOUT_S = 10.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300.0) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as err:
        raise ConfigError(f"--secret-file {path}: {err.strerror or err}") from None
    if len(secret) < 16:
        raise ConfigError(f"--secret-file {path}: the secret is under 16 bytes")
    return secret


class WebhookBridge(Bridge):
    kind = "webhook"

    def __init__(
        self,
        sink_db: Path,
        state: BridgeState,
        url: str,
        secret: bytes,
        *,
        max_attempts: int = 8,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        **kw: Any,
    ) -> None:
        super().__init__(sink_db, state, **kw)
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"--url {url!r}: expected an http:// or https:// URL")
        if max_attempts < 1:
            raise ConfigError("--max-attempts: expected 1 or more")
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s

    def post(self, s: Stored, attempt: int) -> tuple[bool, bool, str]:
        """One attempt: (delivered, worth retrying, what happened)."""
        body = s.body.encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "safecity-bridge",
            "X-Safecity-Event": s.event["event_id"],
            "X-Safecity-Kind": {"start": "new"}.get(s.event["status"], s.event["status"]),
            "X-Safecity-Timestamp": ts,
            "X-Safecity-Signature": sign(self.secret, ts, body),
            "X-Safecity-Attempt": str(attempt),
        }
        if s.redelivery or attempt > 1:
            headers["X-Safecity-Redelivery"] = "true"
        req = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
                r.read()
                return True, False, f"HTTP {r.status}"
        except urllib.error.HTTPError as err:
            return False, err.code >= 500 or err.code in RETRYABLE, f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            return False, True, f"not reached: {reason}"

    def deliver(self, events: list[Stored]) -> int:
        done = 0
        for s in events:
            attempt, backoff = 1, self.first_backoff_s
            while True:
                ok, retry, what = self.post(s, attempt)
                self.metrics.connected.labels(self.name).set(0 if what.startswith("not reached") else 1)
                if ok:
                    self.metrics.delivered.labels(self.name).inc()
                    break
                self.metrics.failures.labels(self.name).inc()
                if not retry or attempt >= self.max_attempts:
                    log.error(
                        "bridge %s: event %s dead-lettered after %d attempts (%s)",
                        self.name, s.event["event_id"], attempt, what,
                    )  # fmt: skip
                    self.state.dead_letter(s.position, s.event["event_id"], s.body, what, attempt)
                    self.metrics.dead.labels(self.name).inc()
                    break
                log.warning("bridge %s: %s, attempt %d; again in %.1f s", self.name, what, attempt, backoff)
                if self.stop_event.wait(backoff):
                    return done
                if not what.startswith("not reached"):  # an outage is waited out (lag), not dead-lettered
                    attempt += 1
                backoff = min(backoff * 2, self.max_backoff_s)
            done = s.position
        return done

"""The webhook bridge: each stored event, in store order, as an HTTP POST of its JSON, signed:
``X-Safecity-Signature: sha256=HEX`` is HMAC-SHA256 of ``TIMESTAMP.BODY`` under the shared secret,
``X-Safecity-Timestamp`` that Unix time (a receiver refuses old ones: no replays). A 2xx delivers it;
a 5xx, 408, 425 or 429 is retried with exponential backoff, and after ``max_attempts`` of them the event
goes to the dead letters and the bridge goes on; so does an event answered with another 4xx (400,
413, 422: no retry mends it). A receiver that cannot be reached, or that refuses everything (a
redirect, 401, 403, 404, 405, 410: a wrong URL or secret), is waited for and logged: the bridge lags
(its metrics say so), but nothing is dead-lettered for it. Retries carry ``X-Safecity-Redelivery``."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..control import read_token
from ..errors import ConfigError
from ..events.store import StoreTarget
from .base import Bridge, Stored
from .state import BridgeState

log = logging.getLogger(__name__)

RETRYABLE = {408, 425, 429}
MISCONFIGURED = {401, 403, 404, 405, 410}  # about the endpoint, not the event: waited out, like an outage


FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0
TIMEOUT_S = 10.0  # connecting, and each wait for a byte of the answer
DEADLINE_S = 30.0  # one POST altogether: a receiver that trickles its answer is cut off at this
MAX_ANSWER = 64 * 1024  # of the answer's body, read and dropped (the status is the answer)


def redacted(url: str) -> str:
    """The URL as logs print it: the scheme and the host, no user info, path or query (receivers put
    their tokens in any of them: Slack's and Teams' webhooks in the path). Never raises."""
    try:
        u = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be read)"
    host = u.netloc.rpartition("@")[2]
    hidden = "***@" if "@" in u.netloc else ""
    rest = "/***" if u.path.strip("/") or u.query or u.fragment else u.path
    return f"{u.scheme}://{hidden}{host}{rest}"


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
    return read_token(path, "--secret-file").encode()


class WebhookBridge(Bridge):
    kind = "webhook"

    def __init__(
        self,
        sink_db: StoreTarget,
        state: BridgeState,
        url: str,
        secret: bytes,
        *,
        max_attempts: int = 8,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        **kw: Any,
    ) -> None:
        u = urlsplit(url)
        try:
            u.port  # noqa: B018 (a port that is not a number raises here, not at the first event)
        except ValueError:
            u = urlsplit("")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError("--url: expected an http(s)://host[:port]/path URL (a port is a number)")
        if max_attempts < 1:
            raise ConfigError("--max-attempts: expected 1 or more")
        super().__init__(sink_db, state, **kw)
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s

    def post(self, s: Stored, sends: int) -> tuple[str, str]:
        """One POST (the ``sends``-th of this event): (outcome, what happened); outcome is one of
        ``delivered``, ``refused`` (this event, for good), ``retry`` (counts toward max_attempts),
        ``wait`` (the receiver is unreachable or misconfigured: waited out, never dead-lettered)."""
        body = s.body.encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "safecity-bridge",
            "X-Safecity-Event": s.event["event_id"],
            "X-Safecity-Kind": {"start": "new"}.get(s.event["status"], s.event["status"]),
            "X-Safecity-Timestamp": ts,
            "X-Safecity-Signature": sign(self.secret, ts, body),
            "X-Safecity-Attempt": str(sends),
        }
        if s.redelivery or sends > 1:  # the receiver may have it already (an answer lost on the way)
            headers["X-Safecity-Redelivery"] = "true"
        cut_off = threading.Event()
        try:
            code, location = self._send(body, headers, cut_off)
        except (OSError, http.client.HTTPException) as err:
            if cut_off.is_set():
                return "retry", f"no whole answer in {DEADLINE_S:.0f} s (a receiver trickling it)"
            return "wait", f"not reached: {err!r}"
        if 200 <= code < 300:
            return "delivered", f"HTTP {code}"
        if 300 <= code < 400:  # never followed: a POST re-sent as a bodiless GET is not a delivery
            return "wait", f"HTTP {code} redirect to {redacted(location or '')!r}: fix --url"
        if code in MISCONFIGURED:
            return "wait", f"HTTP {code}: the receiver refuses every event (URL or secret?)"
        if code >= 500 or code in RETRYABLE:
            return "retry", f"HTTP {code}"
        return "refused", f"HTTP {code}"

    def _send(self, body: bytes, headers: dict[str, str], cut_off: threading.Event) -> tuple[int, str | None]:
        """One POST and its answer within DEADLINE_S altogether: past it the socket is shut from a
        timer (the per-read timeout alone lets a trickle of bytes go on for ever)."""
        u = urlsplit(self.url)
        kind = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = kind(u.hostname or "", u.port, timeout=TIMEOUT_S)
        if u.username or u.password:
            pair = f"{unquote(u.username or '')}:{unquote(u.password or '')}".encode()
            headers = {**headers, "Authorization": "Basic " + base64.b64encode(pair).decode()}

        def cut() -> None:
            cut_off.set()
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)

        timer = threading.Timer(DEADLINE_S, cut)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()  # (each address tried within TIMEOUT_S: the deadline is checked once through)
            if cut_off.is_set():
                raise TimeoutError("cut off")
            conn.request("POST", urlunsplit(("", "", u.path or "/", u.query, "")), body, headers)
            answer = conn.getresponse()
            answer.read(MAX_ANSWER)
            if cut_off.is_set():
                raise TimeoutError("cut off")
            return answer.status, answer.getheader("Location")
        finally:
            timer.cancel()
            conn.close()

    def deliver(self, events: list[Stored]) -> int:
        done = 0
        for s in events:
            attempts, sends, backoff = 0, 0, self.first_backoff_s
            while True:
                sends += 1
                outcome, what = self.post(s, sends)
                self.metrics.connected.labels(self.name).set(0 if outcome == "wait" else 1)
                if outcome == "delivered":
                    self.metrics.delivered.labels(self.name).inc()
                    break
                self.metrics.failures.labels(self.name).inc()
                attempts += outcome != "wait"
                if outcome == "refused" or attempts >= self.max_attempts:
                    log.error(
                        "bridge %s: event %s dead-lettered after %d attempts (%s)",
                        self.name, s.event["event_id"], attempts, what,
                    )  # fmt: skip
                    self.state.dead_letter(s.position, s.event["event_id"], s.body, what, attempts)
                    self.metrics.dead.labels(self.name).inc()
                    break
                level = (
                    logging.ERROR
                    if outcome == "wait" and not what.startswith("not reached")
                    else logging.WARNING
                )
                log.log(level, "bridge %s: %s; again in %.1f s", self.name, what, backoff)
                if self.stop_event.wait(backoff):
                    return done
                backoff = min(backoff * 2, self.max_backoff_s)
            done = s.position
        return done

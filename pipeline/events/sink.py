"""The ICCC sink: a ROUTER socket that validates, stores (idempotently), commits, then acks."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from prometheus_client import CollectorRegistry, Counter

from ..errors import SchemaError, SinkError
from .outbox import open_durable
from .schema import validate_event
from .security import EdgeGrant, start_authenticator

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

SINK_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    incident_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    emitted_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    snapshot_sha256 TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    sha256 TEXT PRIMARY KEY,
    jpeg BLOB NOT NULL
);
"""


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "safecity_sink_messages_received_total", "Messages received", registry=registry
        )
        self.new = Counter(
            "safecity_sink_events_new_total", "Events stored for the first time", registry=registry
        )
        self.duplicate = Counter(
            "safecity_sink_events_duplicate_total",
            "Events received again (already stored)",
            registry=registry,
        )
        self.rejected = Counter(
            "safecity_sink_events_rejected_total", "Messages rejected", ["reason"], registry=registry
        )
        self.auth_failures = Counter(
            "safecity_sink_auth_failures_total", "Curve handshakes refused (unknown keys)", registry=registry
        )


def check_message(frames: list[bytes]) -> tuple[dict[str, Any], bytes | None]:
    """Parse and validate ``[b"EVT", json, jpeg]``; raises SchemaError with the reason."""
    if len(frames) != 3 or frames[0] != b"EVT":
        raise SchemaError(f"expected [EVT, event, snapshot], got {len(frames)} frames")
    try:
        event = json.loads(frames[1])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SchemaError(f"event is not JSON: {err}") from None
    validate_event(event)
    snapshot = frames[2] or None
    evidence = event.get("evidence")
    if evidence is not None:
        if snapshot is None:
            raise SchemaError("evidence names a snapshot but none was sent")
        digest = hashlib.sha256(snapshot).hexdigest()
        if digest != evidence["sha256"]:
            raise SchemaError(f"evidence.sha256 {evidence['sha256']} does not match the snapshot ({digest})")
    return event, snapshot


class Sink:
    """Serve until ``stop_event`` is set. ``on_event(event, is_new)`` is called after commit."""

    def __init__(
        self,
        *,
        bind: str,
        db_path: Path,
        registry: CollectorRegistry | None = None,
        on_event: Callable[[dict[str, Any], bool], None] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        curve_keypair: tuple[bytes, bytes] | None = None,
        allowlist: dict[str, EdgeGrant] | None = None,
    ) -> None:
        """With ``curve_keypair`` (the sink's public, secret keys) only edges in ``allowlist`` connect,
        and each may report only its own source and cameras."""
        self.bind = bind
        self.db_path = db_path
        self.metrics = SinkMetrics(registry or CollectorRegistry())
        self.on_event = on_event
        self.max_message_bytes = max_message_bytes
        self.curve_keypair = curve_keypair
        self.allowlist = allowlist
        if curve_keypair is not None and not allowlist:
            raise ValueError("a Curve sink needs an allowlist of edge keys")
        self.ready = threading.Event()
        self.bound_endpoint: str | None = None
        self.error: SinkError | None = None

    def serve(self, stop_event: threading.Event) -> None:
        db = open_durable(self.db_path, SINK_SCHEMA)
        ctx: zmq.Context = zmq.Context()  # its own: the ZAP authenticator is per context
        auth = None
        sock = ctx.socket(zmq.ROUTER)
        if self.curve_keypair is not None:
            assert self.allowlist is not None
            auth = start_authenticator(ctx, self.allowlist, self.metrics.auth_failures.inc)
            sock.curve_publickey, sock.curve_secretkey = self.curve_keypair
            sock.curve_server = True
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        try:
            try:
                sock.bind(self.bind)
            except zmq.ZMQError as err:
                self.error = SinkError(f"sink cannot bind {self.bind}: {err}")
                self.ready.set()
                return
            self.bound_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self.ready.set()
            while not stop_event.is_set():
                if not sock.poll(100):
                    continue
                batch: list[tuple[list[bytes], str | None]] = []
                while len(batch) < 1000:
                    try:
                        frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    user = frames[-1].get("User-Id") if self.curve_keypair is not None else None
                    batch.append(([f.bytes for f in frames], user))
                self._handle(batch, db, sock)
        finally:
            sock.close(linger=1000)
            if auth is not None:
                auth.stop()
            ctx.term()
            db.close()

    def _check_grant(self, event: dict[str, Any], user: str | None) -> None:
        if self.allowlist is None:
            return
        grant = self.allowlist.get(user or "")
        if grant is None:
            raise SchemaError("not allowed: the sender's key is not in the allowlist")
        if event["source"] != grant.source:
            raise SchemaError(f"not allowed: this key reports for {grant.source!r}, not {event['source']!r}")
        if grant.cameras is not None and event["camera_id"] not in grant.cameras:
            raise SchemaError(
                f"not allowed: camera {event['camera_id']!r} is not one of {grant.source}'s cameras"
            )

    def _handle(
        self, batch: list[tuple[list[bytes], str | None]], db: sqlite3.Connection, sock: zmq.Socket
    ) -> None:
        replies: list[list[bytes]] = []
        stored: list[tuple[dict[str, Any], bool]] = []
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            for msg, user in batch:
                self.metrics.received.inc()
                ident, frames = msg[0], msg[1:]
                try:
                    event, snapshot = check_message(frames)
                    self._check_grant(event, user)
                except SchemaError as err:
                    reason = str(err)[:500]
                    self.metrics.rejected.labels(reason=reason.split(":", 1)[0][:40]).inc()
                    log.warning("rejected message: %s", reason)
                    event_id = b""
                    try:
                        event_id = str(json.loads(frames[1]).get("event_id", "")).encode()
                    except Exception:  # the reason is already logged
                        pass
                    replies.append([ident, b"NACK", event_id, reason.encode()])
                    continue
                sha = event["evidence"]["sha256"] if event.get("evidence") else None
                if snapshot is not None:
                    db.execute(
                        "INSERT INTO snapshots (sha256, jpeg) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (sha, snapshot),
                    )
                cur = db.execute(
                    "INSERT INTO events (source, event_id, seq, incident_id, type, status, camera_id, emitted_at, "  # noqa: E501
                    "received_at, snapshot_sha256, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (source, event_id) DO NOTHING",
                    (
                        event["source"],
                        event["event_id"],
                        event["seq"],
                        event["incident_id"],
                        event["type"],
                        event["status"],
                        event["camera_id"],
                        event["emitted_at"],
                        now,
                        sha,
                        frames[1].decode(),
                    ),
                )
                is_new = cur.rowcount == 1
                (self.metrics.new if is_new else self.metrics.duplicate).inc()
                stored.append((event, is_new))
                replies.append([ident, b"ACK", event["event_id"].encode()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for r in replies:  # acks only after the commit
            try:
                sock.send_multipart(r, flags=zmq.NOBLOCK)
            except zmq.ZMQError as err:
                log.warning("could not ack to a peer: %s", err)
        if self.on_event:
            for event, is_new in stored:
                self.on_event(event, is_new)


def format_event(event: dict[str, Any]) -> str:
    objs = ", ".join(f"{o['label']}#{o['track_id']} {o['confidence']:.2f}" for o in event.get("objects", []))
    snap = f" snapshot {event['evidence']['bytes']} B" if event.get("evidence") else ""
    return (
        f"{event['emitted_at']} {event['source']}#{event['seq']} "
        f"{event['type'].upper()} {event['status']:<6} "
        f"camera={event['camera_id']} zone={event.get('zone')} [{objs}]{snap}"
    )

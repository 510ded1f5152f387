"""The ICCC sink: a ROUTER socket that validates, stores (idempotently), commits, then acks."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import SafeCityError, SchemaError, SinkError, StorageError
from ..failpoints import failpoint
from ..text import printable
from .clip_fetch import ClipFetcher, clip_of
from .clip_store import ClipStore, clips_dir, is_digest
from .heartbeat import Heartbeat
from .heartbeat import parse as parse_heartbeat
from .heartbeat import store as store_heartbeats
from .schema import validate_event
from .security import EdgeGrant, start_authenticator
from .store import DB_ERRORS, EVENTS_LOCK, Db, PgDb, describe, is_url, open_store, rollback

try:  # four times faster than the standard library; the sink parses every message
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare install working
    _loads = json.loads  # type: ignore[assignment]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_INSERT_SNAPSHOT = "INSERT INTO snapshots (sha256, jpeg) VALUES (?, ?) ON CONFLICT DO NOTHING"
MAX_BATCH_EVENTS = 512  # read before one commit (at least one message)
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: pyzmq's flag enums cost a little on every call
FETCH_WINDOW = 64  # snapshot requests outstanding at once: events come first
FETCH_TIMEOUT_S = 5.0


# (routing id, event, snapshot or None, the event's JSON as received)
_Accepted = tuple[bytes, dict[str, Any], bytes | None, bytes]


@dataclass
class _Commit:
    """A batch whose commit is under way on the committer thread."""

    future: Future[Any]
    accepted: list[_Accepted]
    new: list[bool]


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
        self.snapshots_fetched = Counter(
            "safecity_sink_snapshots_fetched_total",
            "Snapshots fetched from edges by reference",
            registry=registry,
        )
        self.snapshots_missing = Counter(
            "safecity_sink_snapshots_missing_total",
            "Snapshots an edge no longer had (or sent with a wrong digest)",
            registry=registry,
        )
        self.store_ok = Gauge(
            "safecity_sink_store_ok",
            "1 once the store is open and migrated; 0 before, and while it refuses writes (events are not "
            "acknowledged)",
            registry=registry,
        )
        self.store_errors = Counter(
            "safecity_sink_store_errors_total",
            "Batches the store refused (full disk, I/O error)",
            registry=registry,
        )
        self.snapshots_wanted = Gauge(
            "safecity_sink_snapshots_wanted",
            "Referenced snapshots not fetched yet, of the edges connected to this sink",
            registry=registry,
        )
        self.clips_fetched = Counter(
            "safecity_sink_clips_fetched_total", "Evidence clips fetched from edges", registry=registry
        )
        self.clips_missing = Counter(
            "safecity_sink_clips_missing_total",
            "Evidence clips an edge no longer had (or sent with a wrong digest)",
            registry=registry,
        )
        self.clip_store_errors = Counter(
            "safecity_sink_clip_store_errors_total",
            "Chunks of evidence clips the sink's disk refused (full, read-only): fetched again later",
            registry=registry,
        )


def split_events(frames: list[bytes]) -> list[list[bytes]]:
    """``[EVT, event, jpeg, event, jpeg, ...]`` or ``[EVTS, events as JSON Lines]`` -> one
    ``[EVT, event, jpeg]`` per event; anything else is passed on whole, for check_message to reject
    with its reason."""
    if len(frames) >= 3 and frames[0] == b"EVT" and len(frames) % 2 == 1:
        return [[b"EVT", frames[i], frames[i + 1]] for i in range(1, len(frames), 2)]
    if len(frames) == 2 and frames[0] == b"EVTS":
        return [[b"EVT", line, b""] for line in frames[1].split(b"\n")]
    return [frames]


def check_message(frames: list[bytes]) -> tuple[dict[str, Any], bytes | None]:
    """Parse and validate ``[b"EVT", json, jpeg_or_empty]``; raises SchemaError with the reason.
    An empty snapshot frame with evidence means the snapshot is sent by reference (fetched later)."""
    if len(frames) != 3 or frames[0] != b"EVT":
        raise SchemaError(f"expected [EVT, event, snapshot], got {len(frames)} frames")
    try:
        event = _loads(frames[1])
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError and orjson's error are ValueErrors
        raise SchemaError(f"event is not JSON: {err}") from None
    validate_event(event)
    # What the schema allows but a store cannot hold: PostgreSQL's text takes no NUL character (JSON
    # carries it only escaped), and seq is a 64-bit integer there and in SQLite.
    if b"\\u0000" in frames[1]:
        raise SchemaError("the event contains a NUL character (\\u0000), which the store cannot keep")
    if not isinstance(event["seq"], int) or event["seq"] >= 1 << 63:
        raise SchemaError(f"seq {event['seq']!r}: expected a whole number below 2^63")
    snapshot = frames[2] or None
    evidence = event.get("evidence")
    if evidence is None and snapshot is not None:
        raise SchemaError("a snapshot was sent but the event's evidence does not name it")
    if evidence is not None and snapshot is not None:
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
        store: Path | str,
        clips: Path | None = None,
        registry: CollectorRegistry | None = None,
        on_event: Callable[[dict[str, Any], bool], None] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        curve_keypair: tuple[bytes, bytes] | None = None,
        allowlist: dict[str, EdgeGrant] | None = None,
        clips_max_bytes: int | None = None,
    ) -> None:
        """``store``: a SQLite file, or a PostgreSQL URL (a store several sinks share; ``store.py``).
        ``clips``: where evidence clips are kept (default: beside a SQLite store; needed with PostgreSQL,
        a volume the replicas share). With ``curve_keypair`` (the sink's public, secret keys) only edges
        in ``allowlist`` connect, and each may report only its own source and cameras."""
        self.bind = bind
        self.store = store
        self.where = describe(store)
        if clips is None and is_url(store):
            raise ValueError("a PostgreSQL store needs a directory for the evidence clips")
        self.clips_path = clips if clips is not None else clips_dir(Path(store))
        self.metrics = SinkMetrics(registry or CollectorRegistry())
        self.on_event = on_event
        self.max_message_bytes = max_message_bytes
        self.curve_keypair = curve_keypair
        self.allowlist = allowlist
        if curve_keypair is not None and not allowlist:
            raise ValueError("a Curve sink needs an allowlist of edge keys")
        self.ready = threading.Event()
        self._peers: dict[str, bytes] = {}  # source -> its connection's routing id, last seen
        self._fetching: dict[str, float] = {}  # snapshot sha256 -> when it was asked for
        self._want_snapshots = True  # snapshot_wanted may have rows (it survives restarts)
        self.bound_endpoint: str | None = None
        self.error: SafeCityError | None = None
        self.storing = True  # False while the store refuses writes
        self.clips: ClipFetcher | None = None  # once serving: the evidence clips to fetch
        self.clips_max_bytes = clips_max_bytes

    def serve(self, stop_event: threading.Event) -> None:
        try:
            db = open_store(self.store)
        except StorageError as err:
            self.error = err
            self.ready.set()
            return
        self.metrics.store_ok.set(1)  # (a replica's readiness: before this its store may lack its tables)
        try:
            clip_store = ClipStore(self.clips_path, max_bytes=self.clips_max_bytes)
            clip_store.ensure()
        except (OSError, StorageError) as err:
            db.close()
            self.error = (
                err
                if isinstance(err, StorageError)
                else StorageError(f"the sink's evidence clips cannot be kept in {self.clips_path}: {err}")
            )
            self.ready.set()
            return
        m = self.metrics
        self.clips = ClipFetcher(
            clip_store, fetched=m.clips_fetched, missing=m.clips_missing, store_errors=m.clip_store_errors
        )
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-commit")
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
        # A ROUTER drops what is over its high-water mark: room for the acks of a full in-flight window
        # from many edges, so an ack is not lost to a burst (it would cost a resend after a timeout).
        sock.setsockopt(zmq.SNDHWM, 200_000)
        sock.setsockopt(zmq.RCVHWM, 200_000)
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
            last_fetch = 0.0
            # The commit's fsync (milliseconds) runs on its own thread while the next batch is read and
            # validated; a batch is written only once the one before is committed, and acks follow commits.
            committing: _Commit | None = None
            while not stop_event.is_set():
                if committing is not None and committing.future.done():
                    self._complete(committing, db, sock)
                    committing = None
                if committing is None and time.monotonic() - last_fetch > 0.2:
                    last_fetch = time.monotonic()
                    self._fetch_evidence(db, sock, clips=True)
                if not sock.poll(1 if committing is not None else 100):
                    continue
                accepted, snapshots, beats = self._parse(self._receive(sock), sock)
                if committing is not None:
                    self._complete(committing, db, sock)
                    committing = None
                try:
                    committing = self._write(db, committer, accepted, snapshots, beats)
                except DB_ERRORS as err:
                    self._store_failed(err, len(accepted))
            if committing is not None:
                self._complete(committing, db, sock)
        finally:
            committer.shutdown()
            sock.close(linger=1000)
            if auth is not None:
                auth.stop()
            ctx.term()
            db.close()

    def _check_source(self, source: str, user: str | None) -> EdgeGrant | None:
        """The sender's grant (None without Curve); SchemaError when its key may not speak for ``source``."""
        if self.allowlist is None:
            return None
        grant = self.allowlist.get(user or "")
        if grant is None:
            raise SchemaError("not allowed: the sender's key is not in the allowlist")
        if source != grant.source:
            raise SchemaError(f"not allowed: this key reports for {grant.source!r}, not {source!r}")
        return grant

    def _check_grant(self, event: dict[str, Any], user: str | None) -> None:
        grant = self._check_source(event["source"], user)
        if grant is not None and grant.cameras is not None and event["camera_id"] not in grant.cameras:
            raise SchemaError(
                f"not allowed: camera {event['camera_id']!r} is not one of {grant.source}'s cameras"
            )

    def _receive(self, sock: zmq.Socket) -> list[tuple[list[bytes], str | None]]:
        """The messages waiting, up to about MAX_BATCH_EVENTS events: one commit's worth. Smaller
        batches than a whole in-flight window keep acks flowing while the rest is validated."""
        batch: list[tuple[list[bytes], str | None]] = []
        events = 0
        while events < MAX_BATCH_EVENTS:
            try:
                if self.curve_keypair is None:
                    msg, user = sock.recv_multipart(flags=_NOBLOCK), None
                else:
                    frames = sock.recv_multipart(flags=_NOBLOCK, copy=False)
                    key = frames[-1].get("User-Id")  # the Curve key, as the ZAP handler named it
                    msg, user = [f.bytes for f in frames], key if isinstance(key, str) else None
            except zmq.Again:
                break
            batch.append((msg, user))
            if len(msg) == 3 and msg[1] == b"EVTS":  # [routing id, EVTS, JSON Lines]
                events += msg[2].count(b"\n") + 1
            else:
                events += max((len(msg) - 2) // 2, 1)
        return batch

    def _parse(
        self, batch: list[tuple[list[bytes], str | None]], sock: zmq.Socket
    ) -> tuple[list[_Accepted], list[list[bytes]], list[Heartbeat]]:
        """Validate a batch of messages (no database): the events to store, the snapshot answers to
        record, the heartbeats. HELLOs are taken and rejected events NACKed here; nothing about them
        is stored."""
        accepted: list[_Accepted] = []
        snapshots: list[list[bytes]] = []
        beats: list[Heartbeat] = []
        nacks: list[list[bytes]] = []
        self.metrics.received.inc(len(batch))
        for msg, user in batch:
            ident, frames = msg[0], msg[1:]
            if frames and self.clips is not None and self.clips.is_answer(frames):
                self.clips.on_answer(frames, ident, sock)
                continue
            if frames and frames[0] in (b"SNAP", b"MISS"):
                snapshots.append(frames)
                continue
            if frames and frames[0] == b"HELLO" and len(frames) == 2:
                self._on_hello(frames[1].decode(errors="replace"), ident, user)
                continue
            if frames and frames[0] == b"HB" and len(frames) == 2:
                beat = self._on_heartbeat(frames[1], user)
                if beat is not None:
                    beats.append(beat)
                continue
            for one in split_events(frames):
                try:
                    event, snapshot = check_message(one)
                    self._check_grant(event, user)
                except SchemaError as err:
                    nacks.append([ident, b"NACK", *self._reject(err, one)])
                    continue
                self._peers[event["source"]] = ident
                accepted.append((ident, event, snapshot, one[1]))
        self._send(sock, nacks)
        return accepted, snapshots, beats

    def _write(
        self,
        db: Db,
        committer: ThreadPoolExecutor,
        accepted: list[_Accepted],
        snapshots: list[list[bytes]],
        beats: list[Heartbeat],
    ) -> _Commit:
        """Store a parsed batch in one transaction and start its commit on the committer thread."""
        db.execute("BEGIN" if isinstance(db, PgDb) else "BEGIN IMMEDIATE")
        try:
            for frames in snapshots:
                self._on_snapshot(frames, db)
            if self.clips is not None:
                self.clips.forget_done(db)
            now = time.time()
            self._store_heartbeats(db, beats, now)
            new = self._store(db, accepted, now)
            if accepted:  # crash points count batches that carry events
                failpoint("sink.before_commit")
            future = committer.submit(db.execute, "COMMIT")
        except BaseException:
            rollback(db)
            raise
        return _Commit(future, accepted, new)

    def _complete(self, commit: _Commit, db: Db, sock: zmq.Socket) -> None:
        """Once the commit is durable: ack (one message per edge), then tell ``on_event``."""
        try:
            commit.future.result()
        except DB_ERRORS as err:
            rollback(db)
            self._store_failed(err, len(commit.accepted))
            return
        except BaseException:
            rollback(db)
            raise
        if not self.storing and commit.accepted:  # an empty commit (a HELLO) proves nothing
            self.storing = True
            self.metrics.store_ok.set(1)
            log.warning("storing events in %s again", self.where)
        if commit.accepted:
            failpoint("sink.after_commit")
        acks: dict[bytes, list[bytes]] = {}
        for ident, event, _, _ in commit.accepted:
            acks.setdefault(ident, [ident, b"ACK"]).append(event["event_id"].encode())
        self._send(sock, list(acks.values()))
        if self.on_event:
            for (_, event, _, _), is_new in zip(commit.accepted, commit.new, strict=True):
                self.on_event(event, is_new)
        if self._want_snapshots and len(self._fetching) < FETCH_WINDOW // 2:
            self._fetch_evidence(db, sock)  # keep the window of snapshot requests full

    def _store_failed(self, err: Exception, events: int) -> None:
        """The store refused a batch (a full disk, an I/O error): nothing of it is acknowledged, so the
        edges keep those events and send them again; the sink goes on and tries with the next batch."""
        self.metrics.store_errors.inc()
        if self.storing:
            self.storing = False
            self.metrics.store_ok.set(0)
            log.error(
                "cannot store events in %s (%s): not acknowledging them (%d in this batch); the edges keep "
                "them and send them again",
                self.where,
                err,
                events,
            )

    @staticmethod
    def _send(sock: zmq.Socket, replies: list[list[bytes]]) -> None:
        for reply in replies:
            try:
                sock.send_multipart(reply, flags=_NOBLOCK)
            except zmq.ZMQError as err:
                log.warning("could not reply to a peer: %s", err)

    def _store(self, db: Db, accepted: list[_Accepted], now: float) -> list[bool]:
        """Insert the batch's events that are not stored yet (and their snapshots, or requests for
        them), in the open transaction; for each event, whether it was new."""
        if not accepted:
            return []
        by_source: dict[str, set[str]] = {}
        for _, e, _, _ in accepted:
            by_source.setdefault(e["source"], set()).add(e["event_id"])
        stored: set[tuple[str, str]] = set()
        for source, id_set in by_source.items():  # (source, event_id) is the key: an index lookup each
            ids = list(id_set)
            if isinstance(db, PgDb):  # one statement whatever the batch (prepared once), sent in binary
                query = "SELECT event_id FROM events WHERE source = ? AND event_id = ANY(?::text[])"
                stored.update((source, i) for (i,) in db.execute(query, [source, ids], binary=True))
                continue
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                query = f"SELECT event_id FROM events WHERE source = ? AND event_id IN ({marks})"
                stored.update((source, i) for (i,) in db.execute(query, [source, *part]))
        rows, snapshots, wanted, clips = [], [], [], []
        for _, e, snapshot, body in accepted:
            key = (e["source"], e["event_id"])
            if key in stored:
                continue
            stored.add(key)
            sha = e["evidence"]["sha256"] if e.get("evidence") else None
            clip = clip_of(e)
            if clip is not None:
                clips.append((*clip, e["source"]))
            if snapshot is not None:
                snapshots.append((sha, snapshot))
            elif sha is not None:
                wanted.append((sha, e["source"], now, sha))
                self._want_snapshots = True
            original = (e.get("evidence") or {}).get("frame_jpeg_sha256")
            if original is not None:  # a start's undrawn frame: always by reference (verdicts, evidence)
                wanted.append((original, e["source"], now, original))
                self._want_snapshots = True
            rows.append(
                (
                    e["source"],
                    e["event_id"],
                    e["seq"],
                    e["incident_id"],
                    e["type"],
                    e["status"],
                    e["camera_id"],
                    e["emitted_at"],
                    now,
                    sha,
                    body.decode(),
                )
            )
        db.executemany(_INSERT_SNAPSHOT, snapshots)
        if self.clips is not None:
            self.clips.wanted(db, clips, now)
        db.executemany(
            "INSERT INTO snapshot_wanted (sha256, source, wanted_at) SELECT ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM snapshots WHERE sha256 = ?) ON CONFLICT DO NOTHING",
            wanted,
        )
        inserted = insert_events(db, rows)
        new, seen = [], set()
        for _, e, _, _ in accepted:  # the first of an event sent twice in one batch is the new one
            key = (e["source"], e["event_id"])
            new.append(key in inserted and key not in seen)
            seen.add(key)
        self.metrics.new.inc(len(inserted))
        self.metrics.duplicate.inc(len(accepted) - len(inserted))
        return new

    def _on_hello(self, source: str, ident: bytes, user: str | None) -> None:
        """An edge (re)connected: where to send its snapshot requests from now on."""
        try:
            self._check_source(source, user)
        except SchemaError as err:
            log.warning("HELLO for %r ignored: %s", source, err)
            return
        self._peers[source] = ident

    def _on_heartbeat(self, raw: bytes, user: str | None) -> Heartbeat | None:
        """A valid heartbeat from an edge allowed to speak for its source (only its granted cameras
        kept), or None: a bad one is counted and logged, never answered (nothing to resend)."""
        try:
            beat = parse_heartbeat(raw)
            grant = self._check_source(beat.source, user)
        except Exception as err:  # whatever a hostile heartbeat provokes, it is only refused
            self.metrics.rejected.labels(reason="heartbeat refused").inc()
            log.warning("heartbeat refused: %s", str(err)[:300])
            return None
        if grant is not None and grant.cameras is not None:
            beat.cameras[:] = [c for c in beat.cameras if c["id"] in grant.cameras]
        return beat

    def _store_heartbeats(self, db: Db, beats: list[Heartbeat], now: float) -> None:
        """Camera health, under a savepoint: whatever goes wrong with it never costs the batch's events."""
        if not beats:
            return
        db.execute("SAVEPOINT heartbeats")
        try:
            store_heartbeats(db, beats, now)
        except (*DB_ERRORS, ValueError) as err:  # type: ignore[misc]  # UnicodeEncodeError: a ValueError
            db.execute("ROLLBACK TO heartbeats")
            log.warning("heartbeats not stored: %s", err)
        db.execute("RELEASE heartbeats")

    def _reject(self, err: SchemaError, frames: list[bytes]) -> list[bytes]:
        """Count and log a rejected message; the NACK's [event id, reason]."""
        reason = str(err)[:500]
        self.metrics.rejected.labels(reason=reason.split(":", 1)[0][:40]).inc()
        log.warning("rejected message: %s", reason)
        event_id = b""
        try:
            event_id = str(json.loads(frames[1]).get("event_id", "")).encode()
        except Exception:  # the reason is already logged
            pass
        return [event_id, reason.encode()]

    def _on_snapshot(self, frames: list[bytes], db: Db) -> None:
        """``[SNAP, sha256, jpeg]`` or ``[MISS, sha256]`` from an edge, answering our GET."""
        sha = frames[1].decode(errors="replace") if len(frames) > 1 else ""
        if not is_digest(sha):  # nothing asked for: not a digest (NUL and all) near the store
            log.warning("an edge answered a snapshot request that was never made (%r)", sha[:80])
            self.metrics.rejected.labels(reason="not a snapshot asked for").inc()
            return
        asked = self._fetching.pop(sha, None)  # with its row deleted below: not asked for again
        if asked is None:  # not asked for (or long ago, and asked again later): not stored
            log.warning("an edge sent snapshot %s, which was not asked for: not stored", sha[:16])
            self.metrics.rejected.labels(reason="not a snapshot asked for").inc()
            return
        if frames[0] == b"SNAP" and len(frames) == 3 and hashlib.sha256(frames[2]).hexdigest() == sha:
            db.execute(_INSERT_SNAPSHOT, (sha, frames[2]))
            self.metrics.snapshots_fetched.inc()
        else:
            log.warning(
                "snapshot %s: the edge %s",
                sha[:16],
                "no longer has it" if frames[0] == b"MISS" else "sent something else",
            )
            self.metrics.snapshots_missing.inc()
        db.execute("DELETE FROM snapshot_wanted WHERE sha256 = ?", (sha,))

    def _fetch_evidence(self, db: Db, sock: zmq.Socket, *, clips: bool = False) -> None:
        """Ask for the snapshots (and ``clips``) still wanted; a store that cannot be read now (a
        PostgreSQL server restarting) is counted like a refused batch, and asked again next time."""
        try:
            self._request_snapshots(db, sock)
            if clips and self.clips is not None:
                self.clips.request(db, sock, self._peers)
        except DB_ERRORS as err:
            self._store_failed(err, 0)

    def _request_snapshots(self, db: Db, sock: zmq.Socket) -> None:
        """Ask edges for referenced snapshots, a bounded number at a time, again after a timeout."""
        now = time.monotonic()
        for sha, asked in list(self._fetching.items()):
            if now - asked > FETCH_TIMEOUT_S:
                del self._fetching[sha]
        room = FETCH_WINDOW - len(self._fetching)
        if room <= 0 or not self._peers:
            return
        sources = list(self._peers)[:500]  # the edges connected here (with several replicas, not all)
        rows = db.execute(
            f"SELECT sha256, source FROM snapshot_wanted WHERE source IN ({','.join('?' * len(sources))}) "
            "ORDER BY wanted_at LIMIT ?",
            (*sources, FETCH_WINDOW * 2),
        ).fetchall()
        self._want_snapshots = bool(rows)
        self.metrics.snapshots_wanted.set(
            db.execute("SELECT COUNT(*) FROM snapshot_wanted").fetchone()[0]
            if len(rows) >= FETCH_WINDOW * 2
            else len(rows)
        )
        for sha, source in rows:
            if room <= 0:
                break
            ident = self._peers.get(source)
            if ident is None or sha in self._fetching:
                continue
            try:
                sock.send_multipart([ident, b"GET", sha.encode()], flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                continue
            self._fetching[sha] = now
            room -= 1


_COLUMNS = ", ".join(
    ("source", "event_id", "seq", "incident_id", "type", "status", "camera_id", "emitted_at", "received_at")
    + ("snapshot_sha256", "body")
)
_PG_INSERT_EVENTS = (
    f"INSERT INTO events ({_COLUMNS}) SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::text[], "
    "?::text[], ?::text[], ?::text[], ?::text[], ?::float8[], ?::text[], ?::text[]) "
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
)
_SQLITE_INSERT_EVENTS = (
    f"INSERT INTO events ({_COLUMNS}, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (source, event_id) DO NOTHING"
)


def insert_events(db: Db, rows: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
    """Insert events (rows of ``_COLUMNS``) in the open transaction, each with the next ``id``; the
    (source, event_id) keys this insert stored. An event another replica stored first (a failover's
    resend) is left as it is: the unique key makes it a duplicate, not a second row."""
    if not rows:
        return set()
    if isinstance(db, PgDb):  # taken in turn, held to the commit: ids become visible in order
        db.execute("SELECT pg_advisory_xact_lock(?)", (EVENTS_LOCK,))
        columns = [list(c) for c in zip(*rows, strict=True)]
        return {(s, e) for s, e in db.execute(_PG_INSERT_EVENTS, columns, binary=True)}
    # one writer at a time (BEGIN IMMEDIATE): the next ids follow the largest
    last = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
    db.executemany(_SQLITE_INSERT_EVENTS, [(*row, last + i) for i, row in enumerate(rows, 1)])
    return {(row[0], row[1]) for row in rows}


def format_event(event: dict[str, Any]) -> str:
    """One line for a person to read; every field an edge chose is shown escaped (``text.printable``):
    no event can forge a line of output or send terminal escapes."""
    p = printable
    objs = ", ".join(
        f"{p(o['label'], limit=64)}#{p(o['track_id'])} {o['confidence']:.2f}"
        for o in event.get("objects", [])
    )
    evidence = event.get("evidence") or {}
    snap = f" snapshot {p(evidence.get('bytes'))} B" if evidence else ""
    if evidence.get("clip"):
        clip = evidence["clip"]
        snap += f" clip {clip['duration_seconds']:.1f} s {clip['bytes'] >> 10} KiB"
    return (
        f"{p(event['emitted_at'])} {p(event['source'])}#{p(event['seq'])} "
        f"{p(event['type']).upper()} {p(event['status']):<6} "
        f"camera={p(event['camera_id'])} zone={p(event.get('zone'))} [{objs}]{snap}"
    )

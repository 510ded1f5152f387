"""Acknowledged delivery from the outbox to the ICCC sink over ZeroMQ DEALER -> ROUTER.

Messages, edge -> sink: ``[b"EVT", event_json, snapshot_jpeg_or_empty, ...]`` or, when none of them
carries a snapshot, ``[b"EVTS", json_lines]`` (up to 64 events a message),
``[b"HELLO", edge_id]`` on each connection, ``[b"HB", heartbeat_json]`` (``heartbeat.py``) every few
seconds and, on request, ``[b"SNAP", sha256, jpeg]``,
``[b"CLIP", sha256, offset, size, bytes]`` (a chunk of an evidence clip) or ``[b"MISS", sha256]``.
Sink -> edge: ``[b"ACK", event_id, ...]`` (one per stored batch), ``[b"NACK", event_id, reason]``,
``[b"GET", sha256]`` (a snapshot sent by reference) and ``[b"GETC", sha256, offset]`` (the chunk of a
clip from ``offset``, decimal).

Unacked events are resent after ``ack_timeout`` with exponential backoff, and at once after the
connection comes back (heartbeats notice a dead or stalled sink within ``HEARTBEAT_TIMEOUT_MS``);
a NACKed event goes to the outbox's dead-letter table instead of being retried for ever.

Given several sink replicas (one store behind them), each edge prefers them in an order of its own
(rendezvous hashing of its id: the edges spread evenly, and each keeps its order as replicas come and
go). It sends to one at a time; when that one has been unreachable for ``failover_s``, or has
acknowledged nothing for ``stall_s`` while events wait (its store refusing them), it moves to the
next in its order, resending what was unacknowledged (the store's unique key makes a resend of an
event the old replica stored a duplicate, not a second row); after ``failback_s`` away from its first
choice it tries that one again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..failpoints import failpoint
from ..metrics import Metrics
from .clip_store import CHUNK_BYTES, ClipStore, clips_dir
from .outbox import Outbox

log = logging.getLogger(__name__)

HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
RESEND_SCAN_S = 0.1
IDLE_POLL_MS = 500  # with nothing in flight: notify() wakes it at once; gauges refresh this often
MAX_EVENTS_PER_MESSAGE = 64
MAX_MESSAGE_BYTES = 1 << 20  # a group stops growing past this; the sink refuses messages over 4 MiB
SNAPSHOT_LIMIT_BYTES = 3 << 20  # a bigger one is never sent (the runner keeps its JPEGs under it)
PRUNE_EVERY_S = 600.0
CLIP_QUIET_S = 2.0  # draining at a stop goes on while the sink asks for clip chunks this often

SnapshotMode = Literal["inline", "reference"]


@dataclass(slots=True)
class _InFlight:
    seq: int
    frames: list[bytes]
    sent_at: float
    first_sent_at: float
    attempts: int
    done: bool = False


def warn_if_unresolvable(endpoint: str) -> None:
    """ZeroMQ retries a host it cannot resolve for ever, silently: say so once, loudly."""
    if not endpoint.startswith("tcp://"):
        return
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    try:
        socket.getaddrinfo(host, None)
    except OSError as err:
        log.error(
            "the sink's host %r does not resolve (%s): incidents wait in the outbox until it does",
            host,
            err.strerror or err,
        )


def preference(endpoints: Sequence[str], source: str) -> list[str]:
    """The order an edge tries the sink replicas in: highest rendezvous hash of (edge, endpoint) first."""
    score = {e: hashlib.sha256(f"{source}\0{e}".encode()).digest() for e in endpoints}
    return sorted(dict.fromkeys(endpoints), key=lambda e: score[e], reverse=True)


def _sendable_snapshot(outbox: Outbox, sha: str, *, beside: int = 0) -> bytes | None:
    """The stored snapshot, or None when there is none or it would take a message past
    SNAPSHOT_LIMIT_BYTES with ``beside`` bytes of event (the sink would drop the connection): then the
    event goes without it, or a request for it is answered as missing."""
    jpeg = outbox.snapshot(sha)
    if jpeg is not None and len(jpeg) + beside > SNAPSHOT_LIMIT_BYTES:
        log.warning("snapshot %s is %d B, over the limit: not sent", sha[:16], len(jpeg))
        return None
    return jpeg


class Sender(threading.Thread):
    def __init__(
        self,
        *,
        outbox_path: Path,
        endpoint: str | Sequence[str],
        metrics: Metrics | None,
        max_in_flight: int = 256,
        max_in_flight_bytes: int = 64 << 20,
        ack_timeout_s: float = 2.0,
        max_backoff_s: float = 30.0,
        curve: tuple[bytes, bytes, bytes] | None = None,
        snapshots: SnapshotMode = "inline",
        retention_s: float = 7 * 86400.0,
        source: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        heartbeat: Callable[[], bytes] | None = None,
        heartbeat_s: float = 5.0,
        failover_s: float = 5.0,
        failback_s: float = 300.0,
        stall_s: float = 30.0,
    ) -> None:
        """The window is ``max_in_flight`` events and ``max_in_flight_bytes`` of event and inline
        snapshot bytes, whichever is reached first (one event at least).
        ``curve``: (sink public key, this edge's public key, this edge's secret key), Z85.
        ``snapshots``: sent with each event, or by reference (the sink asks for them); either way
        they stay in the outbox for ``retention_s`` after delivery. ``source`` (the edge id) is sent
        in a HELLO on every (re)connection so the sink knows where to ask for snapshots.
        ``on_error(err)``: the sender thread died of ``err`` (kept as ``error`` too).
        ``heartbeat()``: the body of a ``[HB, body]`` message (``events/heartbeat.py``), sent every
        ``heartbeat_s`` while connected and at once after each (re)connection.
        ``endpoint``: the sink, or its replicas (tried in ``preference`` order; module docstring)."""
        super().__init__(name="event-sender", daemon=True)
        self.outbox_path = outbox_path
        self.endpoints = preference([endpoint] if isinstance(endpoint, str) else endpoint, source or "")
        if not self.endpoints:
            raise ValueError("no sink endpoint")
        self.endpoint = self.endpoints[0]  # the one in use
        self.failover_s = failover_s
        self.failback_s = failback_s
        self.stall_s = stall_s
        self._last_ack = 0.0
        self.failovers = 0
        self._down_since = self._up_since = 0.0
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self.in_flight_bytes = 0
        self.ack_timeout_s = ack_timeout_s
        self.max_backoff_s = max_backoff_s
        self.curve = curve
        self.snapshots = snapshots
        self.retention_s = retention_s
        self.source = source
        self.on_error = on_error
        self.heartbeat = heartbeat
        self.heartbeat_s = heartbeat_s
        self._last_beat = float("-inf")
        self._beat_failed = False
        self.error: BaseException | None = None
        self._unmarked: list[int] = []  # acked, but the outbox could not record it yet (full disk)
        self._mark_failing = False
        self._stopping = threading.Event()
        self._drain_deadline = float("inf")
        self.in_flight: dict[str, _InFlight] = {}
        self._to_send: collections.deque[_InFlight] = collections.deque()
        self.acked = 0
        self.sent = 0
        self.pending = 0
        self.connected = False
        self.reconnects = 0
        self._hello_due = False  # a HELLO goes out before anything else after each handshake
        # while the thread runs, notify() also writes a byte to a pipe its poll watches: it wakes at once
        self._wake_r = self._wake_w = -1
        self._pipe_lock = threading.Lock()
        self.clips = ClipStore(clips_dir(outbox_path))
        self._last_clip_request = self._last_clip_ack = float("-inf")

    def notify(self) -> None:
        """Called after an outbox commit so the sender picks it up at once."""
        with self._pipe_lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:  # already full of wake-ups
                    pass

    def stop(self, *, drain_s: float) -> None:
        """Stop after the outbox is drained or ``drain_s`` has passed; undelivered events stay put."""
        self._drain_deadline = time.monotonic() + drain_s
        self._stopping.set()
        self.notify()
        if self.ident is not None:  # started
            self.join(timeout=drain_s + 5.0)

    def _socket(self, ctx: zmq.Context) -> zmq.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self.max_in_flight * 2)
        sock.setsockopt(zmq.RCVHWM, max(self.max_in_flight * 4, 10_000))
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing into a connection that is not up
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL, 200)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
        return sock

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # a dead sender is a dead stage: whoever started it is told
            self.error = err
            if self.on_error is not None:
                self.on_error(err)
            else:
                log.exception("event sender failed")

    def _run(self) -> None:
        for endpoint in self.endpoints:
            warn_if_unresolvable(endpoint)
        with contextlib.ExitStack() as cleanup:  # whatever was set up is closed, on any error too
            outbox = Outbox(self.outbox_path)
            cleanup.callback(outbox.close)
            # Losing a "delivered" mark in a power cut only means a resend the sink deduplicates.
            outbox.conn.execute("PRAGMA synchronous=NORMAL")
            poller = zmq.Poller()
            self._connect(poller, time.monotonic())
            cleanup.callback(self._disconnect, poller)
            with self._pipe_lock:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
                os.set_blocking(self._wake_w, False)
            cleanup.callback(self._close_wake_pipe)
            poller.register(self._wake_r, zmq.POLLIN)
            self._loop(outbox, poller)

    def _connect(self, poller: zmq.Poller, now: float) -> None:
        """A socket (and its monitor) connected to ``self.endpoint``; a new one for each replica, so
        nothing of the last connection (its queue, its monitor's events) is taken for the new one."""
        self._sock = self._socket(zmq.Context.instance())
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self._sock.connect(self.endpoint)
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        self._down_since = now

    def _disconnect(self, poller: zmq.Poller) -> None:
        for s in (self._sock, self._monitor):
            with contextlib.suppress(KeyError):
                poller.unregister(s)
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

    def _failover(self, poller: zmq.Poller, now: float) -> None:
        """To the next replica after ``failover_s`` unreachable; back to the first after ``failback_s``."""
        if len(self.endpoints) < 2:
            return
        at = self.endpoints.index(self.endpoint)
        waiting = now - max(self._last_ack, self._up_since)
        if not self.connected and now - self._down_since >= self.failover_s:
            to = (at + 1) % len(self.endpoints)
            log.warning(
                "sink %s unreachable for %.0f s: sending to %s (%d events to resend)",
                self.endpoint, now - self._down_since, self.endpoints[to], len(self.in_flight),
            )  # fmt: skip
        elif self.connected and self.in_flight and waiting >= self.stall_s:
            # connected, but storing nothing (its store refuses, or waits on a lock): the next one
            to = (at + 1) % len(self.endpoints)
            log.warning(
                "sink %s acknowledged nothing for %.0f s: sending to %s (%d events to resend)",
                self.endpoint, waiting, self.endpoints[to], len(self.in_flight),
            )  # fmt: skip
        elif (
            self.connected
            and at != 0
            and now - self._up_since >= self.failback_s
            and not self._stopping.is_set()
        ):
            to = 0
            away = now - self._up_since
            log.info(
                "back to the preferred sink %s after %.0f s on %s", self.endpoints[0], away, self.endpoint
            )
        else:
            return
        self._disconnect(poller)
        self.endpoint = self.endpoints[to]
        self._connect(poller, now)
        self.failovers += 1
        if self.connected:
            self.connected = False
            if self.metrics:
                self.metrics.sink_connected.set(0)
        if self.metrics:
            self.metrics.sink_failovers.inc()

    def _close_wake_pipe(self) -> None:
        with self._pipe_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _loop(self, outbox: Outbox, poller: zmq.Poller) -> None:
        last_seq = 0
        last_gauges = last_scan = 0.0
        last_prune = time.monotonic() - PRUNE_EVERY_S + 30.0
        while True:
            now = time.monotonic()
            if self._stopping.is_set():
                if now >= self._drain_deadline:
                    break
                if not self.in_flight and not self._to_send and outbox.count_pending() == 0:
                    self.pending = 0
                    # nor is the sink fetching clips (it asks for those of events it has just acked)
                    if now - max(self._last_clip_request, self._last_clip_ack) > CLIP_QUIET_S:
                        break
            self._failover(poller, now)
            sock, monitor = self._sock, self._monitor
            room = self.max_in_flight - len(self.in_flight)
            if room > 0 and self.in_flight_bytes < self.max_in_flight_bytes:
                last_seq = self._load(outbox, last_seq, room, now)
            if now - last_scan >= RESEND_SCAN_S:
                last_scan = now
                self._queue_resends(now)
            self._send(sock, now)
            if self.heartbeat is not None and self.connected and now - self._last_beat >= self.heartbeat_s:
                self._beat(sock, now)
            delivered: list[int] = []
            # idle, it still listens: the sink's snapshot requests and the connection's events
            idle = not self.in_flight and not self._stopping.is_set()
            for s, _ in poller.poll(IDLE_POLL_MS if idle else 20 if self.in_flight else 0):
                if s is monitor:
                    self._on_monitor(monitor)
                elif s is sock:
                    self._drain_replies(sock, outbox, delivered)
                else:
                    self._drain_wake_pipe()
            self._mark_delivered(outbox, delivered)
            self.acked += len(delivered)
            self.pending = max(self.pending - len(delivered), 0)
            if now - last_gauges > 0.5:
                last_gauges = now
                self.pending = outbox.count_pending()
                if self.metrics:
                    self.metrics.outbox_pending.set(self.pending)
                    self.metrics.outbox_oldest_age.set(outbox.oldest_pending_age())
            if now - last_prune > PRUNE_EVERY_S and not self._mark_failing:
                last_prune = now
                self._prune(outbox)

    def _beat(self, sock: zmq.Socket, now: float) -> None:
        """One heartbeat; a failure to build it is logged (once) and never stops delivery."""
        assert self.heartbeat is not None
        self._last_beat = now
        try:
            body = self.heartbeat()
        except Exception:
            if not self._beat_failed:
                log.exception("could not build a heartbeat (delivery goes on without them)")
            self._beat_failed = True
            return
        self._beat_failed = False
        try:
            sock.send_multipart([b"HB", body], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # the next one goes in heartbeat_s

    def _prune(self, outbox: Outbox) -> None:
        try:
            pruned = outbox.prune(retention_s=self.retention_s)
        except sqlite3.Error as err:  # a full disk: tried again next time
            log.warning("outbox: could not forget old deliveries (%s)", err)
            return
        if pruned:
            log.info("outbox: forgot %d events delivered over %.0f h ago", pruned, self.retention_s / 3600)
        try:
            clips = self.clips.prune(retention_s=self.retention_s)
        except OSError as err:
            log.warning("outbox: could not delete old clips (%s)", err)
            return
        if clips:
            log.info("outbox: deleted %d clips over %.0f h old", clips, self.retention_s / 3600)

    def _mark_delivered(self, outbox: Outbox, seqs: list[int]) -> None:
        """Record acks in the outbox; when it cannot be written (a full disk) they are kept and
        recorded later (were the edge to stop first, the sink would get them again and ignore them)."""
        if not seqs and not self._unmarked:
            return
        self._unmarked.extend(seqs)
        try:
            outbox.mark_delivered(self._unmarked)
        except sqlite3.Error as err:
            if not self._mark_failing:
                log.error("cannot record deliveries in the outbox (%s); keeping them in memory", err)
            self._mark_failing = True
            return
        if self._mark_failing:
            log.warning("deliveries are recorded in the outbox again (%d held)", len(self._unmarked))
        self._mark_failing = False
        self._unmarked = []

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _load(self, outbox: Outbox, last_seq: int, room: int, now: float) -> int:
        for seq, event_id, body, sha in outbox.pending(after_seq=last_seq, limit=room):
            last_seq = seq
            if b'"seq":' not in body:  # written before the outbox assigned seq in the body
                event = json.loads(body)
                event["seq"] = seq
                body = json.dumps(event, separators=(",", ":")).encode()
            snapshot = b""
            if sha is not None and self.snapshots == "inline":
                snapshot = _sendable_snapshot(outbox, sha, beside=len(body)) or b""
            inf = _InFlight(seq, [b"EVT", body, snapshot], 0.0, now, 0)
            self.in_flight[event_id] = inf
            self.in_flight_bytes += len(body) + len(snapshot)
            self._to_send.append(inf)
            if self.in_flight_bytes >= self.max_in_flight_bytes:
                break  # the rest is loaded again (after last_seq) once acks make room
        return last_seq

    def _queue_resends(self, now: float) -> None:
        for inf in self.in_flight.values():
            if inf.attempts == 0:
                continue
            backoff = min(self.ack_timeout_s * (2 ** (inf.attempts - 1)), self.max_backoff_s)
            if now - inf.sent_at >= backoff:
                inf.sent_at = now  # queued once per backoff period
                self._to_send.append(inf)

    def _send(self, sock: zmq.Socket, now: float) -> None:
        if self._hello_due and self.source is not None:
            try:
                sock.send_multipart([b"HELLO", self.source.encode()], flags=zmq.NOBLOCK)
                self._hello_due = False
            except zmq.Again:
                return
        while self._to_send:
            group: list[_InFlight] = []  # consecutive events share one message: less work per event
            size = 0
            while self._to_send and len(group) < MAX_EVENTS_PER_MESSAGE and size < MAX_MESSAGE_BYTES:
                inf = self._to_send.popleft()
                if not inf.done:
                    group.append(inf)
                    size += len(inf.frames[1]) + len(inf.frames[2])
            if not group:
                return
            if any(inf.frames[2] for inf in group):
                frames = [b"EVT"] + [f for inf in group for f in inf.frames[1:]]
            else:  # no snapshots: the events as JSON Lines in one frame (compact JSON has no raw newline)
                frames = [b"EVTS", b"\n".join(inf.frames[1] for inf in group)]
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._to_send.extendleft(reversed(group))
                return  # not connected, or the window to the sink is full: try again later
            for inf in group:
                if inf.attempts > 0 and self.metrics:
                    self.metrics.events_retransmitted.inc()
                inf.attempts += 1
                inf.sent_at = now
                self.sent += 1
                failpoint("edge.after_send")
            if self.metrics:
                self.metrics.events_sent.inc(len(group))

    def _on_monitor(self, monitor: zmq.Socket) -> None:
        try:
            event = recv_monitor_message(monitor, flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self.reconnects:  # not the first connection
                log.info("connection to the sink is back: resending %d unacked events", len(self.in_flight))
                queued = {id(i) for i in self._to_send}
                for inf in self.in_flight.values():
                    if id(inf) not in queued:
                        self._to_send.append(inf)
            self.reconnects += 1
            self.connected = True
            self._up_since = time.monotonic()
            self._hello_due = self.source is not None
            self._last_beat = float("-inf")  # the sink learns the cameras' state at once
        elif event["event"] == zmq.EVENT_DISCONNECTED:
            if self.connected:
                log.warning("connection to the sink lost; %d events unacked", len(self.in_flight))
                self._down_since = time.monotonic()
            self.connected = False
        if self.metrics:
            self.metrics.sink_connected.set(1 if self.connected else 0)

    def _drain_replies(self, sock: zmq.Socket, outbox: Outbox, delivered: list[int]) -> None:
        while True:
            try:
                msg = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[0] == b"GET" and len(msg) == 2:
                self._serve_snapshot(sock, outbox, msg[1])
            elif msg[0] == b"GETC" and len(msg) == 3:
                self._serve_clip(sock, msg[1], msg[2])
            else:
                self._on_reply(msg, outbox, delivered)

    def _serve_snapshot(self, sock: zmq.Socket, outbox: Outbox, sha: bytes) -> None:
        jpeg = _sendable_snapshot(outbox, sha.decode(errors="replace"))
        reply = [b"MISS", sha] if jpeg is None else [b"SNAP", sha, jpeg]
        try:
            sock.send_multipart(reply, flags=zmq.NOBLOCK)
        except zmq.Again:
            return  # the sink asks again
        if jpeg is not None and self.metrics:
            self.metrics.snapshots_served.inc()

    def _serve_clip(self, sock: zmq.Socket, sha: bytes, offset: bytes) -> None:
        """One chunk of an evidence clip, from where the sink has got to."""
        self._last_clip_request = time.monotonic()
        try:
            at = int(offset)
        except ValueError:
            return
        got = self.clips.read(sha.decode(errors="replace"), at, CHUNK_BYTES)
        reply = [b"MISS", sha] if got is None else [b"CLIP", sha, offset, str(got[1]).encode(), got[0]]
        try:
            sock.send_multipart(reply, flags=zmq.NOBLOCK)
        except zmq.Again:
            return  # the sink asks again
        if got is not None and self.metrics:
            self.metrics.clip_bytes_served.inc(len(got[0]))

    def _landed(self, inf: _InFlight) -> None:
        """An event left the window (acked or rejected): not sent again, its bytes freed."""
        inf.done = True
        self.in_flight_bytes -= len(inf.frames[1]) + len(inf.frames[2])

    def _on_reply(self, msg: list[bytes], outbox: Outbox, delivered: list[int]) -> None:
        if len(msg) < 2:
            log.warning("malformed reply from sink: %r", msg[:1])
            return
        kind = msg[0]
        if kind == b"ACK":  # [ACK, event id, event id, ...]
            now = self._last_ack = time.monotonic()
            for raw in msg[1:]:
                acked = self.in_flight.pop(raw.decode(errors="replace"), None)
                if acked is None:
                    continue  # an ack for a resend that was already acked
                if b'"clip":{' in acked.frames[1]:  # the sink will ask for the clip it names
                    self._last_clip_ack = now
                self._landed(acked)
                delivered.append(acked.seq)
                if self.metrics:
                    self.metrics.events_acked.inc()
                    self.metrics.ack_latency.observe(now - acked.first_sent_at)
            return
        event_id = msg[1].decode(errors="replace")
        inf = self.in_flight.pop(event_id, None)
        if inf is None:
            return
        self._landed(inf)
        if kind == b"NACK":
            reason = msg[2].decode(errors="replace") if len(msg) > 2 else "rejected"
            log.error("sink rejected event %s (seq %d): %s", event_id, inf.seq, reason)
            try:
                outbox.dead_letter(inf.seq, reason)
            except sqlite3.Error as err:  # it stays pending: sent again (and refused again) later
                log.error("cannot move event %s to the dead letters (%s)", event_id, err)
            if self.metrics:
                self.metrics.events_rejected.inc()

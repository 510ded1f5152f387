"""Acknowledged delivery from the outbox to the ICCC sink over ZeroMQ DEALER -> ROUTER.

Messages: edge -> sink ``[b"EVT", event_json, snapshot_jpeg_or_empty]``;
sink -> edge ``[b"ACK", event_id]`` or ``[b"NACK", event_id, reason]``.
Unacked events are resent after ``ack_timeout`` with exponential backoff; a NACKed event goes to the
outbox's dead-letter table instead of being retried for ever.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from ..metrics import Metrics
from .outbox import Outbox

log = logging.getLogger(__name__)

HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


@dataclass
class _InFlight:
    seq: int
    frames: list[bytes]
    sent_at: float
    first_sent_at: float
    attempts: int


class Sender(threading.Thread):
    def __init__(
        self,
        *,
        outbox_path: Path,
        endpoint: str,
        metrics: Metrics | None,
        max_in_flight: int = 256,
        ack_timeout_s: float = 2.0,
        max_backoff_s: float = 30.0,
        curve: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        """``curve``: (sink public key, this edge's public key, this edge's secret key), Z85."""
        super().__init__(name="event-sender", daemon=True)
        self.outbox_path = outbox_path
        self.endpoint = endpoint
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.ack_timeout_s = ack_timeout_s
        self.max_backoff_s = max_backoff_s
        self.curve = curve
        self._stopping = threading.Event()
        self._drain_deadline = float("inf")
        self.in_flight: dict[str, _InFlight] = {}
        self.acked = 0
        self.sent = 0
        self.pending = 0
        self._wake = threading.Event()

    def notify(self) -> None:
        """Called after an outbox commit so the sender picks it up at once."""
        self._wake.set()

    def stop(self, *, drain_s: float) -> None:
        """Stop after the outbox is drained or ``drain_s`` has passed; undelivered events stay put."""
        self._drain_deadline = time.monotonic() + drain_s
        self._stopping.set()
        self._wake.set()
        self.join(timeout=drain_s + 5.0)

    def run(self) -> None:
        outbox = Outbox(self.outbox_path)
        ctx: zmq.Context = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self.max_in_flight * 2)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL, 200)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
        sock.connect(self.endpoint)
        last_seq = 0
        last_gauges = 0.0
        try:
            while True:
                now = time.monotonic()
                if self._stopping.is_set():
                    if (self.pending == 0 and not self.in_flight) or now >= self._drain_deadline:
                        break
                # new events, within the in-flight window
                room = self.max_in_flight - len(self.in_flight)
                if room > 0:
                    for seq, event_id, body, snapshot in outbox.pending(after_seq=last_seq, limit=room):
                        last_seq = seq
                        event = json.loads(body)
                        event["seq"] = seq
                        frames = [b"EVT", json.dumps(event, separators=(",", ":")).encode(), snapshot or b""]
                        self.in_flight[event_id] = _InFlight(seq, frames, 0.0, now, 0)
                # first sends and resends with backoff
                for inf in self.in_flight.values():
                    backoff = min(self.ack_timeout_s * (2 ** max(inf.attempts - 1, 0)), self.max_backoff_s)
                    if inf.attempts == 0 or now - inf.sent_at >= backoff:
                        try:
                            sock.send_multipart(inf.frames, flags=zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        if inf.attempts > 0 and self.metrics:
                            self.metrics.events_retransmitted.inc()
                        inf.attempts += 1
                        inf.sent_at = now
                        self.sent += 1
                        if self.metrics:
                            self.metrics.events_sent.inc()
                # acks
                delivered: list[int] = []
                if sock.poll(20 if self.in_flight else 0):
                    while True:
                        try:
                            msg = sock.recv_multipart(flags=zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_reply(msg, outbox, delivered)
                outbox.mark_delivered(delivered)
                self.acked += len(delivered)
                if now - last_gauges > 0.5 or delivered:
                    self.pending = outbox.count_pending()
                    last_gauges = now
                    if self.metrics:
                        self.metrics.outbox_pending.set(self.pending)
                        self.metrics.outbox_oldest_age.set(outbox.oldest_pending_age())
                if not self.in_flight and not self._stopping.is_set():
                    self._wake.wait(0.2)
                    self._wake.clear()
        finally:
            sock.close(linger=0)
            outbox.close()

    def _on_reply(self, msg: list[bytes], outbox: Outbox, delivered: list[int]) -> None:
        if len(msg) < 2:
            log.warning("malformed reply from sink: %r", msg[:1])
            return
        kind, event_id = msg[0], msg[1].decode(errors="replace")
        inf = self.in_flight.pop(event_id, None)
        if inf is None:
            return  # an ack for a resend that was already acked
        if kind == b"ACK":
            delivered.append(inf.seq)
            if self.metrics:
                self.metrics.events_acked.inc()
                self.metrics.ack_latency.observe(time.monotonic() - inf.first_sent_at)
        elif kind == b"NACK":
            reason = msg[2].decode(errors="replace") if len(msg) > 2 else "rejected"
            log.error("sink rejected event %s (seq %d): %s", event_id, inf.seq, reason)
            outbox.dead_letter(inf.seq, reason)
            if self.metrics:
                self.metrics.events_rejected.inc()

"""The loop every bridge shares: read the sink's events after the cursor, in store order, hand a
batch to the bridge's ``deliver``, move the cursor past what it delivered (or dead-lettered)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..events.store import Db, StoreTarget, describe, open_reader
from .state import BridgeState

log = logging.getLogger(__name__)

BATCH = 200
POLL_S = 0.2


@dataclass(frozen=True)
class Stored:
    """One event as the sink stored it: its place in the store, the event, its JSON as received."""

    position: int
    event: dict[str, Any]
    body: str
    redelivery: bool  # it may have been sent before the bridge restarted


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "safecity_bridge_events_delivered_total",
            "Events a bridge delivered",
            ["bridge"],
            registry=registry,
        )
        self.failures = Counter(
            "safecity_bridge_delivery_failures_total",
            "Failed delivery attempts (retried)",
            ["bridge"],
            registry=registry,
        )
        self.dead = Counter(
            "safecity_bridge_dead_letters_total",
            "Events a bridge gave up on after its attempts (kept as dead letters)",
            ["bridge"],
            registry=registry,
        )
        self.lag_events = Gauge(
            "safecity_bridge_lag_events",
            "Stored events the bridge has not delivered yet",
            ["bridge"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "safecity_bridge_lag_seconds",
            "Age of the oldest stored event the bridge has not delivered (0: caught up)",
            ["bridge"],
            registry=registry,
        )
        self.connected = Gauge(
            "safecity_bridge_connected",
            "1 while the bridge reaches its destination",
            ["bridge"],
            registry=registry,
        )


class Bridge:
    """Subclasses give ``kind`` and ``deliver``; ``tick`` (optional) runs every round."""

    kind = "bridge"

    def __init__(
        self,
        sink_db: StoreTarget,
        state: BridgeState,
        *,
        registry: CollectorRegistry | None = None,
        batch: int = BATCH,
    ) -> None:
        self.sink_db = sink_db
        self.state = state
        self.name = state.name
        self.metrics = BridgeMetrics(registry or CollectorRegistry())
        self.batch = batch
        self.stop_event = threading.Event()

    def deliver(self, events: list[Stored]) -> int:
        """Deliver these, in order; the position of the last one delivered or dead-lettered with all
        before it (0 or less than the first: none). Returns early when ``stop_event`` is set."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the destination can take events now (MQTT: connected); nothing is marked as
        sent while it cannot."""
        return True

    def tick(self, sink: Db) -> None:
        """Called every round with the sink's store (MQTT: camera availability)."""

    def start_position(self, sink_db: StoreTarget, from_start: bool) -> int:
        if from_start:
            return 0
        sink = open_reader(sink_db)
        if sink is None:
            return 0
        try:
            return int(sink.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
        finally:
            sink.close()

    def run(self) -> None:
        self.state.start_at(0)  # a bridge new to its state file starts at the first event (the CLI may
        # have set another start already: then this changes nothing), and its cursor can move
        sink: Db | None = None
        failing = False
        m = self.name
        while not self.stop_event.is_set():
            try:
                if sink is None:
                    sink = open_reader(self.sink_db)
                    if sink is None:
                        self.stop_event.wait(1.0)
                        continue
                self.tick(sink)
                moved = self._round(sink)
                if failing:
                    log.warning("bridge %s: reading %s again", m, describe(self.sink_db))
                failing = False
            except Exception as err:  # the store, the destination's client: logged once, tried again
                if not failing:
                    log.error("bridge %s: %s; trying again", m, err)
                failing = True
                if sink is not None:
                    sink.close()
                sink, moved = None, False
            if not moved:
                self.stop_event.wait(POLL_S)
        if sink is not None:
            sink.close()

    def _round(self, sink: Db) -> bool:
        """One batch; whether the cursor moved."""
        position, sent_upto = self.state.cursor()
        rows = sink.execute(
            "SELECT id, body, received_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (position, self.batch),
        ).fetchall()
        newest = int(sink.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
        self.metrics.lag_events.labels(self.name).set(max(newest - position, 0))
        self.metrics.lag_seconds.labels(self.name).set(max(time.time() - rows[0][2], 0.0) if rows else 0.0)
        if not rows or not self.ready():
            return False
        events = [Stored(int(r[0]), json.loads(r[1]), r[1], int(r[0]) <= sent_upto) for r in rows]
        self.state.sending(events[-1].position)
        done = self.deliver(events)
        if done > position:
            self.state.advance(done)
            return True
        return False

    def stop(self) -> None:
        self.stop_event.set()

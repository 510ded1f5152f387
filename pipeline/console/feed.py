"""What the console sees of the sink's store: its events, ingested into the console's incidents (each
with its own cursor, exactly once), and the cameras' health from the edges' heartbeats; changes are
published to the live consoles (``wait``)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime
from typing import Any

from ..events.heartbeat import read_health
from ..events.schema import rfc3339
from ..events.store import Db, StoreTarget, describe, open_reader
from .store import ConsoleStore

log = logging.getLogger(__name__)

POLL_S = 0.25
INGEST_BATCH = 1000
KEEP_CHANGES = 5000


def camera_health(sink: Db | None, store: ConsoleStore, now: float) -> list[dict[str, Any]]:
    """Every camera an edge reported (``heartbeat.read_health``), with its incidents today."""
    if sink is None:
        return []
    cameras = read_health(sink, now)
    today = store.incidents_today(rfc3339(local_midnight_ts()))
    for cam in cameras:
        cam["incidents_today"] = today.get((cam["source"], cam["camera_id"]), 0)
    return cameras


def local_midnight_ts() -> float:
    return datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class Feed(threading.Thread):
    """Polls the sink's store; ``changes`` is what live consoles are sent: (number, kind, data)."""

    def __init__(self, sink_db: StoreTarget, store: ConsoleStore, *, poll_s: float = POLL_S) -> None:
        super().__init__(name="console-feed", daemon=True)
        self.sink_db = sink_db
        self.store = store
        self.poll_s = poll_s
        self.stop_event = threading.Event()
        self._cond = threading.Condition()
        self._changes: collections.deque[tuple[int, str, dict[str, Any]]]
        self._changes = collections.deque(maxlen=KEEP_CHANGES)
        self._number = 0
        self._rev = self._max_rev()  # live consoles load what exists, then follow changes
        self._cameras: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.error: Exception | None = None

    def _max_rev(self) -> int:
        with self.store.lock:
            return int(self.store.db.execute("SELECT COALESCE(MAX(rev), 0) FROM incidents").fetchone()[0])

    def run(self) -> None:
        sink: Db | None = None
        failing = False
        where = describe(self.sink_db)
        while not self.stop_event.is_set():
            try:
                if sink is None:
                    sink = open_reader(self.sink_db)
                self.poll(sink)
                if failing:
                    log.warning("console: reading %s again", where)
                failing = False
            except Exception as err:  # the store gone, locked, corrupt: logged once, tried again
                if not failing:
                    log.error("console: cannot read the sink store %s (%s); trying again", where, err)
                failing = True
                if sink is not None:
                    sink.close()
                sink = None
            self.stop_event.wait(self.poll_s)
        if sink is not None:
            sink.close()

    def poll(self, sink: Db | None) -> None:
        """One round: new events in, changed incidents and cameras out."""
        if sink is not None:
            while True:
                rows = sink.execute(
                    "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    (self.store.cursor("sink"), INGEST_BATCH),
                ).fetchall()
                self.store.ingest([(r[0], r[1]) for r in rows])
                if len(rows) < INGEST_BATCH:
                    break
        changed = self.store.incidents(after_rev=self._rev, limit=1000)
        for inc in changed:
            self._rev = max(self._rev, inc["rev"])
        self._publish([("incident", inc) for inc in changed])
        cams = []
        for cam in camera_health(sink, self.store, time.time()):
            key = (cam["source"], cam["camera_id"])
            seen = (cam["state"], cam["incidents_today"], cam["behind"])  # rates: the page polls
            if self._cameras.get(key) != seen:
                self._cameras[key] = seen
                cams.append(("camera", cam))
        self._publish(cams)

    def _publish(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if not items:
            return
        with self._cond:
            for kind, data in items:
                self._number += 1
                self._changes.append((self._number, kind, data))
            self._cond.notify_all()

    @property
    def latest(self) -> int:
        with self._cond:
            return self._number

    def wait(self, after: int, timeout: float) -> list[tuple[int, str, dict[str, Any]]]:
        """The changes numbered after ``after``, waiting up to ``timeout`` for one."""
        with self._cond:
            if self._number <= after:
                self._cond.wait(timeout)
            return [c for c in self._changes if c[0] > after]

    def stop(self) -> None:
        self.stop_event.set()
        with self._cond:
            self._cond.notify_all()
        if self.ident is not None:
            self.join(5.0)

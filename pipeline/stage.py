"""One stop/error discipline for the stage threads: the first stage that dies ends the run with its
error (the CLI exits 1 with it), never a quiet stop with a normal summary."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import StageError

log = logging.getLogger(__name__)

T = TypeVar("T")
POLL_S = 0.1


class AllDone:
    """Set once each of ``events`` is: a stage of several threads has finished when all of them have."""

    def __init__(self, events: list[threading.Event]) -> None:
        self.events = events

    def is_set(self) -> bool:
        return all(e.is_set() for e in self.events)


class Supervisor:
    """Keeps the first stage error and sets ``stop_event`` when it happens."""

    def __init__(self, stop_event: threading.Event) -> None:
        self.stop_event = stop_event
        self.error: StageError | None = None
        self._lock = threading.Lock()

    def fail(self, stage: str, err: BaseException) -> None:
        with self._lock:
            first = self.error is None
            if first:
                self.error = err if isinstance(err, StageError) else StageError(stage, err)
        if first:
            log.error("%s stage failed; stopping the run", stage, exc_info=err)
        self.stop_event.set()

    def thread(
        self,
        stage: str,
        target: Callable[[], None],
        *,
        done: threading.Event | None = None,
        name: str | None = None,
    ) -> threading.Thread:
        """A daemon thread (``name``, default ``stage``) running ``target`` whose exception ends the run;
        ``done`` is set when it returns either way (downstream stages drain their queue, then end)."""

        def body() -> None:
            try:
                target()
            except BaseException as err:  # noqa: BLE001 - every stage error ends the run, with its cause
                self.fail(stage, err)
            finally:
                if done is not None:
                    done.set()

        return threading.Thread(target=body, name=name or stage, daemon=True)

    def put(self, q: queue.Queue[T], item: T) -> bool:
        """Put with backpressure; False when a stop was requested while waiting."""
        while True:
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if self.stop_event.is_set():
                    return False

    @staticmethod
    def get(q: queue.Queue[T], upstream_done: threading.Event | AllDone) -> T | None:
        """The next item, or None once the stage feeding ``q`` has finished and ``q`` is empty."""
        while True:
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                if upstream_done.is_set() and q.empty():
                    return None


def join_all(threads: list[threading.Thread], *, timeout_s: float) -> list[threading.Thread]:
    """Join the threads against one deadline; the ones still alive after it."""
    deadline = time.monotonic() + timeout_s
    for t in threads:
        if t.ident is not None:
            t.join(max(deadline - time.monotonic(), 0.0))
    return [t for t in threads if t.is_alive()]

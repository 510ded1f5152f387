"""Crash points for the fault tests: ``SAFECITY_FAILPOINTS="sink.before_commit=3"`` makes the process
kill itself (SIGKILL, no cleanup, as a power cut would) the 3rd time it reaches that point.

Unset, a failpoint is one dictionary lookup. Points: ``sink.before_commit``, ``sink.after_commit``
(before the acks go out; both count only batches that carry events), ``edge.after_commit`` (outbox
commit, before the sender sees it) and ``edge.after_send`` (an event handed to ZeroMQ, before its ack).
"""

from __future__ import annotations

import os
import signal
import threading


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, count = item.partition("=")
        points[name] = int(count or 1)
    return points


_armed = _parse(os.environ.get("SAFECITY_FAILPOINTS", ""))
_lock = threading.Lock()


def failpoint(name: str) -> None:
    if not _armed or name not in _armed:
        return
    with _lock:
        _armed[name] -= 1
        if _armed[name] <= 0:
            os.write(2, f"failpoint {name}: SIGKILL\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)

"""Crash points for the fault tests: ``SAFECITY_FAILPOINTS="sink.before_commit=3"`` makes the process
kill itself (SIGKILL, no cleanup, as a power cut would) the 3rd time it reaches that point;
``"detect.batch=2:raise"`` raises a RuntimeError there instead (a stage that dies, say of CUDA running
out of memory).

Unset, a failpoint is one dictionary lookup. Points: ``sink.before_commit``, ``sink.after_commit``
(before the acks go out; both count only batches that carry events), ``edge.after_commit`` (outbox
commit, before the sender sees it), ``edge.after_send`` (an event handed to ZeroMQ, before its ack)
and ``detect.batch`` (a batch about to go through the model).
"""

from __future__ import annotations

import os
import signal
import threading


class FailpointError(RuntimeError):
    """Raised by a failpoint armed with ``:raise``."""


def _parse(spec: str) -> dict[str, tuple[int, str]]:
    points: dict[str, tuple[int, str]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rest = item.partition("=")
        count, _, action = rest.partition(":")
        points[name] = (int(count or 1), action or "kill")
    return points


_armed = _parse(os.environ.get("SAFECITY_FAILPOINTS", ""))
_lock = threading.Lock()


def failpoint(name: str) -> None:
    if not _armed or name not in _armed:
        return
    with _lock:
        count, action = _armed[name]
        _armed[name] = (count - 1, action)
        if count - 1 > 0:
            return
        if action == "raise":
            del _armed[name]
            raise FailpointError(f"failpoint {name}")
        os.write(2, f"failpoint {name}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)

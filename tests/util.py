"""Small helpers shared by the tests and the fault harness (no pytest or torch: the harness runs alone)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    cond: Callable[[], object],
    timeout_s: float = 15.0,
    *,
    interval_s: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> bool:
    """Poll ``cond`` until it is true or ``timeout_s`` has passed (then once more); an exception in
    ``ignore`` (say, a database not created yet) counts as false."""

    def holds() -> bool:
        try:
            return bool(cond())
        except ignore:
            return False

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if holds():
            return True
        time.sleep(interval_s)
    return holds()

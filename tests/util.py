"""Small helpers shared by the tests and the fault harness (no pytest or torch: the harness runs alone)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import yaml


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


def write_config(path: Path, **over: object) -> Path:
    """A `safecity run` config file with these top-level keys."""
    path.write_text(yaml.safe_dump(over))
    return path


def scripted(path: Path, rows: list[dict], names: list[str], period: float) -> Path:
    """A scripted-detections file (see pipeline/detect/scripted.py): its header, then ``rows``."""
    path.write_text(
        "\n".join(json.dumps(r) for r in [{"names": names, "period": period, "model": "script"}, *rows])
    )
    return path

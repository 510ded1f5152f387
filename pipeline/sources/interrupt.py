"""Interrupting a camera thread that is blocked inside FFmpeg (an RTSP server that accepts the
connection and never answers, a read that waits for data).

FFmpeg polls an interrupt callback while it waits (about every 100 ms in its network code). PyAV
installs one when a container is opened with a timeout: it returns "interrupt" once
``time.monotonic()`` has passed the operation's start by the timeout. It calls ``monotonic`` through
its module's ``time`` global, on the thread that is blocked. ``install()`` puts a clock there that
is the real one for every thread except one whose stop event is set, for which each reading is a
day later than the last: FFmpeg sees its timeout expired and returns at once. So a stopping camera
leaves FFmpeg within about 100 ms instead of its open or read timeout, and the process never exits
with a thread still inside FFmpeg (which crashed it).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

_DAY_S = 86_400.0


class _StoppableClock:
    """Stands in for the ``time`` module in PyAV's container module."""

    def __init__(self) -> None:
        self.stops: dict[int, threading.Event] = {}  # thread ident -> its stop event
        self._skew: dict[int, float] = {}

    def monotonic(self) -> float:
        ident = threading.get_ident()
        stop = self.stops.get(ident)
        if stop is None or not stop.is_set():
            return time.monotonic()
        skew = self._skew[ident] = self._skew.get(ident, 0.0) + _DAY_S
        return time.monotonic() + skew

    def forget(self, ident: int) -> None:
        self.stops.pop(ident, None)
        self._skew.pop(ident, None)

    def __getattr__(self, name: str) -> Any:  # anything else PyAV may read from ``time``
        return getattr(time, name)


_clock = _StoppableClock()
_installed: bool | None = None
_lock = threading.Lock()


def install() -> bool:
    """Put the clock into PyAV (once); False, with a warning, if this PyAV has no such hook."""
    global _installed
    with _lock:
        if _installed is None:
            try:
                import av.container.core as core
            except ImportError:
                _installed = False
                return False
            if getattr(core, "time", None) is time:
                core.time = _clock  # type: ignore[attr-defined]
                _installed = True
            else:
                _installed = isinstance(getattr(core, "time", None), _StoppableClock)
                if not _installed:
                    log.warning(
                        "this PyAV has no interrupt hook: a camera blocked in FFmpeg stops only after "
                        "its open or read timeout"
                    )
        return _installed


class interruptible:
    """``with interruptible(stop_event):`` FFmpeg calls on this thread return soon after ``stop_event``
    is set (they raise an FFmpeg error, which the caller sees as the stop it asked for)."""

    def __init__(self, stop_event: threading.Event) -> None:
        self.stop_event = stop_event

    def __enter__(self) -> interruptible:
        install()
        _clock.stops[threading.get_ident()] = self.stop_event
        return self

    def __exit__(self, *exc: object) -> None:
        _clock.forget(threading.get_ident())

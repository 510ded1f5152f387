"""Whether each camera keeps up: decoded in real time, and losing none of its sampled frames.

A server given more cameras than it can handle does not fail, it falls behind: sampled frames are
dropped at the muxer (inference cannot take them all), or decoding itself runs slower than the video
(a live camera's data backs up, a recording plays slow). This says so per camera (a gauge, the status
line, a log line when it changes) instead of leaving it to be noticed later. A camera that sends
fewer frames than configured, or none for a while, is not behind: only what the server fails to do
with what it was given counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

NOT_RUNNING = "not running"


@dataclass
class CameraLoad:
    """What one camera did up to now (running totals), and whether it can be judged."""

    media_s: float  # its media time: how much video has been decoded
    analysed: int
    dropped: int
    steady: bool  # up, and paced (live, or a recording in real time): real time is expected of it


@dataclass
class _History:
    samples: deque[tuple[float, float, int, int]] = field(default_factory=deque)
    behind: bool = False


class KeepUpWatch:
    """``update(now, loads)`` -> {camera: (behind now, why)} for the cameras whose verdict changed.

    Behind, over the last ``window_s`` of steady running: at least ``min_drops`` sampled frames
    dropped and more than ``max_drop_ratio`` of them, or less than ``min_ratio`` seconds of video
    decoded per second. A camera that stops running is no longer behind (why: ``NOT_RUNNING``)."""

    def __init__(
        self,
        *,
        window_s: float = 5.0,
        min_ratio: float = 0.8,
        max_drop_ratio: float = 0.01,
        min_drops: int = 3,
    ) -> None:
        self.window_s = window_s
        self.min_ratio = min_ratio
        self.max_drop_ratio = max_drop_ratio
        self.min_drops = min_drops
        self._cams: dict[str, _History] = {}

    def reset(self, camera_id: str) -> None:
        """A camera started anew (restarted live): its history goes (call from the updating thread)."""
        self._cams.pop(camera_id, None)

    def behind(self) -> list[str]:
        return [cid for cid, h in self._cams.items() if h.behind]

    def update(self, now: float, loads: dict[str, CameraLoad]) -> dict[str, tuple[bool, str]]:
        changed: dict[str, tuple[bool, str]] = {}
        for cid, load in loads.items():
            h = self._cams.setdefault(cid, _History())
            if not load.steady:
                h.samples.clear()
                if h.behind:
                    h.behind = False
                    changed[cid] = (False, NOT_RUNNING)
                continue
            h.samples.append((now, load.media_s, load.analysed, load.dropped))
            while len(h.samples) > 2 and now - h.samples[1][0] >= self.window_s:
                h.samples.popleft()
            t0, media0, analysed0, dropped0 = h.samples[0]
            span = now - t0
            if span < self.window_s:
                continue
            dropped = load.dropped - dropped0
            sampled = load.analysed - analysed0 + dropped
            speed = (load.media_s - media0) / span
            drops = dropped >= self.min_drops and dropped > self.max_drop_ratio * sampled
            behind = drops or speed < self.min_ratio
            if behind != h.behind:
                h.behind = behind
                changed[cid] = (
                    behind,
                    f"{dropped} of {sampled} sampled frames dropped, video decoded at {speed:.2f}x real time "
                    f"over {span:.0f} s",
                )
        for cid in set(self._cams) - set(loads):
            del self._cams[cid]
        return changed

"""Whether each camera keeps up: analysed at (nearly) its rate and losing no sampled frames.

A server given more cameras than it can analyse does not fail, it falls behind: frames are dropped
at the muxer and cameras are analysed below their configured rate. This says so per camera (a
gauge, the status line, a log line when it changes) instead of leaving it to be noticed later.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class CameraLoad:
    """What one camera did up to now (running totals), and whether it can be judged."""

    target_fps: float
    analysed: int
    dropped: int
    steady: bool  # up and paced (live or realtime): a rate is expected of it


@dataclass
class _History:
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)
    behind: bool = False


class KeepUpWatch:
    """``update(now, loads)`` -> {camera: (behind now, why)} for the cameras whose verdict changed.

    Behind: over the last ``window_s`` of steady running, analysed below ``min_ratio`` of its rate,
    or more than ``max_drop_ratio`` of its sampled frames dropped."""

    def __init__(
        self, *, window_s: float = 5.0, min_ratio: float = 0.8, max_drop_ratio: float = 0.01
    ) -> None:
        self.window_s = window_s
        self.min_ratio = min_ratio
        self.max_drop_ratio = max_drop_ratio
        self._cams: dict[str, _History] = {}

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
                    changed[cid] = (False, "not running")
                continue
            h.samples.append((now, load.analysed, load.dropped))
            while len(h.samples) > 2 and now - h.samples[1][0] >= self.window_s:
                h.samples.popleft()
            t0, analysed0, dropped0 = h.samples[0]
            span = now - t0
            if span < self.window_s:
                continue
            analysed, dropped = load.analysed - analysed0, load.dropped - dropped0
            rate = analysed / span
            drop_ratio = dropped / max(analysed + dropped, 1)
            behind = rate < self.min_ratio * load.target_fps or drop_ratio > self.max_drop_ratio
            if behind != h.behind:
                h.behind = behind
                why = (
                    f"analysed {rate:.1f}/s of {load.target_fps:g}/s, {drop_ratio:.0%} of sampled frames "
                    f"dropped over {span:.0f} s"
                )
                changed[cid] = (behind, why)
        for cid in set(self._cams) - set(loads):
            del self._cams[cid]
        return changed

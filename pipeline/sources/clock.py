"""A camera's media time, monotonic by construction.

Timestamps from cameras and files go backwards (an encoder restart, a resolution change in a TS
stream, the 33-bit MPEG-TS wrap after 26.5 h), jump ahead (a camera's clock reset) and start again
from zero on every reconnect or loop. The sampler, the tracker and the rules need a time that only
moves forward at the pace of the video, so each decoded frame's timestamp goes through one
``MediaClock`` per camera: steps that look like video are kept, anything else is a discontinuity
that re-anchors the clock one frame period after the last frame, and is counted. A frame that
repeats the previous one's timestamp exactly is placed a quarter period after it, not counted.
"""

from __future__ import annotations

MAX_JUMP_SECONDS = 5.0  # a forward step this much longer than the wall-clock gap is a discontinuity


class MediaClock:
    """``clock(pts_seconds, period_s=..., wall_s=...)`` -> the frame's media time in seconds.

    ``pts_seconds`` is the frame's own timestamp (None when the stream has none: one period each);
    ``wall_s`` is ``time.monotonic()`` when it was decoded: after a live camera's reconnect the clock
    moves on by the time it was away, and a forward step is accepted when it is no more than
    ``MAX_JUMP_SECONDS`` longer than the wall-clock time since the previous frame.
    """

    def __init__(self, *, max_jump_seconds: float = MAX_JUMP_SECONDS) -> None:
        self.max_jump_seconds = max_jump_seconds
        self.t: float | None = None  # the last media time given out
        self.discontinuities = 0
        self._offset = 0.0
        self._last_pts: float | None = None
        self._last_wall = 0.0
        self._keep_time_away = True

    def restart(self, *, keep_time_away: bool) -> None:
        """The source was opened again (a reconnect, a loop): its next timestamp anchors anew, one
        frame after the last, plus the wall-clock time it was away when ``keep_time_away`` (a live
        camera; a recording goes on where it was, however long the reopening took)."""
        self._last_pts = None
        self._keep_time_away = keep_time_away

    def __call__(self, pts_seconds: float | None, *, period_s: float, wall_s: float) -> float:
        pts = pts_seconds
        if pts is None:
            pts = 0.0 if self._last_pts is None else self._last_pts + period_s
        if self.t is None:  # the very first frame is media time 0
            self._offset = -pts
        elif self._last_pts is None:  # a new play: on after the last frame (and the time away)
            away = wall_s - self._last_wall if self._keep_time_away else 0.0
            self._offset = self.t + max(period_s, away) - pts
        else:
            step = pts - self._last_pts
            if abs(step) < 1e-9:  # two frames with one timestamp (a camera that repeats its parameter
                # sets before each keyframe with the keyframe's time): not a jump; a quarter period on
                self._last_wall, self.t = wall_s, self.t + period_s / 4
                return self.t
            if step < 0 or step > max(wall_s - self._last_wall, 0.0) + self.max_jump_seconds:
                self.discontinuities += 1
                self._offset = self.t + period_s - pts
        t = pts + self._offset
        self._last_pts, self._last_wall, self.t = pts, wall_s, t
        return t

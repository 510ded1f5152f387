"""Media time is monotonic by construction, and the sampler never goes blind on it."""

from __future__ import annotations

import pytest

from pipeline.sources.clock import MediaClock
from pipeline.sources.cpu import Sampler

PERIOD = 0.04  # 25 fps


def play(
    clock: MediaClock, pts: list[float | None], *, wall0: float = 100.0, paced: bool = True
) -> list[float]:
    """Media times for a run of frame timestamps, decoded at the video's pace (or all at once)."""
    return [
        clock(p, period_s=PERIOD, wall_s=wall0 + (i * PERIOD if paced else 0.0)) for i, p in enumerate(pts)
    ]


def frames(start: float, n: int) -> list[float | None]:
    return [start + i * PERIOD for i in range(n)]


def steps(ts: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in zip(ts, ts[1:], strict=False)]


def test_a_clean_stream_keeps_its_own_timing_from_zero() -> None:
    c = MediaClock()
    ts = play(c, frames(12.0, 50))
    assert ts[0] == 0.0 and ts[-1] == pytest.approx(49 * PERIOD)
    assert c.discontinuities == 0


@pytest.mark.parametrize(
    "second_part",
    [
        pytest.param(frames(0.0, 50), id="encoder restart: back to zero"),
        pytest.param(frames(95_443.0, 50), id="jump ahead by a day"),
        pytest.param(frames(1.0, 50), id="back by a second"),
    ],
)
def test_a_jump_either_way_re_anchors_one_frame_later_and_is_counted(second_part: list[float | None]) -> None:
    c = MediaClock()
    ts = play(c, frames(100.0, 50) + second_part)
    assert all(s == pytest.approx(PERIOD) for s in steps(ts))  # monotonic, at the video's pace
    assert c.discontinuities == 1


def test_the_33_bit_mpeg_ts_wrap_is_one_discontinuity() -> None:
    wrap = 2**33 / 90_000  # 95443.7 s
    c = MediaClock()
    ts = play(c, frames(wrap - 1.0, 25) + frames(0.0, 25))
    assert all(s == pytest.approx(PERIOD) for s in steps(ts))
    assert c.discontinuities == 1


def test_a_gap_in_a_live_stream_is_time_that_passed() -> None:
    c = MediaClock()
    ts = play(c, frames(0.0, 10))
    t = c(10.0, period_s=PERIOD, wall_s=100.0 + 10.0)  # packets lost for ~10 s, the wall clock agrees
    assert t == pytest.approx(10.0) and c.discontinuities == 0
    assert ts[-1] < t


def test_a_reconnect_goes_on_by_the_time_away_whatever_the_new_timestamps() -> None:
    c = MediaClock()
    ts = play(c, frames(50.0, 250))  # 10 s of stream
    c.restart(keep_time_away=True)  # the server went away; 7 s later it is back, timestamps from 0
    t = c(0.0, period_s=PERIOD, wall_s=100.0 + 249 * PERIOD + 7.0)
    assert t == pytest.approx(ts[-1] + 7.0)
    assert c(PERIOD, period_s=PERIOD, wall_s=107.0 + 250 * PERIOD) == pytest.approx(t + PERIOD)
    assert c.discontinuities == 0  # a reconnect is not a jump


def test_a_looped_recording_goes_on_one_period_later_however_long_reopening_took() -> None:
    c = MediaClock()
    first = play(c, frames(0.0, 50), paced=False)
    c.restart(keep_time_away=False)
    second = play(c, frames(0.0, 50), wall0=100.0 + 3.0, paced=False)  # 3 s stalled downstream
    assert second[0] == pytest.approx(first[-1] + PERIOD)
    assert c.discontinuities == 0


def test_frames_without_timestamps_advance_one_period_each() -> None:
    c = MediaClock()
    assert steps(play(c, [None] * 5)) == [PERIOD] * 4


def test_the_sampler_keeps_its_rate_through_any_jump() -> None:
    """A clock that went back would blind a sampler waiting for a later time; with MediaClock the
    sampler sees a steady time and samples at its rate across both jumps."""
    c, s = MediaClock(), Sampler(5.0)
    pts = frames(300.0, 100) + frames(0.0, 100) + frames(95_000.0, 100)  # 12 s of video
    taken = [t for t in play(c, pts) if s.take(t)]
    assert len(taken) == 60
    assert max(steps(taken)) == pytest.approx(0.2, abs=PERIOD)


def test_the_sampler_itself_recovers_when_time_goes_back() -> None:
    s = Sampler(5.0)
    assert s.take(100.0)
    assert not s.take(100.1)
    assert s.take(3.0)  # far behind where it was waiting: take it and wait from here
    assert not s.take(3.1) and s.take(3.2)


def test_a_repeated_timestamp_is_no_jump_and_shifts_nothing() -> None:
    """Some RTSP servers make FFmpeg give the frame before each keyframe the keyframe's timestamp:
    the pair stays in order, nothing is counted, and the frames after it keep their own timing."""
    pts = frames(0.0, 60)
    for k in (26, 52):
        pts[k - 1] = pts[k]
    clock = MediaClock()
    ts = play(clock, pts)
    assert clock.discontinuities == 0
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert ts[-1] == pytest.approx(59 * PERIOD) and ts[30] == pytest.approx(30 * PERIOD)

"""Whether a camera keeps up: for each threshold, a case judged behind and one that must not be."""

from __future__ import annotations

from pipeline.overload import NOT_RUNNING, CameraLoad, KeepUpWatch


def feed(
    watch: KeepUpWatch,
    seconds: int,
    *,
    speed: float = 1.0,
    analysed_per_s: float = 5.0,
    dropped_per_s: float = 0.0,
    steady: bool = True,
    start: int = 0,
) -> dict:
    """Feed one camera's running totals, a sample a second; the verdicts that changed."""
    changed: dict = {}
    for s in range(start, start + seconds + 1):
        load = CameraLoad(s * speed, int(s * analysed_per_s), int(s * dropped_per_s), steady)
        changed.update(watch.update(float(s), {"cam": load}))
    return changed


def test_a_camera_decoded_in_real_time_with_nothing_dropped_is_not_behind() -> None:
    w = KeepUpWatch(window_s=5)
    assert feed(w, 30) == {} and w.behind() == []


def test_a_camera_that_sends_fewer_frames_than_asked_is_not_behind() -> None:
    """Analysed below its configured rate because the camera sends less: not the server's fault."""
    assert feed(KeepUpWatch(window_s=5), 30, analysed_per_s=1.0) == {}


def test_dropped_frames_make_a_camera_behind_and_say_how_many() -> None:
    w = KeepUpWatch(window_s=5)
    changed = feed(w, 30, analysed_per_s=1.0, dropped_per_s=4.0)
    assert changed["cam"][0] is True and "20 of 25 sampled frames dropped" in changed["cam"][1]
    assert w.behind() == ["cam"]


def test_a_frame_or_two_dropped_is_not_yet_behind() -> None:
    assert feed(KeepUpWatch(window_s=5, min_drops=3), 30, dropped_per_s=0.4) == {}  # 2 in a window
    w = KeepUpWatch(window_s=5, min_drops=3, max_drop_ratio=0.5)
    assert feed(w, 30, dropped_per_s=1.0) == {}  # 5 of 30 is under half


def test_video_decoded_slower_than_real_time_is_behind() -> None:
    w = KeepUpWatch(window_s=5, min_ratio=0.8)
    assert feed(w, 30, speed=0.6)["cam"] == (
        True,
        "0 of 25 sampled frames dropped, video decoded at 0.60x real time over 5 s",
    )
    assert feed(KeepUpWatch(window_s=5, min_ratio=0.8), 30, speed=0.85) == {}


def test_no_verdict_before_a_full_window_nor_while_the_camera_is_not_running() -> None:
    assert feed(KeepUpWatch(window_s=5), 4, speed=0.1) == {}  # too early to say
    assert feed(KeepUpWatch(window_s=5), 30, speed=0.1, steady=False) == {}


def test_a_camera_that_stops_running_is_cleared_as_not_running_and_one_that_catches_up_as_such() -> None:
    w = KeepUpWatch(window_s=5)
    feed(w, 10, dropped_per_s=5)
    assert w.behind() == ["cam"]
    assert feed(w, 1, steady=False, start=11)["cam"] == (False, NOT_RUNNING)
    feed(w, 10, dropped_per_s=5, start=13)
    assert w.behind() == ["cam"]
    changed: dict = {}
    for s in range(24, 40):  # no more drops (the running total stays where it was): it caught up
        changed.update(w.update(float(s), {"cam": CameraLoad(float(s), 5 * s, 5 * 23, True)}))
    assert changed["cam"][0] is False and changed["cam"][1] != NOT_RUNNING

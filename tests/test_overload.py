"""Whether a camera keeps up: a case that is judged behind and one that must not be, per threshold."""

from __future__ import annotations

from pipeline.overload import CameraLoad, KeepUpWatch


def feed(
    watch: KeepUpWatch,
    seconds: int,
    *,
    fps: float,
    analysed_per_s: float,
    dropped_per_s: float = 0.0,
    steady: bool = True,
) -> dict:
    changed: dict = {}
    for s in range(seconds + 1):
        load = CameraLoad(fps, int(s * analysed_per_s), int(s * dropped_per_s), steady)
        changed.update(watch.update(float(s), {"cam": load}))
    return changed


def test_a_camera_at_its_rate_is_not_behind() -> None:
    w = KeepUpWatch(window_s=10)
    assert feed(w, 30, fps=5, analysed_per_s=5) == {} and w.behind() == []


def test_a_camera_analysed_well_below_its_rate_is_behind_and_says_why() -> None:
    w = KeepUpWatch(window_s=10)
    changed = feed(w, 30, fps=5, analysed_per_s=3)
    assert changed["cam"][0] is True and "analysed 3.0/s of 5/s" in changed["cam"][1]
    assert w.behind() == ["cam"]


def test_just_above_the_ratio_is_not_behind() -> None:
    assert feed(KeepUpWatch(window_s=10, min_ratio=0.8), 30, fps=5, analysed_per_s=4.2) == {}


def test_dropped_frames_make_a_camera_behind_even_at_its_rate() -> None:
    w = KeepUpWatch(window_s=10, max_drop_ratio=0.01)
    assert feed(w, 30, fps=5, analysed_per_s=5, dropped_per_s=0.2)["cam"][0] is True
    w2 = KeepUpWatch(window_s=10, max_drop_ratio=0.05)
    assert feed(w2, 30, fps=5, analysed_per_s=5, dropped_per_s=0.2) == {}  # 4 % is under 5 %


def test_no_verdict_before_a_full_window_nor_while_the_camera_is_not_running() -> None:
    w = KeepUpWatch(window_s=10)
    assert feed(w, 9, fps=5, analysed_per_s=0) == {}  # too early to say
    assert feed(KeepUpWatch(window_s=10), 30, fps=5, analysed_per_s=0, steady=False) == {}


def test_a_camera_that_catches_up_is_cleared() -> None:
    w = KeepUpWatch(window_s=5)
    for s in range(11):
        w.update(float(s), {"cam": CameraLoad(5, s * 2, 0, True)})
    assert w.behind() == ["cam"]
    changed = {}
    for s in range(11, 30):
        changed.update(w.update(float(s), {"cam": CameraLoad(5, 20 + (s - 10) * 5, 0, True)}))
    assert changed["cam"][0] is False and w.behind() == []

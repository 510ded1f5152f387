"""Motion without pixels and timers that survive what cameras see: the same scene at any resolution
gives the same incidents; standing is judged in the object's own size; a dwell belongs to a place,
not a track; the cooldown never hides a blockage that goes on; false-alarm filters per camera and
zone; zones drawn on one frame size hold at another."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.analytics.camera import CameraAnalytics
from pipeline.analytics.lifecycle import Active, Lifecycle
from pipeline.analytics.memory import TrackInfo, TrackMemory
from pipeline.analytics.rules.base import Presence, Spots
from pipeline.analytics.zones import Zone, camera_zones
from pipeline.config import ObjectFilter, RuleConfig, ZoneConfig, parse_config
from pipeline.detect.roles import common_label_roles
from pipeline.errors import ConfigError
from pipeline.types import Incident, Track

FPS = 10


def box(cx: float, bottom: float, w: float, h: float) -> np.ndarray:
    return np.array([cx - w / 2, bottom - h, cx + w / 2, bottom], np.float32)


def camera(scale: float, rules: dict[str, Any] | None = None, **cam: Any) -> CameraAnalytics:
    """A camera of a 640 x 360 scene seen at ``scale`` times that size, one no-standing lane."""
    lane = [
        [40 * scale, 200 * scale],
        [600 * scale, 200 * scale],
        [600 * scale, 300 * scale],
        [40 * scale, 300 * scale],
    ]
    cfg = parse_config(
        {
            "cameras": [
                {"id": "cam", "source": "x.mp4", "zones": [{"name": "lane", "polygon": lane}], **cam}
            ],
            "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
            "rules": rules or {"encroachment": {"dwell_seconds": 5}},
        }
    )
    return CameraAnalytics(cfg, 0, ())


def scene(t: float) -> list[tuple[int, str, float, float, float, float, float]]:
    """(id, label, centre x, bottom y, width, height, confidence) in 640 x 360 pixels: a man standing
    from the start with a little sway (a passer-by hides his legs at 3 s), and a woman strolling along
    the lane at 0.15 of her height a second."""
    out = []
    sway = 1.5 * np.sin(2 * np.pi * 0.7 * t)
    if not 3.0 <= t < 3.4:
        out.append((1, "person", 300 + sway, 260, 24, 64, 0.8))
    else:  # legs hidden: the box is the upper body
        out.append((1, "person", 300 + sway, 228, 24, 32, 0.6))
    if 0 <= t < 14:
        out.append((2, "person", 60 + 0.15 * 60 * t, 240, 22, 60, 0.8))
    if 2 <= t < 4:
        out.append((3, "person", 200 + 120 * (t - 2), 275, 26, 70, 0.8))  # the passer-by, walking
    return out


def starts(
    ca: CameraAnalytics, scale: float, fps: float = FPS, seconds: float = 14.0
) -> list[tuple[float, str, tuple[int, ...]]]:
    out: list[Incident] = []
    for k in range(int(seconds * fps)):
        t = round(k / fps, 3)
        tracks = [
            Track(i, box(cx * scale, by * scale, w * scale, h * scale), c, 0, label)
            for i, label, cx, by, w, h, c in scene(t)
        ]
        out += ca.analyse_tracks(
            tracks, t=t, wall_time=1.7e9 + t, frame_w=int(640 * scale), frame_h=int(360 * scale)
        )
    return [
        (round(i.emitted_at, 1), i.type, tuple(o.track_id for o in i.objects))
        for i in out
        if i.status == "start"
    ]


def test_the_same_scene_at_any_resolution_and_rate_gives_the_same_incidents() -> None:
    """576p-ish, 720p and 1080p sizes of one scene, at 10 and 5 analysed fps: the man standing from
    the start is due at 5 s (his legs hidden at 3 s for 0.4 s do not restart him), confirmed 0.4 s
    later; the stroller never."""
    got = {scale: starts(camera(scale), scale) for scale in (1.0, 1.25, 2.0, 3.0)}
    first = got[1.0]
    assert [k for _, k, _ in first] == ["encroachment"] and first[0][2] == (1,), first
    assert first[0][0] == pytest.approx(5.4, abs=0.1), first
    for scale, s in got.items():
        assert [(k, o) for _, k, o in s] == [(k, o) for _, k, o in first], scale
        assert abs(s[0][0] - first[0][0]) <= 0.1 + 1e-9, (scale, s)
    at5 = starts(camera(1.0), 1.0, fps=5)
    assert [(k, o) for _, k, o in at5] == [(k, o) for _, k, o in first]
    assert abs(at5[0][0] - first[0][0]) <= 0.2 + 1e-9


def test_a_pixel_speed_would_have_called_the_stroller_standing() -> None:
    """The stroller goes 9 px/s at 1x and 27 px/s at 3x: under the old 40 px/s she stood at every
    size; in her own heights (0.15/s) she walks. With a wider standing radius she stands (the case
    that must fire)."""
    loose = {"encroachment": {"dwell_seconds": 5, "stationary_sizes": 1.5, "stationary_seconds": 2}}
    got = starts(camera(1.0, loose), 1.0)
    assert any(2 in objs for _, _, objs in got), got


def info(tid: int, x: float, y: float, h: float, t: float) -> TrackInfo:
    i = TrackInfo(tid, "person", frozenset({"person"}), box(x, y, h / 3, h), 0.8, t, t)
    i.record(t, x, y, h, 0.8)
    return i


def test_a_spot_keeps_its_dwell_through_occlusion_and_id_switches_but_not_for_a_walker() -> None:
    spots = Spots(radius_sizes=0.3, still_seconds=2.0, grace_s=3.0)
    m = TrackMemory(common_label_roles())
    since = None
    for k in range(80):  # 8 s: the stander is track 1, hidden 3-4.5 s, then track 9
        t = k / 10
        tid = 1 if t < 3 else 9
        tracks = [] if 3 <= t < 4.5 else [Track(tid, box(320, 240, 20, 60), 0.8, 0, "person")]
        infos = m.update(tracks, t)
        live = spots.update([(i, "person") for i in infos], t)
        if live and live[0].here:
            since = live[0].since
    assert since == 0.0  # the place has been held since the first frame
    walker = Spots(radius_sizes=0.3, still_seconds=2.0, grace_s=3.0)
    m = TrackMemory(common_label_roles())
    longest = 0.0
    for k in range(200):  # 0.12 heights a second: a very slow walk
        t = k / 10
        infos = m.update([Track(5, box(100 + 0.12 * 60 * t, 240, 20, 60), 0.8, 0, "person")], t)
        for s in walker.update([(i, "person") for i in infos], t):
            if s.here:
                longest = max(longest, t - s.since)
    assert 0 < longest < 5.5  # never the 30 s of a default dwell, nor the 5 s of a short one's
    assert longest <= 2 * 0.3 / 0.12 + 0.5  # bounded by the radius over the speed, both ways


def test_presence_survives_a_gap_shorter_than_the_grace_and_not_a_longer_one() -> None:
    p = Presence(grace_s=2.0)
    assert p.hold("road", 0.0) == 0.0
    assert p.hold("road", 1.9) == 0.0  # hidden for 1.9 s: the same presence
    assert p.hold("road", 4.0) == 4.0  # gone for 2.1 s: a new one


def run_lifecycle(lc: Lifecycle, script: list[tuple[float, float | None]]) -> list[tuple[float, str]]:
    """(t, started_at or None when inactive) -> the steps."""
    out = []
    i = TrackInfo(1, "person", frozenset({"person"}), box(0, 0, 1, 1), 0.8, 0, 0)
    for t, started in script:
        active = {"lane": Active([i], started_at=started)} if started is not None else {}
        out += [(t, s.status) for s in lc.update(active, t)]
    return out


def test_the_cooldown_never_hides_a_blockage_that_went_on() -> None:
    cfg = RuleConfig(confirm_seconds=0.2, clear_seconds=1.0, cooldown_seconds=30.0)
    frames = [round(k * 0.2, 1) for k in range(60)]
    # active 0-4 s; nothing 4-6 s (ended at 5 s); then a condition that began at 2 s (before the end)
    went_on = [(t, 0.0 if t < 4 else (None if t < 6 else 2.0)) for t in frames]
    steps = run_lifecycle(Lifecycle(cfg, type="encroachment", camera_id="c"), went_on)
    assert [s for _, s in steps].count("start") == 2 and steps[-1][0] < 7.0, steps
    # the same, but the new condition began after the end: a new occurrence waits for the cooldown
    fresh = [(t, 0.0 if t < 4 else (None if t < 6 else 6.0)) for t in frames]
    steps = run_lifecycle(Lifecycle(cfg, type="encroachment", camera_id="c"), fresh)
    assert [s for _, s in steps].count("start") == 1, steps


def test_confirming_counts_through_a_missed_frame_but_not_a_longer_break() -> None:
    cfg = RuleConfig(confirm_seconds=0.6, clear_seconds=1.0, cooldown_seconds=0.0)
    blink = [(round(k * 0.2, 1), None if k % 2 else 0.0) for k in range(10)]  # every other frame
    assert run_lifecycle(Lifecycle(cfg, type="x", camera_id="c"), blink)[0] == (0.8, "start")
    gaps = [(round(k * 0.2, 1), 0.0 if k % 5 == 0 else None) for k in range(30)]  # 0.8 s gaps
    assert run_lifecycle(Lifecycle(cfg, type="x", camera_id="c"), gaps) == []


def filtered(
    filters: dict[str, Any],
    tracks: list[Track],
    *,
    zone_filters: dict[str, Any] | None = None,
    ground: Any = None,
) -> set[int]:
    """Which tracks the encroachment rule sees standing in its zone (dwell 0.2 s) after 3 s."""
    zone: dict[str, Any] = {"name": "lane", "polygon": [[0, 0], [1000, 0], [1000, 1000], [0, 1000]]}
    if zone_filters:
        zone["filters"] = zone_filters
    cam: dict[str, Any] = {"id": "cam", "source": "x.mp4", "zones": [zone], "filters": filters}
    if ground:
        cam["ground_plane"] = ground
    cfg = parse_config(
        {
            "cameras": [cam],
            "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
            "rules": {
                "encroachment": {"dwell_seconds": 0.2, "stationary_seconds": 0.2, "confirm_seconds": 0}
            },
        }
    )
    ca = CameraAnalytics(cfg, 0, ())
    seen: set[int] = set()
    for k in range(30):
        t = k / 10
        for inc in ca.analyse_tracks(
            [Track(tr.track_id, tr.xyxy, tr.confidence if k % 6 else 0.95, 0, tr.label) for tr in tracks],
            t=t,
            wall_time=1.7e9 + t,
            frame_w=1000,
            frame_h=1000,
        ):
            seen |= {o.track_id for o in inc.objects}
    return seen


def test_object_filters_by_size_aspect_and_median_score_per_camera_and_zone() -> None:
    small = Track(1, box(200, 500, 10, 20), 0.8, 0, "person")  # 2 % of the frame's height
    big = Track(2, box(600, 500, 60, 180), 0.8, 0, "person")  # 18 %
    faint = Track(3, box(800, 500, 60, 180), 0.3, 0, "person")  # confident one frame in six
    flat = Track(4, box(400, 800, 200, 40), 0.8, 0, "car")  # 5:1
    everyone = [small, big, faint, flat]
    assert filtered({}, everyone) == {1, 2, 3, 4}
    assert filtered({"person": {"min_size": 0.05}}, everyone) == {2, 3, 4}
    assert filtered({"person": {"min_score": 0.5}}, everyone) == {1, 2, 4}  # the median, not one frame
    assert filtered({"car": {"max_aspect": 3.0}}, everyone) == {1, 2, 3}
    assert filtered({"vehicle": {"max_size": 0.03}}, everyone) == {1, 2, 3}  # a role names its classes
    # a zone's filters apply to the objects in that zone, on top of the camera's
    assert filtered({}, everyone, zone_filters={"person": {"max_size": 0.1}}) == {1, 4}
    # widths on the ground, in metres: 1 px is 1 cm here
    ground = {
        "image": [[0, 0], [1000, 0], [1000, 1000], [0, 1000]],
        "world": [[0, 0], [10, 0], [10, 10], [0, 10]],
    }
    assert filtered({"person": {"min_width_m": 0.3}}, everyone, ground=ground) == {2, 3, 4}


def test_a_filter_with_its_bounds_reversed_is_refused() -> None:
    with pytest.raises(ValueError, match="min_size .* must be below max_size"):
        ObjectFilter(min_size=0.5, max_size=0.2)
    with pytest.raises(ConfigError, match=r"cameras\.0\.filters\.person\.min_score"):
        parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4", "filters": {"person": {"min_score": 2}}}],
                "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
            }
        )


def test_zones_drawn_on_one_frame_size_hold_at_another() -> None:
    cfg = parse_config(
        {
            "cameras": [
                {
                    "id": "c",
                    "source": "x.mp4",
                    "zones_drawn_on": [768, 576],
                    "zones": [{"name": "bay", "polygon": [[600, 30], [768, 30], [768, 120], [600, 120]]}],
                }
            ],
            "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
        }
    )
    (zone,) = camera_zones(cfg.cameras[0])
    inside, outside = np.array([[700.0, 100.0]]), np.array([[580.0, 100.0]])
    for w, h in ((768, 576), (1440, 1080), (1280, 960)):
        sx, sy = w / 768, h / 576
        assert zone.contains(inside * [sx, sy], frame_w=w, frame_h=h).tolist() == [True]
        assert zone.contains(outside * [sx, sy], frame_w=w, frame_h=h).tolist() == [False]
    plain = Zone(ZoneConfig(name="bay", polygon=[(600, 30), (768, 30), (768, 120), (600, 120)]))
    assert plain.contains(inside * [1440 / 768, 1080 / 576], frame_w=1440, frame_h=1080).tolist() == [False]


def test_a_filter_key_that_is_no_role_nor_class_is_refused_and_merged_filters_are_checked() -> None:
    from pipeline.analytics.rules import check_loaded_roles

    def cfg(**kw: Any) -> Any:
        return parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4", **kw}],
                "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
            }
        )

    roles = {"scripted": {"person": ["person"], "vehicle": ["car", "truck"]}}
    check_loaded_roles(
        cfg(filters={"person": {"min_size": 0.1}, "truck": {"max_aspect": 4}}), roles, warn=False
    )
    with pytest.raises(
        ConfigError, match=r"cameras\[c\].filters: 'persn' is neither .* \(did you mean 'person'\?\)"
    ):
        check_loaded_roles(cfg(filters={"persn": {"min_size": 0.1}}), roles, warn=False)
    zone = {"name": "z", "polygon": [[0, 0], [9, 0], [9, 9]], "filters": {"bus": {"min_size": 0.1}}}
    with pytest.raises(ConfigError, match=r"cameras\[c\].zones\[z\].filters: 'bus'"):
        check_loaded_roles(cfg(zones=[zone]), roles, warn=False)
    with pytest.raises(
        ConfigError, match=r"camera c: filters.person over the top-level filters.person: min_size"
    ):
        parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4", "filters": {"person": {"min_size": 0.5}}}],
                "filters": {"person": {"max_size": 0.2}},
                "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
            }
        )

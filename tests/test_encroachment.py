import numpy as np
import pytest

from pipeline.analytics import EncroachmentRule, Zone
from pipeline.analytics.memory import TrackMemory
from pipeline.analytics.zones import bottom_centres
from pipeline.config import EncroachmentConfig, ZoneConfig
from pipeline.detect.roles import label_roles
from pipeline.types import Incident, Track

ZONE = Zone(ZoneConfig(name="footpath", polygon=[(0, 100), (200, 100), (200, 200), (0, 200)]))


class Bench:
    """The encroachment rule with the track memory it reads, as ``CameraAnalytics`` runs it."""

    def __init__(self, **kw: object) -> None:
        cfg = EncroachmentConfig(
            dwell_seconds=2.0,
            confirm_seconds=0.4,
            clear_seconds=1.0,
            update_seconds=3.0,
            cooldown_seconds=5.0,
            **kw,
        )  # type: ignore[arg-type]
        self.rule = EncroachmentRule(cfg, camera_id="cam", zones=[ZONE])
        self.memory = TrackMemory(label_roles([{"person": ["person"], "vehicle": ["car"]}]))

    def update(self, tracks: list[Track], t: float) -> list[Incident]:
        infos = self.memory.update(tracks, t)
        return self.rule.lifecycle.update(self.rule.evaluate(infos, t, 640, 480, {ZONE.name}), t)


def rule(**kw: object) -> Bench:
    return Bench(**kw)


def person(tid: int, x: float, y: float, label: str = "person") -> Track:
    return Track(tid, np.array([x - 10, y - 40, x + 10, y], np.float32), 0.8, 0, label)


def run(r: Bench, script: list[tuple[float, list[Track]]]):
    out = []
    for t, tracks in script:
        out += [(t, i.status) for i in r.update(tracks, t)]
    return out


FPS = 5


def frames(t0: float, t1: float) -> list[float]:
    return [round(t0 + k / FPS, 3) for k in range(int(round((t1 - t0) * FPS)))]


def test_zone_contains_vectorised_and_normalised() -> None:
    pts = np.array([[10, 150], [300, 150], [199, 199], [0, 50]])
    assert ZONE.contains(pts, frame_w=640, frame_h=480).tolist() == [True, False, True, False]
    norm = Zone(ZoneConfig(name="n", normalized=True, polygon=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)]))
    assert norm.contains(np.array([[5, 479], [5, 100]]), frame_w=640, frame_h=480).tolist() == [True, False]
    assert norm.contains(np.array([[5, 480]]), frame_w=640, frame_h=480).tolist() == [
        True
    ]  # box on frame edge
    assert bottom_centres(np.array([[0, 0, 10, 20]])).tolist() == [[5, 20]]


def test_start_update_end_and_cooldown() -> None:
    r = rule()
    script = [(t, [person(1, 50, 150)]) for t in frames(0, 8)]
    script += [(t, []) for t in frames(8, 10)]
    # dwells long enough at 12 s, but the zone is cooling down until 8.8 + 5 s, and it leaves at 13 s
    script += [(t, [person(2, 60, 150)]) for t in frames(10, 13)]
    script += [(t, []) for t in frames(13, 16)]
    script += [(t, [person(3, 60, 150)]) for t in frames(16, 20)]
    events = run(r, script)
    statuses = [s for _, s in events]
    assert statuses[0] == "start" and events[0][0] == pytest.approx(2.4, abs=1 / FPS)  # dwell + confirm
    assert statuses.count("start") == 2  # the third visit, after cooldown; not the second
    assert statuses[1:3] == ["update", "end"]  # an update every update_seconds while it lasts
    assert events[1][0] == pytest.approx(5.4, abs=1 / FPS)
    end_t = [t for t, s in events if s == "end"][0]
    assert end_t == pytest.approx(7.8 + 1.0, abs=1 / FPS)  # last seen + clear_seconds
    second_start = [t for t, s in events if s == "start"][1]
    assert second_start == pytest.approx(18.4, abs=1 / FPS)


def test_moving_objects_and_objects_outside_are_not_encroachment() -> None:
    r = rule()
    walking = [(t, [person(1, 10 + 60 * t, 150)]) for t in frames(0, 3)]  # 60 px/s through the zone
    outside = [(t, [person(2, 400, 150)]) for t in frames(3, 10)]
    other_label = [(t, [person(3, 50, 150, label="dog")]) for t in frames(10, 15)]
    assert run(r, walking + outside + other_label) == []


def test_track_id_switch_mid_incident_does_not_duplicate() -> None:
    r = rule()
    script = [(t, [person(1, 50, 150)]) for t in frames(0, 4)]
    script += [(t, [person(9, 51, 151)]) for t in frames(4, 8)]  # tracker lost the ID, same person
    events = run(r, script)
    assert [s for _, s in events].count("start") == 1
    assert "end" not in [s for _, s in events]


def test_confirmation_hysteresis() -> None:
    r = rule()
    r.rule.cfg.confirm_seconds = 4.0  # after the 2 s dwell, 4 s more of it without a break
    script = [(t, [person(1, 50, 150)]) for t in frames(0, 4)]
    script += [(t, [person(1, 50 + 100 * (t - 4), 150)]) for t in frames(4, 4.6)]  # steps off, moving
    script += [(t, [person(1, 110, 150)]) for t in frames(4.6, 12)]
    events = run(r, script)
    # at its new place from 4.6 s, its smoothed position (the median over 0.5 s) settles at 4.8 s: its
    # dwell is due 2 s later (6.8 s); being off for 2.8 s breaks the confirmation, 4 s from there
    assert events[0][1] == "start" and events[0][0] == pytest.approx(10.8, abs=1 / FPS), events


def test_state_for_gone_tracks_is_dropped() -> None:
    r = rule()
    for k in range(500):
        r.update([person(k, 50 + (k % 7) * 60, 150)], k * 0.2)
    assert len(r.rule.spots[ZONE.name].spots) <= 6  # the grace of 1 s: 5 frames

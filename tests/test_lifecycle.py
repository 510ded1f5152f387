"""The incident lifecycle every rule shares, and state that stays bounded over long runs."""

from __future__ import annotations

import numpy as np

from pipeline.analytics.camera import CameraAnalytics, in_schedule
from pipeline.analytics.lifecycle import Active, Lifecycle
from pipeline.analytics.memory import TrackInfo
from pipeline.config import RuleConfig, parse_config
from pipeline.types import Track


def info(tid: int) -> TrackInfo:
    return TrackInfo(tid, "person", frozenset({"person"}), np.zeros(4, np.float32), 0.7, 0.0, 0.0)


def run(lc: Lifecycle, script: list[tuple[float, dict[str, list[int]]]]) -> list[tuple[float, str, str]]:
    out = []
    for t, keys in script:
        steps = lc.update({k: Active([info(i) for i in ids]) for k, ids in keys.items()}, t)
        out += [(t, s.status, s.incident_id) for s in steps]
    return out


def test_confirm_update_end_cooldown() -> None:
    cfg = RuleConfig(confirm_seconds=0.4, clear_seconds=1.0, update_seconds=2.0, cooldown_seconds=3.0)
    lc = Lifecycle(cfg, type="assault", camera_id="c")
    frames = [round(k * 0.2, 1) for k in range(80)]
    script = []
    for t in frames:
        on = 1.0 <= t < 6.0 or 7.0 <= t < 8.0 or 10.0 <= t < 13.0  # the 7-8 s burst falls in the cooldown
        objs = {"zone": [1, 2] if t < 4.0 else [1]} if on else {}
        script.append((t, objs))
    steps = run(lc, script)
    kinds = [(t, s) for t, s, _ in steps]
    assert kinds[0] == (1.4, "start")  # the third consecutive active frame
    assert (4.0, "update") in kinds  # the objects changed
    assert (3.4, "update") in kinds  # update_seconds after the start
    end_t = [t for t, s in kinds if s == "end"]
    assert end_t[0] == 6.8  # 1 s after the last active frame (5.8 s)
    second = [t for t, s in kinds if s == "start"][1]
    assert second == 10.4  # not at 7.4: cooling down until 9.8 s
    assert len({i for *_, i in steps}) == 2


def test_keys_are_forgotten_when_idle() -> None:
    lc = Lifecycle(
        RuleConfig(confirm_seconds=0, clear_seconds=0.5, cooldown_seconds=0.0), type="x", camera_id="c"
    )
    for k in range(1000):
        lc.update({f"pair:{k}": Active([info(k)])}, k * 0.2)
    assert len(lc.keys) <= 5


def test_schedules() -> None:
    import datetime as dt

    noon = dt.datetime(2026, 11, 28, 12, 0).timestamp()
    assert in_schedule([], noon)
    assert in_schedule(["08:00-22:00"], noon) and not in_schedule(["13:00-14:00"], noon)
    assert in_schedule(["22:00-13:00"], noon)  # wraps midnight
    assert not in_schedule(["22:00-06:00"], noon)


def test_long_run_state_stays_flat() -> None:
    """20 cameras, many short-lived objects of every kind: tracker, memory and rule state stay bounded.

    (10 simulated minutes at 5 fps here; benchmarks/soak.py runs the full 24 hours.)
    """
    cfg = parse_config(
        {
            "cameras": [
                {
                    "id": f"c{i}",
                    "source": "x.mp4",
                    "zones": [
                        {
                            "name": "road",
                            "kinds": ["carriageway"],
                            "polygon": [[0, 400], [1280, 400], [1280, 720], [0, 720]],
                        },
                        {
                            "name": "fp",
                            "kinds": ["no_encroachment"],
                            "polygon": [[0, 300], [1280, 300], [1280, 400], [0, 400]],
                        },
                        {
                            "name": "shop",
                            "kinds": ["protected"],
                            "polygon": [[900, 100], [1200, 100], [1200, 300], [900, 300]],
                        },
                    ],
                }
                for i in range(20)
            ],
            "model": {"backend": "scripted", "scripted_detections": "unused.jsonl"},
        }
    )
    cams = [CameraAnalytics(cfg, i, ()) for i in range(20)]
    labels = ["person", "car", "person", "handbag", "dog", "motorcycle"]

    def state_size(ca: CameraAnalytics) -> int:
        n = len(ca.memory.tracks)
        for r in ca.rules:
            n += len(r.lifecycle.keys) + sum(len(v) for v in vars(r).values() if isinstance(v, dict))
            n += len(r.dwell.since) if hasattr(r, "dwell") else 0
        return n

    sizes = []
    frames = 10 * 60 * 5
    for k in range(frames):
        t = k / 5
        for c, ca in enumerate(cams[: 20 if k % 10 == 0 else 2]):  # every camera every 2 s, two every frame
            tracks = []
            for j in range(6):
                tid = (k // 50) * 10 + j  # every object lives 10 s, then a new one comes
                x = (k * 7 + j * 150 + c * 31) % 1200
                y = 250 + j * 70
                box = np.array([x, y - 120, x + 60, y], np.float32)
                tracks.append(Track(tid, box, 0.8, 0, labels[j]))
            ca.analyse_tracks(tracks, t=t, wall_time=1.8e9 + t, frame_w=1280, frame_h=720)
        if k in (frames // 10, frames - 1):
            sizes.append(sum(state_size(ca) for ca in cams))
    assert sizes[1] <= sizes[0] * 1.5 + 20, sizes

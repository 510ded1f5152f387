"""Directed lines, the ground plane, and what the shared track memory derives from them."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analytics.memory import TrackMemory
from pipeline.analytics.zones import GroundPlane, Line
from pipeline.config import GroundPlaneConfig, LineConfig, parse_config
from pipeline.detect.roles import label_roles
from pipeline.errors import ConfigError
from pipeline.types import Track

# A->B points right along y = 100; with y pointing down, "right of A->B" is below the line
LINE = Line(LineConfig(name="stop-line", points=((100, 100), (500, 100))))


@pytest.mark.parametrize(
    ("p0", "p1", "way"),
    [
        ((300, 150), (300, 50), 1),  # from below (right of A->B) to above: forward
        ((300, 50), (300, 150), -1),
        ((300, 150), (310, 120), 0),  # moves, does not reach the line
        ((600, 150), (600, 50), 0),  # passes beside the segment
        ((300, 100), (300, 50), 1),  # on the line counts as on its right side: counted once
        ((300, 150), (300, 100), 0),
    ],
)
def test_line_crossing_and_direction(p0, p1, way) -> None:
    assert LINE.crossing(p0, p1, frame_w=640, frame_h=480) == way


def test_normalised_line() -> None:
    line = Line(LineConfig(name="l", normalized=True, points=((0.0, 0.5), (1.0, 0.5))))
    assert line.crossing((100, 300), (100, 200), frame_w=640, frame_h=480) == 1


def test_ground_plane_maps_pixels_to_metres() -> None:
    cfg = GroundPlaneConfig(
        image=[(100, 700), (1180, 700), (900, 300), (380, 300)], world=[(0, 0), (7, 0), (7, 30), (0, 30)]
    )
    gp = GroundPlane(cfg)
    np.testing.assert_allclose(gp.to_world(np.array(cfg.image)), np.array(cfg.world), atol=1e-6)
    mid = gp.to_world(np.array([[640, 700]]))[0]
    assert mid[0] == pytest.approx(3.5) and mid[1] == pytest.approx(0, abs=1e-6)


def test_collinear_ground_plane_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="three of them are on one line"):
        parse_config(
            {
                "cameras": [
                    {
                        "id": "c",
                        "source": "x.mp4",
                        "ground_plane": {
                            "image": [[0, 0], [1, 1], [2, 2], [0, 5]],
                            "world": [[0, 0], [1, 0], [1, 1], [0, 1]],
                        },
                    }
                ],
                "model": {"name": "m"},
            }
        )


def test_memory_records_crossings_and_ground_speed() -> None:
    gp = GroundPlane(
        GroundPlaneConfig(
            image=[(0, 0), (1000, 0), (1000, 1000), (0, 1000)], world=[(0, 0), (10, 0), (10, 10), (0, 10)]
        )
    )  # 100 px per metre
    mem = TrackMemory(label_roles([{"vehicle": ["car"]}]), lines=[LINE], ground=gp, frame_size=(1000, 1000))
    for k in range(10):  # a car driving up the image at 500 px/s = 5 m/s = 18 km/h
        y = 300 - 100 * k
        (info,) = mem.update([Track(1, np.array([280, y - 50, 320, y], np.float32), 0.9, 0, "car")], k * 0.2)
    assert [(name, way) for _, name, way in info.crossings] == [("stop-line", 1)]
    assert info.world_speed(1.0) == pytest.approx(5.0)
    assert info.has("vehicle") and info.speed(1.0) == pytest.approx(500.0)


def test_a_zone_wholly_outside_the_frame_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from pipeline.analytics.camera import CameraAnalytics

    cfg = parse_config(
        {
            "cameras": [
                {
                    "id": "c",
                    "source": "a.mp4",
                    "zones": [
                        {"name": "beyond", "polygon": [[1500, 100], [1900, 100], [1900, 500]]},
                        {"name": "edge", "polygon": [[1200, 600], [1900, 600], [1900, 900]]},  # partly inside
                    ],
                }
            ],
            "model": {"backend": "scripted", "scripted_detections": "unused.jsonl"},
        }
    )
    ca = CameraAnalytics(cfg, 0, ())
    with caplog.at_level(logging.WARNING):
        for t in range(3):
            ca.analyse_tracks([], t=float(t), wall_time=1.8e9, frame_w=1280, frame_h=720)
    assert caplog.text.count("zone beyond lies wholly outside the 1280x720 frame") == 1
    assert "zone edge" not in caplog.text

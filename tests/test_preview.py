"""``safecity preview``: the real models on vtest.avi, drawn into an H.264 video a person can check."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.preview import preview

LAWN = [[0, 240], [330, 318], [470, 385], [768, 497], [768, 576], [0, 576]]


def test_preview_draws_zones_detections_and_tracks_into_a_video(
    tmp_path: Path, coco_model: Path, fall_model: Path, vtest: Path
) -> None:
    cfg = parse_config(
        {
            "device": "cpu",
            "cameras": [
                {
                    "id": "campus",
                    "source": str(vtest),
                    "analytics_fps": 5,
                    "zones": [{"name": "lawn", "polygon": LAWN}],
                }
            ],
            "models": [{"name": "yolov3-tiny-coco", "conf_threshold": 0.3}, {"name": "fall-yolov8"}],
        }
    )
    out = tmp_path / "p.mp4"
    frames, cam = preview(cfg, None, out, seconds=3.0)
    assert cam.id == "campus" and frames == 16  # 0, 0.2, ..., 3.0 s
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and (s.width, s.height) == (768, 576)
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    raw = None
    with av.open(str(vtest)) as c:
        raw = next(c.decode(video=0)).to_ndarray(format="rgb24")
    # the lawn's outline (no_encroachment: RGB 255, 200, 0) on its first edge, not in the raw frame
    x, y = 165, 279
    patch = first[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).astype(int)
    assert (np.abs(patch - [255, 200, 0]).max(axis=1) < 70).any(), patch
    assert not (
        np.abs(raw[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).astype(int) - [255, 200, 0]).max(axis=1) < 70
    ).any()
    # the caption bar along the bottom
    assert first[-6:, :150].mean() < 70


def test_preview_names_an_unknown_camera(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "cameras": [{"id": "a", "source": "x.mp4"}],
            "model": {"backend": "scripted", "scripted_detections": "s.jsonl"},
        }
    )
    with pytest.raises(ConfigError, match=r"--camera 'b': the config has no such camera \(it has: a\)"):
        preview(cfg, "b", tmp_path / "p.mp4", seconds=1)

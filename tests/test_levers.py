"""The levers benchmark end to end on a tiny run: every setting measured, the report written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.levers import main, variants


def test_the_default_placement_is_among_the_settings_measured(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    labels = [v.label for v in variants(2)]
    assert labels[:3] == [
        "1 batch at a time on 2 threads",
        "1 batch at a time on 1 thread",
        "2 batches at a time, 1 thread(s) each (default)",
    ]
    assert [v.batching for v in variants(2)[:3]] == [{"workers": 1}, {"workers": 1}, {}]


@pytest.mark.slow
def test_levers_bench_measures_each_setting_and_writes_its_report(
    tmp_path: Path, fall_model: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SAFECITY_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    rc = main(
        ["--cameras", "1", "--seconds", "1", "--width", "320", "--height", "240", "--repeats", "1"]
        + ["--model", str(fall_model), "--imgsz", "320", "--out", str(out)]
    )
    assert rc == 0
    report = json.loads((out / "levers.json").read_text())
    fps = {k: v["fps"] for k, v in report["pipeline_fps"].items()}
    assert len(fps) == len(variants(2)) and all(v > 0 for v in fps.values())
    assert set(report["onnxruntime_alone_fps"]) == {
        "1 batch at a time, every core",
        "2 batches at a time, half the cores each",
        "square canvas (320x320)",
    }
    assert set(report["decode_ms_per_frame_by_ffmpeg_threads"]) == {"1", "2", "auto"}
    assert (out / "levers.png").stat().st_size > 1000 and "| placement |" in (out / "levers.md").read_text()

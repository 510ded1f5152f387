"""The capacity benchmark's decisions (what counts as sustained, the ramp, latency percentiles from
the pipeline's histograms) and one real short ramp with scripted detections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from benchmarks.capacity import Step, histogram_state, percentiles, ramp, sustained


def test_sustained_needs_every_camera_at_95_percent_and_under_1_percent_dropped() -> None:
    assert sustained([4.8, 5.0], [0.0, 0.009], 5.0)
    assert not sustained([4.74, 5.0], [0.0, 0.0], 5.0)  # one camera at 94.8 %
    assert not sustained([5.0, 5.0], [0.0, 0.01], 5.0)  # one camera lost 1 %
    assert not sustained([], [], 5.0)


def test_the_ramp_doubles_then_bisects_to_the_largest_count_that_holds() -> None:
    tried = []

    def holds_up_to(limit: int):  # noqa: ANN202 - a small factory
        def try_count(n: int) -> Step:
            tried.append(n)
            return Step(n, n <= limit, 5.0, 5.0, 0.0)

        return try_count

    assert ramp(holds_up_to(5), start=1, limit=64)[0] == 5 and tried == [1, 2, 4, 8, 6, 5]
    tried.clear()
    assert ramp(holds_up_to(0), start=1, limit=64)[0] == 0 and tried == [1]
    tried.clear()
    assert ramp(holds_up_to(100), start=1, limit=16)[0] == 16 and tried == [1, 2, 4, 8, 16]
    tried.clear()
    assert ramp(holds_up_to(100), start=1, limit=100)[0] == 100 and tried == [1, 2, 4, 8, 16, 32, 64, 100]
    tried.clear()
    assert ramp(holds_up_to(2), start=4, limit=64)[0] == 2 and tried == [4, 2, 3]


def test_percentiles_of_what_a_histogram_took_in_a_window() -> None:
    h = Histogram("t_seconds", "t", ["stage"], buckets=(0.01, 0.1, 1.0), registry=CollectorRegistry())
    for _ in range(50):
        h.labels(stage="detect").observe(0.005)  # before the window: not counted
    before = histogram_state(h)
    for v in [0.05] * 90 + [0.5] * 10:
        h.labels(stage="detect").observe(v)
    p = percentiles(before["detect"], histogram_state(h)["detect"])
    assert p["p50"] == pytest.approx(10 + 90 * 50 / 90, abs=0.01)  # ms, within the 10-100 ms bucket
    assert 100 <= p["p99"] <= 1000


@pytest.mark.slow
def test_safecity_bench_capacity_ramps_real_cameras(tmp_path: Path, clips: list[Path]) -> None:
    from pipeline.cli import main

    from .util import scripted

    script = scripted(tmp_path / "s.jsonl", [], ["person"], 0)
    out = tmp_path / "report"
    argv = ["bench", "capacity", "--scripted", str(script), "--footage", *map(str, clips[:2])]
    argv += ["--max-cameras", "2", "--warmup", "1.5", "--window", "3", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    report = json.loads((out / "capacity.json").read_text())
    assert report["sustained_cameras"] == 2 and [s["cameras"] for s in report["steps"]] == [1, 2]
    for s in report["steps"]:
        assert s["sustained"] and 4.75 <= s["rate_min"] <= 5.5 and s["dropped_max"] == 0.0
        assert s["latency_ms"]["detect"]["p50"] >= 0 and s["rss_mib"] > 0
    assert (out / "capacity.png").stat().st_size > 0 and "2 cameras sustained" in (
        out / "capacity.md"
    ).read_text()

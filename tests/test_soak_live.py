"""A short soak of a whole edge while its cameras change (benchmarks/soak_live.py runs the long one):
cameras removed and added through the control interface, an RTSP server restarted, a real sink."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from benchmarks.soak_live import run_soak

from .test_rtsp import gst_available


@pytest.mark.slow
def test_cameras_changing_for_a_while_leak_nothing_and_lose_no_incident(tmp_path: Path) -> None:
    rtsp = 1 if gst_available() else 0
    gc.collect()  # what earlier tests left for the collector is closed now, not during the samples
    result = run_soak(
        tmp_path, cameras=5, rtsp=rtsp, seconds=30, change_every=3, restart_every=12, sample_every=2
    )
    s = result.summary()
    assert s["error"] is None, s
    assert s["camera_changes"] >= 8 and s["rtsp_restarts"] >= rtsp * 2, s
    assert s["events_committed"] >= 40 and s["events_missing"] == 0, s
    assert s["clips"] >= 20 and s["clips_fetched"] == s["clips"], s  # every clip named is at the sink
    running = [x for x in result.samples[1:-1]]  # while the cameras run (the first is before any started)
    # one camera's threads go with it and one comes with the next: the count stays level, so do files
    assert max(x["threads"] for x in running) - min(x["threads"] for x in running) <= 3, running
    fds = [x["fds"] for x in running]  # the largest rise (what others left and the collector closes
    assert max(b - min(fds[: i + 1]) for i, b in enumerate(fds)) <= 12, running  # meanwhile is no rise)
    assert result.samples[-1]["threads"] <= result.samples[0]["threads"] + 2, result.samples  # all joined

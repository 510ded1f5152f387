"""The whole pipeline: real files decoded by PyAV, real ONNX model, real sink over ZeroMQ, real metrics."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_jpeg

from pipeline.config import load_config
from pipeline.detect.scripted import ScriptedDetector
from pipeline.metrics import Metrics, serve_metrics
from pipeline.overload import KeepUpWatch
from pipeline.runner import Runner
from pipeline.types import Detections, FrameBatch

from .conftest import SinkThread, free_port
from .util import scripted, wait_until, write_config

pytestmark = pytest.mark.slow


def sink_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as c:
        return [json.loads(b) for (b,) in c.execute("SELECT body FROM events ORDER BY seq")]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}{{{re.escape(lab)}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_cli_run_with_tiny_yolo_reaches_a_real_sink(
    tmp_path: Path, tiny_onnx: Path, clips: list[Path]
) -> None:
    port, mport = free_port(), free_port()
    cfg = write_config(
        tmp_path / "run.yaml",
        edge_id="edge-test",
        device="cpu",
        cameras=[
            {
                "id": f"cam{i}",
                "source": str(p),
                "loop": True,
                "realtime": True,
                "analytics_fps": 5,
                "zones": [{"name": "all", "normalized": True, "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            }
            for i, p in enumerate(clips)
        ],
        model={
            "path": str(tiny_onnx),
            "conf_threshold": 0.3,
            "roles": {"anything": [str(i) for i in range(80)]},
        },
        rules={
            "encroachment": {
                "dwell_seconds": 0.5,
                "stationary_seconds": 0.2,
                "confirm_seconds": 0.2,
                "update_seconds": 1,
                "roles": ["anything"],
            }
        },
        sink={
            "endpoint": f"tcp://127.0.0.1:{port}",
            "outbox": str(tmp_path / "outbox.sqlite"),
            "insecure": True,
        },
        duration_seconds=8,
    )
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "sink",
            "--bind",
            f"tcp://127.0.0.1:{port}",
            "--db",
            str(tmp_path / "sink.sqlite"),
            "--insecure",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--metrics-port", str(mport)],
            stderr=subprocess.PIPE,
            text=True,
        )
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until every camera has been analysed a few times
            time.sleep(0.5)
            try:
                text = scrape(mport)
            except OSError:
                continue  # the process is still starting
            if all(
                (sample(text, "safecity_frames_analysed_total", camera=f"cam{i}") or 0) > 5 for i in range(3)
            ):
                break
        _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
    finally:
        sink.terminate()
        sink_out, _ = sink.communicate(timeout=10)
    for i in range(3):
        assert sample(text, "safecity_frames_decoded_total", camera=f"cam{i}") > 20
        assert sample(text, "safecity_frames_analysed_total", camera=f"cam{i}") > 5
        assert sample(text, "safecity_camera_up", camera=f"cam{i}") == 1
    assert sample(text, "safecity_batch_size_frames_count") > 0
    assert 'safecity_stage_latency_seconds_bucket{le="0.1",stage="detect"}' in text
    assert re.search(r"\[\s*\d+\.\ds\] cam0 up dec=\d+ ana=\d+", err)  # the live status line
    assert "safecity run" in err and "cam2" in err  # the summary table
    with sqlite3.connect(tmp_path / "outbox.sqlite") as c:
        sent = {r[0] for r in c.execute("SELECT event_id FROM outbox WHERE delivered_at IS NOT NULL")}
        pending = c.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
    rows = sink_rows(tmp_path / "sink.sqlite")
    assert pending == 0
    assert {r["event_id"] for r in rows} == sent
    assert len(rows) > 0, "the biased tiny model's boxes should dwell in the whole-frame zone"
    assert all(r["model"]["name"] == "tiny" and r["source"] == "edge-test" for r in rows)
    assert sink_out.count("ENCROACHMENT") == len(rows)
    assert all(len(r["objects"]) <= 64 and r["object_count"] >= len(r["objects"]) for r in rows)


def test_incident_flows_through_real_stages_with_scripted_detections(
    tmp_path: Path, clips: list[Path]
) -> None:
    """Only the detector is scripted: decode, batching, tracking, rule, snapshots, outbox, sink are real."""
    # a person standing still on the footpath of cam0 from 0.4 s; cam1 sees a car driving through
    rows = [
        {"camera": "cam0", "t": round(k * 0.1, 2), "boxes": [[100, 120, 140, 220, 0.9, 0]] if k >= 4 else []}
        for k in range(20)
    ]
    rows += [
        {"camera": "cam1", "t": round(k * 0.1, 2), "boxes": [[10 + 15 * k, 120, 60 + 15 * k, 200, 0.9, 1]]}
        for k in range(20)
    ]
    port = free_port()
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {
                    "id": "cam0",
                    "source": str(clips[0]),
                    "realtime": False,
                    "analytics_fps": 10,
                    "location": [77.2, 28.6],
                    "zones": [{"name": "footpath", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}],
                },
                {
                    "id": "cam1",
                    "source": str(clips[1]),
                    "realtime": False,
                    "analytics_fps": 10,
                    "zones": [{"name": "footpath", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}],
                },
            ],
            model={
                "backend": "scripted",
                "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person", "car"], 0)),
            },
            rules={
                "encroachment": {
                    "dwell_seconds": 0.5,
                    "stationary_seconds": 0.2,
                    "confirm_seconds": 0.4,
                    "clear_seconds": 0.3,
                    "update_seconds": 0.5,
                }
            },
            sink={
                "endpoint": f"tcp://127.0.0.1:{port}",
                "outbox": str(tmp_path / "outbox.sqlite"),
                "insecure": True,
            },
        )
    )
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    try:
        runner = Runner(cfg)
        stats = runner.run(30)
    finally:
        sink.close()
    assert stats.cameras["cam0"].analysed == 20 and stats.cameras["cam1"].analysed == 20
    rows_in = sink_rows(tmp_path / "sink.sqlite")
    assert [r["status"] for r in rows_in][0] == "start"
    assert {r["camera_id"] for r in rows_in} == {"cam0"}  # the moving car is no encroachment
    assert len({r["incident_id"] for r in rows_in}) == 1
    start = rows_in[0]
    assert start["type"] == "encroachment" and start["zone"] == "footpath"
    assert start["objects"][0]["label"] == "person" and start["objects"][0]["bbox"] == [
        100.0,
        120.0,
        140.0,
        220.0,
    ]
    assert start["location"] == {"type": "Point", "coordinates": [77.2, 28.6]}
    assert start["frame"]["width"] == 320 and start["frame"]["height"] == 240
    assert start["model"] == {"name": "script", "version": "1"}
    # started when the person was first seen stationary (0.5 s, 2nd tracked frame), emitted after the dwell
    with sqlite3.connect(tmp_path / "sink.sqlite") as c:
        jpeg = c.execute(
            "SELECT jpeg FROM snapshots WHERE sha256 = ?", (start["evidence"]["sha256"],)
        ).fetchone()[0]
    assert hashlib.sha256(jpeg).hexdigest() == start["evidence"]["sha256"]
    img = decode_jpeg(torch.frombuffer(bytearray(jpeg), dtype=torch.uint8))
    assert tuple(img.shape) == (3, 240, 320)
    # the snapshot is annotated: the person's box in the colour of a medium incident (RGB 255, 200, 0)
    # along its left edge, and the digest of the raw frame beside the JPEG's
    edge = img[:, 130:215, 100:102].float().mean(dim=(1, 2))
    assert (edge - torch.tensor([255.0, 200.0, 0.0])).abs().max() < 60, edge
    assert re.fullmatch(r"[0-9a-f]{64}", start["evidence"]["frame_sha256"])
    assert start["evidence"]["frame_sha256"] != start["evidence"]["sha256"]
    assert start["objects"][0]["models"] == ["script@1"] and start["objects"][0]["down"] is False
    # a recording's frame is told by its time in the video; the start's frame as the camera showed it
    # (nothing drawn) is kept by the edge and fetched by the sink by reference
    assert 0.5 <= start["frame"]["media_time_seconds"] <= 2.0
    assert all(r["frame"].get("media_time_seconds") is not None for r in rows_in)
    original = start["evidence"]["frame_jpeg_sha256"]
    assert all("frame_jpeg_sha256" not in (r["evidence"] or {}) for r in rows_in[1:])  # the start's only

    def fetched() -> bytes | None:
        with sqlite3.connect(tmp_path / "sink.sqlite") as c:
            row = c.execute("SELECT jpeg FROM snapshots WHERE sha256 = ?", (original,)).fetchone()
        return None if row is None else bytes(row[0])

    sink = SinkThread(port, tmp_path / "sink.sqlite")  # the sink asks the edge's outbox (served again) for it
    try:
        from pipeline.events.transport import Sender

        sender = Sender(
            outbox_path=tmp_path / "outbox.sqlite", endpoint=f"tcp://127.0.0.1:{port}", metrics=None
        )
        sender.start()
        try:
            assert wait_until(lambda: fetched() is not None, timeout_s=20)
        finally:
            sender.stop(drain_s=1)
    finally:
        sink.close()
    clean = decode_jpeg(torch.frombuffer(bytearray(fetched() or b""), dtype=torch.uint8))
    assert hashlib.sha256(fetched() or b"").hexdigest() == original and tuple(clean.shape) == (3, 240, 320)
    bare = clean[:, 130:215, 100:102].float().mean(dim=(1, 2))
    assert (bare - torch.tensor([255.0, 200.0, 0.0])).abs().max() > 60, bare  # no box drawn on it


def test_a_dead_camera_is_reported_and_the_others_keep_running(tmp_path: Path, clips: list[Path]) -> None:
    dying = tmp_path / "dying.mp4"
    shutil.copy(clips[1], dying)
    script = scripted(tmp_path / "s.jsonl", [], ["person"], 0)
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {"id": "ok", "source": str(clips[0]), "loop": True, "analytics_fps": 5},
                {
                    "id": "dying",
                    "source": str(dying),
                    "loop": True,
                    "analytics_fps": 5,
                    "reconnect_initial_seconds": 0.2,
                    "reconnect_max_seconds": 0.5,
                },
            ],
            model={"backend": "scripted", "scripted_detections": str(script)},
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "outbox.sqlite"),
                "insecure": True,
            },
        )
    )
    metrics = Metrics()
    mport = serve_metrics(metrics.registry, 0, addr="127.0.0.1")
    runner = Runner(cfg, metrics=metrics)
    runner.start()
    try:
        time.sleep(1.0)
        before = scrape(mport)
        assert sample(before, "safecity_camera_up", camera="dying") == 1
        dying.unlink()  # the camera's source disappears mid-run
        time.sleep(3.5)  # the 2 s clip ends, the reopen fails, and retries keep failing
        mid = scrape(mport)
        time.sleep(1.0)
        after = scrape(mport)
    finally:
        runner.request_stop()
        runner.stop()
    assert sample(mid, "safecity_camera_up", camera="dying") == 0
    assert sample(after, "safecity_camera_errors_total", camera="dying") >= 2  # retried
    assert sample(after, "safecity_camera_up", camera="ok") == 1
    ok_mid = sample(mid, "safecity_frames_analysed_total", camera="ok")
    ok_after = sample(after, "safecity_frames_analysed_total", camera="ok")
    assert ok_after > ok_mid  # the healthy camera kept going
    # a recording that cannot be opened again is given up after 3 attempts, not retried for ever
    assert runner.stats.cameras["dying"].state == "failed" and runner.stats.cameras["dying"].errors == 3


def test_real_model_on_real_footage_reports_an_incident(tmp_path: Path, fall_model: Path, samples) -> None:
    port = free_port()
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {
                    "id": "carphone",
                    "source": str(samples["carphone_pristine.mp4"]),
                    "loop": True,
                    "realtime": False,
                    "analytics_fps": 3,
                    "zones": [
                        {"name": "kerb", "normalized": True, "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
                    ],
                }
            ],
            model={"path": str(fall_model)},
            rules={"encroachment": {"dwell_seconds": 2, "confirm_seconds": 0.4}},
            sink={
                "endpoint": f"tcp://127.0.0.1:{port}",
                "outbox": str(tmp_path / "outbox.sqlite"),
                "insecure": True,
            },
        )
    )
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    try:
        runner = Runner(cfg)
        runner.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(i.status == "start" for i in runner.incidents):
            time.sleep(0.2)
        runner.request_stop()
        runner.stop()
    finally:
        sink.close()
    rows = sink_rows(tmp_path / "sink.sqlite")
    assert rows and rows[0]["status"] == "start" and rows[0]["camera_id"] == "carphone"
    # the fall model alone: its person is a person with a posture, not a "Normal"
    assert rows[0]["objects"][0]["label"] == "person" and rows[0]["objects"][0]["confidence"] > 0.3
    assert rows[0]["objects"][0]["down"] is False
    assert rows[0]["model"]["name"] == "fall-yolov8"


class SlowDetector(ScriptedDetector):
    """A scripted detector that takes 0.1 s a batch, like a model on a busy CPU."""

    def detect(self, batch: FrameBatch) -> list[Detections]:
        time.sleep(0.1)
        return super().detect(batch)


def test_a_greedy_camera_cannot_starve_the_others(tmp_path: Path, clips: list[Path], caplog) -> None:
    """Inference takes 10 frames a second. One camera asks for 60 (its stream has 25: capped), the
    other for 2: the modest one is analysed at its full rate; the greedy one is flagged as behind."""
    script = scripted(tmp_path / "s.jsonl", [], ["person"], 0)
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {"id": "greedy", "source": str(clips[0]), "loop": True, "analytics_fps": 60},
                {"id": "good", "source": str(clips[1]), "loop": True, "analytics_fps": 2},
            ],
            model={"backend": "scripted", "scripted_detections": str(script)},
            batching={"max_batch_size": 1},
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "o.sqlite"),
                "insecure": True,
            },
        )
    )
    metrics = Metrics()
    runner = Runner(cfg, metrics=metrics, detector=SlowDetector(script))
    runner.keep_up = KeepUpWatch(window_s=2.0)
    good = runner.stats.cameras["good"]
    runner.start()
    try:
        runner.wait(2.0)  # waiting, the runner also checks who keeps up (every status interval)
        n0, t0 = good.analysed, time.monotonic()
        runner.wait(5.0)
        rate = (good.analysed - n0) / (time.monotonic() - t0)
    finally:
        runner.request_stop()
        runner.stop()
    assert rate >= 1.8, f"the modest camera was analysed at {rate:.2f}/s of 2/s"
    assert runner.sources[0].analytics_fps == 25.0  # capped at the stream's rate
    reg = metrics.registry
    assert reg.get_sample_value("safecity_camera_behind", {"camera": "greedy"}) == 1
    assert reg.get_sample_value("safecity_camera_behind", {"camera": "good"}) == 0
    assert runner.stats.cameras["greedy"].dropped > 0 and good.dropped == 0
    assert (
        "1 of 2 cameras cannot keep up" in caplog.text
        and "greedy (" in caplog.text
        and "frames dropped" in caplog.text
    )


class UnevenDetector(ScriptedDetector):
    """A scripted detector whose every other batch waits (up to 2 s) for the next one to finish: with
    several workers, batches finish out of the order they were made in, however loaded the machine.
    Keeps the (camera, frame index) of each batch in finishing order."""

    def __init__(self, path: Path, *, hold: bool) -> None:
        super().__init__(path)
        self.hold = hold
        self.calls = 0
        self.finished: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._next_done: dict[int, threading.Event] = {}

    def done(self, call: int) -> threading.Event:
        with self._lock:
            return self._next_done.setdefault(call, threading.Event())

    def detect(self, batch: FrameBatch) -> list[Detections]:
        with self._lock:
            call = self.calls
            self.calls += 1
        if self.hold and call % 2 == 0:
            self.done(call + 1).wait(2.0)  # the next batch, on another worker, finishes first
        out = super().detect(batch)
        with self._lock:
            self.finished += [(f.camera_id, f.frame_index) for f in batch.frames]
        self.done(call).set()
        return out


@pytest.mark.parametrize("workers", [3, 1])
def test_batches_finishing_out_of_order_are_analysed_in_order(
    tmp_path: Path, clips: list[Path], workers: int
) -> None:
    """Several inference workers finish batches out of order; the camera's frames still reach its
    tracker in order, and none is lost (one worker: they finish in order to begin with). One camera:
    each batch is its next frame, so a batch held back puts that camera's frames out of order."""
    script = scripted(tmp_path / "s.jsonl", [], ["person"], 0)
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[{"id": "cam0", "source": str(clips[0]), "realtime": False, "analytics_fps": 10}],
            model={"backend": "scripted", "scripted_detections": str(script)},
            batching={"max_batch_size": 1, "workers": workers},
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "o.sqlite"),
                "insecure": True,
                "drain_seconds": 0,
            },
        )
    )
    detector = UnevenDetector(script, hold=workers > 1)
    runner = Runner(cfg, detector=detector)
    runner.track_log = {}
    runner.run(None)
    assert runner.error is None
    assert sum(t.name.startswith("inference") for t in runner._stages) == workers
    done = [i for _, i in detector.finished]
    analysed = [i for i, _ in runner.track_log["cam0"]]
    assert sorted(analysed) == sorted(done) and len(analysed) == 20  # 2 s at 10 fps, none lost
    assert analysed == sorted(analysed), f"analysed out of order: {analysed}"
    assert (done != sorted(done)) == (workers > 1), done  # the case is real: they did finish out of order


def test_an_incidents_times_agree_across_its_events_and_follow_the_video(
    tmp_path: Path, clips: list[Path]
) -> None:
    """A recording analysed faster than real time: each incident's start, update and end events carry
    the same started_at, and its times are the video's, counted from the run's start."""
    rows = [
        {
            "camera": "cam",
            "t": round(k * 0.1, 2),
            "boxes": [[100, 120, 140, 220, 0.9, 0]] if 4 <= k < 12 else [],
        }
        for k in range(20)
    ]
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {
                    "id": "cam",
                    "source": str(clips[0]),
                    "realtime": False,
                    "loop": True,
                    "analytics_fps": 10,
                    "zones": [{"name": "z", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}],
                }
            ],
            model={
                "backend": "scripted",
                "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person"], 2.0)),
            },
            rules={
                "encroachment": {
                    "dwell_seconds": 0.2,
                    "stationary_seconds": 0.2,
                    "confirm_seconds": 0,
                    "clear_seconds": 0.2,
                    "update_seconds": 0.2,
                    "cooldown_seconds": 0,
                }
            },
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "o.sqlite"),
                "insecure": True,
                "drain_seconds": 0,
            },
        )
    )
    runner = Runner(cfg)
    wall_before = time.time()
    runner.start()
    try:
        assert wait_until(lambda: sum(i.status == "end" for i in runner.incidents) >= 3, 30)
    finally:
        runner.request_stop()
        runner.stop()
    with sqlite3.connect(tmp_path / "o.sqlite") as c:
        events = [json.loads(b) for (b,) in c.execute("SELECT body FROM outbox ORDER BY seq")]
    by_incident: dict[str, list[dict]] = {}
    for e in events:
        by_incident.setdefault(e["incident_id"], []).append(e)
    ended = [evs for evs in by_incident.values() if evs[-1]["status"] == "end"]
    assert len(ended) >= 3
    for evs in ended:
        assert [e["status"] for e in evs][0] == "start" and len(evs) >= 3
        assert len({e["started_at"] for e in evs}) == 1, [e["started_at"] for e in evs]
        assert len({e["ended_at"] for e in evs if e["ended_at"]}) == 1
    # the k-th incident starts 2 s of video after the one before (the clip loops every 2 s), whatever
    # the wall clock did while it was analysed
    starts = [
        dt.datetime.fromisoformat(evs[0]["started_at"].replace("Z", "+00:00")).timestamp() for evs in ended
    ]
    assert all(abs(b - a - 2.0) <= 0.15 for a, b in zip(starts, starts[1:], strict=False)), starts
    assert abs(starts[0] - (wall_before + 0.4)) < 1.0  # the person appears 0.4 s into the video

"""Live model swaps through the control interface, on a running edge with real models and footage: a
version swapped in while cameras run (no camera stops, an incident in progress goes on, its events
name the version that saw them), a broken export refused, and roll-backs (an error on probation, slow
batches, and on command)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import numpy_helper

from pipeline.config import load_config
from pipeline.control import ControlServer, request
from pipeline.metrics import Metrics
from pipeline.ml.cli import SWAP_WAIT_S
from pipeline.ml.versions import load_version, version_dir, write_version
from pipeline.runner import Runner

from .util import free_port, wait_until, write_config


def post(url: str, body: object) -> tuple[int, Any]:
    """A swap or shadow request, waited for as `safecity models swap` waits: the edge loads and checks
    the model before it answers, which on a busy 2-core machine can take more than a minute."""
    return request(url, "POST", body, timeout_s=SWAP_WAIT_S)


pytestmark = pytest.mark.slow

PLAZA = [[0, 0], [768, 0], [768, 576], [0, 576]]  # all of vtest: anyone in it, moving or not, counts


def edge(tmp_path: Path, vtest: Path, **swap: object) -> tuple[Runner, ControlServer, Metrics]:
    """Two cameras of vtest, looped in real time, analysed at 2 fps by fall-yolov8 alone; encroachment
    on the whole frame after 1 s, updated every second: an incident in progress nearly all the time."""
    cfg = load_config(
        write_config(
            tmp_path / "edge.yaml",
            cameras=[
                {
                    "id": f"cam{i}",
                    "source": str(vtest),
                    "loop": True,
                    "analytics_fps": 2,
                    "zones": [{"name": "plaza", "polygon": PLAZA}],
                }
                for i in range(2)
            ],
            models=[{"name": "fall-yolov8", "conf_threshold": 0.3}],
            rules={
                "encroachment": {
                    "roles": ["person"],
                    "dwell_seconds": 1,
                    "stationary_sizes": 5,
                    "stationary_seconds": 0.2,
                    "update_seconds": 1,
                    "clear_seconds": 5,
                },
            },
            swap={"grace_seconds": 3, **swap},
            clips={"enabled": False},
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(tmp_path / "outbox.sqlite"),
                "insecure": True,
                "drain_seconds": 0,
            },
        )
    )
    metrics = Metrics()
    runner = Runner(cfg, metrics=metrics)
    runner.serving = True
    control = ControlServer(runner, "127.0.0.1:0")
    control.start()
    runner.start()
    return runner, control, metrics


def stop(runner: Runner, control: ControlServer) -> None:
    control.close()
    runner.request_stop()
    runner.stop()


def sample(metrics: Metrics, metric: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(metric, labels) or 0.0


def model_info(metrics: Metrics, version: str, state: str) -> float:
    labels = {"model": "fall-yolov8", "name": "fall-yolov8", "version": version, "state": state}
    return sample(metrics, "safecity_model_info", **labels)


def tags_of(runner: Runner, incident_id: str) -> list[tuple[str, ...]]:
    return [
        tuple(sorted({t for o in i.objects for t in o.models}))
        for i in runner.incidents
        if i.incident_id == incident_id
    ]


def test_a_version_swapped_in_under_load_keeps_every_camera_and_the_incident_in_progress(
    tmp_path: Path, vtest: Path, fall_version
) -> None:
    runner, control, metrics = edge(tmp_path, vtest)
    try:
        assert wait_until(lambda: any(i.status == "start" for i in runner.incidents), 60)
        open_incident = next(i for i in runner.incidents if i.status == "start")
        before_tag = runner.detector.model_tags[0]
        assert before_tag.startswith("fall-yolov8@") and before_tag != "fall-yolov8@1"
        analysed = {c: s.analysed for c, s in runner.stats.cameras.items()}
        code, reply = post(f"{control.url}/models/fall-yolov8", {"name": "fall-yolov8@1"})
        assert code == 200, reply
        checks = reply["checks"]
        assert checks["frames"] >= 2 and checks["export_check"]["accepted"] and checks["latency_ratio"] <= 1.5
        assert runner.detector.model_tags == ("fall-yolov8@1",)
        code, state = request(f"{control.url}/models", "GET")
        assert state["models"][0]["running"] == "fall-yolov8@1" and "probation" in state["models"][0]
        assert model_info(metrics, "1", "probation") == 1
        # the same incident goes on, its updates now naming the new version
        assert wait_until(lambda: ("fall-yolov8@1",) in tags_of(runner, open_incident.incident_id), 30)
        assert wait_until(
            lambda: sample(metrics, "safecity_model_swaps_total", model="fall-yolov8", outcome="kept") == 1,
            30,
        )
        assert model_info(metrics, "1", "live") == 1
        steps = [i for i in runner.incidents if i.incident_id == open_incident.incident_id]
        assert (before_tag,) in tags_of(runner, open_incident.incident_id)
        assert all(i.status != "end" for i in steps), "the swap ended an incident in progress"
        for cam, stats in runner.stats.cameras.items():  # no camera stopped or stalled
            assert stats.state == "up" and stats.analysed > analysed[cam] + 8, cam
        assert runner.error is None
    finally:
        stop(runner, control)


def _broken_version(tmp_path: Path) -> str:
    """fall-yolov8@2: a copy of @1 whose ONNX export has its first convolution negated; its record
    still says the export check passed (as a file swapped behind the registry's back would)."""
    src = version_dir("fall-yolov8", 1)
    dest = version_dir("fall-yolov8", 2)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    m = onnx.load(str(dest / "model.onnx"))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    init = next(i for i in m.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(m, str(dest / "model.onnx"))
    v = load_version("fall-yolov8@1")
    v.version = 2
    write_version(dest, v)
    return "fall-yolov8@2"


def _other_classes_version(coco_model: Path) -> str:
    """fall-yolov8@3: the COCO model registered as a version of the fall model (sealed, so its files
    pass the digest check): it loads, and sees other classes."""
    dest = version_dir("fall-yolov8", 3)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(version_dir("fall-yolov8", 1), dest)
    shutil.copy(coco_model, dest / "model.onnx")
    v = load_version("fall-yolov8@1")
    v.version = 3
    write_version(dest, v)
    return "fall-yolov8@3"


def test_a_broken_export_and_a_model_of_other_classes_are_refused_and_nothing_changes(
    tmp_path: Path, vtest: Path, fall_version, coco_model: Path
) -> None:
    broken = _broken_version(tmp_path)
    other = _other_classes_version(coco_model)
    runner, control, metrics = edge(tmp_path, vtest)
    try:
        assert wait_until(lambda: len(runner._recent) >= 4, 60)
        before = runner.detector
        code, reply = post(f"{control.url}/models/fall-yolov8", {"name": broken})
        assert code == 409 and "does not agree with its checkpoint" in reply["error"], reply
        assert "first difference: frame" in reply["error"]
        code, reply = post(f"{control.url}/models/fall-yolov8", {"name": other})
        assert code == 409 and "are not the running model's ['Normal', 'Fall']" in reply["error"], reply
        code, reply = post(f"{control.url}/models/fall-yolov8", {"name": "fall-yolov8@9"})
        assert code == 409 and "not in the local registry" in reply["error"], reply
        code, reply = post(f"{control.url}/models/nope", {"name": "fall-yolov8@1"})
        assert code == 404 and "detectors: fall-yolov8" in reply["error"]
        code, reply = post(f"{control.url}/models/fall-yolov8", {"model": "x"})
        assert code == 400 and "name: Field required" in reply["error"]
        # a file swapped behind the registry's back: its digest differs, it is never loaded
        (version_dir("fall-yolov8", 3) / "model.onnx").write_bytes(b"not the registered file")
        code, reply = post(f"{control.url}/models/fall-yolov8", {"name": other})
        assert code == 409 and "is not the file that was registered" in reply["error"], reply
        assert runner.detector is before and runner.error is None
        assert sample(metrics, "safecity_model_swaps_total", model="fall-yolov8", outcome="refused") == 4
    finally:
        stop(runner, control)
        for n in (2, 3):  # the session's registry holds @1 alone again
            shutil.rmtree(version_dir("fall-yolov8", n))


def test_a_client_can_never_name_a_file_for_a_model_and_checkpoints_load_weights_only(
    tmp_path: Path, vtest: Path, fall_model: Path
) -> None:
    """A swap with a client-given path and backend unpickled the file before answering 409: anyone
    who could leave a file on the edge ran code as the edge. Now the body names a registered version
    and nothing else, and a .pt the torch backend must read is unpickled with weights only."""
    import pickle

    import torch

    from pipeline.detect.torch_backend import TorchDetector
    from pipeline.errors import ModelError

    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (open, (str(ran), "w"))  # would make the file when unpickled

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    runner, control, metrics = edge(tmp_path, vtest)
    try:
        for body in (
            {"path": str(evil), "backend": "torch"},
            {"name": "fall-yolov8@1", "path": str(evil)},
            {"name": str(evil)},
            {"name": "fall-yolov8@1", "backend": "torch"},
        ):
            code, reply = post(f"{control.url}/models/fall-yolov8", body)
            assert code == 400, (body, reply)
            code, reply = post(f"{control.url}/models/fall-yolov8/shadow", body)
            assert code == 400, (body, reply)
        assert not ran.exists() and runner.error is None
    finally:
        stop(runner, control)
    with pytest.raises(ModelError, match="loads safely"):
        TorchDetector(evil, name="x", imgsz=None, conf_threshold=0.3, iou_threshold=0.7, max_det=10)
    assert not ran.exists()


def test_a_swap_is_rolled_back_on_an_error_on_slow_batches_and_on_command(
    tmp_path: Path, vtest: Path, fall_version
) -> None:
    runner, control, metrics = edge(tmp_path, vtest, grace_seconds=600, slow_batches=2)
    try:
        assert wait_until(lambda: len(runner._recent) >= 4, 60)
        original = runner.detector
        swap = lambda: post(f"{control.url}/models/fall-yolov8", {"name": "fall-yolov8@1"})  # noqa: E731

        # 1. the new model fails on a batch: back to the old one at once, the batch run again on it
        assert swap()[0] == 200
        candidate = runner.detector.member("fall-yolov8").detector

        def fails(prepared: object) -> list:
            raise RuntimeError("the new model's kernel failed")

        candidate.run = fails  # type: ignore[method-assign]
        frames = runner.stats.frames
        assert wait_until(lambda: runner.detector is original, 30)
        assert wait_until(lambda: runner.stats.frames > frames + 4, 30)
        assert runner.error is None  # no stage died: the run goes on

        # 2. batches slower than the bound, two in a row: rolled back
        assert swap()[0] == 200
        slow = runner.detector.member("fall-yolov8").detector
        real_run = slow.run

        def sluggish(prepared: object) -> list:
            time.sleep(2.0)
            return real_run(prepared)

        slow.run = sluggish  # type: ignore[method-assign]
        assert wait_until(lambda: runner.detector is original, 60)

        # 3. on command
        assert swap()[0] == 200
        code, reply = request(f"{control.url}/models/fall-yolov8/rollback", "POST")
        assert code == 200 and reply["rolled_back"] == "fall-yolov8@1", reply
        assert runner.detector is original
        code, reply = request(f"{control.url}/models/fall-yolov8/rollback", "POST")
        assert code == 409 and "no swap on probation" in reply["error"]
        assert sample(metrics, "safecity_model_swaps_total", model="fall-yolov8", outcome="rolled_back") == 3
        assert runner.error is None and all(s.state == "up" for s in runner.stats.cameras.values())
    finally:
        stop(runner, control)


def test_a_shadow_records_what_the_candidate_sees_and_would_raise_and_sends_nothing(
    tmp_path: Path, vtest: Path, fall_version, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import sqlite3

    from pipeline.cli import main

    runner, control, metrics = edge(tmp_path, vtest)
    try:
        assert wait_until(lambda: runner.stats.frames >= 4, 60)
        code, reply = request(
            f"{control.url}/models/fall-yolov8/shadow", "POST", {"name": "fall-yolov8@1", "share": 0.5}
        )
        assert code == 201 and reply["candidate"] == "fall-yolov8@1", reply
        code, reply = post(f"{control.url}/models/fall-yolov8/shadow", {"name": "fall-yolov8@1"})
        assert code == 400 and "runs already" in reply["error"]
        assert wait_until(lambda: runner.shadow is not None and runner.shadow.state.frames >= 12, 60)
        assert wait_until(
            lambda: (
                any(i.status == "start" for i in runner.incidents)
                and sqlite3.connect(tmp_path / "shadow.sqlite")
                .execute("SELECT COUNT(*) FROM incidents WHERE source = 'shadow'")
                .fetchone()[0]
                > 0
            ),
            60,
        )
        code, state = request(f"{control.url}/models", "GET")
        assert state["shadow"]["batches"]["run"] >= 6 and state["models"][0]["running"] != "fall-yolov8@1"
        code, reply = request(f"{control.url}/models/fall-yolov8/shadow", "DELETE")
        assert code == 200 and reply["frames"] >= 12, reply
        assert runner.shadow is None and runner.error is None
        code, reply = request(f"{control.url}/models/fall-yolov8/shadow", "DELETE")
        assert code == 409
    finally:
        stop(runner, control)
    # nothing the shadow saw was sent: every event in the outbox names the live model
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM outbox")]
    assert bodies and all(m["version"] != "1" for b in bodies for m in b["models"])
    assert main(["models", "shadow-report", "--db", str(tmp_path / "shadow.sqlite"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    a = rep["agreement"]
    assert rep["candidate"] == "fall-yolov8@1" and rep["frames"] >= 12 and not rep["running"]
    assert a["live_detections"] > 0 and 0 <= a["recall"] <= 1 and a["matched"] <= a["live_detections"]
    assert set(rep["per_camera"]) == {"cam0", "cam1"}
    assert rep["incidents"]["both"] + len(rep["incidents"]["only_candidate"]) >= 1
    assert main(["models", "shadow-report", "--db", str(tmp_path / "shadow.sqlite")]) == 0
    assert "detections: the candidate found" in capsys.readouterr().out

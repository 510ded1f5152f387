import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.errors import ConfigError

GOOD = {
    "edge_id": "edge-7",
    "cameras": [
        {"id": "cam1", "source": "a.mp4", "zones": [{"name": "z", "polygon": [[0, 0], [10, 0], [10, 10]]}]},
        {"id": "cam2", "source": "rtsp://127.0.0.1:8554/x", "analytics_fps": 2},
    ],
    "model": {"name": "fall-yolov8"},
}


def with_change(path: str, value: object) -> dict:
    import copy

    data = copy.deepcopy(GOOD)
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return data


def test_good_config_and_defaults() -> None:
    cfg = parse_config(GOOD)
    assert cfg.cameras[0].analytics_fps == 5.0
    assert cfg.cameras[1].is_live and not cfg.cameras[0].is_live
    assert cfg.batching.max_batch_size == 8
    assert [m.key for m in cfg.models] == [cfg.models[0].name] and cfg.model is None


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        ("cameras.0.analytics_fps", 0, "cameras.0.analytics_fps: got 0: Input should be greater than 0"),
        ("cameras.0.zones.0.polygon", [[0, 0], [1, 1]], "cameras.0.zones.0.polygon"),
        ("cameras.1.id", "cam1", "camera ids must be unique"),
        ("model.conf_threshold", 1.5, "model.conf_threshold: got 1.5"),
        ("device", "tpu", "device: got 'tpu'"),
        ("cameras.0.fps", 5, "cameras.0.fps: got 5: Extra inputs are not permitted"),
        ("tracker", {"low_threshold": 0.6, "high_threshold": 0.5}, "low_threshold (0.6) must be below"),
        ("cameras.0.location", [200, 10], "is not [longitude"),
        (
            "sink",
            {"endpoint": "tcp://127.0.0.1"},
            "sink.endpoint: got 'tcp://127.0.0.1': endpoint 'tcp://127.0.0.1' is not",
        ),
        ("sink", {"endpoint": "tcp://"}, "a host and a port number are both needed"),
        ("sink", {"endpoint": "tcp://sink.example:99999"}, "port 99999 is not in 1..65535"),
        ("sink", {"endpoint": "tcp://*:5555"}, "'*' is for binding"),
        ("sink", {"endpoint": "ipc://"}, "has no path or name"),
        ("sink", {"endpoint": []}, "expected 1 to 64 sink replicas, got 0"),
        ("sink", {"endpoint": ["tcp://a:5555", "tcp://A:5555"]}, "a sink replica is listed twice"),
        ("sink", {"endpoint": ["tcp://a:5555\n"]}, "is not tcp://HOST:PORT"),
        ("sink", {"endpoint": ["tcp://a:5555", "tcp://b"]}, "a host and a port number are both needed"),
        ("cameras.1.source", "rtsp://", "has no host; expected rtsp://HOST[:PORT]/PATH"),
        ("cameras.1.source", "rtsp:///stream1", "has no host"),
        ("cameras.1.source", "rtsp://cam:notaport/x", "is not a valid URL"),
        ("cameras.1.source", "gopher://cam/x", "unknown URL scheme 'gopher'"),
        (
            "cameras.0.zones.0.polygon",
            [[0, 0], [10, 10], [10, 0], [0, 10]],
            "polygon crosses itself: edge 0 [0.0, 0.0]->[10.0, 10.0] meets edge 2",
        ),
        ("cameras.0.zones.0.polygon", [[0, 0], [5, 5], [10, 10]], "polygon has no area"),
        ("batching", {"workers": 0}, "batching.workers: got 0: Input should be greater than or equal to 1"),
    ],
)
def test_bad_configs_name_the_field(path: str, value: object, expect: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_change(path, value))
    assert expect in str(err.value)


@pytest.mark.parametrize(
    ("source", "live"),
    [
        ("rtsp://10.0.0.5/stream1", True),
        ("rtsps://10.0.0.5/stream1", True),
        ("srt://10.0.0.5:9000", True),
        ("udp://239.0.0.1:1234", True),
        ("udp://@:1234", True),  # the edge listens; the camera pushes to it
        ("srt://:9000?mode=listener", True),
        ("http://10.0.0.5/clip.mp4", False),
        ("https://archive.example/clip.mp4", False),
        ("/data/clip.mp4", False),
    ],
)
def test_what_is_live_follows_the_url_scheme(source: str, live: bool) -> None:
    cfg = parse_config(with_change("cameras.1.source", source))
    assert cfg.cameras[1].is_live is live
    forced = parse_config(with_change("cameras.1", {"id": "c", "source": source, "live": not live}))
    assert forced.cameras[1].is_live is (not live)  # `live:` overrides the scheme


def test_a_closed_ring_and_repeated_corners_are_one_polygon() -> None:
    ring = [[0, 0], [100, 0], [100, 100], [100, 100], [0, 100], [0, 0]]  # GeoJSON closes its rings
    cfg = parse_config(with_change("cameras.0.zones.0.polygon", ring))
    assert cfg.cameras[0].zones[0].polygon == [(0, 0), (100, 0), (100, 100), (0, 100)]
    with pytest.raises(ConfigError, match="polygon has 2 distinct corners; a zone needs at least 3"):
        parse_config(with_change("cameras.0.zones.0.polygon", [[0, 0], [5, 5], [5, 5], [0, 0]]))


def test_a_password_in_a_camera_url_is_never_printed_in_a_config_error() -> None:
    data = with_change("cameras.1", {"id": "c", "source": "rtsp://admin:hunter2@", "analytics_fps": 2})
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "hunter2" not in str(err.value) and "admin:***@" in str(err.value)


def test_model_needs_name_or_path() -> None:
    data = with_change("model", {"name": "x", "path": "y.onnx"})
    with pytest.raises(ConfigError, match="exactly one of model.name"):
        parse_config(data)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(GOOD))
    cfg = load_config(p)
    assert cfg.cameras[0].source == str(tmp_path / "a.mp4")
    assert cfg.cameras[1].source.startswith("rtsp://")


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(with_change("cameras.0.analytics_fps", -3)))
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(p)], capture_output=True, text=True
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "cameras.0.analytics_fps" in lines[0] and "-3" in lines[0] and "greater than 0" in lines[0]
    assert "Traceback" not in res.stderr


def test_cli_unreadable_yaml(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("cameras: [\n")
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(p)], capture_output=True, text=True
    )
    assert res.returncode == 2 and "not valid YAML" in res.stderr


def test_inference_workers_share_the_cores_on_a_cpu_and_are_one_on_a_gpu(monkeypatch) -> None:
    from pipeline.devices import inference_workers, model_threads

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert inference_workers(None, "cpu") == 2 and model_threads(0, 2) == 8
    assert inference_workers(None, "cuda:0") == 1
    assert inference_workers(3, "cpu") == 3 and model_threads(0, 3) == 5 and model_threads(4, 3) == 4
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert inference_workers(None, "cpu") == 1 and model_threads(0, 1) == 1 and model_threads(0, 2) == 1

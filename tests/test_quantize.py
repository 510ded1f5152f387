"""INT8 for CPU edges: a model quantized on frames of footage is kept only when its detections agree
with the float model's; quantizing the head too (what a naive quantization does) is refused."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from pipeline.detect import quantize as q
from pipeline.errors import ModelError

FOOTAGE = Path(__file__).resolve().parent.parent / "data" / "footage"


@pytest.fixture(scope="module")
def footage() -> list[Path]:
    from .conftest import unavailable

    files = [FOOTAGE / "vtest.avi", FOOTAGE / "bikes.mp4"]
    if not all(f.is_file() for f in files):
        unavailable("sample footage not fetched", "safecity footage samples")
    return files


def test_the_head_left_in_float_is_the_decoding_after_the_last_activated_convolutions(
    fall_model: Path,
) -> None:
    model = onnx.load(str(fall_model))
    head = set(q.head_nodes(model))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert "/model.22/dfl/conv/Conv" in head and any(ops[n] == "Sigmoid" for n in head)
    # the head's final 1x1 convolutions are in it; the convolution blocks before them are not
    assert all(n.startswith("/model.22/") for n in head)
    assert not any(ops[n] == "Conv" and "/cv2.0/cv2.0.0/" in n for n in head)


@pytest.mark.slow
def test_an_int8_model_that_agrees_is_written_with_its_report(
    fall_model: Path, footage: list[Path], tmp_path: Path
) -> None:
    dest = tmp_path / "fall-int8.onnx"
    r = q.quantize(fall_model, footage, dest, every_s=0.5)
    assert r.accepted and r.recall >= 0.95 and r.precision >= 0.95 and r.reference_detections > 20
    meta = {p.key: p.value for p in onnx.load(str(dest)).metadata_props}
    assert "names" in meta and meta["quantization"].startswith("int8 qdq")
    assert (tmp_path / "fall-int8.onnx.json").is_file()
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(dest)).graph.node)


@pytest.mark.slow
def test_quantizing_the_head_too_is_refused(
    fall_model: Path, footage: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "head_nodes", lambda model: [])
    dest = tmp_path / "all-int8.onnx"
    with pytest.raises(
        ModelError, match="does not agree with the float one.*first difference: frame \\d+: the"
    ):
        q.quantize(fall_model, footage, dest, calibration_frames=24, held_out_frames=12)
    assert not dest.exists() and not list(tmp_path.glob("*.tmp.onnx"))


def test_precision_int8_names_a_manifest_models_export_and_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import registry
    from pipeline.config import ModelConfig
    from pipeline.errors import ModelError

    with pytest.raises(ValueError, match="precision int8 is for a manifest model"):
        ModelConfig(path=tmp_path / "m.onnx", precision="int8")
    with pytest.raises(ValueError, match="precision int8 is for a manifest model"):
        ModelConfig(name="fall-yolov8", backend="torch", precision="int8")
    monkeypatch.setattr(registry, "data_dir", lambda: tmp_path)  # no export made here
    with pytest.raises(ModelError, match="safecity models quantize fall-yolov8 --calibrate"):
        registry.resolve_model_path(ModelConfig(name="fall-yolov8", precision="int8"))
    (tmp_path / "models" / "fall-yolov8").mkdir(parents=True)
    (tmp_path / "models" / "fall-yolov8" / "fall-yolov8-int8.onnx").write_bytes(b"x")
    path, name = registry.resolve_model_path(ModelConfig(name="fall-yolov8", precision="int8"))
    assert path.name == "fall-yolov8-int8.onnx" and name == "fall-yolov8"


@pytest.mark.parametrize(
    ("raw", "size"), [("640", 640), ("[640, 640]", 640), ("(384, 640)", 640), ("(416,)", 416)]
)
def test_the_calibration_size_is_read_from_any_way_an_export_writes_it(raw: str, size: int) -> None:
    assert q.export_size(raw) == size


def test_a_size_that_is_not_one_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="not a size"):
        q.export_size("big")

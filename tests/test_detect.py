from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.detect.decode import decode_yolo
from pipeline.detect.onnx_backend import OnnxDetector
from pipeline.errors import ModelError
from pipeline.preprocess import letterbox_params
from pipeline.types import Frame, FrameBatch


def read_frames(path: Path, n: int, step: int = 5) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % step == 0:
                out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return out


def ultralytics_predictions(
    model_path: Path, frames: list[np.ndarray], imgsz: int, conf: float, iou: float, max_det: int = 300
):
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    results = model.predict(
        [f[..., ::-1].copy() for f in frames],
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        verbose=False,
        device="cpu",
        max_det=max_det,
    )
    return [(r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(int), r.boxes.conf.numpy()) for r in results]


def assert_same(ours, ref, *, tol_px: float) -> None:
    """Same number of boxes; each of ours has its own reference box of the same class within tol_px."""
    ref_xyxy, ref_cls = ref[0], ref[1]
    assert len(ours) == len(ref_xyxy), (len(ours), len(ref_xyxy))
    unused = np.ones(len(ref_xyxy), bool)
    for box, cls in zip(ours.xyxy, ours.class_id, strict=True):
        dist = np.abs(ref_xyxy - box).max(axis=1)
        dist[~unused | (ref_cls != cls)] = np.inf
        j = int(dist.argmin())
        assert dist[j] <= tol_px, f"no reference box of class {cls} within {tol_px}px of {box}"
        unused[j] = False


def test_tiny_model_matches_ultralytics_exactly_sized_frames(tiny_onnx: Path, clips: list[Path]) -> None:
    """320x240 frames into a 320 input: no resize, so both paths see the same tensor and NMS must agree."""
    frames = read_frames(clips[0], 2) + read_frames(clips[1], 1)
    # max_det above the number of boxes left after NMS: which of equal-score boxes fill a cap is arbitrary
    det = OnnxDetector(
        tiny_onnx, name="tiny", imgsz=320, conf_threshold=0.25, iou_threshold=0.7, max_det=1000
    )
    batch = FrameBatch([Frame(f"c{i}", torch.from_numpy(f), 0.0, i, 0.0) for i, f in enumerate(frames)])
    ours = det.detect(batch)
    ref = ultralytics_predictions(tiny_onnx, frames, 320, 0.25, 0.7, max_det=1000)
    assert sum(len(o) for o in ours) > 20  # NMS really had overlapping boxes to resolve
    for o, r in zip(ours, ref, strict=True):
        assert_same(o, r, tol_px=1.0)


def test_real_model_decode_and_nms_match_ultralytics(fall_model: Path, samples: dict[str, Path]) -> None:
    """Ultralytics' own preprocessed tensor through our inference, decode and NMS: same boxes as predict."""
    from ultralytics import YOLO

    det = OnnxDetector(fall_model, name="fall", imgsz=640, conf_threshold=0.3, iou_threshold=0.7, max_det=300)
    total = 0
    for clip, step in (("carphone_pristine.mp4", 20), ("bikes.mp4", 40)):
        frames = read_frames(samples[clip], 3, step=step)
        bgr = [f[..., ::-1].copy() for f in frames]
        yolo = YOLO(str(fall_model), task="detect")
        ref = [
            (r.boxes.xyxy.numpy(), r.boxes.cls.numpy().astype(int), r.boxes.conf.numpy())
            for r in yolo.predict(bgr, imgsz=640, conf=0.3, iou=0.7, verbose=False, device="cpu")
        ]
        images = yolo.predictor.preprocess(bgr)
        lbs = [letterbox_params(*f.shape[:2], 640, tuple(images.shape[2:])) for f in frames]
        ours = decode_yolo(det.infer(images), lbs, conf_threshold=0.3, iou_threshold=0.7, max_det=300)
        for o, r in zip(ours, ref, strict=True):
            assert_same(o, r, tol_px=1.0)
            total += len(o)
    assert total >= 3


def test_real_model_full_path_finds_the_same_objects(fall_model: Path, samples: dict[str, Path]) -> None:
    """Our own letterbox too: clear detections are the same objects (IoU > 0.8, same class).

    Exact equality is not expected here: a float resize and cv2's 8-bit one differ by under 1/255,
    which can swap two near-equal candidates in NMS.
    """
    from pipeline.track import iou_matrix

    det = OnnxDetector(fall_model, name="fall", imgsz=640, conf_threshold=0.3, iou_threshold=0.7, max_det=300)
    for clip, step in (("carphone_pristine.mp4", 20), ("bikes.mp4", 40)):
        frames = read_frames(samples[clip], 3, step=step)
        ours = det.detect(
            FrameBatch([Frame("c", torch.from_numpy(f), 0.0, i, 0.0) for i, f in enumerate(frames)])
        )
        for o, (xyxy, cls, conf) in zip(
            ours, ultralytics_predictions(fall_model, frames, 640, 0.3, 0.7), strict=True
        ):
            for box, c in zip(xyxy[conf > 0.5], cls[conf > 0.5], strict=True):
                iou = iou_matrix(box[None], o.xyxy[o.class_id == c])
                assert iou.size and iou.max() > 0.8, (clip, box, o.xyxy)


def test_class_names_come_from_metadata(tiny_onnx: Path, fall_model: Path) -> None:
    assert (
        len(
            OnnxDetector(
                tiny_onnx, name="t", imgsz=None, conf_threshold=0.5, iou_threshold=0.5, max_det=10
            ).info.class_names
        )
        == 80
    )
    info = OnnxDetector(
        fall_model, name="f", imgsz=None, conf_threshold=0.5, iou_threshold=0.5, max_det=10
    ).info
    assert info.class_names == ("Normal", "Fall") and info.imgsz == 640


def test_decode_maps_boxes_back_and_suppresses_overlaps() -> None:
    lb = letterbox_params(100, 200, 64)  # gain 0.32, top pad 16
    raw = torch.zeros(1, 4 + 2, 3)
    raw[0, :4, 0] = torch.tensor([32.0, 32.0, 20.0, 10.0])  # cx cy w h
    raw[0, :4, 1] = torch.tensor([33.0, 32.0, 20.0, 10.0])  # overlaps the first, same class, lower score
    raw[0, :4, 2] = torch.tensor([33.0, 32.0, 20.0, 10.0])  # same box, other class: kept (class-aware NMS)
    raw[0, 4:, 0] = torch.tensor([0.9, 0.0])
    raw[0, 4:, 1] = torch.tensor([0.8, 0.0])
    raw[0, 4:, 2] = torch.tensor([0.0, 0.7])
    (d,) = decode_yolo(raw, [lb], conf_threshold=0.25, iou_threshold=0.5, max_det=10)
    assert len(d) == 2 and sorted(d.class_id.tolist()) == [0, 1]
    first = d.xyxy[d.class_id == 0][0]
    np.testing.assert_allclose(
        first, [(22 - 0) / 0.32, (27 - 16) / 0.32, (42 - 0) / 0.32, (37 - 16) / 0.32], atol=1e-3
    )


def test_decode_end2end_output() -> None:
    lb = letterbox_params(64, 64, 64)
    raw = torch.tensor([[[1.0, 2.0, 10.0, 20.0, 0.9, 3.0], [0.0, 0.0, 1.0, 1.0, 0.1, 1.0]]])
    (d,) = decode_yolo(raw, [lb], conf_threshold=0.25, iou_threshold=0.5, max_det=10, end2end=True)
    assert len(d) == 1 and d.class_id[0] == 3


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxDetector(
            tmp_path / "nope.onnx", name="x", imgsz=None, conf_threshold=0.5, iou_threshold=0.5, max_det=1
        )


def test_device_selection() -> None:
    from pipeline.devices import resolve_device
    from pipeline.errors import BackendUnavailableError

    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_the_tensorrt_profile_covers_the_batches_sent_at_the_models_square(tiny_onnx: Path) -> None:
    """The profile is for square imgsz inputs up to the muxer's largest batch (it was fixed at 32 while
    the GPU benchmark batches 64), on the model's own input name; with TensorRT frames are
    letterboxed to that square, never to a rect canvas such as 288x640 outside the profile."""
    from pipeline.detect.onnx_backend import read_onnx_metadata, tensorrt_options, uses_rect_canvas

    _, input_name, dynamic = read_onnx_metadata(tiny_onnx)
    assert dynamic  # exported with dynamic batch, height and width
    opts = tensorrt_options(device_id=0, input_name=input_name, imgsz=320, max_batch=64, cache="/c")
    assert opts["trt_profile_max_shapes"] == f"{input_name}:64x3x320x320"
    assert opts["trt_profile_min_shapes"] == f"{input_name}:1x3x320x320"
    assert opts["trt_profile_opt_shapes"] == f"{input_name}:32x3x320x320"
    dynamic = ["batch", 3, "height", "width"]
    assert uses_rect_canvas(dynamic, tensorrt=False) and not uses_rect_canvas(dynamic, tensorrt=True)
    assert not uses_rect_canvas([1, 3, 640, 640], tensorrt=False)
    static = tensorrt_options(
        device_id=0, input_name="images", imgsz=640, max_batch=8, cache="/c", dynamic=False
    )
    assert not any(k.startswith("trt_profile") for k in static)  # a static export keeps its own shape


def test_the_detector_takes_the_muxers_largest_batch(tiny_onnx: Path) -> None:
    from pipeline.config import parse_config
    from pipeline.detect import create_detector

    cfg = parse_config(
        {
            "device": "cpu",
            "cameras": [{"id": "c", "source": "a.mp4"}],
            "model": {"path": str(tiny_onnx)},
            "batching": {"max_batch_size": 48},
        }
    )
    assert create_detector(cfg).max_batch == 48  # type: ignore[attr-defined]


def test_an_onnx_runtime_without_cuda_names_the_cuda_versions(tiny_onnx: Path) -> None:
    from pipeline.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError) as err:
        OnnxDetector(
            tiny_onnx,
            name="t",
            imgsz=320,
            conf_threshold=0.25,
            iou_threshold=0.7,
            max_det=100,
            device="cuda:0",
        )
    message = str(err.value)
    assert "has no CUDA provider" in message and f"has CUDA {torch.version.cuda}" in message
    assert "onnxruntime" in message and "built for" in message

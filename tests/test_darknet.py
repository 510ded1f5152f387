"""The COCO-80 YOLOv3-tiny: Darknet cfg + weights converted by the project's own code, checked against
OpenCV's Darknet importer (an independent oracle), its ONNX export against the torch module, the
anchor decoding against a slow reference written from the paper's formulas, and on real frames."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms, box_iou

from pipeline.detect.darknet import DarknetYolo, load_darknet
from pipeline.detect.decode_yolov3 import AnchorHead, yolov3_predictions
from pipeline.detect.onnx_backend import OnnxDetector
from pipeline.errors import ModelError
from pipeline.preprocess import color_spec, letterbox_batch
from pipeline.registry import load_manifest
from pipeline.sources.cpu import to_rgb24
from pipeline.types import Frame, FrameBatch

MASKS = load_manifest()["yolov3-tiny-coco"]["masks"]
TOLERANCE = 1e-3  # raw head outputs span about +-20: float32 sums in another order differ by ~3e-4


def files(coco_model: Path) -> tuple[Path, Path]:
    return coco_model.with_suffix(".cfg"), coco_model.with_suffix(".weights")


def real_frames(path: Path, *, every: int, count: int) -> list[torch.Tensor]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(
                    torch.from_numpy(
                        to_rgb24(f, color_spec(f.colorspace, f.color_range, f.height, f.format.name))
                    )
                )
            if len(out) == count:
                break
    return out


def opencv_darknet(cfg: Path, weights: Path):  # noqa: ANN201 - cv2's Net
    import cv2

    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.fail(
            f"OpenCV {cv2.__version__} has no Darknet importer (OpenCV 5 dropped it: pin opencv-python<5)"
        )
    return cv2.dnn.readNetFromDarknet(str(cfg), str(weights))


@pytest.fixture(scope="module")
def model(coco_model: Path) -> DarknetYolo:
    cfg, weights = files(coco_model)
    return load_darknet(cfg, weights, masks=MASKS)


def test_the_conversion_gives_opencvs_outputs(
    coco_model: Path, model: DarknetYolo, samples: dict[str, Path]
) -> None:
    """The raw yolo head tensors of our torch module and of OpenCV's Darknet importer, on random input
    and on a real letterboxed frame, agree within TOLERANCE (observed: 3.5e-4 at most)."""
    net = opencv_darknet(*files(coco_model))
    frame = real_frames(samples["bikes.mp4"], every=1, count=1)[0]
    real, _ = letterbox_batch([frame], size=416)
    noise = torch.from_numpy(np.random.default_rng(0).random((1, 3, 416, 416), dtype=np.float32))
    for x in (noise, real):
        net.setInput(x.numpy())
        theirs = net.forward(["conv_15", "conv_22"])  # the convolutions feeding the two yolo layers
        with torch.no_grad():
            ours = model(x)
        for o, t in zip(ours, theirs, strict=True):
            assert o.shape == t.shape
            assert np.abs(o.numpy() - t).max() < TOLERANCE


def test_the_decoded_boxes_are_opencvs(coco_model: Path, model: DarknetYolo, tmp_path: Path) -> None:
    """OpenCV's yolo layers decode with the cfg's masks: given the manifest's, its boxes (normalised
    centre and size, anchor by anchor and cell by cell) and objectness are ours."""
    cfg, weights = files(coco_model)
    text = cfg.read_text()
    fixed = tmp_path / "fixed.cfg"  # the same masks, in a cfg OpenCV reads
    fixed.write_text(text.replace("mask = 0,1,2", "mask = " + ",".join(map(str, MASKS[1]))))
    net = opencv_darknet(fixed, weights)
    x = np.random.default_rng(1).random((1, 3, 416, 416), dtype=np.float32)
    net.setInput(x)
    theirs = net.forward(net.getUnconnectedOutLayersNames())
    heads = [AnchorHead(tuple(h.anchors), h.stride) for h in model.spec.heads]
    with torch.no_grad():
        ours = yolov3_predictions(model(torch.from_numpy(x)), heads)[0].numpy()  # (84, N)
    start = 0
    for head, t in zip(heads, theirs, strict=True):
        g = 416 // head.stride
        n = 3 * g * g
        mine = ours[:, start : start + n].reshape(84, 3, g, g)  # anchor, row, column
        cv = np.moveaxis(t.reshape(g, g, 3, 85), 2, 0)  # OpenCV: row, column, anchor
        assert np.abs(mine[:4] / 416 - np.moveaxis(cv[..., :4], 3, 0)).max() < 1e-4
        start += n


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_decoding_follows_the_papers_formulas() -> None:
    """A slow reference, one cell and anchor at a time: b_x = (sigma(t_x) + c_x) * stride,
    b_w = p_w * e^(t_w), score = sigma(t_o) * sigma(t_class)."""
    heads = [AnchorHead(((30.0, 40.0), (60.0, 50.0)), 32), AnchorHead(((5.0, 8.0), (9.0, 12.0)), 16)]
    nc = 3
    raw = [torch.randn(2, 2 * (5 + nc), 2, 3), torch.randn(2, 2 * (5 + nc), 4, 6)]
    fast = yolov3_predictions(raw, heads)
    col = 0
    for out, head in zip(raw, heads, strict=True):
        _, _, h, w = out.shape
        for a, (pw, ph) in enumerate(head.anchors):
            for y in range(h):
                for x in range(w):
                    for b in range(2):
                        t = out[b, a * (5 + nc) : (a + 1) * (5 + nc), y, x].tolist()
                        want = [
                            (sigmoid(t[0]) + x) * head.stride,
                            (sigmoid(t[1]) + y) * head.stride,
                            pw * math.exp(t[2]),
                            ph * math.exp(t[3]),
                            *[sigmoid(t[4]) * sigmoid(c) for c in t[5:]],
                        ]
                        assert fast[b, :, col + a * h * w + y * w + x].tolist() == pytest.approx(
                            want, rel=1e-5
                        )
        col += len(head.anchors) * h * w


def test_the_onnx_export_is_the_torch_module(coco_model: Path, model: DarknetYolo) -> None:
    det = OnnxDetector(
        coco_model, name="coco", imgsz=None, conf_threshold=0.3, iou_threshold=0.45, max_det=100
    )
    assert det.family == "yolov3" and det.rect and det.imgsz == 416 and len(det.class_names) == 80
    assert [(h.anchors, h.stride) for h in det.anchor_heads] == [
        (tuple(h.anchors), h.stride) for h in model.spec.heads
    ]
    x = torch.rand(2, 3, 256, 416)  # batch of 2 at a rect canvas: the export's axes are dynamic
    with torch.no_grad():
        want = model(x)
    got = det.infer_outputs(x)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and (g - w).abs().max() < TOLERANCE


def head_boxes(pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = pred.T
    scores, cls = p[:, 4:].max(1)
    keep = scores > 0.15
    p, scores, cls = p[keep], scores[keep], cls[keep]
    xyxy = torch.cat([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
    keep = batched_nms(xyxy, scores, cls, 0.45)
    return xyxy[keep], cls[keep]


def heads_agreement(coco_model: Path, masks: list[list[int]], frames: list[torch.Tensor]) -> float:
    """Mean IoU between the stride-16 head's boxes and the stride-32 head's for the same objects."""
    cfg, weights = files(coco_model)
    model = load_darknet(cfg, weights, masks=masks)
    heads = [AnchorHead(tuple(h.anchors), h.stride) for h in model.spec.heads]
    ious = []
    for frame in frames:
        x, _ = letterbox_batch([frame], size=416)
        with torch.no_grad():
            h32, h16 = model(x)
        a, ca = head_boxes(yolov3_predictions([h32], heads[:1])[0])
        b, cb = head_boxes(yolov3_predictions([h16], heads[1:])[0])
        if len(a) and len(b):
            best = (box_iou(b, a) * (cb[:, None] == ca[None, :])).max(1).values
            ious += best[best > 0.1].tolist()
    assert len(ious) >= 10, "too few objects seen by both heads to judge"
    return float(np.mean(ious))


def test_the_second_heads_anchors_are_those_the_weights_were_trained_with(
    coco_model: Path, samples: dict[str, Path]
) -> None:
    """How masks 1,2,3 were chosen over the archive's 0,1,2: objects both heads see get boxes that
    agree only with 1,2,3 (measured over 180 frames of three clips: mean IoU 0.74 against 0.31)."""
    frames = real_frames(samples["bikes.mp4"], every=5, count=40) + real_frames(
        samples["carphone_pristine.mp4"], every=5, count=40
    )
    assert heads_agreement(coco_model, MASKS, frames) > 0.6
    assert heads_agreement(coco_model, [[3, 4, 5], [0, 1, 2]], frames) < 0.45


@pytest.mark.slow
def test_the_coco_model_sees_people_and_the_parked_vehicles_on_vtest(coco_model: Path, vtest: Path) -> None:
    det = OnnxDetector(
        coco_model, name="coco", imgsz=None, conf_threshold=0.3, iou_threshold=0.45, max_det=100
    )
    frames = [Frame("c", f, 0.0, i, 0.0) for i, f in enumerate(real_frames(vtest, every=50, count=16))]
    seen = [{det.class_names[c] for c in d.class_id} for d in det.detect(FrameBatch(frames))]
    assert sum("person" in s for s in seen) >= 14  # people walk through the whole clip
    assert sum(bool(s & {"car", "truck"}) for s in seen) >= 12  # the parked van and car


def test_cfg_and_weights_errors_say_what_is_wrong(coco_model: Path) -> None:
    cfg, weights = files(coco_model)
    text = cfg.read_text()
    with pytest.raises(ModelError, match=r"\[shortcut_of_doom\] layers are not supported"):
        DarknetYolo(text.replace("[upsample]", "[shortcut_of_doom]"))
    with pytest.raises(ModelError, match="needs 255 channels, has 128"):
        DarknetYolo(text.replace("filters=255", "filters=128", 1))
    model = DarknetYolo(text)
    with pytest.raises(ModelError, match="ends before the model does"):
        model.load_weights(weights.read_bytes()[: 1 << 20])
    with pytest.raises(ModelError, match="values more than the cfg's layers take"):
        model.load_weights(weights.read_bytes() + b"\0" * 400)
    with pytest.raises(ModelError, match="the first section must be"):
        DarknetYolo("[convolutional]\nfilters=3\n")


def test_the_manifest_pins_what_is_fetched(coco_model: Path) -> None:
    from pipeline.registry import sha256_file

    entry = load_manifest()["yolov3-tiny-coco"]
    cfg, weights = files(coco_model)
    assert sha256_file(weights) == entry["sha256"] and sha256_file(cfg) == entry["source"]["cfg_sha256"]
    assert entry["masks"] == [[3, 4, 5], [1, 2, 3]] and entry["family"] == "yolov3"

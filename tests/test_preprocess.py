import cv2
import numpy as np
import pytest
import torch
from ultralytics.data.augment import LetterBox

from pipeline.preprocess import PAD_VALUE, boxes_to_frame, letterbox_batch, letterbox_params


@pytest.mark.parametrize("hw", [(144, 176), (272, 640), (1080, 1920), (720, 1280), (640, 480), (33, 999)])
@pytest.mark.parametrize("size", [320, 640])
def test_letterbox_matches_ultralytics(hw: tuple[int, int], size: int) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ref = LetterBox((size, size), auto=False, stride=32)(image=img)  # BGR/RGB agnostic: same op per channel
    lb = letterbox_params(*hw, size)
    ours, params = letterbox_batch([torch.from_numpy(img)], size=size)
    assert params[0] == lb
    ours_img = ours[0].permute(1, 2, 0).numpy() * 255.0
    assert ref.shape == ours_img.shape
    # padding placed exactly where Ultralytics puts it
    pad_ref = np.all(ref == PAD_VALUE, axis=2)
    inside = np.zeros((size, size), bool)
    inside[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w] = True
    assert not pad_ref[inside].all()
    assert pad_ref[~inside].all()
    # resized content: float bilinear vs cv2's 8-bit bilinear
    diff = np.abs(ours_img[inside] - ref[inside].astype(np.float32))
    assert diff.mean() < 1.0, diff.mean()


@pytest.mark.parametrize("hw", [(144, 176), (272, 640), (1080, 1920), (640, 480), (33, 999)])
def test_rect_letterbox_matches_ultralytics_auto(hw: tuple[int, int]) -> None:
    img = np.random.default_rng(1).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ref = LetterBox((640, 640), auto=True, stride=32)(image=img)
    ours, (lb, _) = letterbox_batch([torch.from_numpy(img), torch.from_numpy(img)], size=640, rect=True)
    assert tuple(ours.shape[2:]) == ref.shape[:2]
    pad_ref = np.all(ref == PAD_VALUE, axis=2)
    inside = np.zeros(ref.shape[:2], bool)
    inside[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w] = True
    assert pad_ref[~inside].all() and not pad_ref[inside].all()


def test_rect_canvas_holds_every_camera_of_a_mixed_batch() -> None:
    a = torch.zeros((720, 1280, 3), dtype=torch.uint8)  # 640x360 inside 640
    b = torch.zeros((480, 640, 3), dtype=torch.uint8)  # 640x480
    x, params = letterbox_batch([a, b], size=640, rect=True)
    assert tuple(x.shape) == (2, 3, 480, 640)
    assert params[0].top == 60 and params[1].top == 0


def test_mixed_resolutions_in_one_batch() -> None:
    a = torch.full((100, 200, 3), 200, dtype=torch.uint8)
    b = torch.full((300, 150, 3), 10, dtype=torch.uint8)
    x, params = letterbox_batch([a, b, a], size=64)
    assert x.shape == (3, 3, 64, 64)
    assert torch.allclose(x[0], x[2])
    assert params[0].new_w == 64 and params[0].new_h == 32
    assert params[1].new_h == 64 and params[1].new_w == 32
    assert x[0, :, 32, 32].allclose(torch.tensor(200 / 255.0))
    assert x[0, :, 0, 32].allclose(torch.tensor(PAD_VALUE / 255.0))


def test_boxes_round_trip() -> None:
    lb = letterbox_params(272, 640, 640)
    frame_boxes = torch.tensor([[10.0, 20.0, 300.0, 250.0], [0.0, 0.0, 640.0, 272.0]])
    sx, sy = lb.gain_x, lb.gain_y
    model_boxes = frame_boxes.clone()
    model_boxes[:, [0, 2]] = model_boxes[:, [0, 2]] * sx + lb.left
    model_boxes[:, [1, 3]] = model_boxes[:, [1, 3]] * sy + lb.top
    back = boxes_to_frame(model_boxes, lb)
    assert torch.allclose(back, frame_boxes, atol=1e-3)


def test_rejects_empty_frames() -> None:
    with pytest.raises(ValueError):
        letterbox_params(0, 10, 320)


def test_cv2_is_what_ultralytics_uses() -> None:
    # guards the assumption behind the tolerance above
    assert LetterBox((64, 64)).interpolation == cv2.INTER_LINEAR

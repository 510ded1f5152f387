"""NV12 -> RGB in torch (the GPU path's maths, run here on CPU) against PyAV's own conversion."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import ColorRange, Colorspace

from pipeline.preprocess import color_spec, letterbox_frames, nv12_to_rgb
from pipeline.sources.cpu import to_rgb24
from pipeline.types import ColorSpec, Frame


def tagged_clip(path: Path, *, matrix: str, full: bool, width: int = 320, height: int = 240) -> Path:
    """A short clip with smooth colour gradients and moving blocks, tagged with matrix and range."""
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=25)
        assert isinstance(s, av.VideoStream)
        s.width, s.height, s.pix_fmt = width, height, "yuvj420p" if full else "yuv420p"
        cc = s.codec_context
        cc.colorspace = 1 if matrix == "bt709" else 6
        cc.color_range = 2 if full else 1
        s.options = {"preset": "ultrafast", "crf": "12"}
        for i in range(10):
            img = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy + 8 * i) % 256)], axis=2)
            img[40 + i * 4 : 90 + i * 4, 60:140] = (220, 30, 40)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24").reformat(
                format=s.pix_fmt,
                dst_colorspace=Colorspace.ITU709 if matrix == "bt709" else Colorspace.ITU601,
                dst_color_range=ColorRange.JPEG if full else ColorRange.MPEG,
            )
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def compare(path: Path, expect: ColorSpec | None = None, frames: int = 5) -> list[float]:
    errors = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            spec = color_spec(f.colorspace, f.color_range, f.height, f.format.name)
            if expect is not None:
                assert spec == expect
            nv12 = torch.from_numpy(f.to_ndarray(format="nv12"))
            ours = nv12_to_rgb(nv12[None], color=spec)[0].permute(1, 2, 0).numpy()
            ref = to_rgb24(f, spec).astype(np.float32)
            errors.append(float(np.abs(ours - ref).mean()))
            if i + 1 == frames:
                break
    return errors


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full", [False, True])
def test_generated_footage_all_matrices_and_ranges(tmp_path: Path, matrix: str, full: bool) -> None:
    clip = tagged_clip(tmp_path / "c.mp4", matrix=matrix, full=full)
    errors = compare(clip, ColorSpec(matrix, full))  # type: ignore[arg-type]
    assert max(errors) < 1.0, errors  # mean error under 1/255


def test_real_footage(samples: dict[str, Path]) -> None:
    for clip in samples.values():
        errors = compare(clip)
        assert max(errors) < 1.0, (clip.name, errors)


def test_the_wrong_matrix_is_caught(tmp_path: Path) -> None:
    clip = tagged_clip(tmp_path / "c.mp4", matrix="bt709", full=False)
    with av.open(str(clip)) as c:
        f = next(c.decode(video=0))
    nv12 = torch.from_numpy(f.to_ndarray(format="nv12"))
    ref = to_rgb24(f, ColorSpec("bt709", False)).astype(np.float32)
    wrong = nv12_to_rgb(nv12[None], color=ColorSpec("bt601", False))[0].permute(1, 2, 0).numpy()
    wrong_range = nv12_to_rgb(nv12[None], color=ColorSpec("bt709", True))[0].permute(1, 2, 0).numpy()
    assert np.abs(wrong - ref).mean() > 2.0
    assert np.abs(wrong_range - ref).mean() > 2.0


def test_untagged_streams_follow_the_convention() -> None:
    assert color_spec(2, 0, 480) == ColorSpec("bt601", False)
    assert color_spec(2, 0, 1080) == ColorSpec("bt709", False)
    assert color_spec(1, 2, 480) == ColorSpec("bt709", True)
    assert color_spec(5, 0, 1080, "yuvj420p") == ColorSpec("bt601", True)


def test_nv12_frames_letterbox_like_rgb_frames(samples: dict[str, Path]) -> None:
    with av.open(str(samples["bikes.mp4"])) as c:
        f = next(c.decode(video=0))
    spec = color_spec(f.colorspace, f.color_range, f.height, f.format.name)
    rgb = Frame("c", torch.from_numpy(to_rgb24(f, spec)), 0.0, 0, 0.0)
    nv12 = Frame("c", torch.from_numpy(f.to_ndarray(format="nv12")), 0.0, 0, 0.0, "nv12", spec)
    assert (nv12.height, nv12.width) == (rgb.height, rgb.width) == (272, 640)
    a, lb_a = letterbox_frames([rgb, nv12], size=320, rect=True)
    assert lb_a[0] == lb_a[1]
    assert (a[0] - a[1]).abs().mean() * 255 < 1.0
    assert (nv12.rgb().float() - rgb.data.float()).abs().mean() < 1.0


def test_frame_validates_nv12_shape() -> None:
    with pytest.raises(ValueError, match="nv12"):
        Frame("c", torch.zeros((100, 64), dtype=torch.uint8), 0.0, 0, 0.0, "nv12")
    with pytest.raises(ValueError, match="rgb24"):
        Frame("c", torch.zeros((96, 64), dtype=torch.uint8), 0.0, 0, 0.0)

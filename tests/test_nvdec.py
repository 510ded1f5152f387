"""The NVDEC source's decisions that need no GPU: colour tags read by name from PyNvVideoCodec's own
enums, streams NVDEC cannot decode (refused at open or by the decoder) going to PyAV with
``decoder: auto`` or failing that camera alone with ``decoder: nvdec``. PyNvVideoCodec itself cannot
be imported without a driver: ``tests/nvc_standin.py`` stands in for it (same names, enums,
exceptions); the frames then come from the real PyAV path. The GPU tests check the decoding itself."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pipeline.config import CameraConfig
from pipeline.preprocess import color_spec
from pipeline.sources import nvdec
from pipeline.sources.cpu import CameraState, Pixels
from pipeline.types import ColorSpec, Frame

from . import nvc_standin as nvc


@pytest.mark.parametrize(
    ("colorspace", "color_range", "height", "expect"),
    [
        (nvc.ColorSpace.UNSPEC, nvc.ColorRange.UDEF, 1080, ColorSpec("bt709", False)),  # untagged 1080p
        (nvc.ColorSpace.UNSPEC, nvc.ColorRange.UDEF, 480, ColorSpec("bt601", False)),  # untagged SD
        (nvc.ColorSpace.BT_709, nvc.ColorRange.MPEG, 480, ColorSpec("bt709", False)),
        (nvc.ColorSpace.BT_601, nvc.ColorRange.JPEG, 1080, ColorSpec("bt601", True)),
        (nvc.ColorSpace.UNSPEC, nvc.ColorRange.JPEG, 720, ColorSpec("bt709", True)),
    ],
)
def test_the_demuxers_colour_tags_are_read_by_name(
    colorspace: Any, color_range: Any, height: int, expect: ColorSpec
) -> None:
    assert nvdec.demuxer_color_spec(colorspace, color_range, height) == expect


def test_an_untagged_stream_gets_exactly_the_pyav_paths_defaults() -> None:
    """Read as integers, UDEF (2) is FFmpeg's AVCOL_RANGE_JPEG: every untagged stream became full range."""
    for height in (240, 576, 720, 1080):
        got = nvdec.demuxer_color_spec(nvc.ColorSpace.UNSPEC, nvc.ColorRange.UDEF, height)
        assert got == color_spec(None, None, height)
    assert color_spec(
        nvc.ColorSpace.UNSPEC.value, nvc.ColorRange.UDEF.value, 1080
    ).full_range  # the old reading


def test_enum_names_as_pybind11_prints_them() -> None:
    assert nvdec.enum_name(SimpleNamespace(name="420")) == "420"

    class Printed:  # an enum value without .name, printed as pybind11 does
        def __str__(self) -> str:
            return "ColorRange.JPEG"

    assert nvdec.enum_name(Printed()) == "JPEG"


def run_nvdec_source(
    clip: Path, monkeypatch: pytest.MonkeyPatch, *, fallback: bool, **standin: Any
) -> tuple[nvdec.NvdecCameraSource, list[Frame], list[tuple[str, str]]]:
    monkeypatch.setattr(nvdec, "load_nvc", lambda: nvc.module(**standin))
    frames: list[Frame] = []
    told: list[tuple[str, str]] = []
    cam = CameraConfig(
        id="cam", source=str(clip), realtime=False, analytics_fps=5, reconnect_initial_seconds=0.05
    )
    src = nvdec.NvdecCameraSource(
        cam,
        device=torch.device("cuda:0"),
        fallback=fallback,
        on_decoder=lambda c, d: told.append((c, d)),
        emit=lambda f, b: frames.append(f) or True,
        stop_event=threading.Event(),
    )
    # no GPU here: the camera's CUDA stream is a stand-in too (only its handle is read)
    monkeypatch.setattr(src, "_cuda_stream", lambda: SimpleNamespace(cuda_stream=0))
    src.start()
    src.join(20)
    assert not src.is_alive()
    return src, frames, told


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        ({"bit_depth": 10}, "NVDEC cannot decode this stream: 10-bit video"),
        ({"chroma": "444"}, "NVDEC cannot decode this stream: 444 chroma"),
    ],
)
def test_with_decoder_auto_a_stream_nvdec_cannot_decode_goes_to_pyav(
    clips: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stream: dict,
    why: str,
) -> None:
    with caplog.at_level(logging.WARNING):
        src, frames, told = run_nvdec_source(clips[0], monkeypatch, fallback=True, stream=stream)
    assert src.state == CameraState.FINISHED and src.decoder == "pyav" and told == [("cam", "pyav")]
    assert len(frames) == 10 and all(f.pixel_format == "rgb24" for f in frames)  # decoded by PyAV
    assert why in caplog.text and "decoding it with PyAV on the CPU instead" in caplog.text


def test_with_decoder_nvdec_it_is_that_cameras_error(
    clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, frames, told = run_nvdec_source(clips[0], monkeypatch, fallback=False, stream={"bit_depth": 10})
    assert src.state == CameraState.FAILED and not frames and not told
    assert src.last_error.startswith("NVDEC cannot decode this stream: 10-bit video")


def test_a_decoder_that_refuses_the_stream_in_decode_is_caught_and_falls_back(
    clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real decoder is created inside the first Decode(), and PyNvVCExceptionUnsupported is not a
    PyNvVCException: caught all the same, the camera goes to PyAV on its next open."""
    refusal = nvc.PyNvVCExceptionUnsupported("codec not supported on this GPU")
    src, frames, told = run_nvdec_source(clips[0], monkeypatch, fallback=True, decode_error=refusal)
    assert src.errors == 1 and src.decoder == "pyav" and told == [("cam", "pyav")]
    assert src.state == CameraState.FINISHED and len(frames) == 10


@pytest.fixture
def frames_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in decoder's frames are copied out as small CPU images (there is no GPU to copy on)."""

    def copy(self: nvdec.NvdecCameraSource, frame: Any, spec: ColorSpec) -> Pixels:
        return Pixels(torch.zeros((4, 6, 3), dtype=torch.uint8), "rgb24", ColorSpec())

    monkeypatch.setattr(nvdec.NvdecCameraSource, "_copy", copy)


def run_for(src: nvdec.NvdecCameraSource, seconds: float) -> None:
    src.start()
    src.join(seconds)
    src.stop_event.set()
    src.join(5)
    assert not src.is_alive()


def standin_source(
    clip: Path, monkeypatch: pytest.MonkeyPatch, *, loop: bool, **standin: Any
) -> nvdec.NvdecCameraSource:
    monkeypatch.setattr(nvdec, "load_nvc", lambda: nvc.module(**standin))
    cam = CameraConfig(id="cam", source=str(clip), loop=loop, realtime=False, reconnect_initial_seconds=0.05)
    src = nvdec.NvdecCameraSource(
        cam, device=torch.device("cuda:0"), emit=lambda f, b: True, stop_event=threading.Event()
    )
    monkeypatch.setattr(src, "_cuda_stream", lambda: SimpleNamespace(cuda_stream=0))
    return src


def test_a_looped_file_reuses_its_decoder_after_each_clean_end(
    clips: list[Path], monkeypatch: pytest.MonkeyPatch, frames_on_the_cpu: None
) -> None:
    made: list[nvc.Decoder] = []
    src = standin_source(clips[0], monkeypatch, loop=True, decoders=made)
    run_for(src, 0.5)
    assert src.frames_decoded > 20  # many loops of the 3 packets
    assert len(made) == 1  # one decoder for all of them, flushed at each end


def test_a_decoder_that_failed_is_not_reused_and_a_late_refusal_is_no_fallback(
    clips: list[Path], monkeypatch: pytest.MonkeyPatch, frames_on_the_cpu: None
) -> None:
    """'Unsupported' from a decoder that has already given frames is a damaged stream, not a stream
    NVDEC cannot decode: the play ends there, NVDEC keeps the camera, and the failed decoder is dropped."""
    made: list[nvc.Decoder] = []
    refusal = nvc.PyNvVCExceptionUnsupported("Resolution not supported")  # e.g. a garbage SPS mid-stream
    src = standin_source(clips[0], monkeypatch, loop=False, decoders=made, decode_script={2: refusal})
    run_for(src, 5.0)
    assert src.decoder == "nvdec" and src.state == CameraState.FINISHED and src.errors == 1
    assert src.frames_decoded == 1 and len(made) == 1 and src._nv_decoder is None


def test_with_no_pyav_the_fallback_is_a_clear_error(
    clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # a GPU server with NVDEC and no PyAV
    src = standin_source(clips[0], monkeypatch, loop=False, stream={"bit_depth": 10})
    with pytest.raises(Exception) as err:
        src._use_pyav("NVDEC cannot decode this stream: 10-bit video")
    assert "PyAV is not installed to decode it on the CPU" in str(err.value) and src.decoder == "nvdec"

"""A stand-in for PyNvVideoCodec 2.2.4 on machines without an NVIDIA driver (where importing the real
module raises): the same names, enums (members and values as the 2.2.4 wheel's compiled module has
them) and exception classes (``PyNvVCExceptionUnsupported`` does not derive from ``PyNvVCException``),
and a demuxer that reports what a test says. It decodes nothing: tests use it for what happens before
and around decoding (stream checks, colour tags, falling back to PyAV)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any


class ColorSpace(enum.Enum):
    BT_601 = 0
    BT_709 = 1
    UNSPEC = 2


class ColorRange(enum.Enum):
    MPEG = 0
    JPEG = 1
    UDEF = 2


class cudaVideoCodec(enum.Enum):  # noqa: N801
    H264 = 4
    HEVC = 8


class OutputColorType(enum.Enum):
    NATIVE = 0
    RGB = 1
    RGBP = 2


class PyNvVCException(Exception):
    pass


class PyNvVCExceptionUnsupported(Exception):  # not a PyNvVCException, as in 2.2.4
    pass


class PacketData:
    def __init__(self) -> None:
        self.bsl = 0
        self.bsl_data = 0
        self.pts = 0


class Demuxer:
    def __init__(self, stream: dict[str, Any]) -> None:
        self.stream = stream

    def BitDepth(self) -> int:  # noqa: N802 - the library's API
        return int(self.stream.get("bit_depth", 8))

    def ChromaFormat(self) -> Any:  # noqa: N802 - a cudaVideoChromaFormat; its members are named "420" ...
        return SimpleNamespace(name=self.stream.get("chroma", "420"))

    def ColorSpace(self) -> ColorSpace:  # noqa: N802
        return self.stream.get("colorspace", ColorSpace.UNSPEC)

    def ColorRange(self) -> ColorRange:  # noqa: N802
        return self.stream.get("color_range", ColorRange.UDEF)

    def Height(self) -> int:  # noqa: N802
        return int(self.stream.get("height", 1080))

    def FrameRate(self) -> float:  # noqa: N802
        return float(self.stream.get("fps", 25.0))

    def GetNvCodecId(self) -> cudaVideoCodec:  # noqa: N802
        return cudaVideoCodec.H264

    def __iter__(self) -> Iterator[PacketData]:
        return iter([PacketData() for _ in range(3)])


class Decoder:
    def __init__(self, refuse: Exception | None) -> None:
        self.refuse = refuse

    def Decode(self, packet: PacketData) -> list[Any]:  # noqa: N802
        if self.refuse is not None:
            raise self.refuse
        return []


def module(*, stream: dict[str, Any] | None = None, decode_error: Exception | None = None) -> SimpleNamespace:
    """A PyNvVideoCodec whose demuxer reports ``stream`` and whose decoder raises ``decode_error``."""
    return SimpleNamespace(
        ColorSpace=ColorSpace,
        ColorRange=ColorRange,
        cudaVideoCodec=cudaVideoCodec,
        OutputColorType=OutputColorType,
        PyNvVCException=PyNvVCException,
        PyNvVCExceptionUnsupported=PyNvVCExceptionUnsupported,
        PacketData=PacketData,
        CreateDemuxer=lambda filename: Demuxer(stream or {}),
        CreateDecoder=lambda **kwargs: Decoder(decode_error),
    )

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
        packets = [PacketData() for _ in range(3)]
        for p in packets:
            p.bsl = 100
        return iter(packets)


class Decoder:
    """Decodes each packet into one stand-in frame (or raises what ``script`` says for that call)."""

    def __init__(self, script: dict[int, Exception]) -> None:
        self.script = script
        self.calls = 0

    def Decode(self, packet: PacketData) -> list[Any]:  # noqa: N802
        self.calls += 1
        err = self.script.get(self.calls) or self.script.get(0)
        if err is not None:
            raise err
        return [] if packet.bsl == 0 else [SimpleNamespace(getPTS=lambda: 0)]


def module(
    *,
    stream: dict[str, Any] | None = None,
    decode_error: Exception | None = None,
    decode_script: dict[int, Exception] | None = None,
    decoders: list[Decoder] | None = None,
) -> SimpleNamespace:
    """A PyNvVideoCodec whose demuxer reports ``stream`` and whose decoders raise ``decode_error`` on
    every call, or per ``decode_script`` (call number -> exception); each decoder made is appended
    to ``decoders``."""
    made = decoders if decoders is not None else []
    script = decode_script or ({0: decode_error} if decode_error is not None else {})

    def create_decoder(**kwargs: Any) -> Decoder:
        made.append(Decoder(dict(script)))
        return made[-1]

    return SimpleNamespace(
        ColorSpace=ColorSpace,
        ColorRange=ColorRange,
        cudaVideoCodec=cudaVideoCodec,
        OutputColorType=OutputColorType,
        PyNvVCException=PyNvVCException,
        PyNvVCExceptionUnsupported=PyNvVCExceptionUnsupported,
        PacketData=PacketData,
        CreateDemuxer=lambda filename: Demuxer(stream or {}),
        CreateDecoder=create_decoder,
    )

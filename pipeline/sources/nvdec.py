"""NVDEC decoding: PyNvVideoCodec decodes on the GPU. Network sources are demuxed by PyAV (its RTSP
timeouts and TCP transport, http), and so are local files whose packets are kept for evidence clips
(the Annex B packets NVDEC gets are the ones kept); other local files by PyNvVideoCodec's own demuxer.

Every frame is decoded; a sampled frame's NV12 surface becomes a torch CUDA tensor through DLPack
(no host copy) and is copied at once, because the decoder reuses its frame pool on the next call.
Each camera decodes and copies on a CUDA stream of its own (so decoding never waits for inference on
the default stream), and the copy's event travels with the frame: whoever reads the frame on another
stream waits for that event (``Frame.pixels``). Colour conversion happens later, batched, in
preprocess, with the stream's matrix and range (the library's own RGB output assumes limited range).

A stream NVDEC cannot decode (10-bit, 4:2:2 / 4:4:4, a codec other than H.264 and HEVC, or one the
library itself refuses) is, with ``decoder: auto``, decoded by PyAV on the CPU for that camera (with a
warning and the camera's ``safecity_camera_decoder`` label); with ``decoder: nvdec`` it is that
camera's error, and the other cameras go on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import BackendUnavailableError, SourceError
from ..preprocess import color_spec
from ..types import ColorSpec
from .cpu import CameraSource, Decoded, Opened, Pixels, open_container

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

# PyAV codec name -> (bitstream filter to Annex B, PyNvVideoCodec codec enum member)
CODECS = {"h264": ("h264_mp4toannexb", "H264"), "hevc": ("hevc_mp4toannexb", "HEVC")}
NVDEC_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "nv12"})  # 8-bit 4:2:0: what comes out as NV12


def load_nvc() -> Any:
    """PyNvVideoCodec, or a clear error: its import raises without an NVIDIA driver."""
    try:
        import PyNvVideoCodec as nvc
    except (ImportError, RuntimeError, OSError) as err:
        raise BackendUnavailableError(
            f"NVDEC decoding needs PyNvVideoCodec and an NVIDIA driver: {err}"
        ) from err
    return nvc


def nvdec_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        load_nvc()
    except BackendUnavailableError:
        return False
    return True


def enum_name(value: Any) -> str:
    """The member name of a PyNvVideoCodec (pybind11) enum value: ``ColorSpace.BT_709`` -> ``BT_709``,
    ``cudaVideoChromaFormat.420`` -> ``420``. Enums are read by name, never by their integer values,
    which differ from FFmpeg's codes."""
    name = getattr(value, "name", None)
    return str(name if name is not None else value).rsplit(".", 1)[-1]


def demuxer_color_spec(colorspace: Any, color_range: Any, height: int) -> ColorSpec:
    """The colour spec from PyNvVideoCodec's demuxer, whose enums (2.2: ``ColorSpace`` BT_601 = 0,
    BT_709 = 1, UNSPEC = 2; ``ColorRange`` MPEG = 0, JPEG = 1, UDEF = 2) are not FFmpeg's codes:
    mapped by member name, and an untagged stream gets exactly the defaults of the PyAV path."""
    matrix = {"BT_709": 1, "BT_601": 5}.get(enum_name(colorspace))  # as FFmpeg's AVColorSpace
    full = {"JPEG": 2, "MPEG": 1}.get(enum_name(color_range))  # as FFmpeg's AVColorRange
    return color_spec(matrix, full, height)


def unsupported_format(*, bit_depth: int, chroma: str) -> str | None:
    """Why NVDEC output would not be NV12 (None if it would): 10-bit streams come out as P016 and 4:4:4
    as three full planes, which the preprocessing does not take."""
    if bit_depth != 8:
        return f"{bit_depth}-bit video (NVDEC gives 16-bit P016; only 8-bit 4:2:0 is taken)"
    if chroma not in ("420", "YUV420"):
        return f"{chroma} chroma (only 4:2:0 is taken)"
    return None


class NvdecCameraSource(CameraSource):
    """A camera decoded by NVDEC on ``device`` (pacing, sampling and reconnects as for CPU cameras).

    ``fallback``: a stream NVDEC cannot decode is decoded by PyAV instead (``decoder: auto``); else it
    is an error of this camera (``decoder: nvdec``). ``on_decoder(camera_id, decoder)`` is told which
    decoder the camera uses."""

    def __init__(
        self,
        *args: Any,
        device: torch.device,
        fallback: bool = True,
        on_decoder: Callable[[str, str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.device = device
        self.fallback = fallback
        self.on_decoder = on_decoder
        self.decoder = "nvdec"
        self.nvc = load_nvc()
        # PyNvVCExceptionUnsupported does not derive from PyNvVCException: both are caught wherever
        # the library is called (looked up once: Decode runs for every packet)
        names = ("PyNvVCException", "PyNvVCExceptionUnsupported")
        self._errors: tuple[type[BaseException], ...] = tuple(
            getattr(self.nvc, n) for n in names if isinstance(getattr(self.nvc, n, None), type)
        )
        self._unsupported: str | None = None  # why NVDEC refused this camera's stream, once it did
        self._stream: torch.cuda.Stream | None = None
        # (codec, decoder) of the last play, reused by the next only when that play ended in a flush
        self._nv_decoder: tuple[str, Any] | None = None
        self._flushed = False
        self._frames_this_play = 0

    def _open(self) -> Opened:
        if self.decoder == "nvdec" and self._unsupported is not None:
            self._use_pyav(self._unsupported)
        if self.decoder == "pyav":
            return super()._open()
        try:
            # cameras and recordings over a network, and files whose packets are kept for clips: PyAV's
            # demuxer
            if "://" in self.cam.source or (self.recorder is not None and self._can_record()):
                return self._open_demuxed()
            return self._open_file()
        except SourceError as err:
            if err.reason != "unsupported" or not self.fallback:
                raise
            self._use_pyav(str(err))
            return super()._open()

    def _can_record(self) -> bool:
        """Whether PyAV is there to demux a local file's packets for clips (else, once said, none)."""
        try:
            import av  # noqa: F401
        except ImportError:
            log.warning("camera %s: PyAV is not installed: its incidents come without clips", self.cam.id)
            self.recorder = None
            return False
        return True

    def _use_pyav(self, why: str) -> None:
        if not self.fallback:
            raise SourceError(why, camera_id=self.cam.id, reason="unsupported")
        try:
            import av  # noqa: F401 - GPU servers may have NVDEC and no PyAV
        except ImportError:
            raise SourceError(
                f"{why}, and PyAV is not installed to decode it on the CPU",
                camera_id=self.cam.id,
                reason="unsupported",
            ) from None
        log.warning("camera %s: %s; decoding it with PyAV on the CPU instead", self.cam.id, why)
        self.decoder = "pyav"
        if self.on_decoder:
            self.on_decoder(self.cam.id, "pyav")

    def _refuse(self, why: str) -> SourceError:
        """NVDEC cannot take this stream: remembered, so the next open goes to PyAV (or fails again)."""
        self._unsupported = f"NVDEC cannot decode this stream: {why}"
        return SourceError(self._unsupported, camera_id=self.cam.id, reason="unsupported")

    def _cuda_stream(self) -> torch.cuda.Stream:
        """The camera's stream, from torch's pool of low-priority streams (shared by cameras when
        there are more than 32 of them; preprocessing and inference use high-priority ones)."""
        if self._stream is None:
            torch.cuda.set_device(self.device)
            self._stream = torch.cuda.Stream(self.device)
        return self._stream

    def _decoder(self, codec: Any) -> Any:
        """An NVDEC decoder for ``codec`` on this camera's CUDA stream; the one of the last play when
        the codec is the same (a looped file reuses it: no create and destroy per loop)."""
        key = enum_name(codec)
        self._frames_this_play = 0
        reusable, self._flushed = self._flushed, False
        if reusable and self._nv_decoder is not None and self._nv_decoder[0] == key:
            return self._nv_decoder[1]
        stream = self._cuda_stream()
        try:
            decoder = self.nvc.CreateDecoder(
                gpuid=self.device.index or 0,
                codec=codec,
                cudacontext=0,  # the primary context, which torch uses too
                cudastream=stream.cuda_stream,  # not 0: 2.x would then synchronise on the default stream
                usedevicememory=True,
                outputColorType=self.nvc.OutputColorType.NATIVE,
            )
        except self._errors as err:
            raise self._refuse(str(err)) from err
        self._nv_decoder = (key, decoder)
        return decoder

    def _decode_packet(self, decoder: Any, packet: Any) -> list[Any]:
        """Decode one packet (the real decoder is created inside the first ``Decode``: an unsupported
        stream is found here too)."""
        try:
            frames = list(decoder.Decode(packet))
        except self._errors as err:
            self._nv_decoder = None  # not reused after an error
            # refused before its first frame: NVDEC cannot take the stream; later, a damaged one
            if type(err).__name__.endswith("Unsupported") and self._frames_this_play == 0:
                raise self._refuse(str(err)) from err
            raise SourceError(f"NVDEC: {err}", camera_id=self.cam.id, reason="decode") from err
        self._frames_this_play += len(frames)
        return frames

    def _flush(self, decoder: Any) -> list[Any]:
        """The frames the decoder still holds at the end of a play (an empty packet flushes it)."""
        flush = self.nvc.PacketData()
        flush.bsl = 0
        frames = self._decode_packet(decoder, flush)
        self._flushed = True  # a clean end: the next play may reuse the decoder
        return frames

    def _open_file(self) -> Opened:
        """A local file through PyNvVideoCodec's demuxer; pts come from the frame count and frame rate."""
        nvc = self.nvc
        if not Path(self.cam.source).is_file():
            raise SourceError(f"file not found: {self.cam.source}", camera_id=self.cam.id, reason="not_found")
        try:
            dmx = nvc.CreateDemuxer(filename=self.cam.source)
        except self._errors as err:
            raise SourceError(
                f"cannot open {self.cam.source}: {err}", camera_id=self.cam.id, reason="open"
            ) from err
        why = unsupported_format(bit_depth=int(dmx.BitDepth()), chroma=enum_name(dmx.ChromaFormat()))
        if why is not None:
            raise self._refuse(why)
        spec = demuxer_color_spec(dmx.ColorSpace(), dmx.ColorRange(), int(dmx.Height()))
        decoder = self._decoder(dmx.GetNvCodecId())

        def frames() -> Iterator[Decoded]:
            for packet in dmx:
                for frame in self._decode_packet(decoder, packet):
                    yield None, functools.partial(self._copy, frame, spec)
            for frame in self._flush(decoder):
                yield None, functools.partial(self._copy, frame, spec)

        rate = float(dmx.FrameRate() or 0.0)  # avg num/den: NaN for 0/0 (a raw stream)
        return Opened(frames(), 1.0, rate if rate > 0 else None, lambda: None)

    def _open_demuxed(self) -> Opened:
        container = open_container(self.cam)
        try:
            stream = container.streams.video[0]
            tb = float(stream.time_base) if stream.time_base else 1.0 / 90000
            rate = float(stream.average_rate) if stream.average_rate else None
            frames = self._nvdec_frames(container, stream)
        except BaseException:
            container.close()
            raise
        return Opened(frames, tb, rate, container.close, self._live_of(container))

    def _nvdec_frames(
        self, container: av.container.InputContainer, stream: av.VideoStream
    ) -> Iterator[Decoded]:
        """PyAV's packets, made Annex B, into NVDEC (checked at once: the generator starts later)."""
        from av.bitstream import BitStreamFilterContext

        name = stream.codec_context.name
        if name not in CODECS:
            raise self._refuse(f"{name} (NVDEC takes H.264 and HEVC here)")
        cc = stream.codec_context
        if cc.pix_fmt is not None and cc.pix_fmt not in NVDEC_PIX_FMTS:  # unknown: NVDEC may still take it
            raise self._refuse(f"pixel format {cc.pix_fmt} (only 8-bit 4:2:0 is taken)")
        bsf_name, codec = CODECS[name]
        spec = color_spec(cc.colorspace, cc.color_range, cc.height, cc.pix_fmt or "")
        decoder = self._decoder(getattr(self.nvc.cudaVideoCodec, codec))
        bsf = BitStreamFilterContext(bsf_name, in_stream=stream)
        if self.recorder is not None:  # the packets NVDEC gets, Annex B, are the ones kept for clips
            self.recorder.begin(stream, period_s=1.0 / float(stream.average_rate or 25), filtered=True)
        return self._annexb_frames(container, stream, bsf, decoder, spec)

    def _annexb_frames(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        bsf: Any,
        decoder: Any,
        spec: ColorSpec,
    ) -> Iterator[Decoded]:
        nvc = self.nvc
        timed = True  # packets without pts (some raw streams): frames go untimed, one period each

        def frames_of(packet: av.Packet | None) -> Iterator[Decoded]:
            nonlocal timed
            for annexb in bsf.filter(packet):
                if self.recorder is not None:
                    self.recorder.add_annexb((annexb,))
                data = np.frombuffer(memoryview(annexb), dtype=np.uint8)  # kept alive until Decode returns
                pkt = nvc.PacketData()
                pkt.bsl_data = data.ctypes.data
                pkt.bsl = data.size
                if annexb.pts is not None:
                    pkt.pts = annexb.pts
                else:
                    timed = False
                for frame in self._decode_packet(decoder, pkt):
                    yield (frame.getPTS() if timed else None), functools.partial(self._copy, frame, spec)

        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            yield from frames_of(packet)
        yield from frames_of(None)  # drain the filter, then the decoder
        for frame in self._flush(decoder):
            yield (frame.getPTS() if timed else None), functools.partial(self._copy, frame, spec)

    def _copy(self, frame: Any, spec: ColorSpec) -> Pixels:
        """The frame's NV12 surface copied out of the decoder's pool, on this camera's stream; the
        event recorded after the copy is what readers on other streams wait for."""
        stream = self._cuda_stream()
        with torch.cuda.stream(stream):
            nv12 = torch.from_dlpack(frame)  # (H * 3 // 2, W) uint8, aliasing the pool; waits for the decode
            copy = nv12.clone()
            ready = torch.cuda.Event()
            ready.record(stream)
        return Pixels(copy, "nv12", spec, ready)

"""NVDEC decoding: PyNvVideoCodec decodes on the GPU. Network sources are demuxed by PyAV (its RTSP
timeouts and TCP transport, http); local files by PyNvVideoCodec's own demuxer (no PyAV needed).

Every frame is decoded; a sampled frame's NV12 surface becomes a torch CUDA tensor through DLPack
(no host copy) and is cloned at once, because the decoder reuses its frame pool on the next call.
Colour conversion happens later, batched, in preprocess (with the stream's matrix and range: the
library's own RGB output assumes limited range).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import BackendUnavailableError, SourceError
from ..preprocess import color_spec
from ..types import ColorSpec
from .cpu import CameraSource, Decoded, Opened, open_container

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

# PyAV codec name -> (bitstream filter to Annex B, PyNvVideoCodec codec enum member)
CODECS = {"h264": ("h264_mp4toannexb", "H264"), "hevc": ("hevc_mp4toannexb", "HEVC")}


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


class NvdecCameraSource(CameraSource):
    """A camera decoded by NVDEC on ``device`` (pacing, sampling and reconnects as for CPU cameras)."""

    def __init__(self, *args: Any, device: torch.device, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device = device
        self.nvc = load_nvc()

    def _open(self) -> Opened:
        if "://" in self.cam.source:  # cameras and recordings over a network: PyAV's demuxer
            container = open_container(self.cam)
            stream = container.streams.video[0]
            tb = float(stream.time_base) if stream.time_base else 1.0 / 90000
            rate = float(stream.average_rate) if stream.average_rate else None
            return Opened(
                self._decode(container, stream), tb, rate, container.close, self._live_of(container)
            )
        return self._open_file()

    def _decoder(self, codec: Any) -> Any:
        torch.cuda.set_device(self.device)
        try:
            return self.nvc.CreateDecoder(
                gpuid=self.device.index or 0,
                codec=codec,
                cudacontext=0,  # the primary context, which torch uses too
                cudastream=torch.cuda.current_stream(self.device).cuda_stream,
                usedevicememory=True,
                outputColorType=self.nvc.OutputColorType.NATIVE,
            )
        except self.nvc.PyNvVCException as err:
            raise SourceError(
                f"NVDEC cannot decode this stream: {err}", camera_id=self.cam.id, reason="unsupported"
            ) from err

    def _open_file(self) -> Opened:
        """A file through PyNvVideoCodec's demuxer; pts come from the frame count and frame rate."""
        nvc = self.nvc
        if not Path(self.cam.source).is_file():
            raise SourceError(f"file not found: {self.cam.source}", camera_id=self.cam.id, reason="not_found")
        try:
            dmx = nvc.CreateDemuxer(filename=self.cam.source)
        except nvc.PyNvVCException as err:
            raise SourceError(
                f"cannot open {self.cam.source}: {err}", camera_id=self.cam.id, reason="open"
            ) from err
        try:
            spec = color_spec(int(dmx.ColorSpace()), int(dmx.ColorRange()), int(dmx.Height()))
        except (TypeError, ValueError, AttributeError):
            spec = color_spec(None, None, int(dmx.Height()))
        decoder = self._decoder(dmx.GetNvCodecId())

        def frames() -> Iterator[Decoded]:
            for packet in dmx:
                for frame in decoder.Decode(packet):
                    yield None, functools.partial(self._to_tensor, frame, spec)

        return Opened(frames(), 1.0, float(dmx.FrameRate() or 25.0), lambda: None)

    def _decode(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[Decoded]:
        """PyAV's packets, made Annex B, into NVDEC."""
        from av.bitstream import BitStreamFilterContext

        nvc = self.nvc
        name = stream.codec_context.name
        if name not in CODECS:
            raise SourceError(
                f"NVDEC path takes H.264 or HEVC, the stream is {name}",
                camera_id=self.cam.id,
                reason="unsupported",
            )
        bsf_name, codec = CODECS[name]
        cc = stream.codec_context
        spec = color_spec(cc.colorspace, cc.color_range, cc.height, cc.pix_fmt or "")
        decoder = self._decoder(getattr(nvc.cudaVideoCodec, codec))
        bsf = BitStreamFilterContext(bsf_name, in_stream=stream)

        def frames_of(packet: av.Packet | None) -> Iterator[Decoded]:
            for annexb in bsf.filter(packet):
                data = np.frombuffer(memoryview(annexb), dtype=np.uint8)  # kept alive until Decode returns
                pkt = nvc.PacketData()
                pkt.bsl_data = data.ctypes.data
                pkt.bsl = data.size
                if annexb.pts is not None:
                    pkt.pts = annexb.pts
                for frame in decoder.Decode(pkt):
                    yield frame.getPTS(), functools.partial(self._to_tensor, frame, spec)

        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            yield from frames_of(packet)
        yield from frames_of(None)  # drain the filter; the decoder flushes on an empty packet
        flush = nvc.PacketData()
        flush.bsl = 0
        for frame in decoder.Decode(flush):
            yield frame.getPTS(), functools.partial(self._to_tensor, frame, spec)

    def _to_tensor(self, frame: Any, spec: ColorSpec) -> tuple[torch.Tensor, str, ColorSpec]:
        nv12 = torch.from_dlpack(frame)  # (H * 3 // 2, W) uint8 on the GPU, aliasing the frame pool
        return nv12.clone(), "nv12", spec

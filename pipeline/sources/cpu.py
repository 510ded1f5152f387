"""One thread per camera: PyAV demux + decode (files and RTSP), sampling, reconnect with backoff."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import CameraConfig
from ..errors import SourceError
from ..preprocess import color_spec
from ..types import ColorSpec, Frame

if TYPE_CHECKING:  # PyAV is imported where it is used: NVDEC servers can run without it
    import av

log = logging.getLogger(__name__)


class CameraState(enum.Enum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    FINISHED = "finished"
    STOPPED = "stopped"


class Sampler:
    """Chooses which decoded frames are analysed: ``fps`` frames per second of media time."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.next_t: float | None = None

    def take(self, t: float) -> bool:
        if self.next_t is None or t >= self.next_t - 1e-6:
            base = t if self.next_t is None or t - self.next_t > self.period else self.next_t
            self.next_t = base + self.period
            return True
        return False


def to_rgb24(frame: av.VideoFrame, spec: ColorSpec) -> np.ndarray:
    """RGB (H, W, 3) uint8 with the stream's own matrix and range (libswscale).

    Accurate rounding and full chroma interpolation: swscale's default fast path is off by about
    1.3/255 on average, these flags by 0.3/255 against exact maths (and they are faster here).
    """
    from av.video.reformatter import ColorRange, Colorspace, Interpolation

    return frame.reformat(
        format="rgb24",
        src_colorspace=Colorspace.ITU709 if spec.matrix == "bt709" else Colorspace.ITU601,
        src_color_range=ColorRange.JPEG if spec.full_range else ColorRange.MPEG,
        interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT,
    ).to_ndarray()


def open_container(cam: CameraConfig) -> av.container.InputContainer:
    """Open a camera's source with PyAV, with timeouts (and TCP transport for RTSP)."""
    import av

    options: dict[str, str] = {}
    if cam.source.startswith("rtsp://"):
        options = {
            "rtsp_transport": "tcp",
            "timeout": str(int(cam.read_timeout_seconds * 1e6)),
            "fflags": "nobuffer",
        }
    elif not cam.is_live and not Path(cam.source).is_file():
        raise SourceError(f"camera {cam.id}: file not found: {cam.source}")
    try:
        return av.open(
            cam.source, options=options, timeout=(cam.open_timeout_seconds, cam.read_timeout_seconds)
        )
    except (av.error.FFmpegError, OSError) as err:
        raise SourceError(f"camera {cam.id}: cannot open {cam.source}: {err}") from err


FrameCallback = Callable[[Frame, bool], bool]
# a decoded frame: its pts (stream time base) and how to get its pixels (tensor, pixel format, colour)
Decoded = tuple[int | None, Callable[[], tuple[torch.Tensor, str, ColorSpec]]]


@dataclass
class Opened:
    """An opened source: its decoded frames, time base and frame rate, and how to close it."""

    frames: Iterator[Decoded]
    time_base: float
    rate: float
    close: Callable[[], None]


def is_source_error(err: BaseException) -> bool:
    """Errors a camera is expected to have (unreachable, vanished, corrupt), as against bugs."""
    if isinstance(err, (SourceError, OSError)):
        return True
    try:
        import av
    except ImportError:
        return False
    return isinstance(err, av.error.FFmpegError)


class CameraSource(threading.Thread):
    """Decodes one camera every frame and hands the sampled frames, as RGB tensors, to ``emit``.

    ``emit(frame, block)`` returns False if the frame was dropped. Errors are logged, counted and
    retried with exponential backoff; the thread never takes other cameras down.
    """

    def __init__(
        self,
        cam: CameraConfig,
        *,
        emit: FrameCallback,
        stop_event: threading.Event,
        on_state: Callable[[str, CameraState], None] | None = None,
        on_decoded: Callable[[str, int], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"camera-{cam.id}", daemon=True)
        self.cam = cam
        self.emit = emit
        self.stop_event = stop_event
        self.on_state = on_state
        self.on_decoded = on_decoded
        self.on_error = on_error
        self.state = CameraState.STARTING
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.frames_dropped = 0
        self.errors = 0
        self.last_error = ""
        self._sampler = Sampler(cam.analytics_fps)
        self._time_offset = 0.0  # media time keeps increasing across loops and reconnects
        self._index = 0

    def _set_state(self, state: CameraState) -> None:
        if state != self.state:
            log.info("camera %s: %s -> %s", self.cam.id, self.state.value, state.value)
            self.state = state
            if self.on_state:
                self.on_state(self.cam.id, state)

    def run(self) -> None:
        backoff = self.cam.reconnect_initial_seconds
        while not self.stop_event.is_set():
            try:
                finished = self._play_once()
                backoff = self.cam.reconnect_initial_seconds
                if finished and not self.cam.loop and not self.cam.is_live:
                    self._set_state(CameraState.FINISHED)
                    return
                if self.cam.is_live and not self.stop_event.is_set():
                    raise SourceError(f"camera {self.cam.id}: stream ended")
            except Exception as err:  # a camera never takes the others down: log, count, retry
                if self.stop_event.is_set():
                    break
                self.errors += 1
                self.last_error = str(err)
                if is_source_error(err):
                    log.warning("camera %s: %s; retrying in %.1fs", self.cam.id, err, backoff)
                else:
                    log.exception("camera %s: unexpected error; retrying in %.1fs", self.cam.id, backoff)
                if self.on_error:
                    self.on_error(self.cam.id, type(err).__name__)
                self._set_state(CameraState.DOWN)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.cam.reconnect_max_seconds)
        self._set_state(CameraState.STOPPED)

    def _open(self) -> Opened:
        """Open the source with PyAV and decode it on the CPU."""
        container = open_container(self.cam)
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else 1.0 / 25
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        return Opened(self._decode(container, stream), tb, rate, container.close)

    def _decode(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[Decoded]:
        """Every frame of the stream, decoded by PyAV (FFmpeg, threaded); RGB only when asked."""
        stream.thread_type = "AUTO"
        spec: ColorSpec | None = None
        for frame in container.decode(stream):
            if spec is None:
                spec = color_spec(frame.colorspace, frame.color_range, frame.height, frame.format.name)

            def convert(
                frame: av.VideoFrame = frame, spec: ColorSpec = spec
            ) -> tuple[torch.Tensor, str, ColorSpec]:
                return torch.from_numpy(to_rgb24(frame, spec)), "rgb24", ColorSpec()

            yield frame.pts, convert

    def _play_once(self) -> bool:
        """Play the source once to its end. Returns True at a clean end of stream."""
        opened = self._open()
        tb, rate = opened.time_base, opened.rate
        try:
            self._set_state(CameraState.UP)
            start_wall = time.monotonic()
            first_t: float | None = None
            last_t = 0.0
            for raw_pts, convert in opened.frames:
                if self.stop_event.is_set():
                    return False
                pts = raw_pts * tb if raw_pts is not None else self._index / rate
                if first_t is None:
                    first_t = pts
                t = self._time_offset + (pts - first_t)
                last_t = t
                self.frames_decoded += 1
                self._index += 1
                if self.on_decoded:
                    self.on_decoded(self.cam.id, 1)
                if self.cam.realtime and not self.cam.is_live:
                    delay = (pts - first_t) - (time.monotonic() - start_wall)
                    if delay > 0 and self.stop_event.wait(delay):
                        return False
                if not self._sampler.take(t):
                    continue  # unsampled frames skip colour conversion and inference
                data, pixel_format, color = convert()  # before the decoder reuses the frame's buffer
                f = Frame(self.cam.id, data, t, self._index - 1, time.time(), pixel_format, color)  # type: ignore[arg-type]
                block = not (self.cam.realtime or self.cam.is_live)
                while not self.emit(f, block):
                    if not block:
                        self.frames_dropped += 1
                        break
                    if self.stop_event.is_set():
                        return False
                self.frames_sampled += 1
            self._time_offset = last_t + 1.0 / rate
            return True
        finally:
            opened.close()

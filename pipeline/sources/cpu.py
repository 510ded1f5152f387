"""One thread per camera: PyAV demux + decode (files and RTSP), sampling, reconnect with backoff.

A camera never goes blind: media time is monotonic by construction (``MediaClock``), a packet that
does not decode is skipped to the next keyframe and counted instead of dropping the stream, a live
camera that fails is reconnected with its clock going on, and a file that cannot be read further is
treated as ending there.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import urlsplit

import numpy as np
import torch

from ..config import CameraConfig
from ..errors import SourceError
from ..preprocess import color_spec
from ..types import ColorSpec, Frame, PixelFormat
from ..urls import redact, scheme, with_password
from .clock import MediaClock
from .interrupt import interruptible
from .packets import PacketRing, Recorder

if TYPE_CHECKING:  # PyAV is imported where it is used: NVDEC servers can run without it
    import av

log = logging.getLogger(__name__)

FILE_OPEN_ATTEMPTS = 3  # a local file that cannot be played this many times running: the camera has failed
MAX_BAD_PACKETS = 100  # packets in a row that do not decode: the stream is opened again
DEFAULT_RATE = 25.0  # frame rate assumed for a stream that does not say
ANOMALY_LOG_EVERY_S = 10.0  # decode errors and timestamp jumps: the first logged, then a count this often
# what an http(s) source is when it has no duration: a camera's stream, not a recording
LIVE_HTTP_FORMATS = frozenset({"mpjpeg", "mjpeg", "hls", "flv", "live_flv", "mpegts", "h264", "hevc"})


class CameraState(enum.Enum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    FINISHED = "finished"
    FAILED = "failed"  # a file that cannot be opened (missing, no video): given up, the run goes on
    STOPPED = "stopped"


DONE_STATES = frozenset({CameraState.FINISHED, CameraState.FAILED, CameraState.STOPPED})

Anomaly = Literal["decode_error", "timestamp_jump"]


class Sampler:
    """Chooses which decoded frames are analysed: ``fps`` frames per second of media time."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.next_t: float | None = None

    def take(self, t: float) -> bool:
        # media time is monotonic; a step back of more than a period would still not blind the camera
        if self.next_t is None or t >= self.next_t - 1e-6 or t < self.next_t - 2 * self.period:
            base = t if self.next_t is None or abs(t - self.next_t) > self.period else self.next_t
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


def rotate_rgb(rgb: np.ndarray, degrees: int) -> np.ndarray:
    """The frame as players show it: rotated ``degrees`` counter-clockwise (the display matrix's
    rotation, as FFmpeg's ``autorotate`` applies it), in steps of 90 degrees."""
    k = round(degrees / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def is_unauthorized(err: BaseException) -> bool:
    """The server refused the credentials (RTSP/HTTP 401 or 403)."""
    import av

    kinds = tuple(
        k for k in (getattr(av.error, n, None) for n in ("HTTPUnauthorizedError", "HTTPForbiddenError")) if k
    )
    return isinstance(err, kinds)


def describe_error(err: BaseException, *, source: str, live: bool = False) -> str:
    """What went wrong with ``source``, in words an operator can act on (no credentials)."""
    text = redact(getattr(err, "strerror", None) or str(err))
    if is_unauthorized(err):
        return f"{text}: the camera refused the user name or password"
    mp4 = urlsplit(source).path.lower().endswith((".mp4", ".mov", ".m4v", ".3gp"))
    if (
        not live
        and mp4
        and scheme(source) in ("http", "https")
        and ("Input/output" in text or "Invalid data" in text)
    ):
        return (
            f"{text} (an MP4 whose index is at the end needs a server that answers range requests; "
            "or remux it with `-movflags +faststart`)"
        )
    return text


MAX_PASSWORD_FILE = 4096


def source_url(cam: CameraConfig) -> str:
    """What is opened for ``cam``: its source, with the password of its ``credentials`` put in,
    read now (a rotated password is taken at the next reconnect). SourceError (``credentials``)
    when it cannot be read; the message names the file or variable, never what it holds."""
    creds = cam.credentials
    if creds is None:
        return cam.source
    if creds.password_file is not None:
        where = f"credentials.password_file {creds.password_file}"
        try:
            with open(creds.password_file, "rb") as f:
                raw = f.read(MAX_PASSWORD_FILE + 1)
        except OSError as err:
            raise SourceError(
                f"{where}: {err.strerror or err}", camera_id=cam.id, reason="credentials"
            ) from None
        if len(raw) > MAX_PASSWORD_FILE:
            raise SourceError(
                f"{where}: over {MAX_PASSWORD_FILE} bytes", camera_id=cam.id, reason="credentials"
            )
        try:
            password = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SourceError(f"{where}: not UTF-8 text", camera_id=cam.id, reason="credentials") from None
    else:
        where = f"credentials.password_env {creds.password_env}"
        password = os.environ.get(creds.password_env or "", "")
    if not password:
        raise SourceError(f"{where}: empty or unset", camera_id=cam.id, reason="credentials")
    return with_password(cam.source, password, creds.username)


def open_container(cam: CameraConfig) -> av.container.InputContainer:
    """Open a camera's source with PyAV, with timeouts (and TCP transport for RTSP)."""
    import av

    shown = redact(cam.source)
    options: dict[str, str] = {}
    kind = scheme(cam.source)
    if kind in ("rtsp", "rtsps"):
        options = {
            "rtsp_transport": cam.rtsp_transport,
            "timeout": str(int(cam.read_timeout_seconds * 1e6)),
            "fflags": "nobuffer",
        }
    elif kind is None and not Path(cam.source).is_file():
        raise SourceError(f"file not found: {cam.source}", camera_id=cam.id, reason="not_found")
    started = time.monotonic()
    try:
        container = av.open(
            source_url(cam), options=options, timeout=(cam.open_timeout_seconds, cam.read_timeout_seconds)
        )
    except (av.error.FFmpegError, OSError) as err:
        if time.monotonic() - started >= cam.open_timeout_seconds * 0.9:
            raise SourceError(
                f"cannot open {shown}: no answer within {cam.open_timeout_seconds:g} s (the server accepted "
                "the connection but sent no stream)",
                camera_id=cam.id,
                reason="timeout",
            ) from err
        why = describe_error(err, source=cam.source)
        reason = "unauthorized" if is_unauthorized(err) else "open"
        raise SourceError(f"cannot open {shown}: {why}", camera_id=cam.id, reason=reason) from err
    if not container.streams.video:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise SourceError(
            f"no video stream in {shown} (its streams: {', '.join(kinds)})",
            camera_id=cam.id,
            reason="no_video",
        )
    return container


FrameCallback = Callable[[Frame, bool], bool]


class Pixels(NamedTuple):
    """A sampled frame's pixels, copied out of the decoder: the tensor, its format and colour, and on
    a GPU the event recorded after the copy on the camera's own CUDA stream."""

    data: torch.Tensor
    pixel_format: PixelFormat
    color: ColorSpec
    ready: Any = None


# a decoded frame: its pts (stream time base) and how to get its pixels
Decoded = tuple[int | None, Callable[[], Pixels]]


@dataclass
class Opened:
    """An opened source: its decoded frames, time base and frame rate (None: unknown), how to close
    it, and whether it turned out to be live (None: as its URL says)."""

    frames: Iterator[Decoded]
    time_base: float
    rate: float | None
    close: Callable[[], None]
    live: bool | None = None
    no_timestamps: bool = False  # the format has none of its own (MJPEG, raw H.264): frames are numbered


def has_no_timestamps(container: av.container.InputContainer) -> bool:
    """Whether the container format carries no timestamps (FFmpeg numbers its frames at a guessed rate)."""
    import av

    no_timestamps: int = av.format.Flags.no_timestamps.value  # type: ignore[assignment]
    return bool(container.format.flags & no_timestamps)


def looks_live(container: av.container.InputContainer) -> bool:
    """An http(s) source with no duration, in a streaming format (MJPEG, HLS, FLV, TS): a camera."""
    names = set((container.format.name or "").split(","))
    return container.duration is None and bool(names & LIVE_HTTP_FORMATS)


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
    retried with exponential backoff; the thread never takes other cameras down. ``wall_anchor`` is
    the Unix time media time 0 of a recorded source maps to (the run's start): an incident on a file
    is reported at the time it happens in the video, counted from the start of the run.
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
        on_anomaly: Callable[[str, Anomaly], None] | None = None,
        wall_anchor: float | None = None,
        generation: int = 0,
        packets: PacketRing | None = None,
    ) -> None:
        super().__init__(name=f"camera-{cam.id}", daemon=True)
        self.generation = generation
        self.cam = cam
        self.emit = emit
        self.stop_event = stop_event
        self.on_state = on_state
        self.on_decoded = on_decoded
        self.on_error = on_error
        self.on_anomaly = on_anomaly
        self.wall_anchor = time.time() if wall_anchor is None else wall_anchor
        self.state = CameraState.STARTING
        self.frames_decoded = 0
        self.frames_sampled = 0
        self.frames_dropped = 0
        self.errors = 0
        self.decode_errors = 0
        self.last_error = ""
        self.analytics_fps = cam.analytics_fps
        self.live = cam.is_live  # http(s) without `live:` is settled when it opens
        self.local_file = scheme(cam.source) in (None, "file")
        self._sampler = Sampler(cam.analytics_fps)
        self._stream_rate: float | None = None
        self._clock = MediaClock()
        self._index = 0
        self._rotation_seen: int | None = None
        self._anomaly_log: dict[str, tuple[float, int]] = {}  # kind -> (last logged, not logged since)
        self.recorder = None if packets is None else Recorder(packets)  # the packets kept for clips

    @property
    def timestamp_jumps(self) -> int:
        return self._clock.discontinuities

    @property
    def media_time(self) -> float:
        """Seconds of video decoded so far (the camera's media time)."""
        return self._clock.t or 0.0

    def _set_state(self, state: CameraState) -> None:
        if state != self.state:
            log.info("camera %s: %s -> %s", self.cam.id, self.state.value, state.value)
            self.state = state
            if self.on_state:
                self.on_state(self.cam.id, state)

    def run(self) -> None:
        try:
            with interruptible(self.stop_event):  # a stop reaches it even inside FFmpeg
                self._run()
        finally:
            if self.recorder is not None:  # clips waiting on it are written with what it holds
                self.recorder.ring.close()

    def _run(self) -> None:
        backoff = self.cam.reconnect_initial_seconds
        failed = 0  # plays in a row that ended in an error without a frame (or, for recordings, at all)
        while not self.stop_event.is_set():
            decoded_before = self.frames_decoded
            try:
                ended = self._play_once()
                if self.stop_event.is_set():
                    break
                if self.frames_decoded == decoded_before:
                    raise SourceError("no frame could be decoded", camera_id=self.cam.id, reason="no_frames")
                if ended and not self.cam.loop and not self.live:
                    self._set_state(CameraState.FINISHED)
                    return
                if self.live:
                    raise SourceError("stream ended", camera_id=self.cam.id, reason="ended")
                backoff, failed = self.cam.reconnect_initial_seconds, 0
            except Exception as err:  # a camera never takes the others down: log, count, retry
                if self.stop_event.is_set():
                    break
                if self.live and self.frames_decoded > decoded_before:  # it was streaming: reconnect soon
                    backoff, failed = self.cam.reconnect_initial_seconds, 0
                else:
                    failed += 1
                self._count_error(err)
                if self.local_file and failed >= FILE_OPEN_ATTEMPTS:
                    log.error(
                        "camera %s: %s; gave up after %d attempts (a file, not a live stream)",
                        self.cam.id,
                        self.last_error,
                        failed,
                    )
                    self._set_state(CameraState.FAILED)
                    return
                if getattr(err, "reason", None) == "unauthorized":  # a password is not fixed in a second
                    backoff = self.cam.reconnect_max_seconds
                if is_source_error(err):
                    log.warning("camera %s: %s; retrying in %.1fs", self.cam.id, self.last_error, backoff)
                else:
                    log.exception("camera %s: unexpected error; retrying in %.1fs", self.cam.id, backoff)
                self._set_state(CameraState.DOWN)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.cam.reconnect_max_seconds)
        self._set_state(CameraState.STOPPED)

    def _count_error(self, err: BaseException) -> None:
        self.errors += 1
        self.last_error = redact(str(err)) or type(err).__name__
        if self.on_error:
            self.on_error(self.cam.id, getattr(err, "reason", type(err).__name__))

    def _anomaly(self, kind: Anomaly, detail: str) -> None:
        """Count a decode error or timestamp jump; log the first, then at most one line (with how many
        more there were) every ``ANOMALY_LOG_EVERY_S``: a lossy feed must not flood the log."""
        if self.on_anomaly:
            self.on_anomaly(self.cam.id, kind)
        now = time.monotonic()
        last, unlogged = self._anomaly_log.get(kind, (float("-inf"), 0))
        if now - last < ANOMALY_LOG_EVERY_S:
            self._anomaly_log[kind] = (last, unlogged + 1)
            return
        more = f" ({unlogged} more like it in the last {now - last:.0f} s)" if unlogged else ""
        log.warning("camera %s: %s%s", self.cam.id, detail, more)
        self._anomaly_log[kind] = (now, 0)

    def _open(self) -> Opened:
        """Open the source with PyAV and decode it on the CPU."""
        container = open_container(self.cam)
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else 1.0 / 90_000
        rate = float(stream.average_rate) if stream.average_rate else None
        live = self._live_of(container)
        if self.recorder is not None:
            self.recorder.begin(stream, period_s=1.0 / (rate or DEFAULT_RATE))
        return Opened(
            self._decode(container, stream), tb, rate, container.close, live, has_no_timestamps(container)
        )

    def _live_of(self, container: av.container.InputContainer) -> bool | None:
        """For an http(s) source with no ``live:`` setting, whether the opened stream is a camera's."""
        if self.cam.live is None and scheme(self.cam.source) in ("http", "https"):
            return looks_live(container)
        return None

    def _decode(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[Decoded]:
        """Every frame of the stream, decoded by PyAV (FFmpeg, threaded); RGB only when asked.

        A packet that does not decode is counted, the decoder flushed and packets skipped up to the
        next keyframe; only a long run of them (``MAX_BAD_PACKETS``) gives up on the stream.
        """
        import av

        stream.thread_type = "AUTO"
        spec: ColorSpec | None = None
        skipping = False
        bad_in_a_row = 0
        for packet in container.demux(stream):
            if skipping and packet.size and not packet.is_keyframe:
                continue
            skipping = False
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                self.decode_errors += 1
                bad_in_a_row += 1
                self._anomaly(
                    "decode_error",
                    f"a packet did not decode ({redact(str(err))}); skipping to the next keyframe",
                )
                if bad_in_a_row >= MAX_BAD_PACKETS:
                    raise SourceError(
                        f"{bad_in_a_row} packets in a row did not decode",
                        camera_id=self.cam.id,
                        reason="decode",
                    ) from err
                stream.codec_context.flush_buffers()
                skipping = True
                continue
            bad_in_a_row = 0
            if self.recorder is not None:
                self.recorder.add(packet)  # after decoding: the Annex B filter takes the packet's data
            for frame in frames:
                if spec is None:
                    spec = color_spec(frame.colorspace, frame.color_range, frame.height, frame.format.name)
                rotation = self._rotation(frame)

                def convert(
                    frame: av.VideoFrame = frame, spec: ColorSpec = spec, rotation: int = rotation
                ) -> Pixels:
                    return Pixels(
                        torch.from_numpy(rotate_rgb(to_rgb24(frame, spec), rotation)), "rgb24", ColorSpec()
                    )

                yield frame.pts, convert

    def _rotation(self, frame: av.VideoFrame) -> int:
        """The frame's display rotation (degrees counter-clockwise), applied so that the frames analysed
        are those a player shows, on which zones are drawn; logged once per change."""
        try:
            degrees = int(frame.rotation)
        except (AttributeError, ValueError):
            degrees = 0
        if degrees % 90:
            if degrees != self._rotation_seen:
                log.warning(
                    "camera %s: display rotation of %d degrees is not a multiple of 90: frames are analysed "
                    "unrotated",
                    self.cam.id,
                    degrees,
                )
            self._rotation_seen = degrees
            return 0
        if degrees != self._rotation_seen and (degrees or self._rotation_seen is not None):
            log.warning(  # once per change: zones must be drawn on the frame as shown
                "camera %s: its frames carry a %d degree display rotation: analysed rotated, as players show "
                "them (draw zones on the rotated frame)",
                self.cam.id,
                degrees,
            )
        self._rotation_seen = degrees
        return degrees

    def set_rate(self, fps: float) -> None:
        """A new analytics rate while running (the control interface): from the next frame on, capped
        to the stream's rate as at open."""
        if fps == self.cam.analytics_fps:
            return
        self.cam = self.cam.model_copy(update={"analytics_fps": fps})
        self.analytics_fps = fps
        self._sampler.period = 1.0 / fps
        if self._stream_rate is not None:
            self._cap_rate(self._stream_rate)

    def _cap_rate(self, rate: float | None) -> None:
        """Analyse at most every frame: a rate above the stream's is capped to it (with a warning)."""
        if rate is None or rate <= 0:
            return
        self._stream_rate = rate
        fps = min(self.cam.analytics_fps, rate)
        if fps != self.analytics_fps:
            if fps < self.cam.analytics_fps:
                log.warning(
                    "camera %s: analytics_fps %g is above the stream's %g frames/s; analysing every frame "
                    "(%g/s)",
                    self.cam.id,
                    self.cam.analytics_fps,
                    rate,
                    fps,
                )
            self.analytics_fps = fps
            self._sampler.period = 1.0 / fps

    def _play_once(self) -> bool:
        """Play the source once. Returns whether it reached its end (a recording that cannot be read
        further, or whose frames fail, counts as ending there); False when stopped. Raises on a live
        stream's error, and when nothing at all could be played."""
        opened = self._open()
        if opened.live is not None and opened.live != self.live:
            self.live = opened.live
            log.info("camera %s: %s", self.cam.id, "a live stream" if self.live else "a recording")
        self._clock.restart(keep_time_away=self.live)
        period = 1.0 / (opened.rate or DEFAULT_RATE)
        self._cap_rate(opened.rate)
        self._set_state(CameraState.UP)
        decoded_before = self.frames_decoded
        try:
            return self._frames(opened, period)
        except Exception as err:
            if self.stop_event.is_set():
                raise
            if self.live:
                if isinstance(err, SourceError):
                    raise
                why = describe_error(err, source=self.cam.source, live=True)
                raise SourceError(f"stream lost: {why}", camera_id=self.cam.id, reason="read") from err
            if self.frames_decoded == decoded_before:  # nothing could be played: an error of this play
                if isinstance(err, SourceError):
                    raise
                why = describe_error(err, source=self.cam.source)
                raise SourceError(
                    f"cannot read {redact(self.cam.source)}: {why}", camera_id=self.cam.id, reason="read"
                ) from err
            self._count_error(err)
            log.warning(
                "camera %s: the recording cannot be played past %.1f s (%s): treated as its end",
                self.cam.id,
                self._clock.t or 0.0,
                self.last_error,
            )
            return True
        finally:
            opened.close()

    def _frames(self, opened: Opened, period: float) -> bool:
        """Decode, time, pace, sample and emit every frame of one play (see ``_play_once``)."""
        paced = self.cam.realtime and not self.live
        block = not (self.cam.realtime or self.live)
        pace_t = pace_wall = 0.0
        first = True
        for raw_pts, convert in opened.frames:
            if self.stop_event.is_set():
                return False
            now = time.monotonic()
            jumps = self._clock.discontinuities
            # a live stream without timestamps of its own (MJPEG over HTTP) is timed by the wall clock
            if self.live and (raw_pts is None or opened.no_timestamps):
                pts: float | None = now
            else:
                pts = None if raw_pts is None else raw_pts * opened.time_base
            t = self._clock(pts, period_s=period, wall_s=now)
            if self._clock.discontinuities != jumps:
                self._anomaly("timestamp_jump", f"timestamps jumped; media time goes on from {t:.2f} s")
            if self.recorder is not None and self.recorder.ring.timing:  # packets kept for clips, timed
                self.recorder.ring.anchor(None if raw_pts is None else raw_pts * opened.time_base, t)
            self.frames_decoded += 1
            self._index += 1
            if self.on_decoded:
                self.on_decoded(self.cam.id, 1)
            if paced:
                if first:
                    pace_t, pace_wall = t, now
                delay = (t - pace_t) - (now - pace_wall)
                if delay > 0 and self.stop_event.wait(delay):
                    return False
            first = False
            if not self._sampler.take(t):
                continue  # unsampled frames skip colour conversion and inference
            px = convert()  # before the decoder reuses the frame's buffer
            wall = time.time() if self.live else self.wall_anchor + t
            f = Frame(
                self.cam.id,
                px.data,
                t,
                self._index - 1,
                wall,
                px.pixel_format,
                px.color,
                ready=px.ready,
                generation=self.generation,
            )
            while not self.emit(f, block):
                if not block:
                    self.frames_dropped += 1
                    break
                if self.stop_event.is_set():
                    return False
            self.frames_sampled += 1
        return True

"""Each camera's recent compressed packets, kept for evidence clips (``events/clips.py`` remuxes them).

The camera thread records every demuxed packet of its stream (H.264 or HEVC, made Annex B so that
every keyframe carries its parameter sets, whatever the container), with its media time, the
camera's own clock (``MediaClock``) that incidents are timed in. A packet is demuxed a few frames
before it is decoded, so a play's packets are timed once its first frame has been: until then they
wait, and the first decoded frame (and each timestamp discontinuity) anchors the stream's
timestamps to media time. The ring is bounded in seconds and bytes; the publish stage reads a window
of it under the same lock.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

CLIP_CODECS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}  # codec -> its Annex B filter


@dataclass(frozen=True)
class StreamParams:
    """What a clip's MP4 track needs to know of the stream; a change (a reconnect to another resolution)
    starts a new epoch, and one clip never spans two."""

    codec: str
    width: int
    height: int
    extradata: bytes = b""  # the stream's parameter sets, in Annex B form (b"" when the container's are AVCC)


@dataclass(slots=True)
class Packet:
    pts: float  # media time, seconds
    dts: float
    keyframe: bool
    data: bytes
    epoch: int


@dataclass
class Window:
    """The packets of one clip, keyframe first, and the stream they belong to."""

    params: StreamParams
    packets: list[Packet]
    complete: bool  # it reaches the end asked for (False: the camera stopped or the ring ran short)

    @property
    def start(self) -> float:
        return min(p.pts for p in self.packets)

    @property
    def end(self) -> float:
        return max(p.pts for p in self.packets)


@dataclass
class PacketRing:
    """One camera's ring of packets. ``begin`` at each open of the stream, ``add`` per demuxed packet,
    ``anchor`` when a decoded frame fixes media time; ``close`` when the camera's thread ends."""

    camera_id: str
    max_seconds: float
    max_bytes: int
    packets: deque[Packet] = field(default_factory=deque)
    epochs: dict[int, StreamParams] = field(default_factory=dict)
    closed: bool = False
    dropped_for_bytes: int = 0
    _bytes: int = 0
    _epoch: int = -1
    _offset: float | None = None  # media time - stream time, for this play; None until its first frame
    _waiting: list[tuple[float | None, float | None, bool, bytes]] = field(default_factory=list)
    _last: float | None = None  # the latest packet's media time
    _period: float = 0.04
    pins: dict[str, float] = field(default_factory=dict)  # clips being waited for -> the media time they need
    _keep_from: float | None = None  # the dts before which nothing pinned is needed (None: work it out)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the camera thread ---------------------------------------------------------------
    def begin(self, params: StreamParams, *, period_s: float) -> None:
        """A new play of the stream: its packets wait for its first decoded frame to be timed."""
        with self.lock:
            if self._epoch < 0 or self.epochs[self._epoch] != params:
                self._epoch += 1
                self.epochs[self._epoch] = params
            self._offset = None
            self._waiting.clear()
            self._period = period_s

    def add(self, pts: float | None, dts: float | None, keyframe: bool, data: bytes) -> None:
        """A demuxed packet: its timestamps in seconds of the stream's own clock (None: it has none)."""
        with self.lock:
            if self._offset is None:
                if len(self._waiting) < 1000:  # a stream that never decodes keeps nothing
                    self._waiting.append((pts, dts, keyframe, data))
                return
            self._append(pts, dts, keyframe, data)

    def anchor(self, offset: float, *, t: float) -> None:
        """Media time = stream time + ``offset`` from now on (the first frame of a play, a jump); ``t``
        is that frame's media time (where untimed packets go on from)."""
        with self.lock:
            self._offset = offset
            if self._waiting and self._waiting[0][0] is None and self._waiting[0][1] is None:
                self._last = t - self._period * len(self._waiting)
            waiting, self._waiting = self._waiting, []
            for item in waiting:
                self._append(*item)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._waiting.clear()

    def _append(self, pts: float | None, dts: float | None, keyframe: bool, data: bytes) -> None:
        assert self._offset is not None
        if pts is None and dts is None:  # untimed (raw streams): one frame period after the last
            t = 0.0 if self._last is None else self._last + self._period
            media_pts = media_dts = t
        else:
            media_pts = (pts if pts is not None else dts) + self._offset  # type: ignore[operator]
            media_dts = (dts if dts is not None else pts) + self._offset  # type: ignore[operator]
        self._last = media_dts
        self.packets.append(Packet(media_pts, media_dts, keyframe, data, self._epoch))
        self._bytes += len(data)
        self._evict()

    def _evict(self) -> None:
        """Drop the oldest packets past the bound in seconds (but not those a pending clip needs: from
        the last keyframe at or before its pin) or in bytes (always: memory comes first)."""
        newest = self.packets[-1].dts
        while len(self.packets) > 1:
            if self._bytes > self.max_bytes:
                self.dropped_for_bytes += 1
            elif (
                newest - self.packets[0].dts <= self.max_seconds or self.packets[0].dts >= self._needed_from()
            ):
                break
            old = self.packets.popleft()
            self._bytes -= len(old.data)
        for e in [e for e in self.epochs if e < self.packets[0].epoch and e != self._epoch]:
            del self.epochs[e]

    def _needed_from(self) -> float:
        if not self.pins:
            return float("inf")
        if self._keep_from is None:
            pin = min(self.pins.values())
            keep = self.packets[0].dts
            for p in self.packets:
                if p.pts > pin:
                    break
                if p.keyframe:
                    keep = p.dts
            self._keep_from = keep
        return self._keep_from

    # -- the publish stage ---------------------------------------------------------------
    def pin(self, key: str, t: float) -> None:
        """Keep what a clip from media time ``t`` needs until ``unpin(key)``, beyond the bound in seconds."""
        with self.lock:
            self.pins[key] = t
            self._keep_from = None

    def unpin(self, key: str) -> None:
        with self.lock:
            if self.pins.pop(key, None) is not None:
                self._keep_from = None

    @property
    def latest(self) -> float | None:
        """Media time of the newest packet (None: none yet)."""
        with self.lock:
            return self.packets[-1].dts if self.packets else None

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def recording(self) -> bool:
        """Whether its camera's stream is one clips are made of (it has begun a play of H.264/HEVC)."""
        return bool(self.epochs)

    def window(self, start: float, *, pre_roll: float, post_roll: float) -> Window | None:
        """The packets of the clip around an incident that started at ``start``: from the last keyframe
        at or before ``start - pre_roll`` (or the first kept, if the ring does not reach so far back) to
        ``start + post_roll``, within the stream epoch that was playing at ``start``. None when the ring
        holds no keyframe there."""
        end = start + post_roll
        with self.lock:
            packets = list(self.packets)
        if not packets:
            return None
        epoch = packets[-1].epoch
        for p in packets:  # the epoch playing at the start (the last one that began before it)
            if p.pts <= start:
                epoch = p.epoch
        params = self.epochs.get(epoch)
        if params is None:
            return None
        same = [p for p in packets if p.epoch == epoch]
        keys = [i for i, p in enumerate(same) if p.keyframe]
        if not keys:
            return None
        first = keys[0]
        for i in keys:
            if same[i].pts <= start - pre_roll:
                first = i
        chosen = [p for p in same[first:] if p.dts <= end]
        return Window(params, chosen, complete=same[-1].dts >= end)


@dataclass
class PacketRings:
    """The rings of every camera that records clips (the runner's; cameras' threads fill them, the
    publish stage reads them). A camera started again gets a new ring; clips pending on the old one
    keep it."""

    max_seconds: float
    max_bytes: int
    rings: dict[str, PacketRing] = field(default_factory=dict)

    def open(self, camera_id: str) -> PacketRing:
        ring = PacketRing(camera_id, self.max_seconds, self.max_bytes)
        old = self.rings.get(camera_id)
        if old is not None:
            old.close()
        self.rings[camera_id] = ring
        return ring

    def get(self, camera_id: str) -> PacketRing | None:
        return self.rings.get(camera_id)

    def drop(self, camera_id: str) -> None:
        ring = self.rings.pop(camera_id, None)
        if ring is not None:
            ring.close()

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in list(self.rings.values()))


class Recorder:
    """What a camera thread uses to fill its ring from PyAV packets: the stream's Annex B filter and
    its parameters, set up at each open. A codec clips do not take (MJPEG, MPEG-4 part 2) is logged
    once and nothing is kept."""

    def __init__(self, ring: PacketRing) -> None:
        self.ring = ring
        self._bsf: av.bitstream.BitStreamFilterContext | None = None
        self._filtered: bool | None = None
        self._tb = 0.0
        self._warned = False

    def begin(self, stream: av.VideoStream, *, period_s: float, filtered: bool = False) -> None:
        """A new play of ``stream``; ``filtered``: its packets come Annex B already (``add_annexb``)."""
        from av.bitstream import BitStreamFilterContext

        cc = stream.codec_context
        self._bsf = self._filtered = None
        if cc.name not in CLIP_CODECS:
            if not self._warned:
                log.warning(
                    "camera %s: its video is %s; evidence clips are made of H.264 or HEVC only: its "
                    "incidents come without clips",
                    self.ring.camera_id,
                    cc.name,
                )
                self._warned = True
            return
        extradata = bytes(cc.extradata or b"")
        annexb = extradata if extradata.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) else b""
        self._tb = float(stream.time_base) if stream.time_base else 1.0 / 90_000
        if filtered:
            self._filtered = True
        else:
            self._bsf = BitStreamFilterContext(CLIP_CODECS[cc.name], in_stream=stream)
        self.ring.begin(StreamParams(cc.name, cc.width, cc.height, annexb), period_s=period_s)

    def add(self, packet: av.Packet) -> None:
        """Record a packet (after it was decoded: the filter takes the packet's data)."""
        if self._bsf is None or not packet.size:
            return
        self.add_annexb(self._bsf.filter(packet))

    def add_annexb(self, packets: Iterable[av.Packet]) -> None:
        """Record packets that are Annex B already (the NVDEC path filters them for the decoder)."""
        if not self.recording:
            return
        tb = self._tb
        for p in packets:
            self.ring.add(
                None if p.pts is None else p.pts * tb,
                None if p.dts is None else p.dts * tb,
                bool(p.is_keyframe),
                bytes(p),
            )

    @property
    def recording(self) -> bool:
        return self._bsf is not None or bool(self._filtered)

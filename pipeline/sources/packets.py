"""Each camera's recent compressed packets, kept for evidence clips (``events/clips.py`` remuxes them).

The camera thread records every demuxed packet of its stream (H.264 or HEVC, made Annex B so that
every keyframe carries its parameter sets, whatever the container), with its media time, the
camera's own clock (``MediaClock``) that incidents are timed in. A packet is demuxed a few frames
before it is decoded, so a play's packets (and those after a jump in its timestamps) are timed once
a frame of theirs has been decoded: until then they wait. The ring is bounded in seconds and bytes;
the publish stage reads a window of it under the same lock.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

CLIP_CODECS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}  # codec -> its Annex B filter
MAX_JUMP_S = 5.0  # a packet this much after the one before it (or BACK_STEP_S before) starts a new timeline
BACK_STEP_S = 0.5
RETIRED_RINGS = 4  # rings of cameras stopped or restarted, kept for the clips of steps still in flight
MAX_WAITING = 1000  # packets waiting to be timed, at most (and max_bytes of them)


@dataclass(frozen=True)
class StreamParams:
    """What a clip's MP4 track needs to know of the stream; a change (a reconnect to another resolution)
    starts a new epoch, and one clip never spans two."""

    codec: str
    width: int
    height: int
    extradata: bytes = b""  # the stream's parameter sets, in Annex B form (b"" when the container's are AVCC)


class _Raw(NamedTuple):
    pts: float | None  # stream time, seconds
    dts: float | None
    keyframe: bool
    data: bytes


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
    complete: bool  # it covers the window asked for (False: the camera stopped, or the ring ran short)
    short_start: bool = False  # the ring no longer held the video from the pre-roll's keyframe

    @property
    def start(self) -> float:
        return min(p.pts for p in self.packets)

    @property
    def end(self) -> float:
        return max(p.pts for p in self.packets)


@dataclass
class PacketRing:
    """One camera's ring of packets. ``begin`` at each open of the stream, ``add`` per demuxed packet,
    ``anchor`` with each decoded frame; ``close`` when the camera's thread ends.

    Packets are timed by the offset from stream time to media time that a decoded frame gives. A
    play's first packets, and those after a jump in the stream's own timestamps (back, or ahead by
    more than ``MAX_JUMP_S``), wait untimed until a frame of the same timeline comes out of the
    decoder (frames still in the decoder belong to the timeline before): a jump never puts packets
    far off in media time, which would evict the whole ring or put a gap in a clip."""

    camera_id: str
    max_seconds: float
    max_bytes: int
    generation: int = 0  # the camera source's that fills it
    packets: deque[Packet] = field(default_factory=deque)
    epochs: dict[int, StreamParams] = field(default_factory=dict)
    closed: bool = False
    dropped_for_bytes: int = 0
    _bytes: int = 0
    _epoch: int = -1
    _offset: float | None = None  # media time - stream time; None while packets wait to be timed
    _waiting: deque[_Raw] = field(default_factory=deque)
    _waiting_bytes: int = 0
    _last_raw: float | None = None  # the stream time of the latest packet added
    _old_raw: float | None = None  # after a jump: the stream time of the last packet before it
    _last: float | None = None  # the latest packet's media dts
    _need_key: bool = True  # a play's packets are kept from its first keyframe
    _period: float = 0.04
    pins: dict[str, float] = field(default_factory=dict)  # clips being waited for -> the media time they need
    _keep_from: float | None = None  # the dts before which nothing pinned is needed (None: work it out)
    _evicted: float | None = None  # the dts of the latest packet dropped from the ring
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the camera thread ---------------------------------------------------------------
    def begin(self, params: StreamParams, *, period_s: float) -> None:
        """A new play of the stream: kept from its first keyframe, timed by its first decoded frame."""
        with self.lock:
            if self._epoch < 0 or self.epochs[self._epoch] != params:
                self._epoch += 1
                self.epochs[self._epoch] = params
            self._offset = self._last_raw = self._old_raw = None
            self._waiting.clear()
            self._waiting_bytes = 0
            self._need_key = True
            self._period = period_s

    def add(self, pts: float | None, dts: float | None, keyframe: bool, data: bytes) -> None:
        """A demuxed packet: its timestamps in seconds of the stream's own clock (None: it has none)."""
        with self.lock:
            if self._need_key:  # a play starts at a keyframe: what comes before cannot be decoded
                if not keyframe:
                    return
                self._need_key = False
            raw = dts if dts is not None else pts
            if raw is not None and self._last_raw is not None and self._offset is not None:
                step = raw - self._last_raw
                if step < -BACK_STEP_S or step > MAX_JUMP_S:  # another timeline: timed anew
                    self._offset, self._old_raw = None, self._last_raw
            if raw is not None:
                self._last_raw = raw
            if self._offset is not None:
                self._append(_Raw(pts, dts, keyframe, data))
                return
            self._waiting.append(_Raw(pts, dts, keyframe, data))
            self._waiting_bytes += len(data)
            while len(self._waiting) > 1 and (  # a stream that never decodes keeps nothing much
                len(self._waiting) > MAX_WAITING or self._waiting_bytes > self.max_bytes
            ):
                self._waiting_bytes -= len(self._waiting.popleft().data)

    @property
    def timing(self) -> bool:
        """Packets wait for a decoded frame to time them (the camera thread then calls ``anchor``)."""
        return self._offset is None

    def anchor(self, raw: float | None, t: float) -> None:
        """A decoded frame: stream time ``raw`` (None: it has none) shows at media time ``t``. Times the
        waiting packets if the frame is of their timeline."""
        with self.lock:
            if self._offset is not None:
                return
            first = self._waiting[0] if self._waiting else None
            first_raw = None if first is None else (first.dts if first.dts is not None else first.pts)
            if raw is not None and first_raw is not None:
                old = self._old_raw
                if abs(raw - first_raw) > MAX_JUMP_S or (
                    old is not None and abs(raw - old) < abs(raw - first_raw)
                ):
                    return  # a frame of the timeline before the jump, still coming out of the decoder
            if raw is None:
                raw = first_raw if first_raw is not None else 0.0
            self._offset = t - raw
            if first is not None and first_raw is None:  # untimed: one period each, up to this frame
                self._last = t - self._period * len(self._waiting)
            waiting, self._waiting, self._waiting_bytes = self._waiting, deque(), 0
            for item in waiting:
                self._append(item)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._waiting.clear()
            self._waiting_bytes = 0

    def _append(self, r: _Raw) -> None:
        assert self._offset is not None
        if r.pts is None and r.dts is None:  # untimed (raw streams): one frame period after the last
            media_dts = 0.0 if self._last is None else self._last + self._period
            media_pts = media_dts
        else:
            media_pts = (r.pts if r.pts is not None else r.dts) + self._offset  # type: ignore[operator]
            if r.dts is not None:
                media_dts = r.dts + self._offset
            else:  # no decoding time: one that only goes forward (pts may not, with B-frames)
                media_dts = media_pts if self._last is None else max(self._last + 1e-4, media_pts - 1.0)
                media_dts = min(media_dts, media_pts)
        self._last = media_dts
        self.packets.append(Packet(media_pts, media_dts, r.keyframe, r.data, self._epoch))
        self._bytes += len(r.data)
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
            self._evicted = old.dts
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
        with self.lock:
            evicted = self._evicted
        # its start is short when the keyframe it should start from was dropped (the ring's bounds): the
        # first kept is later, and there was video before it
        short_start = same[first].pts > start - pre_roll + 1e-6 and evicted is not None
        return Window(
            params, chosen, complete=same[-1].dts >= end and not short_start, short_start=short_start
        )


@dataclass
class PacketRings:
    """The rings of every camera that records clips (the runner's; cameras' threads fill them, the
    publish stage reads them). A camera started again gets a new ring; the few last ones closed stay
    at hand for the steps still on their way to the publish stage (``get`` by the frame's generation)."""

    max_seconds: float
    max_bytes: int
    rings: dict[str, PacketRing] = field(default_factory=dict)
    retired: deque[PacketRing] = field(default_factory=lambda: deque(maxlen=RETIRED_RINGS))

    def open(self, camera_id: str, generation: int = 0) -> PacketRing:
        ring = PacketRing(camera_id, self.max_seconds, self.max_bytes, generation)
        self.drop(camera_id)
        self.rings[camera_id] = ring
        return ring

    def get(self, camera_id: str, generation: int | None = None) -> PacketRing | None:
        """The camera's ring (the one its source of ``generation`` filled, when given)."""
        ring = self.rings.get(camera_id)
        if generation is None or (ring is not None and ring.generation == generation):
            return ring
        return next(
            (r for r in list(self.retired) if r.camera_id == camera_id and r.generation == generation), None
        )

    def drop(self, camera_id: str) -> None:
        ring = self.rings.pop(camera_id, None)
        if ring is not None:
            ring.close()
            self.retired.append(ring)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in [*self.rings.values(), *self.retired])


class Recorder:
    """What a camera thread uses to fill its ring from PyAV packets: the stream's Annex B filter and
    its parameters, set up at each open. A codec clips do not take (MJPEG, MPEG-4 part 2) is logged
    once and nothing is kept."""

    def __init__(self, ring: PacketRing) -> None:
        self.ring = ring
        self._bsf: av.bitstream.BitStreamFilterContext | None = None
        self.recording = False  # this play's stream is one clips are made of
        self._tb = 0.0
        self._warned = False

    def begin(self, stream: av.VideoStream, *, period_s: float, filtered: bool = False) -> None:
        """A new play of ``stream``; ``filtered``: its packets come Annex B already (``add_annexb``)."""
        from av.bitstream import BitStreamFilterContext

        cc = stream.codec_context
        self._bsf = None
        self.recording = False
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
        if not filtered:
            self._bsf = BitStreamFilterContext(CLIP_CODECS[cc.name], in_stream=stream)
        self.recording = True
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

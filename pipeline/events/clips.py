"""Evidence clips: the packets around an incident remuxed into an MP4 (no re-encode), and the clips
the publish stage waits for.

An incident's clip runs from the last keyframe at or before ``pre_roll_seconds`` before its start to
``post_roll_seconds`` after it, from its camera's own packets (``sources/packets.py``). It can only be
written once the camera has played past that end, so the publish stage keeps a ``PendingClip`` per
incident that started: when the clip is written, an incident still open gets an ``update`` step that
carries it, and one that has ended meanwhile has its ``end`` step held back until then, so that the
clip arrives with it. A camera that stops (removed, ended, failed) or stalls for longer than
``STALL_GRACE_S`` gives its clip at once, shorter, marked incomplete.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..sources.packets import PacketRing, Window
from ..types import FrameSize, Incident
from .clip_store import ClipStore

log = logging.getLogger(__name__)

TIME_BASE = 90_000  # the MP4 track's clock, as MPEG's
STALL_GRACE_S = 30.0  # a camera whose packets have not moved on for this long gives its clips as they are


def remux(window: Window, path: Path) -> None:
    """Write the window's packets, as they are, into an MP4 at ``path``, timed from its first packet.
    The muxer takes the parameter sets from the first keyframe (Annex B carries them in band)."""
    import av

    packets = window.packets
    t0 = min(p.dts for p in packets)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        params = window.params
        stream = out.add_mux_stream(params.codec, width=params.width, height=params.height)
        stream.time_base = Fraction(1, TIME_BASE)
        times: list[tuple[int, int]] = []  # (pts, dts) in the track's clock
        for p in packets:
            dts = max(
                round((p.dts - t0) * TIME_BASE), times[-1][1] + 1 if times else 0
            )  # strictly increasing
            times.append((max(round((p.pts - t0) * TIME_BASE), dts), dts))
        steps = [b[1] - a[1] for a, b in zip(times, times[1:], strict=False)]
        period = sorted(steps)[len(steps) // 2] if steps else TIME_BASE // 25
        for i, (p, (pts, dts)) in enumerate(zip(packets, times, strict=True)):
            data = params.extradata + p.data if i == 0 and params.extradata else p.data
            packet = av.Packet(data)
            packet.stream = stream
            packet.time_base = stream.time_base
            packet.pts, packet.dts = pts, dts
            # the last frame lasts a period too (with none, the track's edit list would leave it out)
            packet.duration = steps[i] if i < len(steps) else period
            packet.is_keyframe = p.keyframe
            out.mux(packet)


@dataclass
class Step:
    """An incident step as the publish stage builds its event: the incident, the frame's size, its
    snapshot and the frame's digest (None without a frame)."""

    incident: Incident
    size: FrameSize
    snapshot: bytes | None
    frame_digest: str | None
    original: bytes | None = None  # a start's frame as the camera showed it (JPEG, nothing drawn)


@dataclass
class PendingClip:
    ring: PacketRing
    start: float  # the incident's start, media time
    due: float  # media time the camera must reach for the clip to be whole
    deadline: float  # time.monotonic() after which it is written with what there is (moved on while
    # the camera's packets move on)
    seen: float | None  # the ring's latest media time when last looked at
    latest: Step  # the incident's latest step (an update carrying the clip repeats it)
    end: Step | None = None  # its end, held back until the clip is written


@dataclass
class Clip:
    sha256: str
    bytes: int
    start: float  # media time of its first frame
    duration: float
    pre_roll: float  # seconds before the incident's start
    complete: bool

    def evidence(self, wall_offset: float, *, recording: bool = False) -> dict[str, Any]:
        """The clip's reference for the event; a recording's also says where in the video it starts."""
        from .schema import rfc3339

        return {
            "clip": f"sha256:{self.sha256}",
            "sha256": self.sha256,
            "content_type": "video/mp4",
            "bytes": self.bytes,
            "start": rfc3339(self.start + wall_offset),
            "duration_seconds": round(self.duration, 3),
            "pre_roll_seconds": round(self.pre_roll, 3),
            "complete": self.complete,
            **({"media_start_seconds": round(self.start, 3)} if recording else {}),
        }


@dataclass
class Clips:
    """The clips the publish stage waits for, by incident id."""

    store: ClipStore
    pre_roll: float
    post_roll: float
    pending: dict[str, PendingClip] = field(default_factory=dict)
    written: int = 0
    failed: int = 0

    def started(self, ring: PacketRing, step: Step) -> None:
        """Wait for the clip of an incident that starts (its camera's ring records its packets)."""
        inc = step.incident
        ring.pin(inc.incident_id, inc.started_at - self.pre_roll)
        self.pending[inc.incident_id] = PendingClip(
            ring,
            inc.started_at,
            inc.started_at + self.post_roll,
            time.monotonic() + STALL_GRACE_S,
            ring.latest,
            step,
        )

    def held(self, step: Step) -> bool:
        """Note a later step of an incident; True when it is an end held back for its clip."""
        p = self.pending.get(step.incident.incident_id)
        if p is None:
            return False
        if step.incident.status == "end":
            if step.snapshot is None:  # no frame (a camera removed): the latest snapshot stands for it
                step.snapshot, step.frame_digest = p.latest.snapshot, p.latest.frame_digest
            p.end = step
            return True
        p.latest = step
        return False

    @property
    def cameras(self) -> frozenset[str]:
        """The cameras with a clip pending: their analysed frames come to the publish stage even without
        incident steps, so that it knows how far each camera has been analysed."""
        return frozenset(p.ring.camera_id for p in self.pending.values())

    def ready(
        self, analysed: dict[str, float], *, everything: bool = False
    ) -> list[tuple[PendingClip, Clip | None]]:
        """The pending clips that can be written now, written: their camera's packets and its analysed
        frames (``analysed``: camera -> media time) have gone past their end, or it stopped, or its
        packets stalled for ``STALL_GRACE_S`` (all of them with ``everything``). Waiting for the
        analysed frames too keeps the order of an incident's steps what the video says: an end before
        the clip's end comes with it, an end after it comes after the update that carries it."""
        now = time.monotonic()
        out = []
        for iid, p in list(self.pending.items()):
            latest = p.ring.latest
            if latest != p.seen:  # the camera moves on: no stall
                p.seen, p.deadline = latest, now + STALL_GRACE_S
            past = latest is not None and latest >= p.due
            if (
                everything
                or p.ring.closed
                or now >= p.deadline
                or (past and analysed.get(p.ring.camera_id, float("-inf")) >= p.due)
            ):
                del self.pending[iid]
                try:
                    out.append((p, self._write(p)))
                finally:
                    p.ring.unpin(iid)
        return out

    def _write(self, p: PendingClip) -> Clip | None:
        cam, iid = p.ring.camera_id, p.latest.incident.incident_id
        window = p.ring.window(p.start, pre_roll=self.pre_roll, post_roll=self.post_roll)
        if window is None or not window.packets:
            log.warning("camera %s: no video kept for the clip of incident %s", cam, iid)
            self.failed += 1
            return None
        tmp = self.store.temp_path()
        try:
            remux(window, tmp)
            sha, size = self.store.add(tmp)
        except Exception as err:  # a clip lost is logged and counted; its incident goes on without it
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.error(
                "camera %s: the clip of incident %s could not be written: %s",
                cam,
                iid,
                err,
            )
            self.failed += 1
            return None
        self.written += 1
        start = window.start
        if window.short_start:
            log.warning(
                "camera %s: the clip of incident %s starts %.1f s after its pre-roll: the camera's packets "
                "outgrew clips.buffer_max_mb; raise it for this camera's bitrate",
                cam,
                iid,
                start - (p.start - self.pre_roll),
            )
        return Clip(sha, size, start, window.end - start, p.start - start, window.complete)

"""The publish stage: an analysed frame's incident steps -> snapshot JPEGs -> events -> outbox commit,
and evidence clips once their cameras have played past them (``clips.py``).

Each incident step gets its own snapshot, the frame with that incident drawn on it (``annotate.py``).
In the event, ``evidence.sha256`` is the digest of that JPEG (what the sink receives and checks) and
``evidence.frame_sha256`` the digest of the decoded frame before any drawing (the pipeline's RGB24
pixels, row by row; NVDEC's NV12 after the colour conversion), which pins the exact frame.

It runs on its own thread after analytics. A commit that fails (a full disk, an I/O error) neither
stops the cameras nor loses the incident at once: the frame's events are held in memory and
written, oldest first, as soon as the outbox takes them again (tried every ``retry_s``). Past a
bound (events or bytes) the oldest held events are dropped, counted in
``safecity_incident_events_lost_total`` and logged; ``safecity_outbox_writable`` is 0 meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.io import encode_jpeg

from ..analytics.zones import camera_zones
from ..config import CameraConfig, Config
from ..detect.base import DetectorInfo
from ..metrics import Metrics
from ..registry import sha256_bytes
from ..sources.packets import PacketRings
from ..types import Frame, FrameSize, Incident
from .annotate import annotate
from .clips import Clip, Clips, Step
from .outbox import Outbox
from .schema import build_event
from .transport import SNAPSHOT_LIMIT_BYTES

log = logging.getLogger(__name__)

EVENT_OVERHEAD_BYTES = 1024  # what one held event costs besides its snapshot, about
LOSS_LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class Analysed:
    """How far a camera with a clip pending has been analysed (sent instead of a frame without steps)."""

    camera_id: str
    t: float  # media time


# one analysed frame's incident steps, ready for the outbox: [(event, snapshot), ...] and the incidents
_Group = tuple[list[tuple[dict[str, Any], bytes | None, bytes | None]], list[Incident], int]


def snapshot_jpeg(chw: torch.Tensor, *, quality: int, limit_bytes: int = SNAPSHOT_LIMIT_BYTES) -> bytes:
    """The incident's JPEG (on the frame's device: nvJPEG on a GPU), halved in size until it fits the
    limit a message to the sink can carry."""
    while True:
        jpeg = encode_jpeg(chw, quality=quality)
        data = bytes(jpeg.cpu().numpy().tobytes()) if isinstance(jpeg, torch.Tensor) else bytes(jpeg)
        if len(data) <= limit_bytes or min(chw.shape[1:]) < 64:
            return data
        chw = torch.nn.functional.interpolate(chw[None].float(), scale_factor=0.5, mode="area")[0]
        chw = chw.round().clamp(0, 255).to(torch.uint8)


class Publisher:
    """``submit(frame, incidents)`` from analytics; ``loop(upstream_done)`` is the stage's thread."""

    def __init__(
        self,
        cfg: Config,
        *,
        outbox: Outbox,
        model: DetectorInfo,
        metrics: Metrics,
        notify: Callable[[], None],
        on_committed: Callable[[list[Incident]], None],
        max_held_events: int = 10_000,
        max_held_bytes: int = 256 << 20,
        retry_s: float = 1.0,
        queue_frames: int = 64,
        clips: Clips | None = None,
        rings: PacketRings | None = None,
    ) -> None:
        """``clips`` with ``rings``: each incident gets an evidence clip from its camera's ring."""
        self.cfg = cfg
        self.outbox = outbox
        self.model = model
        self.metrics = metrics
        self.notify = notify
        self.on_committed = on_committed
        self.max_held_events = max_held_events
        self.max_held_bytes = max_held_bytes
        self.retry_s = retry_s
        self.locations = {c.id: c.location for c in cfg.cameras}
        self.recordings = {c.id for c in cfg.cameras if not c.is_live}  # told by their time in the video
        self.zones = {c.id: camera_zones(c) for c in cfg.cameras}
        self.queue: queue.Queue[tuple[Frame | FrameSize | Analysed, list[Incident]]] = queue.Queue(
            maxsize=queue_frames
        )
        self.done = threading.Event()
        self.held: deque[_Group] = deque()
        self.held_events = 0
        self.held_bytes = 0
        self.lost = 0
        self.writable = True
        self._next_try = 0.0
        self._last_loss_log = float("-inf")
        self._unlogged_loss = 0
        self.clips = clips
        self.rings = rings
        self.waiting: frozenset[str] = frozenset()  # cameras with a clip pending (read by analytics)
        self._analysed: dict[str, float] = {}  # camera -> media time of its latest frame seen here
        self._gauge_due = 0.0
        metrics.outbox_writable.set(1)

    def submit(self, frame: Frame | FrameSize | Analysed, incidents: list[Incident]) -> None:
        """Hand a frame's incident steps over, waiting while the stage is behind: they are never
        dropped while it runs (it drains its queue before it ends, a stop included). Only if the
        stage has died are they counted as lost. Steps with no frame to show (a camera removed or
        changed ends its incidents) come with the camera's ``FrameSize`` and get no snapshot."""
        while not self.done.is_set():
            try:
                self.queue.put((frame, incidents), timeout=0.1)
                return
            except queue.Full:
                continue
        self._lose(len(incidents))

    def loop(self, upstream_done: threading.Event) -> None:
        while True:
            try:
                frame, incidents = self.queue.get(timeout=0.1)
            except queue.Empty:
                if upstream_done.is_set() and self.queue.empty():
                    break
                self._clips_ready()
                if self.held and time.monotonic() >= self._next_try:
                    self._write()
                continue
            t0 = time.perf_counter()
            group = self._events(frame, incidents)
            if group[0]:
                self._hold(group)
            if self.held and (self.writable or time.monotonic() >= self._next_try):
                self._write()
            if incidents:  # (a frame without any only tells how far its camera was analysed)
                self.metrics.stage_latency.labels(stage="events").observe(time.perf_counter() - t0)
        self._clips_ready(everything=True)  # the run ends: each clip with what its camera gave
        if self.held:
            self._write()
        if self.held:
            n = self.held_events
            self._lose(n)
            log.error("%d incident events could not be written to the outbox before the run ended: lost", n)

    def _events(self, frame: Frame | FrameSize | Analysed, incidents: list[Incident]) -> _Group:
        """The frame's steps as events with their snapshots (none without a frame); an end held back
        for its clip is left out (it comes with the clip). Clips due by the frame's time go first."""
        if isinstance(frame, (Frame, Analysed)):
            self._analysed[frame.camera_id] = frame.pts_seconds if isinstance(frame, Frame) else frame.t
            self._clips_ready()
        if not incidents or isinstance(frame, Analysed):
            return [], [], 0
        steps = self._steps(frame, incidents)
        generation = frame.generation if isinstance(frame, Frame) else None
        items: list[tuple[dict[str, Any], bytes | None, bytes | None]] = []
        published: list[Incident] = []
        total = 0
        for step in steps:
            if self._clip_step(step, generation):
                continue
            items.append((self._event(step), step.snapshot, step.original))
            published.append(step.incident)
            total += len(step.snapshot or b"") + len(step.original or b"") + EVENT_OVERHEAD_BYTES
        return items, published, total

    def _steps(self, frame: Frame | FrameSize, incidents: list[Incident]) -> list[Step]:
        if isinstance(frame, FrameSize):  # no frame to show: no snapshot
            return [Step(inc, frame, None, None) for inc in incidents]
        rgb = frame.rgb().cpu().numpy()
        frame_digest = sha256_bytes(rgb.tobytes())
        original: bytes | None = None
        size = FrameSize(frame.camera_id, frame.width, frame.height, frame.frame_index)
        steps = []
        for inc in incidents:
            drawn = annotate(
                rgb,
                inc,
                self.zones.get(frame.camera_id, []),
                wall_time=frame.wall_time,
                media_time=frame.pts_seconds if frame.camera_id in self.recordings else None,
            )
            snapshot = snapshot_jpeg(
                torch.from_numpy(drawn).permute(2, 0, 1).contiguous(), quality=self.cfg.sink.snapshot_quality
            )
            if inc.status == "start" and original is None:  # the frame as the camera showed it, once
                original = snapshot_jpeg(
                    torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
                    quality=self.cfg.sink.snapshot_quality,
                )
            steps.append(Step(inc, size, snapshot, frame_digest, original if inc.status == "start" else None))
        return steps

    def _clip_step(self, step: Step, generation: int | None) -> bool:
        """Start waiting for a starting incident's clip (from the ring of the camera source that made
        its frame: not one started since); True for an end held back until its clip."""
        if self.clips is None or self.rings is None:
            return False
        if step.incident.status == "start":
            ring = self.rings.get(step.incident.camera_id, generation)
            if ring is not None and ring.recording:
                self.clips.started(ring, step)
                self.waiting = self.clips.cameras
            return False
        return self.clips.held(step)

    def _clips_ready(self, *, everything: bool = False) -> None:
        """Clips whose cameras have played past them: written, and their steps (an update carrying the
        clip, or the end held back for it) held for the outbox."""
        if self.rings is not None and time.monotonic() >= self._gauge_due:  # (a sum over the cameras)
            self._gauge_due = time.monotonic() + 1.0
            self.metrics.clip_buffer_bytes.set(self.rings.nbytes)
        if self.clips is None or not self.clips.pending:
            return
        ready = self.clips.ready(self._analysed, everything=everything)
        if not ready:
            return
        self.waiting = self.clips.cameras
        items: list[tuple[dict[str, Any], bytes | None, bytes | None]] = []
        published: list[Incident] = []
        for pending, clip in ready:
            self.metrics.clips.labels(result="written" if clip else "failed").inc()
            if pending.end is not None:
                step = pending.end
            elif clip is None:
                continue
            else:  # still open: an update that repeats its latest step, with the clip
                latest = pending.latest
                now = max(latest.incident.emitted_at, min(pending.due, pending.ring.latest or pending.due))
                step = Step(
                    dataclasses.replace(latest.incident, status="update", emitted_at=now),
                    latest.size,
                    latest.snapshot,
                    latest.frame_digest,
                )
            items.append((self._event(step, clip), step.snapshot, step.original))
            published.append(step.incident)
        if items:
            size = sum(len(snap or b"") + len(orig or b"") + EVENT_OVERHEAD_BYTES for _, snap, orig in items)
            self._hold((items, published, size))

    def _event(self, step: Step, clip: Clip | None = None) -> dict[str, Any]:
        inc, size, snapshot = step.incident, step.size, step.snapshot
        inc.frame_index = size.index
        recording = size.camera_id in self.recordings
        return build_event(
            inc,
            source=self.cfg.edge_id,
            location=self.locations.get(size.camera_id),
            frame_w=size.width,
            frame_h=size.height,
            model_name=self.model.name,
            model_version=self.model.version,
            wall_offset=inc.wall_offset,
            snapshot_sha256=None if snapshot is None else sha256_bytes(snapshot),
            snapshot_bytes=0 if snapshot is None else len(snapshot),
            frame_sha256=step.frame_digest,
            frame_jpeg_sha256=None if step.original is None else sha256_bytes(step.original),
            clip=None
            if clip is None or snapshot is None
            else clip.evidence(inc.wall_offset, recording=recording),
            recording=recording,
        )

    def set_camera(self, cam: CameraConfig) -> None:
        """A camera added or changed while running: its location and zones for the events."""
        self.locations[cam.id] = cam.location
        if cam.is_live:
            self.recordings.discard(cam.id)
        else:
            self.recordings.add(cam.id)
        self.zones[cam.id] = camera_zones(cam)

    def _hold(self, group: _Group) -> None:
        self.held.append(group)
        self.held_events += len(group[0])
        self.held_bytes += group[2]
        dropped = 0
        while len(self.held) > 1 and (
            self.held_events > self.max_held_events or self.held_bytes > self.max_held_bytes
        ):
            old = self.held.popleft()
            self.held_events -= len(old[0])
            self.held_bytes -= old[2]
            dropped += len(old[0])
        if dropped:
            self._lose(dropped)
        self.metrics.outbox_held_events.set(self.held_events)

    def _lose(self, n: int) -> None:
        self.lost += n
        self._unlogged_loss += n
        self.metrics.incident_events_lost.inc(n)
        now = time.monotonic()
        if now - self._last_loss_log >= LOSS_LOG_EVERY_S:
            log.error(
                "outbox not writable: dropped the %d oldest incident events held in memory (%d lost in all; "
                "holding at most %d events, %d MiB)",
                self._unlogged_loss,
                self.lost,
                self.max_held_events,
                self.max_held_bytes >> 20,
            )
            self._last_loss_log, self._unlogged_loss = now, 0

    def _write(self) -> None:
        """Commit every held event, oldest first, in one transaction; on failure keep them."""
        items = [item for group in self.held for item in group[0]]
        try:
            self.outbox.append_many(items)
        except (sqlite3.Error, OSError) as err:
            self._next_try = time.monotonic() + self.retry_s
            self.metrics.outbox_write_errors.inc()
            if self.writable:
                self.writable = False
                self.metrics.outbox_writable.set(0)
                log.error(
                    "cannot write the outbox %s (%s): holding incidents in memory (up to %d events) and "
                    "retrying every %.0f s; the cameras go on",
                    self.outbox.path,
                    err,
                    self.max_held_events,
                    self.retry_s,
                )
            return
        if not self.writable:
            self.writable = True
            self.metrics.outbox_writable.set(1)
            log.warning(
                "the outbox %s is writable again: wrote %d held incident events", self.outbox.path, len(items)
            )
        committed = [inc for group in self.held for inc in group[1]]
        self.held.clear()
        self.held_events = self.held_bytes = 0
        self.metrics.outbox_held_events.set(0)
        self.on_committed(committed)
        self.notify()

"""The publish stage: an analysed frame's incident steps -> snapshot JPEGs -> events -> outbox commit.

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

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torchvision.io import encode_jpeg

from ..analytics.zones import Zone
from ..config import CameraConfig, Config
from ..detect.base import DetectorInfo
from ..metrics import Metrics
from ..registry import sha256_bytes
from ..types import Frame, FrameSize, Incident
from .annotate import annotate
from .outbox import Outbox
from .schema import build_event
from .transport import SNAPSHOT_LIMIT_BYTES

log = logging.getLogger(__name__)

EVENT_OVERHEAD_BYTES = 1024  # what one held event costs besides its snapshot, about
LOSS_LOG_EVERY_S = 10.0

# one analysed frame's incident steps, ready for the outbox: [(event, snapshot), ...] and the incidents
_Group = tuple[list[tuple[dict[str, Any], bytes | None]], list[Incident], int]


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
    ) -> None:
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
        self.zones = {c.id: [Zone(z) for z in c.zones] for c in cfg.cameras}
        self.queue: queue.Queue[tuple[Frame | FrameSize, list[Incident]]] = queue.Queue(maxsize=queue_frames)
        self.done = threading.Event()
        self.held: deque[_Group] = deque()
        self.held_events = 0
        self.held_bytes = 0
        self.lost = 0
        self.writable = True
        self._next_try = 0.0
        self._last_loss_log = float("-inf")
        self._unlogged_loss = 0
        metrics.outbox_writable.set(1)

    def submit(self, frame: Frame | FrameSize, incidents: list[Incident]) -> None:
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
                if self.held and time.monotonic() >= self._next_try:
                    self._write()
                continue
            t0 = time.perf_counter()
            self._hold(self._events(frame, incidents))
            if self.writable or time.monotonic() >= self._next_try:
                self._write()
            self.metrics.stage_latency.labels(stage="events").observe(time.perf_counter() - t0)
        if self.held:
            self._write()
        if self.held:
            n = self.held_events
            self._lose(n)
            log.error("%d incident events could not be written to the outbox before the run ended: lost", n)

    def _events(self, frame: Frame | FrameSize, incidents: list[Incident]) -> _Group:
        if isinstance(frame, FrameSize):  # no frame to show: no snapshot
            return (
                [(self._event(inc, frame, None, None), None) for inc in incidents],
                incidents,
                EVENT_OVERHEAD_BYTES * len(incidents),
            )
        rgb = frame.rgb().cpu().numpy()
        frame_digest = sha256_bytes(rgb.tobytes())
        size = FrameSize(frame.camera_id, frame.width, frame.height, frame.frame_index)
        events: list[tuple[dict[str, Any], bytes | None]] = []
        total = 0
        for inc in incidents:
            drawn = annotate(rgb, inc, self.zones.get(frame.camera_id, []), wall_time=frame.wall_time)
            snapshot = snapshot_jpeg(
                torch.from_numpy(drawn).permute(2, 0, 1).contiguous(), quality=self.cfg.sink.snapshot_quality
            )
            total += len(snapshot)
            events.append((self._event(inc, size, snapshot, frame_digest), snapshot))
        return events, incidents, total + EVENT_OVERHEAD_BYTES * len(events)

    def _event(
        self, inc: Incident, size: FrameSize, snapshot: bytes | None, frame_digest: str | None
    ) -> dict[str, Any]:
        inc.frame_index = size.index
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
            frame_sha256=frame_digest,
        )

    def set_camera(self, cam: CameraConfig) -> None:
        """A camera added or changed while running: its location and zones for the events."""
        self.locations[cam.id] = cam.location
        self.zones[cam.id] = [Zone(z) for z in cam.zones]

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

"""The running cameras: one source thread each (a new generation when one is started again live), their
stats and metric series, the rings of packets kept for their clips, and what their threads report.

A camera removed or restarted while running may still report once or twice as its thread ends: what
an old generation sends or reports is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import CameraConfig, Config
from .metrics import Metrics
from .sources import CameraSource, CameraState, Muxer, make_source
from .sources.cpu import DONE_STATES, Anomaly
from .sources.packets import PacketRings
from .types import Frame

log = logging.getLogger(__name__)


@dataclass
class CameraStats:
    decoded: int = 0
    analysed: int = 0
    dropped: int = 0
    errors: int = 0
    decode_errors: int = 0
    timestamp_jumps: int = 0
    incidents: int = 0
    state: str = "starting"
    behind: bool = False
    last_frame_at: float | None = None  # monotonic time of the last decoded frame


class Cameras:
    """``add``/``drop`` one camera (the runner's live changes), ``start_all``/``stop_all`` the run's;
    ``current(frame)`` tells whether a frame is from the running generation of its camera."""

    def __init__(
        self,
        cfg: Config,
        *,
        mux: Muxer,
        metrics: Metrics,
        stats: dict[str, CameraStats],
        lock: threading.Lock,
        decoder: str,
        device: str,
        stop_event: threading.Event,
    ) -> None:
        self.mux = mux
        self.metrics = metrics
        self.stats = stats  # camera -> its stats (the run's RunStats.cameras)
        self.lock = lock  # the run's stats lock
        self.decoder = decoder
        self.device = device
        self.fallback = cfg.decoder == "auto"
        self.stop_event = stop_event
        clips = cfg.clips
        self.rings = (
            PacketRings(clips.buffer_seconds, int(clips.buffer_max_mb * 2**20)) if clips.enabled else None
        )
        self.sources: list[CameraSource] = []  # replaced, never changed in place: threads iterate it
        self.wall_anchor: float | None = None  # set by start_all: media time 0 of every recording
        self._generations = 0
        self._current: dict[str, int] = {}  # camera -> the generation of its running source
        self._stop: dict[str, threading.Event] = {}  # one per camera: a camera stops alone
        self._decoder_of: dict[str, str] = {}  # cameras that went from NVDEC to PyAV
        self._decoded: dict[str, Any] = {}
        self._analysed: dict[str, Any] = {}
        for cam in cfg.cameras:
            self._count(cam.id)
        self.sources = [self._make_source(cam) for cam in cfg.cameras]

    def by_id(self) -> dict[str, CameraSource]:
        return {s.cam.id: s for s in self.sources}

    def current(self, frame: Frame) -> bool:
        return frame.generation == self._current.get(frame.camera_id, frame.generation)

    def done(self) -> bool:
        """Every camera finished (recordings played out)."""
        return all(s.state in DONE_STATES for s in self.sources)

    def analysed(self, camera_id: str) -> None:
        """A frame of the camera went through analytics (the analytics thread's count)."""
        self._analysed[camera_id].inc()
        self.stats[camera_id].analysed += 1

    # -- the run ----------------------------------------------------------------------------
    def start_all(self) -> None:
        self.wall_anchor = wall_anchor = time.time()
        for s in self.sources:
            s.wall_anchor = wall_anchor
            s.start()

    def stop_all(self) -> None:
        for stop in list(self._stop.values()):
            stop.set()

    # -- live changes -----------------------------------------------------------------------
    def add(self, cam: CameraConfig) -> None:
        source = self._make_source(cam)
        self.stats[cam.id] = CameraStats()
        self._count(cam.id)
        self.mux.open(cam.id)
        self.sources = [*self.sources, source]
        if self.wall_anchor is not None:  # running: start it now (else start_all does); a recording
            source.wall_anchor = time.time()  # added now is dated from now
            source.start()

    def drop(self, cid: str) -> None:
        """Stop one camera: its thread told to stop (it ends on its own), its queued frames dropped,
        its ring closed (clips pending on it are written with what it holds), its gauges gone."""
        source = self.by_id()[cid]
        self._stop.pop(cid).set()
        if self.rings is not None:
            self.rings.drop(cid)
        self.sources = [s for s in self.sources if s is not source]
        self.mux.forget(cid, closed=True)
        self.stats.pop(cid, None)
        self._current.pop(cid, None)
        self._decoded.pop(cid, None)
        self._analysed.pop(cid, None)
        for gauge in (self.metrics.camera_up, self.metrics.camera_behind):
            with contextlib.suppress(KeyError):
                gauge.remove(cid)
        with contextlib.suppress(KeyError):
            self.metrics.camera_decoder.remove(cid, self._decoder_of.pop(cid, self.decoder))

    def _make_source(self, cam: CameraConfig) -> CameraSource:
        """A camera's source, with a new generation."""
        self._generations += 1
        gen = self._current[cam.id] = self._generations
        stop = threading.Event()
        if self.stop_event.is_set():
            stop.set()

        def current(callback: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                if self._current.get(cam.id) == gen:
                    return callback(*args)
                return False

            return call

        source = make_source(
            cam,
            decoder=self.decoder,
            device=self.device,
            emit=current(self._emit),
            stop_event=stop,
            on_state=current(self._on_state),
            on_decoded=current(self._on_decoded),
            on_error=current(self._on_error),
            on_anomaly=current(self._on_anomaly),
            fallback=self.fallback,
            on_decoder=current(self._on_decoder),
            generation=gen,
            packets=None if self.rings is None else self.rings.open(cam.id, gen),
        )
        self._stop[cam.id] = stop
        return source

    def _count(self, cid: str) -> None:
        self._decoded[cid] = self.metrics.frames_decoded.labels(camera=cid)
        self._analysed[cid] = self.metrics.frames_analysed.labels(camera=cid)
        self.metrics.camera_decoder.labels(camera=cid, decoder=self.decoder).set(1)
        self.metrics.camera_up.labels(camera=cid).set(0)
        self.metrics.camera_behind.labels(camera=cid).set(0)

    # -- callbacks from camera threads ----------------------------------------------------------
    def _emit(self, frame: Frame, block: bool) -> bool:
        ok = self.mux.put(frame, block=block)
        c = self.stats.get(frame.camera_id)
        if not ok and not block and c is not None:
            self.metrics.frames_dropped.labels(camera=frame.camera_id).inc()
            with self.lock:
                c.dropped += 1
        return ok

    def _on_state(self, camera_id: str, state: CameraState) -> None:
        c = self.stats.get(camera_id)
        if c is None:
            return
        self.metrics.camera_up.labels(camera=camera_id).set(1 if state == CameraState.UP else 0)
        with self.lock:
            c.state = state.value
        if state == CameraState.FAILED:
            self.mux.forget(camera_id)

    def _on_decoded(self, camera_id: str, n: int) -> None:
        c, counter = self.stats.get(camera_id), self._decoded.get(camera_id)
        if c is not None and counter is not None:
            counter.inc(n)
            c.decoded += n
            c.last_frame_at = time.monotonic()

    def _on_error(self, camera_id: str, kind: str) -> None:
        c = self.stats.get(camera_id)
        if c is None:
            return
        self.metrics.camera_errors.labels(camera=camera_id).inc()
        with self.lock:
            c.errors += 1

    def _on_decoder(self, camera_id: str, decoder: str) -> None:
        """A camera NVDEC cannot decode went to PyAV."""
        with contextlib.suppress(KeyError):
            self.metrics.camera_decoder.remove(camera_id, self._decoder_of.get(camera_id, self.decoder))
        self._decoder_of[camera_id] = decoder
        self.metrics.camera_decoder.labels(camera=camera_id, decoder=decoder).set(1)

    def _on_anomaly(self, camera_id: str, kind: Anomaly) -> None:
        c = self.stats.get(camera_id)
        if c is None:
            return
        if kind == "decode_error":
            self.metrics.decode_errors.labels(camera=camera_id).inc()
            c.decode_errors += 1
        else:
            self.metrics.timestamp_jumps.labels(camera=camera_id).inc()
            c.timestamp_jumps += 1

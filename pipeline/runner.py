"""Wires the stages for a config: sources -> muxer -> detect -> track -> rules -> outbox -> sink.

Threads: one per camera (decode), one for preprocessing (batches from the muxer, letterboxed on the
device), one for inference (model, decode, NMS), one for analytics (tracking, rules, snapshots,
outbox), one sender, one status line. Preprocessing of batch N+1 overlaps inference of batch N.
Every queue is bounded and every wait has a timeout; ``stop()`` joins them all.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch
from torchvision.io import encode_jpeg

from .analytics.camera import CameraAnalytics
from .config import Config
from .detect import Detector, create_detector
from .devices import resolve_device
from .events.outbox import Outbox
from .events.schema import build_event
from .events.transport import SNAPSHOT_LIMIT_BYTES, Sender
from .metrics import Metrics
from .registry import sha256_bytes
from .sources import CameraState, Muxer, choose_decoder, make_source
from .types import Detections, Frame, FrameBatch, Incident

log = logging.getLogger(__name__)


@dataclass
class CameraStats:
    decoded: int = 0
    analysed: int = 0
    dropped: int = 0
    errors: int = 0
    incidents: int = 0
    state: str = "starting"


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    batches: int = 0
    frames: int = 0
    incidents: int = 0
    recent_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=50))
    cameras: dict[str, CameraStats] = field(default_factory=dict)


def sender_curve(cfg: Config) -> tuple[bytes, bytes, bytes] | None:
    """The edge's Curve keys for the sink link; plain text only when the config says ``insecure``."""
    from .errors import ConfigError
    from .events.security import load_keypair, load_public_key

    s = cfg.sink
    if s.insecure:
        log.warning("sink.insecure: incidents go to %s without encryption or authentication", s.endpoint)
        return None
    if s.server_public_key is None or s.client_secret_file is None:
        raise ConfigError(
            "sink: server_public_key and client_secret_file are needed for Curve "
            "(make keys with `safecity keys generate NAME`), or set insecure: true to send in plain text"
        )
    public, secret = load_keypair(s.client_secret_file)
    return load_public_key(s.server_public_key), public, secret


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


class Runner:
    def __init__(
        self,
        cfg: Config,
        *,
        metrics: Metrics | None = None,
        detector: Detector | None = None,
        status_stream: TextIO | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.detector = detector or create_detector(cfg)
        self.status_stream = status_stream
        self.stop_event = threading.Event()
        self.stats = RunStats(cameras={c.id: CameraStats() for c in cfg.cameras})
        self._lock = threading.Lock()
        self.mux = Muxer(
            max_batch_size=cfg.batching.max_batch_size,
            timeout_ms=cfg.batching.timeout_ms,
            queue_frames=cfg.batching.queue_frames,
        )
        self._analytics_q: queue.Queue[tuple[FrameBatch, list[Detections]]] = queue.Queue(maxsize=4)
        names = self.detector.info.class_names
        self.per_camera = {c.id: CameraAnalytics(cfg, i, names) for i, c in enumerate(cfg.cameras)}
        self.outbox = Outbox(cfg.sink.outbox)
        self.sender = Sender(
            curve=sender_curve(cfg),
            outbox_path=cfg.sink.outbox,
            endpoint=cfg.sink.endpoint,
            metrics=self.metrics,
            max_in_flight=cfg.sink.max_in_flight,
            max_in_flight_bytes=int(cfg.sink.max_in_flight_mb * 2**20),
            ack_timeout_s=cfg.sink.ack_timeout_seconds,
            snapshots=cfg.sink.snapshots,
            retention_s=cfg.sink.retention_hours * 3600,
            source=cfg.edge_id,
        )
        self.device = resolve_device(cfg.device)
        self.decoder = choose_decoder(cfg.decoder, self.device)
        log.info(
            "decode: %s; detect: %s on %s",
            self.decoder,
            self.detector.info.backend,
            self.detector.info.device,
        )
        self.sources = [
            make_source(
                cam,
                decoder=self.decoder,
                device=self.device,
                emit=self._emit,
                stop_event=self.stop_event,
                on_state=self._on_state,
                on_decoded=self._on_decoded,
                on_error=self._on_error,
            )
            for cam in cfg.cameras
        ]
        self._prepared_q: queue.Queue[tuple[FrameBatch, Any]] = queue.Queue(maxsize=2)  # double buffer
        self._prepare_thread = threading.Thread(target=self._prepare_loop, name="preprocess", daemon=True)
        self._prepare_done = threading.Event()
        self._infer_thread = threading.Thread(target=self._infer_loop, name="inference", daemon=True)
        self._analytics_thread = threading.Thread(target=self._analytics_loop, name="analytics", daemon=True)
        self._infer_done = threading.Event()
        self._analytics_done = threading.Event()
        self.incidents: deque[Incident] = deque(maxlen=1000)  # the latest, for callers and tests
        self._decoded = {c.id: self.metrics.frames_decoded.labels(camera=c.id) for c in cfg.cameras}
        self._analysed = {c.id: self.metrics.frames_analysed.labels(camera=c.id) for c in cfg.cameras}
        for cam in cfg.cameras:
            self.metrics.camera_up.labels(camera=cam.id).set(0)

    # -- callbacks from camera threads ------------------------------------------------------
    def _emit(self, frame: Frame, block: bool) -> bool:
        ok = self.mux.put(frame, block=block)
        if not ok and not block:
            self.metrics.frames_dropped.labels(camera=frame.camera_id).inc()
            with self._lock:
                self.stats.cameras[frame.camera_id].dropped += 1
        return ok

    def _on_state(self, camera_id: str, state: CameraState) -> None:
        self.metrics.camera_up.labels(camera=camera_id).set(1 if state == CameraState.UP else 0)
        with self._lock:
            self.stats.cameras[camera_id].state = state.value

    def _on_decoded(self, camera_id: str, n: int) -> None:
        self._decoded[camera_id].inc(n)
        self.stats.cameras[camera_id].decoded += n

    def _on_error(self, camera_id: str, kind: str) -> None:
        self.metrics.camera_errors.labels(camera=camera_id).inc()
        with self._lock:
            self.stats.cameras[camera_id].errors += 1

    # -- stages ---------------------------------------------------------------------------
    def _sources_done(self) -> bool:
        return all(s.state in (CameraState.FINISHED, CameraState.STOPPED) for s in self.sources)

    def _prepare_loop(self) -> None:
        """Batches from the muxer, preprocessed while the previous batch is in the model."""
        try:
            while True:
                batch = self.mux.next_batch(wait_s=0.1)
                if batch is None:
                    if self.stop_event.is_set() or (self._sources_done() and self.mux.qsize() == 0):
                        return
                    continue
                t0 = time.perf_counter()
                prepared = self.detector.prepare(batch)
                self.metrics.stage_latency.labels(stage="preprocess").observe(time.perf_counter() - t0)
                self.metrics.batch_size.observe(len(batch))
                if not self._put(self._prepared_q, (batch, prepared)):
                    return
        except Exception:
            log.exception("preprocessing stage failed")
            self.stop_event.set()
        finally:
            self._prepare_done.set()

    def _infer_loop(self) -> None:
        try:
            while (item := self._get(self._prepared_q, self._prepare_done)) is not None:
                batch, prepared = item
                t0 = time.perf_counter()
                dets = self.detector.run(prepared)
                self.metrics.stage_latency.labels(stage="detect").observe(time.perf_counter() - t0)
                if not self._put(self._analytics_q, (batch, dets)):
                    return
        except Exception:
            log.exception("inference stage failed")
            self.stop_event.set()
        finally:
            self._infer_done.set()

    @staticmethod
    def _get(q: queue.Queue, upstream_done: threading.Event) -> Any:
        """The next item, or None once the stage feeding ``q`` has finished and ``q`` is empty."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if upstream_done.is_set() and q.empty():
                    return None

    def _put(self, q: queue.Queue, item: object) -> bool:
        """Put with backpressure; False when a stop was requested while waiting."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.stop_event.is_set():
                    return False

    def _analytics_loop(self) -> None:
        try:
            while (item := self._get(self._analytics_q, self._infer_done)) is not None:
                batch, dets = item
                t0 = time.perf_counter()
                for frame, d in zip(batch.frames, dets, strict=True):
                    self._analyse(frame, d)
                self.metrics.stage_latency.labels(stage="analytics").observe(time.perf_counter() - t0)
                with self._lock:
                    self.stats.batches += 1
                    self.stats.frames += len(batch)
                    self.stats.recent_batch_sizes.append(len(batch))
        except Exception:
            log.exception("analytics stage failed")
            self.stop_event.set()
        finally:
            self._analytics_done.set()

    def _analyse(self, frame: Frame, dets: Detections) -> None:
        ca = self.per_camera[frame.camera_id]
        incidents = ca.analyse(
            dets, t=frame.pts_seconds, wall_time=frame.wall_time, frame_w=frame.width, frame_h=frame.height
        )
        self._analysed[frame.camera_id].inc()
        self.metrics.end_to_end_latency.observe(max(time.time() - frame.wall_time, 0.0))
        self.stats.cameras[frame.camera_id].analysed += 1
        if incidents:
            self._emit_incidents(frame, incidents)

    def _emit_incidents(self, frame: Frame, incidents: list[Incident]) -> None:
        t0 = time.perf_counter()
        snapshot = snapshot_jpeg(
            frame.rgb().permute(2, 0, 1).contiguous(), quality=self.cfg.sink.snapshot_quality
        )
        digest = sha256_bytes(snapshot)
        info = self.detector.info
        events = []
        for inc in incidents:
            inc.frame_index = frame.frame_index
            event = build_event(
                inc,
                source=self.cfg.edge_id,
                location=self.per_camera[frame.camera_id].cam.location,
                frame_w=frame.width,
                frame_h=frame.height,
                model_name=info.name,
                model_version=info.version,
                wall_offset=frame.wall_time - frame.pts_seconds,
                snapshot_sha256=digest,
                snapshot_bytes=len(snapshot),
            )
            events.append((event, snapshot))
        self.outbox.append_many(events)  # one commit for the frame's incident steps; the image stored once
        for inc in incidents:
            self.incidents.append(inc)
            self.metrics.incidents.labels(type=inc.type, status=inc.status).inc()
            with self._lock:
                self.stats.incidents += 1
                self.stats.cameras[frame.camera_id].incidents += 1
            log.info("incident %s %s camera=%s zone=%s", inc.type, inc.status, inc.camera_id, inc.zone)
        self.sender.notify()
        self.metrics.stage_latency.labels(stage="events").observe(time.perf_counter() - t0)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.sender.start()
        self._prepare_thread.start()
        self._infer_thread.start()
        self._analytics_thread.start()
        for s in self.sources:
            s.start()

    def request_stop(self) -> None:
        self.stop_event.set()

    def wait(self, duration_s: float | None = None) -> None:
        """Block until the duration passes, a stop is requested, or all sources finished and drained."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_status = time.monotonic() + self.cfg.status_interval_seconds
        while not self.stop_event.is_set():
            if self._analytics_done.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.stop_event.wait(0.05)
            if self.status_stream is not None and time.monotonic() >= next_status:
                next_status += self.cfg.status_interval_seconds
                print(self.status_line(), file=self.status_stream, flush=True)

    def stop(self) -> None:
        """Stop intake, finish in-flight batches, drain the outbox for a bounded time, join everything."""
        self.stop_event.set()
        for s in self.sources:
            s.join(timeout=5.0)
            if s.is_alive():
                log.warning("camera thread %s did not stop within 5 s", s.name)
        self._prepare_thread.join(timeout=30.0)
        self._infer_thread.join(timeout=30.0)
        self._analytics_thread.join(timeout=30.0)
        self.sender.stop(drain_s=self.cfg.sink.drain_seconds)
        if self.sender.is_alive():
            log.warning("event sender did not stop; undelivered events stay in the outbox")
        self.outbox.close()
        self.detector.close()

    def run(self, duration_s: float | None = None) -> RunStats:
        self.start()
        try:
            self.wait(duration_s)
        finally:
            self.stop()
        return self.stats

    def status_line(self) -> str:
        s = self.stats
        elapsed = time.monotonic() - s.started
        sizes = list(s.recent_batch_sizes)
        avg = sum(sizes) / len(sizes) if sizes else 0.0
        cams = []
        for cid, c in list(s.cameras.items())[:8]:
            cams.append(f"{cid} {c.state} dec={c.decoded} ana={c.analysed}")
        more = f" +{len(s.cameras) - 8} cameras" if len(s.cameras) > 8 else ""
        return (
            f"[{elapsed:6.1f}s] "
            + " | ".join(cams)
            + more
            + f" | batch={avg:.1f} q={self.mux.qsize()} incidents={s.incidents} outbox={self.sender.pending}"
        )

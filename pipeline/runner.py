"""Wires the stages for a config: sources -> muxer -> detect -> track -> rules -> publish -> sink,
and carries out live camera changes across them (the cameras themselves: ``cameras.py``).

Threads: one per camera (decode), one for preprocessing (batches from the muxer, letterboxed on the
device), ``batching.workers`` for inference (model, decode, NMS; batches numbered, so analytics takes
them in order however they finish), one for analytics (tracking, rules), one for publishing
(snapshots, events, outbox: ``events/publish.py``), one sender, and the caller's, which watches and
prints the status line. Preprocessing of batch N+1 overlaps inference of batch N.
Every queue is bounded and every wait has a timeout; the first stage that dies stops the run and
is kept as ``error``; ``stop()`` joins everything.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .analytics.camera import CameraAnalytics
from .analytics.rules import check_loaded_roles
from .cameras import Cameras, CameraStats
from .config import CameraConfig, Config, ModelConfig
from .detect import Detector, as_set, create_detectors
from .detect.detector_set import DetectorSet
from .detect.factory import check_model_names
from .detect.shadow import Shadow, shadow_path
from .detect.swap import ModelSwaps, SwapRefused, load_candidate
from .devices import inference_workers, resolve_device
from .errors import ConfigError, SafeCityError, StageError
from .events.clip_store import ClipStore, clips_dir
from .events.clips import Clips
from .events.heartbeat import Beats
from .events.outbox import Outbox
from .events.publish import Analysed, Publisher
from .events.transport import Sender
from .failpoints import failpoint
from .live import Plan, plan
from .metrics import Metrics
from .overload import NOT_RUNNING, CameraLoad, KeepUpWatch
from .sources import CameraSource, CameraState, Muxer, choose_decoder
from .sources.packets import PacketRings
from .stage import AllDone, Supervisor, join_all
from .types import Detections, Frame, FrameBatch, Incident, Track
from .watch import Watch

log = logging.getLogger(__name__)

CAMERA_STOP_S = 5.0
STAGE_STOP_S = 30.0


@dataclass
class RunStats:
    """What a run did; ``elapsed_s`` is the time it analysed, up to the stop (not the drain after)."""

    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None  # when intake stopped (the outbox may drain after it)
    batches: int = 0
    frames: int = 0
    incidents: int = 0
    recent_batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=50))
    cameras: dict[str, CameraStats] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return (time.monotonic() if self.stopped is None else self.stopped) - self.started


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
        self.status_stream = status_stream
        self.stop_event = threading.Event()
        self.supervisor = Supervisor(self.stop_event)
        self.serving = False  # True with a control interface: the run goes on when every camera ended
        self._change_lock = threading.RLock()  # one live change at a time
        self._changing = False
        self._between_batches = threading.Lock()  # held by analytics over a batch
        self.reload_requested = threading.Event()  # SIGHUP: read the config again (``reload_config``)
        self.reload_config: Callable[[], Config] | None = None
        self.stats = RunStats(cameras={c.id: CameraStats() for c in cfg.cameras})
        self._lock = threading.Lock()
        check_model_names(cfg)  # a misspelt model is a config error, before anything is opened
        self.outbox = Outbox(cfg.sink.outbox, lock=True)  # before the model: a bad path fails fast
        try:
            curve = sender_curve(cfg)
            self.detector = (
                as_set(cfg, detector, metrics=self.metrics)
                if detector is not None
                else create_detectors(cfg, metrics=self.metrics)
            )
            try:
                check_loaded_roles(
                    cfg,
                    {m.key: m.roles for m in self.detector.members},
                    class_names=self.detector.info.class_names,
                )
                self._wire(cfg, curve)
            except BaseException:
                if detector is None:
                    self.detector.close()
                raise
        except BaseException:  # what was opened is closed: the outbox (and its lock) is free again
            self.outbox.close()
            raise

    def _wire(self, cfg: Config, curve: tuple[bytes, bytes, bytes] | None) -> None:
        """The muxer, analytics, sender, sources, publisher and stage threads (nothing started)."""
        self.mux = Muxer(
            max_batch_size=cfg.batching.max_batch_size,
            timeout_ms=cfg.batching.timeout_ms,
            queue_frames=cfg.batching.queue_frames,
        )
        self.per_camera = {c.id: self._analytics_for(c) for c in cfg.cameras}
        self.sender = Sender(
            curve=curve,
            outbox_path=cfg.sink.outbox,
            endpoint=cfg.sink.endpoint,
            metrics=self.metrics,
            max_in_flight=cfg.sink.max_in_flight,
            max_in_flight_bytes=int(cfg.sink.max_in_flight_mb * 2**20),
            ack_timeout_s=cfg.sink.ack_timeout_seconds,
            snapshots=cfg.sink.snapshots,
            retention_s=cfg.sink.retention_hours * 3600,
            failover_s=cfg.sink.failover_seconds,
            stall_s=cfg.sink.stall_seconds,
            failback_s=cfg.sink.failback_seconds,
            source=cfg.edge_id,
            on_error=lambda err: self.supervisor.fail("event sender", err),
            heartbeat=Beats(cfg.edge_id, self._camera_health, lambda: self.sender.pending),
        )
        self.device = resolve_device(cfg.device)
        self.decoder = choose_decoder(cfg.decoder, self.device)
        log.info(
            "decode: %s; detect: %s (%s on %s)",
            self.decoder,
            ", ".join(self.detector.model_tags),
            self.detector.info.backend,
            self.detector.info.device,
        )
        self.cameras = Cameras(
            cfg,
            mux=self.mux,
            metrics=self.metrics,
            stats=self.stats.cameras,
            lock=self._lock,
            decoder=self.decoder,
            device=self.device,
            stop_event=self.stop_event,
        )
        clips = cfg.clips
        clip_store = None
        if clips.enabled:
            clip_store = ClipStore(clips_dir(cfg.sink.outbox), max_bytes=int(clips.store_max_mb * 2**20))
            clip_store.ensure()  # a file in its place is a one-line error at start
        self.publisher = Publisher(
            cfg,
            outbox=self.outbox,
            model=self.detector.info,
            metrics=self.metrics,
            notify=self.sender.notify,
            on_committed=self._on_committed,
            max_held_events=cfg.sink.max_held_events,
            max_held_bytes=int(cfg.sink.max_held_mb * 2**20),
            clips=Clips(clip_store, pre_roll=clips.pre_roll_seconds, post_roll=clips.post_roll_seconds)
            if clip_store is not None
            else None,
            rings=self.cameras.rings,
        )
        workers = inference_workers(cfg.batching.workers, self.detector.info.device)
        # (number, batch, the detector set that prepared it, prepared | detections): the number puts
        # batches back in order for analytics; the set runs what it prepared (a model swap between)
        self._prepared_q: queue.Queue[tuple[int, FrameBatch, DetectorSet, Any]] = queue.Queue(
            maxsize=workers + 1
        )
        self._analytics_q: queue.Queue[tuple[int, FrameBatch, DetectorSet, list[Detections]]] = queue.Queue(
            maxsize=workers + 3
        )
        self._prepare_done = threading.Event()
        infer_done = [threading.Event() for _ in range(workers)]
        self._infer_done = AllDone(infer_done)
        self._analytics_done = threading.Event()
        sup = self.supervisor
        self._stages = [
            sup.thread("preprocess", self._prepare_loop, done=self._prepare_done),
            *(
                sup.thread("inference", self._infer_loop, done=done, name=f"inference-{i}" if i else None)
                for i, done in enumerate(infer_done)
            ),
            sup.thread("analytics", self._analytics_loop, done=self._analytics_done),
            sup.thread(
                "publish", lambda: self.publisher.loop(self._analytics_done), done=self.publisher.done
            ),
        ]
        self.incidents: deque[Incident] = deque(maxlen=1000)  # the latest, for callers and tests
        # camera -> [(frame index, tracks)] of every analysed frame, when a caller asks (the accuracy bench)
        self.track_log: dict[str, list[tuple[int, list[Track]]]] | None = None
        # camera -> [(frame index, media time, wall time, width, height, merged detections)] of every
        # analysed frame, when a caller asks (the accuracy bench replays them through tracker and rules)
        self.detection_log: dict[str, list[tuple[int, float, float, int, int, Detections]]] | None = None
        self.watch = Watch(self.detector)  # cameras watched live: their frames drawn (watch.py)
        self._recent: deque[Frame] = deque(maxlen=cfg.swap.check_frames)  # what a model swap is checked on
        self.swaps = ModelSwaps(  # live model swaps and their probation (detect/swap.py)
            current=lambda: self.detector,
            install=self._install_detector,
            recent_frames=lambda n: list(self._recent)[-n:],
            metrics=self.metrics,
            settings=lambda: self.cfg.swap,
        )
        self.shadow: Shadow | None = None  # a candidate model beside the live one (detect/shadow.py)
        self.keep_up = KeepUpWatch()  # read and changed by the main thread only
        self._keep_up_gen: dict[str, int] = {}

    @property
    def sources(self) -> list[CameraSource]:
        return self.cameras.sources

    @property
    def rings(self) -> PacketRings | None:
        return self.cameras.rings

    # -- live changes (the control interface, SIGHUP) -------------------------------------
    def apply(self, new: Config | Callable[[Config], Config]) -> Plan:
        """Turn the running cameras into ``new``'s (see ``live.py``), or into what ``new(cfg)``
        makes of the running config (read and changed under the same lock: two requests at once
        never undo each other): between batches, the cameras not named in the plan untouched.
        ConfigError if anything but the cameras changed, or the change does not check out."""
        with self._change_lock:
            if self.stop_event.is_set():
                raise ConfigError("the edge is stopping: no camera changes")
            if callable(new):
                new = new(self.cfg)
            p = plan(self.cfg, new)
            if p.empty:
                return p
            check_loaded_roles(
                new,
                {m.key: m.roles for m in self.detector.members},
                warn=False,
                class_names=self.detector.info.class_names,
            )
            added = {cam.id: self._analytics_for(cam, new) for cam in p.added + p.restarted}  # may raise
            self._changing = True
            try:
                with self._between_batches:
                    for cid in p.removed:
                        self._drop_camera(cid, "camera_removed")
                    for cam in p.restarted:
                        self._drop_camera(cam.id, "camera_changed")
                    for cam in p.reconfigured:
                        self._publish_ended(
                            self.per_camera[cam.id], self.per_camera[cam.id].configure(new, cam)
                        )
                        self.detector.set_camera_models(
                            cam.id, new.camera_models(cam) if cam.models else None
                        )
                    for cam in p.reconfigured + p.rate:
                        self.publisher.set_camera(cam)
                        self.cameras.by_id()[cam.id].set_rate(cam.analytics_fps)
                    self.cfg = new
                    for cam in p.added + p.restarted:
                        self._add_camera(cam, added[cam.id])
            finally:
                self._changing = False
            log.info("cameras changed: %s", {k: v for k, v in p.summary().items() if v})
            return p

    def reload(self) -> Plan | None:
        """Read the config again and apply its cameras' changes; a bad file or a change beyond the
        cameras is logged and refused whole (the edge goes on as it was)."""
        if self.reload_config is None:
            log.error("reload: this edge was not started from a config file")
            return None
        try:
            return self.apply(self.reload_config())
        except SafeCityError as err:
            log.error("reload refused, nothing changed: %s", err)
        except Exception:  # noqa: BLE001 - a reload must never end the run
            log.exception("reload failed")
        return None

    def _add_camera(self, cam: CameraConfig, analytics: CameraAnalytics) -> None:
        self.per_camera[cam.id] = analytics
        self.detector.set_camera_models(cam.id, self.cfg.camera_models(cam) if cam.models else None)
        self.publisher.set_camera(cam)
        self.cameras.add(cam)

    def _drop_camera(self, cid: str, reason: str) -> None:
        """Stop one camera (``Cameras.drop``) and end its open incidents with ``reason`` (published
        without a snapshot)."""
        self.cameras.drop(cid)
        ca = self.per_camera.pop(cid)
        self._publish_ended(ca, ca.close(reason))

    def _publish_ended(self, ca: CameraAnalytics, ended: list[Incident]) -> None:
        if ended and ca.last is not None:
            self.publisher.submit(ca.last[2], ended)

    def _analytics_for(self, cam: CameraConfig, cfg: Config | None = None) -> CameraAnalytics:
        d = self.detector
        return CameraAnalytics(
            cfg or self.cfg, cam, d.info.class_names, roles=d.label_roles, model_names=d.model_tags
        )

    @property
    def running(self) -> bool:
        """Started (and not yet stopped, unless ``stop_event`` says so)."""
        return self.cameras.wall_anchor is not None

    @property
    def error(self) -> StageError | None:
        """The first stage error, which ended the run (None: no stage failed)."""
        return self.supervisor.error

    # -- stages ---------------------------------------------------------------------------
    def _sources_done(self) -> bool:
        """Every camera finished (recordings played out); never while cameras may be added live, nor
        in the middle of a change (a camera restarted is briefly absent)."""
        if self.serving or self._changing:
            return False
        return self.cameras.done()

    def _prepare_loop(self) -> None:
        """Batches from the muxer, numbered and preprocessed while the previous ones are in the model."""
        number = 0
        while True:
            batch = self.mux.next_batch(wait_s=0.1)
            if batch is None:
                if self.stop_event.is_set() or (self._sources_done() and self.mux.qsize() == 0):
                    return
                continue
            t0 = time.perf_counter()
            detector = self.detector
            prepared = detector.prepare(batch)
            self.metrics.stage_latency.labels(stage="preprocess").observe(time.perf_counter() - t0)
            self.metrics.batch_size.observe(len(batch))
            if not self.supervisor.put(self._prepared_q, (number, batch, detector, prepared)):
                return
            number += 1

    def _infer_loop(self) -> None:
        """One inference worker: batches in the model, one at a time (several workers share the model)."""
        while (item := self.supervisor.get(self._prepared_q, self._prepare_done)) is not None:
            number, batch, detector, prepared = item
            failpoint("detect.batch")
            t0 = time.perf_counter()
            try:
                dets = detector.run(prepared)
            except Exception as err:
                previous = self.swaps.failed(detector, err)  # a model on probation: rolled back
                if previous is None:
                    raise
                detector, dets = previous, previous.detect(batch)  # the batch again, on the model before
            seconds = time.perf_counter() - t0
            self.metrics.stage_latency.labels(stage="detect").observe(seconds)
            if not self.supervisor.put(self._analytics_q, (number, batch, detector, dets)):
                return

    def _analytics_loop(self) -> None:
        """Batches in the order they were made (a camera's frames in order, whichever worker
        finished first), each analysed under the between-batches lock."""
        early: dict[int, tuple[FrameBatch, DetectorSet, list[Detections]]] = {}  # before an earlier one
        expected = 0
        while (item := self.supervisor.get(self._analytics_q, self._infer_done)) is not None:
            number, batch, detector, dets = item
            early[number] = (batch, detector, dets)
            while expected in early:
                self._analyse_batch(*early.pop(expected))
                expected += 1

    def _analyse_batch(self, batch: FrameBatch, detector: DetectorSet, dets: list[Detections]) -> None:
        t0 = time.perf_counter()
        with self._between_batches:  # live camera changes wait for the batch in hand
            for frame, d in zip(batch.frames, dets, strict=True):
                self._analyse(frame, d, detector.model_tags)
            self._recent.extend(batch.frames)
        if (shadow := self.shadow) is not None:
            shadow.offer(batch, dets)
        self.metrics.stage_latency.labels(stage="analytics").observe(time.perf_counter() - t0)
        with self._lock:
            self.stats.batches += 1
            self.stats.frames += len(batch)
            self.stats.recent_batch_sizes.append(len(batch))

    def _analyse(self, frame: Frame, dets: Detections, models: tuple[str, ...]) -> None:
        ca = self.per_camera.get(frame.camera_id)
        if ca is None or not self.cameras.current(frame):
            return  # a frame of a camera removed (or restarted) while it was in flight
        ca.tracker.model_names = models  # the versions that made these detections (a swap between)
        t = frame.pts_seconds
        if self.detection_log is not None:
            self.detection_log.setdefault(frame.camera_id, []).append(
                (frame.frame_index, t, frame.wall_time, frame.width, frame.height, dets)
            )
        tracks = ca.tracker.update(dets, t)
        incidents = ca.analyse_tracks(
            tracks, t=t, wall_time=frame.wall_time, frame_w=frame.width, frame_h=frame.height
        )
        if frame.camera_id in self.watch.cameras:  # somebody watches it live (the control interface)
            self.watch.offer(frame, ca, dets, tracks, incidents)
        if self.track_log is not None:
            self.track_log.setdefault(frame.camera_id, []).append((frame.frame_index, tracks))
        self.cameras.analysed(frame.camera_id)
        self.metrics.end_to_end_latency.observe(max(time.monotonic() - frame.decoded_at, 0.0))
        if incidents:
            self.publisher.submit(frame, incidents)
        elif frame.camera_id in self.publisher.waiting:  # how far it got, for its clips
            self.publisher.submit(Analysed(frame.camera_id, t), [])

    def _install_detector(self, detector: DetectorSet) -> None:
        """The detector set the next batches run on (a model swap, or its roll-back)."""
        self.detector = detector
        self.publisher.model = detector.info
        self.watch.detectors = detector

    def swap_model(self, key: str, model: ModelConfig) -> dict[str, Any]:
        """Swap detector ``key`` for ``model`` live (``detect/swap.py``; SwapRefused: nothing changed)."""
        with self._change_lock:  # one change at a time: cameras, a swap or a shadow
            if self.stop_event.is_set():
                raise ConfigError("the edge is stopping: no model swaps")
            return dataclasses.asdict(self.swaps.swap(self.cfg, key, model))

    def start_shadow(self, key: str, model: ModelConfig, share: float) -> dict[str, Any]:
        """Run ``model`` in the shadow of detector ``key`` on ``share`` of the batches (SwapRefused when it
        does not load or see the same classes; ConfigError when a shadow runs already)."""
        if not 0 < share <= 1:
            raise ConfigError(f"shadow share: got {share:g}; expected a share of the batches, 0 < share <= 1")
        with self._change_lock:
            if self.shadow is not None:
                raise ConfigError(f"a shadow of model {self.shadow.key} runs already: stop it first")
            if self.stop_event.is_set():
                raise ConfigError("the edge is stopping: no shadow")
            live = self.detector
            candidate = load_candidate(self.cfg, live, key, model, counted=False)  # not in the live metrics
            try:
                self.shadow = Shadow(
                    key=key,
                    candidate=candidate,
                    live_tag=live.member(key).tag,
                    cfg=self.cfg,
                    share=share,
                    db=shadow_path(self.cfg.sink.outbox),
                    conf=model.conf_threshold,
                )
            except Exception as err:
                candidate.member(key).detector.close()
                raise ConfigError(f"the shadow's record {shadow_path(self.cfg.sink.outbox)}: {err}") from err
            log.info(
                "shadow: %s beside %s on %.0f%% of batches",
                candidate.member(key).tag,
                live.member(key).tag,
                share * 100,
            )
            return self.shadow.summary()

    def stop_shadow(self, key: str) -> dict[str, Any]:
        with self._change_lock:
            shadow = self.shadow
            if shadow is None or shadow.key != key:
                raise SwapRefused(f"no shadow of model {key} runs")
            self.shadow = None
            return {**shadow.stop(), "record": str(shadow_path(self.cfg.sink.outbox))}

    def _camera_health(self) -> dict[str, dict[str, Any]]:
        """Each configured camera's state and counts, for the heartbeats."""
        with self._lock:
            stats = {cid: dataclasses.asdict(c) for cid, c in self.stats.cameras.items()}
        return {
            c.id: stats.get(c.id) or {**dataclasses.asdict(CameraStats()), "state": "stopped"}
            for c in self.cfg.cameras
        }

    def _on_committed(self, incidents: list[Incident]) -> None:
        """Incident steps that are in the outbox (from the publish stage)."""
        if (shadow := self.shadow) is not None:
            shadow.live_incidents(incidents)
        for inc in incidents:
            self.incidents.append(inc)
            self.metrics.incidents.labels(type=inc.type, status=inc.status).inc()
            with self._lock:
                self.stats.incidents += 1
                c = self.stats.cameras.get(inc.camera_id)  # None: a camera removed meanwhile
                if c is not None:
                    c.incidents += 1
            log.info("incident %s %s camera=%s zone=%s", inc.type, inc.status, inc.camera_id, inc.zone)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        with self._change_lock:  # a camera added meanwhile is started once, here or by the change
            self.stats.started = time.monotonic()
            self.sender.start()
            for t in self._stages:
                t.start()
            self.cameras.start_all()  # media time 0 of every recording: now

    def request_stop(self) -> None:
        self.stop_event.set()
        self.cameras.stop_all()

    def wait(self, duration_s: float | None = None) -> None:
        """Block until the duration passes, a stop is requested (or a stage failed), or all sources
        finished and everything is published; the status line and keep-up checks meanwhile."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        interval = self.cfg.status_interval_seconds
        next_status = time.monotonic() + interval
        while not self.stop_event.is_set():
            if self.publisher.done.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.stop_event.wait(0.05)
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            if time.monotonic() >= next_status:
                next_status += interval
                self._check_keep_up()
                self.swaps.tick()
                if self.status_stream is not None:
                    print(self.status_line(), file=self.status_stream, flush=True)

    def _check_keep_up(self) -> None:
        loads = {}
        for s in self.sources:
            if self._keep_up_gen.get(s.cam.id) != s.generation:  # a camera (re)started live: anew
                self._keep_up_gen[s.cam.id] = s.generation
                self.keep_up.reset(s.cam.id)
            c = self.stats.cameras.get(s.cam.id)
            if c is None:
                continue
            steady = s.state == CameraState.UP and (s.live or s.cam.realtime)
            loads[s.cam.id] = CameraLoad(s.media_time, c.analysed, c.dropped, steady)
        changed = self.keep_up.update(time.monotonic(), loads)
        for cid, (behind, _) in changed.items():
            c = self.stats.cameras.get(cid)
            if c is None:
                continue
            c.behind = behind
            self.metrics.camera_behind.labels(camera=cid).set(1 if behind else 0)
        ups = [f"{cid} ({why})" for cid, (b, why) in changed.items() if b]
        if ups:
            n = len(self.keep_up.behind())
            log.warning(
                "%d of %d cameras cannot keep up (this server is overloaded, or the cameras ask for more "
                "than it can analyse): %s",
                n,
                len(self.sources),
                "; ".join(ups[:5]) + (f" and {len(ups) - 5} more" if len(ups) > 5 else ""),
            )
        downs = [cid for cid, (b, why) in changed.items() if not b and why != NOT_RUNNING]
        if downs:
            log.info("cameras keeping up again: %s", ", ".join(downs[:10]))

    def stop(self) -> None:
        """Stop intake, finish in-flight batches, drain the outbox for a bounded time, join everything."""
        if self.stats.stopped is None:
            self.stats.stopped = time.monotonic()
        self.request_stop()
        for s in join_all(list(self.sources), timeout_s=CAMERA_STOP_S):
            log.warning("camera thread %s did not stop within %.0f s", s.name, CAMERA_STOP_S)
        for t in join_all(self._stages, timeout_s=STAGE_STOP_S):
            log.warning("%s stage did not stop within %.0f s", t.name, STAGE_STOP_S)
        self.sender.stop(drain_s=self.cfg.sink.drain_seconds)
        if self.sender.is_alive():
            log.warning("event sender did not stop; undelivered events stay in the outbox")
        self.outbox.close()
        if self.shadow is not None:
            self.shadow.stop()
            self.shadow = None
        self.swaps.close()
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
        elapsed = s.elapsed_s
        sizes = list(s.recent_batch_sizes)
        avg = sum(sizes) / len(sizes) if sizes else 0.0
        cams = []
        for cid, c in list(s.cameras.items())[:8]:
            cams.append(f"{cid} {c.state}{' BEHIND' if c.behind else ''} dec={c.decoded} ana={c.analysed}")
        more = f" +{len(s.cameras) - 8} cameras" if len(s.cameras) > 8 else ""
        behind = len(self.keep_up.behind())
        held = self.publisher.held_events
        return (
            f"[{elapsed:6.1f}s] "
            + " | ".join(cams)
            + more
            + f" | batch={avg:.1f} q={self.mux.qsize()} incidents={s.incidents} outbox={self.sender.pending}"
            + ("" if self.sender.connected else " (sink not connected)")
            + (f" | {behind}/{len(s.cameras)} cameras behind" if behind else "")
            + (f" | OUTBOX NOT WRITABLE, {held} held" if not self.publisher.writable else "")
        )

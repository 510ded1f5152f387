"""Multi-object tracking per camera, ByteTrack-class: two-stage IoU association with motion prediction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import TrackerConfig
from .types import DOWN, NO_VERDICT, Detections, Track

VERDICT_KEEP_S = 1.0  # a posture verdict holds this long on frames where no posture model saw the object


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (N, 4) and b (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return (inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)).astype(np.float32)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) by descending IoU, each row and column used once, IoU >= threshold."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


@dataclass
class _TrackState:
    track_id: int
    xyxy: np.ndarray
    velocity: np.ndarray  # box coordinates per second
    confidence: float
    class_id: int
    last_t: float
    hits: int = 1
    class_votes: dict[int, float] = field(default_factory=dict)
    down: int = NO_VERDICT
    down_conf: float = 0.0
    down_t: float = float("-inf")
    sources: int = 0

    def observe(self, dets: Detections, d: int, t: float) -> None:
        """What the detection ``d`` says besides its box: its posture verdict and its detectors."""
        assert dets.down is not None and dets.down_conf is not None and dets.sources is not None
        if dets.down[d] != NO_VERDICT:
            self.down, self.down_conf, self.down_t = int(dets.down[d]), float(dets.down_conf[d]), t
        self.sources = int(dets.sources[d])

    def verdict(self, t: float) -> bool | None:
        if self.down == NO_VERDICT or t - self.down_t > VERDICT_KEEP_S:
            return None
        return self.down == DOWN

    def predicted(self, t: float) -> np.ndarray:
        return self.xyxy + self.velocity * (t - self.last_t)

    def update(self, xyxy: np.ndarray, conf: float, cls: int, t: float) -> None:
        dt = t - self.last_t
        if dt > 0:
            self.velocity = 0.5 * self.velocity + 0.5 * (xyxy - self.xyxy) / dt
        self.xyxy, self.confidence, self.last_t = xyxy, conf, t
        self.hits += 1
        self.class_votes[cls] = self.class_votes.get(cls, 0.0) + conf
        self.class_id = cls


class Tracker:
    """Tracks objects of one camera. ``update(detections, t)`` returns the confirmed tracks seen at t."""

    def __init__(
        self, cfg: TrackerConfig, class_names: tuple[str, ...], model_names: tuple[str, ...] = ()
    ) -> None:
        self.cfg = cfg
        self.class_names = class_names
        self.model_names = model_names  # bit i of a detection's ``sources`` is model_names[i]
        self.tracks: list[_TrackState] = []
        self._next_id = 1

    def _label(self, cls: int) -> str:
        return self.class_names[cls] if 0 <= cls < len(self.class_names) else str(cls)

    def update(self, dets: Detections, t: float) -> list[Track]:
        cfg = self.cfg
        high = dets.confidence >= cfg.high_threshold
        low = (dets.confidence >= cfg.low_threshold) & ~high
        hi_idx, lo_idx = np.nonzero(high)[0], np.nonzero(low)[0]
        pred = np.array([tr.predicted(t) for tr in self.tracks], np.float32).reshape(-1, 4)
        matched: list[tuple[_TrackState, int]] = []
        # stage 1: high-confidence detections against all tracks
        pairs = greedy_match(iou_matrix(pred, dets.xyxy[hi_idx]), cfg.match_iou)
        used_tracks = {r for r, _ in pairs}
        used_hi = {c for _, c in pairs}
        matched += [(self.tracks[r], int(hi_idx[c])) for r, c in pairs]
        # stage 2: low-confidence detections against the tracks left over (occlusion, blur)
        rest = [i for i in range(len(self.tracks)) if i not in used_tracks]
        pairs2 = greedy_match(iou_matrix(pred[rest], dets.xyxy[lo_idx]), cfg.match_iou)
        matched += [(self.tracks[rest[r]], int(lo_idx[c])) for r, c in pairs2]
        # stage 3: fast or small objects whose boxes no longer overlap their prediction, matched by the
        # distance of centres (within 3 box sizes) and the same class
        matched_ids = {id(tr) for tr, _ in matched}
        free = [int(d) for c, d in enumerate(hi_idx) if c not in used_hi]
        for i, tr in enumerate(self.tracks):
            if id(tr) in matched_ids or not free:
                continue
            p = pred[i]
            size = max(p[2] - p[0], p[3] - p[1])
            best, best_d = None, 3.0 * size
            for d in free:
                if int(dets.class_id[d]) != tr.class_id:
                    continue
                dist = float(np.hypot(*((dets.xyxy[d][:2] + dets.xyxy[d][2:]) / 2 - (p[:2] + p[2:]) / 2)))
                if dist <= best_d:
                    best, best_d = d, dist
            if best is not None:
                matched.append((tr, best))
                free.remove(best)
                used_hi.add(int(np.nonzero(hi_idx == best)[0][0]))
        for tr, d in matched:
            tr.update(dets.xyxy[d].copy(), float(dets.confidence[d]), int(dets.class_id[d]), t)
            tr.observe(dets, d, t)
        # new tracks from unmatched confident detections
        for c, di in enumerate(hi_idx):
            if c not in used_hi and float(dets.confidence[di]) >= cfg.new_track_threshold:
                cls = int(dets.class_id[di])
                self.tracks.append(
                    _TrackState(
                        self._next_id,
                        dets.xyxy[di].copy(),
                        np.zeros(4, np.float32),
                        float(dets.confidence[di]),
                        cls,
                        t,
                        class_votes={cls: float(dets.confidence[di])},
                    )
                )
                self.tracks[-1].observe(dets, int(di), t)
                self._next_id += 1
        # forget tracks lost for too long: state stays bounded over long runs
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= cfg.max_lost_seconds]
        return [
            Track(
                tr.track_id,
                tr.xyxy.copy(),
                tr.confidence,
                tr.class_id,
                self._label(tr.class_id),
                tr.hits,
                down=tr.verdict(t),
                down_confidence=tr.down_conf,
                models=self._models(tr.sources),
            )
            for tr in self.tracks
            if tr.last_t == t and tr.hits >= 2
        ]

    def _models(self, sources: int) -> tuple[str, ...]:
        return tuple(name for i, name in enumerate(self.model_names) if sources >> i & 1)

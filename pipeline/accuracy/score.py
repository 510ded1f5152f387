"""How right the incidents are: predicted incidents matched to true ones, per incident type.

An incident is an interval of media time on one footage file (and camera), of one type, optionally in
one zone. A prediction matches a true incident of the same file, type (and zone, when both name
one) when their temporal IoU (overlap over union of the two intervals) is at least ``iou``
(default 0.3), or when it starts within ``onset_s`` of the true start (default 3 s: the operator got
the alert for that occurrence, on time, even if the incident it reports was shorter; the matching
of ActivityNet and the AI City accident track, ``shared/notes/incidents-and-anchors.md``). Matching
is one-to-one and greedy: all candidate pairs sorted by IoU, highest first, each taken when neither
side is taken yet (ties broken by the nearer onset, then the earlier start). Matched pairs are true
positives; predictions left are false positives, true incidents left are misses. Per type:
precision, recall, F1, and the alert latency of the matches (when the alert was emitted minus the
true start).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_IOU = 0.3
DEFAULT_ONSET_S = 3.0


@dataclass(frozen=True)
class Interval:
    """One incident, true or predicted: its footage, type, zone (None: any) and start/end in media
    seconds (a predicted incident still open at the end of the footage ends there)."""

    footage: str
    type: str
    start: float
    end: float
    zone: str | None = None
    ref: str = ""  # where it comes from: an incident id, or a line of the annotation
    alert: float | None = None  # predicted: when its start was emitted (the dwell it reports began earlier)
    severity: str | None = None  # predicted: the incident's severity

    def __post_init__(self) -> None:
        if not self.end >= self.start:
            raise ValueError(f"{self.footage} {self.type}: end {self.end} is before start {self.start}")


def temporal_iou(a: Interval, b: Interval) -> float:
    inter = min(a.end, b.end) - max(a.start, b.start)
    union = max(a.end, b.end) - min(a.start, b.start)
    if union <= 0:  # two instants at the same time
        return 1.0 if a.start == b.start else 0.0
    return max(inter, 0.0) / union


def _compatible(p: Interval, t: Interval) -> bool:
    return (
        p.footage == t.footage and p.type == t.type and (p.zone is None or t.zone is None or p.zone == t.zone)
    )


@dataclass
class Match:
    truth: Interval
    predicted: Interval
    iou: float

    @property
    def latency(self) -> float:
        """How long after the true start the alert came (the prediction's ``alert``, else its start)."""
        p = self.predicted
        return (p.alert if p.alert is not None else p.start) - self.truth.start


@dataclass
class TypeScore:
    type: str
    matches: list[Match] = field(default_factory=list)
    false_positives: list[Interval] = field(default_factory=list)
    misses: list[Interval] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return len(self.matches)

    @property
    def precision(self) -> float | None:
        n = self.tp + len(self.false_positives)
        return None if n == 0 else self.tp / n

    @property
    def recall(self) -> float | None:
        n = self.tp + len(self.misses)
        return None if n == 0 else self.tp / n

    @property
    def f1(self) -> float | None:
        """2TP / (2TP + FP + FN): 0 when nothing was right, None only when there was nothing at all."""
        n = 2 * self.tp + len(self.false_positives) + len(self.misses)
        return None if n == 0 else 2 * self.tp / n

    def latency_percentiles(self, qs: Sequence[float] = (50, 90, 100)) -> dict[str, float] | None:
        if not self.matches:
            return None
        lat = np.array([m.latency for m in self.matches])
        return {f"p{int(q)}": float(np.percentile(lat, q)) for q in qs}

    def summary(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        lat = self.latency_percentiles()
        return {
            "type": self.type,
            "true": self.tp + len(self.misses),
            "predicted": self.tp + len(self.false_positives),
            "tp": self.tp,
            "fp": len(self.false_positives),
            "fn": len(self.misses),
            "precision": r(self.precision),
            "recall": r(self.recall),
            "f1": r(self.f1),
            "latency_s": None if lat is None else {k: round(v, 3) for k, v in lat.items()},
        }


def match(
    truth: Iterable[Interval],
    predicted: Iterable[Interval],
    *,
    iou: float = DEFAULT_IOU,
    onset_s: float = DEFAULT_ONSET_S,
) -> dict[str, TypeScore]:
    """Score ``predicted`` against ``truth``: a ``TypeScore`` per incident type seen on either side.
    ``onset_s`` 0: by temporal IoU alone."""
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    if not onset_s >= 0:
        raise ValueError(f"onset_s must be 0 or more seconds, got {onset_s}")
    truth, predicted = list(truth), list(predicted)
    pairs = []
    for i, p in enumerate(predicted):
        for j, t in enumerate(truth):
            if _compatible(p, t):
                v = temporal_iou(p, t)
                onset = abs(p.start - t.start)
                if v >= iou or (onset_s > 0 and onset <= onset_s):
                    pairs.append((-v, onset, min(p.start, t.start), i, j))
    pairs.sort()
    used_p: set[int] = set()
    used_t: set[int] = set()
    scores: dict[str, TypeScore] = {}

    def score(kind: str) -> TypeScore:
        return scores.setdefault(kind, TypeScore(kind))

    for neg_v, _, _, i, j in pairs:
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        score(truth[j].type).matches.append(Match(truth[j], predicted[i], -neg_v))
    for i, p in enumerate(predicted):
        if i not in used_p:
            score(p.type).false_positives.append(p)
    for j, t in enumerate(truth):
        if j not in used_t:
            score(t.type).misses.append(t)
    return dict(sorted(scores.items()))

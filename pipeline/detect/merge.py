"""One object per real thing: the detections of several detectors on one frame, merged.

Two detections from different detectors are one object when their boxes overlap (IoU at least
``merge_iou``) and they say the same kind of thing (their roles meet, posture aside: ``person`` and
``fallen_person`` are both a person). The object keeps the box, class and confidence of the object
detector (the first of the set's order that saw it; posture detectors come after all of them); a
detector that gives people's posture (one with a ``fallen_person`` class,
like the fall model) adds its verdict to the person instead of a second object: down (a
``fallen_person`` class) or upright (its other person classes), with that detection's confidence.
A posture detection no other detector saw stays an object of its own, with its own verdict, when
its confidence reaches ``lone_posture_conf`` (or no detector of the set sees people at all): a
posture model alone reads heaps of clothes as fallen people, an object detector confirms people.
Such an object is a person with a posture, not a "Normal" or a "Fall": it takes ``person_class``
(the set's person class) where one is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..track import iou_matrix
from ..types import DOWN, NO_VERDICT, UPRIGHT, Detections

PERSON_ROLES = frozenset({"person", "fallen_person"})


@dataclass(frozen=True)
class Member:
    """One detector of a set, as the merge sees it."""

    index: int  # its bit in ``Detections.sources``
    class_offset: int  # its class ids start here in the set's class list
    class_roles: tuple[frozenset[str], ...]  # per class of its own

    @property
    def posture(self) -> bool:
        return any("fallen_person" in r for r in self.class_roles)

    def kind(self, cls: int) -> frozenset[str]:
        roles = self.class_roles[cls] if 0 <= cls < len(self.class_roles) else frozenset()
        return frozenset({"person"}) if roles & PERSON_ROLES else roles

    def verdict(self, cls: int) -> int:
        roles = self.class_roles[cls] if 0 <= cls < len(self.class_roles) else frozenset()
        if not self.posture or not roles & PERSON_ROLES:
            return NO_VERDICT
        return DOWN if "fallen_person" in roles else UPRIGHT


def merge(
    parts: list[tuple[Member, Detections]],
    merge_iou: float,
    *,
    lone_posture_conf: float = 0.0,
    person_class: int | None = None,
) -> Detections:
    """The set's detections of one frame: class ids in the set's class list, posture and sources set.

    Detectors that see objects go first (in the set's order), posture detectors after them, so an
    object's box is an object detector's wherever one saw it."""
    ordered = sorted(parts, key=lambda p: (p[0].posture, p[0].index))
    sees_people = any(not m.posture and any(r & PERSON_ROLES for r in m.class_roles) for m, _ in parts)
    boxes: list[np.ndarray] = []
    rows: list[list[float]] = []  # conf, class id, down, down conf, sources
    kinds: list[frozenset[str]] = []
    for member, dets in ordered:
        mine: set[int] = set()  # objects this detector made or merged into (one detection each)
        before = len(boxes)  # a detector's own detections are never merged with each other
        for d in np.argsort(-dets.confidence, kind="stable"):
            cls = int(dets.class_id[d])
            kind, verdict, conf = member.kind(cls), member.verdict(cls), float(dets.confidence[d])
            ious = iou_matrix(dets.xyxy[d : d + 1], np.array(boxes, np.float32).reshape(-1, 4))[0]
            same = [o for o in range(len(boxes)) if kinds[o] & kind and ious[o] >= merge_iou]
            free = [o for o in same if o < before and o not in mine]
            if not free:
                if member.posture and verdict != NO_VERDICT and any(o in mine for o in same):
                    continue  # its second box on a person it has a verdict on (a Normal and a Fall)
                if member.posture and sees_people and verdict != NO_VERDICT and conf < lone_posture_conf:
                    continue  # a person only the posture model saw, and not surely
                mine.add(len(boxes))
                boxes.append(dets.xyxy[d])
                down_conf = conf if verdict != NO_VERDICT else 0.0
                set_class = member.class_offset + cls
                if verdict != NO_VERDICT and person_class is not None:
                    set_class = person_class  # a person with a posture, whichever class said so
                rows.append([conf, set_class, verdict, down_conf, float(1 << member.index)])
                kinds.append(kind)
                continue
            best = max(free, key=lambda o: ious[o])
            mine.add(best)
            row = rows[best]
            row[4] = float(int(row[4]) | 1 << member.index)
            if verdict != NO_VERDICT and (row[2] == NO_VERDICT or conf > row[3]):
                row[2], row[3] = verdict, conf
    if not boxes:
        return Detections.empty()
    r = np.array(rows, np.float64)
    return Detections(
        np.array(boxes, np.float32),
        r[:, 0],
        r[:, 1].astype(np.int64),
        r[:, 2],
        r[:, 3],
        r[:, 4].astype(np.int64),
    )

"""Several detectors on one batch: the merge (one object per person, the fall model's verdict as its
attribute), cameras choosing detectors, one letterbox per canvas, and the real COCO + fall models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import parse_config
from pipeline.detect import create_detectors
from pipeline.detect.merge import Member, merge
from pipeline.detect.roles import role_map
from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.track import Tracker, iou_matrix
from pipeline.types import DOWN, NO_VERDICT, UPRIGHT, Detections, Frame, FrameBatch, Track

from .test_darknet import real_frames

P, F = frozenset({"person"}), frozenset({"person", "fallen_person"})
COCO = Member(0, 0, (P, frozenset({"vehicle"})))  # classes: person, car
FALL = Member(1, 2, (P, F))  # classes: Normal, Fall (ids 2, 3 in the set)


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    a = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def test_a_person_seen_by_both_is_one_object_with_the_fall_verdict() -> None:
    coco = dets((100, 100, 140, 220, 0.9, 0), (300, 300, 400, 360, 0.8, 1))
    fall = dets(
        (102, 104, 142, 224, 0.7, 1), (600, 500, 700, 540, 0.6, 1)
    )  # same person: Fall; a second Fall alone
    out = merge([(FALL, fall), (COCO, coco)], 0.5)
    assert len(out) == 3
    person = int(np.argmax(out.confidence))
    np.testing.assert_allclose(out.xyxy[person], [100, 100, 140, 220])  # the object detector's box
    assert (
        out.class_id[person] == 0 and out.down[person] == DOWN and out.down_conf[person] == pytest.approx(0.7)
    )
    assert out.sources[person] == 0b11
    car = int(np.nonzero(out.class_id == 1)[0][0])
    assert out.down[car] == NO_VERDICT and out.sources[car] == 0b01  # a car gets no posture
    alone = int(np.nonzero(out.class_id == 3)[0][0])  # the fall model's own person: its class, its verdict
    assert out.down[alone] == DOWN and out.sources[alone] == 0b10
    # ... kept only when it is sure enough (a heap of clothes read as a fallen person is not)
    assert len(merge([(FALL, fall), (COCO, coco)], 0.5, lone_posture_conf=0.65)) == 2
    assert len(merge([(FALL, fall), (COCO, coco)], 0.5, lone_posture_conf=0.6)) == 3
    assert len(merge([(FALL, fall)], 0.5, lone_posture_conf=0.99)) == 2  # nothing else sees people: all kept
    # with the set's person class given, the posture model's own person is a person with a posture
    labelled = merge([(FALL, fall), (COCO, coco)], 0.5, person_class=0)
    assert sorted(labelled.class_id.tolist()) == [0, 0, 1] and sorted(labelled.down.tolist())[-2:] == [
        DOWN,
        DOWN,
    ]


def test_a_posture_models_two_boxes_on_one_person_are_one_verdict() -> None:
    """The fall model may give one person a Normal and a Fall box: one object, the surer verdict."""
    coco = dets((100, 100, 140, 220, 0.9, 0))
    fall = dets((101, 100, 141, 220, 0.8, 0), (100, 102, 140, 222, 0.7, 1))
    out = merge([(COCO, coco), (FALL, fall)], 0.4)
    assert len(out) == 1 and out.down.tolist() == [UPRIGHT] and out.sources.tolist() == [0b11]
    assert len(merge([(FALL, fall)], 0.4)) == 1  # a camera that runs only the fall model: the same


def test_merge_needs_overlap_and_the_same_kind() -> None:
    coco = dets((100, 100, 140, 220, 0.9, 0), (300, 300, 400, 360, 0.8, 1))
    fall = dets((160, 100, 200, 220, 0.7, 0), (300, 300, 400, 360, 0.6, 0))  # beside the person; on the car
    out = merge([(COCO, coco), (FALL, fall)], 0.5)
    assert len(out) == 4  # a person box on a car is not the car
    assert set(out.down.tolist()) == {NO_VERDICT, UPRIGHT}
    # two people side by side and the fall model's two verdicts: each goes to its own person
    coco = dets((100, 100, 140, 220, 0.9, 0), (150, 100, 190, 220, 0.8, 0))
    fall = dets((151, 101, 191, 221, 0.9, 1), (99, 99, 139, 219, 0.5, 0))
    out = merge([(COCO, coco), (FALL, fall)], 0.5)
    assert len(out) == 2 and out.down.tolist() == [UPRIGHT, DOWN]


def test_the_tracker_keeps_the_verdict_on_the_track() -> None:
    from pipeline.config import TrackerConfig

    tr = Tracker(TrackerConfig(), ("person", "car", "Normal", "Fall"), ("coco@1", "fall@2"))
    fall = dets((102, 104, 142, 224, 0.7, 1))
    for k in range(3):
        out = merge([(COCO, dets((100, 100, 140, 220, 0.9, 0))), (FALL, fall if k != 2 else dets())], 0.5)
        tracks = tr.update(out, k * 0.2)
    (t,) = tracks
    assert t.label == "person" and t.down is True and t.models == ("coco@1",)  # verdict held a moment
    for k in range(3, 12):
        tracks = tr.update(merge([(COCO, dets((100, 100, 140, 220, 0.9, 0)))], 0.5), k * 0.2)
    assert tracks[0].down is None  # more than a second without a verdict: none


def cfg_two(**cams: object) -> object:
    return parse_config(
        {
            "device": "cpu",
            "cameras": [
                {"id": "all", "source": "a.mp4"},
                {"id": "coco-only", "source": "b.mp4", "models": ["yolov3-tiny-coco"]},
            ],
            "models": [{"name": "yolov3-tiny-coco", "conf_threshold": 0.3}, {"name": "fall-yolov8"}],
            **cams,
        }
    )


def test_roles_of_a_model_are_checked_against_its_classes(fall_model: Path) -> None:
    cfg = parse_config(
        {
            "cameras": [{"id": "c", "source": "a.mp4"}],
            "model": {"name": "fall-yolov8", "roles": {"fallen_person": ["Fal"]}},
        }
    )
    with pytest.raises(ConfigError, match=r"role 'fallen_person' names class 'Fal'.*did you mean 'Fall'"):
        role_map(cfg.models[0], ("Normal", "Fall"))
    assert role_map(
        parse_config({"cameras": [{"id": "c", "source": "a"}]}).models[1], ("Normal", "Fall")
    ) == {
        "person": ["Normal", "Fall"],
        "fallen_person": ["Fall"],
    }


def test_real_coco_and_fall_models_on_one_batch(coco_model: Path, fall_model: Path, vtest: Path) -> None:
    metrics = Metrics()
    ds = create_detectors(cfg_two(), metrics=metrics)
    assert ds.model_tags[0].startswith("yolov3-tiny-coco@") and ds.model_tags[1].startswith("fall-yolov8@")
    frames = real_frames(vtest, every=60, count=6)
    batch = FrameBatch(
        [Frame("all" if i % 2 == 0 else "coco-only", f, i, i, 0.0) for i, f in enumerate(frames)]
    )
    prepared = ds.prepare(batch)
    # two canvases (416 and 640 px): the fall model's holds only the frames of the camera that runs it
    assert sorted(len(g.frames) for g in prepared.groups) == [3, 6]
    out = ds.run(prepared)
    names = ds.info.class_names
    persons_both = 0
    for i, d in enumerate(out):
        person_like = [k for k, c in enumerate(d.class_id) if names[c] in ("person", "Normal", "Fall")]
        if i % 2:  # the COCO model only: no posture, no fall classes
            assert all(d.down[k] == NO_VERDICT and names[d.class_id[k]] == "person" for k in person_like)
            continue
        # one object per person: no two person objects from different detectors overlap as much as a merge
        boxes = d.xyxy[person_like]
        iou = iou_matrix(boxes, boxes) - np.eye(len(boxes))
        src = d.sources[person_like]
        cross = (src[:, None] & src[None, :]) == 0
        assert not (iou[cross] >= 0.5).any()
        persons_both += int(((d.sources == 0b11) & (d.down != NO_VERDICT)).sum())
    assert persons_both >= 3  # people both models saw, with the fall model's verdict on them
    # a person only the fall model saw is a "person" with its verdict, never a "Normal" or a "Fall"
    assert not any(names[c] in ("Normal", "Fall") for d in out for c in d.class_id)
    alone = create_detectors(
        parse_config({"cameras": [{"id": "c", "source": "a"}], "model": {"name": "fall-yolov8"}})
    )
    assert alone.info.class_names[alone.person_class] == "person" and "person" in alone.label_roles["person"]
    scraped = {
        s.labels["model"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "safecity_model_detections_total"
    }
    assert scraped["yolov3-tiny-coco"] > 0 and scraped["fall-yolov8"] > 0


def test_detectors_of_one_canvas_share_the_letterbox(fall_model: Path) -> None:
    cfg = parse_config(
        {
            "device": "cpu",
            "cameras": [{"id": "c", "source": "a.mp4"}],
            "models": [{"name": "fall-yolov8", "id": "fall-a"}, {"name": "fall-yolov8", "id": "fall-b"}],
        }
    )
    ds = create_detectors(cfg)
    frame = Frame("c", torch.zeros((480, 640, 3), dtype=torch.uint8), 0.0, 0, 0.0)
    prepared = ds.prepare(FrameBatch([frame, frame]))
    assert len(prepared.groups) == 1 and [i for i, _ in prepared.groups[0].runs] == [0, 1]
    assert len(ds.run(prepared)) == 2


# Hand annotation of vtest.avi, 8.4 to 10.4 s (every 0.4 s): where four people are (a point on each,
# full-frame pixels), read off the frames by eye. The brown-jacketed man stands by the sign, the
# grey-jacketed man walks up the road alone, a couple (red jacket, dark coat) walk close together.
HAND = {
    "brown jacket": [(391, 221), (392, 218), (397, 218), (396, 212), (397, 215), None],
    "grey jacket": [(580, 227), (582, 215), (587, 206), (595, 201), (603, 195), (614, 186)],
    "red jacket": [(461, 204), (472, 198), (483, 195), (495, 189), (506, 183), (516, 180)],
    "dark coat": [(493, 207), (498, 201), (510, 195), (518, 192), (528, 183), (539, 180)],
}
HAND_TIMES = [8.4, 8.8, 9.2, 9.6, 10.0, 10.4]


def test_tracks_keep_their_ids_on_vtest(coco_model: Path, fall_model: Path, vtest: Path) -> None:
    """Both real models and the tracker at 5 fps over the clip's first 10.4 s; at the hand-annotated
    frames, the track under each person (the box holding the point with the nearest centre)."""
    import av

    cfg = parse_config(
        {
            "device": "cpu",
            "cameras": [{"id": "v", "source": "x"}],
            "models": [
                {"name": "yolov3-tiny-coco", "conf_threshold": 0.3},
                {"name": "fall-yolov8", "conf_threshold": 0.3},
            ],
        }
    )
    ds = create_detectors(cfg)
    tracker = Tracker(cfg.tracker, ds.info.class_names, ds.model_tags)
    seen: dict[str, list[int | None]] = {name: [] for name in HAND}
    with av.open(str(vtest)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 2:
                continue
            if i > 104:
                break
            t = round(i / 10, 1)
            frame = Frame("v", torch.from_numpy(f.to_ndarray(format="rgb24")), t, i, 0.0)
            tracks = tracker.update(ds.detect(FrameBatch([frame]))[0], t)
            if t not in HAND_TIMES:
                continue
            k = HAND_TIMES.index(t)
            for name, points in HAND.items():
                if points[k] is None:
                    continue
                x, y = points[k]
                under = [
                    tr for tr in tracks if tr.xyxy[0] <= x <= tr.xyxy[2] and tr.xyxy[1] <= y <= tr.xyxy[3]
                ]

                def centre(tr: Track, x: float = x, y: float = y) -> float:
                    return float(
                        np.hypot((tr.xyxy[0] + tr.xyxy[2]) / 2 - x, (tr.xyxy[1] + tr.xyxy[3]) / 2 - y)
                    )

                seen[name].append(min(under, key=centre).track_id if under else None)
    ids = {name: [i for i in v if i is not None] for name, v in seen.items()}
    switches = {name: sum(a != b for a, b in zip(v, v[1:], strict=False)) for name, v in ids.items()}
    print("ids per person:", seen, "switches:", switches)
    # the two people walking apart keep one id each; the couple walking shoulder to shoulder may swap
    assert switches["brown jacket"] == 0 and switches["grey jacket"] == 0, seen
    assert len(ids["grey jacket"]) == 6 and len(ids["brown jacket"]) == 5, seen  # found in every frame
    assert sum(switches.values()) <= 4, seen

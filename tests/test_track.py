import numpy as np

from pipeline.config import TrackerConfig
from pipeline.track import Tracker, greedy_match, iou_matrix
from pipeline.types import Detections


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    a = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(int))


def test_iou_and_matching() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    iou = iou_matrix(a, b)
    assert np.isclose(iou[0, 1], 0.5) and np.isclose(iou[1, 0], 1.0) and iou[0, 0] == 0
    assert sorted(greedy_match(iou, 0.3)) == [(0, 1), (1, 0)]
    assert greedy_match(iou, 0.9) == [(1, 0)]


def test_identities_survive_crossing_paths_and_a_missed_frame() -> None:
    """Two people walk towards each other, pass with a gap, one is missed for a frame."""
    trk = Tracker(TrackerConfig(), ("person",))
    ids_a, ids_b = set(), set()
    for k in range(30):
        t = k * 0.2
        xa, xb = 10 + 12 * k, 400 - 12 * k
        rows = [(xa, 100, xa + 40, 200, 0.9, 0)]
        if k != 12:  # B not detected in one frame
            rows.append((xb, 260, xb + 40, 360, 0.85, 0))
        tracks = trk.update(dets(*rows), t)
        for tr in tracks:
            (ids_a if tr.xyxy[1] < 230 else ids_b).add(tr.track_id)
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def test_low_confidence_detections_keep_a_track_alive_but_dont_start_one() -> None:
    trk = Tracker(TrackerConfig(), ("person",))
    trk.update(dets((0, 0, 50, 100, 0.9, 0)), 0.0)
    (tr,) = trk.update(dets((2, 0, 52, 100, 0.9, 0)), 0.2)
    first = tr.track_id
    (tr,) = trk.update(dets((4, 0, 54, 100, 0.2, 0)), 0.4)  # occluded: second-stage match
    assert tr.track_id == first
    assert trk.update(dets((300, 0, 350, 100, 0.3, 0)), 0.6) == []
    assert all(t.xyxy[0] < 100 for t in trk.tracks)


def test_new_track_needs_two_frames_and_lost_tracks_are_forgotten() -> None:
    cfg = TrackerConfig(max_lost_seconds=1.0)
    trk = Tracker(cfg, ("person", "car"))
    assert trk.update(dets((0, 0, 10, 10, 0.9, 1)), 0.0) == []
    (tr,) = trk.update(dets((0, 0, 10, 10, 0.9, 1)), 0.2)
    assert tr.label == "car"
    trk.update(Detections.empty(), 0.7)
    assert len(trk.tracks) == 1
    trk.update(Detections.empty(), 1.3)
    assert trk.tracks == []
    trk.update(dets((0, 0, 10, 10, 0.9, 1)), 1.5)
    (tr2,) = trk.update(dets((0, 0, 10, 10, 0.9, 1)), 1.7)
    assert tr2.track_id != tr.track_id


def test_memory_is_bounded_over_many_transient_objects() -> None:
    trk = Tracker(TrackerConfig(max_lost_seconds=0.5), ("person",))
    for k in range(2000):
        x = (k * 37) % 600
        trk.update(dets((x, 0, x + 20, 20, 0.9, 0)), k * 0.2)
    assert len(trk.tracks) <= 4


def test_a_small_object_that_suddenly_moves_fast_keeps_its_identity() -> None:
    """A 30 px bag standing still, then carried off at 60 px per frame: its box never overlaps the
    prediction, the centre-distance stage keeps the track."""
    trk = Tracker(TrackerConfig(), ("handbag",))
    ids = set()
    for k in range(30):
        x = 100 if k < 10 else 100 + 60 * (k - 9)
        for tr in trk.update(dets((x, 100, x + 30, 130, 0.9, 0)), k * 0.2):
            ids.add(tr.track_id)
    assert ids == {1}

"""Incident accuracy scoring on hand-made cases whose right answer is known by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.accuracy.annotations import load, read_cvat_video, read_intervals_csv, read_mot
from pipeline.accuracy.score import Interval, match, temporal_iou
from pipeline.accuracy.tracks import track_scores
from pipeline.errors import ConfigError


def iv(kind: str, start: float, end: float, zone: str | None = None, footage: str = "a.mp4") -> Interval:
    return Interval(footage, kind, start, end, zone)


def test_temporal_iou_by_hand() -> None:
    assert temporal_iou(iv("theft", 0, 10), iv("theft", 5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou(iv("theft", 0, 10), iv("theft", 10, 20)) == 0.0
    assert temporal_iou(iv("theft", 2, 4), iv("theft", 0, 10)) == pytest.approx(0.2)
    assert temporal_iou(iv("theft", 3, 3), iv("theft", 3, 3)) == 1.0


def test_precision_recall_f1_and_latency_by_hand() -> None:
    """Truth: three encroachments and an accident. Predicted: two encroachments that overlap truth
    well (one 2 s late, one 1 s early), one that overlaps too little (IoU 0.2 < 0.3: a false positive
    and a miss), and an accident in the wrong place of the video."""
    truth = [
        iv("encroachment", 10, 20),
        iv("encroachment", 30, 40),
        iv("encroachment", 50, 60),
        iv("accident", 5, 6),
    ]
    predicted = [
        iv("encroachment", 12, 21),  # IoU 8/11
        iv("encroachment", 29, 39),  # IoU 9/11
        iv("encroachment", 58, 68),  # IoU 2/18: no match
        iv("accident", 70, 71),
    ]
    scores = match(truth, predicted)
    enc, acc = scores["encroachment"], scores["accident"]
    assert (enc.tp, len(enc.false_positives), len(enc.misses)) == (2, 1, 1)
    assert enc.precision == pytest.approx(2 / 3) and enc.recall == pytest.approx(2 / 3)
    assert enc.f1 == pytest.approx(2 / 3)
    assert sorted(m.latency for m in enc.matches) == [-1.0, 2.0]
    assert enc.latency_percentiles() == {"p50": 0.5, "p90": pytest.approx(1.7), "p100": 2.0}
    assert (acc.tp, acc.precision, acc.recall, acc.f1) == (0, 0.0, 0.0, 0.0)
    missed_only = match([iv("theft", 0, 5)], [])["theft"]  # nothing raised: F1 0, not undefined
    assert (missed_only.precision, missed_only.recall, missed_only.f1) == (None, 0.0, 0.0)
    # with a lower threshold the third pair matches
    assert match(truth, predicted, iou=0.1)["encroachment"].tp == 3


def test_matching_is_one_to_one_and_takes_the_best_overlap_first() -> None:
    """Two predictions over one true incident: the better one matches, the other is a false positive.
    One long prediction over two true incidents matches only one of them."""
    scores = match([iv("theft", 0, 10)], [iv("theft", 1, 9), iv("theft", 0, 10)])["theft"]
    assert scores.tp == 1 and scores.matches[0].predicted.start == 0 and len(scores.false_positives) == 1
    long = match([iv("assault", 0, 10), iv("assault", 12, 22)], [iv("assault", 0, 22)])["assault"]
    assert long.tp == 1 and len(long.misses) == 1


def test_type_zone_and_footage_must_agree() -> None:
    truth = [iv("encroachment", 0, 10, zone="lawn")]
    assert match(truth, [iv("encroachment", 0, 10, zone="bay")])["encroachment"].tp == 0
    assert match(truth, [iv("encroachment", 0, 10, zone=None)])["encroachment"].tp == 1  # zone unsaid
    assert match(truth, [iv("stray_animal", 0, 10, zone="lawn")])["encroachment"].tp == 0
    assert match(truth, [iv("encroachment", 0, 10, zone="lawn", footage="b.mp4")])["encroachment"].tp == 0
    with pytest.raises(ValueError, match="iou"):
        match(truth, [], iou=0)


def test_an_annotation_file_with_its_interval_list_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "more.csv").write_text("type,zone,start,end\nstray_animal,,3.5,9\n")
    (tmp_path / "a.yaml").write_text(
        "footage: cam.mp4\ncamera: gate\nincidents:\n"
        "  - {type: encroachment, zone: lawn, start: 1, end: 2.5, note: a man on the lawn}\n"
        "incidents_csv: more.csv\n"
    )
    ann = load(tmp_path / "a.yaml")
    assert ann.footage == tmp_path / "cam.mp4" and ann.camera == "gate"
    assert [(i.type, i.zone, i.start, i.end) for i in ann.incidents] == [
        ("encroachment", "lawn", 1.0, 2.5),
        ("stray_animal", None, 3.5, 9.0),
    ]
    assert list(ann.notes.values()) == ["a man on the lawn"]
    for body, why in [
        (
            "footage: x.mp4\nincidents: [{type: fire, start: 1, end: 2}]",
            r"incidents\[0\].type: expected one of",
        ),
        ("footage: x.mp4\nincidents: [{type: theft, start: 3, end: 2}]", "expected 0 <= start <= end"),
        ("footage: x.mp4\nincidents: [{type: theft, start: 1}]", "end is missing"),
        ("footage: x.mp4\nincidents: [{type: theft, start: 1, end: 2, who: me}]", "unknown field 'who'"),
        ("incidents: []", "expected a mapping with footage"),
    ]:
        (tmp_path / "bad.yaml").write_text(body)
        with pytest.raises(ConfigError, match=why):
            load(tmp_path / "bad.yaml")
    (tmp_path / "bad.csv").write_text("type,zone,start,end\ntheft,,x,2\n")
    with pytest.raises(ConfigError, match="bad.csv:2: start and end must be numbers"):
        read_intervals_csv(tmp_path / "bad.csv", "x.mp4")


def test_boxes_from_motchallenge_and_cvat_agree(tmp_path: Path) -> None:
    (tmp_path / "gt.txt").write_text(
        "1,1,10,20,30,40,1,1,1\n1,2,100,20,30,40,1,1,1\n2,1,12,20,30,40,1,1,1\n2,9,0,0,5,5,0,1,1\n"
    )
    (tmp_path / "cvat.xml").write_text(
        """<annotations><version>1.1</version>
  <track id="1" label="person"><box frame="0" xtl="10" ytl="20" xbr="40" ybr="60" outside="0"/>
    <box frame="1" xtl="12" ytl="20" xbr="42" ybr="60" outside="0"/>
    <box frame="2" xtl="12" ytl="20" xbr="42" ybr="60" outside="1"/></track>
  <track id="2" label="person"><box frame="0" xtl="100" ytl="20" xbr="130" ybr="60" outside="0"/>
    <box frame="1" xtl="100" ytl="20" xbr="130" ybr="60" outside="1"/></track>
</annotations>"""
    )
    mot, cvat = read_mot(tmp_path / "gt.txt"), read_cvat_video(tmp_path / "cvat.xml")
    assert mot == cvat == {1: [(1, 10, 20, 40, 60), (2, 100, 20, 130, 60)], 2: [(1, 12, 20, 42, 60)]}


def test_mota_and_idf1_by_hand() -> None:
    """Two people over four frames. The run finds both, but swaps one's id at frame 3 and misses the
    other at frame 4, with one false box at frame 2: 8 true boxes, 1 miss, 1 false positive, 1 switch:
    MOTA = 1 - (1 + 1 + 1) / 8."""
    truth = {f: [(1, 0, 0, 10, 10), (2, 100, 0, 110, 10)] for f in (1, 2, 3, 4)}
    predicted = {
        1: [(7, 0, 0, 10, 10), (8, 100, 0, 110, 10)],
        2: [(7, 0, 0, 10, 10), (8, 100, 0, 110, 10), (9, 50, 50, 60, 60)],
        3: [(7, 0, 0, 10, 10), (5, 100, 0, 110, 10)],
        4: [(7, 0, 0, 10, 10)],
    }
    s = track_scores(truth, predicted)
    assert (s["num_objects"], s["num_misses"], s["num_false_positives"], s["num_switches"]) == (8, 1, 1, 1)
    assert s["mota"] == pytest.approx(1 - 3 / 8)
    # IDF1: id 1 <-> 7 on all 4 frames, id 2 <-> 8 on 2 of its 4: IDTP 6 of 8 true and 8 predicted
    # boxes, so IDFN 2 and IDFP 2 (9 once, 5 once)
    assert s["idf1"] == pytest.approx(2 * 6 / (2 * 6 + 2 + 2))
    perfect = track_scores(
        truth, {f: [(1, *b[1:]) for b in boxes[:1]] + [(2, *boxes[1][1:])] for f, boxes in truth.items()}
    )
    assert perfect["mota"] == 1.0 and perfect["idf1"] == 1.0


@pytest.mark.slow
def test_safecity_bench_accuracy_scores_a_run_and_shows_why(tmp_path: Path, clips: list[Path]) -> None:
    """The pipeline on a 2 s clip with a scripted person standing in a zone from 0.4 s: the
    annotation has that encroachment (a match) and a theft that never shows (a miss, pictured)."""
    import json

    from pipeline.cli import main

    from .util import scripted, write_config

    rows = [
        {"camera": "cam", "t": round(k * 0.1, 2), "boxes": [[100, 120, 140, 220, 0.9, 0]] if k >= 4 else []}
        for k in range(20)
    ]
    config = write_config(
        tmp_path / "edge.yaml",
        cameras=[
            {
                "id": "cam",
                "source": "placeholder.mp4",  # the annotation's footage replaces it
                "analytics_fps": 10,
                "zones": [{"name": "path", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}],
            }
        ],
        model={
            "backend": "scripted",
            "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person"], 0)),
        },
        rules={
            "encroachment": {
                "dwell_seconds": 0.5,
                "stationary_seconds": 0.2,
                "confirm_seconds": 0.2,
                "clear_seconds": 0.3,
            }
        },
    )
    # the person's box on every frame from 0.4 s (frame 10 of 25 fps; MOTChallenge counts from 1)
    (tmp_path / "gt.txt").write_text("".join(f"{f},1,100,120,40,100,1,1,1\n" for f in range(11, 51)))
    ann = tmp_path / "truth.yaml"
    ann.write_text(
        f"footage: {clips[0]}\ncamera: cam\nboxes: gt.txt\nincidents:\n"
        "  - {type: encroachment, zone: path, start: 0.4, end: 2.0}\n"
        "  - {type: theft, start: 0.5, end: 1.5, note: a bag taken}\n"
    )
    out = tmp_path / "report"
    argv = [
        "bench",
        "accuracy",
        "--config",
        str(config),
        str(ann),
        "--out",
        str(out),
        "--variants",
        "original",
    ]
    assert main(argv) == 0
    report = json.loads((out / "accuracy.json").read_text())
    (types,) = [v["types"] for v in report["variants"].values()]
    by_type = {t["type"]: t for t in types}
    assert by_type["encroachment"]["tp"] == 1 and by_type["encroachment"]["fp"] == 0
    assert by_type["encroachment"]["latency_s"]["p50"] >= 0.4  # alerted after the dwell
    assert by_type["theft"]["fn"] == 1 and by_type["theft"]["recall"] == 0.0
    (footage,) = [f for v in report["variants"].values() for f in v["footage"]]
    tracking = footage["tracking"]  # scored on the analysed frames: one track, no switch
    assert tracking["num_switches"] == 0 and tracking["num_false_positives"] == 0
    assert tracking["mota"] >= 0.7 and tracking["idf1"] >= 0.8, tracking
    page = (out / "accuracy.html").read_text()
    assert "missed theft" in page and "a bag taken" in page and "<img" in page
    assert list((out / "accuracy_pictures").glob("*miss*.jpg"))


def test_the_scenario_library_is_scored_for_all_five_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every scenario raises what it expects (tests/test_scenarios.py checks each exactly): scored as a
    whole, all five types at F1 1.0; a rule that stopped firing shows as misses."""
    import json

    from benchmarks import accuracy
    from pipeline.cli import main

    assert main(["bench", "accuracy", "--scenarios", "--out", str(tmp_path)]) == 0
    (types,) = [v["types"] for v in json.loads((tmp_path / "accuracy.json").read_text())["variants"].values()]
    assert {t["type"] for t in types} == {"theft", "assault", "encroachment", "stray_animal", "accident"}
    assert all(t["f1"] == 1.0 and abs(t["latency_s"]["p100"]) <= 0.2 for t in types)
    truth, predicted = accuracy.scenario_intervals()
    scores = match(truth, [p for p in predicted if p.type != "assault"])
    assert scores["assault"].recall == 0.0 and len(scores["assault"].misses) == 2


def test_onset_within_a_few_seconds_matches_a_short_prediction_of_a_long_incident() -> None:
    """The operator got the alert for the occurrence, on time: a prediction that starts within
    ``onset_s`` of the truth matches even with a low IoU; a late one does not."""
    truth = [iv("encroachment", 55, 73.5)]
    assert match(truth, [iv("encroachment", 54.3, 58.5)])["encroachment"].tp == 1  # IoU 0.22, onset 0.7 s
    assert match(truth, [iv("encroachment", 60.8, 66.2)])["encroachment"].tp == 0  # IoU 0.28, 5.8 s late
    assert match(truth, [iv("encroachment", 54.3, 58.5)], onset_s=0)["encroachment"].tp == 0


def test_figures_false_alerts_per_camera_hour_per_zone_and_latency_past_the_wait(tmp_path: Path) -> None:
    from pipeline.accuracy import summary
    from pipeline.accuracy.annotations import Annotation, footage_key
    from pipeline.accuracy.runs import Run
    from pipeline.config import parse_config

    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "x.mp4", "rules": {"encroachment": {"dwell_seconds": 10}}}],
            "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
        }
    )
    key = footage_key(tmp_path / "a.mp4", "cam")
    truth = [Interval(key, "encroachment", 0, 30, "lane")]
    predicted = [
        Interval(key, "encroachment", 0, 30, "lane", alert=11.5),  # 1.5 s past its 10 s dwell
        Interval(key, "accident", 40, 45, None, alert=40.0, severity="critical"),
        Interval(key, "encroachment", 50, 60, "bay", alert=60.0),
    ]
    ann = Annotation(tmp_path / "a.yaml", tmp_path / "a.mp4", "cam", truth)
    runs = [Run(ann, predicted, tmp_path / "o.sqlite", seconds=1800.0)]  # half an hour of video
    scores = match(truth, predicted)
    f = summary.overall(cfg, runs, scores).row()
    assert f["false_alerts_per_camera_hour"] == 4.0 and f["critical_false_alerts"] == 1
    assert (f["tp"], f["fp"], f["fn"], f["recall"]) == (1, 2, 0, 1.0)
    assert f["latency_past_wait_p90_s"] == 1.5
    zones = {(z, k): fig.row() for (_, z, k), fig in summary.per_zone(cfg, runs, scores).items()}
    assert zones[("lane", "encroachment")]["tp"] == 1 and zones[("bay", "encroachment")]["fp"] == 1
    assert zones[("-", "accident")]["false_alerts_per_camera_hour"] == 2.0
    assert summary.spread([1.0, 0.67, None, 0.8]) == pytest.approx(0.33)


def test_variants_are_the_same_scene_as_a_camera_would_send_it(tmp_path: Path, clips: list[Path]) -> None:
    """1080p (aspect kept, 2 Mbit/s), HEVC 720p, dusk (darker) and 5 fps re-encodings of a 25 fps
    320 x 240 clip, made once and reused."""
    import av
    import numpy as np

    from pipeline.accuracy.variants import make_variant

    def probe(path: Path) -> tuple[str, int, int, int, float]:
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            frames = [f.to_ndarray(format="gray").mean() for f in c.decode(st)]
            return (
                st.codec_context.name,
                st.codec_context.width,
                st.codec_context.height,
                len(frames),
                float(np.mean(frames)),
            )

    _, w, h, n, light = probe(clips[0])
    assert (w, h, n) == (320, 240, 50)
    made = {
        v: make_variant(clips[0], v, folder=tmp_path)
        for v in ("h264-1080p-2Mbps", "hevc-720p", "dusk", "5fps")
    }
    assert probe(made["h264-1080p-2Mbps"])[:4] == ("h264", 1440, 1080, 50)
    assert probe(made["hevc-720p"])[:4] == ("hevc", 960, 720, 50)
    assert probe(made["5fps"])[:4] == ("h264", 320, 240, 10)
    assert probe(made["dusk"])[4] < 0.6 * light
    before = made["dusk"].stat().st_mtime_ns
    assert make_variant(clips[0], "dusk", folder=tmp_path) == made["dusk"]  # kept, not made again
    assert made["dusk"].stat().st_mtime_ns == before
    assert make_variant(clips[0], "original") == clips[0]
    with pytest.raises(ValueError, match="unknown variant"):
        make_variant(clips[0], "vhs")


@pytest.mark.slow
def test_the_robustness_matrix_and_kept_detections(tmp_path: Path, clips: list[Path]) -> None:
    """`safecity bench accuracy` over three variants of a clip: false alerts per camera-hour first, a
    matrix row per variant, per-zone rows; a second run replays the kept detections (no model) and
    gives the same incidents."""
    import json

    from pipeline.cli import main

    from .util import scripted, write_config

    rows = [
        {"camera": "cam", "t": round(k * 0.1, 2), "boxes": [[100, 120, 140, 220, 0.9, 0]] if k >= 4 else []}
        for k in range(20)
    ] + [{"camera": "cam", "t": 1.2, "boxes": [[100, 120, 140, 220, 0.9, 0], [250, 20, 290, 120, 0.9, 0]]}]
    config = write_config(
        tmp_path / "edge.yaml",
        cameras=[
            {
                "id": "cam",
                "source": "placeholder.mp4",
                "analytics_fps": 10,
                "zones": [
                    {"name": "path", "polygon": [[0, 150], [200, 150], [200, 240], [0, 240]]},
                    {"name": "verge", "polygon": [[200, 0], [320, 0], [320, 150], [200, 150]]},
                ],
            }
        ],
        model={
            "backend": "scripted",
            "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person"], 0)),
        },
        rules={
            "encroachment": {
                "dwell_seconds": 0.5,
                "stationary_seconds": 0.2,
                "confirm_seconds": 0.2,
                "clear_seconds": 0.3,
            }
        },
    )
    ann = tmp_path / "truth.yaml"
    ann.write_text(
        f"footage: {clips[0]}\ncamera: cam\nincidents:\n"
        "  - {type: encroachment, zone: path, start: 0.4, end: 2.0}\n"
    )
    keep = tmp_path / "kept"
    argv = ["bench", "accuracy", "--config", str(config), str(ann), "--variants", "original,dusk,5fps"]
    assert main([*argv, "--out", str(tmp_path / "r1"), "--reuse-detections", str(keep)]) == 0
    assert len(list(keep.glob("*.npz"))) == 3  # one file of detections per footage
    first = json.loads((tmp_path / "r1" / "accuracy.json").read_text())
    assert main([*argv, "--out", str(tmp_path / "r2"), "--reuse-detections", str(keep)]) == 0
    second = json.loads((tmp_path / "r2" / "accuracy.json").read_text())

    def incidents(report: dict) -> dict:
        return {
            k: [(p["type"], p["zone"], p["start"], p["end"]) for p in v["predicted"]]
            for k, v in report["variants"].items()
        }

    assert incidents(first) == incidents(second)
    assert not any(f["replayed"] for v in first["variants"].values() for f in v["footage"])
    assert all(f["replayed"] for v in second["variants"].values() for f in v["footage"])
    (matrix,) = first["matrix"].values()
    assert list(matrix["variants"]) == ["original", "dusk", "5fps"]
    assert all(r["tp"] == 1 and r["fn"] == 0 for r in matrix["variants"].values())
    assert {(z["zone"], z["type"]) for z in matrix["zones"]} == {("path", "encroachment")}
    assert first["headline"]["false_alerts_per_camera_hour"] == 0.0
    md = (tmp_path / "r1" / "accuracy.md").read_text()
    assert md.index("False alerts per camera-hour") < md.index("Robustness matrix")
    assert "| 5fps |" in md and "Each zone by variant" in md


def test_kept_detections_that_do_not_read_back_whole_are_a_miss(tmp_path: Path) -> None:
    """A damaged or tampered file of kept detections is never replayed: the models run instead."""
    import json

    import numpy as np

    from pipeline.accuracy.detections import DetectionLog
    from pipeline.types import Detections

    good = DetectionLog(
        [(0, 0.0, 1e9, 320, 240, Detections(np.array([[1, 2, 3, 4]]), np.array([0.9]), np.array([0])))],
        ("person",),
        {"person": frozenset({"person"})},
        ("script@1",),
        2.0,
    )
    path = tmp_path / "k.npz"
    good.save(path)
    back = DetectionLog.load(path)
    assert back is not None and back.seconds == 2.0 and len(back.frames) == 1
    header = json.loads(path.with_suffix(".json").read_text())
    for bad in ({**header, "label_roles": {"person": "person"}}, {**header, "class_names": []}, [1, 2]):
        path.with_suffix(".json").write_text(json.dumps(bad))
        assert DetectionLog.load(path) is None
    path.with_suffix(".json").write_text(json.dumps(header))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, "counts": np.array([7])})  # counts that do not add up
    assert DetectionLog.load(path) is None
    np.savez(path, **{**arrays, "xyxy": np.array([object()], dtype=object)})  # a pickle inside
    assert DetectionLog.load(path) is None
    path.write_bytes(b"not a zip")
    assert DetectionLog.load(path) is None


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--onset", "nan"], "--onset: expected 0 to 60"),
        (["--iou", "0"], "--iou: expected"),
        (["--variants", "vhs"], "--variants: unknown 'vhs'"),
    ],
)
def test_bench_accuracy_refuses_bad_options_at_once(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "accuracy", "--scenarios", *option])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_false_alarm_whose_frame_is_not_the_cameras_is_left_out(tmp_path: Path) -> None:
    """`dataset negatives` takes only a JPEG of the size the event reports (a hostile or broken
    edge's blob is left out, never crashes the rest), and two incidents whose ids read alike once
    made safe for a file name are two images."""
    import io
    import json

    import numpy as np
    from PIL import Image

    from pipeline.ml.dataset import DatasetInfo, load_info, write_info
    from pipeline.ml.negatives import add_negatives

    (tmp_path / "ds").mkdir()
    write_info(tmp_path / "ds", DatasetInfo(["person"], 1.0, "time", 0.2, None, None, labelled_by="empty"))

    def jpeg(w: int, h: int) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(out, format="JPEG")
        return out.getvalue()

    blobs = {"a" * 64: jpeg(64, 48), "b" * 64: b"not a jpeg at all", "c" * 64: jpeg(640, 480)}

    def example(iid: str, sha: str) -> dict:
        event = {
            "objects": [{"label": "person", "bbox": [1, 2, 10, 20]}],
            "frame": {"width": 64, "height": 48},
        }
        return {
            "verdict": "false_alarm", "reason": "detection", "source": "edge-1", "incident_id": iid,
            "camera_id": "cam/1", "type": "encroachment", "zone": None, "frame_jpeg_sha256": sha,
            "event": event,
        }  # fmt: skip

    examples = [
        example("é1", "a" * 64),
        example("ü1", "a" * 64),
        example("x", "b" * 64),
        example("y", "c" * 64),
    ]
    result = add_negatives(tmp_path / "ds", examples, blobs.get)
    assert len(result.added) == 2 and len(set(result.added)) == 2
    assert result.unusable == ["x", "y"]  # not a JPEG; a JPEG of another size
    assert all("/" not in name for name in result.added)
    assert {n["incident_id"] for n in load_info(tmp_path / "ds").negatives} == {"é1", "ü1"}
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["counts"]["train"] == 2

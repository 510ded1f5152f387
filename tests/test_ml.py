"""The retraining loop: datasets from footage (teacher labels, split, hash, imported corrections),
fine-tuning into a local version, the export check, evaluation and comparison."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from pipeline.accuracy.score import Interval, match
from pipeline.errors import ConfigError, ModelError
from pipeline.ml import dataset as ds
from pipeline.ml.cli import parse_classes
from pipeline.ml.evaluate import differences, verdict

COCO = ["person", "bicycle", "car", "dog"]


def test_classes_name_the_teachers_classes_or_map_them() -> None:
    assert parse_classes("person,car", COCO, []) == (["person", "car"], {"person": 0, "car": 1})
    assert parse_classes("Normal=person,Fall=", COCO, []) == (["Normal", "Fall"], {"person": 0})
    names, mapping = parse_classes("people=person,vehicle=car|bicycle", COCO, [])
    assert names == ["people", "vehicle"] and mapping == {"person": 0, "car": 1, "bicycle": 1}
    assert parse_classes(None, COCO, ["person", "dog"]) == (["person", "dog"], {"person": 0, "dog": 1})
    with pytest.raises(ConfigError, match="'truck' is not a class of the teacher; its classes: person"):
        parse_classes("truck", COCO, [])
    with pytest.raises(ConfigError, match="each class once"):
        parse_classes("person,person", COCO, [])


def _times(folder: Path, stem: str) -> list[int]:
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in folder.glob(f"{stem}_*.jpg"))


def test_a_dataset_is_split_by_time_and_labelled_by_the_teacher(ml_dataset: Path) -> None:
    info = ds.load_info(ml_dataset)
    vtest_train, vtest_val = (_times(ml_dataset / "images" / s, "vtest") for s in ("train", "val"))
    assert len(vtest_train) == 8 and len(vtest_val) == 2  # 10 samples, 8 s apart, the last 20 % in val
    assert max(vtest_train) < min(vtest_val)  # validation is later in time, never a neighbour's twin
    assert info.sources[1]["stem"] == "bikes" and info.sources[1]["val"] >= 1
    labels = [
        line.split()
        for p in (ml_dataset / "labels").rglob("vtest_*.txt")
        for line in p.read_text().splitlines()
    ]
    assert len(labels) > 20 and {row[0] for row in labels} == {"0"}  # people, as class Normal
    assert all(0 <= float(v) <= 1 for row in labels for v in row[1:])
    spec = (ml_dataset / "dataset.yaml").read_text()
    assert "train: images/train" in spec and "path:" not in spec and "1: Fall" in spec


def test_a_split_by_camera_keeps_whole_recordings_apart(tmp_path: Path, clips: list[Path]) -> None:
    info = ds.extract(clips, tmp_path / "d", every_s=0.5, teacher=None, names=["person"], split="camera")
    assert [s["val"] for s in info.sources] == [0, 0, 4]  # the last recording, whole
    stems = {p.stem.rsplit("_", 1)[0] for p in (tmp_path / "d" / "images" / "val").glob("*.jpg")}
    assert stems == {"cam2"}
    with pytest.raises(ConfigError, match="exists and is not an empty directory"):
        ds.extract(clips, tmp_path / "d", every_s=0.5, teacher=None, names=["person"])
    with pytest.raises(ConfigError, match="--split camera: needs recordings of two cameras"):
        ds.extract(clips[:1], tmp_path / "e", every_s=0.5, teacher=None, names=["person"], split="camera")
    # recordings in a folder per camera: a camera's recordings stay together
    for cam, clip in (("east", clips[0]), ("east", clips[1]), ("west", clips[2])):
        (tmp_path / cam).mkdir(exist_ok=True)
        shutil.copy(clip, tmp_path / cam / clip.name)
    by_cam = [
        tmp_path / "east" / clips[0].name,
        tmp_path / "west" / clips[2].name,
        tmp_path / "east" / clips[1].name,
    ]
    info = ds.extract(by_cam, tmp_path / "f", every_s=0.5, teacher=None, names=["person"], split="camera")
    assert [(s["camera"], s["val"]) for s in info.sources] == [("east", 0), ("west", 4), ("east", 0)]


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def test_corrected_labels_come_back_from_a_cvat_export_by_name_and_the_hash_follows(
    ml_dataset: Path, tmp_path: Path
) -> None:
    d = _copy(ml_dataset, tmp_path / "d")
    before = ds.dataset_hash(d)
    assert ds.dataset_hash(d) == before  # stable
    image = sorted((d / "images" / "train").glob("vtest_*.jpg"))[0].stem
    export = tmp_path / "cvat.zip"
    with zipfile.ZipFile(export, "w") as z:  # CVAT "YOLO 1.1": its own class order
        z.writestr("obj.names", "Fall\nNormal\n")
        z.writestr("obj.data", "classes = 2\nnames = data/obj.names\n")
        z.writestr("train.txt", f"data/obj_train_data/{image}.jpg\n")
        z.writestr(f"obj_train_data/{image}.txt", "0 0.5 0.5 0.1 0.2\n1 0.25 0.25 0.1 0.1\n")
        z.writestr("obj_train_data/elsewhere_00000000.txt", "0 0.5 0.5 0.1 0.1\n")
    r = ds.import_labels(d, export)
    assert r.replaced == 1 and r.unknown == ["elsewhere_00000000.txt"] and len(r.kept) > 5
    lines = (d / "labels" / "train" / f"{image}.txt").read_text().splitlines()
    assert lines == ["1 0.500000 0.500000 0.100000 0.200000", "0 0.250000 0.250000 0.100000 0.100000"]
    assert ds.dataset_hash(d) != before
    assert ds.load_info(d).labelled_by == "imported: cvat.zip"


def test_a_bad_export_is_refused_whole_naming_the_file_and_line(ml_dataset: Path, tmp_path: Path) -> None:
    d = _copy(ml_dataset, tmp_path / "d")
    before = ds.dataset_hash(d)
    images = sorted((d / "images" / "train").glob("vtest_*.jpg"))
    export = tmp_path / "labelstudio"  # Label Studio's YOLO export: classes.txt, labels/
    (export / "labels").mkdir(parents=True)
    (export / "classes.txt").write_text("Normal\n")
    (export / "labels" / f"{images[0].stem}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (export / "labels" / f"{images[1].stem}.txt").write_text("0 0.5 0.5 1.7 0.1\n")
    with pytest.raises(ConfigError, match=rf"{images[1].stem}.txt:1: coordinates must be normalised to 0..1"):
        ds.import_labels(d, export)
    assert ds.dataset_hash(d) == before  # nothing written
    (export / "classes.txt").write_text("Normal\nbus\n")
    with pytest.raises(
        ConfigError, match="the export's class 'bus' is not one of the dataset's: Normal, Fall"
    ):
        ds.import_labels(d, export)
    (export / "classes.txt").write_text("Normal\n")
    (export / "labels" / f"{images[1].stem}.txt").write_text("0 0.5 0.5 0.7 0.1\n")
    assert ds.import_labels(d, export).replaced == 2


def test_the_verdict_and_the_incidents_that_differ() -> None:
    truth = [Interval("f", "encroachment", 10, 20, ref="t1"), Interval("f", "encroachment", 40, 50, ref="t2")]
    a = match(truth, [Interval("f", "encroachment", 11, 20, ref="a1"), Interval("f", "encroachment", 70, 80)])
    b = match(truth, [Interval("f", "encroachment", 11, 20, ref="b1"), Interval("f", "encroachment", 41, 50)])
    assert verdict(a, b) == "better" and verdict(b, a) == "worse" and verdict(a, a) == "same"
    diff = differences("A", a, "B", b, 0.3)
    assert diff == [
        "A alone raised a false encroachment 70.0-80.0 s of f",
        "B found, A missed: encroachment 40.0-50.0 s of f",
    ]
    c = match(truth + [Interval("f", "loitering", 0, 5)], [Interval("f", "loitering", 0, 5)])
    assert verdict(a, c) == "mixed"  # loitering found, encroachment lost
    d = match(truth, [Interval("f", "encroachment", 11, 20), Interval("f", "encroachment", 70, 80)])
    assert verdict(a, d) == "same"
    e = {**a, "assault": match([], [Interval("f", "assault", 29, 35)])["assault"]}
    assert verdict(a, e) == "worse"  # a false alert of a type A never raised: F1 0 either way, one more wrong


def _broken(onnx_file: Path, dest: Path) -> Path:
    """The export with its first convolution's weights negated: it loads and runs, and sees wrongly."""
    m = onnx.load(str(onnx_file))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    init = next(i for i in m.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(m, str(dest))
    return dest


def test_an_export_that_does_not_see_what_its_checkpoint_sees_is_refused(
    fall_model: Path, vtest: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from pipeline.footage import sample_frames
    from pipeline.ml.train import export_check

    images = []
    for k, (_, rgb) in zip(range(4), sample_frames(vtest, every_s=10.0), strict=False):
        images.append(tmp_path / f"{k}.jpg")
        Image.fromarray(rgb.numpy()).save(images[-1])
    weights = fall_model.with_suffix(".pt")
    report = export_check(weights, fall_model, images, imgsz=640)
    assert report["accepted"] and report["reference_detections"] > 5
    with pytest.raises(
        ModelError, match=r"does not agree with the checkpoint: recall .*first difference: frame 0: "
    ):
        export_check(weights, _broken(fall_model, tmp_path / "broken.onnx"), images, imgsz=640)


@pytest.mark.slow
def test_fine_tuning_registers_a_version_the_pipeline_runs_and_eval_scores(
    ml_dataset: Path, fall_version
) -> None:
    from pipeline.config import parse_config
    from pipeline.detect.factory import check_model_names, create_detectors
    from pipeline.ml.evaluate import evaluate
    from pipeline.ml.train import train
    from pipeline.ml.versions import all_versions, onnx_path, versions_dir

    v = fall_version
    assert v.ref == "fall-yolov8@1" and v.base == "fall-yolov8" and v.class_names == ["Normal", "Fall"]
    assert v.dataset["hash"] == ds.dataset_hash(ml_dataset) and v.export_check["accepted"]
    assert set(v.metrics) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert v.roles == {"person": ["Normal", "Fall"], "fallen_person": ["Fall"]}  # the base's classes kept
    saved = json.loads((versions_dir() / "fall-yolov8" / "1" / "version.json").read_text())
    assert saved["train_args"]["epochs"] == 1 and onnx_path("fall-yolov8@1").is_file()
    assert [x.ref for x in all_versions()] == ["fall-yolov8@1"]
    assert not [p for p in versions_dir().iterdir() if p.name.startswith(".train")]  # no scratch left

    cams = [{"id": "c", "source": "x.mp4"}]
    cfg = parse_config({"cameras": cams, "models": [{"name": "fall-yolov8@1"}]})
    assert cfg.models[0].key == "fall-yolov8"  # cameras naming the model keep naming it
    check_model_names(cfg)
    dets = create_detectors(cfg)
    assert dets.model_tags == ("fall-yolov8@1",)  # events say name fall-yolov8, version 1
    dets.close()
    with pytest.raises(ConfigError, match=r"fall-yolov8@7 is not in the local registry .* fall-yolov8@1"):
        check_model_names(parse_config({"cameras": cams, "models": [{"name": "fall-yolov8@7"}]}))

    r = evaluate("fall-yolov8@1", ml_dataset, imgsz=128)
    assert r["images"] == ds.load_info(ml_dataset).counts["val"] and 0.0 <= r["mAP50"] <= 1.0
    with pytest.raises(ConfigError, match="--base: yolov3-tiny-coco is a Darknet model"):
        train("yolov3-tiny-coco", ml_dataset, epochs=1)


@pytest.mark.slow
def test_compare_runs_annotated_footage_with_each_model_and_gives_a_verdict(
    fall_version, vtest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first 12 s of vtest (a van and a car stand in the loading bay throughout) through the demo
    config, with fall-yolov8 and then its version: both see the bay's encroachment."""
    import av

    from pipeline.cli import main
    from pipeline.ml.versions import versions_dir

    cut = tmp_path / "vtest12.mp4"
    with av.open(str(vtest)) as src, av.open(str(cut), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 768, 576, "yuv420p"
        for k, frame in enumerate(src.decode(video=0)):
            if k >= 120:
                break
            frame.pts = None
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    ann = tmp_path / "cut.yaml"
    ann.write_text(
        f"footage: {cut}\ncamera: campus-vtest\n"
        "incidents:\n  - {type: encroachment, zone: loading-bay, start: 0.0, end: 12.0}\n"
    )
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAFECITY_VERSIONS", str(versions_dir()))
        rc = main(
            ["models", "compare", "fall-yolov8", "fall-yolov8@1", str(ann), "--config", str(demo)]
            + ["--json", str(tmp_path / "cmp.json")]
        )
    assert rc == 0
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert result["verdict"] in ("better", "worse", "mixed", "same")
    for ref in ("fall-yolov8", "fall-yolov8@1"):
        enc = next(t for t in result["types"][ref] if t["type"] == "encroachment")
        assert enc["true"] == 1 and enc["tp"] == 1  # the bay's vehicles, seen by the COCO model either way
    assert "verdict:" in capsys.readouterr().out


def test_an_export_is_put_in_place_only_when_it_agrees_with_its_checkpoint(
    fall_model: Path, tmp_path: Path
) -> None:
    """``safecity models fetch``'s exports go through the same check (on frames of the footage here)."""
    import shutil

    from pipeline.registry import checked_export, export_check_frames

    assert len(export_check_frames()) == 8
    weights = fall_model.with_suffix(".pt")
    good = checked_export(weights, tmp_path / "m.onnx", lambda d: Path(shutil.copy(fall_model, d)), imgsz=640)
    assert good.is_file() and not list(tmp_path.glob(".check-*"))
    with pytest.raises(
        ModelError, match=r"the export bad.onnx does not agree with fall-yolov8.pt: .*not kept"
    ):
        checked_export(weights, tmp_path / "bad.onnx", lambda d: _broken(fall_model, d), imgsz=640)
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.glob(".check-*"))

"""Datasets from footage, in YOLO format, for fine-tuning a detector on a city's own cameras.

``extract`` samples frames of recordings every few seconds into ``images/{train,val}`` with one label
file per image in ``labels/{train,val}`` (``class cx cy w h``, normalised), pre-filled by a teacher
model for a person to correct. The split is by time (the last share of each recording is validation)
or by camera (all of a camera's recordings are: a recording's camera is its folder when they come
from several folders, else the recording itself), never by random frame: neighbouring frames are
near copies, and one on each side would measure memory, not skill. ``import_labels`` takes the
corrected labels back from a CVAT (YOLO 1.1, Ultralytics YOLO) or Label Studio (YOLO) export, by
image name and class name.
A dataset's content hash covers its class names, images and labels: training records it.

    DATASET/dataset.yaml   what Ultralytics reads (train, val, names)
    DATASET/dataset.json   how it was made: sources, every, split, teacher, counts
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from ..errors import ConfigError, ModelError
from ..footage import sample_frames
from ..types import Detections, Frame, FrameBatch

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
DATASET_YAML = "dataset.yaml"
DATASET_JSON = "dataset.json"
NAMES_FILES = ("obj.names", "classes.txt")  # CVAT YOLO 1.1, Label Studio YOLO
IMAGE_SUFFIX = ".jpg"

Split = Literal["time", "camera"]


@dataclass
class DatasetInfo:
    """What ``dataset.json`` says about how a dataset was made."""

    names: list[str]
    every_s: float
    split: Split
    val_share: float
    teacher: str | None
    teacher_conf: float | None
    sources: list[dict[str, Any]] = field(default_factory=list)  # file, stem, samples, val
    counts: dict[str, int] = field(default_factory=dict)  # split -> images
    labelled_by: str = "teacher"  # "teacher", "empty", or the export last imported
    negatives: list[dict[str, Any]] = field(default_factory=list)  # false alarms added (``negatives.py``)


class Teacher:
    """A detector that pre-fills labels: ``mapping`` says which of its classes label which class of the
    dataset (teacher class name -> dataset class index); its other classes are left out."""

    def __init__(self, detect: Callable[[FrameBatch], list[Detections]], class_names: Sequence[str]):
        self.detect = detect
        self.class_names = list(class_names)
        self.mapping: dict[str, int] = {}

    def labels(self, rgb: Any) -> list[str]:
        """YOLO label lines for one RGB frame."""
        dets = self.detect(FrameBatch([Frame("dataset", rgb, 0.0, 0, 0.0)]))[0]
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        lines = []
        for (x1, y1, x2, y2), cls in zip(dets.xyxy, dets.class_id, strict=True):
            k = self.mapping.get(self.class_names[int(cls)])
            if k is None:
                continue
            x1, x2 = np.clip([x1, x2], 0, w)
            y1, y2 = np.clip([y1, y2], 0, h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{k} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        return lines


def teacher_model(name: str, *, conf: float) -> tuple[Teacher, list[str]]:
    """A manifest model as teacher (ONNX Runtime on the CPU), and the classes its roles name (the
    default classes of a dataset it labels)."""
    from ..config import ModelConfig
    from ..detect.onnx_backend import OnnxDetector
    from ..registry import load_manifest, resolve_model_path

    manifest = load_manifest()
    if name not in manifest:
        raise ConfigError(f"--teacher: {name!r} is not in the manifest; known: {', '.join(manifest)}")
    path, _ = resolve_model_path(ModelConfig(name=name))
    det = OnnxDetector(path, name=name, imgsz=None, conf_threshold=conf, iou_threshold=0.7, max_det=300)
    roles = manifest[name].get("roles") or {}
    named = {c for classes in roles.values() for c in classes}
    default = [c for c in det.class_names if c in named] or list(det.class_names)
    return Teacher(det.detect, det.class_names), default


def _stem(path: Path, taken: set[str]) -> str:
    """A file-name-safe, unique stem for a recording (its images are named after it)."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "footage"
    stem, n = base, 1
    while stem in taken:
        n += 1
        stem = f"{base}-{n}"
    taken.add(stem)
    return stem


def _check_new_dir(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"dataset {dest}: exists and is not an empty directory (choose a new one)")


def extract(
    footage: Sequence[Path],
    dest: Path,
    *,
    every_s: float,
    teacher: Teacher | None,
    names: list[str],
    split: Split = "time",
    val_share: float = 0.2,
    teacher_name: str | None = None,
    teacher_conf: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> DatasetInfo:
    """Sample ``footage`` every ``every_s`` seconds into a new YOLO dataset at ``dest``.

    Every image is written to ``train`` first; then per recording the last ``val_share`` of its
    samples (``split: time``) or the last ``val_share`` of the recordings, whole (``camera``), move
    to ``val``. ``progress(n)`` is called with each image written.
    """
    from PIL import Image

    if every_s <= 0:
        raise ConfigError(f"--every: got {every_s:g}; expected seconds > 0")
    if not 0 < val_share < 1:
        raise ConfigError(f"--val: got {val_share:g}; expected a share between 0 and 1")
    if not names:
        raise ConfigError("--classes: a dataset needs at least one class")
    missing = [str(p) for p in footage if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"dataset extract: footage not found: {', '.join(missing)}")
    if split == "camera" and len(footage) < 2:
        raise ConfigError(
            "--split camera: needs recordings of two cameras or more (whole ones go to validation)"
        )
    if teacher is not None and not teacher.mapping:  # the classes of the dataset named as the teacher's
        teacher.mapping = {n: k for k, n in enumerate(names) if n in teacher.class_names}
    _check_new_dir(dest)
    for s in SPLITS:
        (dest / "images" / s).mkdir(parents=True, exist_ok=True)
        (dest / "labels" / s).mkdir(parents=True, exist_ok=True)
    info = DatasetInfo(
        names=list(names),
        every_s=every_s,
        split=split,
        val_share=val_share,
        teacher=teacher_name,
        teacher_conf=teacher_conf,
        labelled_by="teacher" if teacher is not None else "empty",
    )
    taken: set[str] = set()
    images: list[list[str]] = []
    # a recording's camera: its folder, when the recordings come from several (CAMERA/*.mp4), else itself
    by_folder = len({Path(p).resolve().parent for p in footage}) > 1
    for path in footage:
        stem = _stem(Path(path), taken)
        written = []
        for t, rgb in sample_frames(Path(path), every_s=every_s):
            image = f"{stem}_{int(round(t * 1000)):08d}"
            Image.fromarray(rgb.numpy()).save(
                dest / "images" / "train" / f"{image}{IMAGE_SUFFIX}", quality=95
            )
            lines = teacher.labels(rgb) if teacher is not None else []
            (dest / "labels" / "train" / f"{image}.txt").write_text("".join(f"{x}\n" for x in lines))
            written.append(image)
            if progress:
                progress(1)
        if not written:
            raise ModelError(f"dataset extract: no frame could be read from {path}")
        camera = Path(path).parent.name if by_folder else stem
        info.sources.append(
            {"file": str(path), "stem": stem, "camera": camera, "samples": len(written), "val": 0}
        )
        images.append(written)
    _split(dest, info, images)
    write_info(dest, info)
    return info


def _split(dest: Path, info: DatasetInfo, images: list[list[str]]) -> None:
    """Move the validation share from ``train`` to ``val``: the last samples of each recording
    (``time``), or the last recordings whole (``camera``). ``images``: each recording's, in time order."""
    if info.split == "camera":
        cameras = list(dict.fromkeys(src["camera"] for src in info.sources))
        if len(cameras) < 2:
            raise ConfigError(
                "--split camera: the recordings are all of one camera (put each camera's recordings in a "
                "folder of its own, or split by time)"
            )
        n_val = min(max(1, math.ceil(len(cameras) * info.val_share)), len(cameras) - 1)
        for src in info.sources:  # the last cameras go whole; one at least stays for training
            if src["camera"] in cameras[-n_val:]:
                src["val"] = src["samples"]
    else:
        for src in info.sources:
            if src["samples"] >= 2:
                src["val"] = min(max(1, math.ceil(src["samples"] * info.val_share)), src["samples"] - 1)
    for src, names in zip(info.sources, images, strict=True):
        for image in names[len(names) - src["val"] :] if src["val"] else []:
            for kind, suffix in (("images", IMAGE_SUFFIX), ("labels", ".txt")):
                (dest / kind / "train" / f"{image}{suffix}").rename(dest / kind / "val" / f"{image}{suffix}")
    info.counts = {s: len(list((dest / "images" / s).glob(f"*{IMAGE_SUFFIX}"))) for s in SPLITS}


def write_info(dest: Path, info: DatasetInfo) -> None:
    """``dataset.json`` and the ``dataset.yaml`` Ultralytics reads (no ``path``: its own directory)."""
    (dest / DATASET_JSON).write_text(json.dumps(asdict(info), indent=2) + "\n")
    spec = {"train": "images/train", "val": "images/val", "names": dict(enumerate(info.names))}
    (dest / DATASET_YAML).write_text(yaml.safe_dump(spec, sort_keys=False))


def load_info(dataset: Path) -> DatasetInfo:
    """A dataset's ``dataset.json`` (ConfigError naming what is wrong)."""
    path = dataset / DATASET_JSON
    if not path.is_file():
        raise ConfigError(
            f"{dataset}: not a dataset (no {DATASET_JSON}; make one with `safecity dataset extract`)"
        )
    try:
        return DatasetInfo(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise ConfigError(f"{path}: not a dataset description ({err})") from None


def dataset_hash(dataset: Path) -> str:
    """sha256 over the class names and every image and label file (relative path and content); the
    caches Ultralytics leaves beside the labels do not count."""
    info = load_info(dataset)
    h = hashlib.sha256(json.dumps(info.names).encode())
    for kind, suffix in (("images", IMAGE_SUFFIX), ("labels", ".txt")):  # not Ultralytics' .cache files
        for f in sorted((dataset / kind).rglob(f"*{suffix}")):
            if f.is_file():
                h.update(f.relative_to(dataset).as_posix().encode() + b"\0")
                h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class Imported:
    replaced: int  # label files of the dataset replaced by the export's
    kept: list[str]  # images of the dataset the export has no label file for (labels unchanged)
    unknown: list[str]  # label files of the export with no image of that name in the dataset
    source: str


def import_labels(dataset: Path, export: Path) -> Imported:
    """Replace the dataset's labels with those of a YOLO-format export (a directory or a .zip from
    CVAT or Label Studio): label files matched to images by name, classes by the export's names file.

    Every file is checked before any is written: a class the dataset does not have, a malformed line
    or a coordinate outside 0..1 is a ConfigError naming the file and line, and nothing changes.
    """
    info = load_info(dataset)
    if not export.exists():
        raise ConfigError(f"dataset import: {export} not found")
    with tempfile.TemporaryDirectory() as tmp:
        root = export
        if export.is_file():
            if not zipfile.is_zipfile(export):
                raise ConfigError(f"dataset import: {export} is neither a directory nor a .zip export")
            with zipfile.ZipFile(export) as z:
                _safe_extract(z, Path(tmp))
            root = Path(tmp)
        names = _export_names(root)
        remap = {}
        for i, n in enumerate(names):
            if n not in info.names:
                raise ConfigError(
                    f"dataset import: the export's class {n!r} is not one of the dataset's: "
                    f"{', '.join(info.names)}"
                )
            remap[i] = info.names.index(n)
        where = {
            p.stem: p.parent.name for s in SPLITS for p in (dataset / "images" / s).glob(f"*{IMAGE_SUFFIX}")
        }
        new: dict[str, str] = {}
        unknown = []
        for lbl in sorted(root.rglob("*.txt")):
            if lbl.name in NAMES_FILES or lbl.name.lower() in (
                "train.txt",
                "valid.txt",
                "val.txt",
                "test.txt",
            ):
                continue
            if lbl.stem not in where:
                unknown.append(lbl.name)
                continue
            new[lbl.stem] = _converted(lbl, remap)
    if not new:
        raise ConfigError(
            f"dataset import: no label file of {export} names an image of {dataset} "
            f"(label files are matched to images by name, e.g. {next(iter(where), 'cam_00001000')}.txt)"
        )
    for stem, text in new.items():
        (dataset / "labels" / where[stem] / f"{stem}.txt").write_text(text)
    info.labelled_by = f"imported: {export.name}"
    write_info(dataset, info)
    return Imported(len(new), sorted(set(where) - set(new)), unknown, str(export))


MAX_EXPORT_BYTES = 4 << 30  # an export's content, unpacked: labels (and images, if it carries them)


def _safe_extract(z: zipfile.ZipFile, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside ``dest`` and archives that unpack to
    more than ``MAX_EXPORT_BYTES``."""
    for member in z.namelist():
        target = (dest / member).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise ConfigError(f"dataset import: the archive's member {member!r} points outside it")
    size = sum(info.file_size for info in z.infolist())
    if size > MAX_EXPORT_BYTES:
        raise ConfigError(
            f"dataset import: the archive unpacks to {size / 2**30:.1f} GiB (at most "
            f"{MAX_EXPORT_BYTES >> 30} GiB): export the labels only"
        )
    z.extractall(dest)


def _text(path: Path) -> str:
    """A text file of the export (ConfigError naming it when it is not UTF-8 text)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"dataset import: {path.name} is not UTF-8 text") from None


def _export_names(root: Path) -> list[str]:
    """The export's class names: ``obj.names`` (CVAT YOLO 1.1), ``classes.txt`` (Label Studio), or
    the ``names`` of a ``data.yaml`` (CVAT's Ultralytics YOLO export)."""
    for name in NAMES_FILES:
        files = sorted(root.rglob(name))
        if files:
            return [line.strip() for line in _text(files[0]).splitlines() if line.strip()]
    for spec in sorted(root.rglob("*.yaml")):
        try:
            data = yaml.safe_load(_text(spec)) or {}
        except yaml.YAMLError as err:
            raise ConfigError(
                f"dataset import: {spec.name} is not valid YAML: {str(err).splitlines()[0]}"
            ) from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            try:
                return [str(names[k]) for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise ConfigError(
                    f"dataset import: {spec.name}: names must be numbered 0, 1, 2 ..."
                ) from None
        if isinstance(names, list):
            return [str(n) for n in names]
    raise ConfigError(
        f"dataset import: no class names in the export (expected one of {', '.join(NAMES_FILES)} or a "
        "data.yaml with names)"
    )


def _converted(path: Path, remap: dict[int, int]) -> str:
    """One label file with the export's class ids turned into the dataset's, checked line by line."""
    out = []
    for n, line in enumerate(_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            coords = [float(x) for x in parts[1:]]
        except ValueError:
            raise ConfigError(f"{path.name}:{n}: expected 'class cx cy w h', got {line!r}") from None
        if len(coords) != 4:
            raise ConfigError(f"{path.name}:{n}: expected 'class cx cy w h' (a box), got {line!r}")
        if cls not in remap:
            raise ConfigError(
                f"{path.name}:{n}: class {cls} is not in the export's names (0..{len(remap) - 1})"
            )
        if not all(0.0 <= c <= 1.0 for c in coords):
            raise ConfigError(f"{path.name}:{n}: coordinates must be normalised to 0..1, got {line!r}")
        out.append(f"{remap[cls]} {' '.join(f'{c:.6f}' for c in coords)}\n")
    return "".join(out)

"""Is a model better? Its mAP on a dataset (Ultralytics' validation), and the question that matters to
a command centre: on annotated footage, does it raise more right incidents and fewer false ones than
another model (the incident-accuracy scorer, ``pipeline/accuracy``)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..accuracy.annotations import Annotation, footage_name
from ..accuracy.runs import Run, predict, score_runs
from ..accuracy.score import DEFAULT_IOU, Interval, TypeScore, temporal_iou
from ..config import Config, ModelConfig
from ..errors import ConfigError
from .dataset import DATASET_YAML, load_info


def checkpoint(ref: str) -> tuple[Path, int]:
    """The Ultralytics checkpoint of a version or a fetched manifest model, and the input size the
    pipeline runs it at."""
    from .train import base_model

    _, weights, imgsz, _, _ = base_model(ref)
    return weights, imgsz


def evaluate(
    ref: str, dataset: Path, *, imgsz: int | None = None, split: str = "val", batch: int = 8
) -> dict[str, Any]:
    """mAP50, mAP50-95, precision and recall of ``ref`` on ``dataset``'s ``split`` (and per class)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from ultralytics import YOLO

    info = load_info(dataset)
    weights, model_imgsz = checkpoint(ref)
    model = YOLO(str(weights))
    names = [str(n) for _, n in sorted(dict(model.names).items())]  # the checkpoint's own
    if names != info.names:
        raise ConfigError(
            f"models eval: {ref} detects {names}, the dataset {dataset} is labelled {info.names}: mAP "
            "compares the same classes (train a version on this dataset, or extract one with its classes)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        m = model.val(
            data=str(dataset / DATASET_YAML),
            split=split,
            imgsz=imgsz or model_imgsz,
            batch=batch,
            device="cpu",
            plots=False,
            workers=0,
            project=tmp,
            name="val",
            verbose=False,
        )
    box = m.box
    per_class = {
        info.names[int(c)]: round(float(box.maps[int(c)]), 4) for c in getattr(box, "ap_class_index", [])
    }
    return {
        "model": ref,
        "dataset": str(dataset),
        "split": split,
        "images": info.counts.get(split, 0),
        "mAP50": round(float(box.map50), 4),
        "mAP50-95": round(float(box.map), 4),
        "precision": round(float(box.mp), 4),
        "recall": round(float(box.mr), 4),
        "mAP50-95_per_class": per_class,
    }


@dataclass
class Comparison:
    a: str
    b: str
    scores: dict[str, dict[str, TypeScore]]  # model -> type -> score
    verdict: str  # better | worse | mixed | same (B against A)
    differences: list[str] = field(default_factory=list)  # the incidents only one of them got right or wrong


def with_model(cfg: Config, ref: str) -> list[ModelConfig]:
    """The config's models with ``ref`` in place of the one it is a version of (same id, so cameras
    that name it keep it), else of the first."""
    root = ref.split("@")[0]
    models = list(cfg.models)
    k = next((i for i, m in enumerate(models) if m.name and m.name.split("@")[0] == root), 0)
    old = models[k]
    models[k] = ModelConfig(
        name=ref, id=old.key, conf_threshold=old.conf_threshold, iou_threshold=old.iou_threshold
    )
    return models


def _standing(s: TypeScore | None) -> tuple[float, int]:
    """How good a type's incidents are: F1 first, then fewer wrong ones (false alerts and misses)."""
    if s is None:
        return (0.0, 0)
    return (0.0 if s.f1 is None else s.f1, -(len(s.false_positives) + len(s.misses)))


def verdict(a: dict[str, TypeScore], b: dict[str, TypeScore]) -> str:
    """B against A over every incident type either has: better (no type worse, one better), worse,
    mixed or same; a type is better by F1, or at equal F1 by fewer false alerts and misses."""
    ups = downs = False
    for t in set(a) | set(b):
        sa, sb = _standing(a.get(t)), _standing(b.get(t))
        ups, downs = ups or sb > sa, downs or sb < sa
    return "mixed" if ups and downs else "better" if ups else "worse" if downs else "same"


def _describe(i: Interval) -> str:
    where = f" in {i.zone}" if i.zone else ""
    return f"{i.type}{where} {i.start:.1f}-{i.end:.1f} s of {footage_name(i.footage)}"


def differences(
    a_name: str, a: dict[str, TypeScore], b_name: str, b: dict[str, TypeScore], iou: float
) -> list[str]:
    """True incidents one model found and the other missed; false alerts one raised and the other not."""
    out = []
    for t in sorted(set(a) | set(b)):
        for x_name, x, y_name, y in (
            (a_name, a.get(t), b_name, b.get(t)),
            (b_name, b.get(t), a_name, a.get(t)),
        ):
            if x is None:
                continue
            found_by_y = {m.truth.ref for m in y.matches} if y else set()
            out += [
                f"{x_name} found, {y_name} missed: {_describe(m.truth)}"
                for m in x.matches
                if m.truth.ref not in found_by_y
            ]
            others = y.false_positives if y else []
            out += [
                f"{x_name} alone raised a false {_describe(fp)}"
                for fp in x.false_positives
                if not any(temporal_iou(fp, o) >= iou for o in others)
            ]
    return out


def compare(
    cfg: Config,
    a: str,
    b: str,
    annotations: list[Annotation],
    *,
    iou: float = DEFAULT_IOU,
    work: Path | None = None,
) -> Comparison:
    """Run the annotated footage through ``cfg`` with ``a`` and then ``b`` as its model; score both."""
    scores: dict[str, dict[str, TypeScore]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = work or Path(tmp)
        for k, ref in enumerate((a, b)):
            models = with_model(cfg, ref)
            runs: list[Run] = [
                predict(cfg, ann, root / f"m{k}" / str(i), models) for i, ann in enumerate(annotations)
            ]
            scores[ref] = score_runs(runs, iou)
    return Comparison(
        a, b, scores, verdict(scores[a], scores[b]), differences(a, scores[a], b, scores[b], iou)
    )

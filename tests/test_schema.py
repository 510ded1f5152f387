import copy
import hashlib
import json
import re

import pytest

from pipeline.errors import SchemaError
from pipeline.events.schema import build_event, load_schema, uuid7, validate_event
from pipeline.events.sink import check_message
from pipeline.types import Incident, TrackedObject


def incident(**kw: object) -> Incident:
    base = dict(
        incident_id="inc-1",
        type="encroachment",
        status="start",
        severity="medium",
        camera_id="cam1",
        zone="footpath",
        started_at=10.0,
        emitted_at=13.0,
        ended_at=None,
        objects=[TrackedObject(4, "person", 0.81, (1.0, 2.0, 30.0, 80.0))],
        confidence=0.81,
    )
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def event(**kw: object) -> dict:
    snap = b"\xff\xd8jpeg"
    e = build_event(
        incident(**kw),
        source="edge-1",
        location=(72.8, 19.0),
        frame_w=640,
        frame_h=480,
        model_name="fall-yolov8",
        model_version="8.4",
        wall_offset=1_790_000_000.0,
        snapshot_sha256=hashlib.sha256(snap).hexdigest(),
        snapshot_bytes=len(snap),
    )
    e["seq"] = 1
    return e


def test_uuid7_format_and_order() -> None:
    ids = [uuid7() for _ in range(50)]
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids
    )
    assert len(set(ids)) == 50
    assert ids[0][:8] <= ids[-1][:8]


def test_built_event_is_valid_and_carries_the_fields() -> None:
    e = event()
    validate_event(e)
    assert e["schema"] == "iccc.incident/1.0"
    assert e["started_at"].endswith("Z") and e["location"]["coordinates"] == [72.8, 19.0]
    assert e["objects"][0] == {
        "track_id": 4,
        "label": "person",
        "confidence": 0.81,
        "bbox": [1.0, 2.0, 30.0, 80.0],
    }
    assert e["frame"]["width"] == 640 and e["evidence"]["content_type"] == "image/jpeg"
    json.dumps(load_schema())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("camera_id"), "'camera_id' is a required property"),
        (lambda e: e.update(schema="iccc.incident/2.0"), "unsupported major version '2'"),
        (lambda e: e.update(schema="other/1.0"), "expected 'iccc.incident/1.N'"),
        (lambda e: e.update(type="jaywalking"), "type: 'jaywalking' is not one of"),
        (lambda e: e["objects"][0].update(confidence=97.5), "objects.0.confidence: 97.5 is greater than"),
        (lambda e: e.update(event_id="not-a-uuid"), "event_id"),
        (lambda e: e.update(seq=0), "seq: 0 is less than the minimum"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(mutate, reason: str) -> None:
    e = copy.deepcopy(event())
    mutate(e)
    with pytest.raises(SchemaError, match=re.escape(reason)):
        validate_event(e)


def test_minor_versions_with_extra_fields_are_accepted() -> None:
    e = event()
    e["schema"] = "iccc.incident/1.3"
    e["new_optional_field"] = {"x": 1}
    validate_event(e)


def test_message_checks_snapshot_digest() -> None:
    e = event()
    body = json.dumps(e).encode()
    assert check_message([b"EVT", body, b"\xff\xd8jpeg"])[1] == b"\xff\xd8jpeg"
    with pytest.raises(SchemaError, match="does not match the snapshot"):
        check_message([b"EVT", body, b"other"])
    with pytest.raises(SchemaError, match="none was sent"):
        check_message([b"EVT", body, b""])
    with pytest.raises(SchemaError, match="not JSON"):
        check_message([b"EVT", b"{nope", b""])
    with pytest.raises(SchemaError, match="expected"):
        check_message([b"HELLO"])

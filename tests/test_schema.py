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
        objects=[
            TrackedObject(
                4,
                "person",
                0.81,
                (1.0, 2.0, 30.0, 80.0),
                down=False,
                models=("yolov3-tiny-coco@3", "fall-yolov8@8.4"),
            )
        ],
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
    assert e["schema"] == "iccc.incident/1.3"
    assert e["started_at"].endswith("Z") and e["location"]["coordinates"] == [72.8, 19.0]
    assert e["objects"][0] == {
        "track_id": 4,
        "label": "person",
        "confidence": 0.81,
        "bbox": [1.0, 2.0, 30.0, 80.0],
        "down": False,
        "models": ["yolov3-tiny-coco@3", "fall-yolov8@8.4"],
    }
    # every detector that made an object, the first as "model"
    assert e["models"] == [
        {"name": "yolov3-tiny-coco", "version": "3"},
        {"name": "fall-yolov8", "version": "8.4"},
    ]
    assert e["model"] == e["models"][0]
    # a 1.0 event (no models) is still valid
    for o in e["objects"]:
        del o["down"], o["models"]
    del e["models"]
    validate_event(e)
    assert e["frame"]["width"] == 640 and e["evidence"]["content_type"] == "image/jpeg"
    json.dumps(load_schema())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("camera_id"), '"camera_id" is a required property'),
        (lambda e: e.update(schema="iccc.incident/2.0"), "unsupported major version '2'"),
        (lambda e: e.update(schema="other/1.0"), "expected 'iccc.incident/1.N'"),
        (lambda e: e.update(type="jaywalking"), 'type: "jaywalking" is not one of'),
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
    assert check_message([b"EVT", body, b""])[1] is None  # by reference: the sink fetches it
    no_evidence = json.dumps({**e, "evidence": None}).encode()
    with pytest.raises(SchemaError, match="does not name it"):
        check_message([b"EVT", no_evidence, b"\xff\xd8jpeg"])
    with pytest.raises(SchemaError, match="not JSON"):
        check_message([b"EVT", b"{nope", b""])
    with pytest.raises(SchemaError, match="expected"):
        check_message([b"HELLO"])


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


REPLACEMENTS = [
    None,
    True,
    0,
    -1,
    1.0,
    2.5,
    1e9,
    -200.0,
    "",
    "x",
    "2026-13-01T00:00:00Z",
    "2026-02-30T12:00:00Z",
    "2026-02-28T23:59:59.5+05:30",
    "2026-06-30t23:59:59z",
    "2026-06-30T05:29:59+24:00",
    "Point",
    "image/jpeg",
    "start",
    "a" * 64,
    [],
    [1, 2],
    [0, 0, 1, 1],
    {},
    {"type": "Point"},
]


def test_the_validator_agrees_with_jsonschema_on_mutated_events() -> None:
    """The sink's validator (jsonschema-rs) accepts and rejects exactly what the reference implementation
    (the ``jsonschema`` package, with its RFC 3339 checker) does, and names a reason for each refusal."""
    import random

    from jsonschema import Draft202012Validator

    reference = Draft202012Validator(load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert "date-time" in reference.format_checker.checkers  # rfc3339-validator is installed
    rng = random.Random(7)
    base = event()
    base["location"] = {"type": "Point", "coordinates": [72.8, 19.0]}
    seen = {True: 0, False: 0}
    for _ in range(3000):
        e = copy.deepcopy(base)
        for _ in range(rng.choice((1, 1, 2))):
            path = rng.choice(_paths(e)[1:])
            parent = e
            for p in path[:-1]:
                parent = parent[p]
            action = rng.random()
            if action < 0.15 and isinstance(parent, dict):
                del parent[path[-1]]
            elif action < 0.25 and isinstance(parent, dict):
                parent["extra"] = rng.choice(REPLACEMENTS)
            elif action < 0.3 and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[-1]))
            else:
                parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
        expected = reference.is_valid(e)
        try:
            validate_event(e)
            got = True
        except SchemaError as err:
            got = False
            assert ": " in str(err) and "does not match the schema" not in str(err), err
        assert got == expected, (e, list(reference.iter_errors(e))[:1])
        seen[got] += 1
    assert seen[True] > 100 and seen[False] > 1000, seen


def test_leap_seconds_are_accepted_as_rfc3339_allows() -> None:
    """RFC 3339 (section 5.6) allows a time-second of 60; the sink stores such a time as sent. (The
    ``jsonschema`` package's checker refuses it, which is why the mutations above leave it out.)"""
    e = event()
    e["emitted_at"] = "2016-12-31T23:59:60Z"
    validate_event(e)
    e["emitted_at"] = "2016-12-31T23:59:61Z"
    with pytest.raises(SchemaError, match='emitted_at: .* is not a "date-time"'):
        validate_event(e)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("zone",), "road\n2026-12-07T10:00:00Z edge-9#1 ACCIDENT start camera=gate-1"),
        (("zone",), "z" * 65),
        (("incident_id",), "id\x1b[2J"),
        (("objects", 0, "label"), "car\r\n"),
        (("objects", 0, "label"), "x" * 65),
        (("objects", 0, "models", 0), "m\u202e@1"),
        (("model", "name"), "n\x00"),
        (("details", "note"), "a\x07"),
        (("details", "note"), "a" * 257),
        (("details", "bad key"), 1),
        (("details", "nested"), {"a": 1}),
    ],
)
def test_every_free_text_field_is_bounded_and_free_of_control_characters(path: tuple, value: object) -> None:
    """A zone name with a newline and terminal escapes forged a whole ACCIDENT line in the sink's
    output: the schema now bounds and patterns every text an edge chooses."""
    e = event()
    e["objects"][0]["models"] = ["yolo@1"]
    e["details"] = {"dwell_seconds": 3.5, "track_3": "collision"}
    validate_event(e)
    target = e
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SchemaError):
        validate_event(e)


def test_what_a_person_reads_of_an_event_is_one_line_without_escapes() -> None:
    from pipeline.events.sink import format_event
    from pipeline.text import printable

    e = event()
    e["zone"] = "road\n2026-12-07T10:00:00Z edge-9#1 ACCIDENT start camera=gate-1\x1b[2J"
    e["objects"][0]["label"] = "car\u202eraC"
    line = format_event(e)  # (as if a store held such an event from before the schema bounded it)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert "\\n2026-12-07" in line and "\\x1b[2J" in line and "\\u202e" in line
    assert printable("x" * 300, limit=10) == "xxxxxxx..." and printable("ok é") == "ok é"

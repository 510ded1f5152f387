"""Ground truth for recorded footage: the incidents a person marked, and (optionally) the boxes of
the objects to score tracking with.

One YAML file per footage file::

    footage: vtest.avi            # relative to this file (or absolute)
    camera: campus-vtest          # the config's camera whose zones the incidents refer to
    incidents:                    # type, zone (optional), start and end in seconds of the video
      - {type: encroachment, zone: lawn, start: 12.0, end: 31.5, note: "a man waits on the lawn"}
    incidents_csv: more.csv       # optional: the same as an interval list (type,zone,start,end)
    boxes: gt.txt                 # optional: boxes per frame, MOTChallenge gt.txt or CVAT video XML

An incident is one occurrence: it starts when the situation the rule is about begins (a person
steps onto the lawn, a car stops in the bay) and ends when it is over. Times are media time, the
video's own timestamps from its first frame.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .score import Interval

INCIDENT_TYPES = ("theft", "assault", "encroachment", "stray_animal", "accident")

# frame number (1-based, as MOTChallenge and CVAT+1 count) -> [(object id, x1, y1, x2, y2), ...]
Boxes = dict[int, list[tuple[int, float, float, float, float]]]


@dataclass
class Annotation:
    path: Path
    footage: Path
    camera: str | None
    incidents: list[Interval]
    boxes: Boxes | None = None
    notes: dict[str, str] = field(default_factory=dict)  # incident ref -> what the annotator wrote


def _incident(raw: Any, where: str, footage: str) -> tuple[Interval, str]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with type, start and end, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"type", "zone", "start", "end", "note"})
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (fields: type, zone, start, end, note)")
    kind = raw.get("type")
    if kind not in INCIDENT_TYPES:
        raise ConfigError(f"{where}.type: expected one of {', '.join(INCIDENT_TYPES)}, got {kind!r}")
    try:
        start, end = float(raw["start"]), float(raw["end"])
    except KeyError as err:
        raise ConfigError(f"{where}: {err.args[0]} is missing (seconds of the video)") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: start and end must be numbers of seconds") from None
    if not 0 <= start <= end < float("inf"):
        raise ConfigError(f"{where}: expected 0 <= start <= end, got start {start:g}, end {end:g}")
    zone = raw.get("zone")
    if zone is not None and not isinstance(zone, str):
        raise ConfigError(f"{where}.zone: expected a zone's name, got {zone!r}")
    return Interval(footage, kind, start, end, zone or None, ref=where), str(raw.get("note", ""))


def read_intervals_csv(path: Path, footage: str) -> list[Interval]:
    """An interval list: a header ``type,zone,start,end`` and one incident a line (zone may be empty)."""
    out = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # (a spreadsheet's byte-order mark)
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it: {err.strerror or err}") from None
    for n, row in enumerate(rows, 2):
        raw = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
        raw = {k: v for k, v in raw.items() if v not in ("", None)}
        out.append(_incident(raw, f"{path.name}:{n}", footage)[0])
    return out


def read_mot(path: Path) -> Boxes:
    """MOTChallenge ``gt.txt``: ``frame,id,left,top,width,height[,conf,class,visibility]``; rows whose
    ``conf`` is 0 (marked to be ignored) are left out."""
    boxes: Boxes = defaultdict(list)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it: {err.strerror or err}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            frame, oid = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            conf = float(parts[6]) if len(parts) > 6 else 1.0
        except (ValueError, IndexError):
            raise ConfigError(f"{path}:{n}: expected frame,id,left,top,width,height[,...]") from None
        if conf != 0:
            boxes[frame].append((oid, x, y, x + w, y + h))
    return dict(boxes)


def read_cvat_video(path: Path) -> Boxes:
    """CVAT for video 1.1 XML: ``<track id label><box frame xtl ytl xbr ybr outside .../></track>``;
    frames counted from 1 as MOTChallenge does (CVAT's frame 0 is frame 1); boxes marked ``outside``
    are the object's absence."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise ConfigError(f"{path}: not a CVAT XML file ({err})") from None
    boxes: Boxes = defaultdict(list)
    for track in root.iter("track"):
        try:
            oid = int(track.attrib["id"])
            for b in track.iter("box"):
                if b.attrib.get("outside") == "1":
                    continue
                x1, y1, x2, y2 = (float(b.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
                boxes[int(b.attrib["frame"]) + 1].append((oid, x1, y1, x2, y2))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{path}: track {track.attrib.get('id')}: a box lacks {err}") from None
    return dict(boxes)


def footage_key(footage: Path, camera: str | None) -> str:
    """What incidents of one footage file are matched by: its resolved path (two files of one name
    in different folders are different footage) and the camera it is played as (one file annotated
    for two cameras' zones is two footages): ``PATH#CAMERA``."""
    return f"{footage.resolve()}#{camera or ''}"


def footage_name(key: str) -> str:
    """A footage key as a person reads it: the file's name, and the camera's where there is one."""
    if "#" not in key:
        return Path(key).name
    path, _, camera = key.rpartition("#")  # (a file name may hold a '#'; camera ids may not)
    return f"{Path(path).name} ({camera})" if camera else Path(path).name


def load(path: Path) -> Annotation:
    """An annotation file (see the module's docstring); ConfigError naming the file and field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not YAML: {err}") from None
    if not isinstance(data, dict) or "footage" not in data:
        raise ConfigError(f"{path}: expected a mapping with footage: and incidents:")
    unknown = sorted(set(data) - {"footage", "camera", "incidents", "incidents_csv", "boxes", "description"})
    if unknown:
        raise ConfigError(f"{path}: unknown field {unknown[0]!r}")
    footage = Path(str(data["footage"]))
    footage = footage if footage.is_absolute() else path.parent / footage
    camera = data.get("camera")
    camera = None if camera is None else str(camera)
    name = footage_key(footage, camera)
    incidents, notes = [], {}
    raw_list = data.get("incidents") or []
    if not isinstance(raw_list, list):
        raise ConfigError(f"{path}: incidents: expected a list")
    for k, raw in enumerate(raw_list):
        inc, note = _incident(raw, f"{path.name}: incidents[{k}]", name)
        incidents.append(inc)
        if note:
            notes[inc.ref] = note
    if data.get("incidents_csv"):
        incidents += read_intervals_csv(path.parent / str(data["incidents_csv"]), name)
    boxes = None
    if data.get("boxes"):
        bpath = path.parent / str(data["boxes"])
        boxes = read_cvat_video(bpath) if bpath.suffix.lower() == ".xml" else read_mot(bpath)
    return Annotation(path, footage, camera, incidents, boxes, notes)

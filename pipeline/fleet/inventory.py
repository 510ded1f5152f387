"""The camera inventory and the edge servers, from CSV or YAML, checked row by row.

Inventory columns: ``camera_id, corporation, site, owner, lat, lon, url, codec, width, height, fps``
and optionally ``analytics_fps`` (default 5) and ``password_file``: where the edge reads the camera's
password (a Secret mounted as files; ``/run/secrets/cameras/{camera_id}``). A URL never holds the
password: the plan writes configs and ConfigMaps, which are not secret. ``owner`` is one of public,
petrol_pump, bank, shop, residential; ``codec`` h264 or hevc; ``url`` may be a template over the row's fields
(``rtsp://{camera_id}.{site}.cams.example/stream1``).

Servers: ``server_id, site, capacity`` (camera-equivalents: what ``safecity bench capacity`` sustains,
counted in 1080p30 H.264 cameras analysed at 5 fps; see ``weight``).
"""

from __future__ import annotations

import csv
import io
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ..config import read_yaml
from ..errors import ConfigError
from ..urls import check_source, holds_secret

ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
OWNERS = ("public", "petrol_pump", "bank", "shop", "residential")
# decode cost per frame relative to H.264 (NVDEC sustains ~229 HEVC to ~148 H.264 1080p30 streams)
CODEC_COST = {"h264": 1.0, "hevc": 0.65}
DECODE_SHARE = 0.6  # of a reference camera's cost: decoding every frame; the rest is analysing 5 fps


def weight(width: int, height: int, fps: float, codec: str, analytics_fps: float) -> float:
    """A camera in camera-equivalents: 1.0 is 1080p30 H.264 analysed at 5 fps. Decoding scales with
    pixels, frame rate and codec; analysis with pixels (the resize) and the analysed rate."""
    pixels = width * height / (1920 * 1080)
    decode = DECODE_SHARE * pixels * fps / 30 * CODEC_COST[codec]
    analyse = (1 - DECODE_SHARE) * (0.5 + 0.5 * pixels) * analytics_fps / 5
    return decode + analyse


@dataclass
class Inventory:
    """Column arrays, one entry per camera (400,000 of them fit in a few tens of MB)."""

    camera_id: list[str]
    corporation: list[str]
    site: list[str]
    owner: list[str]
    lat: np.ndarray
    lon: np.ndarray
    url: list[str]
    codec: list[str]
    width: np.ndarray
    height: np.ndarray
    fps: np.ndarray
    analytics_fps: np.ndarray
    weight: np.ndarray
    password_file: list[str]

    def __len__(self) -> int:
        return len(self.camera_id)

    def source(self, i: int) -> str:
        """Camera ``i``'s stream URL: its template's ``{field}`` names (of the row: camera_id,
        corporation, site, owner, codec) filled in, each value URL-quoted (a space or an @ in a
        corporation's name cannot change the host)."""
        fields = {
            "camera_id": self.camera_id[i], "corporation": self.corporation[i], "site": self.site[i],
            "owner": self.owner[i], "codec": self.codec[i],
        }  # fmt: skip
        return self._fill(i, "url", self.url[i], fields)

    def secret_file(self, i: int) -> str:
        """Where camera ``i``'s password is ("" for none): ``{camera_id}`` and ``{site}`` (letters,
        digits, . _ - only: no way out of the folder) filled in."""
        return self._fill(i, "password_file", self.password_file[i], {"camera_id": self.camera_id[i],
                          "site": self.site[i]})  # fmt: skip

    def _fill(self, i: int, column: str, template: str, fields: dict[str, str]) -> str:
        if "{" not in template:
            return template
        out = []
        try:
            for text, name, spec, conv in string.Formatter().parse(template):
                out.append(text)
                if name is None:
                    continue
                if name not in fields or spec or conv:
                    raise ValueError(f"{{{name}}}: expected one of {{{'}, {'.join(fields)}}}, bare")
                out.append(quote(fields[name], safe=""))
        except ValueError as err:
            raise ConfigError(f"camera {self.camera_id[i]}: {column} template {template!r}: {err}") from None
        return "".join(out)


@dataclass
class Servers:
    server_id: list[str]
    site: list[str]
    capacity: np.ndarray

    def __len__(self) -> int:
        return len(self.server_id)


def _rows(path: Path, key: str) -> list[dict[str, Any]]:
    """The rows of a CSV file, or of a YAML list (top level, or under ``key``)."""
    if path.suffix.lower() == ".csv":
        try:
            text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not a column
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames:
            reader.fieldnames = [f.strip() for f in reader.fieldnames]
        rows: list[dict[str, Any]] = []
        try:
            for row in reader:
                if None in row:  # more fields than the header has: an unquoted comma, most likely
                    raise ConfigError(f"{path}: row {reader.line_num}: more fields than the header's")
                rows.append(row)
        except csv.Error as err:
            raise ConfigError(f"{path}: not valid CSV: {err}") from None
        return rows
    doc = read_yaml(path)
    found = doc.get(key) if isinstance(doc, dict) else doc
    if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
        raise ConfigError(f"{path}: expected a CSV file, or YAML with a list of rows under {key}:")
    return found


class _Row:
    def __init__(self, path: Path, n: int, row: dict[str, Any]) -> None:
        self.where, self.row = f"{path}: row {n}", row

    def text(self, field: str, choices: tuple[str, ...] | None = None, *, ident: bool = False) -> str:
        value = self.row.get(field)
        if value is None or str(value).strip() == "":
            raise ConfigError(f"{self.where}: {field} is missing")
        value = str(value).strip()
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.where}: {field} {value!r}: expected one of {', '.join(choices)}")
        if ident and not ID_RE.fullmatch(value):
            raise ConfigError(
                f"{self.where}: {field} {value!r}: expected letters, digits, . _ - (64 at most)"
            )
        return value

    def number(self, field: str, low: float, high: float, default: float | None = None) -> float:
        value = self.row.get(field)
        if (value is None or str(value).strip() == "") and default is not None:
            return default
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{self.where}: {field} {value!r}: expected a number") from None
        if not low <= x <= high:
            raise ConfigError(f"{self.where}: {field} {x:g}: expected {low:g} to {high:g}")
        return x


def load_inventory(path: Path) -> Inventory:
    rows = _rows(path, "cameras")
    if not rows:
        raise ConfigError(f"{path}: no cameras")
    cols: dict[str, list[Any]] = {k: [] for k in Inventory.__dataclass_fields__}
    seen: dict[str, int] = {}
    for n, raw in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        r = _Row(path, n, raw)
        cid = r.text("camera_id", ident=True)
        if cid in seen:
            raise ConfigError(f"{r.where}: camera_id {cid!r} is also on row {seen[cid]}")
        seen[cid] = n
        codec = r.text("codec", tuple(CODEC_COST))
        width, height = r.number("width", 64, 8192), r.number("height", 64, 8192)
        fps, analytics_fps = r.number("fps", 1, 120), r.number("analytics_fps", 0.1, 60, default=5.0)
        values: dict[str, Any] = {
            "camera_id": cid,
            "corporation": r.text("corporation"),
            "site": r.text("site", ident=True),
            "owner": r.text("owner", OWNERS),
            "lat": r.number("lat", -90, 90),
            "lon": r.number("lon", -180, 180),
            "url": r.text("url"),
            "codec": codec,
            "width": width,
            "height": height,
            "fps": fps,
            "analytics_fps": analytics_fps,
            "weight": weight(int(width), int(height), fps, codec, analytics_fps),
            "password_file": str(raw.get("password_file") or "").strip(),
        }
        for k, v in values.items():
            cols[k].append(v)
    arrays = {
        k: np.asarray(cols[k], dtype=np.float64) for k in ("lat", "lon", "fps", "analytics_fps", "weight")
    }
    arrays |= {k: np.asarray(cols[k], dtype=np.int32) for k in ("width", "height")}
    inv = Inventory(**{k: arrays.get(k, cols[k]) for k in cols})  # type: ignore[arg-type]
    first = 2 if path.suffix.lower() == ".csv" else 1
    for i in range(len(inv)):  # each camera's source as the edge will check it, row by row
        where = f"{path}: row {i + first}: camera {inv.camera_id[i]}"
        try:
            source = check_source(inv.source(i))
        except ValueError as err:
            raise ConfigError(f"{where}: url: {err}") from None
        if holds_secret(source):
            raise ConfigError(
                f"{where}: url holds a password, and the plan's configs and ConfigMaps are not secret: "
                "leave it out of the URL and give the column password_file (a Secret mounted as files, "
                "e.g. /run/secrets/cameras/{camera_id})"
            )
        secret = inv.secret_file(i)
        if secret and (not secret.startswith("/") or ".." in secret.split("/") or not secret.isprintable()):
            raise ConfigError(f"{where}: password_file {secret!r}: expected an absolute path without '..'")
    return inv


def load_servers(path: Path) -> Servers:
    rows = _rows(path, "servers")
    if not rows:
        raise ConfigError(f"{path}: no servers")
    ids, sites, caps = [], [], []
    seen: set[str] = set()
    for n, raw in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        r = _Row(path, n, raw)
        sid = r.text("server_id", ident=True)
        if sid in seen:
            raise ConfigError(f"{r.where}: server_id {sid!r} is listed twice")
        seen.add(sid)
        ids.append(sid)
        sites.append(r.text("site", ident=True))
        caps.append(r.number("capacity", 0.1, 100_000))
    return Servers(ids, sites, np.asarray(caps, dtype=np.float64))

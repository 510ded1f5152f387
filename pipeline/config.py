"""The whole YAML configuration as one pydantic tree, parsed once at the entry point."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .urls import check_source, is_live_source, redact, scheme
from .urls import shown as shown_source

Point = tuple[float, float]
FrameSide = Annotated[int, Field(ge=16, le=16384)]  # pixels


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


TIME_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def check_time_range(s: str) -> str:
    if not TIME_RANGE.match(s):
        raise ValueError(f"schedule entry {s!r} is not HH:MM-HH:MM (24-hour local time)")
    return s


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether two segments touch or cross (collinear overlaps included)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 and d2 and d3 and d4:
        return True

    def on(a: Point, b: Point, c: Point, d: float) -> bool:
        return (
            d == 0
            and min(a[0], b[0]) <= c[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])
        )

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def distinct_corners(points: list[Point]) -> list[Point]:
    """The polygon without repeated corners: a point listed twice in a row, or the first point
    repeated at the end to close the ring (as GeoJSON writes polygons)."""
    out: list[Point] = []
    for p in points:
        if not out or tuple(p) != tuple(out[-1]):
            out.append(p)
    while len(out) > 1 and tuple(out[0]) == tuple(out[-1]):
        out.pop()
    return out


def polygon_problem(points: list[Point]) -> str | None:
    """Why a polygon cannot be a zone (no area, or edges that cross), or None if it can."""
    n = len(points)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbouring edges share a corner
            if _segments_cross(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return (
                    f"crosses itself: edge {i} {list(points[i])}->{list(points[(i + 1) % n])} meets edge "
                    f"{j} {list(points[j])}->{list(points[(j + 1) % n])}; list the corners in order around "
                    "the zone"
                )
    area2 = sum(
        points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n)
    )
    if abs(area2) < 1e-12:
        return "has no area (its points are on one line)"
    return None


class ObjectFilter(Strict):
    """What an object of one role (or class) must be like for the rules to look at it: false-alarm
    controls, per camera and per zone, like Frigate's object filters. Sizes are the box's longer side
    as a share of the frame's height (or, on a camera with a ground plane, the box's width on the
    ground in metres); the score is the median of the object's detections over ``score_seconds``
    (one confident frame of a shadow is not a person)."""

    min_size: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.0, description="smallest box: its longer side as a share of the frame's height"
    )
    max_size: Annotated[float, Field(gt=0, le=10)] = Field(
        default=10.0, description="largest box: its longer side as a share of the frame's height"
    )
    min_aspect: Annotated[float, Field(ge=0, le=100)] = Field(
        default=0.0, description="narrowest box: width over height"
    )
    max_aspect: Annotated[float, Field(gt=0, le=100)] = Field(
        default=100.0, description="widest box: width over height"
    )
    min_width_m: Annotated[float, Field(ge=0, le=1000)] = Field(
        default=0.0, description="on a camera with a ground plane: the box's width on the ground, metres"
    )
    max_width_m: Annotated[float, Field(gt=0, le=1000)] = Field(
        default=1000.0, description="on a camera with a ground plane: the box's width on the ground, metres"
    )
    min_score: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="the median confidence of its detections over score_seconds"
    )
    score_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0, description="how far back the median confidence looks"
    )

    @model_validator(mode="after")
    def _check(self) -> ObjectFilter:
        for lo, hi in (
            ("min_size", "max_size"),
            ("min_aspect", "max_aspect"),
            ("min_width_m", "max_width_m"),
        ):
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must be below {hi} ({getattr(self, hi)})")
        return self


# role or class name -> its filter
Filters = dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_ .\-]{1,64}$")], ObjectFilter]


class ZoneConfig(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    polygon: Annotated[list[Point], Field(min_length=3, max_length=256)]
    normalized: bool = False
    kinds: list[Literal["no_encroachment", "carriageway", "protected", "mask"]] = ["no_encroachment"]
    schedule: list[str] = Field(
        default_factory=list,
        description='local times when the zone reports, e.g. ["08:00-22:00"]; empty: always',
    )
    filters: Filters = Field(
        default_factory=dict,
        description="role or class -> what its objects must be like to count in this zone (on top of the "
        "camera's filters), e.g. {vehicle: {min_size: 0.08}}",
    )

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: list[str]) -> list[str]:
        return [check_time_range(s) for s in v]

    @model_validator(mode="after")
    def _check_points(self) -> ZoneConfig:
        for x, y in self.polygon:
            if self.normalized and not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"normalized polygon point ({x}, {y}) is outside 0..1")
            if x < 0 or y < 0:
                raise ValueError(f"polygon point ({x}, {y}) is negative; expected pixel coordinates >= 0")
        corners = distinct_corners(self.polygon)
        if len(corners) < 3:
            raise ValueError(f"polygon has {len(corners)} distinct corners; a zone needs at least 3")
        problem = polygon_problem(corners)
        if problem:
            raise ValueError(f"polygon {problem}")
        self.polygon = corners
        return self


class LineConfig(Strict):
    """A directed line: crossing it from the right of A->B to the left (image coordinates, y down,
    i.e. counter-clockwise) is ``forward``, the other way ``backward``."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    points: tuple[Point, Point]
    normalized: bool = False

    @model_validator(mode="after")
    def _check(self) -> LineConfig:
        (ax, ay), (bx, by) = self.points
        if (ax, ay) == (bx, by):
            raise ValueError("a line needs two different points")
        return self


class GroundPlaneConfig(Strict):
    """Four image points (pixels) and where they lie on the ground (metres): speeds in m/s, km/h."""

    image: Annotated[list[Point], Field(min_length=4, max_length=4)]
    world: Annotated[list[Point], Field(min_length=4, max_length=4)]

    @model_validator(mode="after")
    def _check(self) -> GroundPlaneConfig:
        for name, pts in (("image", self.image), ("world", self.world)):
            for i in range(4):  # no three of the four points on one line
                (ax, ay), (bx, by), (cx, cy) = (pts[(i + k) % 4] for k in range(3))
                if abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) < 1e-9:
                    raise ValueError(f"{name} points: three of them are on one line")
        return self


class CredentialsConfig(Strict):
    """A camera's password kept out of the config: read from a file (a Kubernetes Secret mounted as
    files, a systemd credential) or an environment variable each time the camera is opened, so a
    rotated password is taken at the next reconnect."""

    username: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f:]+$")] | None = (
        Field(default=None, description="the camera's user name (default: the one in the source URL)")
    )
    password_file: Path | None = Field(default=None, description="a file holding the password (one line)")
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = Field(
        default=None, description="an environment variable holding the password"
    )

    @model_validator(mode="after")
    def _one_place(self) -> CredentialsConfig:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file and password_env")
        return self


class CameraConfig(Strict):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    source: Annotated[str, Field(min_length=1, description="video file path or rtsp:// URL")]
    credentials: CredentialsConfig | None = Field(
        default=None, description="the camera's password from a file or an environment variable, not the URL"
    )
    live: bool | None = Field(
        default=None,
        description="a stream the camera pushes in real time (never paced, reconnected for ever); "
        "default: by URL scheme (rtsp, rtmp, srt, udp ... live; files and http(s) recorded)",
    )
    loop: bool = False
    realtime: bool = True
    rtsp_transport: Literal["tcp", "udp"] = Field(
        default="tcp",
        description="RTP over the RTSP connection (tcp) or over UDP (lower latency, may lose packets)",
    )
    analytics_fps: Annotated[float, Field(gt=0, le=60)] = 5.0
    location: tuple[float, float] | None = Field(default=None, description="longitude, latitude (WGS84)")
    zones: list[ZoneConfig] = []
    lines: list[LineConfig] = []
    ground_plane: GroundPlaneConfig | None = None
    filters: Filters = Field(
        default_factory=dict,
        description="role or class -> what its objects must be like for this camera's rules (over the "
        "top-level filters)",
    )
    zones_drawn_on: tuple[FrameSide, FrameSide] | None = Field(
        default=None,
        description="[width, height] of the frame the pixel coordinates of zones, lines and the ground "
        "plane were drawn on: frames of another size (a sub-stream, a changed resolution) scale them; "
        "default: they are the frame's own pixels",
    )
    schedule: list[str] = Field(
        default_factory=list, description="local times when this camera reports incidents; empty: always"
    )
    models: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description="ids of the detectors this camera's frames go through (default: all)"
    )
    rules: dict[str, Any] | None = Field(
        default=None,
        description="this camera's changes to the rules, over the top-level rules: section "
        "(e.g. {encroachment: {dwell_seconds: 60}})",
    )
    reconnect_initial_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    reconnect_max_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    open_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    read_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: list[str]) -> list[str]:
        return [check_time_range(s) for s in v]

    @field_validator("source")
    @classmethod
    def _check_source(cls, v: str) -> str:
        return check_source(v)

    @field_validator("location")
    @classmethod
    def _check_location(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-180 <= v[0] <= 180 and -90 <= v[1] <= 90):
            raise ValueError(f"location {list(v)} is not [longitude -180..180, latitude -90..90]")
        return v

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique per camera, got {names}")
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnect_max_seconds must be >= reconnect_initial_seconds")
        if self.credentials is not None:
            if scheme(self.source) in (None, "file"):
                raise ValueError("credentials: only a URL source (rtsp://, ...) takes a password")
            if urlsplit(self.source).password is not None:
                raise ValueError(
                    f"credentials: {redact(self.source)} holds a password too: take it out of the URL"
                )
        return self

    @property
    def is_live(self) -> bool:
        return is_live_source(self.source) if self.live is None else self.live


ROLE_NAME = r"^[a-z][a-z0-9_]{0,31}$"
IDENT = r"^[A-Za-z0-9_.\-]+$"


class ModelConfig(Strict):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=IDENT)] | None = Field(
        default=None, description="what cameras call this detector (default: its name, or its file's stem)"
    )
    name: str | None = Field(
        default=None,
        description="a model of the manifest (models/manifest.yaml), or a version made here (NAME@N)",
    )
    path: Path | None = Field(
        default=None,
        description="onnxruntime: an .onnx file; torch: a .torchscript export or a .pt checkpoint",
    )
    backend: Literal["onnxruntime", "torch", "scripted"] = "onnxruntime"
    imgsz: Annotated[int, Field(ge=32, le=2048, multiple_of=32)] | None = None
    conf_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.25
    iou_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.7
    max_det: Annotated[int, Field(ge=1, le=1000)] = 300
    threads: Annotated[int, Field(ge=0, le=256)] = 0
    half: bool | None = Field(default=None, description="torch backend: fp16 (default: on CUDA only)")
    tensorrt: bool = Field(default=False, description="onnxruntime on CUDA: the TensorRT provider, fp16")
    precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="a manifest model on onnxruntime: int8 runs its export by `safecity models quantize`",
    )
    scripted_detections: Path | None = Field(
        default=None, description="JSONL of detections (backend: scripted)"
    )
    roles: dict[Annotated[str, Field(pattern=ROLE_NAME)], list[str]] | None = Field(
        default=None,
        description="role -> this model's class names (default: the manifest's, else the common COCO names)",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.backend == "scripted":
            if self.scripted_detections is None:
                raise ValueError("backend 'scripted' needs scripted_detections (a JSONL file)")
            if self.name is not None or self.path is not None:
                raise ValueError("backend 'scripted' replays its file: give it no name or path")
        elif (self.name is None) == (self.path is None):
            raise ValueError(
                "give exactly one of model.name (from the manifest) or model.path (an .onnx file)"
            )
        if self.precision == "int8" and (self.name is None or self.backend != "onnxruntime"):
            raise ValueError(
                "precision int8 is for a manifest model on onnxruntime (for a file, give its .onnx as path)"
            )
        if self.name is not None and "@" in self.name and self.precision == "int8":
            raise ValueError(f"precision int8 is for a manifest model; {self.name} is a version you made")
        if self.id is None:  # a version (NAME@N) is still NAME to the cameras that name it
            self.id = self.name.split("@")[0] if self.name else (self.path.stem if self.path else "scripted")
        return self

    @property
    def key(self) -> str:
        assert self.id is not None  # set by the validator
        return self.id


class MergeConfig(Strict):
    """How the detections of several detectors on one frame become one object per real thing."""

    iou: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.4, description="boxes of two detectors that overlap this much (IoU) are one object"
    )
    lone_posture_conf: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.6,
        description="a posture model's person that no object detector saw is kept only at this confidence "
        "(a heap of clothes read as a fallen person is dropped; a lying person the other missed is kept)",
    )


class BatchingConfig(Strict):
    max_batch_size: Annotated[int, Field(ge=1, le=256)] = 8
    timeout_ms: Annotated[float, Field(gt=0, le=10_000)] = 40.0
    queue_frames: Annotated[int, Field(ge=1, le=10_000)] = 64
    workers: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None,
        description="batches in the model at once, each on its own thread (default: 2 on a CPU of 2 cores "
        "or more, each with half the cores, which beats one batch on every core; 1 on a GPU)",
    )


class TrackerConfig(Strict):
    high_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    low_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.1
    new_track_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.6
    match_iou: Annotated[float, Field(gt=0, lt=1)] = 0.2
    max_lost_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0

    @model_validator(mode="after")
    def _check(self) -> TrackerConfig:
        if self.low_threshold >= self.high_threshold:
            raise ValueError(
                f"low_threshold ({self.low_threshold}) must be below high_threshold ({self.high_threshold})"
            )
        return self


class RuleConfig(Strict):
    """What every rule has: hysteresis, lifecycle timing, severity and a schedule."""

    enabled: bool = True
    confirm_seconds: Annotated[float, Field(ge=0, le=600)] = Field(
        default=0.4, description="how long a condition holds without a break before an incident starts"
    )
    clear_seconds: Annotated[float, Field(gt=0, le=3600)] = 3.0
    update_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    cooldown_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    schedule: list[str] = Field(default_factory=list, description='e.g. ["08:00-22:00"]; empty: always')

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: list[str]) -> list[str]:
        return [check_time_range(s) for s in v]

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict):
            if "confirm_frames" in data:
                raise ValueError(
                    "confirm_frames was replaced by confirm_seconds (media seconds, the same at any "
                    "analytics_fps): at 5 fps, confirm_frames 3 is confirm_seconds 0.4"
                )
            if "fallen_aspect" in data:
                raise ValueError("fallen_aspect moved to rules.fallen_aspect (one setting for every rule)")
        return data


def _refuse_replaced(data: object, replaced: dict[str, str]) -> object:
    """A key that was replaced is an error naming its replacement (``replaced``: old key -> why)."""
    if isinstance(data, dict):
        for old, why in replaced.items():
            if old in data:
                raise ValueError(f"{old} was replaced: {why}")
    return data


class EncroachmentConfig(RuleConfig):
    roles: Annotated[list[Annotated[str, Field(pattern=ROLE_NAME)]], Field(min_length=1)] = [
        "person",
        "vehicle",
    ]
    dwell_seconds: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=30.0, description="how long something must stand in the zone before it is an incident"
    )
    stationary_sizes: Annotated[float, Field(gt=0, le=5)] = Field(
        default=0.3,
        description="standing: staying within this many of the object's own sizes (a person's height, "
        "a vehicle's length) of one place; someone walking, however slowly, leaves it",
    )
    stationary_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=2.0,
        description="for this long, before the object counts as standing (its dwell counts from then)",
    )

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: object) -> object:
        return _refuse_replaced(
            data,
            {
                "stationary_speed_px_s": "standing is judged in the object's own size, not in pixels: "
                "stationary_sizes (default 0.3 of its size) for stationary_seconds (default 2)",
            },
        )


class StrayAnimalConfig(RuleConfig):
    roles: Annotated[list[Annotated[str, Field(pattern=ROLE_NAME)]], Field(min_length=1)] = ["animal"]
    dwell_seconds: Annotated[float, Field(gt=0, le=86_400)] = 10.0
    severity: Literal["low", "medium", "high", "critical"] = "medium"


class AccidentConfig(RuleConfig):
    overlap_iou: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.05, description="boxes overlapping this much (IoU) are in contact"
    )
    window_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=2.0, description="how long before a stop a vehicle's motion and contacts are looked at"
    )
    moving_sizes: Annotated[float, Field(gt=0, le=50)] = Field(
        default=1.0,
        description="moving: going at least this many of its own sizes (a vehicle's length) in "
        "window_seconds before it stopped",
    )
    stopped_sizes: Annotated[float, Field(gt=0, le=5)] = Field(
        default=0.15, description="stopped: staying within this many of its own sizes of one place"
    )
    stop_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=0.4, description="for this long, before a vehicle (or a person down) counts as stopped"
    )
    stopped_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=2.0, description="a sharp stop in a carriageway: stopped this long after moving"
    )
    fallen_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=3.0, description="a person down and lying still in a carriageway this long"
    )
    severity: Literal["low", "medium", "high", "critical"] = "critical"
    confirm_seconds: Annotated[float, Field(ge=0, le=600)] = 0.2

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: object) -> object:
        return _refuse_replaced(
            data,
            {
                "moving_speed_px_s": "motion is judged in the vehicle's own size, not in pixels: "
                "moving_sizes (default 1.0: its own length in window_seconds)",
                "stopped_speed_px_s": "stopping is judged in the vehicle's own size, not in pixels: "
                "stopped_sizes (default 0.15 of its length) for stop_seconds (default 0.4)",
            },
        )


class AssaultConfig(RuleConfig):
    distance_heights: Annotated[float, Field(gt=0, le=20)] = 1.0
    relative_speed_heights_s: Annotated[float, Field(gt=0, le=100)] = 1.0
    sustain_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    down_seconds: Annotated[float, Field(gt=0, le=600)] = 3.0
    severity: Literal["low", "medium", "high", "critical"] = "high"


class TheftConfig(RuleConfig):
    confirm_seconds: Annotated[float, Field(ge=0, le=600)] = 0.2
    owner_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    owner_distance_heights: Annotated[float, Field(gt=0, le=20)] = 0.8
    release_distance_heights: Annotated[float, Field(gt=0, le=50)] = 2.5
    fast_speed_heights_s: Annotated[float, Field(gt=0, le=100)] = 1.5
    protected_seconds: Annotated[float, Field(gt=0, le=86_400)] = 5.0
    severity: Literal["low", "medium", "high", "critical"] = "high"


class RulesConfig(Strict):
    """One section per rule (the registry in ``analytics/rules`` pairs them), and what they share."""

    fallen_aspect: Annotated[float, Field(gt=0, le=10)] = Field(
        default=1.3,
        description="a person box this many times wider than tall is lying, where no posture model says",
    )
    encroachment: EncroachmentConfig = EncroachmentConfig()
    stray_animal: StrayAnimalConfig = StrayAnimalConfig()
    accident: AccidentConfig = AccidentConfig()
    assault: AssaultConfig = AssaultConfig()
    theft: TheftConfig = TheftConfig()


# Roles of common class names: for a model given by path with no ``roles`` (the manifest gives its
# models' roles). COCO's names, Darknet's spellings of them, and the fall model's.
DEFAULT_MODELS = ("yolov3-tiny-coco", "fall-yolov8")  # objects of 80 COCO classes, and people's posture

COMMON_CLASS_ROLES: dict[str, list[str]] = {
    "person": ["person", "Normal", "Fall"],
    "vehicle": ["car", "bus", "truck", "motorcycle", "motorbike", "bicycle"],  # Darknet's COCO says motorbike
    "two_wheeler": ["motorcycle", "motorbike", "bicycle"],
    "animal": ["cow", "dog", "horse", "sheep"],
    "bag": ["backpack", "handbag", "suitcase"],
    "fallen_person": ["Fall"],
}


_TCP_ENDPOINT = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]\s]+):(?P<port>\d{1,5})$")


def check_endpoint(v: str) -> str:
    """A ZeroMQ address to connect to: ``tcp://HOST:PORT`` (port 1-65535), ``ipc://PATH`` or
    ``inproc://NAME``; ValueError saying what is wrong otherwise."""
    if v.startswith("tcp://"):
        m = _TCP_ENDPOINT.fullmatch(v)  # ($ alone would let a trailing newline through)
        if m is None:
            raise ValueError(
                f"endpoint {v!r} is not tcp://HOST:PORT (a host and a port number are both needed)"
            )
        if m["host"] == "*":
            raise ValueError(f"endpoint {v!r}: '*' is for binding; give the sink's host name or address")
        if not 1 <= int(m["port"]) <= 65535:
            raise ValueError(f"endpoint {v!r}: port {int(m['port'])} is not in 1..65535")
        return v
    if v.startswith(("ipc://", "inproc://")):
        if not v.split("://", 1)[1]:
            raise ValueError(f"endpoint {v!r} has no path or name after '://'")
        if any(c.isspace() for c in v):
            raise ValueError(f"endpoint {v!r} has white space in it")
        return v
    raise ValueError(f"endpoint {v!r} is not a ZeroMQ address like tcp://host:port")


class SinkConfig(Strict):
    endpoint: str | list[str] = Field(
        default="tcp://127.0.0.1:5555",
        description="the sink, or a list of its replicas (one store behind them): this edge prefers them "
        "in an order of its own (by its id) and moves to the next when one is unreachable",
    )
    server_public_key: str | None = Field(
        default=None, description="the sink's Curve public key: 40 Z85 characters or its .key file"
    )
    client_secret_file: Path | None = Field(default=None, description="this edge's .key_secret certificate")
    insecure: bool = Field(default=False, description="send without Curve encryption and authentication")
    outbox: Path = Path("data/outbox.sqlite")
    snapshot_quality: Annotated[int, Field(ge=1, le=100)] = 85
    ack_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 2.0
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 256
    max_in_flight_mb: Annotated[float, Field(gt=0, le=4096)] = Field(
        default=64.0, description="the window's bound in MiB of events and inline snapshots"
    )
    drain_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0
    max_held_events: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=10_000,
        description="while the outbox cannot be written (a full disk): incident events held in memory; "
        "past this (or max_held_mb) the oldest are dropped, counted and logged",
    )
    max_held_mb: Annotated[float, Field(gt=0, le=65_536)] = 256.0
    snapshots: Literal["inline", "reference"] = Field(
        default="inline",
        description="inline: each snapshot travels with its event; reference: the sink fetches it later",
    )
    retention_hours: Annotated[float, Field(gt=0, le=24 * 365)] = Field(
        default=168.0, description="how long delivered events and their snapshots stay in the outbox"
    )
    failover_seconds: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = Field(
        default=5.0, description="with several sink replicas: how long one may be unreachable before the next"
    )
    stall_seconds: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = Field(
        default=30.0, description="... or acknowledge nothing while events wait (its store refusing them)"
    )
    failback_seconds: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] = Field(
        default=300.0, description="how long on another replica before trying the preferred one again"
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            return check_endpoint(v)
        if not 1 <= len(v) <= 64:
            raise ValueError(f"expected 1 to 64 sink replicas, got {len(v)}")
        checked = [check_endpoint(e) for e in v]
        if len({e.lower() if e.startswith("tcp://") else e for e in checked}) != len(checked):
            raise ValueError("a sink replica is listed twice")
        return checked


class SwapConfig(Strict):
    """A model swapped in live (the control interface): what it must show before, and while, it runs."""

    grace_seconds: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = Field(
        default=60.0, description="probation after a swap: an error or sustained slowness rolls it back"
    )
    max_latency_ratio: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = Field(
        default=1.5,
        description="its time per frame against the model it replaces, at the check and on probation",
    )
    slow_batches: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=10, description="batches in a row over the latency bound, on probation, that roll it back"
    )
    check_frames: Annotated[int, Field(ge=1, le=64)] = Field(
        default=8, description="recent frames of the cameras its check runs on (agreement, warm-up, latency)"
    )


class ClipsConfig(Strict):
    """Evidence clips: each camera keeps its recent packets; an incident's clip is remuxed from them."""

    enabled: bool = Field(default=True, description="keep each camera's packets and send a clip per incident")
    pre_roll_seconds: Annotated[float, Field(ge=0, le=120, allow_inf_nan=False)] = Field(
        default=5.0, description="video before the incident's start (from the keyframe at or before it)"
    )
    post_roll_seconds: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] = Field(
        default=20.0, description="video after the incident's start"
    )
    buffer_max_mb: Annotated[float, Field(gt=0, le=4096, allow_inf_nan=False)] = Field(
        default=64.0, description="each camera's packets kept in memory, at most (MiB)"
    )
    store_max_mb: Annotated[float, Field(gt=0, le=10_000_000, allow_inf_nan=False)] = Field(
        default=4096.0, description="clips kept on disk beside the outbox, at most (MiB); the oldest go first"
    )

    @property
    def buffer_seconds(self) -> float:
        """How far back each camera's ring reaches: the clip's span and a long GOP's worth."""
        return self.pre_roll_seconds + self.post_roll_seconds + 15.0


class SourcesConfig(Strict):
    """What camera sources a control client (``--control``) may give: cameras added or changed
    through it, never those of the config file itself (the operator's)."""

    roots: list[Path] = Field(
        default_factory=list,
        description="folders whose files (recordings) a control client may name as a source; default: none",
    )
    secrets: list[Path] = Field(
        default_factory=list,
        description="folders whose files a control client may name as a camera's credentials.password_file "
        "(a Secret mount); default: none, and a client may never name an environment variable",
    )
    schemes: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9+.\-]{0,15}$")]] = Field(
        default_factory=lambda: ["rtsp", "rtsps", "rtmp", "rtmps", "srt"],
        description="URL schemes a control client may give (camera streams; http, ftp, file and the "
        "listening udp/tcp/rtp are left out unless named here)",
    )


class Config(Strict):
    edge_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")] = "edge-1"
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"
    decoder: Literal["auto", "pyav", "nvdec"] = Field(
        default="auto", description="auto: NVDEC when the device is a GPU and PyNvVideoCodec works, else PyAV"
    )
    cameras: Annotated[list[CameraConfig], Field(min_length=1, max_length=2048)]
    model: ModelConfig | None = Field(default=None, description="one detector: short for models: [...]")
    models: Annotated[list[ModelConfig], Field(min_length=1, max_length=16)] = Field(
        default_factory=lambda: [ModelConfig(name=n) for n in DEFAULT_MODELS],
        description="the detectors every batch goes through; their detections of one object are merged",
    )
    merge: MergeConfig = MergeConfig()
    filters: Filters = Field(
        default_factory=dict,
        description="role or class -> what its objects must be like for the rules, on every camera "
        "(a camera's and a zone's filters add to these)",
    )
    batching: BatchingConfig = BatchingConfig()
    tracker: TrackerConfig = TrackerConfig()
    rules: RulesConfig = RulesConfig()
    sink: SinkConfig = SinkConfig()
    clips: ClipsConfig = ClipsConfig()
    swap: SwapConfig = SwapConfig()
    sources: SourcesConfig = SourcesConfig()
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    duration_seconds: Annotated[float, Field(gt=0)] | None = None
    status_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _one_way_to_say_models(cls, data: object) -> object:
        if isinstance(data, dict):
            if "roles" in data:
                raise ValueError(
                    "roles moved into each model: models: [{name: ..., roles: {ROLE: [CLASS, ...]}}] "
                    "(the manifest gives the roles of its models)"
                )
            if data.get("model") is not None and data.get("models") is not None:
                raise ValueError("give model (one detector) or models (a list), not both")
            if data.get("model") is not None:
                data = {**data, "models": [data["model"]], "model": None}
        return data

    @model_validator(mode="after")
    def _check(self) -> Config:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        model_ids = [m.key for m in self.models]
        dupes = sorted({i for i in model_ids if model_ids.count(i) > 1})
        if dupes:
            raise ValueError(f"model ids must be unique, repeated: {dupes} (give each an id)")
        scripted = [m.key for m in self.models if m.backend == "scripted"]
        if scripted and len(self.models) > 1:
            raise ValueError(f"model {scripted[0]!r}: a scripted detector runs alone, not beside others")
        for cam in self.cameras:
            unknown = [m for m in cam.models or [] if m not in model_ids]
            if unknown:
                raise ValueError(
                    f"camera {cam.id}: models names {unknown[0]!r}, expected some of {model_ids}"
                )
        for cam in self.cameras:
            if cam.rules:
                self.camera_rules(cam)  # raises naming the camera and the field
            if cam.filters:
                self.camera_filters(cam)  # the camera's fields over the top-level ones: still a filter
        t = self.tracker
        for m in self.models:
            if m.backend != "scripted" and m.conf_threshold >= t.high_threshold:
                raise ValueError(
                    f"model {m.key}: conf_threshold {m.conf_threshold} is not below tracker.high_threshold "
                    f"{t.high_threshold}: the tracker's second association (detections between "
                    f"low_threshold {t.low_threshold} and high_threshold, which keep tracks through "
                    "occlusion) would never see one; lower the model's threshold or raise the tracker's"
                )
        return self

    def camera_rules(self, cam: CameraConfig) -> RulesConfig:
        """The rules a camera runs: the top-level ``rules:`` with the camera's ``rules`` over them."""
        if not cam.rules:
            return self.rules
        merged: dict[str, Any] = self.rules.model_dump(exclude_unset=True)
        for key, value in cam.rules.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        try:
            return RulesConfig.model_validate(merged)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"camera {cam.id}: rules.{where}: {msg}") from None

    def camera_filters(self, cam: CameraConfig) -> dict[str, ObjectFilter]:
        """The filters a camera's rules apply: the top-level ``filters`` with the camera's own fields
        over them, per role or class."""
        out = dict(self.filters)
        for key, f in cam.filters.items():
            base = out.get(key)
            if base is None:
                out[key] = f
                continue
            try:
                out[key] = ObjectFilter.model_validate(
                    {**base.model_dump(exclude_unset=True), **f.model_dump(exclude_unset=True)}
                )
            except ValidationError as err:
                msg = err.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(
                    f"camera {cam.id}: filters.{key} over the top-level filters.{key}: {msg}"
                ) from None
        return out

    def camera_models(self, cam: CameraConfig) -> list[str]:
        """The ids of the detectors that run on a camera's frames."""
        return list(cam.models) if cam.models else [m.key for m in self.models]


def _format_error(err: ValidationError, source: str, *, one_model: bool = False) -> str:
    """``one_model``: the config said ``model:`` (the shorthand), so its errors say ``model.``."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    if one_model and loc.startswith("models.0"):
        loc = "model" + loc.removeprefix("models.0")
    value = first.get("input")
    shown = shown_source(repr(value)) if not isinstance(value, dict) else "{...}"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    msg = redact(first["msg"].removeprefix("Value error, "))
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: got {shown}: {msg}{more}"


def parse_config(data: object, *, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        one_model = data.get("model") is not None and data.get("models") is None
        raise ConfigError(_format_error(err, source, one_model=one_model)) from None


def read_yaml(path: Path, option: str = "") -> Any:
    """A YAML file's content; ConfigError naming the file (after ``option``, the flag that gave it)
    when it cannot be read or is not YAML. libyaml's loader where there is one: inventories are big."""
    where = f"{option} {path}".strip()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {str(err).splitlines()[0]}") from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    data = read_yaml(p)
    cfg = parse_config(data, source=str(p))
    # relative paths in a config are relative to the config file
    base = p.resolve().parent
    for cam in cfg.cameras:
        if "://" not in cam.source and not Path(cam.source).is_absolute():
            cam.source = str(base / cam.source)
        if cam.credentials is not None and cam.credentials.password_file is not None:
            if not cam.credentials.password_file.is_absolute():
                cam.credentials.password_file = base / cam.credentials.password_file
    cfg.sources.roots = [r if r.is_absolute() else base / r for r in cfg.sources.roots]
    cfg.sources.secrets = [r if r.is_absolute() else base / r for r in cfg.sources.secrets]
    for m in cfg.models:
        if m.path is not None and not m.path.is_absolute():
            m.path = base / m.path
        if m.scripted_detections is not None and not m.scripted_detections.is_absolute():
            m.scripted_detections = base / m.scripted_detections
    return cfg

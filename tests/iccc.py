"""Helpers for the ICCC-side tests: an edge (real outbox, real sender with heartbeats) that raises
incidents with real JPEG snapshots, and an HTTP client for the console with its cookies."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.events.heartbeat import Beats
from pipeline.events.outbox import Outbox
from pipeline.events.schema import build_event
from pipeline.events.transport import Sender
from pipeline.types import Incident, TrackedObject


def jpeg_of(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) RGB frame as the edge encodes its snapshots."""
    import torch
    from torchvision.io import encode_jpeg

    return bytes(
        encode_jpeg(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1), quality=85).numpy()
    )


def video_frame(path: Path, at_s: float) -> np.ndarray:
    """The RGB frame of a video at ``at_s`` seconds."""
    import av

    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            if frame.time is not None and frame.time >= at_s:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} is shorter than {at_s} s")


def jpeg(seed: int, w: int = 320, h: int = 180) -> bytes:
    """A real JPEG, encoded as the edge encodes its snapshots: a gradient with a box, one per seed."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = (seed * 37) % 255
    x = 20 + (seed * 13) % (w - 80)
    img[60:120, x : x + 40] = (255, 220, 0)
    return jpeg_of(img)


class Edge:
    """An edge of the tests: incidents go through its real outbox and sender to the sink."""

    def __init__(
        self, tmp: Path, endpoint: str, source: str = "edge-1", cameras: tuple[str, ...] = ("cam-1",)
    ):
        self.source = source
        self.outbox_path = tmp / f"{source}.outbox.sqlite"
        self.outbox = Outbox(self.outbox_path)
        self.health = {
            c: {
                "state": "up",
                "decoded": 0,
                "analysed": 0,
                "dropped": 0,
                "incidents": 0,
                "behind": False,
                "last_frame_at": time.monotonic(),
            }
            for c in cameras
        }
        self.sender = Sender(
            outbox_path=self.outbox_path,
            endpoint=endpoint,
            metrics=None,
            source=source,
            heartbeat=Beats(source, lambda: {k: dict(v) for k, v in self.health.items()}, lambda: 0, 0.5),
            heartbeat_s=0.5,
        )
        self.sender.start()
        self.n = 0

    def incident(
        self,
        kind: str = "encroachment",
        camera: str = "cam-1",
        *,
        status: str = "start",
        incident_id: str | None = None,
        severity: str = "medium",
        snapshot: bool = True,
        frame: np.ndarray | None = None,
        zone: tuple[str, list[list[float]]] = ("bay", [[0, 0], [1, 0], [1, 1]]),
        objects: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
            ("car", (10.0, 20.0, 60.0, 80.0)),
        ),
        original: bool = False,
    ) -> str:
        """One incident step. With ``frame`` (RGB) the snapshot is that frame annotated as the edge
        does it (``zone``: its name and pixel polygon; ``objects``: label and box); else a made-up JPEG.
        ``original``: the frame itself (nothing drawn) is kept too, for the sink to fetch, as the edge
        does for a start."""
        from pipeline.analytics.zones import Zone
        from pipeline.config import ZoneConfig
        from pipeline.events.annotate import annotate

        self.n += 1
        iid = incident_id or f"{self.source}-{camera}-{kind}-{self.n}"
        now = time.time()
        inc = Incident(
            incident_id=iid,
            type=kind,
            status=status,
            severity=severity,
            camera_id=camera,
            zone=zone[0],
            started_at=now - 5.0,
            emitted_at=now,
            ended_at=now if status == "end" else None,
            objects=[
                TrackedObject(track_id=7 + i, label=label, confidence=0.91 - 0.05 * i, bbox_xyxy=box)
                for i, (label, box) in enumerate(objects)
            ],
            confidence=0.91,
        )
        h, w = (180, 320) if frame is None else frame.shape[:2]
        snap = None
        if frame is not None:
            zones = [Zone(ZoneConfig(name=zone[0], polygon=zone[1]))]
            snap = jpeg_of(annotate(frame, inc, zones, wall_time=now))
        elif snapshot:
            snap = jpeg(self.n)
        event = build_event(
            inc,
            source=self.source,
            location=(72.8777, 19.076),
            frame_w=w,
            frame_h=h,
            model_name="yolov3-tiny-coco",
            model_version="1",
            wall_offset=0.0,
            snapshot_sha256=hashlib.sha256(snap).hexdigest() if snap else None,
            snapshot_bytes=len(snap) if snap else 0,
            frame_jpeg_sha256=hashlib.sha256(jpeg_of(frame)).hexdigest()
            if original and frame is not None
            else None,
        )
        self.outbox.append_many([(event, snap, jpeg_of(frame) if original and frame is not None else None)])
        self.sender.notify()
        return iid

    def close(self) -> None:
        self.sender.stop(drain_s=2)
        self.outbox.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """The console over HTTP as a browser would use it: cookies kept, redirects not followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        self.csrf = ""

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        data = None
        h = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.headers, r.read()  # (case-insensitive, as HTTP says)
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def login(self, name: str, password: str) -> int:
        status, _, page = self.request("GET", "/login")
        assert status == 200
        token = re.search(rb'name="csrf" value="([^"]+)"', page)
        assert token
        status, headers, _ = self.request(
            "POST", "/login", form={"csrf": token.group(1).decode(), "name": name, "password": password}
        )
        if status == 303:
            _, _, home = self.request("GET", "/")
            m = re.search(rb'<meta name="csrf" content="([^"]+)"', home)
            assert m
            self.csrf = m.group(1).decode()
        return status

    def act(self, source: str, iid: str, action: str, **extra: str) -> tuple[int, Any]:
        path = f"/api/incidents/{urllib.parse.quote(source, safe='')}/{urllib.parse.quote(iid, safe='')}/act"
        status, _, raw = self.request(
            "POST", path, body={"action": action, **extra}, headers={"X-CSRF-Token": self.csrf}
        )
        return status, json.loads(raw or b"null")

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, raw = self.request("GET", path)
        return status, json.loads(raw) if raw else None


PASSWORD = "correct horse battery"


class Iccc:
    """A real sink (thread) with its console on a free port, and users admin / oper / oper2 / viewer
    (all with PASSWORD)."""

    def __init__(self, tmp: Path, port: int, *, store: str | None = None, **console_kw: Any) -> None:
        """``store``: a PostgreSQL URL (default: a SQLite file in ``tmp``)."""
        from pipeline.console.server import Console

        from .conftest import SinkThread

        self.db: Path | str = store or tmp / "sink.sqlite"
        clips = {"clips": tmp / "clips"} if store else {}
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.sink = SinkThread(port, self.db, **clips)
        self.console = Console(self.db, tmp / "console.sqlite", "127.0.0.1:0", **clips, **console_kw)
        self.console.start()
        for name, role in (
            ("admin", "admin"),
            ("oper", "operator"),
            ("oper2", "operator"),
            ("viewer", "viewer"),
        ):
            self.console.users.add(name, role, PASSWORD, by="test")
        self.url = self.console.url
        self.edges: list[Edge] = []

    def edge(self, tmp: Path, source: str = "edge-1", cameras: tuple[str, ...] = ("cam-1",)) -> Edge:
        e = Edge(tmp, self.endpoint, source, cameras)
        self.edges.append(e)
        return e

    def client(self, name: str | None = None) -> Client:
        c = Client(self.url)
        if name is not None:
            assert c.login(name, PASSWORD) == 303
        return c

    def close(self) -> None:
        for e in self.edges:
            e.close()
        self.console.close()
        self.sink.close()

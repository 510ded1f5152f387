"""The edges whose control interface the console may use (``--edges FILE``), to load a camera's
zones into the editor and push edited ones back::

    edges:
      - {id: edge-1, control: http://10.0.4.11:8089, token_file: /etc/safecity/edge-1.token}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ..config import read_yaml
from ..control import read_token, request
from ..errors import ConfigError


@dataclass(frozen=True)
class EdgeControl:
    id: str
    url: str
    token: str

    def camera(self, camera_id: str) -> dict[str, Any] | None:
        """The camera's config as the edge runs it (None: no such camera there)."""
        status, body = request(f"{self.url}/cameras", "GET", token=self.token, timeout_s=10)
        if status != 200:
            raise ConfigError(f"edge {self.id}: GET /cameras answered {status}: {body}")
        for cam in body.get("cameras", []):
            if cam.get("id") == camera_id:
                return dict(cam.get("config") or {})
        return None

    def patch_camera(self, camera_id: str, patch: dict[str, Any]) -> tuple[int, Any]:
        return request(
            f"{self.url}/cameras/{quote(camera_id, safe='')}", "PATCH", patch, token=self.token, timeout_s=30
        )


def load_edges(path: Path) -> dict[str, EdgeControl]:
    doc = read_yaml(path, "--edges")
    items = (doc or {}).get("edges") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"--edges {path}: expected 'edges:' with a list of {{id, control, token_file}}")
    out: dict[str, EdgeControl] = {}
    for i, item in enumerate(items):
        where = f"--edges {path}: edges.{i}"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise ConfigError(f"{where}: expected an object with an 'id'")
        url = str(item.get("control", "")).rstrip("/")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigError(f"{where}.control: expected the edge's control URL, http://HOST:PORT")
        token_file = item.get("token_file")
        if not isinstance(token_file, str) or not token_file:
            raise ConfigError(
                f"{where}.token_file: expected the edge's control token file (every edge needs one)"
            )
        out[item["id"]] = EdgeControl(item["id"], url, read_token(Path(token_file), f"{where}.token_file"))
    return out

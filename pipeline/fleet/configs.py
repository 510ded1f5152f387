"""One edge config per server from a plan: the template's settings (models, sink, batching ...) with
``edge_id`` and the server's cameras filled in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError
from .inventory import Inventory, Servers
from .plan import Plan

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 400,000 cameras in seconds


def load_template(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"--template {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--template {path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--template {path}: expected the mapping of an edge config")
    if "cameras" in doc or "edge_id" in doc:
        raise ConfigError(f"--template {path}: leave out edge_id and cameras (the plan fills them in)")
    return doc


def write_configs(out: Path, inv: Inventory, servers: Servers, p: Plan, template: dict[str, Any]) -> int:
    """``out/SERVER.yaml`` for every server (one with no camera too); how many were written."""
    out.mkdir(parents=True, exist_ok=True)
    order = np.argsort(p.server, kind="stable")
    bounds = np.searchsorted(p.server[order], np.arange(len(servers) + 1))
    settings = yaml.dump(template, Dumper=_Dumper, sort_keys=False, width=120) if template else ""
    for j, sid in enumerate(servers.server_id):
        cams = order[bounds[j] : bounds[j + 1]]
        # one camera a line, in YAML's flow style (strings JSON-quoted, which YAML reads: an id such as
        # 0123 or "true" stays a string): fast to write for 400,000 cameras, easy to read and to diff
        lines = [
            f"  - {{id: {json.dumps(inv.camera_id[i])}, source: {json.dumps(inv.source(int(i)))}, "
            f"analytics_fps: {float(inv.analytics_fps[i]):g}, "
            f"location: [{inv.lon[i]:.6f}, {inv.lat[i]:.6f}]}}"
            for i in cams
        ]
        head = (
            f"# written by `safecity fleet plan`: server {sid} of site {servers.site[j]}, "
            f"{len(lines)} cameras, {p.load[j]:.1f} of {servers.capacity[j]:g} camera-equivalents\n"
        )
        body = f"edge_id: {json.dumps(sid)}\ncameras:" + ("\n" + "\n".join(lines) if lines else " []")
        (out / f"{sid}.yaml").write_text(head + settings + body + "\n")
    return len(servers)

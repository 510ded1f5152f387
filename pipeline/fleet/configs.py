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


def _camera_lines(inv: Inventory, cams: np.ndarray) -> list[str]:
    # one camera a line, in YAML's flow style (strings JSON-quoted, which YAML reads: an id such as
    # 0123 or "true" stays a string): fast to write for 400,000 cameras, easy to read and to diff
    return [
        f"  - {{id: {json.dumps(inv.camera_id[i])}, source: {json.dumps(inv.source(int(i)))}, "
        f"analytics_fps: {float(inv.analytics_fps[i]):g}, "
        f"location: [{inv.lon[i]:.6f}, {inv.lat[i]:.6f}]}}"
        for i in cams
    ]


def _config(sid: str, site: str, load: float, capacity: float, settings: str, lines: list[str]) -> str:
    head = (
        f"# written by `safecity fleet plan`: server {sid} of site {site}, "
        f"{len(lines)} cameras, {load:.1f} of {capacity:g} camera-equivalents\n"
    )
    body = f"edge_id: {json.dumps(sid)}\ncameras:" + ("\n" + "\n".join(lines) if lines else " []")
    return head + settings + body + "\n"


def _by_server(p: Plan, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(p.server, kind="stable")
    return order, np.searchsorted(p.server[order], np.arange(n + 1))


def write_configs(out: Path, inv: Inventory, servers: Servers, p: Plan, template: dict[str, Any]) -> int:
    """``out/SERVER.yaml`` for every server (one with no camera too); how many were written."""
    out.mkdir(parents=True, exist_ok=True)
    order, bounds = _by_server(p, len(servers))
    settings = yaml.dump(template, Dumper=_Dumper, sort_keys=False, width=120) if template else ""
    for j, sid in enumerate(servers.server_id):
        lines = _camera_lines(inv, order[bounds[j] : bounds[j + 1]])
        text = _config(sid, servers.site[j], p.load[j], servers.capacity[j], settings, lines)
        (out / f"{sid}.yaml").write_text(text)
    return len(servers)


CONFIGMAP_BYTES = 900_000  # under Kubernetes' 1 MiB a ConfigMap


def write_kubernetes(
    out: Path, site: str, inv: Inventory, servers: Servers, p: Plan, template: dict[str, Any]
) -> int:
    """The site's plan as a Kustomize resource for ``deploy/kubernetes`` overlays: ConfigMaps
    ``edge-plan-K`` holding ``edge-N.yaml`` (the config of the site's N-th server, for pod edge-N of
    the StatefulSet), and ``statefulset.yaml``, the patch that sets the replicas and mounts them.
    In each config the outbox is on the pod's volume and the Curve key is the pod's own. Returns the
    number of pods."""
    members = [j for j, s in enumerate(servers.site) if s == site]
    if not members:
        raise ConfigError(
            f"--site {site}: no server of the plan is in it (sites: {', '.join(sorted(set(servers.site)))})"
        )
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("configmap-*.yaml"):
        old.unlink()
    order, bounds = _by_server(p, len(servers))
    maps: list[dict[str, str]] = [{}]
    size = 0
    for n, j in enumerate(members):
        pod = f"edge-{n}"
        tpl = {
            **template,
            "sink": {**(template.get("sink") or {}), "outbox": "/var/lib/safecity/outbox.sqlite"},
        }
        if not tpl["sink"].get("insecure"):
            tpl["sink"] |= {"server_public_key": "/etc/safecity/keys/sink.key",
                            "client_secret_file": f"/etc/safecity/keys/{pod}.key_secret"}  # fmt: skip
        settings = yaml.dump(tpl, Dumper=_Dumper, sort_keys=False, width=120)
        lines = _camera_lines(inv, order[bounds[j] : bounds[j + 1]])
        text = _config(servers.server_id[j], site, p.load[j], servers.capacity[j], settings, lines)
        if size + len(text) > CONFIGMAP_BYTES and maps[-1]:
            maps.append({})
            size = 0
        maps[-1][f"{pod}.yaml"] = text
        size += len(text)
    names = []
    for k, data in enumerate(maps):
        name = f"edge-plan-{k}"
        names.append(name)
        meta = {"name": name, "labels": {"safecity/site": site}}
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        (out / f"configmap-{k}.yaml").write_text(
            yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1 << 20)
        )
    patch = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "edge"},
        "spec": {
            "replicas": len(members),
            "template": {"spec": {"volumes": [
                {"name": "plan", "projected": {"sources": [{"configMap": {"name": n}} for n in names]}}
            ]}},
        },
    }  # fmt: skip
    head = f"# written by `safecity fleet plan --kubernetes`: site {site}, {len(members)} servers\n"
    (out / "statefulset.yaml").write_text(head + yaml.dump(patch, Dumper=_Dumper, sort_keys=False))
    kustomization = {"resources": [f"configmap-{k}.yaml" for k in range(len(maps))]}
    (out / "kustomization.yaml").write_text(head + yaml.dump(kustomization, Dumper=_Dumper, sort_keys=False))
    return len(members)

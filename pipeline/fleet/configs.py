"""One edge config per server from a plan: the template's settings (models, sink, batching ...) with
``edge_id`` and the server's cameras filled in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import load_config, parse_config, read_yaml
from ..errors import ConfigError
from .inventory import Inventory, Servers
from .ordinals import FILE as ORDINALS
from .ordinals import assign, ordinals_csv, read_ordinals
from .plan import Plan

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 400,000 cameras in seconds


def load_template(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    doc = read_yaml(path, "--template")
    if not isinstance(doc, dict):
        raise ConfigError(f"--template {path}: expected the mapping of an edge config")
    if "cameras" in doc or "edge_id" in doc:
        raise ConfigError(f"--template {path}: leave out edge_id and cameras (the plan fills them in)")
    # checked as an edge reads it (with a stand-in id and camera): a mistake is named now, not by every
    # pod of the fleet at its start
    probe = {"edge_id": "template-check", "cameras": [{"id": "template-check", "source": "rtsp://check/x"}]}
    cfg = parse_config({**doc, **probe}, source=f"--template {path}")
    if isinstance(doc.get("sink"), dict) and "insecure" in doc["sink"]:
        doc["sink"] = {**doc["sink"], "insecure": cfg.sink.insecure}  # as the edge reads it ("no": false)
    return doc


MAX_CAMERAS = 2048  # what one edge config takes (config.py)
CONFIGMAP_BYTES = 900_000  # under Kubernetes' 1 MiB a ConfigMap (apply them with --server-side)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # (YAML reads no surrogate-pair escapes)


def _camera_lines(inv: Inventory, cams: np.ndarray) -> list[str]:
    # one camera a line, in YAML's flow style (strings JSON-quoted, which YAML reads: an id such as
    # 0123 or "true" stays a string): fast to write for 400,000 cameras, easy to read and to diff
    return [
        f"  - {{id: {json.dumps(inv.camera_id[i])}, source: {_quoted(inv.source(int(i)))}, "
        f"analytics_fps: {float(inv.analytics_fps[i]):g}, "
        f"location: [{inv.lon[i]:.6f}, {inv.lat[i]:.6f}]{_credentials(inv, int(i))}}}"
        for i in cams
    ]


def _credentials(inv: Inventory, i: int) -> str:
    where = inv.secret_file(i)
    return f", credentials: {{password_file: {_quoted(where)}}}" if where else ""


def _config(sid: str, site: str, load: float, capacity: float, settings: str, lines: list[str]) -> str:
    head = (
        f"# written by `safecity fleet plan`: server {sid} of site {site}, "
        f"{len(lines)} cameras, {load:.1f} of {capacity:g} camera-equivalents\n"
    )
    return head + settings + f"edge_id: {json.dumps(sid)}\ncameras:\n" + "\n".join(lines) + "\n"


def _configs(members: list[int], inv: Inventory, servers: Servers, p: Plan, settings: list[str]) -> list[str]:
    """The config text of each of ``members`` (server indexes; ``settings`` theirs); ConfigError for
    a server with no camera (an edge needs one) or more than one edge config takes."""
    order = np.argsort(p.server, kind="stable")
    bounds = np.searchsorted(p.server[order], np.arange(len(servers) + 1))
    texts = []
    for j, text in zip(members, settings, strict=True):
        cams = order[bounds[j] : bounds[j + 1]]
        sid = servers.server_id[j]
        if not len(cams) or len(cams) > MAX_CAMERAS:
            raise ConfigError(
                f"server {sid} of site {servers.site[j]} gets {len(cams)} cameras; an edge runs 1 to "
                f"{MAX_CAMERAS}: {'remove it or lower the others' if not len(cams) else 'lower its'} capacity"
            )
        texts.append(
            _config(sid, servers.site[j], p.load[j], servers.capacity[j], text, _camera_lines(inv, cams))
        )
    _read_back({servers.server_id[j]: t for j, t in zip(members, texts, strict=True)})
    return texts


def _read_back(texts: dict[str, str]) -> None:
    """Every config as its edge will read it (``load_config``, from a file): one it would refuse is a
    ConfigError naming its server, and nothing of the plan is written."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="safecity-plan-") as tmp:
        for sid, text in texts.items():
            path = Path(tmp) / f"{sid}.yaml"
            path.write_text(text, encoding="utf-8")
            try:
                load_config(path)
            except ConfigError as err:
                why = str(err).replace(str(path), f"{sid}.yaml")
                raise ConfigError(f"server {sid}: its edge would refuse the planned config: {why}") from None


def _replace(out: Path, files: dict[str, str], stale: str) -> None:
    """Write ``files`` (name -> text) into ``out`` and remove the other files matching ``stale`` there
    (of servers no longer planned): everything is built before anything is written."""
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            if (out / name).is_dir():
                raise IsADirectoryError(0, "a folder is in the way", str(out / name))
        for name, text in files.items():  # every file whole beside its place first ...
            tmp = out / f".{name}.tmp"
            written.append(tmp)
            tmp.write_text(text, encoding="utf-8")
        for name in files:  # ... then each moved into place (a rename: never half a file)
            (out / f".{name}.tmp").replace(out / name)
        written.clear()
        for old in out.glob(stale):
            if old.name not in files:
                old.unlink()
    except OSError as err:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        where = err.filename or out
        raise ConfigError(f"cannot write the plan into {out}: {where}: {err.strerror or err}") from None


def _settings(template: dict[str, Any]) -> str:
    return (
        yaml.dump(template, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
        if template
        else ""
    )


def write_configs(out: Path, inv: Inventory, servers: Servers, p: Plan, template: dict[str, Any]) -> int:
    """``out/SERVER.yaml`` for every server; how many were written."""
    members = list(range(len(servers)))
    texts = _configs(members, inv, servers, p, [_settings(template)] * len(members))
    _replace(out, {f"{servers.server_id[j]}.yaml": t for j, t in zip(members, texts, strict=True)}, "*.yaml")
    return len(members)


def write_kubernetes(
    out: Path, site: str, inv: Inventory, servers: Servers, p: Plan, template: dict[str, Any]
) -> tuple[int, list[str]]:
    """The site's plan as a Kustomize resource for ``deploy/kubernetes`` overlays: ConfigMaps
    ``edge-plan-K`` holding ``edge-N.yaml`` (the config of the server pod edge-N of the StatefulSet
    runs: ``ordinals.py``, recorded in ``ordinals.csv``), and ``statefulset.yaml``, the patch that sets
    the replicas, mounts them and carries the plan's digest (a new plan rolls the pods onto it). In each
    config the outbox is on the pod's volume and the Curve key is its server's own
    (``SERVER.key_secret``). Returns the number of pods and the servers that changed pod."""
    ids = {servers.server_id[j]: j for j, s in enumerate(servers.site) if s == site}
    if not ids:
        known = ", ".join(sorted(set(servers.site)))
        raise ConfigError(f"--site {site}: no server of the plan is in it (sites: {known})")
    by_ordinal, moved = assign(list(ids), read_ordinals(out))
    members = [ids[sid] for sid in by_ordinal]
    settings = []
    for sid in by_ordinal:
        tpl = {
            **template,
            "sink": {**(template.get("sink") or {}), "outbox": "/var/lib/safecity/outbox.sqlite"},
        }
        if not tpl["sink"].get("insecure"):
            tpl["sink"] |= {"server_public_key": "/etc/safecity/keys/sink.key",
                            "client_secret_file": f"/etc/safecity/keys/{sid}.key_secret"}  # fmt: skip
        settings.append(_settings(tpl))
    texts = _configs(members, inv, servers, p, settings)
    maps: list[dict[str, str]] = [{}]
    size = 0
    for n, text in enumerate(texts):
        if len(text.encode()) > CONFIGMAP_BYTES:
            raise ConfigError(
                f"server {servers.server_id[members[n]]}: its config is over {CONFIGMAP_BYTES} bytes"
            )
        if size + len(text.encode()) > CONFIGMAP_BYTES and maps[-1]:
            maps.append({})
            size = 0
        maps[-1][f"edge-{n}.yaml"] = text
        size += len(text.encode())
    digest = hashlib.sha256("".join(texts).encode()).hexdigest()[:16]
    files = {}
    for k, data in enumerate(maps):
        meta = {"name": f"edge-plan-{k}", "labels": {"safecity/site": site}}
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        files[f"configmap-{k}.yaml"] = yaml.dump(
            doc, Dumper=_Dumper, sort_keys=False, width=1 << 20, allow_unicode=True
        )
    patch = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "edge"},
        "spec": {
            "replicas": len(members),
            "template": {
                "metadata": {"annotations": {"safecity/plan": digest}},
                "spec": {"volumes": [{"name": "plan", "projected": {
                    "sources": [{"configMap": {"name": f"edge-plan-{k}"}} for k in range(len(maps))]}}]},
            },
        },
    }  # fmt: skip
    head = (
        f"# written by `safecity fleet plan --kubernetes`: site {site}, {len(members)} servers, "
        f"plan {digest}\n"
    )
    files["statefulset.yaml"] = head + yaml.dump(patch, Dumper=_Dumper, sort_keys=False)
    files["kustomization.yaml"] = head + yaml.dump(
        {"resources": [f"configmap-{k}.yaml" for k in range(len(maps))]}, Dumper=_Dumper, sort_keys=False
    )
    files[ORDINALS] = ordinals_csv(by_ordinal)
    _replace(out, files, "configmap-*.yaml")
    return len(members), moved

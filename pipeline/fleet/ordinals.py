"""Which pod of a site's StatefulSet runs which server, kept from one plan to the next.

Pod ``edge-N`` holds its outbox on its own volume; if a server left the middle of the list and every
later server moved up a pod, each of those pods would start on another server's outbox and cameras.
So a server keeps its ordinal while it stays in the site. A StatefulSet's ordinals are 0..n-1 with no
gaps: new servers fill the ordinals that servers gone have freed, lowest first, then the end; when
servers are gone and none come, the servers above the new end move down into the gaps (one pod
changes server for each gap, instead of every pod after it). ``ordinals.csv`` in the plan's folder
records the assignment for the next plan.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import yaml

from ..errors import ConfigError

FILE = "ordinals.csv"
_ORDINAL = re.compile(r"[0-9]{1,6}")
_POD = re.compile(r"edge-([0-9]{1,6})\.yaml")


def read_ordinals(folder: Path) -> dict[str, int]:
    """The previous plan's server -> ordinal: from ``ordinals.csv``, else (lost, or empty) from the
    previous plan's ConfigMaps still in the folder; empty for a first plan. ConfigError for a file
    that cannot be trusted: a reshuffle of pods is never the quiet outcome of a bad file."""
    path = folder / FILE
    rows: list[list[str]] = []
    if path.is_file():
        try:
            rows = [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))) if r]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise ConfigError(f"{path}: cannot be read ({err}); move it away to start over") from None
    elif path.exists():
        raise ConfigError(f"{path} is not a file; move it away to start over")
    if len(rows) <= 1:
        return _from_configmaps(folder)
    if [c.strip() for c in rows[0]] != ["ordinal", "server_id"]:
        raise ConfigError(f"{path}: expected the header 'ordinal,server_id', got {','.join(rows[0])!r}")
    out: dict[str, int] = {}
    for n, row in enumerate(rows[1:], 2):
        fields = [c.strip() for c in row]
        if len(fields) != 2 or not _ORDINAL.fullmatch(fields[0]) or not fields[1]:
            raise ConfigError(f"{path}: line {n}: expected ORDINAL,SERVER_ID, got {','.join(row)!r}")
        if fields[1] in out:
            raise ConfigError(f"{path}: line {n}: server {fields[1]!r} is listed twice")
        out[fields[1]] = int(fields[0])
    if len(set(out.values())) != len(out):
        raise ConfigError(f"{path}: ordinals repeated; move it away to start over")
    return out


def _from_configmaps(folder: Path) -> dict[str, int]:
    """Which pod ran which server, as the previous plan's ConfigMaps say (``edge-N.yaml`` -> edge_id)."""
    out: dict[str, int] = {}
    for path in sorted(folder.glob("configmap-*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text())
            for name, text in doc["data"].items():
                m = _POD.fullmatch(name)
                if m is None:
                    raise ValueError(f"unexpected key {name!r}")
                out[str(yaml.safe_load(text)["edge_id"])] = int(m[1])
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as err:
            raise ConfigError(
                f"{folder / FILE} is missing and {path} cannot be read ({err}); remove the old plan "
                "from the folder to start over (every pod may change server)"
            ) from None
    return out


def assign(servers: list[str], previous: dict[str, int]) -> tuple[list[str], list[str]]:
    """The server of each ordinal 0..len(servers)-1 (``servers`` in the servers file's order), and
    the servers that kept the site but not their pod (moved down into a gap)."""
    n = len(servers)
    kept = {s: previous[s] for s in servers if s in previous and previous[s] < n}
    above = sorted((s for s in servers if s in previous and previous[s] >= n), key=lambda s: previous[s])
    new = [s for s in servers if s not in previous]
    gaps = sorted(set(range(n)) - set(kept.values()))
    by_ordinal: dict[int, str] = {o: s for s, o in kept.items()}
    for ordinal, server in zip(gaps, new + above, strict=True):
        by_ordinal[ordinal] = server
    return [by_ordinal[o] for o in range(n)], above


def ordinals_csv(by_ordinal: list[str]) -> str:
    """The text of ``ordinals.csv`` (written with the rest of the plan, whole)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["ordinal", "server_id"])
    w.writerows(enumerate(by_ordinal))
    return out.getvalue()

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
from pathlib import Path

from ..errors import ConfigError

FILE = "ordinals.csv"


def read_ordinals(folder: Path) -> dict[str, int]:
    """The previous plan's server -> ordinal (empty for a first plan)."""
    path = folder / FILE
    if not path.exists():
        return {}
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        out = {r["server_id"]: int(r["ordinal"]) for r in rows}
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"{path}: cannot read the previous plan's ordinals ({err}); move it away to start over"
        ) from None
    if len(set(out.values())) != len(out) or any(o < 0 for o in out.values()):
        raise ConfigError(f"{path}: ordinals repeated or negative; move it away to start over")
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

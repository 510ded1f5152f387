"""``safecity fleet status``: per site and server, from what the edges report in their heartbeats (the
sink's store) and, with the plan, what each server was given: cameras assigned vs up, analysed rate,
outbox backlog, last heartbeat."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from ..errors import ConfigError, StorageError
from ..events.heartbeat import STALE_AFTER_INTERVALS, read_health
from ..events.store import DB_ERRORS, StoreTarget, describe, open_reader


def fleet_status(store: StoreTarget, plan: dict[str, tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """One row per server (edge): ``plan`` maps camera id -> (site, server id)."""
    try:
        db = open_reader(store)
        if db is None:
            raise ConfigError(f"no sink store at {describe(store)}")
        try:
            edges = {s: (t, i, json.loads(b)) for s, t, i, b in db.execute(
                "SELECT source, received_at, interval_s, body FROM edges")}  # fmt: skip
            cameras = read_health(db, time.time())
        finally:
            db.close()
    except DB_ERRORS as err:
        raise StorageError(f"the sink store {describe(store)}: {err}") from None
    now = time.time()
    assigned: dict[str, int] = defaultdict(int)
    site_of: dict[str, str] = {}
    for site, server in (plan or {}).values():
        assigned[server] += 1
        site_of[server] = site
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cam in cameras:
        per[cam["source"]].append(cam)
    rows = []
    for server in sorted(set(edges) | set(assigned)):
        cams = [c for c in per.get(server, []) if c["state"] != "removed"]
        seen = edges.get(server)
        if seen is None:
            state, age, backlog = "missing", None, None
        else:
            age = now - seen[0]
            state = "stale" if age > seen[1] * STALE_AFTER_INTERVALS else "ok"
            backlog = seen[2].get("outbox_pending")
        rows.append(
            {
                "site": site_of.get(server, ""),
                "server": server,
                "state": state,
                "assigned": assigned.get(server) if plan else None,
                "reported": len(cams),
                "up": sum(c["state"] == "up" for c in cams),
                "analysed_fps": round(sum(c.get("analysed_fps") or 0.0 for c in cams), 1),
                "outbox_backlog": backlog,
                "heartbeat_age_s": None if age is None else round(age, 1),
            }
        )
    return sorted(rows, key=lambda r: (r["site"], r["server"]))


def print_status(rows: list[dict[str, Any]]) -> None:
    heads = [("site", 22, "<"), ("server", 26, "<"), ("state", 8, "<"), ("assigned", 8, ">"), ("up", 5, ">")]
    heads += [("fps", 7, ">"), ("backlog", 8, ">"), ("heartbeat", 10, ">")]
    print(" ".join(f"{name:{align}{width}}" for name, width, align in heads))
    for r in rows:
        assigned = "" if r["assigned"] is None else r["assigned"]
        backlog = "" if r["outbox_backlog"] is None else r["outbox_backlog"]
        beat = "never" if r["heartbeat_age_s"] is None else f"{r['heartbeat_age_s']:.0f} s ago"
        print(f"{r['site']:<22} {r['server']:<26} {r['state']:<8} {assigned!s:>8} {r['up']:>5} "
              f"{r['analysed_fps']:>7.1f} {backlog!s:>8} {beat:>10}")  # fmt: skip
    down = [r["server"] for r in rows if r["state"] != "ok"]
    short = [r["server"] for r in rows if r["assigned"] is not None and r["up"] < r["assigned"]]
    print(f"{len(rows)} servers; not reporting: {len(down)}; with cameras down: {len(short)}")

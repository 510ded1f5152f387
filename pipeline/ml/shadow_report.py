"""``safecity models shadow-report``: what a shadow run recorded (``detect/shadow.py``), as a person
deciding whether to swap wants it: how often the candidate saw what the live model saw (and the other
way), and the incidents only one of them raised, matched by camera, type and temporal IoU."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..accuracy.score import DEFAULT_IOU, Interval, match
from ..detect.shadow import agreement_of
from ..errors import ConfigError


def shadow_report(db: Path, *, run: int | None = None, iou: float = DEFAULT_IOU) -> dict[str, Any]:
    """The report of shadow run ``run`` (default: the latest) of ``db``."""
    if not db.is_file():
        raise ConfigError(f"{db}: no shadow record (start one with `safecity models shadow ID MODEL`)")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        con.row_factory = sqlite3.Row
        row = con.execute(
            "SELECT * FROM runs WHERE run = COALESCE(?, (SELECT MAX(run) FROM runs))", (run,)
        ).fetchone()
        if row is None:
            raise ConfigError(f"{db}: no shadow run {run if run is not None else ''}".rstrip())
        r = row["run"]
        totals = con.execute(
            "SELECT COUNT(*) AS n, COALESCE(SUM(live), 0) AS live, COALESCE(SUM(candidate), 0) AS cand, "
            "COALESCE(SUM(matched), 0) AS matched FROM frames WHERE run = ?",
            (r,),
        ).fetchone()
        per_camera = {
            c["camera"]: {"frames": c["n"], **agreement_of(c["live"], c["cand"], c["matched"])}
            for c in con.execute(
                "SELECT camera, COUNT(*) AS n, SUM(live) AS live, SUM(candidate) AS cand, "
                "SUM(matched) AS matched FROM frames WHERE run = ? GROUP BY camera ORDER BY camera",
                (r,),
            )
        }
        seen = {  # camera -> the media time of the first and last frame the shadow ran on
            c["camera"]: (c["first"], c["last"])
            for c in con.execute(
                "SELECT camera, MIN(t) AS first, MAX(t) AS last FROM frames WHERE run = ? GROUP BY camera",
                (r,),
            )
        }
        incidents: dict[str, list[Interval]] = {"live": [], "shadow": []}
        for i in con.execute("SELECT * FROM incidents WHERE run = ? ORDER BY started_at", (r,)):
            first, last = seen.get(i["camera"], (None, None))
            if first is None or last is None:
                continue  # a camera the shadow never ran on
            if i["source"] == "live" and i["started_at"] < first:
                continue  # already going (or over) when the shadow began to see that camera
            end = i["ended_at"] if i["ended_at"] is not None else max(last, i["started_at"])
            incidents[i["source"]].append(
                Interval(i["camera"], i["type"], i["started_at"], end, i["zone"], ref=i["incident_id"])
            )
    scores = match(incidents["live"], incidents["shadow"], iou=iou)
    only_live = [_describe(m) for s in scores.values() for m in s.misses]
    only_shadow = [_describe(p) for s in scores.values() for p in s.false_positives]
    both = sum(s.tp for s in scores.values())
    return {
        "run": r,
        "model": row["model"],
        "live": row["live"],
        "candidate": row["candidate"],
        "share": row["share"],
        "running": row["stopped"] is None,
        "frames": totals["n"],
        "agreement": agreement_of(totals["live"], totals["cand"], totals["matched"]),
        "per_camera": per_camera,
        "incidents": {
            "both": both,
            "only_live": only_live,
            "only_candidate": only_shadow,
        },
    }


def _describe(i: Interval) -> str:
    zone = f" in {i.zone}" if i.zone else ""
    return f"{i.footage}: {i.type}{zone} {i.start:.1f}-{i.end:.1f} s"


def format_report(rep: dict[str, Any]) -> str:
    a = rep["agreement"]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    lines = [
        f"shadow run {rep['run']}: {rep['candidate']} beside {rep['live']} (detector {rep['model']}), "
        f"{rep['share']:.0%} of batches, {rep['frames']} frames"
        + (" (still running)" if rep["running"] else ""),
        f"detections: the candidate found {pct(a['recall'])} of the live model's ({a['matched']} of "
        f"{a['live_detections']}); {pct(a['precision'])} of its own ({a['candidate_detections']}) were the "
        "live model's too",
    ]
    for cam, c in rep["per_camera"].items():
        lines.append(
            f"  {cam}: {c['frames']} frames, recall {pct(c['recall'])}, precision {pct(c['precision'])}"
        )
    inc = rep["incidents"]
    lines.append(
        f"incidents: {inc['both']} raised by both, {len(inc['only_live'])} by the live model only, "
        f"{len(inc['only_candidate'])} by the candidate only"
    )
    lines += [f"  live only: {x}" for x in inc["only_live"]]
    lines += [f"  candidate only: {x}" for x in inc["only_candidate"]]
    return "\n".join(lines)

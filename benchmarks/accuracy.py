"""Incident accuracy on annotated footage: the pipeline runs each annotated file (its camera's zones
and rules from the config, as fast as it can), its incidents are matched to the annotation's by
temporal IoU (``pipeline/accuracy/score.py``) and the report says per incident type how many were
right, missed or false, how late the alerts came, and shows the snapshot of each false alert and the
frame of each miss, so a reader sees why. Per model with ``--each-model`` (each detector alone, then
the set). Writes JSON, Markdown and an HTML page with its plots and pictures.

    safecity bench accuracy --config configs/demo.yaml benchmarks/annotations/vtest.yaml
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from pipeline.accuracy.annotations import load  # noqa: E402
from pipeline.accuracy.runs import Run, footage_key, predict, score_runs  # noqa: E402
from pipeline.accuracy.score import DEFAULT_IOU, Interval, TypeScore, match  # noqa: E402
from pipeline.config import Config, load_config, parse_config  # noqa: E402

console = Console(stderr=True)
HEADINGS = [
    "type",
    "true",
    "predicted",
    "TP",
    "FP",
    "FN",
    "precision",
    "recall",
    "F1",
    "latency p50 / p90 (s)",
]


def false_alert_snapshot(outbox: Path, incident_id: str) -> bytes | None:
    """The JPEG sent with the incident's start event (the frame with the incident drawn on it)."""
    with sqlite3.connect(outbox) as db:
        row = db.execute(
            "SELECT s.jpeg FROM outbox o JOIN snapshots s ON s.sha256 = o.snapshot_sha256 "
            "WHERE o.body LIKE ? ORDER BY o.seq LIMIT 1",
            (f'%"incident_id":"{incident_id}"%',),
        ).fetchone()
    return None if row is None else bytes(row[0])


def miss_frame(footage: Path, t: float, zone_polygon: Sequence[Sequence[float]] | None) -> bytes | None:
    """The footage's frame at media time ``t`` (from its first frame), with the zone outlined, as JPEG."""
    import av
    import cv2
    import numpy as np

    with av.open(str(footage)) as c:
        t0 = None
        for f in c.decode(video=0):
            ft = float(f.pts * f.time_base) if f.pts is not None and f.time_base is not None else 0.0
            t0 = ft if t0 is None else t0
            if ft - t0 >= t - 1e-6:
                img = f.to_ndarray(format="bgr24")
                if zone_polygon:
                    cv2.polylines(img, [np.array(zone_polygon, np.int32)], True, (0, 200, 255), 3)
                ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
                return bytes(jpeg) if ok else None
    return None


def scenario_intervals() -> tuple[list[Interval], list[Interval]]:
    """The scenario library's expected and raised incidents (``pipeline/accuracy/scenarios.py``): both
    timed from when the start is emitted, to the expected ``end`` (else the scenario's end) and to the
    end step (else the scenario's end)."""
    import yaml

    from pipeline.accuracy.scenarios import SCENARIOS, run_scenario

    truth, predicted = [], []
    for path in SCENARIOS:
        data = yaml.safe_load(path.read_text())
        end = float(data["duration"])
        for k, e in enumerate(data["expect"]):
            truth.append(
                Interval(
                    path.stem, e["type"], float(e["start"]), float(e.get("end", end)), ref=f"{path.stem}[{k}]"
                )
            )
        steps: dict[str, list[Any]] = {}
        for inc in run_scenario(data):
            steps.setdefault(inc.incident_id, []).append(inc)
        for iid, incs in steps.items():
            start = incs[0].emitted_at
            stop = next((i.emitted_at for i in incs if i.status == "end"), end)
            predicted.append(Interval(path.stem, incs[0].type, start, max(stop, start), ref=iid, alert=start))
    return truth, predicted


def write_report(
    out: Path, title: str, results: dict[str, tuple[list[Run], dict[str, TypeScore]]], cfg: Config, iou: float
) -> dict[str, Any]:
    """JSON, Markdown and HTML (PR bars, latency histogram, a picture per false alert and miss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    pics = out / "accuracy_pictures"
    pics.mkdir(exist_ok=True)
    report: dict[str, Any] = {"iou": iou, "matching": "greedy one-to-one by temporal IoU", "variants": {}}
    md = [
        f"# {title}",
        "",
        f"Matched by temporal IoU >= {iou} (greedy, one-to-one, type and zone must agree).",
        "",
    ]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Matched by temporal IoU &ge; {iou} (greedy, one-to-one).</p>",
    ]
    zones = {c.id: {z.name: z.polygon for z in c.zones} for c in cfg.cameras}
    for variant, (runs, scores) in results.items():
        rows = [s.summary() for s in scores.values()]
        report["variants"][variant] = {
            "types": rows,
            "footage": [
                {"file": r.annotation.footage.name, "seconds": round(r.seconds, 1), "tracking": r.tracking}
                for r in runs
            ],
            "predicted": [vars(i) for r in runs for i in r.predicted],
        }
        md += [f"## {variant}", ""]
        for done in runs:
            if done.tracking is not None:
                t = done.tracking
                line = (
                    f"Tracking on {done.annotation.footage.name} (frames analysed): MOTA {t['mota']}, "
                    f"IDF1 {t['idf1']}, {t['num_switches']} id switches, {t['num_misses']} misses, "
                    f"{t['num_false_positives']} false boxes of {t['num_objects']} true ones."
                )
                md += [line, ""]
                body.append(f"<p>{html.escape(line)}</p>")
        md += ["| " + " | ".join(HEADINGS) + " |", "|" + "---|" * len(HEADINGS)]
        head = "".join(f"<th>{h}</th>" for h in HEADINGS)
        body += [f"<h2>{html.escape(variant)}</h2><table border=1 cellpadding=4><tr>{head}</tr>"]
        for r in rows:
            lat = r["latency_s"]
            lat_s = "-" if lat is None else f"{lat['p50']:.1f} / {lat['p90']:.1f}"
            cells = [
                r["type"],
                r["true"],
                r["predicted"],
                r["tp"],
                r["fp"],
                r["fn"],
                _f(r["precision"]),
                _f(r["recall"]),
                _f(r["f1"]),
                lat_s,
            ]
            md.append("| " + " | ".join(str(c) for c in cells) + " |")
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        body.append("</table>")
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        names = [r["type"] for r in rows]
        x = range(len(names))
        axes[0].bar([i - 0.2 for i in x], [r["precision"] or 0 for r in rows], 0.4, label="precision")
        axes[0].bar([i + 0.2 for i in x], [r["recall"] or 0 for r in rows], 0.4, label="recall")
        axes[0].set_xticks(list(x), names, fontsize=8)
        axes[0].set_ylim(0, 1.05)
        axes[0].legend(fontsize=8)
        lats = [m.latency for s in scores.values() for m in s.matches]
        axes[1].hist(lats or [0], bins=10)
        axes[1].set_xlabel("alert latency (s): predicted alert - true start")
        fig.suptitle(variant, fontsize=9)
        fig.tight_layout()
        plot = out / f"accuracy_{_slug(variant)}.png"
        fig.savefig(plot, dpi=100)
        plt.close(fig)
        md += ["", f"![{variant}]({plot.name})", ""]
        body.append(f'<p><img src="{plot.name}"></p>')
        by_file = {footage_key(r.annotation): r for r in runs}
        for kind, s in scores.items():
            for fp in s.false_positives:
                run = by_file.get(fp.footage)  # (none for the scenario library: no video)
                jpeg = None if run is None else false_alert_snapshot(run.outbox, fp.ref)
                where = f"{fp.zone or 'no zone'}, {fp.start:.1f}-{fp.end:.1f} s ({Path(fp.footage).name})"
                caption = f"{variant}: false {kind} in {where}"
                body += _picture(pics, f"{_slug(variant)}-fp-{fp.ref}.jpg", jpeg, caption)
                md.append(f"- {caption}")
            for miss in s.misses:
                run = by_file.get(miss.footage)
                jpeg, note = None, ""
                if run is not None:
                    polygon = zones.get(run.annotation.camera or "", {}).get(miss.zone or "")
                    jpeg = miss_frame(run.annotation.footage, (miss.start + miss.end) / 2, polygon)
                    note = run.annotation.notes.get(miss.ref, "")
                where = (
                    f"{miss.zone or 'no zone'}, {miss.start:.1f}-{miss.end:.1f} s ({Path(miss.footage).name})"
                )
                caption = f"{variant}: missed {kind} in {where} {note}"
                body += _picture(pics, f"{_slug(variant)}-miss-{_slug(miss.ref)}.jpg", jpeg, caption)
                md.append(f"- {caption}")
    (out / "accuracy.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "accuracy.md").write_text("\n".join(md) + "\n")
    (out / "accuracy.html").write_text(
        "<!doctype html><meta charset=utf-8><title>accuracy</title>"
        "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>" + "\n".join(body) + "</body>"
    )
    return report


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:80]


def _picture(folder: Path, name: str, jpeg: bytes | None, caption: str) -> list[str]:
    if jpeg is None:
        return [f"<p>{html.escape(caption)} (no picture)</p>"]
    (folder / name).write_bytes(jpeg)
    return [
        f'<figure><img src="{folder.name}/{name}" width=640>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="safecity bench accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("annotations", nargs="*", help="annotation files (YAML, see the README)")
    ap.add_argument("--config", help="the edge config whose cameras, zones, models and rules run")
    ap.add_argument(
        "--scenarios", action="store_true", help="also score the scenario library (all five types)"
    )
    ap.add_argument("--iou", type=float, default=DEFAULT_IOU, help="temporal IoU for a match")
    ap.add_argument("--each-model", action="store_true", help="also run each of the config's detectors alone")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    if not args.annotations and not args.scenarios:
        ap.error("give annotation files (with --config), or --scenarios")
    if args.annotations and not args.config:
        ap.error("annotated footage runs through a config: give --config")
    results: dict[str, tuple[list[Run], dict[str, TypeScore]]] = {}
    if args.scenarios:
        truth, predicted = scenario_intervals()
        results["scenario library (scripted tracks)"] = ([], match(truth, predicted, iou=args.iou))
    cfg = (
        load_config(Path(args.config))
        if args.config
        else parse_config({"cameras": [{"id": "none", "source": "none.mp4"}]})
    )
    anns = [load(Path(a)) for a in args.annotations]
    variants: list[tuple[str, list[Any] | None]] = (
        [("+".join(m.key for m in cfg.models), None)] if anns else []
    )
    if args.each_model and len(cfg.models) > 1 and anns:
        variants = [(m.key, [m]) for m in cfg.models] + variants
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as bar:
        task = bar.add_task("accuracy", total=len(variants) * len(anns))
        for name, models in variants:
            runs = []
            for k, ann in enumerate(anns):
                runs.append(predict(cfg, ann, Path(tmp) / _slug(name) / str(k), models))
                bar.advance(task)
            results[name] = (runs, score_runs(runs, args.iou))
        report = write_report(Path(args.out), "Incident accuracy", results, cfg, args.iou)
    for name, v in report["variants"].items():
        console.print(f"[bold]{name}[/]")
        for r in v["types"]:
            console.print(
                f"  {r['type']}: true {r['true']} predicted {r['predicted']} "
                f"TP {r['tp']} FP {r['fp']} FN {r['fn']} precision {_f(r['precision'])} "
                f"recall {_f(r['recall'])} F1 {_f(r['f1'])} latency {r['latency_s']}"
            )
    console.print(f"report: {Path(args.out) / 'accuracy.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

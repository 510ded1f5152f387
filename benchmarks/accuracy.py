"""Incident accuracy on annotated footage, judged as an operator judges it: the pipeline runs each
annotated file (its camera's zones and rules from the config, as fast as it can), and again each of its
re-encodings as cameras send it (``pipeline/accuracy/variants.py``: H.264 1080p at 2 Mbit/s, HEVC 720p,
dusk, 5 fps); incidents are matched to the annotation's by temporal IoU
(``pipeline/accuracy/score.py``). The report leads with false alerts per camera-hour, then the
robustness matrix (one row per variant, with the spread of F1 across them), each clip by variant, each
zone, every false alert with its time and a picture, and every miss. Per model with ``--each-model``.
Writes JSON, Markdown and an HTML page with its plots and pictures.

    safecity bench accuracy --config benchmarks/annotations/cameras.yaml benchmarks/annotations/*.yaml

``--reuse-detections`` keeps each file's detections and replays them through the tracker and rules
on later runs (``pipeline/accuracy/detections.py``): minutes become seconds while rules are worked on.
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

from pipeline.accuracy import summary  # noqa: E402
from pipeline.accuracy.annotations import footage_name, load  # noqa: E402
from pipeline.accuracy.runs import Run, footage_key, predict, score_runs  # noqa: E402
from pipeline.accuracy.score import DEFAULT_IOU, DEFAULT_ONSET_S, Interval, TypeScore, match  # noqa: E402
from pipeline.accuracy.variants import VARIANTS, make_variant  # noqa: E402
from pipeline.config import Config, load_config, parse_config  # noqa: E402
from pipeline.registry import data_dir  # noqa: E402

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


def frame_picture(
    footage: Path,
    t: float,
    polygon: Sequence[Sequence[float]] | None,
    boxes: Sequence[Sequence[float]] = (),
) -> bytes | None:
    """The footage's frame at media time ``t`` (from its first frame), with a zone outlined and boxes
    drawn, as JPEG."""
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
                if polygon is not None and len(polygon):
                    cv2.polylines(img, [np.array(polygon, np.int32)], True, (0, 200, 255), 3)
                for x1, y1, x2, y2 in boxes:
                    cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (0, 0, 255), 2)
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


MATRIX_HEADINGS = [
    "variant",
    "camera-hours",
    "false alerts / camera-hour",
    "critical false alerts",
    "TP",
    "FP",
    "FN",
    "precision",
    "recall",
    "F1",
    "latency past wait p50 / p90 (s)",
]

# results: (model set, variant) -> the runs and their scores
Results = dict[tuple[str, str], tuple[list[Run], dict[str, TypeScore]]]


class Page:
    """The report as Markdown and HTML side by side."""

    def __init__(self, title: str) -> None:
        self.md: list[str] = [f"# {title}", ""]
        self.body: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str, level: int = 2) -> None:
        if self.md and self.md[-1]:
            self.md.append("")
        self.md += [f"{'#' * level} {text}", ""]
        self.body.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md += [text, ""]
        self.body.append(f"<p>{html.escape(text.replace('**', ''))}</p>")

    def table(self, headings: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.md += ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
        self.md += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
        )
        self.body.append(f"<table border=1 cellpadding=4><tr>{head}</tr>{cells}</table>")

    def image(self, name: str, caption: str) -> None:
        self.md += [f"![{caption}]({name})", ""]
        self.body.append(f'<p><img src="{name}" alt="{html.escape(caption)}"></p>')

    def item(self, text: str, extra_html: list[str] | None = None) -> None:
        self.md.append(f"- {text}")
        self.body += extra_html if extra_html is not None else [f"<p>{html.escape(text)}</p>"]


def _matrix_cells(name: str, row: dict[str, Any]) -> list[Any]:
    p50, p90 = row["latency_past_wait_p50_s"], row["latency_past_wait_p90_s"]
    return [
        name,
        f"{row['camera_hours']:.3f}",
        "-" if row["false_alerts_per_camera_hour"] is None else f"{row['false_alerts_per_camera_hour']:.1f}",
        row["critical_false_alerts"],
        *_counts(row),
        "-" if p50 is None else f"{p50:.1f} / {p90:.1f}",
    ]


def _counts(row: dict[str, Any]) -> list[Any]:
    """TP, FP, FN, precision, recall and F1 of a row, as table cells."""
    return [row["tp"], row["fp"], row["fn"], _f(row["precision"]), _f(row["recall"]), _f(row["f1"])]


def _plot_matrix(path: Path, variants: list[str], rows: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    fa = [r["false_alerts_per_camera_hour"] or 0.0 for r in rows]
    bars = axes[0].bar(variants, fa, color="#c0392b")
    axes[0].bar_label(bars, fmt="%.1f")
    axes[0].axhline(5, color="grey", ls="--", lw=1)
    axes[0].set_ylabel("false alerts / camera-hour")
    x = range(len(variants))
    axes[1].bar([i - 0.27 for i in x], [r["precision"] or 0 for r in rows], 0.27, label="precision")
    axes[1].bar(list(x), [r["recall"] or 0 for r in rows], 0.27, label="recall")
    axes[1].bar([i + 0.27 for i in x], [r["f1"] or 0 for r in rows], 0.27, label="F1")
    axes[1].set_xticks(list(x), variants)
    axes[1].set_ylim(0, 1.05)
    axes[1].legend(fontsize=8, loc="lower left")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    out: Path, title: str, results: Results, cfg: Config, iou: float, onset_s: float = DEFAULT_ONSET_S
) -> dict[str, Any]:
    """JSON, Markdown and HTML: the headline, the robustness matrix per model set, clips by variant,
    zones, per type, every false alert (with a picture) and every miss (with the frame)."""
    out.mkdir(parents=True, exist_ok=True)
    pics = out / "accuracy_pictures"
    pics.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "iou": iou,
        "onset_s": onset_s,
        "matching": "greedy one-to-one by temporal IoU, or by onset",
        "variants": {},
        "matrix": {},
    }
    page = Page(title)
    model_sets = list(dict.fromkeys(m for m, _ in results))
    footage_sets = [m for m in model_sets if any(runs for (mm, _), (runs, _) in results.items() if mm == m)]
    # the headline: false alerts per camera-hour over every variant of the footage (the set of all models)
    if footage_sets:
        main_set = footage_sets[-1]
        figs = {v: summary.overall(cfg, runs, sc) for (m, v), (runs, sc) in results.items() if m == main_set}
        total = summary.Figures(sum(f.camera_hours for f in figs.values()))
        for f in figs.values():
            total.tp, total.fp, total.fn = total.tp + f.tp, total.fp + f.fp, total.fn + f.fn
            total.critical_fp += f.critical_fp
            total.latencies += f.latencies
        worst = max(figs, key=lambda v: figs[v].false_per_hour or 0.0)
        head = total.row() | {
            "worst_variant": worst,
            "worst_false_alerts_per_camera_hour": figs[worst].row()["false_alerts_per_camera_hour"],
            "models": main_set,
        }
        report["headline"] = head
        page.para(
            f"**False alerts per camera-hour: {_f1(head['false_alerts_per_camera_hour'])}** "
            f"({total.fp} false alerts in {total.camera_hours:.3f} camera-hours over {len(figs)} variants; "
            f"worst variant {worst}: {_f1(head['worst_false_alerts_per_camera_hour'])}; "
            f"critical false alerts: {total.critical_fp}). Recall {_f(total.recall)}, precision "
            f"{_f(total.precision)}, F1 {_f(total.f1)}, latency past the rule's wait p90 "
            f"{_f(total.latency(90))} s."
        )
    page.para(
        f"Matched by temporal IoU >= {iou} or a start within {onset_s:g} s of the true one (greedy, "
        "one-to-one, type and zone must agree)."
    )
    for mset in model_sets:
        variants = [v for m, v in results if m == mset]
        entries = [(v, *results[(mset, v)]) for v in variants]
        if any(runs for _, runs, _ in entries):
            _matrix(page, report, cfg, mset, entries, out)
        for v, runs, scores in entries:
            key = mset if v == "original" or not runs else f"{mset} @ {v}"
            _variant(page, report, cfg, key, runs, scores, pics, out)
    (out / "accuracy.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "accuracy.md").write_text("\n".join(page.md) + "\n")
    (out / "accuracy.html").write_text(
        "<!doctype html><meta charset=utf-8><title>accuracy</title>"
        "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>"
        + "\n".join(page.body)
        + "</body>"
    )
    return report


def _matrix(
    page: Page,
    report: dict[str, Any],
    cfg: Config,
    mset: str,
    entries: list[tuple[str, list[Run], dict[str, TypeScore]]],
    out: Path,
) -> None:
    """The robustness matrix of one model set: a row per variant, the spread, clips by variant, zones."""
    rows = {v: summary.overall(cfg, runs, scores).row() for v, runs, scores in entries}
    f1_spread = summary.spread(r["f1"] for r in rows.values())
    clips: dict[str, dict[str, float | None]] = {}
    zones: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for v, runs, scores in entries:
        for key, sc in summary.by_footage(runs, scores).items():
            mine = [r for r in runs if footage_key(r.annotation) == key]
            clips.setdefault(key, {})[v] = summary.overall(cfg, mine, sc).row()["f1"]
        for zkey, fig in summary.per_zone(cfg, runs, scores).items():
            zones.setdefault(zkey, {})[v] = fig.row()
    variants = [v for v, _, _ in entries]
    report["matrix"][mset] = {
        "variants": rows,
        "f1_spread": None if f1_spread is None else round(f1_spread, 3),
        "clips": {
            footage_name(k): {"f1": per, "f1_spread": summary.spread(per.values())}
            for k, per in clips.items()
        },
        "zones": [
            {"clip": footage_name(k[0]), "zone": k[1], "type": k[2], "variants": per}
            for k, per in zones.items()
        ],
    }
    page.heading(f"Robustness matrix: {mset}")
    page.table(MATRIX_HEADINGS, [_matrix_cells(v, r) for v, r in rows.items()])
    page.para(f"F1 spread across variants: {_f(f1_spread)} (largest minus smallest F1 of the rows above).")
    plot = out / f"accuracy_matrix_{_slug(mset)}.png"
    _plot_matrix(plot, variants, list(rows.values()), f"{mset}: false alerts and accuracy per variant")
    page.image(plot.name, f"{mset}: per variant")
    page.heading("Each clip by variant (F1; '-': nothing true and nothing raised)", 3)
    page.table(
        ["clip (camera)", *variants, "spread"],
        [
            [footage_name(k), *(_f(per.get(v)) for v in variants), _f(summary.spread(per.values()))]
            for k, per in clips.items()
        ],
    )
    page.heading("Each zone by variant (TP / FP / FN)", 3)
    page.table(
        ["clip (camera)", "zone", "type", *variants],
        [
            [
                footage_name(k[0]),
                k[1],
                k[2],
                *(
                    f"{r['tp']} / {r['fp']} / {r['fn']}" if (r := per.get(v)) else "0 / 0 / 0"
                    for v in variants
                ),
            ]
            for k, per in zones.items()
        ],
    )


def _tp_fp_fn(row: dict[str, Any] | None) -> str:
    return "0 / 0 / 0" if row is None else f"{row['tp']} / {row['fp']} / {row['fn']}"


def _variant(
    page: Page,
    report: dict[str, Any],
    cfg: Config,
    key: str,
    runs: list[Run],
    scores: dict[str, TypeScore],
    pics: Path,
    out: Path,
) -> None:
    """One variant (or the scenario library): per type, tracking, every false alert and miss."""
    rows = [s.summary() for s in scores.values()]
    report["variants"][key] = {
        "types": rows,
        "footage": [
            {
                "file": r.annotation.footage.name,
                "played": r.played.name if r.played else r.annotation.footage.name,
                "camera": r.annotation.camera,
                "seconds": round(r.seconds, 1),
                "tracking": r.tracking,
                "replayed": r.replayed,
            }
            for r in runs
        ],
        "predicted": [vars(i) for r in runs for i in r.predicted],
    }
    page.heading(key)
    for done in runs:
        if done.tracking is not None:
            t = done.tracking
            page.para(
                f"Tracking on {done.annotation.footage.name} (frames analysed): MOTA {t['mota']}, "
                f"IDF1 {t['idf1']}, {t['num_switches']} id switches, {t['num_misses']} misses, "
                f"{t['num_false_positives']} false boxes of {t['num_objects']} true ones."
            )
    cells = []
    for r in rows:
        lat = r["latency_s"]
        lat_s = "-" if lat is None else f"{lat['p50']:.1f} / {lat['p90']:.1f}"
        cells.append(
            [
                r["type"],
                r["true"],
                r["predicted"],
                *_counts(r),
                lat_s,
            ]
        )
    page.table(HEADINGS, cells)
    by_file = {footage_key(r.annotation): r for r in runs}
    zones = {c.id: c for c in cfg.cameras}
    for kind, s in scores.items():
        for fp in s.false_positives:
            run = by_file.get(fp.footage)  # (none for the scenario library: no video)
            jpeg = None if run is None else _false_alert_picture(run, fp, zones)
            alert = f", alert at {fp.alert:.1f} s" if fp.alert is not None else ""
            where = (
                f"{fp.zone or 'no zone'}, {fp.start:.1f}-{fp.end:.1f} s{alert} ({footage_name(fp.footage)})"
            )
            caption = f"{key}: false {kind} ({fp.severity or '-'}) in {where}"
            page.item(caption, _picture(pics, f"{_slug(key)}-fp-{fp.ref}.jpg", jpeg, caption))
        for miss in s.misses:
            run = by_file.get(miss.footage)
            jpeg, note = None, ""
            if run is not None:
                polygon = _zone_polygon(zones, run, miss.zone)
                jpeg = frame_picture(
                    run.played or run.annotation.footage, (miss.start + miss.end) / 2, polygon
                )
                note = run.annotation.notes.get(miss.ref, "")
            where = (
                f"{miss.zone or 'no zone'}, {miss.start:.1f}-{miss.end:.1f} s ({footage_name(miss.footage)})"
            )
            caption = f"{key}: missed {kind} in {where} {note}".rstrip()
            page.item(caption, _picture(pics, f"{_slug(key)}-miss-{_slug(miss.ref)}.jpg", jpeg, caption))


def _zone_polygon(cameras: dict[str, Any], run: Run, zone: str | None) -> list[list[float]] | None:
    """The zone's polygon in the pixels of the footage the run played (scaled like the pipeline does)."""
    from pipeline.accuracy.runs import frame_size
    from pipeline.analytics.zones import camera_zones

    cam = cameras.get(run.annotation.camera or "")
    if cam is None or zone is None:
        return None
    played = run.played or run.annotation.footage
    if run.played is not None and cam.zones_drawn_on is None:
        cam = cam.model_copy(update={"zones_drawn_on": frame_size(run.annotation.footage)})
    w, h = frame_size(played)
    for z in camera_zones(cam):
        if z.name == zone:
            return z.polygon_px(w, h).tolist()
    return None


def _false_alert_picture(run: Run, fp: Interval, cameras: dict[str, Any]) -> bytes | None:
    """The snapshot sent with the incident's start (a run through the pipeline), else the frame at its
    alert with its objects' boxes and its zone drawn (a replayed run)."""
    if not run.replayed and run.outbox.is_file():
        jpeg = false_alert_snapshot(run.outbox, fp.ref)
        if jpeg is not None:
            return jpeg
    start = next((i for i in run.steps or [] if i.incident_id == fp.ref and i.status == "start"), None)
    boxes = [o.bbox_xyxy for o in start.objects] if start is not None else []
    t = fp.alert if fp.alert is not None else fp.start
    return frame_picture(run.played or run.annotation.footage, t, _zone_polygon(cameras, run, fp.zone), boxes)


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


def _f1(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="safecity bench accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("annotations", nargs="*", help="annotation files (YAML, see the README)")
    ap.add_argument("--config", help="the edge config whose cameras, zones, models and rules run")
    ap.add_argument(
        "--scenarios", action="store_true", help="also score the scenario library (all five types)"
    )
    ap.add_argument("--iou", type=float, default=DEFAULT_IOU, help="temporal IoU for a match")
    ap.add_argument(
        "--onset",
        type=float,
        default=DEFAULT_ONSET_S,
        help="or a start within this many seconds of the true start (0: by IoU alone)",
    )
    ap.add_argument("--each-model", action="store_true", help="also run each of the config's detectors alone")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated re-encodings to score beside each other "
        f"(default: all of {', '.join(VARIANTS)})",
    )
    ap.add_argument(
        "--reuse-detections",
        nargs="?",
        const=str(data_dir() / "accuracy-detections"),
        default=None,
        metavar="DIR",
        help="keep each file's detections in DIR and replay them on later runs (default DIR: "
        "data/accuracy-detections); for work on tracking and rules",
    )
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    if not args.annotations and not args.scenarios:
        ap.error("give annotation files (with --config), or --scenarios")
    if args.annotations and not args.config:
        ap.error("annotated footage runs through a config: give --config")
    if not 0 < args.iou <= 1:  # (NaN too)
        ap.error(f"--iou: expected a share above 0 and at most 1, got {args.iou}")
    if not 0 <= args.onset <= 60:
        ap.error(f"--onset: expected 0 to 60 seconds, got {args.onset}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        ap.error(f"--variants: unknown {unknown[0]!r}" if unknown else "--variants: none given")
    results: Results = {}
    if args.scenarios:
        truth, predicted = scenario_intervals()
        results[("scenario library (scripted tracks)", "original")] = (
            [],
            match(truth, predicted, iou=args.iou, onset_s=args.onset),
        )
    cfg = (
        load_config(Path(args.config))
        if args.config
        else parse_config({"cameras": [{"id": "none", "source": "none.mp4"}]})
    )
    anns = [load(Path(a)) for a in args.annotations]
    model_sets: list[tuple[str, list[Any] | None]] = (
        [("+".join(m.key for m in cfg.models), None)] if anns else []
    )
    if args.each_model and len(cfg.models) > 1 and anns:
        model_sets = [(m.key, [m]) for m in cfg.models] + model_sets
    cache = Path(args.reuse_detections) if args.reuse_detections else None
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            probe = cache / ".writable"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            ap.error(
                f"--reuse-detections {cache}: not a folder detections can be kept in ({err.strerror or err})"
            )
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as bar:
        played: dict[tuple[int, str], Path] = {}
        todo = [(k, v) for k, _ in enumerate(anns) for v in variants if v != "original"]
        if todo:
            making = bar.add_task("re-encoding footage", total=len(todo))
            for k, v in todo:
                bar.update(making, description=f"re-encoding {anns[k].footage.name} as {v}")
                played[(k, v)] = make_variant(anns[k].footage, v)
                bar.advance(making)
        task = bar.add_task("accuracy", total=len(model_sets) * len(anns) * len(variants))
        for name, models in model_sets:
            for v in variants:
                runs = []
                for k, ann in enumerate(anns):
                    bar.update(task, description=f"{name} on {ann.footage.name} ({ann.camera}), {v}")
                    work = Path(tmp) / _slug(name) / v / str(k)
                    runs.append(predict(cfg, ann, work, models, footage=played.get((k, v)), cache=cache))
                    bar.advance(task)
                results[(name, v)] = (runs, score_runs(runs, args.iou, args.onset))
        report = write_report(Path(args.out), "Incident accuracy", results, cfg, args.iou, args.onset)
    head = report.get("headline")
    if head:
        console.print(
            f"[bold]false alerts per camera-hour: {_f1(head['false_alerts_per_camera_hour'])}[/] "
            f"(worst variant {head['worst_variant']}: {_f1(head['worst_false_alerts_per_camera_hour'])}; "
            f"critical {head['critical_false_alerts']}); recall {_f(head['recall'])}, precision "
            f"{_f(head['precision'])}, latency past wait p90 {head['latency_past_wait_p90_s']} s"
        )
    for mset, m in report["matrix"].items():
        console.print(f"[bold]{mset}[/]: robustness matrix (F1 spread {_f(m['f1_spread'])})")
        for v, r in m["variants"].items():
            console.print(
                "  "
                + "  ".join(f"{h}: {c}" for h, c in zip(MATRIX_HEADINGS, _matrix_cells(v, r), strict=True))
            )
        for z in m["zones"]:
            per = "  ".join(f"{v} {r['tp']}/{r['fp']}/{r['fn']}" for v, r in z["variants"].items())
            console.print(f"  zone {z['clip']} {z['zone']} {z['type']} (TP/FP/FN): {per}")
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

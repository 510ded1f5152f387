"""How many real-time cameras one server holds: recordings paced at their frame rate and looped, as
live cameras behave, through the whole pipeline, with the number of cameras ramped (doubling, then
bisecting between the last count that held and the first that did not) until one no longer keeps up.

A count is *sustained* when, over a steady window after a warm-up, every camera is analysed at
>= 95 % of its analytics rate and < 1 % of its sampled frames are dropped. For each count tried:
achieved rate per camera (min and mean), dropped share, per-stage latency percentiles (from the
pipeline's own histograms), process CPU use and resident memory, GPU memory where there is a GPU.
Writes JSON, Markdown and a PNG plot (cameras vs achieved rate). The same code runs on the GPU check.

    safecity bench capacity --model fall-yolov8 --analytics-fps 5 --height 720
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from benchmarks.soak import rss_mib  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from pipeline.footage import generate_clips  # noqa: E402
from pipeline.metrics import Metrics  # noqa: E402
from pipeline.registry import data_dir  # noqa: E402
from pipeline.runner import Runner  # noqa: E402

console = Console(stderr=True)
RATE_SHARE = 0.95  # of its analytics rate, every camera
MAX_DROPPED = 0.01  # of its sampled frames, every camera


@dataclass
class Step:
    cameras: int
    sustained: bool
    rate_min: float  # analysed frames/s of the slowest camera
    rate_mean: float
    dropped_max: float  # share of sampled frames dropped, the worst camera
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> p50/p90/p99
    cpu_cores: float = 0.0  # process CPU time / wall time over the window
    rss_mib: float = 0.0
    torch_gpu_mib: float | None = None  # torch's peak allocation in the step (not ONNX Runtime's)


def sustained(rates: list[float], dropped: list[float], fps: float) -> bool:
    """Every camera at >= 95 % of ``fps`` and under 1 % of its sampled frames dropped."""
    return bool(rates) and min(rates) >= RATE_SHARE * fps and max(dropped, default=0.0) < MAX_DROPPED


def histogram_state(hist: Any) -> dict[str, list[tuple[float, float]]]:
    """label -> cumulative (upper bound, count) of a labelled prometheus Histogram, now."""
    out: dict[str, list[tuple[float, float]]] = {}
    for metric in hist.collect():
        for s in metric.samples:
            if s.name.endswith("_bucket"):
                label = next((v for k, v in s.labels.items() if k != "le"), "")
                out.setdefault(label, []).append((float(s.labels["le"]), s.value))
    return out


def percentiles(
    before: list[tuple[float, float]], after: list[tuple[float, float]], qs: tuple[int, ...] = (50, 90, 99)
) -> dict[str, float]:
    """Percentiles (ms) of what a histogram took between two states, interpolated within buckets."""
    prev = dict(before)
    buckets = [(le, n - prev.get(le, 0.0)) for le, n in sorted(after)]
    total = buckets[-1][1] if buckets else 0.0
    out: dict[str, float] = {}
    if total <= 0:
        return out
    for q in qs:
        rank, lo, lo_n = total * q / 100, 0.0, 0.0
        for le, n in buckets:
            if n >= rank:
                hi = le if le != float("inf") else lo * 2 or 1.0
                frac = 0.0 if n == lo_n else (rank - lo_n) / (n - lo_n)
                out[f"p{q}"] = round((lo + frac * (hi - lo)) * 1000, 2)
                break
            lo, lo_n = le, n
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_step(n: int, args: argparse.Namespace, clips: list[Path], tmp: Path) -> Step:
    """``n`` cameras for a warm-up and a window; what they achieved in the window."""
    model: dict[str, Any]
    if args.scripted:
        model = {"backend": "scripted", "scripted_detections": args.scripted}
    elif args.model.endswith(".pt"):
        model = {"backend": "torch", "path": args.model}
    elif args.model.endswith(".onnx"):
        model = {"path": args.model}
    else:
        model = {"name": args.model}
    cfg = parse_config(
        {
            "edge_id": "capacity",
            "device": args.device,
            "decoder": args.decoder,
            "cameras": [
                {
                    "id": f"cam{i}",
                    "source": str(clips[i % len(clips)]),
                    "realtime": True,
                    "loop": True,
                    "analytics_fps": args.analytics_fps,
                }
                for i in range(n)
            ],
            "model": model,
            "batching": {"max_batch_size": max(n, 1), "timeout_ms": 40},
            "sink": {
                "endpoint": "tcp://127.0.0.1:9",
                "outbox": str(tmp / f"outbox-{n}.sqlite"),
                "insecure": True,
                "drain_seconds": 0,
            },
            "clips": {"enabled": False},
            "status_interval_seconds": 1,
        }
    )
    metrics = Metrics()
    gpu_used = args.device.startswith("cuda") or (args.device == "auto" and _cuda())
    if gpu_used:
        import torch

        torch.cuda.reset_peak_memory_stats()
    runner = Runner(cfg, metrics=metrics)
    runner.start()
    try:
        runner.wait(args.warmup)
        stats = runner.stats.cameras
        a0 = {k: (c.analysed, c.dropped) for k, c in stats.items()}
        h0 = histogram_state(metrics.stage_latency)
        c0, t0 = cpu_seconds(), time.monotonic()
        runner.wait(args.window)
        wall = time.monotonic() - t0
        cpu = (cpu_seconds() - c0) / wall
        a1 = {k: (c.analysed, c.dropped) for k, c in stats.items()}
        h1 = histogram_state(metrics.stage_latency)
        if runner.error is not None:
            raise runner.error
    finally:
        runner.request_stop()
        runner.stop()
    rates = [(a1[k][0] - a0[k][0]) / wall for k in a1]
    dropped = []
    for k in a1:
        sampled = (a1[k][0] - a0[k][0]) + (a1[k][1] - a0[k][1])
        dropped.append((a1[k][1] - a0[k][1]) / sampled if sampled else 1.0)
    gpu = None
    if gpu_used:  # what torch allocated at most in this step (ONNX Runtime's own memory is not in it)
        import torch

        gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return Step(
        n,
        sustained(rates, dropped, args.analytics_fps),
        round(min(rates), 2),
        round(sum(rates) / len(rates), 2),
        round(max(dropped), 4),
        {stage: percentiles(h0.get(stage, []), h1[stage]) for stage in sorted(h1)},
        round(cpu, 2),
        round(rss_mib(), 1),
        gpu,
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def ramp(try_count: Any, *, start: int, limit: int) -> tuple[int, list[Step]]:
    """The largest count ``try_count(n)`` sustains: doubling from ``start``, then bisecting between
    the last that held and the first that did not (0 when even ``start`` does not hold)."""
    steps: list[Step] = []
    good, bad = 0, None
    n = start
    while True:
        step = try_count(n)
        steps.append(step)
        if not step.sustained:
            bad = n
            break
        good = n
        if n >= limit:
            break
        n = min(n * 2, limit)  # the limit itself is tried, not only the powers of two below it
    if bad is None:
        return good, steps
    while bad - good > 1:  # (from 0 when even the first count did not hold: below it too)
        mid = (good + bad) // 2
        step = try_count(mid)
        steps.append(step)
        if step.sustained:
            good = mid
        else:
            bad = mid
    return good, steps


def write_report(out: Path, args: argparse.Namespace, best: int, steps: list[Step]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "sustained_cameras": best,
        "criterion": (
            f"every camera >= {RATE_SHARE:.0%} of {args.analytics_fps} frames/s, < {MAX_DROPPED:.0%} dropped"
        ),
        "steps": [asdict(s) for s in steps],
    }
    (out / "capacity.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Capacity: {best} cameras sustained",
        "",
        f"{args.height}p footage at {args.fps} fps, analysed at {args.analytics_fps} frames/s per camera, "
        f"model {args.scripted and 'scripted' or args.model}, device {args.device}; {report['criterion']} "
        f"over {args.window:g} s after {args.warmup:g} s of warm-up.",
        "",
        "| cameras | sustained | rate min / mean | dropped (worst) | detect p50 / p99 (ms) | CPU cores "
        "| RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(steps, key=lambda s: s.cameras):
        det = s.latency_ms.get("detect", {})
        lines.append(
            f"| {s.cameras} | {'yes' if s.sustained else 'no'} | {s.rate_min:.2f} / {s.rate_mean:.2f} | "
            f"{s.dropped_max:.1%} | {det.get('p50', '-')} / {det.get('p99', '-')} | {s.cpu_cores} "
            f"| {s.rss_mib} |"
        )
    (out / "capacity.md").write_text("\n".join(lines) + "\n")
    pts = sorted(steps, key=lambda s: s.cameras)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([s.cameras for s in pts], [s.rate_mean for s in pts], "o-", label="mean per camera")
    ax.plot([s.cameras for s in pts], [s.rate_min for s in pts], "s--", label="slowest camera")
    ax.axhline(RATE_SHARE * args.analytics_fps, color="red", lw=0.8, label=f"{RATE_SHARE:.0%} of the rate")
    ax.set_xlabel("cameras")
    ax.set_ylabel("analysed frames/s per camera")
    ax.set_title(f"{best} cameras sustained", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "capacity.png", dpi=110)
    plt.close(fig)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="safecity bench capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--footage", nargs="*", default=None, help="recordings to use (default: generated)")
    ap.add_argument("--model", default="fall-yolov8", help="a manifest name, an .onnx or a .pt (torch) path")
    ap.add_argument("--scripted", default=None, help="a scripted detections file instead of a model")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--decoder", default="auto", choices=["auto", "pyav", "nvdec"])
    ap.add_argument("--analytics-fps", type=float, default=5.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--start", type=int, default=1, help="cameras of the first step")
    ap.add_argument("--max-cameras", type=int, default=256)
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds before the window")
    ap.add_argument("--window", type=float, default=15.0, help="seconds measured")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    if not 1 <= args.start <= args.max_cameras:
        ap.error(f"--start must be between 1 and --max-cameras ({args.max_cameras})")
    if args.footage:
        clips = [Path(p) for p in args.footage]
    else:
        with console.status("generating footage"):
            clips = generate_clips(
                data_dir() / "bench",
                count=4,
                width=args.width,
                height=args.height,
                fps=args.fps,
                seconds=10.0,
                gop=2 * args.fps,
            )
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as bar:
        task = bar.add_task("capacity", total=None)

        done: list[Step] = []

        def try_count(n: int) -> Step:
            bar.update(task, description=f"{n} cameras")
            step = run_step(n, args, clips, Path(tmp))
            bar.advance(task)
            done.append(step)  # the report so far, after every step: a run cut short keeps what it measured
            held = [s.cameras for s in done if s.sustained]
            write_report(Path(args.out), args, max(held, default=0), done)
            console.print(
                f"{n} cameras: {'sustained' if step.sustained else 'NOT sustained'} "
                f"(slowest {step.rate_min:.2f}/s, mean {step.rate_mean:.2f}/s, "
                f"dropped {step.dropped_max:.1%}, CPU {step.cpu_cores} cores)"
            )
            return step

        best, steps = ramp(try_count, start=args.start, limit=args.max_cameras)
    write_report(Path(args.out), args, best, steps)
    console.print(f"{best} cameras sustained; report: {Path(args.out) / 'capacity.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which CPU levers pay: the whole pipeline under each setting, side by side in one run.

Same clips (4 x 1080p25 H.264 by default), same model, 5 analysed fps per camera, interleaved rounds
(the best of each counts), analysed frames per second for:

- inference placement: one batch at a time on every core, or ``batching.workers`` batches at once on
  a share of the cores each (and ONNX Runtime alone both ways, on pre-decoded batches);
- batch size (``batching.max_batch_size``) and how long a batch waits to fill (``timeout_ms``);
- the letterbox canvas: the smallest that holds a 16:9 frame, or the model's square (ONNX Runtime
  alone, the only cost it changes);
- FFmpeg's decode threads per camera: CPU time per decoded frame (what a busy server pays).

Writes ``levers.{json,md,png}``.

    safecity bench levers [--int8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from benchmarks.plot import bar_chart
from benchmarks.throughput import add_clip_options, bench_clips, bench_onnx_alone, bench_pipeline
from pipeline.devices import inference_workers
from pipeline.registry import fetch_model, int8_path

console = Console(stderr=True)


@dataclass
class Variant:
    """One pipeline setting: its lever, its label, and what it changes in the config."""

    lever: str
    label: str
    batching: dict[str, Any] = field(default_factory=dict)
    threads: int = 0
    batch: int = 4


def variants(cores: int) -> list[Variant]:
    auto = inference_workers(None, "cpu")
    out = [
        Variant("placement", f"1 batch at a time on {cores} threads", {"workers": 1}),
        Variant("placement", "1 batch at a time on 1 thread", {"workers": 1}, threads=1),
    ]
    if auto > 1:
        out.append(
            Variant("placement", f"{auto} batches at a time, {cores // auto} thread(s) each (default)")
        )
    out += [Variant("batch size", f"max_batch_size {b}", batch=b) for b in (1, 2, 8)]
    out += [Variant("batch timeout", f"timeout_ms {t}", {"timeout_ms": t}) for t in (5, 50)]
    return out


def decode_cpu_ms(path: Path, thread_count: int) -> tuple[float, float]:
    """CPU and wall milliseconds per decoded frame of ``path`` with FFmpeg's ``thread_count`` (0: auto)."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = thread_count
        n = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in c.decode(stream):
            n += 1
        return (time.process_time() - cpu0) / n * 1e3, (time.perf_counter() - wall0) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="safecity bench levers", description=__doc__.split("\n\n")[0])
    add_clip_options(ap, width=1920, height=1080)
    ap.add_argument(
        "--int8", action="store_true", help="the model's INT8 export (`safecity models quantize`)"
    )
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best of each counts")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)

    model = Path(args.model) if args.model.endswith(".onnx") else fetch_model(args.model)
    if args.int8:
        if args.model.endswith(".onnx"):
            raise SystemExit("--int8 takes a manifest name; give the INT8 file as --model instead")
        model = int8_path(args.model)
        if not model.is_file():
            raise SystemExit(f"{model} not found: make it with `safecity models quantize {args.model} ...`")
    cores = os.cpu_count() or 1
    clips, frames = bench_clips(args)
    runs = variants(cores)
    alone: dict[str, dict[str, Any]] = {
        "1 batch at a time, every core": {"workers": 1},
        "2 batches at a time, half the cores each": {"workers": 2},
        f"square canvas ({args.imgsz}x{args.imgsz})": {"workers": 1, "rect": False},
    }
    pipe: dict[str, list[float]] = {v.label: [] for v in runs}
    ort: dict[str, list[float]] = {k: [] for k in alone}
    steps = args.repeats * (len(runs) + len(alone))
    with tempfile.TemporaryDirectory() as tmpdir, Progress(console=console, transient=True) as progress:
        task = progress.add_task("levers", total=steps)
        for r in range(args.repeats):
            for label, kw in alone.items():
                progress.update(task, description=f"round {r + 1}: ONNX Runtime alone, {label}")
                ort[label].append(bench_onnx_alone(model, frames, imgsz=args.imgsz, batch=4, **kw))
                progress.advance(task)
            for i, v in enumerate(runs):
                progress.update(task, description=f"round {r + 1}: pipeline, {v.label}")
                tmp = Path(tmpdir) / f"r{r}-{i}"
                tmp.mkdir()
                fps = bench_pipeline(
                    model,
                    clips,
                    fps=args.analytics_fps,
                    imgsz=args.imgsz,
                    batch=v.batch,
                    tmp=tmp,
                    batching=v.batching,
                    threads=v.threads,
                )
                pipe[v.label].append(fps)
                progress.advance(task)
    decode = {
        ("auto" if n == 0 else str(n)): dict(
            zip(("cpu_ms", "wall_ms"), decode_cpu_ms(clips[0], n), strict=True)
        )
        for n in (1, 2, 0)
    }
    best_pipe = {k: max(v) for k, v in pipe.items()}
    best_ort = {k: max(v) for k, v in ort.items()}
    ceiling = max(
        best_ort["1 batch at a time, every core"], best_ort["2 batches at a time, half the cores each"]
    )
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {cores} CPUs",
        "model": model.name,
        "clips": f"{args.cameras} x {args.width}x{args.height} {args.fps} fps {args.seconds} s H.264",
        "analytics_fps_per_camera": args.analytics_fps,
        "analysed_frames": len(frames),
        "pipeline_fps": {v.label: {"lever": v.lever, "fps": round(best_pipe[v.label], 2)} for v in runs},
        "onnxruntime_alone_fps": {k: round(v, 2) for k, v in best_ort.items()},
        "decode_ms_per_frame_by_ffmpeg_threads": {
            k: {m: round(x, 3) for m, x in d.items()} for k, d in decode.items()
        },
        "all_rounds": {"pipeline": pipe, "onnxruntime_alone": ort},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.json").write_text(json.dumps(report, indent=2))
    md = [
        f"# CPU levers ({report['date']}, {report['machine']})",
        "",
        f"{report['clips']}; model {model.name} at {args.imgsz} px; {args.analytics_fps} analysed fps per "
        f"camera; {len(frames)} analysed frames per run; best of {args.repeats} interleaved rounds.",
        "",
        "| lever | setting | pipeline frames/s | ÷ ONNX Runtime alone at its best |",
        "|---|---|---:|---:|",
        *(
            f"| {v.lever} | {v.label} | {best_pipe[v.label]:.2f} | {best_pipe[v.label] / ceiling:.2f} |"
            for v in runs
        ),
        "",
        "| ONNX Runtime alone (pre-decoded batches of 4) | frames/s |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in best_ort.items()),
        "",
        "| FFmpeg decode threads per camera | CPU ms per frame | wall ms per frame |",
        "|---|---:|---:|",
        *(f"| {k} | {d['cpu_ms']:.2f} | {d['wall_ms']:.2f} |" for k, d in decode.items()),
    ]
    (out / "levers.md").write_text("\n".join(md) + "\n")
    bar_chart(
        [v.label.replace(" (default)", "\n(default)").replace(", ", ",\n") for v in runs],
        [best_pipe[v.label] for v in runs],
        out / "levers.png",
        title=f"pipeline, {model.name}, {report['clips']}",
        ylabel="analysed frames / s",
        size=(11, 4),
    )
    console.print("\n".join(md))
    print(f"wrote {out / 'levers.json'}, {out / 'levers.md'}, {out / 'levers.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

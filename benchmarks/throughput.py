"""Throughput, side by side in one run on the same generated clips and model.

(a) ONNX Runtime alone on pre-decoded, pre-letterboxed batches (the ceiling for this model here: the
    better of one batch at a time on every core and two at a time on half the cores each);
(b) the whole pipeline: decode every frame, sample, batch, detect, track, rules, events;
(c) the loop a user would otherwise write: Ultralytics ``model.track(source, stream=True)`` per camera,
    with ``vid_stride`` set to the same sampling rate.
Prints analysed frames per second for each and the ratios; writes JSON, Markdown and a PNG plot.

    python -m benchmarks.throughput --cameras 4 --seconds 6
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.plot import bar_chart  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from pipeline.detect.onnx_backend import OnnxDetector  # noqa: E402
from pipeline.devices import inference_workers, model_threads  # noqa: E402
from pipeline.events.sink import Sink  # noqa: E402
from pipeline.footage import generate_clips  # noqa: E402
from pipeline.preprocess import letterbox_batch  # noqa: E402
from pipeline.registry import data_dir, fetch_model  # noqa: E402
from pipeline.runner import Runner  # noqa: E402
from pipeline.types import Frame, FrameBatch  # noqa: E402

console = Console(stderr=True)


def sampled_frames(path: Path, every: int) -> list[torch.Tensor]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(torch.from_numpy(f.to_ndarray(format="rgb24")))
    return out


def bench_onnx_alone(
    model: Path,
    frames: list[torch.Tensor],
    *,
    imgsz: int,
    batch: int,
    workers: int = 1,
    rect: bool | None = None,
) -> float:
    """ONNX Runtime on pre-decoded, pre-letterboxed batches: ``workers`` threads sharing one session,
    the cores shared out between them (1: one batch at a time on every core); ``rect``: the smallest
    canvas that holds the frame (None: as the pipeline does, when the model takes any size)."""
    det = OnnxDetector(
        model,
        name="m",
        imgsz=imgsz,
        conf_threshold=0.25,
        iou_threshold=0.7,
        max_det=300,
        threads=model_threads(0, workers),
    )
    batches = [
        letterbox_batch(frames[i : i + batch], size=det.imgsz, rect=det.rect if rect is None else rect)[0]
        for i in range(0, len(frames), batch)
    ]
    det.infer(batches[0])  # warm-up

    errors: list[BaseException] = []

    def work(mine: list[torch.Tensor]) -> None:
        try:
            for b in mine:
                det.infer(b)
        except BaseException as err:  # noqa: BLE001 - re-raised below: a failed run is no figure
            errors.append(err)

    threads = [threading.Thread(target=work, args=(batches[i::workers],)) for i in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    det.close()
    if errors:
        raise errors[0]
    return len(frames) / elapsed


def best_onnx_alone(model: Path, frames: list[torch.Tensor], *, imgsz: int, batch: int) -> float:
    """ONNX Runtime alone at its best here: one batch on every core, or two on half each."""
    return max(
        bench_onnx_alone(model, frames, imgsz=imgsz, batch=batch, workers=w)
        for w in sorted({1, inference_workers(None, "cpu")})
    )


def bench_pipeline(
    model: Path,
    clips: list[Path],
    *,
    fps: float,
    imgsz: int,
    batch: int,
    tmp: Path,
    batching: dict[str, Any] | None = None,
    threads: int = 0,
) -> float:
    """The whole pipeline on ``clips`` played once as fast as it goes; ``batching`` and ``threads``
    (the model's) as in the config (``benchmarks/levers.py`` varies them)."""
    port = 5600 + os.getpid() % 300
    batching_cfg: dict[str, Any] = {"max_batch_size": batch, "timeout_ms": 20, **(batching or {})}
    cfg = parse_config(
        {
            "edge_id": "bench",
            "device": "cpu",
            "cameras": [
                {"id": f"cam{i}", "source": str(p), "realtime": False, "loop": False, "analytics_fps": fps}
                for i, p in enumerate(clips)
            ],
            "model": {"path": str(model), "imgsz": imgsz, "threads": threads},
            "batching": batching_cfg,
            "sink": {
                "endpoint": f"tcp://127.0.0.1:{port}",
                "outbox": str(tmp / "outbox.sqlite"),
                "insecure": True,
            },
        }
    )
    stop = threading.Event()
    assert isinstance(cfg.sink.endpoint, str)
    sink = Sink(bind=cfg.sink.endpoint, store=tmp / "sink.sqlite")
    threading.Thread(target=sink.serve, args=(stop,), daemon=True).start()
    runner = Runner(cfg)
    runner.detector.detect(
        FrameBatch([Frame("warm-up", torch.zeros(64, 64, 3, dtype=torch.uint8), 0.0, 0, 0.0)])
    )
    t0 = time.perf_counter()
    stats = runner.run(None)
    elapsed = time.perf_counter() - t0
    stop.set()
    return stats.frames / elapsed


def bench_ultralytics(model: Path, clips: list[Path], *, stride: int, imgsz: int) -> float:
    from ultralytics import YOLO

    n = 0
    yolo = YOLO(str(model), task="detect")
    next(iter(yolo.predict(np.zeros((64, 64, 3), np.uint8), imgsz=imgsz, verbose=False)))  # warm-up
    t0 = time.perf_counter()
    for clip in clips:  # one loop per camera, one after the other, as a user script would
        yolo = YOLO(str(model), task="detect")
        for _ in yolo.track(source=str(clip), stream=True, vid_stride=stride, imgsz=imgsz, verbose=False):
            n += 1
    return n / (time.perf_counter() - t0)


def add_clip_options(ap: argparse.ArgumentParser, *, width: int, height: int) -> None:
    """The generated clips, the model and its input size: what the CPU benchmarks share."""
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each generated clip")
    ap.add_argument("--width", type=int, default=width)
    ap.add_argument("--height", type=int, default=height)
    ap.add_argument("--fps", type=int, default=25, help="frame rate of the clips")
    ap.add_argument("--analytics-fps", type=float, default=5.0)
    ap.add_argument("--model", default="fall-yolov8", help="a manifest name or an .onnx path")
    ap.add_argument("--imgsz", type=int, default=640)


def bench_clips(args: argparse.Namespace) -> tuple[list[Path], list[torch.Tensor]]:
    """The clips ``add_clip_options`` asked for (generated once, reused), and the frames the pipeline
    samples of them, decoded (for ONNX Runtime alone)."""
    stride = max(int(round(args.fps / args.analytics_fps)), 1)
    with console.status("generating clips"):
        clips = generate_clips(
            data_dir() / "bench",
            count=args.cameras,
            width=args.width,
            height=args.height,
            fps=args.fps,
            seconds=args.seconds,
            gop=2 * args.fps,
        )
    return clips, [f for c in clips for f in sampled_frames(c, stride)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="safecity bench", description=__doc__.split("\n\n")[0])
    add_clip_options(ap, width=1280, height=720)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--int8",
        nargs="?",
        const="auto",
        default=None,
        help="also the INT8 export (`safecity models quantize`; a path, or the model's own by default)",
    )
    ap.add_argument("--repeats", type=int, default=2, help="rounds of (a), (b), (c); the best of each counts")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)

    model = Path(args.model) if args.model.endswith(".onnx") else fetch_model(args.model)
    stride = max(int(round(args.fps / args.analytics_fps)), 1)
    clips, frames = bench_clips(args)
    runs: dict[str, list[float]] = {
        "onnxruntime_alone_fps": [],
        "pipeline_fps": [],
        "ultralytics_track_fps": [],
    }
    int8 = None
    if args.int8:
        from pipeline.registry import int8_path

        if args.int8 == "auto" and args.model.endswith(".onnx"):
            raise SystemExit("--int8: give the INT8 file's path when --model is a file")
        int8 = Path(args.int8) if args.int8 != "auto" else int8_path(args.model)
        if not int8.is_file():
            raise SystemExit(
                f"{int8} not found: make it with `safecity models quantize {args.model} --calibrate ...`"
            )
        runs.update({"onnxruntime_alone_int8_fps": [], "pipeline_int8_fps": []})
    with tempfile.TemporaryDirectory() as tmpdir:
        for r in range(args.repeats):  # interleaved rounds: machine noise hits all three alike
            with console.status(
                f"round {r + 1}/{args.repeats}: (a) ONNX Runtime alone on pre-decoded batches"
            ):
                runs["onnxruntime_alone_fps"].append(
                    best_onnx_alone(model, frames, imgsz=args.imgsz, batch=args.batch)
                )
            with console.status(f"round {r + 1}/{args.repeats}: (b) whole pipeline"):
                tmp = Path(tmpdir) / f"r{r}"
                tmp.mkdir()
                runs["pipeline_fps"].append(
                    bench_pipeline(
                        model, clips, fps=args.analytics_fps, imgsz=args.imgsz, batch=args.batch, tmp=tmp
                    )
                )
            if int8 is not None:
                with console.status(f"round {r + 1}/{args.repeats}: (a, b) the same with the INT8 model"):
                    runs["onnxruntime_alone_int8_fps"].append(
                        best_onnx_alone(int8, frames, imgsz=args.imgsz, batch=args.batch)
                    )
                    tmp8 = Path(tmpdir) / f"r{r}-int8"
                    tmp8.mkdir()
                    runs["pipeline_int8_fps"].append(
                        bench_pipeline(
                            int8, clips, fps=args.analytics_fps, imgsz=args.imgsz, batch=args.batch, tmp=tmp8
                        )
                    )
            with console.status(f"round {r + 1}/{args.repeats}: (c) Ultralytics model.track per camera"):
                runs["ultralytics_track_fps"].append(
                    bench_ultralytics(model, clips, stride=stride, imgsz=args.imgsz)
                )
    results = {k: max(v) for k, v in runs.items()}
    ratio_a = results["pipeline_fps"] / results["onnxruntime_alone_fps"]
    ratio_c = results["pipeline_fps"] / results["ultralytics_track_fps"]
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name(0),
        "model": str(model.name),
        "imgsz": args.imgsz,
        "clips": f"{args.cameras} x {args.width}x{args.height} {args.fps} fps {args.seconds} s H.264, "
        f"GOP {2 * args.fps}",
        "analytics_fps_per_camera": args.analytics_fps,
        "batch": args.batch,
        "analysed_frames": len(frames),
        **{k: round(v, 2) for k, v in results.items()},
        "all_rounds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "pipeline_vs_onnxruntime_alone": round(ratio_a, 3),
        "pipeline_vs_ultralytics_track": round(ratio_c, 3),
        "targets": {"pipeline_vs_onnxruntime_alone": 0.9, "pipeline_vs_ultralytics_track": 2.0},
    }
    if int8 is not None:
        report["int8_model"] = int8.name
        report["pipeline_int8_vs_onnxruntime_alone_int8"] = round(
            results["pipeline_int8_fps"] / results["onnxruntime_alone_int8_fps"], 3
        )
        report["pipeline_int8_vs_ultralytics_track"] = round(
            results["pipeline_int8_fps"] / results["ultralytics_track_fps"], 3
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(report, indent=2))
    md = [
        f"# Throughput ({report['date']}, {report['machine']})",
        "",
        f"{report['clips']}; model {report['model']} at {args.imgsz} px; "
        f"{args.analytics_fps} analysed fps per "
        f"camera; batch {args.batch}; {len(frames)} analysed frames per run.",
        "",
        "| run | analysed frames/s | pipeline ÷ this | target |",
        "|---|---:|---:|---:|",
        f"| (a) ONNX Runtime alone, pre-decoded batches | {results['onnxruntime_alone_fps']:.2f} "
        f"| {ratio_a:.2f} | >= 0.9 |",
        f"| (b) whole pipeline | {results['pipeline_fps']:.2f} | 1.00 | |",
        f"| (c) Ultralytics model.track per camera | {results['ultralytics_track_fps']:.2f} "
        f"| {ratio_c:.2f} | >= 2.0 |",
    ]
    if int8 is not None:
        p8 = results["pipeline_int8_fps"]
        md += [
            f"| (a8) ONNX Runtime alone, INT8 ({int8.name}) | {results['onnxruntime_alone_int8_fps']:.2f} "
            f"| INT8 pipeline ÷ this: {report['pipeline_int8_vs_onnxruntime_alone_int8']:.2f} | >= 0.9 |",
            f"| (b8) whole pipeline, INT8 | {p8:.2f} | INT8 pipeline ÷ (c): "
            f"{report['pipeline_int8_vs_ultralytics_track']:.2f} | >= 2.0 |",
        ]
    (out / "throughput.md").write_text("\n".join(md) + "\n")
    _plot(results, out / "throughput.png", title=f"{report['model']} @ {args.imgsz}px, {report['machine']}")
    table = Table(title="analysed frames per second (same clips, same model, one run)")
    for col in ("run", "frames/s", "pipeline ÷ run"):
        table.add_column(col)
    table.add_row("(a) ONNX Runtime alone", f"{results['onnxruntime_alone_fps']:.2f}", f"{ratio_a:.2f}")
    table.add_row("(b) pipeline", f"{results['pipeline_fps']:.2f}", "1.00")
    table.add_row("(c) Ultralytics track", f"{results['ultralytics_track_fps']:.2f}", f"{ratio_c:.2f}")
    Console().print(table)
    print(f"wrote {out / 'throughput.json'}, {out / 'throughput.md'}, {out / 'throughput.png'}")
    return 0


def _plot(results: dict[str, float], path: Path, *, title: str) -> None:
    values = [results["onnxruntime_alone_fps"], results["pipeline_fps"], results["ultralytics_track_fps"]]
    labels = ["ONNX Runtime\nalone", "pipeline", "Ultralytics\ntrack loop"]
    colors = ["#999999", "#1f77b4", "#ff7f0e"]
    bar_chart(labels, values, path, title=title, ylabel="analysed frames / s", colors=colors)


if __name__ == "__main__":
    raise SystemExit(main())

"""One detector and two on the same batches, side by side in one run (vtest.avi's frames, decoded
beforehand; the models as the pipeline runs them, CPU here).

(a) the COCO model alone, (b) the fall model alone (each as a set of one: letterbox, inference,
decode, NMS); (c) the set of both: each batch letterboxed once per canvas, both models, and every
frame's detections merged into one object per person; (d) the two models one after the other by
hand: each detector's own ``detect`` on the batch, two lists of detections, nothing merged.
Rounds are interleaved so that machine noise hits all four alike; the best round of each counts.
Prints frames/s and ratios; writes JSON, Markdown and a PNG plot.

    python -m benchmarks.detectors --frames 64 --batch 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

import av  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.plot import bar_chart  # noqa: E402
from pipeline.config import parse_config  # noqa: E402
from pipeline.detect import create_detectors  # noqa: E402
from pipeline.footage import fetch_vtest  # noqa: E402
from pipeline.registry import fetch_model  # noqa: E402
from pipeline.types import Frame, FrameBatch  # noqa: E402

COCO, FALL = "yolov3-tiny-coco", "fall-yolov8"
RUNS = {
    "coco_alone": "(a) COCO model alone",
    "fall_alone": "(b) fall model alone",
    "both_merged": "(c) both, one set, merged",
    "both_by_hand": "(d) both, one after the other by hand",
}


def frames_of(path: Path, count: int, every: int) -> list[Frame]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(
                    Frame(
                        f"cam{len(out) % 4}", torch.from_numpy(f.to_ndarray(format="rgb24")), i / 10, i, 0.0
                    )
                )
            if len(out) == count:
                break
    return out


def timed(fn: Callable[[FrameBatch], object], batches: list[FrameBatch]) -> float:
    fn(batches[0])  # warm-up
    t0 = time.perf_counter()
    for b in batches:
        fn(b)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.detectors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=64, help="frames of vtest.avi (every 5th)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)

    for name in (COCO, FALL):
        fetch_model(name)
    frames = frames_of(fetch_vtest(), args.frames, every=5)
    batches = [FrameBatch(frames[i : i + args.batch]) for i in range(0, len(frames), args.batch)]
    cams = [{"id": f"cam{i}", "source": "x.mp4"} for i in range(4)]
    models = [{"name": COCO, "conf_threshold": 0.3}, {"name": FALL, "conf_threshold": 0.3}]

    def detector_set(chosen: list[dict[str, object]]):  # noqa: ANN202 - a DetectorSet
        return create_detectors(parse_config({"device": args.device, "cameras": cams, "models": chosen}))

    coco, fall, both = detector_set(models[:1]), detector_set(models[1:]), detector_set(models)
    by_hand = [m.detector for m in both.members]
    fns: dict[str, Callable[[FrameBatch], object]] = {
        "coco_alone": coco.detect,
        "fall_alone": fall.detect,
        "both_merged": both.detect,
        "both_by_hand": lambda b: [d.detect(b) for d in by_hand],
    }
    rounds: dict[str, list[float]] = {k: [] for k in RUNS}
    for _ in track(range(args.repeats), description="interleaved rounds", console=Console(stderr=True)):
        for key, fn in fns.items():
            rounds[key].append(timed(fn, batches))
    best = {k: max(v) for k, v in rounds.items()}
    machine = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU"
    )
    ratios = {
        "both_merged_vs_by_hand": best["both_merged"] / best["both_by_hand"],
        "both_merged_vs_coco_alone": best["both_merged"] / best["coco_alone"],
        "both_merged_vs_sum_of_alone": best["both_merged"]
        * (1 / best["coco_alone"] + 1 / best["fall_alone"]),
    }
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "frames": len(frames),
        "batch": args.batch,
        "models": {COCO: "416 px", FALL: "640 px"},
        **{f"{k}_fps": round(v, 2) for k, v in best.items()},
        "all_rounds": {k: [round(x, 2) for x in v] for k, v in rounds.items()},
        **{k: round(v, 3) for k, v in ratios.items()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detectors.json").write_text(json.dumps(report, indent=2))
    md = [
        f"# One and two detectors on the same batches ({report['date']}, {machine})",
        "",
        f"{len(frames)} frames of vtest.avi (768x576), batches of {args.batch}; best of {args.repeats} "
        "interleaved rounds.",
        "",
        "| run | frames/s | (c) ÷ this |",
        "|---|---:|---:|",
        *(f"| {RUNS[k]} | {best[k]:.2f} | {best['both_merged'] / best[k]:.2f} |" for k in RUNS),
        "",
        "(c) against running each model alone and adding the times: "
        f"{ratios['both_merged_vs_sum_of_alone']:.2f} "
        "(1.00: the set costs exactly its two models; the models' canvases differ, 416 and 640 px, so "
        "there is no letterbox to share here).",
    ]
    (out / "detectors.md").write_text("\n".join(md) + "\n")
    _plot(best, out / "detectors.png", title=f"{len(frames)} vtest frames, batch {args.batch}, {machine}")
    table = Table(title="frames per second (same batches, one run)")
    for col in ("run", "frames/s", "(c) ÷ run"):
        table.add_column(col)
    for k, label in RUNS.items():
        table.add_row(label, f"{best[k]:.2f}", f"{best['both_merged'] / best[k]:.2f}")
    Console().print(table)
    print(f"wrote {out / 'detectors.json'}, {out / 'detectors.md'}, {out / 'detectors.png'}")
    return 0


def _plot(best: dict[str, float], path: Path, *, title: str) -> None:
    labels = [RUNS[k].split(") ", 1)[1].replace(", ", "\n") for k in RUNS]
    bar_chart(labels, list(best.values()), path, title=title, ylabel="frames / s", size=(7, 3.5))


if __name__ == "__main__":
    raise SystemExit(main())

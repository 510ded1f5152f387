"""Soak run of the analytics: N cameras of scripted traffic for H simulated hours at 5 fps, with the
process's resident memory measured as it goes. Memory must stay flat: state of ended tracks and idle
incidents is dropped. Writes JSON and a PNG plot.

    python -m benchmarks.soak --cameras 20 --hours 24   # a full day: about 2 hours on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from pipeline.analytics.camera import CameraAnalytics
from pipeline.config import parse_config
from pipeline.types import Track

LABELS = ["person", "car", "person", "handbag", "dog", "motorcycle", "cow"]


def rss_mib() -> float:
    """Resident memory of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=20)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    zones = [
        {"name": "road", "kinds": ["carriageway"], "polygon": [[0, 400], [1280, 400], [1280, 720], [0, 720]]},
        {
            "name": "fp",
            "kinds": ["no_encroachment"],
            "polygon": [[0, 300], [1280, 300], [1280, 400], [0, 400]],
        },
        {
            "name": "shop",
            "kinds": ["protected"],
            "polygon": [[900, 100], [1200, 100], [1200, 300], [900, 300]],
        },
    ]
    cfg = parse_config(
        {
            "cameras": [{"id": f"c{i}", "source": "x.mp4", "zones": zones} for i in range(args.cameras)],
            "model": {"backend": "scripted", "scripted_detections": "unused.jsonl"},
            "rules": {"encroachment": {"dwell_seconds": 20}, "stray_animal": {"dwell_seconds": 10}},
        }
    )
    cams = [CameraAnalytics(cfg, i, ()) for i in range(args.cameras)]
    frames = int(args.hours * 3600 * args.fps)
    samples: list[tuple[float, float]] = []
    incidents = 0
    t_wall = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task("soak", total=frames)
        for k in range(frames):
            t = k / args.fps
            for c, ca in enumerate(cams):
                tracks = []
                for j in range(6):
                    tid = (k // 100) * 10 + j  # objects live 20 s (some dwell, some stop), then new ones
                    x = (k * 3 * (j % 3) + j * 180 + c * 37) % 1200
                    box = np.array([x, 180 + j * 80, x + 60, 300 + j * 80], np.float32)
                    tracks.append(Track(tid, box, 0.8, 0, LABELS[(j + k // 100) % len(LABELS)]))
                incidents += len(
                    ca.analyse_tracks(tracks, t=t, wall_time=1.8e9 + t, frame_w=1280, frame_h=720)
                )
            if k % max(frames // 200, 1) == 0 or k == frames - 1:
                samples.append((t / 3600, rss_mib()))
            progress.advance(task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first = samples[len(samples) // 10][1]
    report = {
        "cameras": args.cameras,
        "hours": args.hours,
        "fps": args.fps,
        "frames_per_camera": frames,
        "incident_steps": incidents,
        "wall_seconds": round(time.perf_counter() - t_wall, 1),
        "rss_mib_at_10pct": round(first, 2),
        "rss_mib_at_end": round(samples[-1][1], 2),
        "rss_mib_max": round(max(m for _, m in samples), 2),
        "samples": samples,
    }
    (out / "soak.json").write_text(json.dumps(report, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([h for h, _ in samples], [m for _, m in samples])
    ax.set_xlabel("simulated hours")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title(f"analytics soak: {args.cameras} cameras at {args.fps:g} fps", fontsize=9)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=120)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

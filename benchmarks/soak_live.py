"""Soak run of a whole edge while its cameras change: N cameras (recordings looped in real time,
and RTSP cameras served by GStreamer's RTSP server), a real sink; every ``--change-every`` seconds one
camera is removed and another added through the control interface (HTTP), every
``--restart-every`` seconds an RTSP server is restarted. Every few seconds: the process's resident
memory, threads and open file descriptors. At the end: every incident event the edge committed must
be in the sink's store, and every evidence clip they name fetched. Writes JSON, Markdown and a PNG plot.

    python -m benchmarks.soak_live --cameras 20 --rtsp 4 --minutes 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.progress import Progress

from benchmarks.soak import rss_mib
from pipeline.config import load_config
from pipeline.control import ControlServer, request
from pipeline.events.clip_store import ClipStore, clips_dir
from pipeline.events.sink import Sink
from pipeline.footage import generate_clip
from pipeline.metrics import Metrics
from pipeline.runner import Runner

GST_SERVER = Path(__file__).resolve().parent.parent / "tests" / "gst_rtsp.py"
ZONE = {"name": "footpath", "polygon": [[0, 150], [320, 150], [320, 240], [0, 240]]}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """GStreamer's RTSP server in a process (tests/gst_rtsp.py, run by the system's Python)."""

    def __init__(self, clip: Path) -> None:
        self.port = free_port()
        self.args = ["/usr/bin/python3", str(GST_SERVER), "--port", str(self.port), "--clip", str(clip)]
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"the RTSP server did not start: {line.strip()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class SoakResult:
    samples: list[dict[str, float]] = field(default_factory=list)
    changes: int = 0
    restarts: int = 0
    committed: int = 0
    delivered: int = 0
    missing: int = 0
    clips: int = 0  # events that carry an evidence clip
    clips_fetched: int = 0  # of those clips, in the sink's store with the right digest
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        first, last = self.samples[0], self.samples[-1]
        return {
            "samples": len(self.samples),
            "camera_changes": self.changes,
            "rtsp_restarts": self.restarts,
            "rss_mib_first": first["rss_mib"],
            "rss_mib_last": last["rss_mib"],
            "rss_mib_max": max(s["rss_mib"] for s in self.samples),
            "threads_first": first["threads"],
            "threads_last": last["threads"],
            "threads_max": max(s["threads"] for s in self.samples),
            "fds_first": first["fds"],
            "fds_last": last["fds"],
            "fds_max": max(s["fds"] for s in self.samples),
            "events_committed": self.committed,
            "events_delivered": self.delivered,
            "events_missing": self.missing,
            "clips": self.clips,
            "clips_fetched": self.clips_fetched,
            "clip_buffer_mib_max": max(s.get("clip_buffer_mib", 0.0) for s in self.samples),
            "error": self.error,
        }


def run_soak(
    work: Path,
    *,
    cameras: int,
    rtsp: int,
    seconds: float,
    change_every: float,
    restart_every: float,
    sample_every: float = 5.0,
    progress: Any = None,
) -> SoakResult:
    """The soak itself (see the module's docstring); ``progress(done_seconds)`` as it goes."""
    work = work.resolve()  # the config's paths are relative to it, as the config file's are to its folder
    work.mkdir(parents=True, exist_ok=True)
    clips = [
        generate_clip(work / f"clip{i}.mp4", width=320, height=240, fps=25, seconds=2.0, gop=25, seed=i)
        for i in range(3)
    ]
    long_clip = generate_clip(work / "long.mp4", width=320, height=240, fps=25, seconds=300.0, gop=25, seed=9)
    servers = [RtspServer(long_clip) for _ in range(rtsp)]
    # every camera id that may come: a person stands on the footpath half of each 2 s
    ids = [f"cam{i}" for i in range(cameras + int(seconds / change_every) + 2)]
    rows = [
        {"camera": cid, "t": round(k * 0.1, 2), "boxes": [[100, 120, 140, 220, 0.9, 0]] if k < 10 else []}
        for cid in ids
        for k in range(20)
    ]
    script = work / "script.jsonl"
    script.write_text("\n".join(json.dumps(r) for r in [{"names": ["person"], "period": 2.0}, *rows]))

    def camera(cid: str, n: int) -> dict[str, Any]:
        if n < rtsp:
            source: dict[str, Any] = {
                "source": servers[n].url,
                "read_timeout_seconds": 2,
                "reconnect_max_seconds": 2,
            }
        else:
            source = {"source": str(clips[n % len(clips)]), "loop": True}
        return {"id": cid, "analytics_fps": 5, "zones": [ZONE], **source}

    sink_port = free_port()
    config = work / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "edge_id": "soak",
                "cameras": [camera(ids[n], n) for n in range(cameras)],
                "model": {"backend": "scripted", "scripted_detections": str(script)},
                "rules": {
                    "encroachment": {
                        "dwell_seconds": 0.3,
                        "stationary_seconds": 0.2,
                        "confirm_seconds": 0.2,
                        "clear_seconds": 0.3,
                        "cooldown_seconds": 0,
                    }
                },
                "sink": {
                    "endpoint": f"tcp://127.0.0.1:{sink_port}",
                    "outbox": str(work / "outbox.sqlite"),
                    "insecure": True,
                    "drain_seconds": 30,
                },
                "status_interval_seconds": 5,
                # the recordings the soak adds as cameras through the control interface
                "sources": {"roots": sorted({str(Path(c).parent) for c in clips})},
            }
        )
    )
    stop_sink = threading.Event()
    sink = Sink(bind=f"tcp://127.0.0.1:{sink_port}", store=work / "sink.sqlite")
    sink_thread = threading.Thread(target=sink.serve, args=(stop_sink,), daemon=True)
    sink_thread.start()
    runner = Runner(load_config(config), metrics=Metrics())
    control = ControlServer(runner, "127.0.0.1:0")
    runner.serving = True
    control.start()
    result = SoakResult()
    rng = random.Random(0)
    running = {ids[n]: n for n in range(cameras)}
    next_id = cameras
    runner.start()
    t0 = time.monotonic()
    next_change, next_restart, next_sample = t0 + change_every, t0 + restart_every, t0
    try:
        while (now := time.monotonic()) - t0 < seconds and runner.error is None:
            if now >= next_sample:
                result.samples.append(
                    {
                        "t": round(now - t0, 1),
                        "rss_mib": round(rss_mib(), 1),
                        "threads": threading.active_count(),
                        "fds": open_fds(),
                        "cameras": len(runner.sources),
                        "clip_buffer_mib": round((runner.rings.nbytes if runner.rings else 0) / 2**20, 1),
                    }
                )
                next_sample += sample_every
            if now >= next_change:  # one camera goes, another comes (the same kind: file or RTSP)
                gone = rng.choice(sorted(running))
                kind = running.pop(gone)
                code, reply = request(control.url + f"/cameras/{gone}", "DELETE")
                assert code == 200, reply
                cid = ids[next_id]
                next_id += 1
                code, reply = request(control.url + "/cameras", "POST", camera(cid, kind))
                assert code == 201, reply
                running[cid] = kind
                result.changes += 1
                next_change += change_every
            if servers and now >= next_restart:
                server = servers[result.restarts % len(servers)]
                server.stop()
                time.sleep(1.0)
                server.start()
                result.restarts += 1
                next_restart += restart_every
            if progress:
                progress(now - t0)
            time.sleep(0.2)
    finally:
        runner.request_stop()
        runner.stop()  # drains the outbox to the sink (drain_seconds)
        control.close()
        for s in servers:
            s.stop()
        time.sleep(1.0)
        stop_sink.set()
        sink_thread.join(10)
    result.error = None if runner.error is None else str(runner.error)
    with sqlite3.connect(work / "outbox.sqlite") as db:
        committed = {row[0] for row in db.execute("SELECT event_id FROM outbox")}
    with sqlite3.connect(work / "sink.sqlite") as db:
        delivered = {row[0] for row in db.execute("SELECT event_id FROM events WHERE source = 'soak'")}
    result.committed, result.delivered = len(committed), len(committed & delivered)
    result.missing = len(committed - delivered)
    with sqlite3.connect(work / "sink.sqlite") as db:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM events WHERE source = 'soak'")]
    shas = {e["evidence"]["clip"]["sha256"] for e in bodies if (e.get("evidence") or {}).get("clip")}
    store = ClipStore(clips_dir(work / "sink.sqlite"))
    result.clips = len(shas)
    result.clips_fetched = sum(
        1
        for sha in shas
        if store.has(sha) and hashlib.sha256(store.path(sha).read_bytes()).hexdigest() == sha
    )
    result.samples.append(
        {
            "t": round(time.monotonic() - t0, 1),
            "rss_mib": round(rss_mib(), 1),
            "threads": threading.active_count(),
            "fds": open_fds(),
            "cameras": 0,
        }
    )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak_live", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=20)
    ap.add_argument("--rtsp", type=int, default=4, help="how many of them are RTSP cameras")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--change-every", type=float, default=60.0, help="seconds between camera changes")
    ap.add_argument("--restart-every", type=float, default=180.0, help="seconds between RTSP server restarts")
    ap.add_argument("--work", default="data/soak-live")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60
    with Progress() as bar:
        task = bar.add_task("soak", total=seconds)
        result = run_soak(
            Path(args.work),
            cameras=args.cameras,
            rtsp=args.rtsp,
            seconds=seconds,
            change_every=args.change_every,
            restart_every=args.restart_every,
            progress=lambda done: bar.update(task, completed=done),
        )
    report = {"args": vars(args), **result.summary(), "samples": result.samples}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak_live.json").write_text(json.dumps(report, indent=2))
    s = result.summary()
    head = f"# Soak with live camera changes ({args.cameras} cameras, {args.rtsp} RTSP, {args.minutes:g} min)"
    body = (
        f"{s['camera_changes']} camera changes, {s['rtsp_restarts']} RTSP server restarts. Resident memory "
        f"{s['rss_mib_first']} -> {s['rss_mib_last']} MiB (max {s['rss_mib_max']}); threads "
        f"{s['threads_first']} -> {s['threads_last']} (max {s['threads_max']}); open files "
        f"{s['fds_first']} -> {s['fds_last']} (max {s['fds_max']}). Events committed "
        f"{s['events_committed']}, delivered {s['events_delivered']}, missing {s['events_missing']}. "
        f"Evidence clips {s['clips']}, fetched by the sink with their digest {s['clips_fetched']}; "
        f"packets kept for clips at most {s['clip_buffer_mib_max']} MiB."
    )
    (out / "soak_live.md").write_text(f"{head}\n\n{body}\n")
    _plot(result, out / "soak_live.png")
    print(json.dumps(s, indent=1))
    ok = result.missing == 0 and result.error is None and result.clips_fetched == result.clips
    return 0 if ok else 1


def _plot(result: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in result.samples]
    fig, axes = plt.subplots(3, 1, figsize=(7, 6), sharex=True)
    for ax, key, label in zip(
        axes, ("rss_mib", "threads", "fds"), ("resident MiB", "threads", "open files"), strict=True
    ):
        ax.plot(t, [s[key] for s in result.samples])
        ax.set_ylabel(label)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(f"{result.changes} camera changes, {result.restarts} RTSP restarts", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

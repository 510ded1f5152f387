"""Acknowledged delivery throughput on loopback: N incidents committed to the outbox, sent by the
real sender (DEALER), validated, stored and acknowledged by the real sink (ROUTER, SQLite), with and
without snapshots. Reports incidents per second acknowledged; writes JSON.

    python -m benchmarks.delivery --events 20000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console

from pipeline.events.outbox import Outbox
from pipeline.events.schema import build_event
from pipeline.events.sink import Sink
from pipeline.events.transport import Sender
from pipeline.registry import sha256_bytes
from pipeline.types import Incident


def run(events: int, snapshot_bytes: int, tmp: Path, port: int) -> dict[str, float]:
    snapshot = os.urandom(snapshot_bytes) if snapshot_bytes else None
    digest = sha256_bytes(snapshot) if snapshot else None
    outbox = Outbox(tmp / "outbox.sqlite")
    t0 = time.perf_counter()
    with outbox.conn:
        outbox.conn.execute("BEGIN")
        for i in range(events):
            inc = Incident(
                incident_id=f"i{i}",
                type="encroachment",
                status="start",
                severity="low",
                camera_id="cam1",
                zone="z",
                started_at=0.0,
                emitted_at=0.0,
                ended_at=None,
            )
            e = build_event(
                inc,
                source="edge-1",
                location=None,
                frame_w=1920,
                frame_h=1080,
                model_name="m",
                model_version="1",
                wall_offset=1.8e9,
                snapshot_sha256=digest,
                snapshot_bytes=snapshot_bytes,
            )
            outbox.append(e, snapshot)
    commit_s = time.perf_counter() - t0
    stop = threading.Event()
    sink = Sink(bind=f"tcp://127.0.0.1:{port}", db_path=tmp / "sink.sqlite")
    th = threading.Thread(target=sink.serve, args=(stop,), daemon=True)
    th.start()
    sink.ready.wait(5)
    sender = Sender(
        outbox_path=tmp / "outbox.sqlite",
        endpoint=f"tcp://127.0.0.1:{port}",
        metrics=None,
        max_in_flight=1000,
        ack_timeout_s=10.0,
    )
    t0 = time.perf_counter()
    sender.start()
    while outbox.count_pending() and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    sender.stop(drain_s=1)
    stop.set()
    th.join(5)
    return {
        "events": events,
        "snapshot_bytes": snapshot_bytes,
        "acked_per_second": round(events / elapsed, 1),
        "outbox_commits_per_second": round(events / commit_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    results = []
    for size in (0, 50 * 1024):
        with (
            tempfile.TemporaryDirectory() as d,
            Console(stderr=True).status(f"{args.events} events, {size} B"),
        ):
            results.append(
                run(args.events if size == 0 else args.events // 4, size, Path(d), 5700 + os.getpid() % 200)
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "delivery.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

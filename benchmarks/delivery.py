"""Acknowledged delivery throughput on loopback: N incidents committed to the outbox, sent by the
real sender (DEALER) to a real sink process (`safecity sink`: ROUTER, validation, SQLite commit,
then ack), without snapshots, with 50 KB snapshots inline and with 50 KB snapshots by reference
(fetched by the sink after the ack). Reports acknowledged incidents per second; writes JSON.
With ``--store postgresql://...`` the cases run on that PostgreSQL store too, interleaved with the
SQLite ones, and the PostgreSQL/SQLite ratios are reported (the machine's noise cancels out).

    python -m benchmarks.delivery --events 40000 [--store postgresql://iccc@db/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from pipeline.events.outbox import Outbox
from pipeline.events.schema import build_event
from pipeline.events.store import describe, open_reader
from pipeline.events.transport import Sender, SnapshotMode
from pipeline.process import settle_heap
from pipeline.registry import sha256_bytes
from pipeline.types import Incident, TrackedObject


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill_outbox(
    outbox: Outbox, events: int, snapshot_bytes: int, *, first: int = 0, source: str = "edge-1"
) -> None:
    """Commit ``events`` incident steps (``incident_id`` = h-<n>), each with its own snapshot if asked."""
    base = os.urandom(snapshot_bytes) if snapshot_bytes else b""
    batch: list[tuple[dict[str, Any], bytes | None]] = []
    for i in range(first, first + events):
        snapshot = (i.to_bytes(8, "big") + base[8:]) if snapshot_bytes else None
        inc = Incident(
            incident_id=f"h-{i}",
            type="encroachment",
            status="start",
            severity="low",
            camera_id="cam1",
            zone="footpath",
            started_at=i * 0.04,  # every event its own times, as in real traffic
            emitted_at=i * 0.04 + 1.5,
            ended_at=None,
            objects=[TrackedObject(7, "person", 0.8, (10.0, 20.0, 50.0, 120.0))],
            confidence=0.8,
        )
        e = build_event(
            inc,
            source=source,
            location=(72.8, 19.0),
            frame_w=1920,
            frame_h=1080,
            model_name="m",
            model_version="1",
            wall_offset=1.8e9,
            snapshot_sha256=sha256_bytes(snapshot) if snapshot else None,
            snapshot_bytes=snapshot_bytes,
        )
        batch.append((e, snapshot))
        if len(batch) == 1000:
            outbox.append_many(batch)
            batch = []
    if batch:
        outbox.append_many(batch)


def start_sink(db: Path | str, port: int, log: Path, clips: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", "sink", "--insecure", "--quiet", "--clips", str(clips)]
    proc = subprocess.Popen(
        [*cmd, "--bind", f"tcp://127.0.0.1:{port}", "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sink exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError("the sink did not start listening")


def run(
    events: int, snapshot_bytes: int, mode: SnapshotMode, tmp: Path, store: str | None = None
) -> dict[str, Any]:
    """One case into a new SQLite store in ``tmp``, or into the PostgreSQL ``store`` (its events
    from earlier runs stay: these are new ones)."""
    outbox = Outbox(tmp / "outbox.sqlite")
    t0 = time.perf_counter()
    fill_outbox(outbox, events, snapshot_bytes)
    commit_s = time.perf_counter() - t0
    os.sync()  # the outbox's pages reach the disk now, not while the sink is fsyncing its commits
    port = free_port()
    db = store or tmp / "sink.sqlite"
    sink = start_sink(db, port, tmp / "sink.log", tmp / "clips")
    snapshots_before = _snapshots(db)
    sender = Sender(
        outbox_path=tmp / "outbox.sqlite",
        endpoint=f"tcp://127.0.0.1:{port}",
        metrics=None,
        max_in_flight=2000,
        ack_timeout_s=10.0,
        snapshots=mode,
        source="edge-1",
    )
    sink_proc, edge_proc = psutil.Process(sink.pid), psutil.Process()
    sink_cpu0, edge_cpu0 = sum(sink_proc.cpu_times()[:2]), sum(edge_proc.cpu_times()[:2])
    try:
        t0 = time.perf_counter()
        sender.start()
        while sender.acked < events and time.perf_counter() - t0 < 600:
            time.sleep(0.01)
        acked_s = time.perf_counter() - t0
        sink_cpu = sum(sink_proc.cpu_times()[:2]) - sink_cpu0
        edge_cpu = sum(edge_proc.cpu_times()[:2]) - edge_cpu0
        fetched_s = None
        if snapshot_bytes and mode == "reference":
            while time.perf_counter() - t0 < 600:
                if _snapshots(db) - snapshots_before >= events:
                    break
                time.sleep(0.05)
            fetched_s = time.perf_counter() - t0
        sender.stop(drain_s=1)
    finally:
        sink.terminate()
        sink.wait(10)
        outbox.close()
    return {
        "store": "postgresql" if store else "sqlite",
        "events": events,
        "snapshot_bytes": snapshot_bytes,
        "snapshots": mode if snapshot_bytes else "none",
        "acked_per_second": round(events / acked_s, 1),
        "all_snapshots_at_sink_per_second": None if fetched_s is None else round(events / fetched_s, 1),
        "outbox_commits_per_second": round(events / commit_s, 1),
        "sink_cpu_us_per_event": round(sink_cpu / events * 1e6, 1),
        "edge_cpu_us_per_event": round(edge_cpu / events * 1e6, 1),
    }


def _snapshots(db: Path | str) -> int:
    reader = open_reader(db)
    if reader is None:
        return 0
    try:
        return int(reader.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0])
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=40000, help="without snapshots; a quarter with them")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--store", metavar="URL", help="a PostgreSQL store to run the cases on as well")
    args = ap.parse_args(argv)
    settle_heap()  # this process is the edge: as `safecity run` (and the sink process) do
    kinds: list[tuple[int, int, SnapshotMode]] = [
        (args.events, 0, "inline"),
        (args.events // 4, 50 * 1024, "reference"),
        (args.events // 4, 50 * 1024, "inline"),
    ]
    stores: list[str | None] = [None, args.store] if args.store else [None]
    cases = [(n, size, mode, store) for n, size, mode in kinds for store in stores]
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(cases))}
    for r in range(args.rounds):
        for i, (n, size, mode, store) in enumerate(cases):
            label = (
                f"round {r + 1}: {n} events, "
                + (f"{size // 1024} KB snapshots {mode}" if size else "no snapshots")
                + (f", into {describe(store)}" if store else ", into SQLite")
            )
            with tempfile.TemporaryDirectory() as d, Console(stderr=True).status(label):
                runs[i].append(run(n, size, mode, Path(d), store))
            print(label, "->", runs[i][-1]["acked_per_second"], "acked/s", flush=True)
    results = []
    for i in runs:
        rates = sorted(x["acked_per_second"] for x in runs[i])
        median = sorted(runs[i], key=lambda x: x["acked_per_second"])[len(rates) // 2]
        results.append({**median, "acked_per_second_min": rates[0], "acked_per_second_max": rates[-1]})
    if args.store:  # each PostgreSQL case against the SQLite one just before it, same round order
        for pg, lite in zip(results[1::2], results[0::2], strict=True):
            pg["vs_sqlite_acked"] = round(pg["acked_per_second"] / lite["acked_per_second"], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "delivery.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

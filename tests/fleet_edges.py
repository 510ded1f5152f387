"""Simulated edges for the fleet harness: several edges in one process, each with its own real outbox
and real sender given the list of sink replicas. Each commits its share of uniquely numbered incidents
(``incident_id`` h-<n>, ``tests/fault_edge.py``), waits until its outbox is drained, and the process
prints one JSON line per edge (committed, pending, failovers) and exits 0 only if all drained.

    python -m tests.fleet_edges --dir D --first 0 --edges 10 --count 2000 --endpoint tcp://... --endpoint ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from pipeline.events.outbox import Outbox
from pipeline.events.transport import Sender

from .fault_edge import incident_event


def edge(name: str, outbox_path: Path, endpoints: list[str], count: int, chunk: int, drain_s: float,
         out: dict[str, dict]) -> None:  # fmt: skip
    outbox = Outbox(outbox_path)
    # the window, ack timeout and backoff an edge runs with by default
    sender = Sender(outbox_path=outbox_path, endpoint=endpoints, metrics=None, source=name)
    sender.start()
    for i in range(0, count, chunk):
        outbox.append_many([(incident_event(n, name), None) for n in range(i, min(i + chunk, count))])
        sender.notify()
        time.sleep(0.02)
    deadline = time.monotonic() + drain_s
    while outbox.count_pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    pending = outbox.count_pending()
    sender.stop(drain_s=1.0)
    outbox.close()
    error = repr(sender.error) if sender.error else None
    out[name] = {"edge": name, "committed": count, "pending": pending, "failovers": sender.failovers,
                 "first_choice": sender.endpoints[0], "error": error}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--first", type=int, required=True, help="number of the first edge (edge-NN)")
    ap.add_argument("--edges", type=int, required=True)
    ap.add_argument("--count", type=int, required=True, help="incidents per edge")
    ap.add_argument("--endpoint", action="append", required=True)
    ap.add_argument("--chunk", type=int, default=100, help="incidents per outbox commit")
    ap.add_argument("--drain-timeout", type=float, default=240.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    out: dict[str, dict] = {}
    threads = []
    for k in range(args.first, args.first + args.edges):
        name = f"edge-{k:02d}"
        work = (
            name,
            Path(args.dir) / f"{name}.sqlite",
            args.endpoint,
            args.count,
            args.chunk,
            args.drain_timeout,
        )
        t = threading.Thread(target=edge, name=name, daemon=True, args=(*work, out))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for row in out.values():
        print(json.dumps(row), flush=True)
    ok = len(out) == args.edges and all(r["pending"] == 0 and r["error"] is None for r in out.values())
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())

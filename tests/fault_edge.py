"""An edge process for the fault tests: commits uniquely numbered incidents (``incident_id`` h-<n>) to
a real outbox and delivers them with the real sender, then exits 0 once the outbox is drained.

Restarted after a crash, it commits only the numbers its outbox does not hold yet, as the pipeline
would not emit an incident twice. Crash points come from ``SAFECITY_FAILPOINTS``.

    python -m tests.fault_edge --outbox o.sqlite --endpoint tcp://127.0.0.1:5555 --count 3000
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.events.outbox import Outbox
from pipeline.events.schema import SCHEMA_VERSION, rfc3339, uuid7
from pipeline.events.transport import Sender


def incident_event(n: int, source: str) -> dict[str, Any]:
    now = rfc3339(time.time())
    return {
        "schema": SCHEMA_VERSION,
        "event_id": uuid7(),
        "incident_id": f"h-{n}",
        "source": source,
        "type": "encroachment",
        "status": "start",
        "severity": "low",
        "camera_id": "cam1",
        "location": {"type": "Point", "coordinates": [72.8, 19.0]},
        "zone": "footpath",
        "started_at": now,
        "ended_at": None,
        "emitted_at": now,
        "confidence": 0.8,
        "objects": [{"track_id": n, "label": "person", "confidence": 0.8, "bbox": [10.0, 20.0, 50.0, 120.0]}],
        "object_count": 1,
        "frame": {"width": 1920, "height": 1080, "index": n},
        "model": {"name": "fault-harness", "version": "1"},
        "evidence": None,
        "details": {},
    }


def committed_numbers(outbox: Outbox) -> set[int]:
    rows = outbox.conn.execute("SELECT json_extract(body, '$.incident_id') FROM outbox").fetchall()
    return {int(r[0][2:]) for r in rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outbox", required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--source", default="edge-f")
    ap.add_argument("--chunk", type=int, default=100, help="incidents per outbox commit")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between commits")
    ap.add_argument("--drain-timeout", type=float, default=90.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s edge %(levelname)s %(message)s")
    outbox = Outbox(Path(args.outbox))
    sender = Sender(
        outbox_path=Path(args.outbox),
        endpoint=args.endpoint,
        metrics=None,
        max_in_flight=1000,
        ack_timeout_s=1.0,
        max_backoff_s=4.0,
        source=args.source,
    )
    sender.start()
    todo = sorted(set(range(args.count)) - committed_numbers(outbox))
    for i in range(0, len(todo), args.chunk):
        outbox.append_many([(incident_event(n, args.source), None) for n in todo[i : i + args.chunk]])
        sender.notify()
        if args.interval:
            time.sleep(args.interval)
    deadline = time.monotonic() + args.drain_timeout
    while outbox.count_pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = outbox.count_pending()
    sender.stop(drain_s=2.0)
    print(f"edge done: {left} events pending", flush=True)
    return 0 if left == 0 else 3


if __name__ == "__main__":
    sys.exit(main())

"""The fleet on one machine: sink replicas (``safecity sink`` processes) on one PostgreSQL store, and
simulated edges (real outboxes and senders, ``tests/fleet_edges.py``) sending uniquely numbered
incidents to them; one replica is killed (SIGKILL) mid-run. Then, from the store: lost (committed at an
edge, not stored), duplicates stored (an incident stored twice) and unexpected (stored, never sent);
and whether a reader that followed ``events.id`` while the replicas wrote (as the console and the
bridges do) saw every stored event exactly once.

    python -m tests.fleet_faults [--edges 50] [--incidents 100000] [--replicas 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.events.transport import preference

from .util import free_port, wait_until

REPO = Path(__file__).resolve().parent.parent


@dataclass
class FleetResult:
    replicas: int
    edges: int
    attempted: int
    stored: int
    lost: int
    duplicates: int
    unexpected: int
    reader_missed: int  # stored, but the reader following ids never saw it
    reader_twice: int
    killed: str
    killed_at_stored: int
    failovers: int
    resends_deduplicated: float  # by the replicas that lived (their duplicate counters)
    seconds: float
    incidents_per_s: float
    edge_exit_codes: list[int]

    @property
    def ok(self) -> bool:
        return (self.lost, self.duplicates, self.unexpected, self.reader_missed, self.reader_twice) == (
            0, 0, 0, 0, 0) and all(c == 0 for c in self.edge_exit_codes)  # fmt: skip


def _scrape(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run_fleet(
    work: Path,
    url: str,
    *,
    edges: int = 50,
    incidents: int = 100_000,
    replicas: int = 3,
    processes: int = 5,
    kill_at: float = 0.3,
    progress: Callable[[int, int], None] | None = None,
) -> FleetResult:
    import psycopg

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("SAFECITY_FAILPOINTS", None)
    ports, metrics = [free_port() for _ in range(replicas)], [free_port() for _ in range(replicas)]
    endpoints = [f"tcp://127.0.0.1:{p}" for p in ports]
    sinks: list[subprocess.Popen] = []
    edge_procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i, (port, mport) in enumerate(zip(ports, metrics, strict=True)):
            log = (work / f"sink{i}.log").open("w")
            logs.append(log)
            cmd = [sys.executable, "-m", "pipeline.cli", "sink", "--bind", f"tcp://127.0.0.1:{port}", "--db",
                   url, "--clips", str(work / "clips"), "--insecure", "--quiet"]  # fmt: skip
            cmd += ["--metrics-port", str(mport)]
            sinks.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        for i, mport in enumerate(metrics):
            up = wait_until(
                lambda p=mport: _scrape(p, "safecity_sink_store_ok") == 1.0, 60, ignore=(OSError,)
            )
            assert up, f"sink replica {i} did not start: {(work / f'sink{i}.log').read_text()[-2000:]}"
        per_edge = incidents // edges
        # the replica most edges prefer: killing it moves the most edges
        first = Counter(preference(endpoints, f"edge-{k:02d}")[0] for k in range(edges))
        victim = endpoints.index(first.most_common(1)[0][0])
        start = time.monotonic()
        share = -(-edges // processes)
        for first_edge in range(0, edges, share):
            n = min(share, edges - first_edge)
            log = (work / f"edges{first_edge}.log").open("w")
            logs.append(log)
            cmd = [sys.executable, "-m", "tests.fleet_edges", "--dir", str(work), "--first", str(first_edge),
                   "--edges", str(n), "--count", str(per_edge)]  # fmt: skip
            for e in endpoints:
                cmd += ["--endpoint", e]
            edge_procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True))
        attempted = per_edge * edges
        seen: Counter[tuple[str, str]] = Counter()
        cursor, killed_at = 0, -1
        reader = psycopg.connect(url, autocommit=True)

        def follow() -> int:
            """Read past the cursor, as the console and the bridges do; how many rows came."""
            nonlocal cursor
            rows = reader.execute(
                "SELECT id, source, incident_id FROM events WHERE id > %s ORDER BY id LIMIT 20000", (cursor,)
            ).fetchall()
            for id_, source, incident in rows:
                seen[(source, incident)] += 1
                cursor = id_
            return len(rows)

        deadline = time.monotonic() + 600
        while any(p.poll() is None for p in edge_procs) and time.monotonic() < deadline:
            follow()
            stored = sum(seen.values())
            if progress:
                progress(stored, attempted)
            if killed_at < 0 and stored >= kill_at * attempted:
                sinks[victim].send_signal(signal.SIGKILL)
                killed_at = stored
            time.sleep(0.05)
        seconds = time.monotonic() - start
        codes = []
        failovers = 0
        for p in edge_procs:
            out, _ = p.communicate(timeout=60)
            codes.append(p.returncode)
            failovers += sum(
                json.loads(line)["failovers"] for line in out.splitlines() if line.startswith("{")
            )
        while follow():
            pass
        counts = Counter(
            {
                (s, i): c
                for s, i, c in reader.execute(
                    "SELECT source, incident_id, COUNT(*) FROM events GROUP BY source, incident_id"
                )
            }  # fmt: skip
        )
        reader.close()
        sent = {(f"edge-{k:02d}", f"h-{n}") for k in range(edges) for n in range(per_edge)}
        stored_keys = set(counts)
        resends = sum(
            _scrape(m, "safecity_sink_events_duplicate_total") for i, m in enumerate(metrics) if i != victim
        )
        return FleetResult(
            replicas=replicas,
            edges=edges,
            attempted=attempted,
            stored=sum(counts.values()),
            lost=len(sent - stored_keys),
            duplicates=sum(c - 1 for c in counts.values() if c > 1),
            unexpected=len(stored_keys - sent),
            reader_missed=len(stored_keys - set(seen)),
            reader_twice=sum(c - 1 for c in seen.values() if c > 1),
            killed=endpoints[victim],
            killed_at_stored=killed_at,
            failovers=failovers,
            resends_deduplicated=resends,
            seconds=round(seconds, 2),
            incidents_per_s=round(sum(counts.values()) / seconds, 1),
            edge_exit_codes=codes,
        )
    finally:
        for p in edge_procs + sinks:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        for log in logs:
            log.close()


def main(argv: list[str] | None = None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edges", type=int, default=50)
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--url", help="a PostgreSQL database to use (default: a throwaway server)")
    ap.add_argument("--json", metavar="FILE", help="write the result here too")
    args = ap.parse_args(argv)
    from rich.progress import Progress

    from .postgres import Postgres, binaries

    server = None
    if args.url is None:
        bindir = binaries()
        if bindir is None:
            print("no PostgreSQL here: apt-get install postgresql, or give --url", file=sys.stderr)
            return 2
        server = Postgres(bindir)
    try:
        with tempfile.TemporaryDirectory(prefix="safecity-fleet-") as tmp, Progress() as bar:
            task = bar.add_task("incidents stored", total=args.incidents)
            result = run_fleet(Path(tmp), args.url or server.url("fleet"), edges=args.edges,
                               incidents=args.incidents, replicas=args.replicas,
                               progress=lambda done, _: bar.update(task, completed=done))  # fmt: skip
    finally:
        if server is not None:
            server.close()
    for key, value in asdict(result).items():
        print(f"{key:>22}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=1) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

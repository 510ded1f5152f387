"""Jepsen-style fault harness for incident delivery: real edge and sink processes on loopback.

Each scenario sends N uniquely numbered incidents from an edge process (real outbox and sender,
``tests/fault_edge.py``) to a sink process (``safecity sink``), injects one fault, lets the edge drain,
then reads both databases: attempted, committed at the edge, acknowledged, lost (committed but not in
the sink's store), duplicated (an incident stored more than once) and unexpected (stored but never
attempted). ``python -m tests.faults`` runs them all and prints the table.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .util import free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
FAULT_S = 4.5  # cuts, stalls and stops last longer than the heartbeat timeout (3 s)


def _env(failpoints: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("SAFECITY_FAILPOINTS", None)
    if failpoints:
        env["SAFECITY_FAILPOINTS"] = failpoints
    return env


class Proxy(threading.Thread):
    """A loopback TCP proxy the test controls: ``cut()`` drops every connection and refuses new ones,
    ``stall()`` keeps them open but forwards nothing, ``heal()`` goes back to forwarding."""

    def __init__(self, target_port: int) -> None:
        super().__init__(daemon=True, name="fault-proxy")
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False

    def run(self) -> None:
        while not self._closed:
            r, _, _ = select.select([self.listener], [], [], 0.1)
            if not r:
                continue
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.conns.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed:
                if self.mode == "stall":
                    time.sleep(0.05)
                    continue
                r, _, _ = select.select([a, b], [], [], 0.1)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.mode = "cut"
        with self._lock:
            for a, b in self.conns:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.conns.clear()

    def stall(self) -> None:
        self.mode = "stall"

    def heal(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


@dataclass
class Result:
    fault: str
    attempted: int
    committed: int
    acknowledged: int
    stored: int
    lost: int
    duplicated: int
    unexpected: int
    dead_letters: int
    restarts: int
    seconds: float
    acked_at_fault: int  # acknowledged when the fault struck: it struck mid-stream when 0 < this < attempted
    acked_during_fault: int  # progress while it lasted (cut, stall, stop: none expected)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.unexpected == 0
            and self.dead_letters == 0
            and self.committed == self.attempted == self.acknowledged
        )


class Harness:
    def __init__(self, workdir: Path, count: int, *, proxy: bool = False) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = count
        self.sink_port = free_port()
        self.proxy = Proxy(self.sink_port) if proxy else None
        self.edge_endpoint = f"tcp://127.0.0.1:{self.proxy.port if self.proxy else self.sink_port}"
        self.sink: subprocess.Popen | None = None
        self.edge: subprocess.Popen | None = None
        self.restarts = 0
        self.acked_at_fault = -1
        self.acked_during_fault = -1
        self.log = (self.dir / "harness.log").open("ab")

    # processes
    def start_sink(self, failpoints: str | None = None, metrics_port: int | None = None) -> None:
        cmd = [sys.executable, "-m", "pipeline.cli", "sink", "--insecure", "--quiet"]
        if metrics_port is not None:
            cmd += ["--metrics-port", str(metrics_port)]
        self.sink = subprocess.Popen(
            [*cmd, "--bind", f"tcp://127.0.0.1:{self.sink_port}", "--db", str(self.dir / "sink.sqlite")],
            env=_env(failpoints),
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.sink.poll() is not None:
                raise RuntimeError(f"the sink exited with {self.sink.returncode}; see {self.log.name}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.sink_port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the sink did not listen within 30 s")

    def start_edge(self, failpoints: str | None = None, *, chunk: int = 100, interval: float = 0.05) -> None:
        self.edge = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fault_edge",
                "--outbox",
                str(self.dir / "outbox.sqlite"),
                "--endpoint",
                self.edge_endpoint,
                "--count",
                str(self.count),
                "--chunk",
                str(chunk),
                "--interval",
                str(interval),
            ],
            env=_env(failpoints),
            stdout=self.log,
            stderr=self.log,
            cwd=REPO,
        )

    def acked(self) -> int:
        path = self.dir / "outbox.sqlite"
        if not path.exists():
            return 0
        try:
            with sqlite3.connect(str(path), timeout=10) as db:
                return int(
                    db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0]
                )
        except sqlite3.OperationalError:
            return 0

    def fault(self, start: Callable[[], None], end: Callable[[], None]) -> None:
        """Inject a fault for FAULT_S seconds once a quarter of the incidents are acknowledged."""
        self.wait_for(lambda: self.acked() >= self.count // 4, 60, "a quarter acknowledged")
        self.acked_at_fault = self.acked()
        start()
        time.sleep(FAULT_S)
        self.acked_during_fault = self.acked() - self.acked_at_fault
        end()

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        if not wait_until(cond, timeout):
            raise TimeoutError(f"{what} within {timeout} s")

    def restart_when_killed(self, which: str, timeout: float = 60) -> None:
        """Wait for the ``sink`` or ``edge`` process to die by its failpoint (SIGKILL); start it again."""
        proc = self.sink if which == "sink" else self.edge
        assert proc is not None
        proc.wait(timeout)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
        self.acked_at_fault = self.acked()
        self.restarts += 1
        self.start_sink() if which == "sink" else self.start_edge()

    def finish(self, fault: str, t0: float, timeout: float = 120) -> Result:
        assert self.edge is not None
        try:
            rc = self.edge.wait(timeout)
        except subprocess.TimeoutExpired:
            self.edge.kill()
            rc = -1
        if rc != 0:
            raise RuntimeError(f"{fault}: the edge exited with {rc}; see {self.log.name}")
        elapsed = time.monotonic() - t0
        time.sleep(0.2)
        self.stop()
        return self.verify(fault, elapsed)

    def stop(self) -> None:
        for p in (self.edge, self.sink):
            if p is not None and p.poll() is None:
                if p is self.sink:
                    os.kill(p.pid, signal.SIGCONT)
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        if self.proxy is not None:
            self.proxy.close()
        self.log.close()

    def verify(self, fault: str, seconds: float) -> Result:
        with sqlite3.connect(str(self.dir / "outbox.sqlite")) as db:
            rows = db.execute(
                "SELECT json_extract(body, '$.incident_id'), delivered_at FROM outbox"
            ).fetchall()
            dead = int(db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])
        committed = {int(i[2:]) for i, _ in rows}
        acknowledged = sum(1 for _, d in rows if d is not None)
        with sqlite3.connect(str(self.dir / "sink.sqlite")) as db:
            stored_rows = [int(r[0][2:]) for r in db.execute("SELECT incident_id FROM events")]
        stored = set(stored_rows)
        attempted = set(range(self.count))
        return Result(
            fault=fault,
            attempted=len(attempted),
            committed=len(committed),
            acknowledged=acknowledged,
            stored=len(stored),
            lost=len(committed - stored),
            duplicated=len(stored_rows) - len(stored),
            unexpected=len(stored - attempted),
            dead_letters=dead,
            restarts=self.restarts,
            seconds=round(seconds, 1),
            acked_at_fault=self.acked_at_fault,
            acked_during_fault=self.acked_during_fault,
        )


# the scenarios ---------------------------------------------------------------------------------


def sink_killed(point: str) -> Callable[[Path, int], Result]:
    def run(workdir: Path, count: int) -> Result:
        h = Harness(workdir, count)
        try:
            h.start_sink(failpoints=f"sink.{point}=4")  # dies in its 4th batch
            t0 = time.monotonic()
            h.start_edge()
            h.restart_when_killed("sink")
            return h.finish(f"kill -9 sink {point.replace('_', ' ')}", t0)
        finally:
            h.stop()

    return run


def edge_killed(point: str, nth: int) -> Callable[[Path, int], Result]:
    def run(workdir: Path, count: int) -> Result:
        h = Harness(workdir, count)
        try:
            h.start_sink()
            t0 = time.monotonic()
            h.start_edge(failpoints=f"edge.{point}={nth}")
            h.restart_when_killed("edge")
            return h.finish(f"kill -9 edge {point.replace('_', ' ')}", t0)
        finally:
            h.stop()

    return run


def network(kind: str) -> Callable[[Path, int], Result]:
    def run(workdir: Path, count: int) -> Result:
        h = Harness(workdir, count, proxy=True)
        assert h.proxy is not None
        try:
            h.proxy.start()
            h.start_sink()
            t0 = time.monotonic()
            h.start_edge()
            h.fault(h.proxy.cut if kind == "cut" else h.proxy.stall, h.proxy.heal)
            return h.finish(f"network {kind} {FAULT_S:g} s", t0)
        finally:
            h.stop()

    return run


def sink_paused(workdir: Path, count: int) -> Result:
    h = Harness(workdir, count)
    try:
        h.start_sink()
        assert h.sink is not None
        t0 = time.monotonic()
        h.start_edge()
        pid = h.sink.pid
        h.fault(lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))
        return h.finish(f"SIGSTOP sink {FAULT_S:g} s, SIGCONT", t0)
    finally:
        h.stop()


def burst(workdir: Path, count: int) -> Result:
    h = Harness(workdir, count)
    try:
        h.start_sink()
        t0 = time.monotonic()
        h.start_edge(chunk=5000, interval=0.0)
        return h.finish(f"burst of {count:,}", t0, timeout=150)
    finally:
        h.stop()


SCENARIOS: dict[str, tuple[Callable[[Path, int], Result], int]] = {
    "sink-before-commit": (sink_killed("before_commit"), 3000),
    "sink-after-commit": (sink_killed("after_commit"), 3000),
    "edge-after-commit": (edge_killed("after_commit", 8), 3000),
    "edge-after-send": (edge_killed("after_send", 1200), 3000),
    "network-cut": (network("cut"), 3000),
    "network-stall": (network("stall"), 3000),
    "sink-sigstop": (sink_paused, 3000),
    "burst-100k": (burst, 100_000),
}


def table(results: list[Result]) -> str:
    head = (
        "| fault | attempted | committed | acknowledged | stored | lost | duplicated | unexpected | "
        "dead letters | restarts | acked when struck | acked during | seconds |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in results:
        lines.append(
            f"| {r.fault} | {r.attempted} | {r.committed} | {r.acknowledged} | {r.stored} | {r.lost} | "
            f"{r.duplicated} | {r.unexpected} | {r.dead_letters} | {r.restarts} | "
            f"{'-' if r.acked_at_fault < 0 else r.acked_at_fault} | "
            f"{'-' if r.acked_during_fault < 0 else r.acked_during_fault} | {r.seconds} |"
        )
    return "\n".join(lines)


def main() -> int:
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as d:
        for name, (scenario, count) in SCENARIOS.items():
            results.append(scenario(Path(d) / name, count))
            print(results[-1], flush=True)
    print(table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

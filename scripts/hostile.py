#!/usr/bin/env python3
"""Run the product against bad inputs, as a hostile or unlucky user would, and tabulate what happens.

Each case starts the real CLI (``safecity run``, ``sink``, ``events``, ``bench``) on inputs made here
at run time: corrupt and odd media, hung and silent servers, full disks, corrupt databases, signals.
Most cases put one bad camera beside a good one: ``data/footage/bikes.mp4`` looped, 2 analysed fps,
realtime, the real fall model on the CPU; events wait in an outbox (no sink runs) unless the case is
about the sink. Per case the report gives the command, the exit status, the first line printed, the
first warning or error, the good (and bad) camera's analysed rate and notes. Everything a case makes
and prints stays under ``data/hostile/<case>/`` (``output.txt``: the full output); generated media
are cached under ``data/hostile/media/``.

    .venv/bin/python scripts/hostile.py                       # every case, about 11 minutes
    .venv/bin/python scripts/hostile.py --list
    .venv/bin/python scripts/hostile.py --only 'rtsp-*,audio-only' --duration 10

Rates: frames analysed per second over a steady window, from ``safecity_frames_analysed_total`` scraped
once a second off ``--metrics-port 0`` (window: from 1 s after the good camera's first analysed frame
to the last scrape at which the good camera still decoded). Where there is no such window of 2 s or
more (no metrics served, or a run stopped early) the summary table's "analysed fps" is given instead,
marked "(summary)".
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import fnmatch
import http.server
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
BIKES = ROOT / "data" / "footage" / "bikes.mp4"
VENV_BIN = ROOT / ".venv" / "bin"
TS_WRAP_SECONDS = 2**33 / 90_000  # 95443.7 s: where 33-bit MPEG-TS timestamps wrap
INCIDENT_BOX = [100, 150, 140, 260, 0.9, 0]  # a person standing in the lower half of bikes.mp4 (640x272)

# lines the harness itself causes in every run: not "the first line printed" worth reporting
BOILERPLATE = re.compile(
    r"^(metrics on http|sink metrics on http|warning: --insecure|hostile: "
    r"|.*sink\.insecure: incidents go to)"
)
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
STATUS_LINE = re.compile(r"^\[\s*\d+(\.\d+)?s\]")
TABLE_LINE = re.compile(r"^\s*([┏┃┡│└━─╇┳┻╋]|safecity run: )")
PROBLEM = re.compile(
    r"\b(WARNING|ERROR|CRITICAL|Traceback|Segmentation fault|Fatal|error:|\w+Error\b|\w*Exception\b"
    r"|unrecognized|usage:|refus|invalid|cannot|failed|not found|did not stop)",
    re.IGNORECASE,
)
OVERLOAD = re.compile(r"overload|keep(s|ing)? up|\bbehind\b|saturat|too slow", re.IGNORECASE)
METRIC_LINE = re.compile(r"^(\w+)(\{[^}]*\})?\s+(\S+)$")


class NotBuilt(Exception):
    """The case's bad input could not be made here (the reason is reported)."""


# -- helpers: processes --------------------------------------------------------------------------


def safecity() -> list[str]:
    exe = VENV_BIN / "safecity"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("safecity")
    return [found] if found else [sys.executable, "-m", "pipeline.cli"]


def python() -> str:
    exe = VENV_BIN / "python"
    return str(exe) if exe.exists() else sys.executable


def shown(argv: Sequence[str]) -> str:
    """A command as a user would type it: ``safecity ...`` and paths relative to the checkout."""
    words = [a for a in argv]
    if words and Path(words[0]).name == "safecity":
        words[0] = "safecity"
    elif words and Path(words[0]).name.startswith("python"):
        words[0] = "python"
    text = shlex.join(words)
    return text.replace(str(ROOT) + "/", "")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SAFECITY_FAILPOINTS"}
    env.update({"YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> tuple[dict[str, float], str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1.0) as r:
        text = r.read().decode(errors="replace")
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                values[m[1] + (m[2] or "")] = float(m[3])
    return values, text


def analysed_key(camera: str) -> str:
    return f'safecity_frames_analysed_total{{camera="{camera}"}}'


def decoded_key(camera: str) -> str:
    return f'safecity_frames_decoded_total{{camera="{camera}"}}'


@dataclass
class Action:
    """Something done to (or beside) a running process ``at`` seconds after its start."""

    at: float
    label: str
    do: Callable[[subprocess.Popen[bytes]], None]


def send(sig: signal.Signals, at: float) -> Action:
    def do(p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.send_signal(sig)

    return Action(at, sig.name, do)


@dataclass
class Sample:
    t: float
    values: dict[str, float]


LIVE: list[Proc] = []  # every process started, so that an interrupted harness leaves none behind


def kill_leftovers() -> None:
    for p in LIVE:
        if p.running:
            p.kill()


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Proc:
    """One product process: its output goes to ``log``; polled for metrics, memory, actions, timeout."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        *,
        timeout: float,
        actions: Sequence[Action] = (),
        scrape: bool = False,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.argv, self.log, self.timeout, self.cwd = argv, log, timeout, cwd
        self.actions = sorted(actions, key=lambda a: a.at)
        self.scrape = scrape
        self.env = child_env(env)
        self.samples: list[Sample] = []
        self.metrics_text = ""
        self.metrics_port: int | None = None
        self.done_actions: dict[str, float] = {}
        self.rc: int | None = None
        self.timed_out = False
        self.ended: float | None = None
        self.peak_rss_kb: int | None = None
        self._last_scrape = -1.0
        self._p: subprocess.Popen[bytes] | None = None
        self._t0 = 0.0

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self._p = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        self._t0 = time.monotonic()
        LIVE.append(self)
        return self

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    @property
    def running(self) -> bool:
        return self._p is not None and self.rc is None and self._p.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def poll(self) -> bool:
        """One monitoring step; False once the process has ended."""
        assert self._p is not None
        if self.rc is not None:
            return False
        rc = self._p.poll()
        now = self.elapsed
        if rc is not None:
            self.rc, self.ended = rc, now
            return False
        while self.actions and self.actions[0].at <= now:
            a = self.actions.pop(0)
            a.do(self._p)
            self.done_actions[a.label] = round(now, 2)
        self._memory()
        if self.scrape:
            self._scrape(now)
        if now > self.timeout:
            self.kill()
            return False
        return True

    def _memory(self) -> None:
        assert self._p is not None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self._p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = int(line.split()[1])

    def _scrape(self, now: float) -> None:
        if self.metrics_port is None:
            m = re.search(r"metrics on http://[\d.]+:(\d+)/metrics", self.output())
            if m is None:
                return
            self.metrics_port = int(m[1])
        if now - self._last_scrape < 1.0:
            return
        self._last_scrape = now
        try:
            values, text = scrape(self.metrics_port)
        except OSError:
            return
        self.samples.append(Sample(round(now, 2), values))
        self.metrics_text = text

    def kill(self) -> None:
        """Past the timeout: SIGTERM to the process group, SIGKILL 5 s later."""
        assert self._p is not None
        self.timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._p.pid, signal.SIGTERM)
        try:
            self._p.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._p.pid, signal.SIGKILL)
            self._p.wait()
        self.rc, self.ended = self._p.returncode, self.elapsed

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 20.0) -> None:
        """Ask it to stop (recorded as an action), wait ``grace`` seconds, then kill it."""
        if not self.running:
            self.poll()
            return
        assert self._p is not None
        self.done_actions[sig.name] = round(self.elapsed, 2)
        self._p.send_signal(sig)
        deadline = time.monotonic() + grace
        while self.poll() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.running:
            self.kill()

    def run(self) -> Proc:
        self.start()
        while self.poll():
            time.sleep(0.1)
        return self

    def value(self, key: str, at: float | None = None) -> float | None:
        """The latest scraped value of ``key`` (at or before ``at`` seconds)."""
        for s in reversed(self.samples):
            if (at is None or s.t <= at) and key in s.values:
                return s.values[key]
        return None

    def total(self, prefix: str, at: float | None = None) -> float | None:
        """Sum of every labelled series of a metric at the latest sample (at or before ``at``)."""
        for s in reversed(self.samples):
            if at is None or s.t <= at:
                hits = [v for k, v in s.values.items() if k.startswith(prefix)]
                return sum(hits) if hits else None
        return None

    def rate(self, camera: str, since: float | None = None, until: float | None = None) -> float | None:
        """Analysed fps of ``camera`` over a steady window (see the module docstring).

        Default window: from 1 s after the good camera's first analysed frame to the last scrape at
        which the good camera was still decoding (so a shutdown's drain does not count as running).
        """
        good = [(s.t, s.values.get(analysed_key("good"), 0.0)) for s in self.samples]
        if since is None:
            first = next((t for t, v in good if v > 0), None)
            if first is None:
                return None
            since = first + 1.0
        if until is None:
            decoded = [(s.t, s.values.get(decoded_key("good"), 0.0)) for s in self.samples]
            moving = [t for (t, v), (_, before) in zip(decoded[1:], decoded, strict=False) if v > before]
            until = moving[-1] if moving else None
        pts = [
            (s.t, s.values.get(analysed_key(camera), 0.0))
            for s in self.samples
            if s.t >= since and (until is None or s.t <= until)
        ]
        if len(pts) < 2 or pts[-1][0] - pts[0][0] < 2.0:
            return None
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])


def run_all(*procs: Proc, until: float | None = None, lead: Proc | None = None) -> None:
    """Poll the processes until all ended, or until ``lead`` (default the first) is ``until`` s old."""
    lead = lead or procs[0]
    while True:
        alive = [p.poll() for p in procs]
        if not any(alive) or (until is not None and lead.elapsed >= until):
            return
        time.sleep(0.1)


# -- helpers: reading what a process printed ------------------------------------------------------


def clean(line: str) -> str:
    return LOG_PREFIX.sub("", line.rstrip())


def traceback_summary(lines: list[str], i: int) -> str:
    """``lines[i]`` starts a traceback: 'Traceback → <the exception line>'."""
    for line in lines[i + 1 :]:
        if line and not line[0].isspace() and not line.startswith("Traceback"):
            return f"Traceback → {clean(line)}"
    return "Traceback (no exception line)"


def first_line(output: str) -> str:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or BOILERPLATE.match(clean(line)):
            continue
        if line.startswith("Traceback"):
            return traceback_summary(lines, i)
        return clean(line)
    return "(nothing printed)"


def first_problem(output: str) -> str:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        text = clean(line)
        if not text or BOILERPLATE.match(text) or STATUS_LINE.match(text) or TABLE_LINE.match(text):
            continue
        if line.startswith("Traceback"):
            return traceback_summary(lines, i)
        if PROBLEM.search(text):
            return text
    return ""


def summary_rows(output: str) -> dict[str, dict[str, str]]:
    """The end-of-run summary table: camera -> column -> cell."""
    header: list[str] | None = None
    rows: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        s = line.strip()
        if s.startswith("┃"):
            header = [c.strip() for c in s.strip("┃").split("┃")]
        elif s.startswith("│") and header:
            cells = [c.strip() for c in s.strip("│").split("│")]
            if cells and cells[0]:
                rows[cells[0]] = dict(zip(header, cells, strict=False))
    return rows


def last_status(output: str) -> str:
    lines = [clean(x) for x in output.splitlines() if STATUS_LINE.match(clean(x))]
    return lines[-1] if lines else ""


def fmt_rc(p: Proc) -> str:
    if p.rc is None:
        return "still running"
    text = str(p.rc)
    if p.rc < 0:
        text += f" ({signal.Signals(-p.rc).name})"
    elif p.rc > 128 and p.rc - 128 in {s.value for s in signal.Signals}:
        text += f" ({signal.Signals(p.rc - 128).name}?)"
    if p.timed_out:
        text += f", killed at the {p.timeout:g} s timeout"
    return text


def fmt_fps(p: Proc, camera: str) -> str:
    r = p.rate(camera)
    if r is not None:
        return f"{r:.2f}"
    row = summary_rows(p.output()).get(camera)
    if row and "analysed fps" in row:
        return f"{row['analysed fps']} (summary)"
    return "–"


def common_notes(p: Proc) -> list[str]:
    out = p.output()
    notes = []
    if n := out.count("Traceback (most recent call last)"):
        notes.append(f"{n} traceback(s)")
    if n := len(re.findall(r"camera (\S+): camera \1:", out)):
        notes.append(f"doubled 'camera X: camera X:' prefix ×{n}")
    if "safecity run:" not in out and p.argv[1:2] == ["run"]:
        notes.append("no summary table")
    return notes


# -- results --------------------------------------------------------------------------------------


@dataclass
class Result:
    command: str
    exit: str
    first_line: str
    first_problem: str = ""
    good_fps: str = "–"
    bad_fps: str = "–"
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    case: str = ""
    item: str = ""
    seconds: float = 0.0


def edge_result(
    p: Proc, *, bad: str | None = "bad", notes: Sequence[str] = (), command: str | None = None
) -> Result:
    out = p.output()
    return Result(
        command=command or shown(p.argv),
        exit=fmt_rc(p),
        first_line=first_line(out),
        first_problem=first_problem(out),
        good_fps=fmt_fps(p, "good"),
        bad_fps=fmt_fps(p, bad) if bad else "–",
        notes=[*notes, *common_notes(p)],
        data={
            "summary": summary_rows(out),
            "last_status": last_status(out),
            "actions": p.done_actions,
            "ended_s": p.ended,
            "peak_rss_mb": round(p.peak_rss_kb / 1024, 1) if p.peak_rss_kb else None,
            "rate_source": "metrics" if p.samples else "summary",
        },
    )


def plain_result(p: Proc, notes: Sequence[str] = (), command: str | None = None) -> Result:
    out = p.output()
    return Result(
        command=command or shown(p.argv),
        exit=fmt_rc(p),
        first_line=first_line(out),
        first_problem=first_problem(out),
        notes=[*notes, *common_notes(p)],
        data={"actions": p.done_actions, "ended_s": p.ended},
    )


def cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


# -- helpers: configs -----------------------------------------------------------------------------


def good_camera() -> dict[str, Any]:
    return {"id": "good", "source": str(BIKES), "loop": True, "analytics_fps": 2}


def incident_camera() -> dict[str, Any]:
    """bikes.mp4 with a kerb zone over its lower half: with the scripted detector, incidents come fast."""
    return {
        "id": "inc",
        "source": str(BIKES),
        "loop": True,
        "analytics_fps": 5,
        "zones": [{"name": "kerb", "polygon": [[0, 136], [640, 136], [640, 272], [0, 272]]}],
    }


INCIDENT_RULES = {
    "encroachment": {
        "dwell_seconds": 0.5,
        "stationary_seconds": 0.2,
        "confirm_seconds": 0.2,
        "clear_seconds": 0.5,
        "update_seconds": 0.5,
        "cooldown_seconds": 0,
    }
}


def scripted_model(
    d: Path, present: Callable[[float], bool], *, cameras: Sequence[str] = ("inc",), period: float = 10.0
) -> dict[str, Any]:
    """A scripted detector (pipeline/detect/scripted.py): a person standing still when ``present(t)``."""
    rows: list[dict[str, Any]] = [{"names": ["person"], "period": period, "model": "hostile-script"}]
    for cam in cameras:
        for k in range(int(10 * 4) + 1):
            t = k / 4
            rows.append({"camera": cam, "t": t, "boxes": [INCIDENT_BOX] if present(t) else []})
    path = d / "scripted.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"backend": "scripted", "scripted_detections": str(path)}


def edge_config(
    d: Path,
    cameras: list[dict[str, Any]],
    *,
    model: dict[str, Any] | None = None,
    sink: dict[str, Any] | None = None,
    name: str = "config.yaml",
    **extra: Any,
) -> Path:
    cfg: dict[str, Any] = {
        "edge_id": "hostile",
        "device": "cpu",
        "cameras": cameras,
        "model": model or {"name": "fall-yolov8"},
        "sink": {
            "endpoint": f"tcp://127.0.0.1:{free_port()}",
            "insecure": True,
            "outbox": str(d / "outbox.sqlite"),
            **(sink or {}),
        },
        **extra,
    }
    path = d / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_argv(config: Path, duration: float | None, *, metrics: bool = True) -> list[str]:
    argv = [*safecity(), "run", str(config)]
    if duration is not None:
        argv += ["--duration", f"{duration:g}"]
    if metrics:
        argv += ["--metrics-port", "0"]
    return argv


def edge(
    d: Path,
    config: Path,
    duration: float | None,
    *,
    actions: Sequence[Action] = (),
    timeout: float | None = None,
    log: str = "output.txt",
    env: dict[str, str] | None = None,
    metrics: bool = True,
) -> Proc:
    return Proc(
        run_argv(config, duration, metrics=metrics),
        d / log,
        timeout=timeout or (duration or 0) + 45,
        actions=actions,
        scrape=metrics,
        env=env,
    )


def outbox_events(db: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as c:
        return [json.loads(b) for (b,) in c.execute("SELECT body FROM outbox ORDER BY seq")]


# -- helpers: bad inputs ---------------------------------------------------------------------------


def mp4_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """Top-level MP4 boxes: (type, offset, size)."""
    out, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
        elif size == 0:
            size = len(data) - i
        out.append((kind.decode("latin1"), i, size))
        i += max(size, 8)
    return out


def bikes_frames(start: int = 0, count: int = 10_000) -> Iterator[Any]:
    import av

    with av.open(str(BIKES)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= start + count:
                return
            if i >= start:
                yield frame


def encode_h264(
    path: Path, frames: Iterator[Any], *, fmt: str, options: dict[str, str] | None = None
) -> None:
    """H.264 at 25 fps, timestamps from 0 (the container may shift them, e.g. output_ts_offset)."""
    import av

    part = path.with_name(path.name + ".part")
    with av.open(str(part), "w", format=fmt, options=options or {}) as out:
        st = out.add_stream("libx264", rate=25)
        st.codec_context.time_base = Fraction(1, 25)
        st.options = {"preset": "ultrafast", "g": "25"}
        for i, f in enumerate(frames):
            if i == 0:
                st.width, st.height = f.width, f.height
                st.pix_fmt = "yuv420p"
            frame = f.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    part.rename(path)


class Media:
    """Bad inputs, made once and cached under data/hostile/media/."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "media"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _cached(self, name: str, make: Callable[[Path], None]) -> Path:
        path = self.dir / name
        if not path.exists():
            make(path)
        return path

    def corrupt_mp4(self) -> Path:
        """bikes.mp4 with 40 KB of random bytes 40 % into its mdat (moov and header intact)."""

        def make(path: Path) -> None:
            data = bytearray(BIKES.read_bytes())
            mdat = next((b for b in mp4_boxes(bytes(data)) if b[0] == "mdat"), None)
            if mdat is None:
                raise NotBuilt("bikes.mp4 has no mdat box")
            _, off, size = mdat
            at = off + 16 + int(0.4 * (size - 16))
            n = min(40_000, off + size - at)
            data[at : at + n] = random.Random(10).randbytes(n)
            path.write_bytes(bytes(data))

        return self._cached("corrupt.mp4", make)

    def backwards_ts(self) -> Path:
        """Two MPEG-TS encodes that both start at pts 0, concatenated (``cat a.ts b.ts``)."""

        def make(path: Path) -> None:
            a, b = self.dir / "half-a.ts", self.dir / "half-b.ts"
            encode_h264(a, bikes_frames(0, 125), fmt="mpegts")
            encode_h264(b, bikes_frames(125, 125), fmt="mpegts")
            path.write_bytes(a.read_bytes() + b.read_bytes())

        return self._cached("backwards.ts", make)

    def wrap_ts(self) -> Path:
        """An MPEG-TS whose 33-bit timestamps wrap 3.7 s in (output_ts_offset 95440 s)."""
        offset = str(int(TS_WRAP_SECONDS) - 3)
        return self._cached(
            "wrap.ts",
            lambda p: encode_h264(p, bikes_frames(), fmt="mpegts", options={"output_ts_offset": offset}),
        )

    def audio_only(self) -> Path:
        """10 s of a 440 Hz tone, AAC in an .m4a, no video stream."""

        def make(path: Path) -> None:
            import av
            import numpy as np

            part = path.with_name(path.name + ".part")
            with av.open(str(part), "w", format="ipod") as out:
                st = out.add_stream("aac", rate=44100)
                st.layout = "mono"
                n = 1024
                for k in range(int(10 * 44100 / n)):
                    t = (np.arange(n) + k * n) / 44100
                    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                    frame.sample_rate, frame.pts = 44100, k * n
                    for pkt in st.encode(frame):
                        out.mux(pkt)
                for pkt in st.encode():
                    out.mux(pkt)
            part.rename(path)

        return self._cached("audio-only.m4a", make)

    def faststart_mp4(self) -> Path:
        """bikes.mp4 remuxed with its index (moov) first, as a web server would serve it."""

        def make(path: Path) -> None:
            import av

            part = path.with_name(path.name + ".part")
            with (
                av.open(str(BIKES)) as src,
                av.open(str(part), "w", format="mp4", options={"movflags": "faststart"}) as out,
            ):
                vs = src.streams.video[0]
                os_ = out.add_stream_from_template(vs)
                for pkt in src.demux(vs):
                    if pkt.dts is None:
                        continue
                    pkt.stream = os_
                    out.mux(pkt)
            part.rename(path)

        return self._cached("faststart.mp4", make)

    def rotated_mp4(self) -> Path:
        """bikes.mp4 with a 90° display matrix (needs ffmpeg and ffprobe to write and check it)."""

        def make(path: Path) -> None:
            if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
                raise NotBuilt("ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)")
            part = path.with_name("rotated.part.mp4")
            attempts = [
                ["-i", str(BIKES), "-c", "copy", "-metadata:s:v", "rotate=90"],  # FFmpeg <= 6
                ["-display_rotation", "90", "-i", str(BIKES), "-c", "copy"],  # FFmpeg >= 6
            ]
            for args in attempts:
                subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(part)], capture_output=True)
                probe = subprocess.run(
                    ["ffprobe", "-v", "error", "-show_streams", str(part)], capture_output=True, text=True
                )
                if re.search(r"rotation=-?90", probe.stdout):
                    part.rename(path)
                    return
            raise NotBuilt("ffmpeg wrote no display matrix with either -metadata rotate or -display_rotation")

        return self._cached("rotated.mp4", make)


class HungServer:
    """A TCP server that accepts connections and never says a word (a hung or silent RTSP camera)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)

    def __enter__(self) -> HungServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()


class FileServer:
    """An HTTP server for one directory, with Range requests (as nginx or a camera's web server)."""

    def __init__(self, directory: Path) -> None:
        self.requests: Counter[str] = Counter()
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                requests[self.command + (" range" if "Range" in self.headers else "")] += 1
                path = directory / Path(self.path.split("?")[0]).name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start, end, status = 0, len(data) - 1, 200
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
                if m and (m[1] or m[2]):
                    if m[1]:
                        start = int(m[1])
                        end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
                    else:
                        start = max(len(data) - int(m[2]), 0)
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if body:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(data[start : end + 1])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def mounted_under(path: Path) -> list[str]:
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        return sorted((m for m in mounts if m.startswith(str(path) + "/") or m == str(path)), reverse=True)
    return []


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m", readonly: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise NotBuilt(f"cannot mount a tmpfs ({r.stderr.strip() or r.returncode}); needs root")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; the bytes written."""
    written = 0
    with path.open("ab", buffering=0) as f:
        for chunk in (1 << 16, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    written += f.write(b"\0" * chunk)
    with contextlib.suppress(OSError):
        os.sync()
    return written


# -- the cases -------------------------------------------------------------------------------------


@dataclass
class Ctx:
    root: Path
    duration: float
    media: Media
    failpoint: str | None
    console: Console

    @property
    def short(self) -> float:
        """Runs whose point is the first lines, not a rate."""
        return min(self.duration, 8.0)


CaseFn = Callable[[Ctx, Path], Result]


def bad_beside_good(
    ctx: Ctx, d: Path, bad: dict[str, Any], *, duration: float | None = None, notes: Sequence[str] = ()
) -> tuple[Proc, list[str]]:
    cfg = edge_config(d, [good_camera(), {"id": "bad", **bad}])
    p = edge(d, cfg, duration or ctx.duration).run()
    row = summary_rows(p.output()).get("bad", {})
    extra = [f"bad: decoded {row.get('decoded', '?')}, analysed {row.get('analysed', '?')}"] if row else []
    return p, [*notes, *extra]


# 1, 2, 3, 7: bad media beside the good camera


def corrupt_midstream(ctx: Ctx, d: Path) -> Result:
    p, notes = bad_beside_good(
        ctx, d, {"source": str(ctx.media.corrupt_mp4()), "loop": True, "analytics_fps": 2}
    )
    return edge_result(p, notes=notes)


def ts_backwards(ctx: Ctx, d: Path) -> Result:
    src = ctx.media.backwards_ts()
    p, notes = bad_beside_good(ctx, d, {"source": str(src), "loop": True, "analytics_fps": 2})
    return edge_result(p, notes=["cat a.ts b.ts, both from pts 0", *notes])


def ts_wrap(ctx: Ctx, d: Path) -> Result:
    src = ctx.media.wrap_ts()
    p, notes = bad_beside_good(ctx, d, {"source": str(src), "loop": True, "analytics_fps": 2})
    return edge_result(p, notes=["pts wrap at 2^33 3.7 s in", *notes])


def audio_only(ctx: Ctx, d: Path) -> Result:
    src = ctx.media.audio_only()
    p, notes = bad_beside_good(ctx, d, {"source": str(src), "loop": True}, duration=ctx.short)
    return edge_result(p, notes=notes)


def greedy_camera(ctx: Ctx, d: Path) -> Result:
    cfg = edge_config(
        d, [good_camera(), {"id": "greedy", "source": str(BIKES), "loop": True, "analytics_fps": 60}]
    )
    p = edge(d, cfg, ctx.duration).run()
    rows = summary_rows(p.output())
    notes = [
        f"25 fps clip, analytics_fps 60; dropped: good {rows.get('good', {}).get('dropped', '?')}, "
        f"greedy {rows.get('greedy', {}).get('dropped', '?')}"
    ]
    return edge_result(p, bad="greedy", notes=notes)


# 4, weak: hung and silent RTSP servers, credentials, rtsp:// without a host


def rtsp_hung(ctx: Ctx, d: Path) -> Result:
    with HungServer() as server:
        bad = {"id": "bad", "source": f"rtsp://127.0.0.1:{server.port}/cam"}
        cfg = edge_config(d, [good_camera(), bad])
        p = edge(d, cfg, None, actions=[send(signal.SIGINT, 5.0)], timeout=40).run()
    sent = p.done_actions.get("SIGINT")
    stop_s = (p.ended - sent) if (p.ended is not None and sent is not None) else None
    crashed = p.rc in (-11, 139, -6, 134)
    notes = [
        f"stopped {stop_s:.1f} s after SIGINT" if stop_s is not None else "SIGINT not sent",
        "slow shutdown (> 3 s)" if stop_s is not None and stop_s > 3 else "",
        "CRASH (segfault/abort)" if crashed else "no crash",
        "'did not stop' logged" if "did not stop" in p.output() else "",
    ]
    r = edge_result(p, notes=[n for n in notes if n], command=shown(p.argv) + "  (SIGINT at 5 s)")
    r.data.update({"stop_seconds": stop_s, "crashed": crashed})
    return r


def rtsp_silent(ctx: Ctx, d: Path) -> Result:
    with HungServer() as server:
        bad = {
            "source": f"rtsp://127.0.0.1:{server.port}/cam",
            "open_timeout_seconds": 3,
            "read_timeout_seconds": 3,
        }
        p, notes = bad_beside_good(ctx, d, bad, duration=ctx.short + 4)
    return edge_result(p, notes=["server accepts, never answers; open/read timeouts 3 s", *notes])


def rtsp_password(ctx: Ctx, d: Path) -> Result:
    bad = {
        "source": f"rtsp://user:secret@127.0.0.1:{free_port()}/x",
        "reconnect_initial_seconds": 0.5,
        "reconnect_max_seconds": 2,
    }
    p, notes = bad_beside_good(ctx, d, bad, duration=ctx.short)
    in_out = p.output().count("secret")
    in_metrics = p.metrics_text.count("secret")
    r = edge_result(p, notes=[f"'secret' ×{in_out} in the output, ×{in_metrics} in /metrics", *notes])
    r.data.update({"secret_in_output": in_out, "secret_in_metrics": in_metrics})
    return r


def rtsp_no_host(ctx: Ctx, d: Path) -> Result:
    p, notes = bad_beside_good(ctx, d, {"source": "rtsp://"}, duration=ctx.short)
    return edge_result(p, notes=notes)


# 5, weak: http sources


def http_source(ctx: Ctx, d: Path, media: Path, note: str) -> Result:
    served = d / "www"
    served.mkdir()
    shutil.copy(media, served / "clip.mp4")
    with FileServer(served) as server:
        bad = {"source": server.url("clip.mp4"), "loop": True, "analytics_fps": 2}
        p, notes = bad_beside_good(ctx, d, bad)
        requests = dict(server.requests)
    out = p.output()
    row = summary_rows(out).get("bad", {})
    ended = out.count("stream ended")
    elapsed = re.search(r"safecity run: ([\d.]+) s", out)
    dec_rate = ""
    if row.get("decoded", "").isdigit() and elapsed:
        dec_rate = f"bad decoded {int(row['decoded']) / float(elapsed[1]):.0f} frames/s (clip: 25 fps)"
    r = edge_result(
        p,
        notes=[
            note,
            "configured 2 analysed fps",
            dec_rate,
            f"'stream ended' ×{ended}",
            f"HTTP {requests}",
            *notes,
        ],
    )
    r.notes = [n for n in r.notes if n]
    r.data.update({"stream_ended": ended, "http_requests": requests})
    return r


def http_mp4(ctx: Ctx, d: Path) -> Result:
    return http_source(ctx, d, ctx.media.faststart_mp4(), "faststart mp4, Range-capable server, loop: true")


def http_moov_at_end(ctx: Ctx, d: Path) -> Result:
    return http_source(ctx, d, BIKES, "bikes.mp4 as is (moov after mdat), Range-capable server")


# weak: rotation, zones, many cameras, shared outbox, a missing file


def rotated(ctx: Ctx, d: Path) -> Result:
    src = ctx.media.rotated_mp4()
    p, notes = bad_beside_good(
        ctx, d, {"source": str(src), "loop": True, "analytics_fps": 2}, duration=ctx.short
    )
    mentions = len(re.findall(r"rotat", p.output(), re.IGNORECASE))
    return edge_result(p, notes=["display matrix 90°", f"'rotat…' ×{mentions} in the output", *notes])


def zone_case(ctx: Ctx, d: Path, polygon: list[list[int]], note: str) -> Result:
    cam = {**good_camera(), "zones": [{"name": "z", "polygon": polygon}]}
    p = edge(d, edge_config(d, [cam]), ctx.short).run()
    return edge_result(p, bad=None, notes=[note])


def zone_outside(ctx: Ctx, d: Path) -> Result:
    return zone_case(ctx, d, [[1000, 1000], [1200, 1000], [1200, 1200], [1000, 1200]], "frame 640x272")


def zone_bowtie(ctx: Ctx, d: Path) -> Result:
    return zone_case(ctx, d, [[0, 136], [640, 272], [640, 136], [0, 272]], "self-intersecting (bow-tie)")


def cameras_64(ctx: Ctx, d: Path) -> Result:
    cams = [good_camera()] + [
        {"id": f"cam{i:02d}", "source": str(BIKES), "loop": True, "analytics_fps": 2} for i in range(1, 64)
    ]
    p = edge(d, edge_config(d, cams), 10, timeout=120).run()
    out = p.output()
    total = summary_rows(out).get("all", {})
    overload = [clean(x) for x in out.splitlines() if OVERLOAD.search(x)]
    peak = f"{p.peak_rss_kb / 1024:.0f} MB" if p.peak_rss_kb else "?"
    notes = [
        f"64 × bikes.mp4 at 2 fps (128 fps asked), 10 s: analysed {total.get('analysed', '?')} "
        f"({total.get('analysed fps', '?')} fps), decoded {total.get('decoded', '?')}",
        f"peak RSS {peak}",
        f"overload warning: {overload[0][:80] if overload else 'none'}",
    ]
    r = edge_result(p, bad=None, notes=notes)
    r.data["overload_lines"] = overload[:5]
    return r


def shared_outbox(ctx: Ctx, d: Path) -> Result:
    model = scripted_model(d, lambda t: t % 4 < 3)
    cfg = edge_config(d, [good_camera(), incident_camera()], model=model, rules=INCIDENT_RULES)
    a = edge(d, cfg, ctx.short + 2, log="output-a.txt").start()
    time.sleep(0.5)
    b = edge(d, cfg, ctx.short + 2, log="output-b.txt").start()
    run_all(a, b)
    (d / "output.txt").write_text(f"== run A\n{a.output()}\n== run B\n{b.output()}")
    notes = [
        f"A: {first_problem(a.output()) or 'no warning'}",
        f"B: {first_problem(b.output()) or 'no warning'}",
    ]
    try:
        events = outbox_events(d / "outbox.sqlite")
        seqs = Counter(e.get("seq") for e in events)
        dup = sum(n - 1 for n in seqs.values() if n > 1)
        notes.append(f"outbox: {len(events)} events, {dup} with a duplicated per-source seq")
    except sqlite3.Error as err:
        notes.append(f"outbox unreadable: {err}")
    return Result(
        command=shown(a.argv) + "  ×2 at once (same config, same outbox; scripted detector)",
        exit=f"A {fmt_rc(a)}; B {fmt_rc(b)}",
        first_line=first_line(b.output()),
        first_problem=first_problem(b.output()),
        good_fps=f"A {fmt_fps(a, 'good')}, B {fmt_fps(b, 'good')}",
        notes=notes + common_notes(a) + common_notes(b),
    )


def missing_file(ctx: Ctx, d: Path) -> Result:
    cams = [{**good_camera(), "loop": False}, {"id": "bad", "source": str(d / "no-such-file.mp4")}]
    p = edge(d, edge_config(d, cams), None, actions=[send(signal.SIGTERM, 25.0)], timeout=50).run()
    ended_alone = "SIGTERM" not in p.done_actions
    note = (
        f"the run ended by itself after {p.ended:.1f} s"
        if ended_alone and p.ended is not None
        else "still running 25 s in (good file ends at ~10 s): stopped with SIGTERM"
    )
    r = edge_result(
        p, notes=["good camera not looped (10 s clip)", note], command=shown(p.argv) + "  (no --duration)"
    )
    r.data["ended_by_itself"] = ended_alone
    return r


# 8, 9, 10: outbox, endpoint and metrics-port mistakes


def outbox_case(ctx: Ctx, d: Path, outbox: Path, note: str) -> Result:
    p = edge(d, edge_config(d, [good_camera()], sink={"outbox": str(outbox)}), ctx.short).run()
    return edge_result(p, bad=None, notes=[note, f"outbox {shown([str(outbox)])}"])


def outbox_is_dir(ctx: Ctx, d: Path) -> Result:
    (d / "outbox-dir").mkdir()
    return outbox_case(ctx, d, d / "outbox-dir", "outbox path is a directory")


def outbox_under_file(ctx: Ctx, d: Path) -> Result:
    (d / "a-file").write_text("not a directory\n")
    return outbox_case(ctx, d, d / "a-file" / "outbox.sqlite", "outbox's parent is a file")


def outbox_readonly(ctx: Ctx, d: Path) -> Result:
    with tmpfs(d / "ro", "1m", readonly=True) as ro:
        return outbox_case(ctx, d, ro / "outbox.sqlite", "outbox on a read-only tmpfs")


def endpoint_case(ctx: Ctx, d: Path, endpoint: str) -> Result:
    model = scripted_model(d, lambda t: t % 4 < 3)
    cfg = edge_config(
        d, [good_camera(), incident_camera()], model=model, sink={"endpoint": endpoint}, rules=INCIDENT_RULES
    )
    p = edge(d, cfg, ctx.short).run()
    rows = summary_rows(p.output())
    status = last_status(p.output())
    outbox = re.search(r"outbox=(\d+)", status)
    notes = [f"endpoint {endpoint!r}; scripted detector so incidents happen"]
    if rows:
        notes.append(
            f"incidents {rows.get('all', {}).get('incidents', '?')}, "
            f"last status outbox={outbox[1] if outbox else '?'}"
        )
    return edge_result(p, bad="inc", notes=notes)


def metrics_port_in_use_run(ctx: Ctx, d: Path) -> Result:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        argv = [
            *safecity(),
            "run",
            str(edge_config(d, [good_camera()])),
            "--duration",
            f"{ctx.short:g}",
            "--metrics-port",
            str(port),
        ]
        p = Proc(argv, d / "output.txt", timeout=ctx.short + 45).run()
    return edge_result(p, bad=None, notes=[f"port {port} held by the harness"])


def metrics_port_in_use_sink(ctx: Ctx, d: Path) -> Result:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        argv = [
            *safecity(),
            "sink",
            "--bind",
            f"tcp://127.0.0.1:{free_port()}",
            "--db",
            str(d / "sink.sqlite"),
            "--insecure",
            "--metrics-port",
            str(port),
        ]
        p = Proc(argv, d / "output.txt", timeout=40, actions=[send(signal.SIGTERM, 8.0)]).run()
    note = "still running at 8 s: SIGTERM" if "SIGTERM" in p.done_actions else f"exited after {p.ended:.1f} s"
    return plain_result(p, notes=[f"port {port} held by the harness", note])


# 11, 12, 16: databases


def sink_db_case(ctx: Ctx, d: Path, db: Path, note: str) -> Result:
    argv = [*safecity(), "sink", "--bind", f"tcp://127.0.0.1:{free_port()}", "--db", str(db), "--insecure"]
    p = Proc(argv, d / "output.txt", timeout=45, actions=[send(signal.SIGTERM, 15.0)]).run()
    stopped = "SIGTERM" in p.done_actions
    return plain_result(
        p,
        notes=[
            note,
            "still running at 15 s: SIGTERM" if stopped else f"exited by itself after {p.ended:.1f} s",
        ],
    )


def sink_db_corrupt(ctx: Ctx, d: Path) -> Result:
    db = d / "corrupt.sqlite"
    db.write_bytes(random.Random(11).randbytes(64 * 1024))
    return sink_db_case(ctx, d, db, "64 KB of random bytes")


def sink_db_dir(ctx: Ctx, d: Path) -> Result:
    (d / "db-dir").mkdir()
    return sink_db_case(ctx, d, d / "db-dir", "--db is a directory")


def events_case(d: Path, db: Path, notes: Sequence[str]) -> Result:
    p = Proc([*safecity(), "events", "--db", str(db)], d / "output.txt", timeout=30).run()
    return plain_result(p, notes=notes)


def events_corrupt(ctx: Ctx, d: Path) -> Result:
    db = d / "corrupt.sqlite"
    db.write_bytes(random.Random(12).randbytes(64 * 1024))
    return events_case(d, db, ["64 KB of random bytes"])


def events_outbox(ctx: Ctx, d: Path) -> Result:
    model = scripted_model(d, lambda t: t % 4 < 3)
    cfg = edge_config(d, [incident_camera()], model=model, rules=INCIDENT_RULES)
    maker = edge(d, cfg, 6, log="make-outbox.txt", metrics=False).run()
    db = d / "outbox.sqlite"
    if not db.exists():
        raise NotBuilt(f"the edge run that makes an outbox wrote none (exit {fmt_rc(maker)})")
    return events_case(d, db, ["an edge outbox (made by a 6 s scripted run) given as --db"])


def sink_full_disk(ctx: Ctx, d: Path) -> Result:
    """A sink whose database sits on a 1 MB tmpfs that is filled, then freed, while an edge sends."""
    with tmpfs(d / "fs", "1m") as fs:
        port = free_port()
        sink = Proc(
            [
                *safecity(),
                "sink",
                "--bind",
                f"tcp://127.0.0.1:{port}",
                "--db",
                str(fs / "sink.sqlite"),
                "--insecure",
                "--metrics-port",
                "0",
            ],
            d / "sink.txt",
            timeout=120,
            scrape=True,
        ).start()
        while sink.poll() and "sink listening" not in sink.output() and sink.elapsed < 20:
            time.sleep(0.1)
        filled = fill(fs / "filler")
        model = scripted_model(d, lambda t: t % 4 < 3)
        cfg = edge_config(
            d,
            [good_camera(), incident_camera()],
            model=model,
            sink={"endpoint": f"tcp://127.0.0.1:{port}"},
            rules=INCIDENT_RULES,
        )
        ed = edge(d, cfg, None, log="edge.txt", timeout=120).start()
        run_all(ed, sink, until=16)
        full_alive = sink.running
        new_full = sink.value("safecity_sink_events_new_total")
        (fs / "filler").unlink()
        freed_at = ed.elapsed
        run_all(ed, sink, until=freed_at + 10)
        new_after = sink.value("safecity_sink_events_new_total")
        after_alive = sink.running
        acked = ed.value("safecity_events_acked_total")
        ed.stop()
        sink.stop()
    (d / "output.txt").write_text(f"== sink\n{sink.output()}\n== edge\n{ed.output()}")
    recovered = after_alive and (new_after or 0) > (new_full or 0)
    notes = [
        f"filler {filled // 1024} KB; sink alive while full: {'yes' if full_alive else 'NO'}",
        f"sink events stored: {new_full} while full → {new_after} 10 s after freeing",
        f"recovered: {'yes' if recovered else 'NO'}; edge acked {acked}",
        f"edge: {first_problem(ed.output()) or 'no warning'}",
    ]
    return Result(
        command=shown(sink.argv) + "  + an edge (scripted incidents) sending to it",
        exit=f"sink {fmt_rc(sink)}; edge {fmt_rc(ed)}",
        first_line=first_line(sink.output()),
        first_problem=first_problem(sink.output()),
        good_fps=fmt_fps(ed, "good"),
        bad_fps=fmt_fps(ed, "inc"),
        notes=notes,
        data={"sink_alive_full": full_alive, "recovered": recovered, "events_new": [new_full, new_after]},
    )


def outbox_full_disk(ctx: Ctx, d: Path) -> Result:
    """The edge's outbox on a 1 MB tmpfs that fills while incidents are written, then is freed."""
    with tmpfs(d / "fs", "1m") as fs:
        model = scripted_model(d, lambda t: t % 4 < 3)
        cfg = edge_config(
            d,
            [good_camera(), incident_camera()],
            model=model,
            sink={"outbox": str(fs / "outbox.sqlite")},
            rules=INCIDENT_RULES,
        )
        ed = edge(d, cfg, None, timeout=120).start()
        emitted = "safecity_incidents_emitted_total{"
        while ed.poll() and not ed.total(emitted) and ed.elapsed < 20:
            time.sleep(0.1)
        filled_at = ed.elapsed
        filled = fill(fs / "filler")
        run_all(ed, until=filled_at + 8)
        alive_full = ed.running
        emitted_full = ed.total(emitted)
        (fs / "filler").unlink()
        freed_at = ed.elapsed
        run_all(ed, until=freed_at + 8)
        emitted_after = ed.total(emitted)
        ended_alone = not ed.running
        ed.stop()
    rate_full = ed.rate("good", since=filled_at + 1, until=freed_at)
    rate_after = ed.rate("good", since=freed_at + 1)
    inc_after = ed.rate("inc", since=freed_at + 1)
    notes = [
        f"filled {filled // 1024} KB at {filled_at:.1f} s, freed at {freed_at:.1f} s",
        f"alive while full: {'yes' if alive_full else 'NO'}"
        + (f"; ended by itself at {ed.ended:.1f} s" if ended_alone and ed.ended else ""),
        f"good fps while full {rate_full if rate_full is None else round(rate_full, 2)}, "
        f"after freeing {rate_after if rate_after is None else round(rate_after, 2)}; "
        f"inc after freeing {inc_after if inc_after is None else round(inc_after, 2)}",
        f"incident events emitted: {emitted_full} when freed → {emitted_after} 8 s later",
    ]
    r = edge_result(p=ed, bad="inc", notes=notes, command=shown(ed.argv) + "  (outbox on a full 1 MB tmpfs)")
    r.data.update({"alive_full": alive_full, "emitted": [emitted_full, emitted_after]})
    return r


# 14, 15, 19: stage death and signals


def stage_dies_failpoint(ctx: Ctx, d: Path) -> Result:
    spec = ctx.failpoint or inference_failpoint()
    p = edge(d, edge_config(d, [good_camera()]), ctx.short, env={"SAFECITY_FAILPOINTS": spec}).run()
    return edge_result(
        p,
        bad=None,
        notes=[f"SAFECITY_FAILPOINTS={spec}"],
        command=f"SAFECITY_FAILPOINTS={spec} " + shown(p.argv),
    )


def inference_failpoint() -> str:
    """A SAFECITY_FAILPOINTS spec that makes inference raise, if pipeline/failpoints.py offers one."""
    fp = ROOT / "pipeline" / "failpoints.py"
    if not fp.exists():
        raise NotBuilt("not injectable yet: no pipeline/failpoints.py")
    doc = fp.read_text()
    code = "\n".join(p.read_text(errors="replace") for p in (ROOT / "pipeline").rglob("*.py"))
    points = sorted(set(re.findall(r"failpoint\(\s*[\"']([\w.\-]+)[\"']", code)))
    infer = [n for n in points if re.search(r"detect|infer|model", n)]
    if not infer:
        raise NotBuilt(f"not injectable yet: no inference failpoint (points: {', '.join(points) or 'none'})")
    for name in infer:  # a documented example of an exception action for that point
        m = re.search(rf"{re.escape(name)}[=:][\w:=.\-]*(raise|error|exception|oom)[\w:=.\-]*", doc, re.I)
        if m:
            return m[0]
    raise NotBuilt(
        f"not injectable yet: failpoint {infer[0]} exists but no exception action is documented "
        "in pipeline/failpoints.py (give one with --failpoint SPEC)"
    )


WRAPPER = '''"""Generated by scripts/hostile.py: safecity whose detector raises from its 5th batch on."""
import sys

import pipeline.runner as runner
from pipeline import cli

if not hasattr(runner, "create_detector"):
    print("hostile: patch point pipeline.runner.create_detector is gone", file=sys.stderr)
    sys.exit(3)
original = runner.create_detector


def patched(cfg):
    det = original(cfg)
    # the inference call: run() where the detector splits prepare/run, else detect()
    name = next(n for n in ("run", "infer", "detect") if callable(getattr(det, n, None)))
    inner, calls = getattr(det, name), [0]

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= 5:
            raise RuntimeError("CUDA out of memory (simulated by scripts/hostile.py)")
        return inner(*args, **kwargs)

    setattr(det, name, failing)
    print(f"hostile: detector.{name} raises from its 5th call on", file=sys.stderr, flush=True)
    return det


runner.create_detector = patched
sys.exit(cli.main(sys.argv[1:]))
'''


def stage_dies_patched(ctx: Ctx, d: Path) -> Result:
    wrapper = d / "wrapper.py"
    wrapper.write_text(WRAPPER)
    argv = [python(), str(wrapper), *run_argv(edge_config(d, [good_camera()]), ctx.short)[1:]]
    p = Proc(argv, d / "output.txt", timeout=ctx.short + 45, scrape=True).run()
    return edge_result(
        p,
        bad=None,
        notes=[
            next(
                (x for x in p.output().splitlines() if x.startswith("hostile:")), "hostile: patch not applied"
            )
            + " (RuntimeError: simulated CUDA OOM)"
        ],
    )


def sigint_startup(ctx: Ctx, d: Path) -> Result:
    p = edge(d, edge_config(d, [good_camera()]), 30, actions=[send(signal.SIGINT, 1.5)], timeout=40).run()
    return edge_result(
        p,
        bad=None,
        command=shown(p.argv) + "  (SIGINT at 1.5 s)",
        notes=[f"ended {p.ended:.1f} s after start" if p.ended else ""],
    )


def sighup(ctx: Ctx, d: Path) -> Result:
    p = edge(
        d,
        edge_config(d, [good_camera()]),
        40,
        actions=[send(signal.SIGHUP, 5.0), send(signal.SIGTERM, 15.0)],
        timeout=60,
    ).run()
    out = p.output()
    notes = [
        "summary printed" if "safecity run:" in out else "NO summary",
        "reloaded its config on SIGHUP, ran on (stopped by SIGTERM at 15 s)"
        if "SIGTERM" in p.done_actions and "SIGHUP: reloading the config file" in out
        else "ignored SIGHUP (stopped by SIGTERM at 15 s)"
        if "SIGTERM" in p.done_actions
        else f"ended {p.ended - 5:.1f} s after SIGHUP"
        if p.ended
        else "",
    ]
    return edge_result(p, bad=None, notes=notes, command=shown(p.argv) + "  (SIGHUP at 5 s)")


# 17: bench


def bench(
    ctx: Ctx, d: Path, args: list[str], *, cwd: Path = ROOT, note: str = "", stop_at: float = 20.0
) -> Result:
    """A bench that is accepted runs for minutes: it is stopped ``stop_at`` seconds in."""
    p = Proc(
        [*safecity(), "bench", *args],
        d / "output.txt",
        timeout=stop_at + 30,
        cwd=cwd,
        actions=[send(signal.SIGTERM, stop_at)],
    ).run()
    notes = [note] if note else []
    if "SIGTERM" in p.done_actions:
        notes.append(f"accepted: still running after {stop_at:g} s, stopped with SIGTERM")
    return plain_result(p, notes=notes)


BENCH_README = ["--cameras", "4", "--seconds", "6"]


def bench_cameras(ctx: Ctx, d: Path) -> Result:
    return bench(ctx, d, BENCH_README, note="as in the README")


def bench_help(ctx: Ctx, d: Path) -> Result:
    return bench(ctx, d, ["--help"])


def bench_outside(ctx: Ctx, d: Path) -> Result:
    """The same from a directory outside the checkout: is the benchmark installed with the project?"""
    elsewhere = Path("/tmp") / f"hostile-bench-{os.getpid()}"
    elsewhere.mkdir(exist_ok=True)
    try:
        note = f"cwd {elsewhere} (outside the checkout)"
        r = bench(ctx, d, BENCH_README, cwd=elsewhere, note=note, stop_at=12.0)
        r.command = f"cd {elsewhere} && {r.command}"
        return r
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


# 18: incident times


def incident_times(ctx: Ctx, d: Path, realtime: bool) -> Result:
    model = scripted_model(d, lambda t: 1 <= t < 4.5 or 5.5 <= t < 9, period=0)
    cam = {**incident_camera(), "loop": False, "realtime": realtime}
    cfg = edge_config(d, [good_camera(), cam], model=model, rules=INCIDENT_RULES)
    p = edge(d, cfg, 14 if realtime else ctx.short).run()
    try:
        events = outbox_events(d / "outbox.sqlite")
    except sqlite3.Error as err:
        r = edge_result(p, bad="inc", notes=[f"outbox unreadable: {err}"])
        return r
    started: dict[str, set[str]] = {}
    for e in events:
        started.setdefault(e["incident_id"], set()).add(str(e.get("started_at")))
    bad = {k: sorted(v) for k, v in started.items() if len(v) > 1}
    notes = [
        f"recorded file (bikes.mp4, not looped, realtime {str(realtime).lower()}), "
        "scripted person 1-4.5 s, 5.5-9 s",
        f"{len(events)} events, {len(started)} incidents, {len(bad)} with differing started_at",
    ]
    if bad:
        k, v = next(iter(bad.items()))
        notes.append(f"e.g. {k[:8]}…: {', '.join(v)}")
    r = edge_result(p, bad="inc", notes=notes)
    r.data.update({"events": len(events), "incidents": len(started), "disagreeing": bad})
    return r


# -- the table of cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    item: str  # which breakage it checks: "B1".."B19" (things that broke once), "W" (weaker spots)
    what: str
    fn: CaseFn


def _endpoint(ep: str) -> CaseFn:
    return lambda ctx, d: endpoint_case(ctx, d, ep)


CASES: list[Case] = [
    Case("corrupt-midstream", "B1", "40 KB of random bytes inside the video data, looped", corrupt_midstream),
    Case("ts-backwards", "B2", "two TS encodes from pts 0 concatenated, looped", ts_backwards),
    Case("ts-wrap", "B2", "TS whose 33-bit timestamps wrap, looped", ts_wrap),
    Case("audio-only", "B3", "an .m4a with no video stream", audio_only),
    Case("rtsp-hung-1", "B4", "RTSP server accepts, never answers; SIGINT at 5 s", rtsp_hung),
    Case("rtsp-hung-2", "B4", "the same, again", rtsp_hung),
    Case("rtsp-hung-3", "B4", "the same, a third time", rtsp_hung),
    Case("http-mp4", "B5", "http:// mp4 (faststart), looped", http_mp4),
    Case("rtsp-password", "B6", "rtsp://user:secret@ to a closed port", rtsp_password),
    Case("greedy-camera", "B7", "25 fps clip with analytics_fps 60 beside the good camera", greedy_camera),
    Case("outbox-is-dir", "B8", "sink.outbox is a directory", outbox_is_dir),
    Case("outbox-under-file", "B8", "sink.outbox under a regular file", outbox_under_file),
    Case("outbox-readonly", "B8", "sink.outbox on a read-only tmpfs", outbox_readonly),
    Case("endpoint-no-port", "B9", "sink.endpoint tcp://127.0.0.1", _endpoint("tcp://127.0.0.1")),
    Case("endpoint-empty", "B9", "sink.endpoint tcp://", _endpoint("tcp://")),
    Case("endpoint-port-99999", "B9", "sink.endpoint port 99999", _endpoint("tcp://127.0.0.1:99999")),
    Case(
        "endpoint-no-such-host",
        "B9",
        "sink.endpoint host that does not resolve",
        _endpoint("tcp://no-such-host.invalid:5555"),
    ),
    Case(
        "metrics-port-in-use-run",
        "B10",
        "safecity run --metrics-port on a port in use",
        metrics_port_in_use_run,
    ),
    Case(
        "metrics-port-in-use-sink",
        "B10",
        "safecity sink --metrics-port on a port in use",
        metrics_port_in_use_sink,
    ),
    Case("sink-db-corrupt", "B11", "safecity sink --db on random bytes", sink_db_corrupt),
    Case("sink-db-dir", "B11", "safecity sink --db a directory", sink_db_dir),
    Case("sink-full-disk", "B12", "sink database on a full 1 MB tmpfs, freed after 16 s", sink_full_disk),
    Case("outbox-full-disk", "B13", "edge outbox on a full 1 MB tmpfs, freed after 8 s", outbox_full_disk),
    Case("stage-dies-failpoint", "B14", "SAFECITY_FAILPOINTS exception in inference", stage_dies_failpoint),
    Case(
        "stage-dies-patched",
        "B14",
        "detector raises from batch 5 (monkeypatched wrapper)",
        stage_dies_patched,
    ),
    Case("sigint-startup", "B15", "SIGINT 1.5 s after start", sigint_startup),
    Case("events-corrupt", "B16", "safecity events --db on random bytes", events_corrupt),
    Case("events-outbox", "B16", "safecity events --db on an edge outbox", events_outbox),
    Case("bench-cameras", "B17", "safecity bench --cameras 4 --seconds 6", bench_cameras),
    Case("bench-help", "B17", "safecity bench --help", bench_help),
    Case("bench-outside-checkout", "B17", "the same from outside the checkout", bench_outside),
    Case(
        "incident-times",
        "B18",
        "started_at across one incident's events, realtime file",
        lambda ctx, d: incident_times(ctx, d, True),
    ),
    Case(
        "incident-times-fast",
        "B18",
        "the same, realtime: false",
        lambda ctx, d: incident_times(ctx, d, False),
    ),
    Case("sighup", "B19", "SIGHUP at 5 s", sighup),
    Case("rtsp-silent", "W", "silent RTSP server: the error message", rtsp_silent),
    Case("rtsp-no-host", "W", "source rtsp:// without a host", rtsp_no_host),
    Case("http-moov-at-end", "W", "http:// mp4 with its index at the end", http_moov_at_end),
    Case("rotated-mp4", "W", "mp4 with a 90° display matrix", rotated),
    Case("zone-outside-frame", "W", "a zone wholly outside the frame", zone_outside),
    Case("zone-bowtie", "W", "a self-intersecting zone", zone_bowtie),
    Case("cameras-64", "W", "the same clip 64 times, 10 s", cameras_64),
    Case("shared-outbox", "W", "two runs sharing one outbox file at once", shared_outbox),
    Case("missing-file", "W", "a missing file in a run of files that would otherwise end", missing_file),
]


# -- driver ---------------------------------------------------------------------------------------


def fresh_dir(path: Path) -> Path:
    for m in mounted_under(path):  # a tmpfs left behind by an interrupted run
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_case(ctx: Ctx, case: Case) -> Result:
    d = fresh_dir(ctx.root / case.name)
    t0 = time.monotonic()
    try:
        r = case.fn(ctx, d)
    except NotBuilt as err:
        r = Result(command="–", exit="not built", first_line="–", notes=[str(err)])
    except Exception as err:  # a harness bug or a generation failure: keep going, say so
        (d / "harness-error.txt").write_text(traceback.format_exc())
        r = Result(command="–", exit="harness error", first_line="–", notes=[f"{type(err).__name__}: {err}"])
    r.case, r.item, r.seconds = case.name, case.item, round(time.monotonic() - t0, 1)
    r.notes = [n for n in r.notes if n]
    out = d / "output.txt"
    if not out.exists():
        out.write_text(
            "".join(f"== {p.name}\n{p.read_text(errors='replace')}\n" for p in sorted(d.glob("*.txt")))
        )
    with out.open("a") as f:
        f.write(
            f"\n== hostile.py: case {case.name}\n{json.dumps(dataclasses.asdict(r), indent=2, default=str)}\n"
        )
    return r


def git_state() -> str:
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" (working tree modified)" if dirty else "")


COLUMNS = [
    "case",
    "item",
    "command",
    "exit",
    "first line",
    "first warning/error",
    "good fps",
    "bad fps",
    "notes",
]


def markdown(results: list[Result], meta: dict[str, Any]) -> str:
    lines = [
        "# Hostile inputs: what the product does with them",
        "",
        f"- code: {meta['git']}; run {meta['started']}, {meta['total_seconds']:.0f} s in all; "
        f"--duration {meta['duration']:g} (short cases {min(meta['duration'], 8):g} s)",
        *([f"- **interrupted {meta['interrupted']}**"] if "interrupted" in meta else []),
        f"- load average before/after: {meta['load_before']} / {meta['load_after']} ({os.cpu_count()} CPUs)",
        "- good camera: bikes.mp4 looped, analytics_fps 2, realtime, fall-yolov8 on CPU "
        "(scripted detector where the notes say so)",
        "- **good fps / bad fps**: analysed frames per second, from `safecity_frames_analysed_total` scraped "
        "each second off `--metrics-port 0` (window: 1 s after the good camera's first analysed frame to the "
        "last scrape at which it still decoded); '(summary)': the end-of-run table's 'analysed fps' (its "
        "elapsed time includes any shutdown drain) where there was no metrics window of 2 s or more",
        "- **first line**: the first line printed (stdout and stderr merged), leaving out the harness's "
        "own `metrics on http://…` and `sink.insecure` lines; a traceback is shown as "
        "'Traceback → exception'",
        "- full output of each case: `data/hostile/<case>/output.txt`",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in results:
        cells = [
            r.case,
            r.item,
            f"`{cell(r.command, 400)}`" if r.command != "–" else "–",
            r.exit,
            r.first_line,
            "(same)" if r.first_problem == r.first_line else r.first_problem or "–",
            r.good_fps,
            r.bad_fps,
            "; ".join(r.notes),
        ]
        lines.append(
            "| " + " | ".join(cell(c, 400 if i in (2, 8) else 160) for i, c in enumerate(cells)) + " |"
        )
    skipped = [r for r in results if r.exit in ("not built", "harness error")]
    if skipped:
        lines += ["", "## Cases not run", ""] + [
            f"- {r.case}: {r.exit}: {'; '.join(r.notes)}" for r in skipped
        ]
    return "\n".join(lines) + "\n"


def select(patterns: str | None) -> list[Case]:
    if not patterns:
        return CASES
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [c for c in CASES if any(fnmatch.fnmatch(c.name, p) or c.item == p for p in pats)]
    if not chosen:
        raise SystemExit(f"no case matches {patterns!r} (see --list)")
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated case names, globs or items (B4, W)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per ordinary run (default 15)")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "hostile" / "report.md")
    ap.add_argument("--failpoint", help="SAFECITY_FAILPOINTS spec that makes inference raise (case 14)")
    ap.add_argument("--fresh", action="store_true", help="regenerate the cached media")
    args = ap.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    if args.list:
        for c in CASES:
            print(f"{c.name:26} {c.item:4} {c.what}")
        return 0
    cases = select(args.only)
    root = ROOT / "data" / "hostile"
    if args.fresh:
        shutil.rmtree(root / "media", ignore_errors=True)
    if not BIKES.exists():
        console.print(f"[red]{BIKES} missing: run `safecity footage samples`")
        return 1
    if not (ROOT / "data" / "models" / "fall-yolov8" / "fall-yolov8.onnx").exists():
        console.print("fetching the model: safecity models fetch fall-yolov8")
        subprocess.run([*safecity(), "models", "fetch", "fall-yolov8"], check=True, env=child_env())
    ctx = Ctx(root=root, duration=args.duration, media=Media(root), failpoint=args.failpoint, console=console)
    meta: dict[str, Any] = {
        "git": git_state(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "duration": args.duration,
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    t0 = time.monotonic()
    results: list[Result] = []
    atexit.register(kill_leftovers)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        for i, case in enumerate(cases, 1):
            console.print(f"[bold][{i}/{len(cases)}][/bold] {case.name}: {case.what} …", highlight=False)
            with console.status(f"{case.name} running"):
                r = run_case(ctx, case)
            results.append(r)
            console.print(
                f"    exit {r.exit} | good {r.good_fps} | bad {r.bad_fps} | "
                f"{r.first_line[:90]}  ({r.seconds:.0f} s)",
                highlight=False,
            )
    except KeyboardInterrupt:
        kill_leftovers()
        meta["interrupted"] = f"after {len(results)} of {len(cases)} cases"
        console.print(f"[red]interrupted {meta['interrupted']}: writing a partial report")
    meta["total_seconds"] = time.monotonic() - t0
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown(results, meta)
    out.write_text(table)
    print(table)
    out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "results": [dataclasses.asdict(r) for r in results]}, indent=2, default=str)
    )
    console.print(
        f"{len(results)} cases in {meta['total_seconds']:.0f} s: {out} and {out.with_suffix('.json')}"
    )
    return 130 if "interrupted" in meta else 0


if __name__ == "__main__":
    sys.exit(main())

"""What an operator sees when things go wrong: one line naming the problem and the right exit status,
never a traceback; signals at any time; a dead stage is a failed run."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import StorageError
from pipeline.events.outbox import Outbox
from pipeline.runner import Runner

from .util import free_port, scripted, write_config

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """``safecity`` in this process: (exit status, stdout, stderr); signal handlers restored after."""

    def run(*args: str) -> tuple[int, str, str]:
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            rc = main(list(args))
        finally:
            for s, h in saved.items():
                signal.signal(s, h)
        out = capsys.readouterr()
        return rc, out.out, out.err

    yield run


def edge_config(tmp_path: Path, clip: Path, **sink: object) -> Path:
    script = scripted(tmp_path / "s.jsonl", [], ["person"], 0)
    return write_config(
        tmp_path / "edge.yaml",
        device="cpu",
        cameras=[{"id": "good", "source": str(clip), "loop": True, "analytics_fps": 5}],
        model={"backend": "scripted", "scripted_detections": str(script)},
        sink={
            "endpoint": f"tcp://127.0.0.1:{free_port()}",
            "outbox": str(tmp_path / "outbox.sqlite"),
            "insecure": True,
            **sink,
        },
    )


@pytest.mark.parametrize(
    ("outbox", "expect"),
    [
        pytest.param("{tmp}", "the outbox {tmp} is a directory", id="a directory"),
        pytest.param(
            "/etc/hostname/x/outbox.sqlite",
            "the outbox /etc/hostname/x/outbox.sqlite cannot be created: /etc/hostname is a file, "
            "not a directory",
            id="under a file",
        ),
    ],
)
def test_an_outbox_that_cannot_be_opened_is_one_line_naming_it(
    cli: Cli, tmp_path: Path, clips: list[Path], outbox: str, expect: str
) -> None:
    path = outbox.format(tmp=tmp_path)
    rc, _, err = cli("run", str(edge_config(tmp_path, clips[0], outbox=path)), "--duration", "1")
    assert rc == 1 and err.strip().splitlines() == [err.strip()], err
    assert err.startswith("error: " + expect.format(tmp=tmp_path)), err


def test_a_second_edge_on_the_same_outbox_is_refused(tmp_path: Path) -> None:
    first = Outbox(tmp_path / "o.sqlite", lock=True)
    try:
        with pytest.raises(StorageError, match=rf"is in use by another process \(pid {os.getpid()}\)"):
            Outbox(tmp_path / "o.sqlite", lock=True)
    finally:
        first.close()
    Outbox(tmp_path / "o.sqlite", lock=True).close()  # free again once the first is closed


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_a_metrics_port_in_use_is_one_line_naming_it(
    cli: Cli, tmp_path: Path, clips: list[Path], taken_port: int
) -> None:
    rc, _, err = cli("run", str(edge_config(tmp_path, clips[0])), "--metrics-port", str(taken_port))
    assert (
        rc == 1
        and err.strip()
        == f"error: metrics port {taken_port} on 0.0.0.0 is in use; choose another with --metrics-port"
    )
    sink = (
        "sink",
        "--insecure",
        "--bind",
        f"tcp://127.0.0.1:{free_port()}",
        "--db",
        str(tmp_path / "s.sqlite"),
    )
    rc, _, err = cli(*sink, "--metrics-port", str(taken_port))
    assert rc == 1 and f"metrics port {taken_port} on 0.0.0.0 is in use" in err and "Traceback" not in err


def corrupt_file(path: Path) -> Path:
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    return path


def an_outbox(path: Path) -> Path:
    Outbox(path).close()
    return path


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        pytest.param(lambda p: corrupt_file(p), "is not a SQLite database", id="corrupt"),
        pytest.param(lambda p: p.mkdir() or p, "is a directory", id="a directory"),
        pytest.param(lambda p: an_outbox(p), "is an edge outbox, not a sink store", id="an outbox"),
    ],
)
def test_a_sink_store_that_is_not_one_is_one_line_naming_it(
    cli: Cli, tmp_path: Path, make: Callable[[Path], Path], expect: str
) -> None:
    db = make(tmp_path / "events.sqlite")
    t0 = time.monotonic()
    rc, _, err = cli("sink", "--insecure", "--bind", f"tcp://127.0.0.1:{free_port()}", "--db", str(db))
    assert rc == 1 and time.monotonic() - t0 < 3.0
    assert one_line(err).startswith("error: ") and f"{db} {expect}" in err, err
    rc, out, err = cli("events", "--db", str(db))
    assert rc == 1 and not out
    assert one_line(err).startswith("error: ") and f"{db} {expect}" in err, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bench_takes_its_options_as_the_readme_shows(cli: Cli) -> None:
    with pytest.raises(SystemExit) as done:
        cli("bench", "--help")
    assert done.value.code == 0
    with pytest.raises(SystemExit) as done:
        cli("bench", "--cameras", "4", "--no-such-option")  # reaches the benchmark's own parser
    assert done.value.code == 2


def test_the_benchmarks_are_installed_with_the_package(tmp_path: Path) -> None:
    import shutil
    import zipfile

    repo, src = Path(__file__).resolve().parent.parent, tmp_path / "src"  # built from a copy: no build/ left
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(repo / name, src / name)
    for name in ("pipeline", "benchmarks"):
        shutil.copytree(repo / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("safecity-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "benchmarks/throughput.py" in names and "pipeline/cli.py" in names


# -- whole processes: signals, a dead stage ---------------------------------------------------------


def start_edge(cfg: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float = 60.0) -> list[str]:
    """Read the process's stderr until a line holding ``needle``; the lines read."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if needle in line:
                return lines
    raise AssertionError(f"no line with {needle!r} in: {''.join(lines)}")


def finish(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


@pytest.mark.slow
def test_ctrl_c_while_starting_is_a_clean_exit_130(tmp_path: Path, clips: list[Path]) -> None:
    proc = start_edge(edge_config(tmp_path, clips[0]))
    time.sleep(1.0)  # importing torch and loading the model: a few seconds on this machine
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 130, err
    assert err.strip() == "interrupted (SIGINT) while starting", err


@pytest.mark.slow
def test_sigterm_stops_a_running_edge_cleanly_with_its_summary(tmp_path: Path, clips: list[Path]) -> None:
    """SIGTERM stops the edge cleanly (SIGHUP reloads its config: tests/test_live.py). Beside the good
    camera, one whose URL carries a password (and whose server is not there): never printed."""
    cfg = edge_config(tmp_path, clips[0], drain_seconds=0)
    secret = f"rtsp://admin:s3cret-pw@127.0.0.1:{free_port()}/Streaming/Channels/101"
    cfg.write_text(cfg.read_text().replace("cameras:\n", f"cameras:\n- id: locked\n  source: {secret}\n"))
    proc = start_edge(cfg)
    lines = wait_for_line(proc, "good up")  # the status line: it is running
    time.sleep(1.5)  # the locked camera fails and retries meanwhile
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    err = "".join(lines) + err
    assert rc == 0, err
    assert "SIGTERM: stopping" in err and "safecity run:" in err and "Traceback" not in err
    assert "camera locked: cannot open rtsp://admin:***@127.0.0.1" in err and "s3cret" not in err


@pytest.mark.slow
def test_a_hung_camera_does_not_hold_up_shutdown(tmp_path: Path, clips: list[Path]) -> None:
    """An RTSP server that accepts and never answers, beside a good camera: Ctrl-C stops the run at
    once, cleanly, every time (it used to wait out FFmpeg's timeout and then crash at exit)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        cfg = edge_config(tmp_path, clips[0], drain_seconds=0)
        text = cfg.read_text().replace(
            "cameras:\n",
            f"cameras:\n- id: hung\n  source: rtsp://127.0.0.1:{silent.getsockname()[1]}/cam\n"
            "  open_timeout_seconds: 60\n  read_timeout_seconds: 60\n",
        )
        cfg.write_text(text)
        for _ in range(3):
            proc = start_edge(cfg)
            wait_for_line(proc, "good up")
            time.sleep(0.5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rc, err = finish(proc)
            assert rc == 0, err
            assert time.monotonic() - t0 < 5.0
            assert "did not stop" not in err and "Traceback" not in err and "Fatal Python error" not in err
    finally:
        silent.close()


@pytest.mark.slow
def test_a_stage_that_dies_ends_the_run_with_exit_1_and_its_error(tmp_path: Path, clips: list[Path]) -> None:
    proc = start_edge(
        edge_config(tmp_path, clips[0], drain_seconds=0), SAFECITY_FAILPOINTS="detect.batch=3:raise"
    )
    rc, err = finish(proc, 60)
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert lines[-1] == "error: inference stage failed: FailpointError: failpoint detect.batch", err
    assert "safecity run:" in err  # the summary still shows what the run did


class OutOfMemoryDetector:
    """A detector that runs out of GPU memory on its second batch."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.info = inner.info  # type: ignore[attr-defined]
        self.batches = 0

    def prepare(self, batch: object) -> object:
        return batch

    def run(self, prepared: object) -> object:
        import torch

        self.batches += 1
        if self.batches == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.detect(prepared)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


def test_a_detector_out_of_memory_stops_the_run_with_that_error(tmp_path: Path, clips: list[Path]) -> None:
    from pipeline.detect import create_detector

    cfg = load_config(edge_config(tmp_path, clips[0], drain_seconds=0))
    runner = Runner(cfg, detector=OutOfMemoryDetector(create_detector(cfg)))  # type: ignore[arg-type]
    t0 = time.monotonic()
    runner.run(duration_s=30)
    assert time.monotonic() - t0 < 10  # it did not run on to the end of its duration
    assert runner.error is not None and runner.error.stage == "inference"
    assert (
        str(runner.error)
        == "inference stage failed: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )


def test_a_sender_that_dies_ends_the_run(
    tmp_path: Path, clips: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(edge_config(tmp_path, clips[0], drain_seconds=0))
    cfg.sink.endpoint = "tcp://"  # past validation (the config refuses it): ZeroMQ refuses to connect
    runner = Runner(cfg)
    with caplog.at_level(logging.ERROR):
        runner.run(duration_s=30)
    assert runner.error is not None and runner.error.stage == "event sender"
    assert "event sender stage failed" in caplog.text


def test_an_unresolvable_sink_host_is_said_loudly(
    tmp_path: Path, clips: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(edge_config(tmp_path, clips[0], drain_seconds=0))
    cfg.sink.endpoint = "tcp://no-such-sink.invalid:5555"
    with caplog.at_level(logging.ERROR):
        Runner(cfg).run(duration_s=1.0)
    assert "the sink's host 'no-such-sink.invalid' does not resolve" in caplog.text


def test_a_runner_that_fails_to_build_frees_its_outbox(tmp_path: Path, clips: list[Path]) -> None:
    from pipeline.errors import BackendUnavailableError

    cfg = load_config(edge_config(tmp_path, clips[0]))
    cfg.decoder = "nvdec"  # asked for by name, and this machine has no GPU
    cfg.device = "cpu"
    with pytest.raises(BackendUnavailableError):
        Runner(cfg)
    cfg.decoder = "auto"
    Runner(cfg).stop()  # the outbox is free for the next one (it used to stay locked)


def test_a_run_in_which_every_camera_failed_is_exit_1(cli: Cli, tmp_path: Path, clips: list[Path]) -> None:
    cfg = edge_config(tmp_path, tmp_path / "missing.mp4", drain_seconds=0)
    cfg.write_text(cfg.read_text().replace("loop: true", "loop: true\n  reconnect_initial_seconds: 0.05"))
    rc, _, err = cli("run", str(cfg), "--quiet")
    assert rc == 1 and err.strip().splitlines()[-1].startswith("error: no camera could be read"), err


@pytest.mark.slow
def test_an_edge_started_with_nohup_survives_the_hangup(tmp_path: Path, clips: list[Path]) -> None:
    def ignore_hangup() -> None:  # what nohup does before it starts the program
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(edge_config(tmp_path, clips[0], drain_seconds=0))],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_hangup,
    )
    wait_for_line(proc, "good up")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proc.poll() is None, "a hangup stopped an edge started with nohup"
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    assert rc == 0 and "SIGHUP" not in err and "SIGTERM: stopping" in err

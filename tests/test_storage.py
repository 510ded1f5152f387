"""Full disks, for real: a small tmpfs is mounted, its last byte taken by a filler file, then freed.
The sink refuses to acknowledge instead of dying; the edge keeps analysing, holds incidents in memory
(bounded, counting what it drops) and writes them when space returns. Nothing acknowledged is lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.events.outbox import Outbox
from pipeline.events.transport import Sender
from pipeline.metrics import Metrics
from pipeline.runner import Runner

from .test_e2e import sample, scrape
from .test_events import make_event
from .util import free_port, scripted, wait_until, write_config


class SmallDisk:
    """A 4 MiB tmpfs; ``fill()`` takes every free byte, ``free()`` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 1):  # down to the last byte
                try:
                    while os.write(fd, b"\0" * size) == size:
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if res.returncode != 0:
        if os.environ.get("SAFECITY_TESTS_MAY_SKIP") == "1":
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        pytest.fail(f"the full-disk tests mount a tmpfs (as root): {res.stderr.strip()}")
    try:
        yield SmallDisk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def events_in(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        return [r[0] for r in c.execute("SELECT event_id FROM events")]


def test_a_sink_on_a_full_disk_stops_acknowledging_and_recovers_without_losing_anything(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    port, mport = free_port(), free_port()
    db = small_disk.path / "events.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "sink",
        "--insecure",
        "--quiet",
        "--bind",
        f"tcp://127.0.0.1:{port}",
    ]
    sink = subprocess.Popen(
        [*cmd, "--db", str(db), "--metrics-port", str(mport)], stderr=subprocess.PIPE, text=True
    )
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sender = Sender(
        outbox_path=outbox.path,
        endpoint=f"tcp://127.0.0.1:{port}",
        metrics=None,
        ack_timeout_s=0.5,
        max_backoff_s=1.0,
    )
    sender.start()
    try:
        sent = [make_event(i) for i in range(40)]
        outbox.append_many([(e, None) for e in sent[:20]])
        sender.notify()
        assert wait_until(lambda: sender.acked == 20, 30)

        small_disk.fill()
        outbox.append_many([(e, None) for e in sent[20:]])
        sender.notify()
        assert wait_until(lambda: (sample(scrape(mport), "safecity_sink_store_errors_total") or 0) >= 2, 15)
        time.sleep(1.0)
        assert sink.poll() is None, "the sink died of a full disk"
        assert sample(scrape(mport), "safecity_sink_store_ok") == 0
        assert sender.acked == 20  # nothing acknowledged that is not stored

        small_disk.free()
        assert wait_until(lambda: sender.acked == 40, 30)
        assert sample(scrape(mport), "safecity_sink_store_ok") == 1
        assert sorted(events_in(db)) == sorted(e["event_id"] for e in sent)  # each once, none lost
    finally:
        sender.stop(drain_s=0)
        outbox.close()
        sink.terminate()
        _, err = sink.communicate(timeout=15)
    assert sink.returncode == 0, err
    assert err.count("cannot store events in") == 1 and err.count("storing events in") == 1  # once per change


def test_an_edge_on_a_full_disk_keeps_analysing_holds_incidents_and_writes_them_later(
    tmp_path: Path, clips: list[Path], small_disk: SmallDisk
) -> None:
    # a person stands in a zone for ever: an update event every 0.2 s of video, with a snapshot each
    rows = [{"camera": "cam", "t": 0.0, "boxes": [[100, 100, 140, 200, 0.9, 0]]}]
    cfg = load_config(
        write_config(
            tmp_path / "c.yaml",
            cameras=[
                {
                    "id": "cam",
                    "source": str(clips[0]),
                    "loop": True,
                    "analytics_fps": 10,
                    "zones": [{"name": "z", "polygon": [[0, 0], [320, 0], [320, 240], [0, 240]]}],
                }
            ],
            model={
                "backend": "scripted",
                "scripted_detections": str(scripted(tmp_path / "s.jsonl", rows, ["person"], 0)),
            },
            rules={
                "encroachment": {
                    "dwell_seconds": 0.1,
                    "stationary_seconds": 0.1,
                    "confirm_seconds": 0,
                    "update_seconds": 0.2,
                }
            },
            sink={
                "endpoint": f"tcp://127.0.0.1:{free_port()}",
                "outbox": str(small_disk.path / "outbox.sqlite"),
                "insecure": True,
                "drain_seconds": 0,
                "max_held_events": 6,
            },
        )
    )
    metrics = Metrics()
    runner = Runner(cfg, metrics=metrics)
    reg = metrics.registry

    def value(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, labels) or 0.0

    runner.start()
    try:
        assert wait_until(lambda: runner.stats.incidents >= 3, 20)
        small_disk.fill()
        assert wait_until(lambda: value("safecity_outbox_writable") == 0, 10)
        analysed = value("safecity_frames_analysed_total", camera="cam")
        assert wait_until(lambda: value("safecity_incident_events_lost_total") >= 2, 20)  # past the bound
        assert runner.publisher.held_events <= 6
        assert value("safecity_frames_analysed_total", camera="cam") > analysed + 10  # the camera went on
        committed_while_full = runner.stats.incidents

        small_disk.free()
        assert wait_until(lambda: value("safecity_outbox_writable") == 1, 10)
        assert wait_until(
            lambda: runner.stats.incidents > committed_while_full + 6, 10
        )  # held ones, then new
        assert runner.error is None
    finally:
        runner.request_stop()
        runner.stop()
    assert runner.error is None
    lost = int(value("safecity_incident_events_lost_total"))
    assert lost == runner.publisher.lost >= 2
    with sqlite3.connect(cfg.sink.outbox) as c:
        stored = c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert stored == runner.stats.incidents  # every event counted as emitted is in the outbox


def test_an_edge_whose_outbox_cannot_be_written_at_start_says_so(
    tmp_path: Path, clips: list[Path], small_disk: SmallDisk
) -> None:
    small_disk.fill()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            str(_edge(tmp_path, clips[0], small_disk.path / "o.sqlite")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert (
        res.stderr.strip().splitlines()[-1].startswith(f"error: the outbox {small_disk.path / 'o.sqlite'} ")
    )
    assert "Traceback" not in res.stderr


def _edge(tmp_path: Path, clip: Path, outbox: Path) -> Path:
    return write_config(
        tmp_path / "edge.yaml",
        cameras=[{"id": "cam", "source": str(clip)}],
        model={
            "backend": "scripted",
            "scripted_detections": str(scripted(tmp_path / "s.jsonl", [], ["person"], 0)),
        },
        sink={"endpoint": f"tcp://127.0.0.1:{free_port()}", "outbox": str(outbox), "insecure": True},
    )

"""Real outbox (SQLite), real sender (DEALER), real sink (ROUTER) over loopback TCP."""

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.events.outbox import Outbox
from pipeline.events.schema import build_event
from pipeline.events.sink import Sink
from pipeline.events.transport import Sender, SnapshotMode
from pipeline.metrics import Metrics
from pipeline.types import Incident

from .conftest import SinkThread
from .util import wait_until


def make_event(i: int) -> dict:
    inc = Incident(
        incident_id=f"inc-{i}",
        type="encroachment",
        status="start",
        severity="low",
        camera_id="cam1",
        zone="z",
        started_at=float(i),
        emitted_at=float(i),
        ended_at=None,
    )
    return build_event(
        inc,
        source="edge-1",
        location=None,
        frame_w=64,
        frame_h=48,
        model_name="m",
        model_version="1",
        wall_offset=1.79e9,
        snapshot_sha256=None,
    )


def stored(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT source, event_id, seq FROM events ORDER BY seq").fetchall()


def test_every_event_is_delivered_once_in_the_store(tmp_path: Path, port: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    events = [make_event(i) for i in range(200)]
    for e in events:
        outbox.append(e, None)
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    metrics = Metrics()
    sender = Sender(
        outbox_path=tmp_path / "outbox.sqlite",
        endpoint=f"tcp://127.0.0.1:{port}",
        metrics=metrics,
        max_in_flight=32,
    )
    sender.start()
    try:
        assert wait_until(lambda: outbox.count_pending() == 0)
        rows = stored(tmp_path / "sink.sqlite")
        assert [r[2] for r in rows] == list(range(1, 201))
        assert {r[1] for r in rows} == {e["event_id"] for e in events}
        assert metrics.registry.get_sample_value("safecity_events_acked_total") == 200
    finally:
        sender.stop(drain_s=1)
        sink.close()


def test_sink_down_then_up_loses_nothing_and_stores_no_duplicates(tmp_path: Path, port: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sender = Sender(
        outbox_path=tmp_path / "outbox.sqlite",
        endpoint=f"tcp://127.0.0.1:{port}",
        metrics=None,
        ack_timeout_s=0.3,
        max_backoff_s=1.0,
    )
    sender.start()
    try:
        for i in range(20):
            outbox.append(make_event(i), None)
        sender.notify()
        time.sleep(1.0)  # no sink yet: sends and resends go nowhere
        assert outbox.count_pending() == 20
        sink = SinkThread(port, tmp_path / "sink.sqlite")
        assert wait_until(lambda: outbox.count_pending() == 0)
        for i in range(20, 30):
            outbox.append(make_event(i), None)
        sender.notify()
        assert wait_until(lambda: outbox.count_pending() == 0)
        rows = stored(tmp_path / "sink.sqlite")
        assert len(rows) == 30 and len({r[1] for r in rows}) == 30
        sink.close()
    finally:
        sender.stop(drain_s=1)


def test_rejected_event_goes_to_dead_letter_not_into_endless_retry(tmp_path: Path, port: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    bad = make_event(1)
    bad["type"] = "jaywalking"
    outbox.append(bad, None)
    outbox.append(make_event(2), None)
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    sender = Sender(outbox_path=tmp_path / "outbox.sqlite", endpoint=f"tcp://127.0.0.1:{port}", metrics=None)
    sender.start()
    try:
        assert wait_until(lambda: outbox.count_pending() == 0)
        dead = outbox.conn.execute("SELECT event_id, reason FROM dead_letter").fetchall()
        assert dead == [(bad["event_id"], dead[0][1])] and "jaywalking" in dead[0][1]
        assert len(stored(tmp_path / "sink.sqlite")) == 1
    finally:
        sender.stop(drain_s=1)
        sink.close()


def test_undelivered_events_stay_in_the_outbox_after_stop(tmp_path: Path, port: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for i in range(5):
        outbox.append(make_event(i), None)
    sender = Sender(outbox_path=tmp_path / "outbox.sqlite", endpoint=f"tcp://127.0.0.1:{port}", metrics=None)
    sender.start()
    t0 = time.monotonic()
    sender.stop(drain_s=0.5)
    assert time.monotonic() - t0 < 5 and not sender.is_alive()
    assert Outbox(tmp_path / "outbox.sqlite").count_pending() == 5


def test_marking_delivered_touches_exactly_the_acked_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    seqs = outbox.append_many([(make_event(i), None) for i in range(20)])
    outbox.mark_delivered([seqs[2]])
    with sqlite3.connect(tmp_path / "outbox.sqlite") as c:
        (first,) = c.execute("SELECT delivered_at FROM outbox WHERE seq = ?", (seqs[2],)).fetchone()
    time.sleep(0.01)
    acked = [seqs[i] for i in (9, 3, 4, 5, 2, 2, 12, 13, 19, 0)]  # out of order, runs, a repeat
    outbox.mark_delivered(acked)
    with sqlite3.connect(tmp_path / "outbox.sqlite") as c:
        rows = dict(c.execute("SELECT seq, delivered_at FROM outbox").fetchall())
    assert {s for s, at in rows.items() if at is not None} == set(acked)
    assert rows[seqs[2]] == first  # delivered once: its time is kept
    assert outbox.count_pending() == 20 - len(set(acked))
    assert [seq for seq, *_ in outbox.pending(after_seq=0, limit=100)] == sorted(set(seqs) - set(acked))


def test_sink_reports_a_port_in_use(tmp_path: Path, port: int) -> None:
    first = SinkThread(port, tmp_path / "a.sqlite")
    try:
        stop = threading.Event()
        second = Sink(bind=f"tcp://127.0.0.1:{port}", store=tmp_path / "b.sqlite")
        second.serve(stop)
        assert second.error is not None and "Address already in use" in str(second.error)
    finally:
        first.close()


def snapshot_event(i: int, jpeg: bytes) -> dict:
    e = make_event(i)
    digest = hashlib.sha256(jpeg).hexdigest()
    e["evidence"] = {
        "snapshot": f"sha256:{digest}",
        "sha256": digest,
        "content_type": "image/jpeg",
        "bytes": len(jpeg),
    }
    return e


def snapshot_sender(
    tmp_path: Path, port: int, mode: SnapshotMode, metrics: Metrics | None, **options: Any
) -> Sender:
    return Sender(
        outbox_path=tmp_path / "outbox.sqlite",
        endpoint=f"tcp://127.0.0.1:{port}",
        metrics=metrics,
        snapshots=mode,
        source="edge-1",
        **options,
    )


def test_the_window_is_bounded_in_bytes_as_well_as_events(tmp_path: Path, port: int) -> None:
    """Inline snapshots of up to 3 MiB could otherwise hold max_in_flight of them in memory."""
    outbox = Outbox(tmp_path / "outbox.sqlite")
    jpegs = [bytes([i]) * 50_000 for i in range(20)]
    for i, jpeg in enumerate(jpegs):
        outbox.append(snapshot_event(i, jpeg), jpeg)
    sender = snapshot_sender(tmp_path, port, "inline", None, max_in_flight=256, max_in_flight_bytes=120_000)
    sender.start()  # no sink yet: nothing is acked
    try:
        assert wait_until(lambda: len(sender.in_flight) > 0)
        time.sleep(0.5)
        assert len(sender.in_flight) == 3  # 100 KB is under the bound, the third event reaches it
        assert 150_000 <= sender.in_flight_bytes < 160_000
        sink = SinkThread(port, tmp_path / "sink.sqlite")
        try:
            assert wait_until(lambda: outbox.count_pending() == 0, 30)
            assert len(stored(tmp_path / "sink.sqlite")) == 20
            assert sender.in_flight_bytes == 0 and not sender.in_flight
        finally:
            sink.close()
    finally:
        sender.stop(drain_s=1)


def test_snapshots_by_reference_are_fetched_by_the_sink_even_across_its_restart(
    tmp_path: Path, port: int
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    jpegs = [bytes([i]) * 50_000 for i in range(30)]
    for i, jpeg in enumerate(jpegs):
        outbox.append(snapshot_event(i, jpeg), jpeg)
    outbox.append(snapshot_event(30, jpegs[0]), jpegs[0])  # one image, two incident steps: stored once
    metrics = Metrics()
    sender = snapshot_sender(tmp_path, port, "reference", metrics)
    db = tmp_path / "sink.sqlite"
    sink = SinkThread(port, db)
    sink.sink._request_snapshots = lambda *a: None  # type: ignore[method-assign]  # this one only stores
    sender.start()
    try:
        assert wait_until(lambda: outbox.count_pending() == 0)
        with sqlite3.connect(db) as c:
            assert c.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0  # nothing travelled inline
            assert c.execute("SELECT COUNT(*) FROM snapshot_wanted").fetchone()[0] == 30
        sink.close()
        sink = SinkThread(port, db)  # a restarted sink remembers what it still wants
        with sqlite3.connect(db) as c:

            def all_fetched() -> bool:
                return c.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 30

            assert wait_until(all_fetched, 30)
            got = dict(c.execute("SELECT sha256, jpeg FROM snapshots").fetchall())
            assert c.execute("SELECT COUNT(*) FROM snapshot_wanted").fetchone()[0] == 0
        assert got == {hashlib.sha256(j).hexdigest(): j for j in jpegs}
        assert metrics.registry.get_sample_value("safecity_snapshots_served_total") == 30
        assert sink.sink.metrics.snapshots_fetched._value.get() == 30
        # an operator reads them back from the sink's store
        sha = hashlib.sha256(jpegs[3]).hexdigest()
        cli = [sys.executable, "-m", "pipeline.cli", "events", "--db", str(db)]
        res = subprocess.run(
            [*cli, "--snapshot", sha[:12], "-o", str(tmp_path / "s.jpg")], capture_output=True
        )
        assert res.returncode == 0 and (tmp_path / "s.jpg").read_bytes() == jpegs[3], res.stderr
        res = subprocess.run([*cli, "--last", "3"], capture_output=True, text=True)
        assert res.returncode == 0 and len(res.stdout.splitlines()) == 3, res.stderr
        assert f"sha256={hashlib.sha256(jpegs[0]).hexdigest()[:16]}" in res.stdout.splitlines()[-1]
    finally:
        sender.stop(drain_s=1)
        sink.close()


def test_a_snapshot_the_edge_no_longer_has_is_counted_missing(tmp_path: Path, port: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    jpeg = b"\xff\xd8" + b"x" * 1000
    outbox.append(snapshot_event(1, jpeg), jpeg)
    outbox.conn.execute("DELETE FROM snapshots")  # as if pruned after the retention time
    sender = snapshot_sender(tmp_path, port, "reference", None)
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    sender.start()
    try:
        assert wait_until(lambda: sink.sink.metrics.snapshots_missing._value.get() == 1, 20)
        assert outbox.count_pending() == 0  # the event itself was delivered
        with sqlite3.connect(tmp_path / "sink.sqlite") as c:
            assert c.execute("SELECT COUNT(*) FROM snapshot_wanted").fetchone()[0] == 0
    finally:
        sender.stop(drain_s=1)
        sink.close()


def test_a_snapshot_over_the_message_limit_does_not_block_delivery(tmp_path: Path, port: int) -> None:
    """The sink drops a connection that sends over 4 MiB at once; an oversized snapshot (the runner
    keeps its JPEGs smaller) is never sent: its event and the next are delivered, the image is missing."""
    outbox = Outbox(tmp_path / "outbox.sqlite")
    big = b"\xff\xd8" + bytes(5 * 1024 * 1024)
    outbox.append(snapshot_event(1, big), big)
    outbox.append(make_event(2), None)
    sender = snapshot_sender(tmp_path, port, "inline", None)
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    sender.start()
    try:
        assert wait_until(lambda: outbox.count_pending() == 0, 20)
        assert wait_until(lambda: sink.sink.metrics.snapshots_missing._value.get() == 1, 20)
        assert len(stored(tmp_path / "sink.sqlite")) == 2
    finally:
        sender.stop(drain_s=1)
        sink.close()


def test_incident_snapshots_are_halved_until_they_fit_a_message() -> None:
    import torch
    from torchvision.io import decode_jpeg

    from pipeline.events.publish import snapshot_jpeg

    noise = torch.randint(
        0, 256, (3, 480, 640), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    full = snapshot_jpeg(noise, quality=95, limit_bytes=10**9)
    small = snapshot_jpeg(noise, quality=95, limit_bytes=len(full) // 3)
    assert len(small) <= len(full) // 3
    assert decode_jpeg(torch.frombuffer(bytearray(small), dtype=torch.uint8)).shape[1:] in (
        (240, 320),
        (120, 160),
    )


def test_a_recordings_snapshot_tells_the_time_in_the_video() -> None:
    """A live camera's snapshot caption says the wall-clock time; a recording's, its time in the video
    (the run's clock means nothing to someone looking at recorded footage)."""
    import numpy as np

    from pipeline.events.annotate import annotate, video_time
    from pipeline.types import Incident

    assert (
        video_time(65.34) == "0:01:05.3"
        and video_time(3725.0) == "1:02:05.0"
        and video_time(-1) == "0:00:00.0"
    )
    inc = Incident("i", "encroachment", "start", "medium", "cam", None, 1.0, 2.0, None, [], 0.9)
    frame = np.zeros((240, 320, 3), np.uint8)
    live = annotate(frame, inc, [], wall_time=1.7e9)
    a = annotate(frame, inc, [], wall_time=1.7e9, media_time=65.3)
    b = annotate(frame, inc, [], wall_time=1.8e9, media_time=65.3)
    assert (a == b).all()  # the run's clock does not show on a recording's snapshot
    assert not (a == live).all()

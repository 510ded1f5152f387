"""Edge heartbeats: the protocol (versioned, checked), a real sender and sink storing camera health,
and how the console reads it (a silent edge's cameras are unknown)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from pipeline.console.feed import camera_health
from pipeline.console.store import ConsoleStore
from pipeline.errors import SchemaError
from pipeline.events.heartbeat import Beats, parse
from pipeline.events.transport import Sender

from .conftest import SinkThread
from .iccc import Edge
from .test_security import curve_sink, edge_curve
from .util import wait_until


def beat(**over: object) -> bytes:
    body = {"v": 1, "source": "edge-1", "interval_s": 5, "cameras": [{"id": "c1", "state": "up"}]}
    body.update(over)
    return json.dumps(body).encode()


def test_a_version_1_heartbeat_parses_and_a_later_version_keeps_what_a_sink_knows() -> None:
    hb = parse(beat())
    assert (hb.source, hb.interval_s, hb.cameras[0]["state"]) == ("edge-1", 5.0, "up")
    later = parse(beat(v=2, gpu={"util": 0.5}, cameras=[{"id": "c1", "state": "up", "new_field": 1}]))
    assert later.body["gpu"] == {"util": 0.5} and later.cameras[0]["new_field"] == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "not JSON"),
        (beat(v=0), "version 'v' must be an integer >= 1"),
        (json.dumps({"source": "e", "cameras": []}).encode(), "version 'v'"),
        (beat(source=""), "'source' (the edge id) must match"),
        (beat(source="edge/1"), "'source' (the edge id) must match"),
        (beat(cameras=[{"id": "a+#", "state": "up"}]), "a camera's 'id' must match"),  # MQTT wildcards
        (beat(cameras=[{"id": "\ud800", "state": "up"}]), "a camera's 'id' must match"),  # a lone surrogate
        (beat(cameras=[{"id": "c" * 65, "state": "up"}]), "a camera's 'id' must match"),
        (b'{"v": 1, "source": "e", "interval_s": 1' + b"0" * 400 + b', "cameras": []}', "interval_s must be"),
        (b'{"v": 1, "source": "e", "interval_s": NaN, "cameras": []}', "NaN is not a number"),
        (b"[" * 100_000, "not JSON"),
        (b" " * (1 << 20) + b"{}", "over 1048576 bytes"),
        (beat(cameras={"c1": "up"}), "'cameras' must be a list"),
        (beat(cameras=[{"state": "up"}]), "a camera's 'id' must match"),
        (beat(cameras=["c1"]), "each camera must be an object"),
        (beat(cameras=[{"id": "c1"}]), "needs a 'state'"),
        (
            beat(cameras=[{"id": "c1", "state": "up", "analysed_fps": -1}]),
            "analysed_fps must be a number >= 0",
        ),
        (beat(cameras=[{"id": "c1", "state": "up", "last_frame_age_s": "old"}]), "last_frame_age_s"),
    ],
)
def test_a_bad_heartbeat_is_refused_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(raw)


def test_beats_report_each_cameras_analysed_rate_and_frame_age() -> None:
    stats = {
        "c1": {
            "state": "up",
            "decoded": 10,
            "analysed": 0,
            "dropped": 0,
            "incidents": 0,
            "behind": False,
            "last_frame_at": time.monotonic(),
        }
    }
    beats = Beats("edge-1", lambda: stats, lambda: 3)
    first = json.loads(beats())
    assert first["cameras"][0]["analysed_fps"] == 0.0 and first["outbox_pending"] == 3
    slept = time.monotonic()
    time.sleep(0.5)
    stats["c1"]["analysed"] = 5
    second = json.loads(beats())["cameras"][0]
    elapsed = time.monotonic() - slept
    assert 5 / (elapsed + 0.05) < second["analysed_fps"] <= 5 / 0.5  # 5 frames over the time between
    assert 0.5 <= second["last_frame_age_s"] < elapsed + 1.0
    assert parse(beats()).source == "edge-1"  # what the edge sends, the sink reads


def cameras(db: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(db) as c:
        return {(s, cam): st for s, cam, st in c.execute("SELECT source, camera_id, state FROM cameras")}


def test_a_real_sender_and_sink_keep_each_cameras_latest_state(tmp_path: Path, port: int) -> None:
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    edge = Edge(tmp_path, f"tcp://127.0.0.1:{port}", cameras=("c1", "c2"))
    try:
        assert wait_until(
            lambda: cameras(tmp_path / "sink.sqlite") == {("edge-1", "c1"): "up", ("edge-1", "c2"): "up"},
            ignore=(sqlite3.Error,),
        )
        edge.health["c2"]["state"] = "down"
        assert wait_until(lambda: cameras(tmp_path / "sink.sqlite")[("edge-1", "c2")] == "down")
        store = ConsoleStore(tmp_path / "console.sqlite")
        db = sqlite3.connect(tmp_path / "sink.sqlite")
        db.row_factory = sqlite3.Row
        now = time.time()
        health = {c["camera_id"]: c["state"] for c in camera_health(db, store, now)}
        assert health == {"c1": "up", "c2": "down"}
        # the edge goes quiet: three missed heartbeats (0.5 s each here) and its cameras are unknown
        later = {c["camera_id"]: c["state"] for c in camera_health(db, store, now + 2.0)}
        assert later == {"c1": "unknown", "c2": "unknown"}
        db.close()
        store.close()
        del edge.health["c1"]  # taken out of the edge's config: not left "up" for ever
        assert wait_until(lambda: cameras(tmp_path / "sink.sqlite")[("edge-1", "c1")] == "removed")
        assert cameras(tmp_path / "sink.sqlite")[("edge-1", "c2")] == "down"
    finally:
        edge.close()
        sink.close()


def test_a_heartbeat_for_another_edge_or_camera_than_the_key_allows_is_not_stored(
    tmp_path: Path, port: int, keys: dict[str, Path]
) -> None:
    sink = curve_sink(tmp_path, port, keys)  # edge-1's key may speak for edge-1 and its camera cam1 only

    def health() -> dict:
        return {
            c: {"state": "up", "decoded": 0, "analysed": 0, "dropped": 0, "incidents": 0, "behind": False}
            for c in ("cam1", "cam9")
        }

    senders = []
    try:
        for source in ("edge-1", "edge-2"):
            s = Sender(
                outbox_path=tmp_path / f"{source}.sqlite",
                endpoint=f"tcp://127.0.0.1:{port}",
                metrics=None,
                curve=edge_curve(keys, "edge-1"),
                source=source,
                heartbeat=Beats(source, health, lambda: 0, 0.3),
                heartbeat_s=0.3,
            )
            s.start()
            senders.append(s)
        refused = sink.sink.metrics.rejected.labels(reason="heartbeat refused")
        assert wait_until(lambda: refused._value.get() >= 2)
        assert wait_until(lambda: cameras(tmp_path / "sink.sqlite") == {("edge-1", "cam1"): "up"})
        time.sleep(0.5)  # more heartbeats of both: still only what the key allows
        assert cameras(tmp_path / "sink.sqlite") == {("edge-1", "cam1"): "up"}
    finally:
        for s in senders:
            s.stop(drain_s=0.5)
        sink.close()


def test_hostile_heartbeats_are_refused_and_the_sink_goes_on_storing(tmp_path: Path, port: int) -> None:
    import zmq

    sink = SinkThread(port, tmp_path / "sink.sqlite")
    edge = Edge(tmp_path, f"tcp://127.0.0.1:{port}", cameras=("c1",))
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.connect(f"tcp://127.0.0.1:{port}")
    try:
        hostile = [
            b'{"v": 1, "source": "e", "interval_s": 1' + b"0" * 400 + b', "cameras": []}',
            b'{"v": 1, "source": "e", "cameras": [{"id": "\\ud800", "state": "up"}]}',
            b'{"v": 1, "source": "e", "cameras": [{"id": "a/#", "state": "up"}]}',
            b"[" * 50_000,
            b"\xff\xfe",
        ]
        for body in hostile:
            raw.send_multipart([b"HB", body])
        refused = sink.sink.metrics.rejected.labels(reason="heartbeat refused")
        assert wait_until(lambda: refused._value.get() >= len(hostile))
        edge.incident()  # and events still go in
        assert wait_until(lambda: edge.outbox.count_pending() == 0)
        assert sink.thread.is_alive() and sink.sink.error is None
        assert set(cameras(tmp_path / "sink.sqlite")) == {("edge-1", "c1")}
    finally:
        raw.close(0)
        ctx.term()
        edge.close()
        sink.close()

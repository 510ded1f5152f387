"""CurveZMQ between edge and sink: only allowlisted edges get in, each only for its own cameras, and
bad peers (unknown key, wrong server key, no key, raw TCP garbage, oversized messages) are refused
while a good edge keeps delivering."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.auth

from pipeline.errors import ConfigError
from pipeline.events.outbox import Outbox
from pipeline.events.security import load_allowlist, load_keypair
from pipeline.events.sink import Sink
from pipeline.events.transport import Sender

from .conftest import SinkThread
from .test_events import make_event, stored, wait_until


def curve_sink(tmp_path: Path, port: int, keys: dict[str, Path], max_bytes: int = 1 << 20) -> SinkThread:
    return SinkThread(
        port,
        tmp_path / "sink.sqlite",
        curve_keypair=load_keypair(keys["sink"]),
        allowlist=load_allowlist(tmp_path / "allow.yaml"),
        max_message_bytes=max_bytes,
    )


def sender(
    tmp_path: Path, name: str, port: int, curve: tuple[bytes, bytes, bytes] | None
) -> tuple[Outbox, Sender]:
    path = tmp_path / f"{name}.sqlite"
    s = Sender(
        outbox_path=path, endpoint=f"tcp://127.0.0.1:{port}", metrics=None, curve=curve, ack_timeout_s=0.5
    )
    s.start()
    return Outbox(path), s


def edge_curve(keys: dict[str, Path], me: str, server: str = "sink") -> tuple[bytes, bytes, bytes]:
    server_public, _ = load_keypair(keys[server])
    public, secret = load_keypair(keys[me])
    return server_public, public, secret


def test_good_edge_delivers_and_bad_peers_are_refused(
    tmp_path: Path, keys: dict[str, Path], port: int
) -> None:
    sink = curve_sink(tmp_path, port, keys, max_bytes=64 * 1024)
    good_box, good = sender(tmp_path, "good", port, edge_curve(keys, "edge-1"))
    stranger_box, stranger = sender(tmp_path, "stranger", port, edge_curve(keys, "stranger"))
    wrong_box, wrong = sender(tmp_path, "wrong", port, edge_curve(keys, "edge-1", server="stranger"))
    plain_box, plain = sender(tmp_path, "plain", port, None)
    ctx = zmq.Context()
    big = ctx.socket(zmq.DEALER)  # an oversized message from a keyed client
    big.setsockopt(zmq.LINGER, 0)
    try:
        for box, s in ((stranger_box, stranger), (wrong_box, wrong), (plain_box, plain)):
            box.append({**make_event(1), "source": "edge-1"}, None)
            s.notify()
        with socket.create_connection(("127.0.0.1", port)) as raw:  # raw TCP garbage
            raw.sendall(b"\x00\xffGET / HTTP/1.1\r\n\r\n" * 50)
        big.curve_serverkey, big.curve_publickey, big.curve_secretkey = edge_curve(keys, "edge-1")
        big.connect(f"tcp://127.0.0.1:{port}")
        big.send_multipart([b"EVT", b"x" * (200 * 1024), b""])
        for i in range(20):
            good_box.append(make_event(i), None)
        good.notify()
        assert wait_until(lambda: good_box.count_pending() == 0, 60)
        assert wait_until(
            lambda: sink.sink.metrics.auth_failures._value.get() >= 1, 30
        )  # unknown key refused
        rows = stored(tmp_path / "sink.sqlite")
        assert len(rows) == 20 and {r[0] for r in rows} == {"edge-1"}
        for box in (stranger_box, wrong_box, plain_box):
            assert box.count_pending() == 1  # never acknowledged: nothing of theirs got in
    finally:
        big.close(0)
        ctx.term()
        for s in (good, stranger, wrong, plain):
            s.stop(drain_s=0)
        sink.close()


def test_an_edge_may_report_only_its_own_cameras(tmp_path: Path, keys: dict[str, Path], port: int) -> None:
    sink = curve_sink(tmp_path, port, keys)
    box, s = sender(tmp_path, "edge", port, edge_curve(keys, "edge-1"))
    try:
        ok, other_cam, other_source = make_event(1), make_event(2), make_event(3)
        other_cam["camera_id"] = "cam9"
        other_source["source"] = "edge-2"
        for e in (ok, other_cam, other_source):
            box.append(e, None)
        s.notify()
        assert wait_until(lambda: box.count_pending() == 0)
        dead = dict(box.conn.execute("SELECT event_id, reason FROM dead_letter").fetchall())
        assert "not one of edge-1's cameras" in dead[other_cam["event_id"]]
        assert "reports for 'edge-1', not 'edge-2'" in dead[other_source["event_id"]]
        with sqlite3.connect(tmp_path / "sink.sqlite") as c:
            assert [r[0] for r in c.execute("SELECT event_id FROM events")] == [ok["event_id"]]
    finally:
        s.stop(drain_s=0)
        sink.close()


def test_sink_cli_refuses_to_run_open_without_saying_so(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "sink", "--db", str(tmp_path / "s.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--insecure" in res.stderr


def test_keys_generate(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "keys", "generate", "edge-7", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0
    public, secret = zmq.auth.load_certificate(tmp_path / "edge-7.key_secret")
    assert len(public) == 40 and secret is not None
    assert (tmp_path / "edge-7.key_secret").stat().st_mode & 0o077 == 0


def test_edge_config_needs_keys_or_an_explicit_insecure(tmp_path: Path, keys: dict[str, Path]) -> None:
    from pipeline.config import parse_config
    from pipeline.errors import ConfigError
    from pipeline.runner import sender_curve

    base = {"cameras": [{"id": "cam1", "source": "x.mp4"}], "model": {"name": "m"}}
    with pytest.raises(ConfigError, match="insecure: true"):
        sender_curve(parse_config({**base, "sink": {}}))
    assert sender_curve(parse_config({**base, "sink": {"insecure": True}})) is None
    sink_public = zmq.auth.load_certificate(keys["sink"])[0].decode()
    curve = sender_curve(
        parse_config(
            {**base, "sink": {"server_public_key": sink_public, "client_secret_file": str(keys["edge-1"])}}
        )
    )
    assert (
        curve is not None and curve[0] == sink_public.encode() and curve[1] == load_keypair(keys["edge-1"])[0]
    )


def test_a_key_cannot_claim_another_edges_snapshot_requests(tmp_path: Path, keys: dict[str, Path]) -> None:
    """HELLO tells the sink where to send an edge's snapshot requests; only the edge's own key may."""
    sink = Sink(
        bind="tcp://127.0.0.1:1",
        store=tmp_path / "sink.sqlite",
        curve_keypair=load_keypair(keys["sink"]),
        allowlist=load_allowlist(tmp_path / "allow.yaml"),
    )
    edge_key = load_keypair(keys["edge-1"])[0].decode()
    stranger_key = load_keypair(keys["stranger"])[0].decode()
    sink._on_hello("edge-1", b"stranger-conn", stranger_key)
    sink._on_hello("edge-2", b"edge-1-conn", edge_key)
    assert sink._peers == {}
    sink._on_hello("edge-1", b"edge-1-conn", edge_key)
    assert sink._peers == {"edge-1": b"edge-1-conn"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "edges:\n  - {source: e1, public_key: KEY, cameras: gate-3}\n",
            "edges.0.cameras.*a list of camera ids",
        ),
        ("edges:\n  - {source: e1, public_key: KEY, cameras: [gate-3], camras: [x]}\n", "edges.0.camras"),
        ("edges:\n  - {source: 'e 1', public_key: KEY}\n", "edges.0.source"),
        ("edges: []\n", "edges: List should have at least 1 item"),
        (
            "edges:\n  - {source: e1, public_key: KEY}\n  - {source: e1, public_key: KEY2}\n",
            "listed twice|the same public key",
        ),
        ("[1, 2]\n", "<top>|expected edges"),
    ],
)
def test_the_allowlist_is_read_strictly(tmp_path: Path, text: str, message: str) -> None:
    """A string where a list of cameras belongs was read as its characters (camera 'g' allowed,
    'gate-3' refused): now every wrong shape is a one-line error naming the field."""
    from pipeline.events.security import generate_keys

    generate_keys(tmp_path, "e1")
    generate_keys(tmp_path, "e2")
    (tmp_path / "allow.yaml").write_text(text.replace("KEY2", "e2.key").replace("KEY", "e1.key"))
    with pytest.raises(ConfigError, match=message):
        load_allowlist(tmp_path / "allow.yaml")
    (tmp_path / "ok.yaml").write_text("edges:\n  - {source: e1, public_key: e1.key, cameras: [gate-3]}\n")
    (grant,) = load_allowlist(tmp_path / "ok.yaml").values()
    assert grant.cameras == frozenset({"gate-3"})

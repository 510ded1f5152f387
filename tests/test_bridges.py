"""Bridges from a real sink's store: MQTT into a real mosquitto (started here), webhooks into a real
local HTTP receiver. At least once, each with its own cursor: across a bridge killed mid-stream, a
broker restart and a receiver outage nothing is lost, and a copy received twice is marked."""

from __future__ import annotations

import contextlib
import getpass
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from pipeline.bridges.webhook import sign, verify
from pipeline.errors import ConfigError

from .conftest import SinkThread, unavailable
from .iccc import Edge
from .util import free_port, wait_until

pytestmark = pytest.mark.slow
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)


class Mosquitto:
    """A real broker on a free loopback port, persisting (retained messages, queued QoS 1 messages of
    persistent sessions) in its folder, so a restart keeps them as a production broker would."""

    def __init__(self, tmp: Path) -> None:
        if MOSQUITTO is None:
            unavailable("mosquitto is not installed", "apt-get install mosquitto")
        self.port = free_port()
        self.dir = tmp / "mosquitto"
        self.dir.mkdir()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nautosave_interval 1\nlog_dest file {self.dir}/log.txt\n"
            f"user {getpass.getuser()}\n"  # run as root, it would switch to 'mosquitto' and not write here
        )
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        import socket

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        assert wait_until(up, 10)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)  # it saves its persistence file on the way out
        self.proc.wait(10)


class Subscriber:
    """A persistent-session QoS 1 subscriber: what the broker queues for it while it or the broker
    is away is delivered when both are back."""

    def __init__(self, port: int, topic: str = "safecity/#", client_id: str = "iccc-subscriber") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.dups: list[bytes] = []  # payloads the broker sent again (MQTT's DUP flag: its own redelivery)
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            if msg.dup:
                self.dups.append(msg.payload)

    def events(self) -> list[dict]:
        """The incident messages; ``redelivery`` is also true where the broker marked its copy DUP."""
        with self.lock:
            out = []
            for t, p, _ in self.messages:
                if "/availability" not in t and "/bridge/" not in t:
                    e = json.loads(p)
                    e["redelivery"] = e["redelivery"] or p in self.dups
                    out.append(e)
            return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bridge(kind: str, db: Path, *args: str) -> subprocess.Popen:
    """The bridge as an operator runs it; its log in BRIDGE.log beside the store (shown on failure)."""
    log = db.with_name(f"bridge-{kind}.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "-v", "bridge", kind, "--db", str(db), "--from-start", *args],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip


def logs(db: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(db.parent.glob("bridge-*.log")))


def check_at_least_once(received: list[tuple[str, bool]], sent: list[str]) -> int:
    """Every sent event arrived; any second copy is marked as a possible redelivery. The duplicates."""
    seen: set[str] = set()
    dups = 0
    for event_id, marked in received:
        if event_id in seen:
            dups += 1
            assert marked, f"{event_id} arrived twice, the second copy unmarked"
        seen.add(event_id)
    assert seen == set(sent), f"lost {len(set(sent) - seen)}, unexpected {len(seen - set(sent))}"
    return dups


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    sink = SinkThread(port, tmp_path / "sink.sqlite")
    edge = Edge(tmp_path, f"tcp://127.0.0.1:{port}", cameras=("cam-1", "cam-2"))
    procs: list[subprocess.Popen] = []
    yield {"db": tmp_path / "sink.sqlite", "edge": edge, "procs": procs}
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    edge.close()
    sink.close()


def send(edge: Edge, n: int, every_s: float = 0.0) -> None:
    """n incidents (start events), as an edge raises them."""
    for i in range(n):
        edge.incident(kind=("theft", "encroachment")[i % 2], camera=f"cam-{1 + i % 2}", snapshot=False)
        time.sleep(every_s)


def sink_event_ids(db: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(db) as c:
        return [r[0] for r in c.execute("SELECT event_id FROM events ORDER BY id")]


def test_mqtt_bridge_across_a_bridge_kill_and_a_broker_restart_loses_nothing(world, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    sub = Subscriber(broker.port)
    db, edge, procs = world["db"], world["edge"], world["procs"]
    url = f"mqtt://127.0.0.1:{broker.port}"
    try:
        procs.append(bridge("mqtt", db, "--broker", url))
        send(edge, 40, 0.01)
        assert wait_until(lambda: len({e["event"]["event_id"] for e in sub.events()}) >= 10, 30)
        procs[-1].kill()  # mid-stream, no goodbye: its cursor is where the last PUBACK left it
        procs[-1].wait(10)
        send(edge, 20)
        procs.append(bridge("mqtt", db, "--broker", url))
        assert wait_until(lambda: len({e["event"]["event_id"] for e in sub.events()}) >= 60, 30)
        broker.stop()  # the broker goes away while events keep coming
        send(edge, 20, 0.02)
        time.sleep(1.0)
        broker.start()
        assert wait_until(lambda: len(sink_event_ids(db)) == 80, 30)
        sent = sink_event_ids(db)
        assert wait_until(lambda: {e["event"]["event_id"] for e in sub.events()} >= set(sent), 60), (
            f"{len({e['event']['event_id'] for e in sub.events()})} of 80\n{logs(db)}\n"
            + (broker.dir / "log.txt").read_text()[-3000:]
        )
        received = [(e["event"]["event_id"], e["redelivery"]) for e in sub.events()]
        check_at_least_once(received, sent)
        # topics per edge/camera/type/kind, payload the stored event
        with sub.lock:
            topics = {t for t, _, _ in sub.messages}
        assert (
            "safecity/edge-1/cam-1/theft/new" in topics and "safecity/edge-1/cam-2/encroachment/new" in topics
        )
        assert procs[-1].poll() is None and "lost the broker" in logs(db)  # it rode out the broker restart
    finally:
        sub.close()
        broker.stop()


def test_mqtt_camera_availability_is_retained_and_follows_heartbeats(world, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    db, edge, procs = world["db"], world["edge"], world["procs"]
    try:
        procs.append(bridge("mqtt", db, "--broker", f"mqtt://127.0.0.1:{broker.port}"))
        topic = "safecity/edge-1/cam-2/availability"

        def retained(client_id: str) -> dict[str, bytes]:
            late = Subscriber(broker.port, "safecity/+/+/availability", client_id)
            time.sleep(0.5)
            late.close()
            return {t: p for t, p, r in late.messages if r}

        assert wait_until(lambda: retained("a1").get(topic) == b"online", 20)
        edge.health["cam-2"]["state"] = "down"
        assert wait_until(lambda: retained("a2").get(topic) == b"offline", 20)
        assert retained("a3")["safecity/edge-1/cam-1/availability"] == b"online"
        edge.health["cam-2"]["state"] = "up"
        assert wait_until(lambda: retained("a4").get(topic) == b"online", 20)
    finally:
        broker.stop()


class Receiver:
    """A webhook endpoint: checks each signature, answers 500 to events it is told to refuse, and
    can be stopped and started again on the same port."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.port = free_port()
        self.received: list[tuple[str, bool]] = []
        self.bad_signatures = 0
        self.refuse: set[str] = set()  # event ids answered 500
        self.flaky: dict[str, int] = {}  # event id -> 503s left before it is accepted
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(receiver.secret, self.headers["X-Safecity-Timestamp"], body,
                            self.headers["X-Safecity-Signature"])  # fmt: skip
                event = json.loads(body)
                status = 204
                if not ok:
                    receiver.bad_signatures += 1
                    status = 401
                elif event["event_id"] in receiver.refuse:
                    status = 500
                elif receiver.flaky.get(event["event_id"], 0) > 0:
                    receiver.flaky[event["event_id"]] -= 1
                    status = 503
                else:
                    marked = self.headers.get("X-Safecity-Redelivery") == "true"
                    receiver.received.append((event["event_id"], marked))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def test_webhook_signature_verifies_and_a_tampered_or_stale_one_does_not() -> None:
    secret, body, ts = b"s" * 32, b'{"event_id":"e1"}', str(int(time.time()))
    assert verify(secret, ts, body, sign(secret, ts, body))
    assert not verify(secret, ts, body + b" ", sign(secret, ts, body))
    assert not verify(b"t" * 32, ts, body, sign(secret, ts, body))
    old = str(int(time.time()) - 3600)
    assert not verify(secret, old, body, sign(secret, old, body))


def test_webhook_bridge_retries_dead_letters_and_survives_restarts_and_an_outage(
    world, tmp_path: Path
) -> None:
    db, edge, procs = world["db"], world["edge"], world["procs"]
    secret = b"a shared secret of 32 bytes....."
    (tmp_path / "secret").write_bytes(secret)
    rx = Receiver(secret)
    args = ("--url", f"http://127.0.0.1:{rx.port}/hook", "--secret-file", str(tmp_path / "secret"),
            "--max-attempts", "3")  # fmt: skip
    try:
        send(edge, 10)
        assert wait_until(lambda: len(sink_event_ids(db)) == 10, 20)
        ids = sink_event_ids(db)
        rx.refuse.add(ids[3])  # always refused: a dead letter after 3 attempts
        rx.flaky[ids[5]] = 2  # refused twice, then taken: retried, delivered, marked
        procs.append(bridge("webhook", db, *args))
        assert wait_until(lambda: len(rx.received) >= 9, 30)
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)
        rx.stop()  # the receiver goes down too; the bridge comes back first and waits for it
        send(edge, 10)
        procs.append(bridge("webhook", db, *args))
        time.sleep(2.0)
        rx.start()
        assert wait_until(lambda: len({e for e, _ in rx.received}) >= 19, 60)
        sent = sink_event_ids(db)
        delivered = [r for r in rx.received]
        check_at_least_once(delivered + [(ids[3], False)], sent)  # all but the dead letter arrived
        assert ids[3] not in {e for e, _ in delivered}
        assert (ids[5], True) in delivered  # the flaky one arrived on its third attempt, marked
        assert rx.bad_signatures == 0
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(15) == 0
        listed = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "bridge", "dead-letters", "--db", str(db)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert f"event {ids[3]} after 3 attempts: HTTP 500" in listed.stdout
        assert listed.stdout.count("event ") == 1  # the outage dead-lettered nothing
    finally:
        rx.stop()


def test_webhook_waits_out_a_misconfigured_receiver_and_dead_letters_only_refused_events(
    world, tmp_path: Path
) -> None:
    """A redirect or 401/404 is about the endpoint: the bridge waits (nothing dead-lettered, nothing
    counted delivered); a 400 is about the event: dead-lettered at once."""
    from pipeline.bridges.state import BridgeState
    from pipeline.bridges.webhook import WebhookBridge

    db, edge = world["db"], world["edge"]
    answers: list[int] = []  # what the receiver answers next, in order; then 204
    got: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            code = answers.pop(0) if answers else 204
            if code == 204:
                got.append(json.loads(body)["event_id"])
            self.send_response(code)
            if code == 302:
                self.send_header("Location", "https://elsewhere.example/hook")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    send(edge, 2)
    assert wait_until(lambda: len(sink_event_ids(db)) == 2, 20)
    first, second = sink_event_ids(db)
    answers.extend([302, 401, 404, 404, 404, 404, 400])  # 6 endpoint problems, then the first is refused
    state = BridgeState(tmp_path / "bridges.sqlite", "hook")
    state.start_at(0)
    bridge = WebhookBridge(db, state, f"http://127.0.0.1:{server.server_address[1]}/h", b"k" * 16,
                           max_attempts=3, first_backoff_s=0.01, max_backoff_s=0.05)  # fmt: skip
    t = threading.Thread(target=bridge.run, daemon=True)
    t.start()
    try:
        assert wait_until(lambda: got == [second], 20)
        assert [d["event_id"] for d in state.dead_letters()] == [first]
        assert state.dead_letters()[0]["reason"] == "HTTP 400"
        assert state.cursor()[0] == 2
    finally:
        bridge.stop()
        t.join(5)
        server.shutdown()
        state.close()


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_deadline_and_retried(
    world, tmp_path: Path, monkeypatch
) -> None:
    """Each byte well within the read timeout, the answer never done: one POST still ends at the
    deadline (a retry, logged), instead of holding the bridge on one event for the whole run."""
    from pipeline.bridges import webhook
    from pipeline.bridges.base import Stored
    from pipeline.bridges.state import BridgeState

    monkeypatch.setattr(webhook, "DEADLINE_S", 1.5)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.wait(0.2):
                conn.sendall(b"a")
        conn.close()

    state = BridgeState(tmp_path / "bridges.sqlite", "slow")
    port = listener.getsockname()[1]
    bridge = webhook.WebhookBridge(world["db"], state, f"http://127.0.0.1:{port}/h?token=abc", b"k" * 16)
    event = {"event_id": "e1", "status": "start"}
    slow_connect = http.client.HTTPConnection.connect
    try:
        for connecting_s in (
            0.0,
            2.0,
        ):  # a receiver slow to reach (DNS, dead addresses first), then trickling
            stop.clear()
            threading.Thread(target=trickle, daemon=True).start()

            def connect(self: http.client.HTTPConnection, wait: float = connecting_s) -> None:
                time.sleep(wait)
                slow_connect(self)

            monkeypatch.setattr(http.client.HTTPConnection, "connect", connect)
            began = time.monotonic()
            outcome, what = bridge.post(Stored(1, event, json.dumps(event), False), 1)
            took = time.monotonic() - began
            stop.set()
            assert (outcome, what) == ("retry", "no whole answer in 2 s (a receiver trickling it)")
            assert 1.4 < took < 5.0
    finally:
        stop.set()
        listener.close()
        state.close()


def test_the_webhook_url_is_logged_without_its_token_or_password() -> None:
    from pipeline.bridges.webhook import redacted

    assert redacted("https://rx.example:8443/hook?token=s3cr3t&x=1") == "https://rx.example:8443/***"
    assert redacted("http://user:pw@10.0.0.5/in") == "http://***@10.0.0.5/***"
    assert redacted("https://hooks.example/services/T0/B0/s3cr3t") == "https://hooks.example/***"
    assert redacted("http://[::1]:9000/") == "http://[::1]:9000/"
    assert redacted("http://x:notaport/") == "http://x:notaport/"  # (a receiver's Location: never raises)
    assert redacted("http://[::1/") == "(a URL that cannot be read)"
    with pytest.raises(ConfigError) as err:
        from pipeline.bridges.webhook import WebhookBridge

        WebhookBridge(None, None, "ftp://rx.example/h?token=s3cr3t", b"k")  # type: ignore[arg-type]
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(ConfigError) as err:  # a '/' in the password: the "port" is not a number
        WebhookBridge(None, None, "http://user:se/cr3t@rx.example/h", b"k")  # type: ignore[arg-type]
    assert "user" not in str(err.value) and "cr3t" not in str(err.value)

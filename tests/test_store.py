"""The sink's store: versioned migrations (SQLite and PostgreSQL), sink replicas sharing a real
PostgreSQL server (``tests/postgres.py``), the edges' failover between replicas, and the fleet fault
test: 3 replicas, 50 edges, 100,000 incidents, one replica killed mid-run."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, StorageError
from pipeline.events.outbox import Outbox
from pipeline.events.sink import insert_events
from pipeline.events.store import (
    SCHEMA_VERSION,
    SINK_SCHEMA,
    migrate,
    open_reader,
    open_store,
    redact,
    rollback,
    schema_version,
)
from pipeline.events.transport import Sender, preference

from .conftest import SinkThread
from .fault_edge import incident_event
from .iccc import Iccc
from .util import free_port, wait_until


def read(db: Path | str, sql: str) -> list[tuple]:
    """Rows of the sink's store, read as the console and bridges read it."""
    reader = open_reader(db)
    assert reader is not None
    try:
        return [tuple(r) for r in reader.execute(sql)]
    finally:
        reader.close()


def stored(db: Path | str) -> list[tuple[int, str]]:
    return [(int(i), s) for i, s in read(db, "SELECT id, source FROM events ORDER BY id")]


def test_a_store_from_before_versioning_is_migrated_and_keeps_its_order(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as c:  # as sinks made it before: no schema_migrations, rowid the cursor
        c.executescript(SINK_SCHEMA)
        c.executemany(
            "INSERT INTO events VALUES (?, ?, 1, 'i', 'theft', 'start', 'cam', 't', 0, NULL, '{}')",
            [("edge-b", "e1"), ("edge-a", "e2")],
        )
    with pytest.raises(StorageError, match="schema version 0, not 2: a sink of this version migrates it"):
        open_reader(db)
    store = open_store(db)
    assert schema_version(store) == SCHEMA_VERSION == 2
    assert migrate(store, str(db)) == 2  # nothing left to do, nothing done twice
    store.close()
    assert stored(db) == [(1, "edge-b"), (2, "edge-a")]  # the rowid order, now explicit
    with sqlite3.connect(db) as c:  # a sink from before events.id stores one more (a downgrade)
        c.execute("INSERT INTO events VALUES ('edge-c', 'e3', 1, 'i', 'theft', 'start', 'cam', 't', 0, NULL, "
                  "'{}', NULL)")  # fmt: skip
    open_store(db).close()
    assert stored(db) == [(1, "edge-b"), (2, "edge-a"), (5, "edge-c")]  # numbered after the rest
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO schema_migrations VALUES (3, 'from the future', 0)")
    with pytest.raises(StorageError, match="schema version 3, newer than this safecity knows"):
        open_store(db)


@pytest.mark.slow
def test_replicas_starting_together_migrate_once_and_a_resend_is_not_stored_twice(postgres) -> None:
    url = postgres.url()
    opened, errors = [], []

    def open_one() -> None:
        try:
            opened.append(open_store(url))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(opened) == 4
    db = opened[0]
    assert [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]
    row = ("edge-1", "e1", 1, "i1", "theft", "start", "cam", "t", 0.0, None, "{}")
    for other in opened:  # every replica is a connection to the same store
        other.execute("BEGIN")
        new = insert_events(other, [row, (*row[:1], "e2", *row[2:])] if other is db else [row])
        other.execute("COMMIT")
        assert new == ({("edge-1", "e1"), ("edge-1", "e2")} if other is db else set())
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2
    for other in opened:
        other.close()


def test_a_store_url_never_shows_its_password(tmp_path: Path) -> None:
    from pipeline.events.store import store_target

    # a password goes in PGPASSWORD or a pgpass file: a URL carrying one is refused, and not shown
    for odd in ("s3cret", "ab#c?d/e", "se%zzcret", "Tr0ub4dor@horse", "top secret"):
        for bad in (f"postgresql://iccc:{odd}@127.0.0.1:5432/events", f"postgresql://iccc:{odd}@[::1/x",
                    f"postgresql://iccc@127.0.0.1/events?sslmode=require&password={odd}"):  # fmt: skip
            assert odd not in redact(bad)
            for attempt in (open_store, store_target):
                with pytest.raises(ConfigError, match="put the password in PGPASSWORD") as err:
                    attempt(bad)
                assert odd not in str(err.value), str(err.value)
    # what is neither a SQLite file nor a PostgreSQL URL is refused, not taken for a file name
    for text in ("host=127.0.0.1 user=iccc dbname=events", "postgresql+psycopg://iccc@h/db", "pg://iccc@h/db",
                 "postgresql:/iccc@h/db", " ", "postgresql://iccc@127.0.0.1:notaport/db"):  # fmt: skip
        with pytest.raises(ConfigError, match="neither a SQLite file|not a URL PostgreSQL reads|empty"):
            store_target(text)
    assert store_target("PostgreSQL://iccc@127.0.0.1/events") == "postgresql://iccc@127.0.0.1/events"
    with pytest.raises(StorageError, match="cannot be used"):  # nobody there
        open_store(f"postgresql://iccc@127.0.0.1:{free_port()}/events")
    url = f"postgresql://iccc@127.0.0.1:{free_port()}/events"
    from pipeline.cli import build_parser

    def run(*argv: str) -> int:
        args = build_parser().parse_args(argv)
        return int(args.func(args))

    with pytest.raises(ConfigError, match="needs --clips DIR"):
        run("sink", "--db", url, "--insecure")
    with pytest.raises(ConfigError, match="PostgreSQL .*: give --console-db FILE"):
        run("users", "list", "--db", url)


def edge_sending(
    tmp: Path, name: str, endpoints: list[str], count: int, **kw: float
) -> tuple[Outbox, Sender]:
    outbox = Outbox(tmp / f"{name}.sqlite")
    outbox.append_many([(incident_event(n, name), None) for n in range(count)])
    sender = Sender(outbox_path=tmp / f"{name}.sqlite", endpoint=endpoints, metrics=None, source=name, **kw)
    sender.start()
    return outbox, sender


def test_an_edge_fails_over_in_its_own_order_and_comes_back_to_its_first_choice(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    endpoints = [f"tcp://127.0.0.1:{p}" for p in ports]
    order = preference(endpoints, "edge-7")
    assert order == preference(list(reversed(endpoints)), "edge-7")  # its own order, however listed
    # the edges spread over the replicas: each is some edges' first choice
    assert len({preference(endpoints, f"edge-{k}")[0] for k in range(30)}) == 3
    first, second, third = (ports[endpoints.index(e)] for e in order)
    # its first choice is down: after failover_s it sends to its second
    b = SinkThread(second, tmp_path / "b.sqlite")
    c = SinkThread(third, tmp_path / "c.sqlite")
    outbox, sender = edge_sending(tmp_path, "edge-7", endpoints, 50, failover_s=0.5, failback_s=2.0)
    try:
        assert wait_until(lambda: outbox.count_pending() == 0, 20)
        assert len(stored(tmp_path / "b.sqlite")) == 50 and stored(tmp_path / "c.sqlite") == []
        assert sender.endpoint == order[1] and sender.failovers == 1
        # its first choice comes up: after failback_s on the second, it goes back
        a = SinkThread(first, tmp_path / "a.sqlite")
        assert wait_until(lambda: sender.endpoint == order[0] and sender.connected, 15)
        outbox.append_many([(incident_event(n, "edge-7"), None) for n in range(50, 60)])
        sender.notify()
        assert wait_until(lambda: outbox.count_pending() == 0, 20)
        assert len(stored(tmp_path / "a.sqlite")) == 10
        a.close()
        b.close()  # both of the first two gone: the third, in order
        outbox.append_many([(incident_event(n, "edge-7"), None) for n in range(60, 70)])
        sender.notify()
        assert wait_until(lambda: outbox.count_pending() == 0, 20)
        assert len(stored(tmp_path / "c.sqlite")) == 10 and sender.endpoint == order[2]
    finally:
        sender.stop(drain_s=0)
        outbox.close()
        c.close()


@pytest.mark.slow
def test_the_sink_rides_out_a_database_restart_and_the_console_reads_postgresql(
    postgres, tmp_path: Path, port: int
) -> None:
    from pipeline.cli import main
    from pipeline.fleet.status import fleet_status

    iccc = Iccc(tmp_path, port, store=postgres.url())
    try:
        edge = iccc.edge(tmp_path)
        first = [edge.incident() for _ in range(5)]
        c = iccc.client("viewer")
        assert wait_until(lambda: {i["incident_id"] for i in c.get_json("/api/incidents")[1]} >= set(first))
        # a snapshot out of PostgreSQL, through the console
        inc = c.get_json(f"/api/incidents/{edge.source}/{first[0]}")[1]
        sha = json.dumps(inc).split('"sha256": "')[1][:64]
        status, _, jpeg = c.request("GET", f"/snapshots/{sha}")
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
        postgres.restart()  # every connection dropped: the sink stores again once it is back
        later = [edge.incident() for _ in range(5)]
        assert wait_until(lambda: edge.outbox.count_pending() == 0, 30)
        assert wait_until(
            lambda: {i["incident_id"] for i in c.get_json("/api/incidents")[1]} >= set(later), 30
        )
        rows = stored(iccc.db)
        assert len(rows) == 10 and len({i for i, _ in rows}) == 10
        assert [r["server"] for r in fleet_status(iccc.db)] == ["edge-1"]  # heartbeats stored there too
        # a bridge follows the PostgreSQL store as it follows a SQLite one: each event once, in order
        from pipeline.bridges.state import BridgeState
        from pipeline.bridges.webhook import WebhookBridge

        from .test_bridges import Receiver

        rx = Receiver(b"a webhook secret of 32 bytes...!")
        hook = WebhookBridge(iccc.db, BridgeState(tmp_path / "bridges.sqlite", "hook"),
                             f"http://127.0.0.1:{rx.port}/hook", rx.secret)  # fmt: skip
        runs = threading.Thread(target=hook.run, daemon=True)
        runs.start()
        try:
            assert wait_until(lambda: len(rx.received) == 10, 30)
            assert [e for e, _ in rx.received] == [
                json.loads(b)["event_id"] for (b,) in read(iccc.db, "SELECT body FROM events ORDER BY id")
            ]
        finally:
            hook.stop()
            runs.join(10)
            rx.stop()
        out = tmp_path / "snap.jpg"
        assert main(["events", "--db", str(iccc.db), "--snapshot", sha[:12], "-o", str(out)]) == 0
        assert out.read_bytes() == jpeg
    finally:
        iccc.close()


@pytest.mark.slow
def test_three_replicas_on_postgresql_one_killed_lose_and_duplicate_nothing(postgres, tmp_path: Path) -> None:
    from .fleet_faults import run_fleet

    t = time.monotonic()
    result = run_fleet(tmp_path, postgres.url("fleet"), edges=50, incidents=100_000, replicas=3)
    print(json.dumps(result.__dict__), f"in {time.monotonic() - t:.1f} s")
    assert result.attempted == result.stored == 100_000
    assert (result.lost, result.duplicates, result.unexpected) == (0, 0, 0)
    # the console's and bridges' cursor (events.id) saw every event once, with replicas writing together
    assert (result.reader_missed, result.reader_twice) == (0, 0)
    assert 0 < result.killed_at_stored < 100_000  # killed mid-run ...
    assert result.failovers >= 1 and result.resends_deduplicated > 0  # ... its edges moved and resent
    assert result.edge_exit_codes == [0] * 5


@pytest.mark.slow
def test_events_a_store_cannot_hold_are_refused_alone_and_the_rest_stored(postgres, tmp_path: Path) -> None:
    import zmq

    port = free_port()
    sink = SinkThread(port, postgres.url(), clips=tmp_path / "clips")
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.connect(f"tcp://127.0.0.1:{port}")
    try:
        good = incident_event(1, "edge-1") | {"seq": 1}
        bad = [
            incident_event(2, "edge-1") | {"seq": 2, "incident_id": "x\u0000y"},  # PostgreSQL text: no NUL
            incident_event(3, "edge-1") | {"seq": 3.0},  # a JSON Schema integer, not one for the store
            incident_event(4, "edge-1") | {"seq": 1 << 63},  # over 64 bits
        ]
        raw.send_multipart([b"MISS", b"\x00"])  # an answer to nothing, not a digest
        raw.send_multipart([b"EVTS", b"\n".join(json.dumps(e).encode() for e in [*bad, good])])
        replies = []
        while raw.poll(5000):
            replies.append(raw.recv_multipart())
            if any(r[0] == b"ACK" for r in replies) and sum(r[0] == b"NACK" for r in replies) == 3:
                break
        nacks = {r[1].decode(): r[2].decode() for r in replies if r[0] == b"NACK"}
        assert [r[1:] for r in replies if r[0] == b"ACK"] == [[good["event_id"].encode()]]
        assert "incident_id" in nacks[bad[0]["event_id"]]  # (the schema refuses a NUL in any id)
        assert "expected a whole number below 2^63" in nacks[bad[1]["event_id"]]
        assert "expected a whole number below 2^63" in nacks[bad[2]["event_id"]]
        assert [s for _, s in stored(sink.sink.store)] == ["edge-1"] and sink.sink.storing
    finally:
        raw.close(0)
        sink.close()


def test_an_edge_leaves_a_replica_that_stores_nothing(tmp_path: Path) -> None:
    """A replica that takes the connection but acknowledges nothing (its store refusing) is left."""
    import zmq

    ports = [free_port() for _ in range(2)]
    endpoints = [f"tcp://127.0.0.1:{p}" for p in ports]
    first, second = (ports[endpoints.index(e)] for e in preference(endpoints, "edge-3"))
    stuck = zmq.Context.instance().socket(zmq.ROUTER)
    stuck.bind(f"tcp://127.0.0.1:{first}")
    good = SinkThread(second, tmp_path / "good.sqlite")
    outbox, sender = edge_sending(tmp_path, "edge-3", endpoints, 20, stall_s=1.5)
    try:
        assert wait_until(lambda: stuck.poll(0), 10)  # it was sent there first ...
        assert wait_until(lambda: outbox.count_pending() == 0, 20)  # ... and stored by the other
        assert len(stored(tmp_path / "good.sqlite")) == 20 and sender.failovers == 1
    finally:
        sender.stop(drain_s=0)
        outbox.close()
        good.close()
        stuck.close(0)


@pytest.mark.slow
def test_a_transaction_never_goes_on_in_autocommit_after_its_connection_broke(postgres) -> None:
    import psycopg

    url = postgres.url()
    db = open_store(url)
    other = psycopg.connect(url, autocommit=True)
    try:
        assert db.execute("SHOW lock_timeout").fetchone()[0] == "10s"
        assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        row = ("edge-1", "e1", 1, "i1", "theft", "start", "cam", "t", 0.0, None, "{}")
        db.execute("BEGIN")
        insert_events(db, [row])
        other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'safecity'"
        )
        with pytest.raises(psycopg.Error):
            insert_events(db, [(*row[:1], "e2", *row[2:])])  # the connection is gone ...
        with pytest.raises(psycopg.OperationalError, match="lost in a transaction"):
            db.execute("INSERT INTO snapshots VALUES ('x', 'y')")  # ... and nothing runs on its own
        with pytest.raises(psycopg.OperationalError):
            db.execute("COMMIT")
        rollback(db)
        assert other.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
        db.execute("BEGIN")  # connected again for the next transaction
        insert_events(db, [row])
        db.execute("COMMIT")
        db.execute("BEGIN")  # a failed statement: PostgreSQL answers the COMMIT with a rollback
        with pytest.raises(psycopg.Error):
            db.execute("SELECT no_such_column FROM events")
        with pytest.raises(psycopg.OperationalError, match="not committed"):
            db.execute("COMMIT")
        assert other.execute("SELECT event_id FROM events").fetchall() == [("e1",)]
    finally:
        other.close()
        db.close()

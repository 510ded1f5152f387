"""Delivery under faults, with real processes on loopback (see tests/faults.py): nothing committed at
the edge is lost, nothing is stored twice, nothing unexpected appears, whatever the fault."""

import signal
import sqlite3
from pathlib import Path

import pytest

from pipeline.events.outbox import Outbox
from pipeline.events.transport import Sender
from pipeline.metrics import Metrics, serve_metrics
from tests.fault_edge import incident_event
from tests.faults import SCENARIOS, Harness, Result, free_port, table
from tests.test_e2e import sample, scrape

RESULTS: list[Result] = []


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if RESULTS:
        out = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "faults.md").write_text(table(RESULTS) + "\n")
        print("\n" + table(RESULTS))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_incident_is_lost_or_duplicated(name: str, tmp_path: Path) -> None:
    scenario, count = SCENARIOS[name]
    r = scenario(tmp_path, count)
    RESULTS.append(r)
    assert r.committed == r.attempted == count, r
    assert r.acknowledged == r.attempted, r
    assert (r.lost, r.duplicated, r.unexpected, r.dead_letters) == (0, 0, 0, 0), r
    if name != "burst-100k":  # the fault struck while incidents were flowing
        assert 0 <= r.acked_at_fault < count, r
    if name.startswith(("network", "sink-sigstop")):
        assert r.acked_during_fault <= count // 20, r  # nothing (or a last in-flight batch) got through
    if name.startswith(("sink-before", "sink-after", "edge-")):
        assert r.restarts == 1, r


def test_delivery_metrics_are_scraped_over_http(tmp_path: Path) -> None:
    """The edge's and the sink's Prometheus endpoints tell an operator what happened: a sink killed
    after a commit (resends, duplicates), one rejected event, everything else acknowledged."""
    h = Harness(tmp_path, 0)
    sink_metrics = free_port()
    metrics = Metrics()
    edge_metrics = serve_metrics(metrics.registry, 0, addr="127.0.0.1")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    bad = incident_event(300, "edge-f")
    bad["type"] = "jaywalking"
    good = [(incident_event(n, "edge-f"), None) for n in range(300)]
    outbox.append_many([*good[:150], (bad, None), *good[150:]])
    sender = Sender(
        outbox_path=tmp_path / "outbox.sqlite",
        endpoint=h.edge_endpoint,
        metrics=metrics,
        max_in_flight=50,
        ack_timeout_s=1.0,
        source="edge-f",
    )
    try:
        h.start_sink(failpoints="sink.after_commit=2", metrics_port=sink_metrics)
        assert h.sink is not None
        sender.start()
        assert h.sink.wait(60) == -signal.SIGKILL
        with sqlite3.connect(tmp_path / "sink.sqlite") as c:
            stored_before = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        h.start_sink(metrics_port=sink_metrics)
        h.wait_for(lambda: outbox.count_pending() == 0, 60, "the outbox drained")
        h.wait_for(lambda: sample(scrape(edge_metrics), "safecity_outbox_pending_events") == 0, 10, "gauges")
        edge, sink = scrape(edge_metrics), scrape(sink_metrics)
    finally:
        sender.stop(drain_s=1)
        h.stop()
        outbox.close()
    assert sample(edge, "safecity_events_acked_total") == 300
    assert sample(edge, "safecity_events_rejected_total") == 1
    assert (sample(edge, "safecity_events_retransmitted_total") or 0) >= 1
    assert sample(edge, "safecity_event_ack_latency_seconds_count") == 300
    assert sample(edge, "safecity_outbox_oldest_pending_age_seconds") == 0
    assert sample(edge, "safecity_sink_connected") == 1
    assert sample(sink, "safecity_sink_events_new_total") == 300 - stored_before
    assert (sample(sink, "safecity_sink_events_duplicate_total") or 0) >= 1  # the resent, committed batch
    assert sample(sink, "safecity_sink_events_rejected_total", reason="type") == 1

"""Delivery under faults, with real processes on loopback (see tests/faults.py): nothing committed at
the edge is lost, nothing is stored twice, nothing unexpected appears, whatever the fault."""

from pathlib import Path

import pytest

from tests.faults import SCENARIOS, Result, table

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

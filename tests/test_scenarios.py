"""The scenario library (``pipeline/accuracy/scenario_library/*.yaml``, described in
``pipeline/accuracy/scenarios.py``) through every rule. A scenario passes when exactly the incidents
it expects start, each within one analysed frame (at 5 fps) of its time, analysed at 5 and at 10 fps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.accuracy.scenarios import FPS, SCENARIOS, run_scenario


@pytest.mark.parametrize("fps", [FPS, 2 * FPS])
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, fps: float) -> None:
    """At 5 and at 10 analysed frames a second: the same incidents, each within one 5 fps frame."""
    data = yaml.safe_load(path.read_text())
    incidents = run_scenario(data, fps=fps)
    starts = sorted((i.type, round(i.emitted_at, 2)) for i in incidents if i.status == "start")
    expected = sorted((e["type"], float(e["start"])) for e in data["expect"])
    assert [s[0] for s in starts] == [e[0] for e in expected], f"{data['description']}\ngot {starts}"
    for (kind, got), (_, want) in zip(starts, expected, strict=True):
        assert abs(got - want) <= 1 / FPS + 1e-6, f"{kind} started at {got}, expected {want}"
    # every incident that started has a consistent lifecycle: one start, updates, at most one end
    for inc_id in {i.incident_id for i in incidents}:
        steps = [i.status for i in incidents if i.incident_id == inc_id]
        assert steps[0] == "start" and steps.count("start") == 1 and steps.count("end") <= 1
        assert "end" not in steps[:-1]


def test_scenarios_cover_every_incident_type_both_ways() -> None:
    kinds = {"stray_animal", "encroachment", "accident", "assault", "theft"}
    positive = set()
    for p in SCENARIOS:
        positive |= {e["type"] for e in yaml.safe_load(p.read_text())["expect"]}
    negatives = [p for p in SCENARIOS if not yaml.safe_load(p.read_text())["expect"]]
    assert positive == kinds and len(negatives) >= 5

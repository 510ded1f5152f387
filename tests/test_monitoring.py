"""The shipped alert rules and dashboard: promtool checks the rules and runs their unit tests (each
alert fires on its failure and stays quiet otherwise), and every metric they name is one the code
exports (a misspelt metric would never fire)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from .conftest import unavailable

MONITORING = Path(__file__).resolve().parent.parent / "configs" / "monitoring"
SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "gauge": [""],
    "info": ["_info"],
}


def exported() -> set[str]:
    """Every sample name the edge, the sink and the bridges can export."""
    from pipeline.bridges.base import BridgeMetrics
    from pipeline.events.sink import SinkMetrics
    from pipeline.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    SinkMetrics(registry)
    BridgeMetrics(registry)
    names = {"up"}  # Prometheus's own, per scrape
    for family in registry.collect():
        names.update(family.name + s for s in SUFFIXES.get(family.type, [""]))
    return names


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        unavailable("promtool is not installed", "apt-get install prometheus")
    return tool


def test_promtool_checks_the_rules_and_passes_their_unit_tests() -> None:
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "rules", "alerts.yml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert check.returncode == 0 and "SUCCESS: 10 rules found" in check.stdout, check.stdout + check.stderr
    tested = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_would_catch_a_rule_that_no_longer_fires(tmp_path: Path) -> None:
    tool = promtool()
    rules = (
        (MONITORING / "alerts.yml").read_text().replace("safecity_camera_up == 0", "safecity_camera_up == 2")
    )
    (tmp_path / "alerts.yml").write_text(rules)
    shutil.copy(MONITORING / "alerts_test.yml", tmp_path)
    tested = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode != 0 and "SafeCityCameraDown" in tested.stdout + tested.stderr


def metric_names(expr: str) -> set[str]:
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", re.sub(r"\{[^}]*\}|\"[^\"]*\"", "", expr)))
    return {w for w in words if w.startswith("safecity_") or w == "up"}


@pytest.mark.parametrize("where", ["alerts.yml", "grafana-dashboard.json"])
def test_every_metric_the_rules_and_dashboard_use_is_exported(where: str) -> None:
    if where.endswith(".yml"):
        exprs = [
            r["expr"] for g in yaml.safe_load((MONITORING / where).read_text())["groups"] for r in g["rules"]
        ]
    else:
        dash = json.loads((MONITORING / where).read_text())
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert len(used) >= 8
    assert used <= exported(), f"not exported: {sorted(used - exported())}"


def test_the_metric_check_catches_a_misspelt_metric() -> None:
    used = metric_names('sum by (camera) (rate(safecity_frames_analysed_totl{job="x"}[5m])) > up')
    assert used == {"safecity_frames_analysed_totl", "up"}
    assert used - exported() == {"safecity_frames_analysed_totl"}

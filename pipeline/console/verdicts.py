"""What the operators' verdicts say, per camera and type: false alarms per day on the console's
cameras page and ``/api/false-alarms``, and as a Prometheus gauge,
``safecity_false_alarms_last_day{edge, camera, type}`` (false alarms operators marked in the last 24
hours), read from the console's store at each scrape."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .store import ConsoleStore

DAY_S = 86_400.0


def since_days(days: float, now: float | None = None) -> float:
    """The Unix time ``days`` before ``now``."""
    return (now or time.time()) - days * DAY_S


class FalseAlarms(Collector):
    """The gauge, collected from the store when scraped."""

    def __init__(self, store: ConsoleStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "safecity_false_alarms_last_day",
            "Incidents operators marked as false alarms in the last 24 hours, per edge, camera and type",
            labels=["edge", "camera", "type"],
        )
        totals: dict[tuple[str, str, str], int] = {}
        for row in self.store.false_alarms(since_days(1)):
            key = (row["source"], row["camera_id"], row["type"])
            totals[key] = totals.get(key, 0) + int(row["n"])
        for (edge, camera, kind), n in sorted(totals.items()):
            g.add_metric([edge, camera, kind], n)
        yield g


def register(store: ConsoleStore, registry: CollectorRegistry) -> FalseAlarms:
    collector = FalseAlarms(store)
    registry.register(collector)
    return collector

"""The end-of-run summary table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from .runner import Runner, RunStats


def summary_table(runner: Runner, stats: RunStats) -> Table:
    elapsed = max(time.monotonic() - stats.started, 1e-9)
    t = Table(
        title=f"safecity run: {elapsed:.1f} s, {stats.batches} batches, {stats.incidents} incident events"
    )
    for col in ("camera", "state", "decoded", "analysed", "analysed fps", "dropped", "errors", "incidents"):
        t.add_column(col, justify="right" if col not in ("camera", "state") else "left")
    for cid, c in stats.cameras.items():
        t.add_row(
            cid,
            c.state,
            str(c.decoded),
            str(c.analysed),
            f"{c.analysed / elapsed:.1f}",
            str(c.dropped),
            str(c.errors),
            str(c.incidents),
        )
    t.add_row(
        "all",
        "",
        str(sum(c.decoded for c in stats.cameras.values())),
        str(stats.frames),
        f"{stats.frames / elapsed:.1f}",
        "",
        "",
        str(stats.incidents),
        style="bold",
    )
    return t

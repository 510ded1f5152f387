"""The end-of-run summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from .runner import Runner, RunStats

COLUMNS = (
    "camera",
    "state",
    "decoded",
    "analysed",
    "analysed fps",
    "dropped",
    "errors",
    "bad packets",
    "ts jumps",
    "incidents",
)


def summary_table(runner: Runner, stats: RunStats) -> Table:
    elapsed = max(stats.elapsed_s, 1e-9)
    t = Table(
        title=f"safecity run: {elapsed:.1f} s, {stats.batches} batches, {stats.incidents} incident events"
    )
    for col in COLUMNS:
        t.add_column(col, justify="right" if col not in ("camera", "state") else "left")
    for cid, c in stats.cameras.items():
        t.add_row(
            cid,
            c.state + (" (behind)" if c.behind else ""),
            str(c.decoded),
            str(c.analysed),
            f"{c.analysed / elapsed:.1f}",
            str(c.dropped),
            str(c.errors),
            str(c.decode_errors),
            str(c.timestamp_jumps),
            str(c.incidents),
        )
    cams = stats.cameras.values()
    t.add_row(
        "all",
        "",
        str(sum(c.decoded for c in cams)),
        str(stats.frames),
        f"{stats.frames / elapsed:.1f}",
        str(sum(c.dropped for c in cams)),
        str(sum(c.errors for c in cams)),
        str(sum(c.decode_errors for c in cams)),
        str(sum(c.timestamp_jumps for c in cams)),
        str(stats.incidents),
        style="bold",
    )
    if runner.publisher.lost:
        t.caption = f"{runner.publisher.lost} incident events lost: the outbox could not be written"
    return t

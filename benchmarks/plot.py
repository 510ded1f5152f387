"""The benchmarks' bar charts: one value per run, labelled, as a PNG."""

from __future__ import annotations

from pathlib import Path


def bar_chart(
    labels: list[str],
    values: list[float],
    path: Path,
    *,
    title: str,
    ylabel: str,
    colors: list[str] | None = None,
    size: tuple[float, float] = (6, 3.5),
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    bars = ax.bar(labels, values, color=colors)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Two-knob experiments of the claims report: a method's advantage over a baseline on a grid.

The generation–verification experiment (Swamy et al. 2025, "All Roads Lead to Likelihood") asks
why two-stage online fine-tuning (a reward model, then on-policy RL) beats offline DPO on the same
preferences. Their answer: where checking an answer is easier than producing it, a simple reward
model (verifier) is learnt from few data, and RL then only searches the policies optimal for it;
where verification is no easier than generation, the online advantage should shrink. Here, on the
text domain:

- rows: the task families (``TextConfig.families``): ``short`` answers that are as hard to check
  as to produce (checking ``add 3 5 → 8`` is computing the sum), the default mix (``all``), and
  ``long`` answers scored position by position (``sort``, ``reverse``, ``copy``);
- columns: the reward model's capacity (``TextConfig.scorer_layers``): the reference's first block
  only, or all its blocks (the policy's size); DPO reads no reward model, so its cells are shared.

The gap is rlhf − dpo per training seed (paired, as every claim). The verdict, per column: the gap
at the last row (long) minus the gap at the first (short), per seed; > 0 is the paper's prediction.
Each cell also shows what measures the knob: the reward model's held-out pair accuracy (how well
the verifier was learnt) and DPO's task accuracy (how well the generator was).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from leaderboard.claims import (
    Claim,
    Row,
    _cell_index,
    _interval,
    _lookup,
    _num,
    gap_axes,
    plot_gaps,
    save_figure,
    trend_of,
)

Knob = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class GapGrid:
    """A method's advantage over a baseline on one domain, on a grid of two domain knobs."""

    paper: str
    """Authors, year and the result's short name."""
    claim: str
    """The predicted pattern in one line."""
    method: str
    """The algorithm whose advantage is measured."""
    baseline: str
    """The algorithm it is measured against."""
    domain: str
    """The domain whose config the knobs set."""
    rows: tuple[Knob, ...]
    """(label, ``--domain-set`` overrides of both sides) per row; the verdict compares the last with the first."""
    columns: tuple[Knob, ...]
    """(label, ``--domain-set`` overrides that only the method reads) per column."""
    row_title: str = "row"
    """What the rows vary (axis label)."""
    column_title: str = "column"
    """What the columns vary (legend title)."""
    metric: str = "normalized_score"
    """The stored metric compared."""
    method_diagnostic: str = ""
    """A metric of the method's cells shown per grid cell (mean over seeds) that measures the knob."""
    baseline_diagnostic: str = ""
    """A metric of the baseline's cells shown per row (mean over seeds)."""

    def claim_at(self, row: Knob, column: Knob) -> Claim:
        return Claim(self.paper, self.claim, self.method, self.baseline, (self.domain,), self.metric,
                     domain_sets=row[1], method_domain_sets=column[1])

    def claims(self) -> list[Claim]:
        return [self.claim_at(r, c) for r in self.rows for c in self.columns]


GAP_GRIDS: tuple[GapGrid, ...] = (
    GapGrid("Swamy et al. 2025 (All Roads Lead to Likelihood)",
            "online RL's advantage over offline DPO comes from a generation–verification gap: rlhf − dpo is larger "
            "where answers are easier to check than to produce (long) than where they are not (short)",
            "rlhf", "dpo", "text",
            rows=(("short", ("families=short",)), ("all", ("families=all",)), ("long", ("families=long",))),
            columns=(("small RM (1 block)", ("scorer_layers=1",)), ("large RM (all blocks)", ("scorer_layers=0",))),
            row_title="task families (verification easier than generation →)", column_title="reward model",
            method_diagnostic="train/rm_heldout_accuracy", baseline_diagnostic="accuracy"),
)
"""The two-knob experiments the report runs (``bench grid --claims`` runs their cells too)."""


@dataclass
class GapRow:
    """One column of a grid: each row's paired gap, the diagnostics and the verdict on the trend."""

    grid: GapGrid
    column: str
    cells: list[Row]
    verdict: str
    reason: str = ""
    trend: float | None = None
    t_interval: tuple[float, float] | None = None
    boot_interval: tuple[float, float] | None = None
    method_diagnostic: list[float | None] | None = None
    baseline_diagnostic: list[float | None] | None = None


def _diagnostic(recs: dict[int, Any], metric: str) -> float | None:
    values = [r.metrics[metric] for r in recs.values() if r.status == "done" and metric in r.metrics]
    return float(np.mean(values)) if metric and values else None


def evaluate_column(store: Any, cells: dict, grid: GapGrid, column: Knob, seeds: Sequence[int], *,
                    reps: int = 2000, seed: int = 0) -> GapRow:
    """Each row's gap in one column, and the verdict on (gap at the last row − gap at the first)."""
    claims = [grid.claim_at(r, column) for r in grid.rows]
    rows, verdict, reason, fig = trend_of(store, cells, claims, grid.domain, seeds, reps=reps, seed=seed)
    diag_m = [_diagnostic(_lookup(store, cells, c, "method", grid.domain, seeds), grid.method_diagnostic)
              for c in claims]
    diag_b = [_diagnostic(_lookup(store, cells, c, "baseline", grid.domain, seeds), grid.baseline_diagnostic)
              for c in claims]
    return GapRow(grid, column[0], rows, verdict, reason, fig.get("diff"), fig.get("t_interval"),
                  fig.get("boot_interval"), diag_m, diag_b)


def evaluate_grids(store: Any, preset: str, seeds: Sequence[int], grids: Sequence[GapGrid] = GAP_GRIDS, *,
                   reps: int = 2000, seed: int = 0) -> list[GapRow]:
    """Every grid × column."""
    cells = _cell_index([c for g in grids for c in g.claims()], preset, seeds)
    return [evaluate_column(store, cells, g, col, seeds, reps=reps, seed=seed) for g in grids for col in g.columns]


def grids_markdown(rows: Sequence[GapRow], image: str | None = None) -> str:
    """Per grid: a table with a row per (row knob) and, per column, the gap with its interval and the
    method's diagnostic; then the verdict per column."""
    lines: list[str] = []
    for grid in dict.fromkeys(r.grid for r in rows):
        cols = [r for r in rows if r.grid == grid]
        lines += ["", f"### {grid.paper}: {grid.claim}", "",
                  f"Gap = {grid.method} − {grid.baseline} ({grid.metric}) per seed on {grid.domain}; rows: "
                  f"{grid.row_title} (`{'`, `'.join(' '.join(k[1]) for k in grid.rows)}`); "
                  f"columns: {grid.column_title} "
                  f"(`{'`, `'.join(' '.join(k[1]) for k in grid.columns)}`, read by {grid.method} only). "
                  f"Trend = gap at the last row − gap at the first, per seed.", "",
                  "| row | " + " | ".join(f"gap, {c.column} [t 95%] | {grid.method_diagnostic}" for c in cols)
                  + f" | {grid.baseline}: {grid.baseline_diagnostic} |",
                  "|---|" + "---|---|" * len(cols) + "---|"]
        for i, (label, _) in enumerate(grid.rows):
            parts = [f"{_num(c.cells[i].diff)} {_interval(c.cells[i].t_interval)} | "
                     f"{_num(c.method_diagnostic[i] if c.method_diagnostic else None)}" for c in cols]
            base = cols[0].baseline_diagnostic[i] if cols[0].baseline_diagnostic else None
            lines.append(f"| {label} | " + " | ".join(parts) + f" | {_num(base)} |")
        lines += ["", "| column | trend (last − first row) | t 95% | bootstrap 95% | verdict |",
                  "|---|---|---|---|---|"]
        for c in cols:
            lines.append(f"| {c.column} | {_num(c.trend)} | {_interval(c.t_interval)} | {_interval(c.boot_interval)} | "
                         f"{c.verdict}{f' ({c.reason})' if c.reason else ''} |")
        lines.append("")
    if image and rows:
        lines += [f"![{rows[0].grid.paper}]({image})", ""]
    return "\n".join(lines)


def grid_plot(rows: Sequence[GapRow], path: Any) -> bool:
    """Gap vs row, a line per column (mean and 95% t-interval over seeds); False when nothing to plot."""
    rows = [r for r in rows if any(x.diff is not None for x in r.cells)]
    if not rows:
        return False
    grid = rows[0].grid
    fig, ax = gap_axes()
    xs = np.arange(len(grid.rows))
    for r in (r for r in rows if r.grid == grid):
        plot_gaps(ax, xs, r.cells, f"{r.column} ({r.verdict})")
    ax.set_xticks(xs, [label for label, _ in grid.rows])
    ax.set_xlabel(grid.row_title)
    ax.set_ylabel(f"{grid.method} − {grid.baseline}: {grid.metric}")
    ax.legend(fontsize=8, title=grid.column_title, title_fontsize=8)
    save_figure(fig, path)
    return True


__all__ = ["GAP_GRIDS", "GapGrid", "GapRow", "evaluate_column", "evaluate_grids", "grid_plot", "grids_markdown"]

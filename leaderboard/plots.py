"""Leaderboard plots (matplotlib, PNG and SVG), byte-for-byte reproducible from the store.

- ``bars_<domain>``: normalized_score per entry and condition, mean with 95% t-intervals over seeds;
- ``aggregates_<condition>``: IQM, mean and optimality gap with stratified-bootstrap intervals;
- ``profile_<condition>``: rliable performance profiles (fraction of runs with score > τ);
- ``frontier_<domain>``: gold reward vs KL to the reference, every done cell a point;
- ``overoptimisation_<domain>``: gold gain vs KL at each training checkpoint, a path per entry;
- ``feedback``: feedback used vs normalized_score, every done cell a point, one panel per domain.

Reproducibility: the Agg backend, a fixed SVG hash salt, and no date or software metadata in
either format; everything drawn is sorted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from leaderboard.aggregate import SCORE, STATISTICS, Aggregate, Board, performance_profile

RC = {
    "svg.hashsalt": "prefbench",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower() or "x"


def _colors(board: Board) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(board.entries) <= 10 else "tab20"]
    return {e.label: cmap(i % cmap.N) for i, e in enumerate(board.entries)}


def _save(fig, out: Path, name: str) -> list[str]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", format="png", metadata={"Software": None}, bbox_inches="tight")
    with plt.rc_context({"svg.hashsalt": RC["svg.hashsalt"]}):  # fixed element ids, whoever drew the figure
        fig.savefig(out / f"{name}.svg", format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    return [f"{name}.png", f"{name}.svg"]


def bars(board: Board, domain: str, out: Path) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt

    conds = [c for c in board.conditions if board.tasks_of(domain=domain, condition=c)]
    tasks = [t for c in conds for t in board.tasks_of(domain=domain, condition=c)]
    entries = board.entries_of(tasks)
    if not entries:
        return None
    colors = _colors(board)
    width = 0.8 / max(1, len(entries))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 1.1 * len(tasks) * max(1, len(entries)) * 0.45), 3.4))
    for j, e in enumerate(entries):
        xs, ms, errs = [], [], []
        for i, t in enumerate(tasks):
            g = board.group(e, t)
            s = g.stat(SCORE)
            x = i - 0.4 + width * (j + 0.5)
            if s is None:
                ax.text(x, 0, "n/a" if g.records and all(r.status == "na" for r in g.records) else "missing",
                        rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
                continue
            xs.append(x)
            ms.append(s.mean)
            errs.append(s.half if s.half is not None else 0.0)
            pts = [r.metrics[SCORE] for r in g.done]
            ax.scatter([x] * len(pts), pts, s=8, color="black", zorder=3, linewidths=0)
        if xs:
            ax.bar(xs, ms, width * 0.9, yerr=errs, color=colors[e.label], label=e.label, capsize=3,
                   error_kw={"elinewidth": 1})
    ax.set_xlim(-0.5, len(tasks) - 0.5)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axhline(100, color="0.3", lw=0.8, ls="--")
    ax.set_xticks(range(len(tasks)), [t.condition if t.label == domain else f"{t.condition}\n{t.label}"
                                      for t in tasks])
    ax.set_ylabel("normalized score (0 = reference, 100 = target)")
    ax.set_title(f"{domain}: mean ± 95% CI over seeds (dots: seeds)")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    name = f"bars_{slug(domain)}"
    _save(fig, out, name)
    return name, f"{domain}: normalized_score per entry and condition; bars: mean over seeds, whiskers: 95% " \
        "Student-t interval over seeds, dots: individual seeds; dashed line: the target (100)"


def aggregate_plot(agg: Aggregate, board: Board, out: Path) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt

    labels = [e.label for e in agg.entries]
    if not labels:
        return None
    colors = _colors(board)
    fig, axes = plt.subplots(1, len(STATISTICS), figsize=(3.0 * len(STATISTICS), 1.3 + 0.4 * len(labels)),
                             sharey=True)
    for ax, s in zip(axes, STATISTICS):
        for i, lab in enumerate(labels):
            iv = agg.stats[lab][s]
            if iv.lo is not None:
                ax.plot([iv.lo, iv.hi], [i, i], color=colors[lab], lw=6, alpha=0.6, solid_capstyle="butt")
            ax.plot([iv.estimate], [i], "|", color="black", ms=12)
        ax.set_title(s + (" (lower is better)" if s == "optimality gap" else ""))
        ax.set_yticks(range(len(labels)), labels)
        ax.grid(axis="x", alpha=0.3)
    scope = "" if agg.scope == "all" else " (common domains)"
    fig.suptitle(f"{agg.condition}{scope}: normalized_score over {len(agg.tasks)} domain(s); "
                 "95% stratified-bootstrap CIs over seeds", fontsize=9)
    fig.tight_layout()
    name = f"aggregates_{slug(agg.condition)}_{agg.scope}"
    _save(fig, out, name)
    return name, (f"{agg.condition}{scope}: IQM, mean and optimality gap of normalized_score across "
                  f"{', '.join(t.label for t in agg.tasks)}; bars: 95% stratified-bootstrap intervals over seeds "
                  f"({agg.reps} resamples)")


def profile_plot(agg: Aggregate, board: Board, out: Path) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt

    if not agg.entries:
        return None
    allv = np.concatenate([m.ravel() for m in agg.matrices.values()])
    lo, hi = min(0.0, float(allv.min())), max(100.0, float(allv.max()))
    taus = np.linspace(lo, hi, 81)
    profiles = performance_profile(agg, taus, reps=max(200, agg.reps // 4), seed=agg.seed)
    colors = _colors(board)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for lab in sorted(profiles):
        prof, ci = profiles[lab]
        ax.plot(taus, prof, color=colors[lab], label=lab, lw=1.6)
        if ci is not None:
            ax.fill_between(taus, ci[0], ci[1], color=colors[lab], alpha=0.18, linewidth=0)
    ax.set_xlabel("normalized score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    scope = "" if agg.scope == "all" else " (common domains)"
    ax.set_title(f"performance profile — {agg.condition}{scope}")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    name = f"profile_{slug(agg.condition)}_{agg.scope}"
    _save(fig, out, name)
    return name, (f"{agg.condition}{scope}: rliable performance profile (score distribution over runs × domains); "
                  "bands: 95% stratified-bootstrap intervals over seeds")


def frontier(board: Board, domain: str, out: Path) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt

    recs = [r for r in board.records if r.domain == domain and r.status == "done"]
    if not recs:
        return None
    colors = _colors(board)
    conds = [c for c in board.conditions if any(r.condition == c for r in recs)]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    label_of = {}
    for e in board.entries:
        for t in board.tasks_of(domain=domain):
            for r in board.group(e, t).done:
                label_of[r.run_id] = e.label
    seen = set()
    for r in sorted(recs, key=lambda r: (label_of[r.run_id], r.condition, r.seed, r.run_id)):
        lab = label_of[r.run_id]
        marker = MARKERS[conds.index(r.condition) % len(MARKERS)]
        ax.scatter([r.metrics.get("kl_to_ref", np.nan)], [r.metrics.get("gold_reward", np.nan)], s=22,
                   color=colors[lab], marker=marker, label=lab if lab not in seen else None, linewidths=0)
        seen.add(lab)
    ref = float(np.mean([r.metrics.get("reference_gold_reward", np.nan) for r in recs]))
    target = float(np.mean([r.metrics.get("target_gold_reward", np.nan) for r in recs]))
    ax.scatter([0.0], [ref], marker="*", s=120, color="black", label="reference", zorder=4)
    ax.axhline(target, color="0.3", lw=0.8, ls="--")
    ax.text(ax.get_xlim()[1], target, " target", va="center", fontsize=7, color="0.3")
    ax.set_xlabel("KL to the reference (sample estimate)")
    ax.set_ylabel("gold reward")
    ax.grid(alpha=0.3)
    title = f"{domain}: gold reward vs KL, every cell"
    if len(conds) > 1:
        title += " (marker: " + ", ".join(f"{MARKERS[i % len(MARKERS)]} {c}" for i, c in enumerate(conds)) + ")"
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    name = f"frontier_{slug(domain)}"
    _save(fig, out, name)
    return name, f"{domain}: gold reward against KL to the reference, one point per done cell (seed); " \
        "star: the reference policy; dashed: the target (best-of-N reference)"


def checkpoint_curve(rec) -> list[tuple[int, float, float]]:
    """A cell's over-optimisation curve: (step, KL or ELBO gap, gold gain) per checkpoint, from the
    origin (step 0: the reference itself) in step order (``benchmark.checkpoints``)."""
    gains = dict(rec.curves.get("checkpoint/gold_gain", []))
    kls = dict(rec.curves.get("checkpoint/kl", []))
    return [(0, 0.0, 0.0)] + [(s, kls[s], gains[s]) for s in sorted(gains) if s in kls]


def checkpoint_errors(rec) -> dict[int, float]:
    """A cell's checkpoint standard errors of the gold gain by step (none for a cell run before they
    were stored; the origin, the reference itself, has none)."""
    return {int(s): float(v) for s, v in rec.curves.get("checkpoint/gold_gain_se", [])}


def cell_curve_png(rec, path: Path) -> Path:
    """One cell's over-optimisation curve as a PNG (``bench show --plot``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = np.array([p[1:] for p in checkpoint_curve(rec)], dtype=float)
    steps = [p[0] for p in checkpoint_curve(rec)]
    errors = checkpoint_errors(rec)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        ax.plot(pts[:, 0], pts[:, 1], marker="o", ms=4, lw=1.2)
        if errors:
            bars = np.array([2.0 * errors.get(s, 0.0) for s in steps])
            ax.errorbar(pts[:, 0], pts[:, 1], yerr=bars, fmt="none", ecolor="0.4", elinewidth=0.8, capsize=2,
                        label="±2 standard errors (probe contexts)")
            ax.legend(fontsize=7, frameon=False)
        for (x, y), s in zip(pts, steps):
            ax.annotate(str(s), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
        ax.set_xlabel("KL to the reference" if "kl_to_ref" in rec.metrics else "ELBO gap to the reference")
        ax.set_ylabel("gold gain over the reference")
        ax.set_title(f"{rec.algo} × {rec.domain} [{rec.condition}, seed {rec.seed}]: checkpoints (step)", fontsize=8)
        ax.grid(alpha=0.3)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": None}, bbox_inches="tight")
        plt.close(fig)
    return path


def overoptimisation(board: Board, domain: str, out: Path) -> tuple[str, str] | None:
    """Gold gain against KL during training, every entry (default condition; mean over seeds per
    checkpoint), as Gao et al. 2023 plot over-optimisation."""
    import matplotlib.pyplot as plt

    colors = _colors(board)
    curves = []
    for e in board.entries:
        for t in board.tasks_of(domain=domain, condition="default"):
            runs = [checkpoint_curve(r) for r in board.group(e, t).done]
            runs = [c for c in runs if len(c) > 1]
            if runs and len({len(c) for c in runs}) == 1:
                pts = np.array([[p[1:] for p in c] for c in runs], dtype=float).mean(axis=0)
                curves.append((e.label, pts))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, pts in curves:
        ax.plot(pts[:, 0], pts[:, 1], marker="o", ms=3, lw=1.2, color=colors[label], label=label)
        ax.scatter(pts[-1:, 0], pts[-1:, 1], s=30, color=colors[label], marker="s", zorder=3)
    ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
    ax.set_xlabel("KL to the reference (probe estimate)")
    ax.set_ylabel("gold gain over the reference")
    ax.grid(alpha=0.3)
    ax.set_title(f"{domain}: gold gain vs KL during training (default condition)", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    name = f"overoptimisation_{slug(domain)}"
    _save(fig, out, name)
    return name, (f"{domain}: each method's path from the reference (origin) through its training checkpoints to "
                  "the final policy (square), mean over seeds; a curve that rises then falls is over-optimisation "
                  "(Gao et al. 2023). Probe: 16 held-out contexts, one sample each, the same in every cell, so a "
                  "domain's curves can all sit off the final evaluation by about a 16-context standard error: read "
                  "their shapes, and the tables for the final level")


def feedback(board: Board, out: Path) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt

    domains = [d for d in board.domains if any(r.domain == d and r.status == "done" for r in board.records)]
    if not domains:
        return None
    colors = _colors(board)
    fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains) + 1.2, 3.2), squeeze=False)
    for ax, d in zip(axes[0], domains):
        seen = set()
        for e in board.entries:
            for t in board.tasks_of(domain=d):
                for r in board.group(e, t).done:
                    ax.scatter([r.metrics.get("feedback_used", np.nan)], [r.metrics.get(SCORE, np.nan)], s=20,
                               color=colors[e.label], label=e.label if e.label not in seen else None, linewidths=0)
                    seen.add(e.label)
        ax.set_title(d)
        ax.set_xlabel("feedback used (oracle queries)")
        ax.set_ylabel("normalized score")
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.tight_layout()
    _save(fig, out, "feedback")
    return "feedback", "feedback used (queries to the feedback channel) against normalized_score, one point per " \
        "done cell; offline-only methods use none"


def make_plots(board: Board, aggs: list[Aggregate], out: Path) -> list[tuple[str, str]]:
    """Write every plot under ``out`` (PNG + SVG); returns (name, caption) pairs in page order."""
    import matplotlib

    from leaderboard.claims import experiment_plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str] | None] = []
    with plt.rc_context(RC):
        for agg in aggs:
            made.append(aggregate_plot(agg, board, out))
            made.append(profile_plot(agg, board, out))
        for d in board.domains:
            made.append(bars(board, d, out))
            made.append(frontier(board, d, out))
            made.append(overoptimisation(board, d, out))
        made.append(feedback(board, out))
        made += experiment_plots(board, out)
    return [m for m in made if m is not None]

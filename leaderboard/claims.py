"""The seed papers' headline claims, tested on the store (``bench report claims``).

A claim is a row of :data:`CLAIMS`: a method, a baseline, a metric, the domains and condition that
test it and the paper's predicted direction. :func:`evaluate` looks up the cells that test it in a
store (one preset, the given seeds; exactly the run ids ``bench grid --claims`` runs), pairs method
and baseline by training seed (a cell is a function of code, config and seed, so the same seed
means the same data and evaluation draws) and gives the mean paired difference with two 95%
intervals over seeds:

- Student-t (honest with few seeds), and
- a percentile bootstrap over seeds (rliable's estimator; with 3 seeds it has at most 10 distinct
  resamples and is too narrow, which is why it is never used alone).

The verdict needs both intervals on one side of 0:

- **reproduced**: both lie on the predicted side;
- **refuted**: both lie on the other side;
- **cannot tell**: either covers 0 (or fewer than 2 paired seeds);
- **n/a**: the method or the baseline is not applicable on that domain (the cell's stored reason);
- **not run**: a cell is missing from the store (``bench grid --claims`` runs it).

Cells prepared with different torch thread counts are not paired (docs/design.md, "Threads and
determinism"): such a claim is "not comparable". The report states its preset and seeds at the
top and never mixes presets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from leaderboard.aggregate import mean_ci, preparation_of

DOMAINS3 = ("text", "image", "robot")
DOMAINS4 = ("text", "image", "motion", "robot")


@dataclass(frozen=True)
class Claim:
    """One headline claim of a paper, as a comparison of two cells per domain and seed."""

    paper: str
    """Authors, year and the method's short name."""
    claim: str
    """The claim in one line."""
    method: str
    """The algorithm that should win."""
    baseline: str
    """The algorithm it is compared with."""
    domains: tuple[str, ...] = DOMAINS3
    """Domains on which the claim is tested (a row each)."""
    metric: str = "normalized_score"
    """The stored metric compared."""
    condition: str = "default"
    """The data/feedback condition of the method's cells (and the baseline's, unless ``baseline_condition``)."""
    method_sets: tuple[str, ...] = ()
    """``--set key=value`` overrides of the method's config."""
    baseline_sets: tuple[str, ...] = ()
    """``--set key=value`` overrides of the baseline's config."""
    higher: bool = True
    """True: the claim predicts a larger metric for the method."""
    context: bool = False
    """A comparison shown for context, not the paper's own claim (never counted as reproduced/refuted)."""
    baseline_condition: str = ""
    """The baseline's condition when it differs (a claim about data: the same method on two datasets)."""
    domain_sets: tuple[str, ...] = ()
    """``--domain-set key=value`` overrides of both sides' domain config (an experiment's knob)."""
    method_domain_sets: tuple[str, ...] = ()
    """Further ``--domain-set`` overrides of the method's cells only: a knob the baseline never reads
    (the reward model's size, for DPO), so its cells are shared across that knob."""

    def domain_sets_of(self, which: str) -> tuple[str, ...]:
        return self.domain_sets + (self.method_domain_sets if which == "method" else ())

    def side(self, which: str) -> tuple[str, tuple[str, ...]]:
        return (self.method, self.method_sets) if which == "method" else (self.baseline, self.baseline_sets)

    def condition_of(self, which: str) -> str:
        if which == "baseline" and self.baseline_condition:
            return self.baseline_condition
        return self.condition

    @property
    def label(self) -> str:
        def name(algo: str, sets: tuple[str, ...]) -> str:
            return f"{algo} ({', '.join(sets)})" if sets else algo

        if self.baseline_condition and self.baseline_condition != self.condition:
            return (f"{name(self.method, self.method_sets)} [{self.condition}] vs "
                    f"{name(self.baseline, self.baseline_sets)} [{self.baseline_condition}]")
        cond = f" [{self.condition}]" if self.condition != "default" else ""
        return f"{name(self.method, self.method_sets)} vs {name(self.baseline, self.baseline_sets)}{cond}"


ORACLE = ("annotator=oracle",)
CLAIMS: tuple[Claim, ...] = (
    # offline seed methods (issue #15)
    Claim("Richemond et al. 2024 (DRO)", "DRO beats KTO on the same single-trajectory (thumbs) data", "dro", "kto"),
    Claim("Kwon et al. 2024 (GDPO)", "GDPO's outputs are more diverse than DPO's", "gdpo", "dpo",
          metric="diversity"),
    Claim("Kwon et al. 2024 (GDPO)", "... at a gold reward no lower than DPO's", "gdpo", "dpo"),
    Claim("Ko et al. 2024 (SeRA)", "SeRA improves on its base DAA (DPO)", "sera", "dpo"),
    Claim("Ko et al. 2024 (SeRA)", "SeRA improves on DPO under noisy labels", "sera", "dpo", domains=("text",),
          condition="noisy-labels"),
    Claim("Hejna et al. 2024 (CPL)", "CPL beats behaviour cloning on robot segments", "cpl", "sft",
          domains=("robot",), metric="d4rl_score"),
    Claim("Hejna et al. 2024 (CPL)", "CPL beats preference IQL (reward model + IQL)", "cpl", "iql",
          domains=("robot",), metric="d4rl_score"),
    Claim("Tu et al. 2025 (DTR)", "DTR beats reward model + IQL (the offline PbRL baseline)", "dtr", "iql",
          domains=("robot",), metric="d4rl_score"),
    # online seed methods (issue #16)
    Claim("Guo et al. 2024 (OAIF)", "online AI feedback (the judge) beats offline DPO", "oaif", "dpo",
          domains=("text",)),
    Claim("Guo et al. 2024 (OAIF)", "online feedback beats offline DPO, the oracle as annotator", "oaif", "dpo",
          method_sets=ORACLE),
    Claim("Chang et al. 2024 (DR-PO)", "dataset resets: DR-PO ≥ RLHF", "drpo", "rlhf"),
    Claim("Krishna & Sahoo 2024 (FRFT)", "refitting the reward model on policy-near pairs beats RLHF",
          "inverse_alignment", "rlhf"),
    Claim("Zhang et al. 2024 (SELM)", "the optimistic term helps: SELM beats iterative DPO (α = 0)", "selm", "selm",
          domains=("text",), baseline_sets=("alpha=0",)),
    Claim("Zhai et al. 2024 (OSP)", "OSP beats DPO when offline data are scarce", "osp", "dpo", domains=("text",),
          condition="low-budget"),
    # hybrid seed methods (issue #17)
    Claim("Tan et al. 2025 (SoPo)", "SoPo improves R-precision over offline (Diffusion-)DPO", "sopo", "dpo",
          domains=("motion",), metric="r_precision_top3"),
    Claim("Tan et al. 2025 (SoPo)", "SoPo improves MM-Dist over offline (Diffusion-)DPO", "sopo", "dpo",
          domains=("motion",), metric="mm_dist", higher=False),
    Claim("Tan et al. 2025 (SoPo)", "SoPo improves R-precision over MoDiPO", "sopo", "modipo", domains=("motion",),
          metric="r_precision_top3"),
    Claim("Tan et al. 2025 (SoPo)", "SoPo improves MM-Dist over MoDiPO", "sopo", "modipo", domains=("motion",),
          metric="mm_dist", higher=False),
    Claim("Tan et al. 2025 (SoPo)", "SoPo vs DPO on the gold reward (context)", "sopo", "dpo", domains=("motion",),
          context=True),
    Claim("Song et al. 2024 (HyPO)", "HyPO beats DPO when the data cover the good region partially", "hypo", "dpo",
          domains=DOMAINS4, condition="partial-coverage"),
    Claim("Song et al. 2024 (HyPO)", "HyPO vs DPO under full coverage, where the gap should shrink (context)",
          "hypo", "dpo", domains=DOMAINS4, context=True),
    Claim("Wu et al. 2025 (Diffusion-DRO)", "Diffusion-DRO beats Diffusion-DPO", "diffusion_dro", "dpo",
          domains=("image", "motion")),
    # multi-agent (issue #14)
    Claim("Zhang et al. 2024 (MARLHF)", "unilateral coverage beats expert-only data: MARLHF on mix-unilateral "
          "beats MARLHF on pure-expert", "marlhf", "marlhf", domains=("multiagent",), metric="normalized_return",
          condition="mix-unilateral", baseline_condition="pure-expert"),
    Claim("Zhang et al. 2024 (MARLHF)", "reward smoothing along time helps (MARLHF vs smoothing = 0)", "marlhf",
          "marlhf", domains=("multiagent",), metric="normalized_return", condition="mix-unilateral",
          baseline_sets=("smoothing=0",)),
    Claim("Zhang et al. 2024 (MARLHF)", "the imitation term helps (MARLHF vs imitation = 0)", "marlhf", "marlhf",
          domains=("multiagent",), metric="normalized_return", condition="mix-unilateral",
          baseline_sets=("imitation=0",)),
    Claim("Zhang et al. 2024 (MARLHF)", "MARLHF vs offline DPO on the same joint trajectories (context)", "marlhf",
          "dpo", domains=("multiagent",), metric="normalized_return", condition="mix-unilateral", context=True),
)
"""The claims the report tests; adding a claim is adding a row."""


@dataclass(frozen=True)
class Sweep:
    """An experiment: a method's advantage over a baseline as a condition's strength grows
    (``condition@level``, ``benchmark.conditions.KNOBS``)."""

    paper: str
    """Authors, year and the result's short name."""
    claim: str
    """The predicted trend in one line."""
    method: str
    """The algorithm whose advantage is measured."""
    baseline: str
    """The algorithm it is measured against."""
    condition: str
    """A condition with a strength knob."""
    levels: tuple[str, ...]
    """Strengths, weakest first; the verdict compares the last with the first."""
    domains: tuple[str, ...] = DOMAINS3
    """Domains on which the sweep runs."""
    metric: str = "normalized_score"
    """The stored metric compared."""

    def claim_at(self, level: str) -> Claim:
        return Claim(self.paper, self.claim, self.method, self.baseline, self.domains, self.metric,
                     f"{self.condition}@{level}")


SWEEPS: tuple[Sweep, ...] = (
    Sweep("Song et al. 2024 (HyPO)", "offline DPO loses to online RL as the data cover less of the good region: "
          "the gap rlhf − dpo grows with the coverage drop", "rlhf", "dpo", "partial-coverage",
          ("0", "0.3", "0.6", "0.9")),
)
"""The experiments the report runs (``bench grid --claims`` runs their cells too)."""


# ---------------------------------------------------------------------------------------------
# cells and verdicts
# ---------------------------------------------------------------------------------------------


def all_claims(claims: Sequence[Claim] = CLAIMS, sweeps: Sequence[Sweep] = SWEEPS, grids: Sequence[Any] | None = None
               ) -> list[Claim]:
    """The claims, every level of every sweep and every cell of every two-knob experiment
    (``leaderboard.gap``; None: all of them), as claims: what the report evaluates."""
    if grids is None:
        from leaderboard.gap import GAP_GRIDS as grids
    levels = [s.claim_at(level) for s in sweeps for level in s.levels]
    return [*claims, *levels, *(c for g in grids for c in g.claims())]


def claim_cells(claims: Sequence[Claim], preset: str, seeds: Sequence[int]) -> list[Any]:
    """Every resolved cell the claims need (each once), in a stable order: what ``bench grid
    --claims`` runs (with :func:`all_claims`)."""
    from benchmark.runner import CellRequest, resolve

    cells, seen = [], set()
    for c in claims:
        for domain in c.domains:
            for seed in seeds:
                for which in ("method", "baseline"):
                    algo, sets = c.side(which)
                    cell = resolve(CellRequest(algo, domain, c.condition_of(which), seed, preset, sets,
                                               c.domain_sets_of(which)))
                    if cell.run_id not in seen:
                        seen.add(cell.run_id)
                        cells.append(cell)
    return cells


@dataclass
class Row:
    """One claim on one domain: the paired difference and the verdict."""

    claim: Claim
    domain: str
    verdict: str
    reason: str = ""
    seeds: list[int] = field(default_factory=list)
    method_mean: float | None = None
    baseline_mean: float | None = None
    diff: float | None = None
    t_interval: tuple[float, float] | None = None
    boot_interval: tuple[float, float] | None = None


def bootstrap_interval(diffs: Sequence[float], reps: int = 2000, seed: int = 0, level: float = 0.95
                       ) -> tuple[float, float]:
    """Percentile bootstrap of the mean over seeds (resampling seeds with replacement)."""
    x = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def verdict_of(diffs: Sequence[float], *, reps: int = 2000, seed: int = 0) -> tuple[str, dict]:
    """(verdict, figures) of paired differences already signed so that > 0 is the predicted side."""
    st = mean_ci(list(diffs))
    if st is None or st.lo is None:
        return "cannot tell", {"diff": st.mean if st else None}
    boot = bootstrap_interval(diffs, reps, seed)
    t = (st.lo, st.hi)
    if t[0] > 0 and boot[0] > 0:
        verdict = "reproduced"
    elif t[1] < 0 and boot[1] < 0:  # type: ignore[operator]
        verdict = "refuted"
    else:
        verdict = "cannot tell"
    return verdict, {"diff": st.mean, "t_interval": t, "boot_interval": boot}


def _lookup(store: Any, cells: dict[tuple[str, str, tuple, tuple, str, int], Any], claim: Claim, which: str,
            domain: str, seeds: Sequence[int]) -> dict[int, Any]:
    algo, sets = claim.side(which)
    out = {}
    for seed in seeds:
        cell = cells[(algo, domain, sets, claim.domain_sets_of(which), claim.condition_of(which), seed)]
        rec = store.get(cell.run_id)
        if rec is not None:
            out[seed] = rec
    return out


def evaluate_row(store: Any, cells: dict, claim: Claim, domain: str, seeds: Sequence[int], *, reps: int = 2000,
                 seed: int = 0) -> Row:
    """The verdict of one claim on one domain from the stored cells."""
    recs = {w: _lookup(store, cells, claim, w, domain, seeds) for w in ("method", "baseline")}
    for w in ("method", "baseline"):
        na = [r for r in recs[w].values() if r.status == "na"]
        if na:
            return Row(claim, domain, "n/a", f"{claim.side(w)[0]}: {na[0].reason}")
    done = {w: {s: r for s, r in recs[w].items() if r.status == "done" and claim.metric in r.metrics}
            for w in ("method", "baseline")}
    paired = sorted(set(done["method"]) & set(done["baseline"]))
    if len(paired) < len(seeds):
        missing = len(seeds) - len(paired)
        return Row(claim, domain, "not run", f"{missing} of {len(seeds)} seeds lack a done cell with "
                   f"{claim.metric}: bench grid --claims", paired)
    threads = {r.env.get("torch_threads") for w in done for r in done[w].values()}
    if len(threads) > 1:
        return Row(claim, domain, "not comparable", f"cells ran with torch thread counts {sorted(threads)}")
    built = {preparation_of(r.env) for w in done for r in done[w].values()} - {None}
    if len(built) > 1:  # two preparations, two references (docs/design.md, threads and determinism)
        return Row(claim, domain, "not comparable", f"the cells' preparations were built on {'; '.join(sorted(built))}")
    sign = 1.0 if claim.higher else -1.0
    a = [done["method"][s].metrics[claim.metric] for s in paired]
    b = [done["baseline"][s].metrics[claim.metric] for s in paired]
    diffs = [sign * (x - y) for x, y in zip(a, b)]
    verdict, fig = verdict_of(diffs, reps=reps, seed=seed)
    if claim.context:
        verdict = "context"
    return Row(claim, domain, verdict, "", paired, float(np.mean(a)), float(np.mean(b)), **fig)


def _cell_index(claims: Sequence[Claim], preset: str, seeds: Sequence[int]) -> dict:
    cells = {}
    for cell in claim_cells(claims, preset, seeds):
        r = cell.request
        cells[(r.algo, r.domain, tuple(r.sets), tuple(r.domain_sets), r.condition, r.seed)] = cell
    return cells


def evaluate(store: Any, preset: str, seeds: Sequence[int], claims: Sequence[Claim] = CLAIMS, *,
             reps: int = 2000, seed: int = 0) -> list[Row]:
    """Every claim × domain, in :data:`CLAIMS` order."""
    cells = _cell_index(claims, preset, seeds)
    return [evaluate_row(store, cells, c, d, seeds, reps=reps, seed=seed) for c in claims for d in c.domains]


def evaluate_sweeps(store: Any, preset: str, seeds: Sequence[int], sweeps: Sequence[Sweep] = SWEEPS, *,
                    reps: int = 2000, seed: int = 0) -> list[SweepRow]:
    """Every sweep × domain."""
    cells = _cell_index(all_claims((), sweeps, ()), preset, seeds)
    return [evaluate_sweep(store, cells, s, d, seeds, reps=reps, seed=seed) for s in sweeps for d in s.domains]


@dataclass
class SweepRow:
    """One sweep on one domain: the paired gap at each level and the verdict on its trend."""

    sweep: Sweep
    domain: str
    levels: list[Row]
    verdict: str
    reason: str = ""
    trend: float | None = None
    t_interval: tuple[float, float] | None = None
    boot_interval: tuple[float, float] | None = None


def _paired_gaps(store: Any, cells: dict, claim: Claim, domain: str, seeds: Sequence[int]) -> dict[int, float]:
    recs = {w: _lookup(store, cells, claim, w, domain, seeds) for w in ("method", "baseline")}
    out = {}
    for s in seeds:
        a, b = recs["method"].get(s), recs["baseline"].get(s)
        if a is not None and b is not None and a.status == b.status == "done":
            out[s] = a.metrics[claim.metric] - b.metrics[claim.metric]
    return out


INCOMPLETE = ("not run", "n/a", "not comparable")
"""Verdicts of a row that lacks the cells to be judged."""


def trend_of(store: Any, cells: dict, claims: Sequence[Claim], domain: str, seeds: Sequence[int], *,
             reps: int = 2000, seed: int = 0) -> tuple[list[Row], str, str, dict]:
    """Each claim's row, and the verdict on the trend: per seed, the last claim's paired gap minus
    the first's. Returns (rows, verdict, reason, figures); an incomplete row's verdict and reason
    when one is incomplete."""
    rows = [evaluate_row(store, cells, c, domain, seeds, reps=reps, seed=seed) for c in claims]
    bad = next((r for r in rows if r.verdict in INCOMPLETE), None)
    if bad is not None:
        return rows, bad.verdict, bad.reason, {}
    first = _paired_gaps(store, cells, claims[0], domain, seeds)
    last = _paired_gaps(store, cells, claims[-1], domain, seeds)
    verdict, fig = verdict_of([last[s] - first[s] for s in seeds], reps=reps, seed=seed)
    return rows, verdict, "", fig


def evaluate_sweep(store: Any, cells: dict, sweep: Sweep, domain: str, seeds: Sequence[int], *, reps: int = 2000,
                   seed: int = 0) -> SweepRow:
    """Each level's row, and the verdict on the trend: per seed, the gap at the strongest level
    minus the gap at the weakest (> 0: the gap grows, as the paper predicts)."""
    claims = [sweep.claim_at(lv) for lv in sweep.levels]
    rows, verdict, reason, fig = trend_of(store, cells, claims, domain, seeds, reps=reps, seed=seed)
    return SweepRow(sweep, domain, rows, verdict, reason, fig.get("diff"), fig.get("t_interval"),
                    fig.get("boot_interval"))


@dataclass
class RankRow:
    """Do the evaluation's synthetic raters rank a domain's entries as the gold oracle does?"""

    domain: str
    entries: list[str]
    verdict: str
    tau: float | None = None
    interval: tuple[float, float] | None = None
    reason: str = ""


RATERS_PAPER = "Monti et al. 2019 (synthetic raters by clustering)"
RATERS_CLAIM = ("raters drawn from clusters of a base population rank the algorithms as the gold does: Kendall τ "
                "between the entries' mean win rate (gold) and mean raters/win_rate > 0")


def rank_agreement(records: Sequence[Any], domain: str, seeds: Sequence[int], *, reps: int = 2000,
                   seed: int = 0) -> RankRow:
    """Kendall τ between the entries' means of ``win_rate`` and ``raters/win_rate`` over ``seeds``
    (default condition; an entry is an algorithm with one config, with a done cell at every seed),
    with a percentile bootstrap over seeds (resampled jointly for all entries)."""
    from scipy.stats import kendalltau

    from benchmark.cache import hash_obj

    table: dict[str, dict[int, tuple[float, float]]] = {}
    for r in records:
        if (r.domain == domain and r.condition == "default" and r.status == "done" and r.seed in seeds
                and "raters/win_rate" in r.metrics):
            key = f"{r.algo}:{hash_obj(r.config.get('algo_config', {}), 6)}"
            table.setdefault(key, {})[r.seed] = (r.metrics["win_rate"], r.metrics["raters/win_rate"])
    entries = sorted(k for k, v in table.items() if set(seeds) <= set(v))
    if len(entries) < 3:
        return RankRow(domain, entries, "not run", reason=f"{len(entries)} entries with raters/win_rate at every "
                       "seed; need 3")
    x = np.array([[table[e][s] for s in seeds] for e in entries])  # [E, S, 2]

    def tau(idx: np.ndarray) -> float:
        m = x[:, idx].mean(axis=1)
        t = kendalltau(m[:, 0], m[:, 1]).statistic
        return float(t) if np.isfinite(t) else 0.0

    point = tau(np.arange(len(seeds)))
    rng = np.random.default_rng(seed)
    boots = [tau(rng.integers(0, len(seeds), len(seeds))) for _ in range(reps)]
    lo, hi = float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    verdict = "reproduced" if lo > 0 else "refuted" if hi < 0 else "cannot tell"
    algos = [e.split(":")[0] for e in entries]
    labels = [a if algos.count(a) == 1 else e for a, e in zip(algos, entries)]  # several configs: name:hash
    return RankRow(domain, labels, verdict, point, (lo, hi))


def raters_plot(rows: Sequence[RankRow], path: Any) -> bool:
    """Kendall τ per domain with its bootstrap interval; False when no domain has one."""
    rows = [r for r in rows if r.tau is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = np.arange(len(rows))
    taus = [r.tau for r in rows]
    err = np.array([[r.tau - r.interval[0], r.interval[1] - r.tau] for r in rows]).T  # type: ignore[index]
    ax.bar(xs, taus, color="#4c72b0")
    ax.errorbar(xs, taus, yerr=err, fmt="none", color="black", capsize=4)
    ax.set_xticks(xs, [f"{r.domain}\n({len(r.entries)} entries)" for r in rows])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Kendall τ: gold vs synthetic raters")
    save_figure(fig, path)
    return True


def raters_markdown(rows: Sequence[RankRow]) -> str:
    lines = ["", f"### {RATERS_PAPER}: {RATERS_CLAIM}", "",
             "| domain | entries | Kendall τ | bootstrap 95% over seeds | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.domain} | {', '.join(r.entries)} | {_num(r.tau)} | {_interval(r.interval)} | "
                     f"{r.verdict}{f' ({r.reason})' if r.reason else ''} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------


def save_figure(fig: Any, path: Any) -> None:
    """``path`` (PNG) and the same name as SVG, reproducibly (the leaderboard's plot writer)."""
    from pathlib import Path

    from leaderboard.plots import _save

    _save(fig, Path(path).parent, Path(path).stem)


def experiment_plots(board: Any, out: Any) -> list[tuple[str, str]]:
    """The report's experiments as the leaderboard page's plots, from the board's cells over its
    seeds: (name, caption) of those whose every cell the board holds (a domain's sweep, a grid's
    column)."""
    from leaderboard.gap import evaluate_grids, grid_plot

    seeds = sorted({r.seed for r in board.records})
    store, made = _Lookup(board.records), []
    sweeps = [r for r in evaluate_sweeps(store, board.preset, seeds) if r.verdict not in INCOMPLETE]
    if sweep_plot(sweeps, out / "coverage_sweep.png"):
        made.append(("coverage_sweep", f"{SWEEPS[0].paper}: {SWEEPS[0].claim} (mean and 95% t-interval over seeds)"))
    grids = [r for r in evaluate_grids(store, board.preset, seeds) if r.verdict not in INCOMPLETE]
    if grid_plot(grids, out / "generation_verification.png"):
        made.append(("generation_verification", f"{grids[0].grid.paper}: {grids[0].grid.claim} (mean and 95% "
                     "t-interval over seeds)"))
    ranks = [rank_agreement(board.records, d, seeds) for d in board.domains]
    if raters_plot(ranks, out / "raters_tau.png"):
        made.append(("raters_tau", f"{RATERS_PAPER}: {RATERS_CLAIM} (bootstrap 95% over seeds)"))
    return made


def _num(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _interval(iv: tuple[float, float] | None) -> str:
    return "" if iv is None else f"[{iv[0]:+.3g}, {iv[1]:+.3g}]"


def to_markdown(rows: Sequence[Row], *, store: str, preset: str, seeds: Sequence[int]) -> str:
    """The report: preset and seeds at the top, one row per claim × domain, a verdict count."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    lines = [
        "# The seed papers' claims", "",
        f"- preset: **{preset}**; seeds: {', '.join(map(str, seeds))} (paired by training seed)",
        f"- store: {store}",
        "- difference: method − baseline per seed, signed so that > 0 is the paper's prediction; mean, 95% "
        "Student-t interval and 95% percentile bootstrap over seeds",
        "- verdict: reproduced / refuted when both intervals lie on one side of 0; cannot tell otherwise; "
        "n/a with the stored reason; not run when a cell is missing (`bench grid --claims`)",
        "- verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), "",
        "| paper | claim | domain | method vs baseline | metric | method | baseline | difference | t 95% | "
        "bootstrap 95% | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.claim
        verdict = f"**{r.verdict}**" if r.verdict in ("reproduced", "refuted") else r.verdict
        if r.reason:
            verdict += f" ({r.reason})"
        lines.append(f"| {c.paper} | {c.claim} | {r.domain} | {c.label} | {c.metric} | {_num(r.method_mean)} | "
                     f"{_num(r.baseline_mean)} | {_num(r.diff)} | {_interval(r.t_interval)} | "
                     f"{_interval(r.boot_interval)} | {verdict} |")
    return "\n".join(lines) + "\n"


def sweeps_markdown(rows: Sequence[SweepRow], image: str | None = None) -> str:
    """The experiments' section: the gap at each level, and the verdict on its trend."""
    lines = ["", "## Experiments", ""]
    for sweep in dict.fromkeys(r.sweep for r in rows):
        lines += [f"### {sweep.paper}: {sweep.claim}", "",
                  f"Gap = {sweep.method} − {sweep.baseline} ({sweep.metric}) per seed under `{sweep.condition}@level`; "
                  "trend = gap at the strongest level − gap at the weakest, per seed.", "",
                  "| domain | " + " | ".join(f"gap @{lv}" for lv in sweep.levels)
                  + " | trend | t 95% | bootstrap 95% | verdict |", "|---|" + "---|" * (len(sweep.levels) + 4)]
        for r in (r for r in rows if r.sweep == sweep):
            gaps = " | ".join(_num(x.diff) + (f" {_interval(x.t_interval)}" if x.t_interval else "") for x in r.levels)
            verdict = r.verdict + (f" ({r.reason})" if r.reason else "")
            lines.append(f"| {r.domain} | {gaps} | {_num(r.trend)} | {_interval(r.t_interval)} | "
                         f"{_interval(r.boot_interval)} | {verdict} |")
        lines.append("")
    if image:
        lines += [f"![{rows[0].sweep.claim if rows else ''}]({image})", ""]
    return "\n".join(lines)


def gap_axes() -> tuple[Any, Any]:
    """A figure for paired gaps, with the zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.axhline(0, color="grey", lw=0.8)
    return fig, ax


def plot_gaps(ax: Any, xs: Sequence[float], rows: Sequence[Row], label: str) -> None:
    """One line of paired gaps (each row's mean difference) with their 95% t half-widths."""
    ys = [np.nan if x.diff is None else x.diff for x in rows]
    err = [0.0 if x.t_interval is None else (x.t_interval[1] - x.t_interval[0]) / 2 for x in rows]
    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)


def sweep_plot(rows: Sequence[SweepRow], path: Any) -> bool:
    """Gap vs level per domain (mean and 95% t-interval over seeds); False when nothing to plot."""
    rows = [r for r in rows if any(x.diff is not None for x in r.levels)]
    if not rows:
        return False
    fig, ax = gap_axes()
    for r in rows:
        plot_gaps(ax, [float(lv) for lv in r.sweep.levels], r.levels, f"{r.domain} ({r.verdict})")
    sweep = rows[0].sweep
    ax.set_xlabel(f"{sweep.condition} strength")
    ax.set_ylabel(f"{sweep.method} − {sweep.baseline}: {sweep.metric}")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


class _Lookup:
    """A store-like ``get`` over records already loaded (a leaderboard's board)."""

    def __init__(self, records: Sequence[Any]):
        self._by_id = {r.run_id: r for r in records}

    def get(self, run_id: str) -> Any:
        return self._by_id.get(run_id)


def claims_table(board: Any) -> Any:
    """The claims section of the leaderboard (every output format): the rows whose cells the board
    holds, over the board's seeds; None when no claim can be evaluated."""
    from leaderboard.tables import Cell, Table

    seeds = sorted({r.seed for r in board.records})
    rows = [r for r in evaluate(_Lookup(board.records), board.preset, seeds) if r.verdict != "not run"]
    if not rows:
        return None
    columns = ["paper", "claim", "domain", "method vs baseline", "metric", "difference", "t 95%", "bootstrap 95%",
               "verdict"]
    body, long = [], []
    for r in rows:
        c = r.claim
        body.append([Cell(c.paper), Cell(c.claim), Cell(r.domain), Cell(c.label), Cell(c.metric),
                     Cell(_num(r.diff), r.diff), Cell(_interval(r.t_interval)), Cell(_interval(r.boot_interval)),
                     Cell(r.verdict, title=r.reason)])
        long.append({"table": "claims", "paper": c.paper, "claim": c.claim, "domain": r.domain,
                     "comparison": c.label, "metric": c.metric, "diff": r.diff, "verdict": r.verdict})
    caption = (f"Each seed paper's claim on the cells of this board (preset {board.preset}, seeds "
               f"{', '.join(map(str, seeds))}): the paired difference method − baseline, signed so that > 0 is the "
               "paper's prediction, with 95% Student-t and bootstrap intervals over seeds; reproduced or refuted "
               "only when both exclude 0. `bench report claims` gives the full report.")
    return Table("claims", "seed papers' claims", caption, columns, body, kind="claims", long=long)


def report(store: Any, preset: str, seeds: Sequence[int], *, reps: int = 2000, img: Any = None,
           domains: Sequence[str] | None = None) -> str:
    """The whole report as Markdown: the claims, the coverage sweep, the generation–verification
    grid and the raters' rank agreement; with ``img`` (a directory) their plots are drawn there and
    linked as ``img/<name>.png``; with ``domains``, only their rows (e.g. the domains run with more seeds)."""
    from leaderboard.gap import GAP_GRIDS, evaluate_grids, grid_plot, grids_markdown

    def kept(domain: str) -> bool:
        return domains is None or domain in domains

    claims = [replace(c, domains=tuple(d for d in c.domains if kept(d))) for c in CLAIMS]
    text = to_markdown(evaluate(store, preset, seeds, [c for c in claims if c.domains], reps=reps),
                       store=str(store.path), preset=preset, seeds=seeds)
    sweeps = evaluate_sweeps(store, preset, seeds, [replace(w, domains=tuple(d for d in w.domains if kept(d)))
                                                   for w in SWEEPS], reps=reps)
    grids = evaluate_grids(store, preset, seeds, [g for g in GAP_GRIDS if kept(g.domain)], reps=reps)
    records = store.records(preset=preset)
    ranks = [rank_agreement(records, d, seeds, reps=reps) for d in sorted({r.domain for r in records}) if kept(d)]
    swept = gridded = ranked = False
    if img is not None:
        img.mkdir(parents=True, exist_ok=True)
        swept = sweep_plot(sweeps, img / "coverage_sweep.png")
        gridded = grid_plot(grids, img / "generation_verification.png")
        ranked = raters_plot(ranks, img / "raters_tau.png")
    return (text + sweeps_markdown(sweeps, "img/coverage_sweep.png" if swept else None)
            + grids_markdown(grids, "img/generation_verification.png" if gridded else None) + raters_markdown(ranks)
            + ("\n![Kendall τ per domain](img/raters_tau.png)\n" if ranked else ""))


__all__ = [
    "CLAIMS",
    "SWEEPS",
    "Claim",
    "RankRow",
    "Row",
    "Sweep",
    "SweepRow",
    "all_claims",
    "bootstrap_interval",
    "claim_cells",
    "claims_table",
    "evaluate",
    "evaluate_sweeps",
    "experiment_plots",
    "rank_agreement",
    "raters_markdown",
    "report",
    "sweep_plot",
    "sweeps_markdown",
    "to_markdown",
    "verdict_of",
]

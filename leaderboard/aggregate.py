"""From stored cells to leaderboard numbers: per-task statistics over seeds and rliable aggregates.

Everything here is a pure function of the store: records are sorted, every bootstrap is seeded,
nothing reads a clock. Vocabulary:

- an **entry** (a leaderboard row) is an algorithm with one configuration (algorithm config and
  the ``--budget`` overrides of the preset's budget, which itself differs per domain); if the
  store holds several configurations of one algorithm, each is its own entry, labelled by the
  keys in which they differ (``dpo (beta=0.05)``);
- a **task** is a (domain, condition) pair (with one domain configuration);
- a **run** is one training seed. Every interval on the board is over seeds — independent training
  runs — never over evaluation samples (a cell's metric is already a mean over its samples).

Per-task statistics: mean ± 95% Student-t interval over seeds (n ≥ 2). Cross-domain aggregates
(Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice", via ``rliable``): IQM,
mean and optimality gap (γ = 100) of ``normalized_score``, and probability of improvement, with
stratified-bootstrap percentile intervals; for each condition, tasks = domains, runs = seeds.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cache import hash_obj
from benchmark.errors import UserError
from benchmark.metrics import HEADLINE, SCORE_VERSION, SECONDARY_PREFIXES, is_accounting
from benchmark.presets import PRESETS
from benchmark.store import Record, Store

SCORE = "normalized_score"
GAMMA = 100.0
"""Optimality-gap threshold on the normalised scale: 100 is the domain's target (best-of-N reference)."""

# Metric metadata (direction, headline, accounting) lives in one table: benchmark/metrics.py.
# Only headline metrics with a direction get a "best" mark; KL, diversity and feedback are trade-offs,
# and a domain's own metrics carry no declared direction.

DEFAULT_REPS = 2000
DEFAULT_SEED = 0


# ---------------------------------------------------------------------------------------------
# statistics over seeds
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean of a metric over seeds with a 95% Student-t interval (None below two seeds)."""

    mean: float
    n: int
    std: float | None = None
    lo: float | None = None
    hi: float | None = None

    @property
    def half(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2

    def as_row(self) -> dict[str, float | None]:
        """mean, std (0 below two values), the interval's lo and hi, n: a report's JSON row."""
        return {"mean": self.mean, "std": self.std or 0.0, "lo": self.lo, "hi": self.hi, "n": self.n}


def mean_ci(values: list[float], level: float = 0.95) -> Stat | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    n = len(vals)
    mean = float(np.mean(vals))
    if n < 2:
        return Stat(mean, n)
    from scipy import stats

    std = float(np.std(vals, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Stat(mean, n, std, mean - half, mean + half)


def preparation_of(env: dict[str, Any]) -> str | None:
    """How a cell's preparation was built, e.g. ``cuda, 2 threads``; None for a record from before
    this was kept. Two cells of one domain built differently have different references. A record
    without ``preparation_device`` predates GPU preparation, so its preparation ran on the CPU."""
    threads = env.get("preparation_threads")
    if threads is None:
        return None
    return f"{env.get('preparation_device', 'cpu')}, {threads} thread{'' if threads == 1 else 's'}"


def best_index(stats: list[Stat | None], higher: bool) -> int | None:
    """The row to mark best in a column: the best mean, only if its 95% interval is disjoint from
    every other row's (ties within the intervals are not marked; a row without an interval, i.e.
    with fewer than two seeds, makes the column unmarkable)."""
    rows = [(i, s) for i, s in enumerate(stats) if s is not None]
    if len(rows) < 2 or any(s.lo is None for _, s in rows):
        return None
    sign = 1.0 if higher else -1.0
    i, b = max(rows, key=lambda r: (sign * r[1].mean, -r[0]))
    for j, s in rows:
        if j == i:
            continue
        if higher and not b.lo > s.hi:  # type: ignore[operator]
            return None
        if not higher and not b.hi < s.lo:  # type: ignore[operator]
            return None
    return i


# ---------------------------------------------------------------------------------------------
# the board: entries × tasks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    key: str
    algo: str
    label: str


@dataclass(frozen=True)
class Task:
    key: str
    domain: str
    condition: str
    label: str


@dataclass
class Group:
    """The cells of one entry on one task."""

    records: list[Record] = field(default_factory=list)

    @property
    def done(self) -> list[Record]:
        return [r for r in self.records if r.status == "done"]

    def by_status(self) -> Counter:
        return Counter(r.status for r in self.records)

    def stat(self, metric: str) -> Stat | None:
        return mean_ci([r.metrics.get(metric) for r in self.done])

    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.done)

    def note(self) -> str:
        """What is not done here, with reasons ("" when every cell is done)."""
        parts = []
        for status in ("na", "failed", "running"):
            recs = [r for r in self.records if r.status == status]
            if not recs:
                continue
            reasons = sorted({r.reason or "" for r in recs})
            word = {"na": "n/a", "failed": "failed", "running": "running"}[status]
            why = "; ".join(x for x in reasons if x)
            count = f"{len(recs)} " if status != "na" else ""
            parts.append(f"{count}{word}" + (f": {why}" if why else ""))
        return "; ".join(parts)

    def missing_reason(self) -> str:
        if not self.records:
            return "no cells"
        return self.note() or "no cells"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k in sorted(d):
            out.update(_flatten(d[k], f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _variant_labels(name: str, configs: dict[str, dict]) -> dict[str, str]:
    """``name`` when there is one configuration, else ``name (k=v, ...)`` with the keys that differ
    (``k=default`` where a configuration does not set ``k``, e.g. no ``--budget`` override)."""
    if len(configs) == 1:
        return {k: name for k in configs}
    flat = {k: _flatten(c) for k, c in configs.items()}
    keys = sorted(set().union(*flat.values()))
    differ = [k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1]
    out = {}
    for k, f in flat.items():
        shown = ", ".join(f"{d.split('.', 1)[-1]}={f.get(d, 'default')}" for d in differ[:4])
        out[k] = f"{name} ({shown})" if shown else f"{name} [{k[-6:]}]"
    return out


@dataclass
class Board:
    """The cells of one preset in a store, arranged as entries × tasks."""

    store: str
    preset: str
    records: list[Record]
    entries: list[Entry]
    tasks: list[Task]
    groups: dict[tuple[str, str], Group]
    stale: int = 0
    """Done cells left out because they were scored under another definition (``score_version``)."""

    def group(self, entry: Entry, task: Task) -> Group:
        return self.groups.get((entry.key, task.key), Group())

    @property
    def domains(self) -> list[str]:
        return sorted({t.domain for t in self.tasks})

    @property
    def conditions(self) -> list[str]:
        order = {"default": 0}
        return sorted({t.condition for t in self.tasks}, key=lambda c: (order.get(c, 1), c))

    def tasks_of(self, *, domain: str | None = None, condition: str | None = None) -> list[Task]:
        return [t for t in self.tasks if (domain is None or t.domain == domain)
                and (condition is None or t.condition == condition)]

    def entries_of(self, tasks: list[Task]) -> list[Entry]:
        keys = {k for k, t in self.groups if t in {x.key for x in tasks}}
        return [e for e in self.entries if e.key in keys]

    def status_counts(self) -> Counter:
        return Counter(r.status for r in self.records)

    def code_versions(self) -> list[tuple[str, int]]:
        return sorted(Counter(r.code_version for r in self.records).items())

    def mixed_preparations(self) -> dict[str, list[tuple[str, int]]]:
        """Domains whose done cells come from preparations built differently (another reference
        each: docs/design.md, threads and determinism): domain → [(how it was built, cells)]."""
        counts: dict[str, Counter] = {}
        for r in self.records:
            if r.status == "done" and (built := preparation_of(r.env)) is not None:
                counts.setdefault(r.domain, Counter())[built] += 1
        return {d: sorted(c.items()) for d, c in sorted(counts.items()) if len(c) > 1}

    def provenance(self) -> list[tuple[str, str]]:
        counts = self.status_counts()
        cells = f"{len(self.records)} (" + ", ".join(
            f"{counts[s]} {'n/a' if s == 'na' else s}" for s in ("done", "na", "failed", "running") if counts[s]) + ")"
        return [
            ("store", self.store),
            ("preset", self.preset),
            ("cells", cells),
            ("code versions", ", ".join(f"{v} ({n} cells)" for v, n in self.code_versions())),
            ("intervals", "over training seeds (independent runs), not evaluation samples"),
            *([("not one reference", "; ".join(
                f"{d}: preparations built on " + ", ".join(f"{b} ({k} cells)" for b, k in counts)
                for d, counts in mixed.items()) + "; compare cells of one preparation")]
              if (mixed := self.mixed_preparations()) else []),
            *([("left out", f"{self.stale} done cells scored under an older definition (score_version ≠ "
                f"{SCORE_VERSION}); rerun them with --force")] if self.stale else []),
        ]


def load_board(store_path: Path | str | None = None, *, preset: str | None = None,
               domains: list[str] | None = None, conditions: list[str] | None = None) -> Board:
    """Read a store (read-only) into a board for one preset."""
    st = Store(store_path, readonly=True)
    try:
        records = st.records()
    finally:
        st.close()
    if domains:
        records = [r for r in records if r.domain in domains]
    if conditions:
        records = [r for r in records if r.condition in conditions]
    presets = sorted({r.preset for r in records}, key=lambda p: list(PRESETS).index(p) if p in PRESETS else 99)
    if not records:
        raise UserError(f"no cells in {st.path}" + (" for the chosen domains/conditions" if domains or conditions
                                                    else "") + ": run `bench grid ...` first")
    if preset is None:
        if len(presets) > 1:
            raise UserError(f"the store holds cells of presets {', '.join(presets)}: choose one with --preset "
                            "(scores of different presets are not comparable)")
        preset = presets[0]
    if preset not in presets:
        raise UserError(f"--preset {preset}: the store has no cells of that preset (it has {', '.join(presets)})")
    records = [r for r in records if r.preset == preset]
    fresh = [r for r in records if r.status != "done" or r.metrics.get("score_version") == SCORE_VERSION]
    stale = len(records) - len(fresh)
    records = fresh
    if not records:
        raise UserError(f"all {stale} cells of preset {preset} were scored under an older definition: rerun them "
                        "with `bench grid ... --force`")

    def entry_cfg(r: Record) -> dict:
        # the budget overrides, not the budget: presets give every domain its own budget, and an
        # algorithm run with each domain's preset budget is one entry across domains
        budget = r.config["budget_overrides"] if "budget_overrides" in r.config else r.config.get("budget", {})
        cfg = {"algo": r.config.get("algo_config", {}), "budget": budget}
        if r.config.get("algo_source"):  # a submitted method: each version of its file is its own entry
            cfg["source"] = r.config["algo_source"]
        return cfg

    def task_cfg(r: Record) -> dict:
        return {"domain": r.config.get("domain_config", {})}

    ecfgs: dict[str, dict[str, dict]] = {}
    tcfgs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in records:
        ecfgs.setdefault(r.algo, {})[f"{r.algo}:{hash_obj(entry_cfg(r), 12)}"] = entry_cfg(r)
        tcfgs.setdefault((r.domain, r.condition), {})[f"{r.domain}/{r.condition}:{hash_obj(task_cfg(r), 12)}"] = (
            task_cfg(r))
    entries = []
    for algo in sorted(ecfgs):
        labels = _variant_labels(algo, ecfgs[algo])
        for k, cfg in ecfgs[algo].items():
            if "source" in cfg:
                labels[k] = f"{labels[k]} [submitted, sha256 {cfg['source'][:12]}]"
        entries += [Entry(k, algo, labels[k]) for k in sorted(ecfgs[algo], key=lambda k: (labels[k], k))]
    cond_order = {"default": 0}
    tasks = []
    for (domain, cond) in sorted(tcfgs, key=lambda dc: (dc[0], cond_order.get(dc[1], 1), dc[1])):
        labels = _variant_labels(domain, tcfgs[(domain, cond)])
        tasks += [Task(k, domain, cond, labels[k]) for k in sorted(tcfgs[(domain, cond)])]
    groups: dict[tuple[str, str], Group] = {}
    for r in records:
        ek = f"{r.algo}:{hash_obj(entry_cfg(r), 12)}"
        tk = f"{r.domain}/{r.condition}:{hash_obj(task_cfg(r), 12)}"
        groups.setdefault((ek, tk), Group()).records.append(r)
    for g in groups.values():
        g.records.sort(key=lambda r: (r.seed, r.run_id))
    return Board(str(Path(st.path).resolve()), preset, records, entries, tasks, groups, stale)


def domain_metrics(board: Board, domain: str) -> list[str]:
    """The domain's own metrics (everything stored beyond the headline and accounting ones)."""
    keys: set[str] = set()
    for r in board.records:
        if r.domain == domain and r.status == "done":
            keys |= {k for k in r.metrics if not k.startswith(SECONDARY_PREFIXES) and not k.endswith("_ci")
                     and not is_accounting(k)}
    return sorted(keys - set(HEADLINE) - {"kl_k3_to_ref", "gold_gain"})


# ---------------------------------------------------------------------------------------------
# cross-domain aggregates (rliable)
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[np.random.RandomState]:
    """A fixed random state for rliable. rliable 1.2's stratified bootstrap draws its indices from
    NumPy's *global* generator (``np.random.choice``) whatever ``random_state`` says, so we seed the
    global generator too, and restore it afterwards."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch: random_state is deprecated
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(saved)


@dataclass
class Interval:
    estimate: float
    lo: float | None
    hi: float | None


@dataclass
class Aggregate:
    """Cross-domain aggregates of one condition (tasks = domains, runs = seeds)."""

    condition: str
    tasks: list[Task]
    scope: str
    """"all" (every task of the condition) or "common" (only tasks where every entry has cells)."""
    entries: list[Entry]
    """Entries with cells on every task of ``tasks`` (in board order)."""
    missing: dict[str, str]
    """Entry label → why it is not aggregated (the tasks where it has no done cell, with reasons)."""
    runs: dict[str, int]
    """Entry label → runs (seeds) per task used: the smallest count over tasks."""
    notes: dict[str, str]
    matrices: dict[str, np.ndarray]
    """Entry label → [runs × tasks] normalised scores."""
    stats: dict[str, dict[str, Interval]]
    """Entry label → {"IQM", "mean", "optimality gap"} → interval."""
    baseline: str | None = None
    improvement: dict[str, Interval] = field(default_factory=dict)
    """Entry label → P(entry > baseline) with its interval."""
    pairwise: dict[tuple[str, str], float] = field(default_factory=dict)
    """(X, Y) → P(X > Y), point estimates between all aggregated entries."""
    reps: int = DEFAULT_REPS
    seed: int = DEFAULT_SEED


STATISTICS = ("IQM", "mean", "optimality gap")


def _aggregate_func(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores),
                     metrics.aggregate_optimality_gap(scores, GAMMA)])


def score_matrix(board: Board, entry: Entry, tasks: list[Task], runs: int) -> np.ndarray:
    cols = []
    for t in tasks:
        done = board.group(entry, t).done[:runs]  # sorted by seed
        cols.append([r.metrics[SCORE] for r in done])
    return np.asarray(cols, dtype=np.float64).T


def aggregate(board: Board, condition: str, *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED,
              baseline: str | None = None, common_only: bool = False) -> Aggregate | None:
    """rliable aggregates of ``normalized_score`` over the domains of one condition.

    An entry lacking done cells on some task is not averaged over fewer tasks: it is listed in
    ``missing`` with the reasons. With ``common_only`` the tasks are restricted to those where every
    entry of the condition has done cells (None if there are none)."""
    from rliable import library, metrics

    tasks = board.tasks_of(condition=condition)
    entries = board.entries_of(tasks)
    if common_only:
        tasks = [t for t in tasks if all(board.group(e, t).done for e in entries)]
        if not tasks:
            return None
    missing, ok = {}, []
    for e in entries:
        lacking = [t for t in tasks if not board.group(e, t).done]
        if lacking:
            missing[e.label] = "; ".join(f"{t.label}: {board.group(e, t).missing_reason()}" for t in lacking)
        else:
            ok.append(e)
    runs, notes, mats = {}, {}, {}
    for e in ok:
        counts = [len(board.group(e, t).done) for t in tasks]
        runs[e.label] = min(counts)
        if max(counts) > min(counts):
            notes[e.label] = (f"{min(counts)} seeds per domain used (the first by seed; some domains have up to "
                              f"{max(counts)})")
        mats[e.label] = score_matrix(board, e, tasks, runs[e.label])
    stats: dict[str, dict[str, Interval]] = {}
    for e in ok:
        m = mats[e.label]
        if runs[e.label] < 2:
            point = _aggregate_func(m)
            stats[e.label] = {s: Interval(float(v), None, None) for s, v in zip(STATISTICS, point)}
            notes[e.label] = (notes.get(e.label, "") + "; " if e.label in notes else "") + \
                "one seed: no interval"
            continue
        with seeded(seed) as rs:
            point, ci = library.get_interval_estimates({e.label: m}, _aggregate_func, reps=reps, random_state=rs)
        stats[e.label] = {s: Interval(float(point[e.label][i]), float(ci[e.label][0, i]), float(ci[e.label][1, i]))
                          for i, s in enumerate(STATISTICS)}
    agg = Aggregate(condition, tasks, "common" if common_only else "all", ok, missing, runs, notes, mats, stats,
                    reps=reps, seed=seed)
    labels = [e.label for e in ok]
    for x in labels:
        for y in labels:
            if x != y:
                agg.pairwise[(x, y)] = float(metrics.probability_of_improvement(mats[x], mats[y]))
    by_algo = {e.algo: e.label for e in ok}
    if baseline is not None:
        if baseline in labels:
            agg.baseline = baseline
        elif baseline in by_algo:
            agg.baseline = by_algo[baseline]
    elif labels:
        agg.baseline = by_algo.get("dpo", labels[0])
    if agg.baseline is not None:
        y = agg.baseline
        for x in labels:
            if x == y:
                continue
            if runs[x] < 2 or runs[y] < 2:
                agg.improvement[x] = Interval(agg.pairwise[(x, y)], None, None)
                continue
            with seeded(seed) as rs:
                point, ci = library.get_interval_estimates({x: [mats[x], mats[y]]}, metrics.probability_of_improvement,
                                                           reps=reps, random_state=rs)
            lo_hi = np.ravel(ci[x])
            agg.improvement[x] = Interval(float(np.ravel(point[x])[0]), float(lo_hi[0]), float(lo_hi[1]))
    return agg


def aggregates(board: Board, *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED,
               baseline: str | None = None) -> list[Aggregate]:
    """Per condition: the aggregate over all its domains, and, when some entry is missing somewhere,
    a second one over the domains where every entry has cells (if that is a smaller, non-empty set)."""
    if baseline is not None and not any(baseline in (e.algo, e.label) for e in board.entries):
        raise UserError(f"--baseline {baseline}: no such entry on the board (entries: "
                        f"{', '.join(e.label for e in board.entries)})")
    out = []
    for cond in board.conditions:
        full = aggregate(board, cond, reps=reps, seed=seed, baseline=baseline)
        if full is None:
            continue
        out.append(full)
        if full.missing:
            common = aggregate(board, cond, reps=reps, seed=seed, baseline=baseline, common_only=True)
            if common is not None and len(common.tasks) < len(full.tasks):
                out.append(common)
    return out


def performance_profile(agg: Aggregate, taus: np.ndarray, *, reps: int, seed: int
                        ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """rliable score distributions: fraction of runs with normalised score > τ, with a 95%
    stratified-bootstrap band (None with one run per task)."""
    from rliable import library

    out = {}
    for label in sorted(agg.matrices):
        m = agg.matrices[label]
        if agg.runs[label] < 2:
            out[label] = (np.array([np.mean(m > t) for t in taus]), None)
            continue
        with seeded(seed):
            prof, ci = library.create_performance_profile({label: m}, taus, reps=reps)
        out[label] = (prof[label], ci[label])
    return out

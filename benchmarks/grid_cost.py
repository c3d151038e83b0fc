"""What the whole board costs: the wall time of the full grid, estimated from measured cells (issue #19).

    python benchmarks/grid_cost.py --store ~/.prefbench/prefbench.sqlite [--store B.sqlite ...]
    python benchmarks/grid_cost.py --store A.sqlite --preset standard --conditions default
    python benchmarks/grid_cost.py --costs results/grid_cost_quick.json --store B.sqlite --preset standard \
        --measured-store STANDARD.sqlite [--measured-store ...] [--preparation motion=3984]
    python benchmarks/grid_cost.py --costs results/grid_cost_quick.json --preset standard \
        --measured-costs results/grid_cost_standard.json --measured-store NEW_IMAGE_STANDARD.sqlite

Nothing is run: every figure comes from cells already stored. The grid is every registered
algorithm × domain × condition (``--conditions``, default all registered) × ``--seeds`` seed, as
``bench grid --algos all --domains all --conditions all`` would run it. Method:

- **Measured cells**: ``done`` cells of the *quick* preset whose budget is the preset's own (no
  ``--budget`` override), from every ``--store`` (the same record found in two stores counts once).
  Algorithm and domain config overrides (a β, a learning rate) are accepted: they change little of
  the cost. A cell's cost without preparation is ``total_s − prepare_s`` (instance, training,
  evaluation, artifacts), split into training (``train_s``) and the rest; ``train_s + eval_s``
  when a record has no ``total_s``. Cost per (algorithm, domain) = the medians over its cells.
- **Threads**: records say how many torch threads they ran with (``env.torch_threads``, reported
  per pair); no scaling is applied: a cell measured with 2 threads counts as if run with 1.
- **Preparation** per domain: the median ``prepare_s`` of cells with ``prepared_now == 1``; else
  ``first_run_s − cached_run_s`` of ``<results>/<domain>_quick.json`` (the per-domain reports);
  else the median of the other domains'. Loading a cached preparation: the largest ``prepare_s`` of
  a cell with ``prepared_now == 0`` (in-process reuse costs ~0), paid once per worker and domain.
- **Unmeasured pairs are imputed** (marked in the output): training = the same algorithm's
  training on the other domains where it was measured × the domain pair's training-cost ratio
  (the median over algorithms measured on both, of the ratio of their training times; methods
  training under 0.5 s are left out of the ratio), median over those domains; the rest of the
  cell (mostly evaluation, which is the domain's) = the domain's median. An algorithm never
  measured gets the domain's medians; a domain never measured, the algorithm's or all medians.
- **n/a cells** cost one preparation lookup. Known n/a: stored ``na`` records of the algorithm's
  default config (any preset): a pool-part mismatch holds for every algorithm of that (domain,
  condition), a missing domain capability for every condition of that (algorithm, domain).
  Requirements are *not* derived from the domains (that needs their preparation): every other cell
  counts as runnable, so totals are an **upper bound** where n/a cells are not yet stored.
- **Wall time on W slots** (``bench grid`` prepares each domain once first, one task each, then
  runs the cells, domain by domain): ``prep_phase + per_worker + max(Σ cells / W, longest cell)``
  with ``prep_phase`` the preparations scheduled longest-first on W slots, ``per_worker`` the
  cache loads of each domain (a shared cache: one machine, or ``--cache`` on a shared disk) or a
  whole preparation of each domain (a Ray cluster of one-worker nodes without a shared cache: each
  node builds its own, ``benchmark/ray_executor.py``; an upper bound, since the node that
  prepared a domain has it). Every cell also pays its executor's overhead per cell, measured by
  ``benchmarks/scale_out.py`` (``<results>/scale_out_quick.json``: (W × grid wall − Σ cell wall of
  the local run) / cells, i.e. start-up, scheduling and contention, at W = 2 on 2 cores); 0 when
  absent. ``bound`` adds the longest cell instead of taking the maximum (list scheduling's bound).
- **--preset standard is an extrapolation, not a measurement**: quick costs scaled per domain by
  the budgets' ``steps × batch_size`` ratio (training), the configs' ``eval_contexts ×
  eval_samples`` ratio (the rest of the cell) and, for the preparation, the largest ratio of the
  config's ``*_steps`` fields (its models' training). Larger models, longer horizons and more
  sampling steps of the standard configs are not modelled: the figures are low.
- **Calibration by cells measured at the preset** (``--measured-store``, ``--preparation``): a pair
  measured there costs its medians; every other pair is extrapolated as above, its training and its
  rest each multiplied by its domain's factor = the median over the domain's pairs measured at both
  presets of measured ÷ extrapolated (parts under MIN_TRAIN_S left out), or, for a domain with none,
  the median over all such pairs. Preparations likewise (a grid prepares each domain in its own task, so
  its cells do not record it: pass it with ``--preparation DOMAIN=SECONDS``, e.g. from the grid's
  log or its cache file's times). ``--measured-costs`` takes an earlier report at the preset instead
  of its stores: its pairs and preparations measured there count as if read again (a pair's median
  as its cells' value), except where ``--measured-store`` or ``--preparation`` measures them anew.

Writes ``<out>/grid_cost_<preset>.{json,md}`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.conditions import CONDITIONS
from benchmark.registry import ALGORITHMS, DOMAINS
from benchmark.store import Record, Store, default_store_path

MEASURED_PRESET = "quick"
MIN_TRAIN_S = 0.5
"""Training times below this (methods that do not train) are left out of domain ratios."""
HOUR = 3600.0


def _norm(x: Any) -> Any:
    """JSON-normalised (tuples become lists), to compare a stored config with the current one."""
    return json.loads(json.dumps(x, default=str))


def _same_on_common_keys(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in set(a) & set(b))


@cache
def preset_budget(domain: str, preset: str) -> dict | None:
    cls = DOMAINS.get(domain)
    return _norm(dataclasses.asdict(cls.budget(preset))) if preset in cls.budgets else None


# ---------------------------------------------------------------------------------------------
# reading the stores
# ---------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """What the stores hold: per (algorithm, domain) the cells' (train, rest, threads); per domain
    the preparations built in a cell and the cache loads; the known n/a keys; the stores read."""

    cells: dict[tuple[str, str], list[tuple[float, float, int]]] = field(default_factory=lambda: defaultdict(list))
    prep: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    load: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    na: set[tuple[str, str, str]] = field(default_factory=set)
    conditions_seen: set[tuple[str, str]] = field(default_factory=set)
    """(domain, condition) of every done or n/a record, any preset"""
    stores: list[dict] = field(default_factory=list)
    seen: set[tuple[str, float]] = field(default_factory=set)


def cell_parts(rec: Record) -> tuple[float, float] | None:
    """(training, the rest) seconds of a done cell, without its preparation."""
    t = rec.timings
    if "train_s" not in t:
        return None
    rest = t["total_s"] - t.get("prepare_s", 0.0) - t["train_s"] if "total_s" in t else t.get("eval_s", 0.0)
    return float(t["train_s"]), max(0.0, float(rest))


def na_key(rec: Record) -> tuple[str, str, str] | None:
    """The n/a rule an ``na`` record of the algorithm's default config stands for ("*": any)."""
    if rec.algo not in ALGORITHMS or rec.domain not in DOMAINS:
        return None
    default = _norm(dataclasses.asdict(ALGORITHMS.get(rec.algo).Config()))
    if not _same_on_common_keys(_norm(rec.config.get("algo_config", {})), default):
        return None
    reason = rec.reason or ""
    if "keeps pool part" in reason:
        return ("*", rec.domain, rec.condition)
    missing = [m for m in reason.partition(" lacks ")[2].split(", ") if m]
    if missing and all(m.startswith("capability:") or m == "online" for m in missing):
        return (rec.algo, rec.domain, "*")
    return (rec.algo, rec.domain, rec.condition)


def is_na(algo: str, domain: str, condition: str, rules: set[tuple[str, str, str]]) -> bool:
    return bool({(algo, domain, condition), ("*", domain, condition), (algo, domain, "*")} & rules)


def usable(rec: Record, preset: str = MEASURED_PRESET) -> bool:
    """A done cell of ``preset`` with the preset's own budget."""
    return (rec.status == "done" and rec.preset == preset and rec.domain in DOMAINS
            and rec.config.get("budget") == preset_budget(rec.domain, preset))


def read_store(path: Path, m: Measured, preset: str = MEASURED_PRESET) -> None:
    """Add one store's ``preset`` cells to ``m`` (a record already read from another store counts once)."""
    with Store(path, readonly=True) as st:
        records = st.records()
    used, threads = 0, set()
    for rec in records:
        key = na_key(rec) if rec.status == "na" else None
        if key:
            m.na.add(key)
        if rec.status in ("done", "na"):
            m.conditions_seen.add((rec.domain, rec.condition))
        parts = cell_parts(rec) if usable(rec, preset) else None
        if parts is None or (rec.run_id, rec.started_at) in m.seen:
            continue
        m.seen.add((rec.run_id, rec.started_at))
        used += 1
        n_threads = int(rec.env.get("torch_threads") or 1)
        threads.add(n_threads)
        m.cells[rec.algo, rec.domain].append((*parts, n_threads))
        prepare_s = float(rec.timings.get("prepare_s", 0.0))
        (m.prep if rec.timings.get("prepared_now") == 1.0 else m.load)[rec.domain].append(prepare_s)
    m.stores.append({"path": str(path), "records": len(records), f"{preset}_cells_used": used,
                     "torch_threads": sorted(threads)})


def from_report(path: Path) -> tuple[Measured, dict[tuple[str, str], Cost], dict[str, tuple[float, str]]]:
    """An earlier quick report's measured inputs (``--costs``): per-pair costs, preparations, cache
    loads and n/a rules, to extrapolate again (e.g. after the budgets change) without its stores."""
    rep = json.loads(path.read_text())
    if rep.get("preset") != MEASURED_PRESET:
        raise SystemExit(f"--costs {path}: pass a {MEASURED_PRESET} report (grid_cost_{MEASURED_PRESET}.json)")
    m = Measured(na={tuple(r.split("/")) for r in rep["inputs"]["known_na_rules"]})  # type: ignore[misc]
    for d in rep["domains"]:
        m.load[d["domain"]].append(d["cache_load_s"])
    guessed = {tuple(r.split("/")[1:]) for r in rep["if_unseen_pool_parts_na"]["rules"]}
    m.conditions_seen = {(d, c) for d in DOMAINS.names() for c in CONDITIONS if (d, c) not in guessed}
    m.stores = [{"path": f"{path}: {s['path']}", f"{MEASURED_PRESET}_cells_used": s[f"{MEASURED_PRESET}_cells_used"]}
                for s in rep["inputs"]["stores"]]
    costs = {(p["algo"], p["domain"]): Cost(p["train_s"], p["rest_s"], p["measured_cells"], p["source"],
                                            p["torch_threads"]) for p in rep["pairs"]}
    return m, costs, {d["domain"]: (d["preparation_s"], d["preparation_source"]) for d in rep["domains"]}


def add_report_at_preset(path: Path, target: Measured, preset: str) -> None:
    """``--measured-costs``: an earlier report's measurements at ``preset`` added to ``target`` where
    ``target`` (the stores and ``--preparation`` read before) has none for that pair or domain; each
    measured pair enters as its cells, every one at the pair's medians; a domain's cache load, its
    report's (the largest seen)."""
    rep = json.loads(path.read_text())
    if preset == MEASURED_PRESET or rep.get("preset") != preset:
        raise SystemExit(f"--measured-costs {path}: pass a report of --preset standard (grid_cost_standard.json), "
                         f"with --preset standard")
    for p in rep["pairs"]:
        at = p["at_preset"]
        if at["measured_here"] and (p["algo"], p["domain"]) not in target.cells:
            n_cells = int(at["source"].rsplit("(", 1)[1].split()[0])  # "measured at standard (N cells)"
            target.cells[p["algo"], p["domain"]] = [(at["train_s"], at["rest_s"], 1)] * n_cells
    for d in rep["domains"]:
        if d["preparation_source"].startswith(f"measured at {preset}") and not target.prep.get(d["domain"]):
            target.prep[d["domain"]].append(d["preparation_s"])
        if not target.load.get(d["domain"]):
            target.load[d["domain"]].append(d["cache_load_s"])
    target.na |= {tuple(r.split("/")) for r in rep["inputs"]["known_na_rules"]}  # type: ignore[misc]
    target.stores += [{"path": f"{path}: {s['path']}", f"{preset}_cells_used": s[f"{preset}_cells_used"]}
                      for s in rep["inputs"]["stores_at_preset"]]


# ---------------------------------------------------------------------------------------------
# costs per (algorithm, domain) and per domain
# ---------------------------------------------------------------------------------------------


@dataclass
class Cost:
    """One cell's cost without preparation: training and the rest (instance, evaluation, artifacts)."""

    train_s: float
    rest_s: float
    cells: int = 0
    """measured cells behind it (0: imputed)"""
    source: str = "measured"
    threads: list[int] = field(default_factory=list)

    @property
    def cell_s(self) -> float:
        return self.train_s + self.rest_s

    @property
    def imputed(self) -> bool:
        return self.cells == 0


def measured_costs(m: Measured) -> dict[tuple[str, str], Cost]:
    return {key: Cost(statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs), len(xs),
                      "measured", sorted({x[2] for x in xs}))
            for key, xs in m.cells.items()}


def domain_median(meas: dict[tuple[str, str], Cost], domain: str, attr: str) -> float | None:
    values = [getattr(c, attr) for (_, d), c in meas.items() if d == domain]
    return statistics.median(values) if values else None


def train_ratio(meas: dict[tuple[str, str], Cost], domain: str, other: str) -> float | None:
    """How much longer training takes on ``domain`` than on ``other``: the median over algorithms
    measured on both (training at least MIN_TRAIN_S), else the ratio of the domains' medians."""
    ratios = [meas[a, domain].train_s / meas[a, other].train_s for (a, d) in meas
              if d == domain and (a, other) in meas
              and min(meas[a, domain].train_s, meas[a, other].train_s) >= MIN_TRAIN_S]
    if ratios:
        return statistics.median(ratios)
    mine, theirs = domain_median(meas, domain, "train_s"), domain_median(meas, other, "train_s")
    return mine / theirs if mine and theirs else None


def impute(meas: dict[tuple[str, str], Cost], algo: str, domain: str) -> Cost:
    """The cost of a pair never measured (see the module docstring)."""
    rest = domain_median(meas, domain, "rest_s")
    guesses = {d: meas[a, d].train_s * r for (a, d) in meas
               if a == algo and d != domain and (r := train_ratio(meas, domain, d)) is not None}
    if guesses and rest is not None:
        return Cost(statistics.median(guesses.values()), rest,
                    source=f"imputed: {algo} on {', '.join(sorted(guesses))} × training ratio; rest: domain median")
    if rest is not None:
        return Cost(domain_median(meas, domain, "train_s") or 0.0, rest, source="imputed: domain median")
    mine = [c for (a, _), c in meas.items() if a == algo]
    pool = mine or list(meas.values())
    return Cost(statistics.median(c.train_s for c in pool), statistics.median(c.rest_s for c in pool),
                source="imputed: " + ("the algorithm's median" if mine else "median of all pairs"))


def pair_costs(m: Measured, algos: list[str], domains: list[str],
               base: dict[tuple[str, str], Cost] | None = None) -> dict[tuple[str, str], Cost]:
    """Every pair's quick cost: measured in ``base`` (an earlier report's, ``--costs``), else
    measured in the stores (which fill the report's gaps), else imputed from all of those."""
    meas = measured_costs(m) | {k: c for k, c in (base or {}).items() if not c.imputed}
    if not meas:
        raise SystemExit(f"no done {MEASURED_PRESET} cells with the preset's budget in the stores given: pass "
                         f"--store PATH of a store that holds some (`bench runs --preset {MEASURED_PRESET}`)")
    return {(a, d): meas.get((a, d)) or impute(meas, a, d) for a in algos for d in domains}


def preparation(m: Measured, domains: list[str], results: Path | None) -> dict[str, tuple[float, str]]:
    """Per domain: (seconds to prepare it at the measured preset, where that figure comes from)."""
    out: dict[str, tuple[float, str]] = {}
    for d in domains:
        report = results / f"{d}_{MEASURED_PRESET}.json" if results else None
        if m.prep.get(d):
            out[d] = (statistics.median(m.prep[d]), f"measured: median of {len(m.prep[d])} cell(s) that prepared it")
        elif report is not None and report.is_file():
            rep = json.loads(report.read_text())
            if "first_run_s" in rep and "cached_run_s" in rep:
                out[d] = (max(0.0, rep["first_run_s"] - rep["cached_run_s"]),
                          f"{report.name}: first run − cached run")
    known = [s for s, _ in out.values()]
    for d in domains:
        if d not in out:
            out[d] = (statistics.median(known) if known else 0.0, "imputed: median of the other domains")
    return out


def preset_ratios(domain: str, preset: str) -> dict[str, float]:
    """Scale factors from the measured preset to ``preset``: training, the rest of a cell, preparation."""
    if preset == MEASURED_PRESET:
        return {"train": 1.0, "rest": 1.0, "prep": 1.0}
    cls = DOMAINS.get(domain)
    bq, bp = cls.budget(MEASURED_PRESET), cls.budget(preset)
    cq, cp = dataclasses.asdict(cls.config(MEASURED_PRESET)), dataclasses.asdict(cls.config(preset))

    def evals(c: dict) -> float:
        return float(c.get("eval_contexts", 1) * c.get("eval_samples", 1))

    steps = [cp[k] / cq[k] for k in cq if k.endswith("_steps") and type(cq[k]) is int and cq[k] > 0]
    return {"train": (bp.steps * bp.batch_size) / (bq.steps * bq.batch_size), "rest": evals(cp) / evals(cq),
            "prep": max([1.0, *steps])}


# ---------------------------------------------------------------------------------------------
# the grid and its wall time
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# calibration by the cells measured at the estimated preset (--measured-store)
# ---------------------------------------------------------------------------------------------


@dataclass
class AtPreset:
    """One (algorithm, domain) cell at the estimated preset: training, the rest, and where from."""

    train_s: float
    rest_s: float
    source: str
    measured_here: bool = False
    """measured at the estimated preset itself"""

    @property
    def cell_s(self) -> float:
        return self.train_s + self.rest_s


def calibrated(train: float, rest: float | None = None) -> str:
    if rest is None:
        return f", extrapolated × {train:.2f} (calibration)" if train != 1.0 else ", extrapolated"
    return (f", extrapolated, training × {train:.2f}, rest × {rest:.2f} (calibration)" if (train, rest) != (1.0, 1.0)
            else ", extrapolated")


def extrapolate(c: Cost, r: dict[str, float], train: float = 1.0, rest: float = 1.0) -> AtPreset:
    """``c`` (a quick cost) scaled by the preset ratios ``r`` and calibration factors for training and the rest."""
    return AtPreset(c.train_s * r["train"] * train, c.rest_s * r["rest"] * rest, c.source + calibrated(train, rest))


def factors(measured: dict[str, list[float]], domains: list[str], what: str) -> dict[str, tuple[float, str]]:
    """Per domain: the median of its measured ÷ extrapolated ratios; a domain without any takes the
    median over every domain's (1 when nothing was measured at the preset)."""
    everything = [x for d in domains for x in measured.get(d, [])]
    out = {}
    for d in domains:
        if measured.get(d):
            out[d] = (statistics.median(measured[d]), f"{what}median of {len(measured[d])} measured on {d}")
        elif everything:
            out[d] = (statistics.median(everything), f"{what}median of {len(everything)} measured on other domains")
        else:
            out[d] = (1.0, f"{what}none measured at the preset")
    return out


def cells_at_preset(costs: dict[tuple[str, str], Cost], target: dict[tuple[str, str], Cost], preset: str,
                    domains: list[str]) -> tuple[dict[tuple[str, str], AtPreset], dict[str, dict[str, tuple]]]:
    """Every pair's cell at ``preset``: its median where measured there (``target``), else its quick
    cost extrapolated, its training and its rest each multiplied by the domain's factor (measured ÷
    extrapolated, over the pairs measured at both presets whose extrapolated part is at least
    MIN_TRAIN_S; see :func:`factors`)."""
    ratios: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "rest": defaultdict(list)}
    for (a, d), t in target.items():
        if (a, d) not in costs or costs[a, d].imputed or d not in domains:
            continue
        guess = extrapolate(costs[a, d], preset_ratios(d, preset))
        for part, mine, theirs in (("train", t.train_s, guess.train_s), ("rest", t.rest_s, guess.rest_s)):
            if theirs >= MIN_TRAIN_S:
                ratios[part][d].append(mine / theirs)
    fac = {part: factors(ratios[part], domains, f"{part}: ") for part in ratios}
    at = {}
    for (a, d), c in costs.items():
        t = target.get((a, d))
        at[a, d] = (AtPreset(c.train_s, c.rest_s, c.source) if preset == MEASURED_PRESET
                    else AtPreset(t.train_s, t.rest_s, f"measured at {preset} ({t.cells} cells)", True) if t
                    else extrapolate(c, preset_ratios(d, preset), fac["train"][d][0], fac["rest"][d][0]))
    return at, {d: {part: fac[part][d] for part in fac} for d in domains}


def preparations_at_preset(prep: dict[str, tuple[float, str]], target: Measured, preset: str,
                           domains: list[str]) -> tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]]:
    """Per domain: the preparation at ``preset``, measured there (median of the cells that prepared
    it) or extrapolated from quick × the preparation factor (see :func:`factors`)."""
    if preset == MEASURED_PRESET:
        return {d: prep[d] for d in domains}, {d: (1.0, "preparations: the measured preset") for d in domains}
    guess = {d: prep[d][0] * preset_ratios(d, preset)["prep"] for d in domains}
    measured = {d: statistics.median(target.prep[d]) for d in domains if target.prep.get(d)}
    prep_factor = factors({d: [s / guess[d]] for d, s in measured.items() if guess[d] > 0}, domains, "")
    out = {d: (measured[d], f"measured at {preset}: median of {len(target.prep[d])} preparation(s)")
           if d in measured else (guess[d] * prep_factor[d][0], prep[d][1] + calibrated(prep_factor[d][0]))
           for d in domains}
    return out, prep_factor


# ---------------------------------------------------------------------------------------------
# the grid and its wall time
# ---------------------------------------------------------------------------------------------


@dataclass
class DomainPlan:
    name: str
    prep_s: float
    prep_source: str
    load_s: float
    ratios: dict[str, float]
    cells: list[float] = field(default_factory=list)
    """the cost (s) of each runnable cell, without preparation"""
    na_cells: int = 0
    pairs: dict[str, int] = field(default_factory=lambda: {"measured": 0, "imputed": 0, "n/a": 0})
    train_s: float = 0.0
    """the runnable cells' training, summed"""
    rest_s: float = 0.0
    """the runnable cells' rest (instance, evaluation, artifacts), summed"""

    @property
    def median_cell_s(self) -> float:
        return statistics.median(self.cells) if self.cells else 0.0

    @property
    def total_s(self) -> float:
        """One preparation plus every cell, one after another (n/a cells: a cache lookup each)."""
        return self.prep_s + sum(self.cells) + self.na_cells * self.load_s


def plan_domain(domain: str, algos: list[str], conditions: list[str], seeds: int, at: dict[tuple[str, str], AtPreset],
                costs: dict[tuple[str, str], Cost], prep: tuple[float, str], load_s: float,
                rules: set[tuple[str, str, str]], ratios: dict[str, float]) -> DomainPlan:
    plan = DomainPlan(domain, prep[0], prep[1], load_s, ratios)
    for a in algos:
        runnable = [cond for cond in conditions if not is_na(a, domain, cond, rules)]
        n = len(runnable) * seeds
        plan.na_cells += (len(conditions) - len(runnable)) * seeds
        plan.cells += [at[a, domain].cell_s] * n
        plan.train_s += at[a, domain].train_s * n
        plan.rest_s += at[a, domain].rest_s * n
        imputed = costs[a, domain].imputed and not at[a, domain].measured_here
        plan.pairs["n/a" if not runnable else "imputed" if imputed else "measured"] += 1
    return plan


def longest_first(jobs: list[float], slots: int) -> float:
    """Makespan of ``jobs`` on ``slots`` identical workers, longest job first to the least loaded."""
    loads = [0.0] * max(1, min(slots, len(jobs)))
    for job in sorted(jobs, reverse=True):
        loads[loads.index(min(loads))] += job
    return max(loads)


def wall_time(plans: list[DomainPlan], slots: int, overhead_s: float = 0.0, rebuild: bool = False) -> dict:
    """The grid's wall time on ``slots`` workers (see the module docstring)."""
    cells = [c + overhead_s for p in plans for c in p.cells] + [p.load_s + overhead_s for p in plans
                                                                for _ in range(p.na_cells)]
    prep_phase = longest_first([p.prep_s for p in plans], slots)
    per_worker = sum(p.prep_s if rebuild else p.load_s for p in plans)
    longest = max(cells, default=0.0)
    work = sum(cells) / slots
    return {"workers": slots, "overhead_per_cell_s": overhead_s, "prep_phase_s": prep_phase,
            "per_worker_preparation_s": per_worker, "cells_per_worker_s": work, "longest_cell_s": longest,
            "estimate_s": prep_phase + per_worker + max(work, longest),
            "bound_s": prep_phase + per_worker + work + longest}


def executor_overheads(path: Path | None) -> dict[str, float]:
    """Overhead per cell of each executor, from a ``scale_out.py`` report: (W × grid wall − Σ cell
    wall of the local run) / cells; {} when there is no report."""
    if path is None or not path.is_file():
        return {}
    runs = json.loads(path.read_text()).get("runs", [])
    local = next((r["cells_s"] for r in runs if r["executor"] == "local"), None)
    return {r["executor"]: max(0.0, (r["workers"] * r["grid_s"] - (local if local is not None else r["cells_s"]))
                               / max(1, r["cells"])) for r in runs}


# ---------------------------------------------------------------------------------------------
# the estimate and its report
# ---------------------------------------------------------------------------------------------


def unseen_pool_parts(m: Measured, domains: list[str], conditions: list[str]) -> set[tuple[str, str, str]]:
    """n/a rules for the conditions that keep a named part of the pool (``Condition.pool_part``) on
    the domains where no store holds a cell of them: probably n/a (only some pools have parts)."""
    return {("*", d, c) for c in conditions if CONDITIONS[c].pool_part for d in domains
            if (d, c) not in m.conditions_seen}


def walls(plans: list[DomainPlan], workers: list[int], ray_workers: list[int], overheads: dict[str, float]) -> dict:
    local, process, ray = (overheads.get(k, 0.0) for k in ("local", "process", "ray"))
    return {"serial": wall_time(plans, 1, local),
            "machine_workers": [wall_time(plans, w, process) for w in workers],
            "ray_shared_cache": [wall_time(plans, n, ray) for n in ray_workers],
            "ray_no_shared_cache": [wall_time(plans, n, ray, rebuild=True) for n in ray_workers]}


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average_at_start": list(os.getloadavg())}


def estimate(m: Measured, *, preset: str, algos: list[str], domains: list[str], conditions: list[str], seeds: int,
             workers: list[int], ray_workers: list[int], results: Path | None = None,
             overheads: dict[str, float] | None = None, given: tuple[dict, dict] | None = None,
             target: Measured | None = None) -> dict:
    """The whole estimate as a JSON-able dict (the report's content); ``given``: (costs,
    preparations) from :func:`from_report` instead of the stores'; ``target``: cells measured at
    ``preset`` itself, which replace and calibrate the extrapolation. With both ``given`` and stores,
    the stores fill the pairs and preparations that the report did not measure."""
    overheads, target = overheads or {}, target or Measured()
    costs = pair_costs(m, algos, domains, given[0] if given else None)
    prep = preparation(m, domains, results)
    if given:  # the earlier report's preparations, except those it imputed and the stores measured
        prep = {d: prep[d] if m.prep.get(d) and given[1].get(d, ("", "imputed"))[1].startswith("imputed")
                else given[1].get(d, prep[d]) for d in domains}
    at, cell_factor = cells_at_preset(costs, measured_costs(target), preset, domains)
    preps, prep_factor = preparations_at_preset(prep, target, preset, domains)
    rules = m.na | target.na

    def plan(d: str, na: set) -> DomainPlan:
        load = max([*m.load.get(d, []), *target.load.get(d, [])] or [0.0])
        return plan_domain(d, algos, conditions, seeds, at, costs, preps[d], load, na, preset_ratios(d, preset))

    plans = [plan(d, rules) for d in domains]
    seen = Measured(conditions_seen=m.conditions_seen | target.conditions_seen)
    guess = unseen_pool_parts(seen, domains, conditions)
    likely = [plan(d, rules | guess) for d in domains]
    return {
        "preset": preset, "measured_preset": MEASURED_PRESET, "extrapolated": preset != MEASURED_PRESET,
        "calibrated": bool(target.cells or target.prep),
        "grid": {"algorithms": algos, "domains": domains, "conditions": conditions, "seeds": seeds,
                 "cells": len(algos) * len(domains) * len(conditions) * seeds},
        "inputs": {"stores": m.stores, "stores_at_preset": target.stores,
                   "known_na_rules": sorted("/".join(k) for k in rules), "overhead_per_cell_s": overheads},
        "calibration": [{"domain": d, "training_factor": cell_factor[d]["train"][0],
                         "training_factor_source": cell_factor[d]["train"][1],
                         "rest_factor": cell_factor[d]["rest"][0], "rest_factor_source": cell_factor[d]["rest"][1],
                         "preparation_factor": prep_factor[d][0], "preparation_factor_source": prep_factor[d][1]}
                        for d in domains],
        "domains": [domain_row(p) for p in plans],
        "pairs": [pair_row(a, d, c, at[a, d]) for (a, d), c in sorted(costs.items())],
        **walls(plans, workers, ray_workers, overheads),
        "if_unseen_pool_parts_na": {"rules": sorted("/".join(k) for k in guess),
                                    "na_cells": sum(p.na_cells for p in likely),
                                    "serial_total_s": sum(p.total_s for p in likely),
                                    **walls(likely, workers, ray_workers, overheads)},
    }


def domain_row(p: DomainPlan) -> dict:
    return {"domain": p.name, "cells": len(p.cells) + p.na_cells, "runnable_cells": len(p.cells),
            "na_cells": p.na_cells, "pairs": p.pairs, "preparation_s": p.prep_s, "preparation_source": p.prep_source,
            "cache_load_s": p.load_s, "median_cell_s": p.median_cell_s, "total_s": p.total_s, "scale": p.ratios,
            "training_s": p.train_s, "rest_s": p.rest_s}


def pair_row(algo: str, domain: str, c: Cost, at: AtPreset) -> dict:
    return {"algo": algo, "domain": domain, "train_s": c.train_s, "rest_s": c.rest_s, "cell_s": at.cell_s,
            "measured_cells": c.cells, "imputed": c.imputed, "source": c.source, "torch_threads": c.threads,
            "at_preset": {"train_s": at.train_s, "rest_s": at.rest_s, "source": at.source,
                          "measured_here": at.measured_here}}


WHERE = {
    "serial": ("1 machine, local executor", "once per domain"),
    "machine_workers": ("1 machine with W cores, process executor", "once per domain, shared"),
    "ray_shared_cache": ("Ray, N workers, shared cache", "once per domain; each worker loads it"),
    "ray_no_shared_cache": ("Ray, N one-worker nodes, no shared cache", "each node builds every domain"),
}


def wall_table(res: dict) -> list[str]:
    lines = ["| where | workers | overhead s/cell | wall h | bound h | wall h, unseen pool parts n/a | preparation |",
             "|---|---|---|---|---|---|---|"]
    likely = res["if_unseen_pool_parts_na"]
    for key, (label, where) in WHERE.items():
        rows = res[key] if isinstance(res[key], list) else [res[key]]
        alt = likely[key] if isinstance(likely[key], list) else [likely[key]]
        lines += [f"| {label} | {r['workers']} | {r['overhead_per_cell_s']:.2f} | {r['estimate_s'] / HOUR:.1f} | "
                  f"{r['bound_s'] / HOUR:.1f} | {a['estimate_s'] / HOUR:.1f} | {where} |" for r, a in zip(rows, alt)]
    return lines


def kind(res: dict) -> str:
    if not res["extrapolated"]:
        return "estimated from measured quick cells"
    if res.get("calibrated"):
        return ("**measured cells where the stores at the preset hold them; every other pair extrapolated from quick "
                "and multiplied by its domain's measured ÷ extrapolated ratio** (the calibration table)")
    return ("**an extrapolation from quick cells, not a measurement** (budgets and evaluation sizes scaled; "
            "larger models not modelled: low)")


def markdown(res: dict) -> str:
    g, mach = res["grid"], res["machine"]
    load = ", ".join(f"{x:.2f}" for x in mach["load_average_at_start"])
    lines = [f"# Cost of the full grid, {res['preset']} preset", "",
             f"{len(g['algorithms'])} algorithms × {len(g['domains'])} domains × {len(g['conditions'])} conditions × "
             f"{g['seeds']} seeds = {g['cells']} cells, {kind(res)}. Estimated on {mach['platform']}, {mach['cpus']} "
             f"CPUs, torch {mach['torch']} ({mach['torch_threads']} threads), load average {load} at start.", "",
             "| domain | cells (runnable / n/a) | pairs measured / imputed / n/a | preparation s | median cell s "
             "| domain total h |", "|---|---|---|---|---|---|"]
    for d in res["domains"]:
        pr = d["pairs"]
        lines.append(f"| {d['domain']} | {d['cells']} ({d['runnable_cells']} / {d['na_cells']}) | {pr['measured']} / "
                     f"{pr['imputed']} / {pr['n/a']} | {d['preparation_s']:.0f} | {d['median_cell_s']:.1f} | "
                     f"{d['total_s'] / HOUR:.2f} |")
    lines.append(f"| **all** | {g['cells']} | | {sum(d['preparation_s'] for d in res['domains']):.0f} | | "
                 f"**{sum(d['total_s'] for d in res['domains']) / HOUR:.1f}** |")
    lines += ["", *wall_table(res), "", *where_the_time_goes(res)]
    if res.get("calibrated"):
        lines += ["", *calibration_table(res)]
    return "\n".join(lines + notes(res)) + "\n"


def where_the_time_goes(res: dict) -> list[str]:
    """Per domain, one core: preparation, training and the rest of the cells (mostly evaluation)."""
    total = sum(d["total_s"] for d in res["domains"]) or 1.0
    lines = ["Where the time goes (one core; the rest = instance, evaluation and artifacts):", "",
             "| domain | preparation h | training h | rest h | share of the grid | rest ÷ cells |",
             "|---|---|---|---|---|---|"]
    for d in res["domains"]:
        cells = d.get("training_s", 0.0) + d.get("rest_s", 0.0)
        lines.append(f"| {d['domain']} | {d['preparation_s'] / HOUR:.2f} | {d.get('training_s', 0.0) / HOUR:.2f} | "
                     f"{d.get('rest_s', 0.0) / HOUR:.2f} | {d['total_s'] / total:.0%} | "
                     f"{d.get('rest_s', 0.0) / cells if cells else 0.0:.0%} |")
    return lines


def calibration_table(res: dict) -> list[str]:
    measured = defaultdict(list)
    for p in res["pairs"]:
        if p["at_preset"]["measured_here"]:
            measured[p["domain"]].append(p["algo"])
    lines = [f"Calibration (measured at {res['preset']} ÷ extrapolated from quick):", "",
             f"| domain | pairs measured at {res['preset']} | training factor | rest factor | preparation factor |",
             "|---|---|---|---|---|"]
    lines += [f"| {c['domain']} | {', '.join(sorted(measured[c['domain']])) or '—'} | {c['training_factor']:.2f} "
              f"({c['training_factor_source']}) | {c['rest_factor']:.2f} ({c['rest_factor_source']}) | "
              f"{c['preparation_factor']:.2f} ({c['preparation_factor_source']}) |" for c in res["calibration"]]
    return lines


def notes(res: dict) -> list[str]:
    imputed: dict[str, list[str]] = defaultdict(list)
    for p in res["pairs"]:
        if p["imputed"] and not p.get("at_preset", {}).get("measured_here"):
            imputed[p["domain"]].append(p["algo"])
    threads = sorted({t for p in res["pairs"] for t in p["torch_threads"]})
    out = ["", "Imputed (algorithm, domain) pairs (never measured; n/a pairs included where not known n/a):", ""]
    out += [f"- {d}: {', '.join(a)}" for d, a in sorted(imputed.items())] or ["- none"]
    out += ["", "Preparation: " + "; ".join(f"{d['domain']} {d['preparation_source']}" for d in res["domains"]) + ".",
            "", f"Measured cells ran with {threads} torch thread(s); no scaling by threads is applied. Known n/a "
            f"rules: {', '.join(res['inputs']['known_na_rules']) or 'none'}; every other cell counts as runnable "
            "(capability requirements are not derived without preparing the domains): an upper bound. Wall = "
            "preparations longest-first on the workers + per-worker cache loads (or builds) + max(Σ cells / W, "
            "longest cell); bound = the sum instead of the max. \"Unseen pool parts n/a\": the conditions that keep a "
            "named part of the offline pool counted n/a on the domains where no store holds a cell of them ("
            f"{len(res['if_unseen_pool_parts_na']['rules'])} (domain, condition) pairs, "
            f"{res['if_unseen_pool_parts_na']['na_cells']} n/a cells): likely, not known. Method: the docstring "
            "of benchmarks/grid_cost.py.",
            "", "Stores read: " + "; ".join(f"{s['path']} ({s[f'{MEASURED_PRESET}_cells_used']} cells used)"
                                            for s in res["inputs"]["stores"]) + "."]
    preset = res["preset"]
    if res["inputs"].get("stores_at_preset"):
        out += ["", f"Stores at {preset}: " + "; ".join(f"{s['path']} ({s[f'{preset}_cells_used']} cells used)"
                                                       for s in res["inputs"]["stores_at_preset"]) + "."]
    return out


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str, everything: list[str], kind: str) -> list[str]:
    names = everything if text.strip() == "all" else [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in everything]
    if unknown:
        raise SystemExit(f"unknown {kind} {', '.join(unknown)}: valid ones are {', '.join(everything)}")
    return names


def measured_preparation(text: str) -> tuple[str, float]:
    """``--preparation DOMAIN=SECONDS`` parsed, with a one-line error for a wrong value."""
    domain, _, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if domain not in DOMAINS or value <= 0:
        raise SystemExit(f"--preparation {text!r}: write DOMAIN=SECONDS with a positive number of seconds and a "
                         f"domain among {', '.join(DOMAINS.names())}")
    return domain, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent / "results"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, action="append", default=[], help="a store with measured cells (repeat)")
    ap.add_argument("--costs", type=Path, help="the measured inputs of an earlier quick report (grid_cost_quick.json), "
                    "e.g. to extrapolate standard again after its budgets change; --store fills the pairs it did not "
                    "measure")
    ap.add_argument("--preset", choices=["quick", "standard"], default="quick")
    ap.add_argument("--measured-store", type=Path, action="append", default=[],
                    help="a store with cells measured at --preset itself (repeat): they replace the extrapolation "
                         "of their pairs and calibrate the others'")
    ap.add_argument("--measured-costs", type=Path,
                    help="an earlier report at --preset (grid_cost_standard.json): its measured pairs and "
                         "preparations stand in for stores no longer at hand; --measured-store and --preparation "
                         "replace what they measure again")
    ap.add_argument("--preparation", action="append", default=[], metavar="DOMAIN=SECONDS",
                    help="a preparation measured at --preset outside a cell (a grid prepares each domain in its own "
                         "task, so its cells do not record it), e.g. motion=3988 from a grid's log (repeat)")
    ap.add_argument("--algos", default="all")
    ap.add_argument("--domains", default="all")
    ap.add_argument("--conditions", default="all", help="'all' (every registered condition) or a comma list")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=_ints, default=[1, 2, 4, 8, 16], help="cores of one machine (process)")
    ap.add_argument("--ray-workers", type=_ints, default=[1, 4, 16, 64])
    ap.add_argument("--results", type=Path, default=here, help="per-domain reports and scale_out_quick.json")
    ap.add_argument("--out", type=Path, default=here)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    mach = machine()  # the load average before this process reads anything
    m, given = Measured(), None
    if args.costs:
        m, costs, prep = from_report(args.costs)
        given = (costs, prep)
    for path in dict.fromkeys(p.resolve() for p in args.store or ([] if args.costs else [default_store_path()])):
        read_store(path, m)
    if args.measured_store and args.preset == MEASURED_PRESET:
        raise SystemExit(f"--measured-store: only with --preset standard (the {MEASURED_PRESET} cells go in --store)")
    target = Measured()
    for path in dict.fromkeys(p.resolve() for p in args.measured_store):
        read_store(path, target, args.preset)
    for domain, seconds in map(measured_preparation, args.preparation):
        target.prep[domain].append(seconds)
    if args.measured_costs:
        add_report_at_preset(args.measured_costs, target, args.preset)
    res = estimate(m, preset=args.preset, algos=_names(args.algos, ALGORITHMS.names(), "algorithm"),
                   domains=_names(args.domains, DOMAINS.names(), "domain"),
                   conditions=_names(args.conditions, list(CONDITIONS), "condition"), seeds=args.seeds,
                   workers=args.workers, ray_workers=args.ray_workers, results=args.results,
                   overheads=executor_overheads(args.results / "scale_out_quick.json"), given=given, target=target)
    res["machine"] = mach
    write_report(args.out, f"grid_cost_{args.preset}", res, markdown(res))
    return res


def write_report(out: Path, name: str, res: dict, text: str) -> None:
    """``<out>/<name>.json`` and ``.md``, and the Markdown to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()

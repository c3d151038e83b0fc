"""Conditions change data and feedback as documented."""

from __future__ import annotations

import pytest
import torch

from benchmark.conditions import CONDITIONS
from benchmark.data import condition_mismatch, sample_keys
from benchmark.feedback import gold_utility
from benchmark.progress import Progress
from benchmark.runner import CellRequest, make_instance, prepare_domain, resolve


@pytest.fixture(scope="module")
def text(cache):
    cell = resolve(CellRequest("dpo", "text", preset="smoke"))
    d, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return d, cell.budget


def _inst(text, name):
    d, budget = text
    return make_instance(d, CONDITIONS[name], budget, 0, torch.device("cpu"))[0]


def test_partial_coverage_removes_the_best_region(text) -> None:
    d, _ = text
    gold = gold_utility(d.pool.components, d.oracle.weights)
    cut = torch.quantile(gold, 0.7)
    inst = _inst(text, "partial-coverage")
    seen = d.oracle.gold(inst.offline.pairs.contexts, inst.offline.pairs.chosen)
    assert (seen < cut).all()
    assert (d.oracle.gold(_inst(text, "default").offline.pairs.contexts,
                          _inst(text, "default").offline.pairs.chosen) >= cut).any()


@pytest.mark.parametrize("drop", [0.3, 0.6, 0.9])
def test_a_coverage_strength_removes_that_much_of_the_best_region(text, drop: float) -> None:
    from benchmark.registry import get_condition

    d, budget = text
    cond = get_condition(f"partial-coverage@{drop}")
    assert cond.coverage_drop == drop and cond.name == f"partial-coverage@{drop}"
    cut = torch.quantile(gold_utility(d.pool.components, d.oracle.weights), 1 - drop)
    inst = make_instance(d, cond, budget, 0, torch.device("cpu"))[0]
    assert (d.oracle.gold(inst.offline.pairs.contexts, inst.offline.pairs.chosen) < cut).all()


@pytest.mark.parametrize(("spec", "error"), [
    ("partial-coverage@lots", "the strength must be a number in [0.0, 0.99]"),
    ("partial-coverage@1.5", "the strength must be in [0.0, 0.99]"),
    ("noisy-labels@0.5", "only partial-coverage, low-budget take a strength"),
])
def test_a_bad_strength_is_one_clear_error(spec: str, error: str) -> None:
    from benchmark.errors import UserError
    from benchmark.registry import get_condition

    with pytest.raises(UserError, match=error.replace("[", r"\[").replace("]", r"\]")):
        get_condition(spec)


def test_low_budget_cuts_data_and_feedback(text) -> None:
    low, full = _inst(text, "low-budget"), _inst(text, "default")
    assert low.feedback.budget == round(full.feedback.budget * 0.1)
    assert len(low.offline.pairs) < 0.3 * len(full.offline.pairs)


def test_noisy_labels_agree_less_with_the_gold(text) -> None:
    d, _ = text

    def agreement(inst):
        p = inst.offline.pairs
        gw, gl = d.oracle.gold(p.contexts, p.chosen), d.oracle.gold(p.contexts, p.rejected)
        decided = gw != gl
        return (gw[decided] > gl[decided]).float().mean().item()

    assert agreement(_inst(text, "noisy-labels")) < agreement(_inst(text, "default"))


def test_conditions_do_not_depend_on_the_cell_seed(text) -> None:
    d, budget = text
    a = make_instance(d, CONDITIONS["default"], budget, 0, torch.device("cpu"))[0].offline.pairs
    b = make_instance(d, CONDITIONS["default"], budget, 7, torch.device("cpu"))[0].offline.pairs
    assert torch.equal(a.chosen.tokens, b.chosen.tokens), "the dataset is fixed per (domain, condition)"


@pytest.mark.parametrize("name", ["text", "image", "robot"])
def test_pairs_have_two_distinct_sides_and_honest_statistics(name: str, cache) -> None:
    cell = resolve(CellRequest("dpo", name, preset="smoke"))
    d, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    for cond in (CONDITIONS["default"], CONDITIONS["noisy-labels"]):
        inst, _, stats = make_instance(d, cond, cell.budget, 0, torch.device("cpu"))
        p = inst.offline.pairs
        chosen, rejected = sample_keys(p.chosen), sample_keys(p.rejected)
        assert all(a != b for a, b in zip(chosen, rejected)), "a pair with the same sample on both sides"
        assert stats["data/pairs"] == len(p) and 0.0 <= stats["data/tied_gold_share"] <= 1.0
        assert ((p.strength > 0) & (p.strength <= 1)).all()
        # strength is the probability of the label given: the gold-disagreeing labels are the unlikely ones
        gold_w, gold_l = d.oracle.gold(p.contexts, p.chosen), d.oracle.gold(p.contexts, p.rejected)
        wrong = gold_w < gold_l
        if wrong.any() and (~wrong).any():
            assert p.strength[wrong].mean() < p.strength[~wrong].mean()
    flipped, _, fstats = make_instance(d, CONDITIONS["default"].flipped(), cell.budget, 0, torch.device("cpu"))
    _, _, dstats = make_instance(d, CONDITIONS["default"], cell.budget, 0, torch.device("cpu"))
    assert fstats["data/label_accuracy"] == pytest.approx(1 - dstats["data/label_accuracy"])
    assert (flipped.offline.singles.label == 1 - _inst_for(d, cell.budget).offline.singles.label).all()
    demos, flipped_demos = _inst_for(d, cell.budget).offline.demos, flipped.offline.demos
    if len(demos):  # label-flipped data demonstrate the worst samples, as many
        assert len(flipped_demos) == len(demos)
        gold = d.oracle.gold(demos.contexts, demos.samples).mean()
        assert d.oracle.gold(flipped_demos.contexts, flipped_demos.samples).mean() < gold


def _inst_for(d, budget):
    return make_instance(d, CONDITIONS["default"], budget, 0, torch.device("cpu"))[0]


@pytest.mark.parametrize("name", ["text", "image", "robot"])
def test_every_condition_changes_what_it_says_on_every_domain(name: str, cache) -> None:
    """The five conditions are wired into every domain: fewer pairs at low budget, fewer correct
    labels when noisy or heterogeneous, a pool without its best region at partial coverage."""
    cell = resolve(CellRequest("dpo", name, preset="smoke"))
    d, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    made = {c: make_instance(d, CONDITIONS[c], cell.budget, 0, torch.device("cpu")) for c in CONDITIONS
            if not condition_mismatch(d.pool, CONDITIONS[c], name)}  # dataset kinds: multiagent's pool only
    stats = {c: m[2] for c, m in made.items()}
    assert stats["low-budget"]["data/pairs"] < 0.5 * stats["default"]["data/pairs"]
    for c in ("noisy-labels", "heterogeneous-raters"):
        assert stats[c]["data/label_accuracy"] < stats["default"]["data/label_accuracy"], c

    def best_offline_gold(inst) -> float:
        p = inst.offline.pairs
        return float(torch.maximum(d.oracle.gold(p.contexts, p.chosen), d.oracle.gold(p.contexts, p.rejected)).max())

    assert best_offline_gold(made["partial-coverage"][0]) < best_offline_gold(made["default"][0])


def test_grid_runs_every_condition_from_the_cli(home) -> None:
    """`bench grid --conditions all` runs one cell per condition, each on its own data."""
    import json
    import os
    import sqlite3
    import subprocess
    import sys

    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200"}
    args = ["grid", "--algos", "sft", "--domains", "text", "--conditions", "all", "--seeds", "1", "--preset", "smoke"]
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    kinds = {c for c, cond in CONDITIONS.items() if cond.pool_part}  # multiagent's dataset kinds: n/a on text
    assert f"ran {len(CONDITIONS)} cells ({len(CONDITIONS) - len(kinds)} done, {len(kinds)} n/a" in out.stdout
    with sqlite3.connect(home / "prefbench.sqlite") as conn:
        got = dict(conn.execute("SELECT condition, metrics_json FROM cells WHERE status = 'done'").fetchall())
        na = dict(conn.execute("SELECT condition, reason FROM cells WHERE status = 'na'").fetchall())
    assert set(got) == set(CONDITIONS) - kinds and set(na) == kinds
    assert all("pool parts: none" in why for why in na.values())
    pairs = {c: json.loads(m)["data/pairs"] for c, m in got.items()}
    assert pairs["low-budget"] < pairs["default"]
    from domains.text.domain import TextDomain

    smoke = TextDomain.budget("smoke")  # passes over the pairs, stored per cell (issue #21)
    epochs = {c: json.loads(m)["data/offline_epochs"] for c, m in got.items()}
    assert epochs["default"] == pytest.approx(smoke.steps * smoke.batch_size / pairs["default"])

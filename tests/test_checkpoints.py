"""The over-optimisation curve: every cell probes its policy at checkpoints (benchmark/checkpoints.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

import benchmark.checkpoints as checkpoints
from benchmark.runner import CellRequest, resolve, run_cell
from benchmark.store import Store

VOLATILE = {"wall_s"}


STEPS = ("steps=24",)  # a smoke cell with enough steps to be probed during training


def _run(algo: str, domain: str, home, cache, **kw):
    return run_cell(resolve(CellRequest(algo, domain, preset="smoke", **kw)), store=Store(home / "s.sqlite"),
                    cache=cache, home=home)


def test_checkpoint_steps() -> None:
    assert checkpoints.checkpoint_steps(400) == {50, 100, 200, 300}
    assert checkpoints.checkpoint_steps(24) == {3, 6, 12, 18}
    assert checkpoints.checkpoint_steps(6) == set()  # a smoke budget: the final policy only


@pytest.mark.parametrize("domain", ["text", "robot"])
def test_the_curve_is_stored_in_step_order_and_ends_at_the_final_policy(domain: str, home, cache) -> None:
    rec = _run("dpo", domain, home, cache, budget_sets=STEPS)
    assert rec.status == "done", rec.reason
    gains, kls = rec.curves["checkpoint/gold_gain"], rec.curves["checkpoint/kl"]
    steps = [s for s, _ in gains]
    assert steps == [3, 6, 12, 18, 24], "four probes in training, then the final policy"
    assert [s for s, _ in kls] == steps and steps[-1] == rec.train_steps
    errors = rec.curves["checkpoint/gold_gain_se"]
    assert [s for s, _ in errors] == steps, "a standard error at every checkpoint"
    assert all(0.0 <= v < 10.0 for _, v in errors) and any(v > 0.0 for _, v in errors)
    best = max(v for _, v in gains)
    assert rec.metrics["oracle_peek/best_checkpoint_gold_gain"] == best
    assert "oracle_peek/best_checkpoint_gold_gain" != "normalized_score"  # the headline is the final policy's


def test_probing_changes_nothing_in_training(home, cache, monkeypatch) -> None:
    """Same cell with and without the mid-training probe: identical metrics (the probe samples a copy,
    unmetered, and restores the global RNG)."""
    with_probe = _run("rlhf", "text", home, cache, budget_sets=STEPS)
    monkeypatch.setattr(checkpoints, "checkpoint_steps", lambda total: set())
    without = run_cell(resolve(CellRequest("rlhf", "text", preset="smoke", budget_sets=STEPS)),
                       store=Store(home / "other.sqlite"), cache=cache, home=home)
    drop = VOLATILE | {k for k in with_probe.metrics if k.startswith("oracle_peek/")}
    assert {k: v for k, v in with_probe.metrics.items() if k not in drop} == {
        k: v for k, v in without.metrics.items() if k not in drop}
    assert with_probe.online_samples == without.online_samples, "probe samples are never charged to the cell"
    # rlhf builds its policy only after its reward model: the probes at steps 3 and 6 find none yet
    assert [s for s, _ in with_probe.curves["checkpoint/kl"]] == [12, 18, 24]
    assert [s for s, _ in without.curves["checkpoint/kl"]] == [24]


def test_the_reference_sits_at_the_origin(home, cache) -> None:
    rec = _run("reference", "robot", home, cache)
    assert [v for _, v in rec.curves["checkpoint/gold_gain"]] == [0.0]
    assert [v for _, v in rec.curves["checkpoint/kl"]] == [0.0]


def test_bench_show_and_the_page_show_the_curve(home, cache) -> None:
    rec = _run("dpo", "robot", home, cache, budget_sets=STEPS)
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200"}
    png = home / "curve.png"
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "show", rec.run_id, "--store", str(home / "s.sqlite"),
                          "--plot", str(png)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "over-optimisation" in out.stdout and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "standard error" in out.stdout
    site = home / "site"
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "leaderboard", "--store", str(home / "s.sqlite"),
                          "--preset", "smoke", "--format", "html", "--out", str(site)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    page = next(site.rglob("*.html")).read_text()
    assert "overoptimisation_robot.png" in page
    assert (next(site.rglob("overoptimisation_robot.png"))).stat().st_size > 1000


def test_the_probe_measures_in_the_right_direction(cache) -> None:
    """The reference is at (0, 0); its best of 4 under the oracle gains gold, its worst of 4 loses it;
    a perturbed copy is away from the reference in KL."""
    from tests.test_evaluation import SelectedOfK, _perturbed, _prepare

    domain, _ = _prepare("text", cache)  # 16 probe contexts (robot's smoke split has 4: too noisy)
    probe = checkpoints.CheckpointProbe(domain, seed=0)
    assert probe.measure(domain.make_policy()) == (0.0, 0.0, 0.0)
    best = probe.measure(SelectedOfK(domain, 4))
    assert best.gold_gain > 0 > probe.measure(SelectedOfK(domain, 4, worst=True)).gold_gain
    assert probe.measure(_perturbed(domain, 0.5)).kl > 0
    # the standard error is that of the paired per-context differences, recomputed here from the same draws
    gold = {}
    for name, policy in (("pol", SelectedOfK(domain, 4)), ("ref", domain.reference)):
        samples = policy.sample(probe.contexts, 1, generator=torch.Generator().manual_seed(probe.seed))
        gold[name] = domain.oracle.gold(probe.contexts, samples).double()
    diff = gold["pol"] - gold["ref"]
    assert best.gold_gain == pytest.approx(float(diff.mean()))
    assert best.gold_gain_se == pytest.approx(float(diff.std()) / len(diff) ** 0.5) and best.gold_gain_se > 0


def test_mean_and_se() -> None:
    mean, se = checkpoints.mean_and_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and se == pytest.approx(1.2909944 / 2)
    assert math.isnan(checkpoints.mean_and_se(torch.tensor([1.0]))[1])
    curves: dict = {}
    checkpoints.add_point(curves, 5, checkpoints.ProbePoint(0.1, 0.2, float("nan")))
    assert curves == {"checkpoint/gold_gain": [(5, 0.1)], "checkpoint/kl": [(5, 0.2)]}, "no NaN is stored"


def test_probe_offset_compares_the_last_probe_with_the_final_evaluation(tmp_path) -> None:
    """benchmarks/probe_offset.py: offset = last probe − final gold gain, only where the last probe
    was taken on the final policy; the reference and cells without a curve are left out."""
    import importlib.util
    from pathlib import Path

    from benchmark.runner import CellRequest, new_record, resolve
    from benchmark.store import Store

    script = Path(__file__).parents[1] / "benchmarks" / "probe_offset.py"
    spec = importlib.util.spec_from_file_location("probe_offset", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = Store(tmp_path / "s.sqlite")
    for algo, seed, curve, steps in (("dpo", 0, [[10, 0.1], [20, 0.5]], 20), ("dpo", 1, [[10, 0.2], [20, 0.1]], 20),
                                     ("sft", 0, [[10, 0.3]], 20), ("reference", 0, [[0, 0.0]], 0)):
        rec = new_record(resolve(CellRequest(algo, "text", seed=seed, preset="smoke")), status="done")
        rec.metrics, rec.curves, rec.train_steps = {"gold_gain": 0.2}, {"checkpoint/gold_gain": curve}, steps
        store.put(rec)
    rows = module.offsets(store.records())
    assert sorted((r["algo"], r["seed"], round(r["offset"], 6)) for r in rows) == [("dpo", 0, 0.3), ("dpo", 1, -0.1)]
    summary = module.by_domain(rows)["text (smoke)"]
    assert summary["n"] == 2 and abs(summary["mean"] - 0.1) < 1e-9

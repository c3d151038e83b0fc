"""Our IQL losses and update against torchrl's ``IQLLoss`` on identical weights and batch
(``benchmarks/iql_vs_torchrl.py``, issue #19). No timing here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from baselines.iql import IQLConfig

pytest.importorskip("torchrl", reason="the torchrl extra (pip install -e '.[torchrl]')")

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "iql_vs_torchrl.py"

# float32 (eps 1.2e-7): both sides run the same layers on the same inputs and differ only in
# summation order (torchrl vmaps the twin Q into batched GEMMs, our Ensemble runs each member), so
# the losses agree to a few ulps accumulated over 256-wide dot products and a mean over N: a
# relative 1e-5 leaves room for that, while any difference of definition (smooth L1, the expectile
# side, the discount, a missing min over the critics) moves the losses by 1e-3 relative or more.
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("iql_vs_torchrl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def batch(bench):
    return bench.flat_transitions(4, 8, seed=0)  # 4 segments × 8 steps = 32 transitions


def test_losses_match_torchrl(bench, batch):
    a = bench.loss_agreement(batch, IQLConfig(), seed=0)
    assert a["loss_v_ours"] > 0 and a["loss_q_ours"] > 0
    assert a["loss_v_torchrl"] == pytest.approx(a["loss_v_ours"], rel=RTOL, abs=ATOL)
    # torchrl sums the two critics' losses (Σ_i), ours averages them (½·Σ_i, CORL)
    assert a["loss_q_torchrl"] == pytest.approx(2 * a["loss_q_ours"], rel=RTOL, abs=ATOL)
    # the actions are inside our clip, where TanhNormal's log-prob is the same density
    assert a["loss_actor_torchrl"] == pytest.approx(a["loss_actor_ours"], rel=RTOL, abs=ATOL)


def test_one_update_of_each_changes_the_weights(bench, batch):
    cfg = IQLConfig()
    nets = bench.make_nets(batch, seed=0)
    side = bench.make_torchrl(nets, batch, cfg)
    ours0, theirs0 = nets.state(), bench.torchrl_state(side)
    assert ours0.keys() == theirs0.keys()
    assert all(torch.equal(ours0[k], theirs0[k]) for k in ours0)  # identical starting weights
    bench.our_update(nets, bench.our_optimizers(nets, cfg), batch, cfg)
    bench.torchrl_update(side, cfg)
    ours1, theirs1 = nets.state(), bench.torchrl_state(side)
    for name in ("policy", "v", "q", "q_target"):
        keys = [k for k in ours0 if k.startswith(name + ".") and not k.endswith(("obs_mean", "obs_std"))]
        assert any(not torch.equal(ours0[k], ours1[k]) for k in keys), f"ours: {name} did not move"
        assert any(not torch.equal(theirs0[k], theirs1[k]) for k in keys), f"torchrl: {name} did not move"

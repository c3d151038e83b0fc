"""Generic conformance: every registered domain and every registered algorithm.

Parametrised over the registries, so a new domain or algorithm is covered with no new test
code. Everything runs on the ``smoke`` preset.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch

from benchmark.api import (
    CAPABILITIES,
    REQUIREMENTS,
    SCORER_KINDS,
    Algorithm,
    Batch,
    DomainInstance,
    FeedbackBudgetExceeded,
    Policy,
    Scorer,
)
from benchmark.checks import learning_direction
from benchmark.conditions import CONDITIONS
from benchmark.data import condition_mismatch, make_offline_data
from benchmark.domain import Domain
from benchmark.feedback import RaterPopulation
from benchmark.metrics import SCORE_VERSION
from benchmark.progress import Progress
from benchmark.registry import ALGORITHMS, DOMAINS
from benchmark.runner import CellRequest, make_instance, missing_requirements, prepare_domain, resolve, run_cell
from benchmark.steps import step_view
from benchmark.store import Store


@dataclass
class NoConfig:
    """No fields."""


DOMAIN_NAMES = DOMAINS.names()
ALGO_NAMES = ALGORITHMS.names()
PRESET = "smoke"
VOLATILE = {"wall_s"}  # metrics that are timings, not results


def _prepare(name: str, cache) -> tuple[Domain, dict]:
    cell = resolve(CellRequest("sft", name, preset=PRESET))
    domain, stats, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return domain, stats


def _instance(name: str, cache, condition: str = "default", seed: int = 0) -> tuple[Domain, DomainInstance]:
    domain, _ = _prepare(name, cache)
    budget = type(domain).budget(PRESET)
    inst, _, _ = make_instance(domain, CONDITIONS[condition], budget, seed, torch.device("cpu"))
    return domain, inst


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# domains
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_domain_contract(name: str, cache) -> None:
    domain, stats = _prepare(name, cache)
    spec = domain.spec
    assert spec.name == name
    assert set(spec.capabilities) <= set(CAPABILITIES), "unknown capability declared"
    assert spec.lr > 0 and spec.batch_size > 0 and spec.horizon >= 1
    assert isinstance(domain.reference, Policy)
    assert not any(p.requires_grad for p in domain.reference.parameters()), "reference must be frozen"
    for ctx in (domain.train_contexts, domain.eval_contexts):
        assert isinstance(ctx, Batch) and len(ctx) > 0
        for f in spec.context_fields:
            assert f in ctx, f"context field {f} missing"
    for preset in ("smoke", "quick", "standard", "full"):
        type(domain).config(preset)
        assert type(domain).budget(preset).steps > 0
    # reference statistics: the best-of-N target is strictly above the reference's mean (the scale)
    for split in stats["splits"].values():
        assert split["target"] > split["ref_mean"]
    assert type(domain).context_identity, "a domain names the context fields that identify a context"


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_offline_pool(name: str, cache) -> None:
    domain, _ = _prepare(name, cache)
    pool = domain.pool
    m = len(pool.samples)
    assert m > 0 and len(pool.context_index) == m and len(pool.source) == m
    assert int(pool.context_index.max()) < len(pool.contexts) and int(pool.context_index.min()) >= 0
    assert int(pool.source.max()) < len(pool.sources)
    assert pool.components.shape == (m, len(domain.oracle.component_names))
    assert torch.isfinite(pool.components).all()
    for f in domain.spec.sample_fields:
        assert f in pool.samples, f"sample field {f} missing from the pool"
    # the stored components are what the oracle says
    idx = torch.arange(min(m, 16))
    again = domain.oracle.components(pool.contexts[pool.context_index[idx]], pool.samples[idx])
    torch.testing.assert_close(again.float(), pool.components[idx].float())


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_policy_contract(name: str, cache) -> None:
    domain, _ = _prepare(name, cache)
    ref = domain.reference
    policy = domain.make_policy()
    assert isinstance(policy, Policy) and policy is not ref
    assert any(p.requires_grad for p in policy.parameters())
    ctx = domain.train_contexts[:3]
    samples = policy.sample(ctx, 2, generator=_gen(1))
    assert isinstance(samples, Batch) and len(samples) == 6
    for f in domain.spec.sample_fields:
        assert f in samples
    # sampling is a function of the generator
    again = policy.sample(ctx, 2, generator=_gen(1))
    for k in samples.tensors:
        torch.testing.assert_close(samples.tensors[k], again.tensors[k])
    rep = ctx.repeat(2)
    noise = policy.draw_noise(rep, samples, generator=_gen(2))
    lp = policy.log_prob(rep, samples, noise=noise)
    assert lp.shape == (6,) and torch.isfinite(lp).all()
    # a fresh copy equals the reference: ρ = 0 on common random numbers
    lp_ref = ref.log_prob(rep, samples, noise=noise)
    torch.testing.assert_close(lp.detach(), lp_ref, atol=1e-4, rtol=1e-4)
    # the same noise gives the same value (deterministic scoring)
    torch.testing.assert_close(policy.log_prob(rep, samples, noise=noise).detach(), lp.detach())
    # differentiable
    lp.sum().backward()
    assert any(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in policy.parameters())
    # step view (native or the horizon-1 fallback): its log-probs sum to log_prob unless that is a surrogate
    steps, mask = policy.step_log_prob(rep, samples, noise=noise)
    assert steps.shape == mask.shape and steps.shape[0] == 6
    if not domain.spec.surrogate_logp:
        torch.testing.assert_close(steps.sum(-1).detach(), lp.detach(), atol=1e-3, rtol=1e-4)
    size = policy.size(samples)
    assert size.shape == (6,) and (size > 0).all()
    loss = policy.mle_loss(rep, samples, generator=_gen(3))
    assert loss.shape == (6,) and torch.isfinite(loss).all()


@pytest.mark.parametrize("name", [n for n in DOMAIN_NAMES])
def test_reset_capability(name: str, cache) -> None:
    domain, _ = _prepare(name, cache)
    policy = domain.reference
    ctx = domain.train_contexts[:4]
    samples = policy.sample(ctx, 1, generator=_gen(0))
    if "reset" not in domain.spec.capabilities:
        with pytest.raises(NotImplementedError):
            policy.rollin(samples, torch.full((4,), 0.5))
        return
    start = policy.rollin(samples, torch.full((4,), 0.5))
    cont = policy.sample(ctx, 1, generator=_gen(1), start=start)
    assert len(cont) == 4
    for f in domain.spec.sample_fields:
        assert cont.tensors[f].shape == samples.tensors[f].shape


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_step_view_is_tensors_shaped_as_declared(name: str, cache) -> None:
    domain, inst = _instance(name, cache)
    spec = domain.spec
    ctx = domain.train_contexts[:3]
    samples = inst.reference.sample(ctx, 2, generator=_gen(4))
    view = step_view(inst, ctx.repeat(2), samples, inst.reference)
    b, t = view.mask.shape
    assert b == 6 and 1 <= t <= spec.horizon and (t > 1) == ("steps" in spec.capabilities)
    for field in ("obs", "action", "next_obs", "done", "mask", "timestep", "cond", "log_prob"):
        assert isinstance(getattr(view, field), torch.Tensor), field
    assert tuple(view.obs.shape) == (b, t, *spec.obs_shape) and view.next_obs.shape == view.obs.shape
    assert tuple(view.action.shape) == (b, t, *spec.action_shape)
    assert tuple(view.cond.shape) == (b, *spec.cond_shape)
    assert view.done.shape == view.timestep.shape == view.log_prob.shape == (b, t)
    if spec.action_kind == "discrete":
        assert not view.action.is_floating_point() and int(view.action.max()) < spec.n_actions
    assert (view.done & ~view.mask).sum() == 0, "a done step is a valid step"
    assert torch.isfinite(view.log_prob).all() and (view.log_prob[~view.mask] == 0).all()


@pytest.mark.parametrize("name", DOMAIN_NAMES)
@pytest.mark.parametrize("kind", list(SCORER_KINDS))
def test_scorer_contract(name: str, kind: str, cache) -> None:
    domain, inst = _instance(name, cache)
    ctx = domain.train_contexts[:4]
    samples = domain.reference.sample(ctx, 1, generator=_gen(0))
    shape = (4,) if kind in ("reward", "value") else tuple(step_view(inst, ctx, samples).mask.shape)
    for k in (1, 3):
        scorer = inst.make_scorer(kind, ensemble=k)
        assert isinstance(scorer, Scorer) and scorer.kind == kind
        out = scorer(ctx) if kind == "value" else scorer(ctx, samples)
        assert tuple(out.shape) == ((k, *shape) if k > 1 else shape) and torch.isfinite(out).all()
        out.sum().backward()
        assert any(p.grad is not None for p in scorer.parameters())
    members = inst.make_scorer(kind, ensemble=2).members
    assert any(not torch.equal(a, b) for a, b in zip(members[0].parameters(), members[1].parameters())), \
        "ensemble members are initialised independently"


class NeedsCapability(Algorithm):
    """Requires a capability the domain under test lacks (set per test)."""

    name = "test-needs-capability"
    Config = NoConfig
    requires = frozenset({"online"})

    def train(self, ctx, cfg):
        raise AssertionError("an n/a cell must not train")


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_a_missing_capability_makes_the_cell_na_with_its_name(name: str, home, cache) -> None:
    domain, _ = _prepare(name, cache)
    lacking = sorted(set(CAPABILITIES) - set(domain.spec.capabilities))[0]
    needs = type("Needs", (NeedsCapability,), {"requires": frozenset({f"capability:{lacking}", "online"})})
    ALGORITHMS.add(NeedsCapability.name, needs)
    try:
        rec = run_cell(resolve(CellRequest(NeedsCapability.name, name, preset=PRESET)),
                       store=Store(home / "s.sqlite"), cache=cache)
    finally:
        ALGORITHMS.remove(NeedsCapability.name)
    assert rec.status == "na" and rec.reason == f"domain {name} lacks capability:{lacking}"


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_feedback_channel(name: str, cache) -> None:
    domain, inst = _instance(name, cache)
    ch = inst.feedback
    ctx = domain.train_contexts[:4]
    a = domain.reference.sample(ctx, 1, generator=_gen(0))
    b = domain.reference.sample(ctx, 1, generator=_gen(1))
    labels = ch.compare(ctx, a, b)
    assert labels.shape == (4,)
    assert all(math.isnan(x) or x in (0.0, 0.5, 1.0) for x in labels.tolist())
    assert ch.rate(ctx, a).shape == (4,)
    ranks = ch.rank(ctx, [a, b, a])
    assert ranks.shape == (4, 3) and sorted(ranks[0].tolist()) == [0, 1, 2]
    assert ch.used == 4 + 4 + 4 * 2
    with pytest.raises(FeedbackBudgetExceeded):
        while True:
            ch.compare(ctx, a, b)
    assert ch.used <= ch.budget
    if inst.judge is not None:
        p = inst.judge.compare(ctx, a, b)
        assert p.shape == (4,) and ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("name", DOMAIN_NAMES)
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_offline_data_per_condition(name: str, condition: str, cache) -> None:
    domain, _ = _prepare(name, cache)
    cond = CONDITIONS[condition]
    if why := condition_mismatch(domain.pool, cond, name):  # e.g. a dataset kind of another domain's pool
        assert cond.pool_part in why and name in why
        with pytest.raises(ValueError, match=cond.pool_part):
            make_offline_data(domain.pool, domain.oracle.weights,
                              RaterPopulation.build(domain.oracle.weights, cond.raters), cond, name)
        return
    pop = RaterPopulation.build(domain.oracle.weights, cond.raters)
    data = make_offline_data(domain.pool, domain.oracle.weights, pop, cond, name)
    assert len(data.pairs) > 0 and len(data.singles) > 0 and len(data.demos) > 0
    assert set(data.singles.label.unique().tolist()) <= {0.0, 1.0}
    assert ((data.pairs.strength > 0.0) & (data.pairs.strength <= 1.0)).all()
    # same (domain, condition) → the same dataset
    again = make_offline_data(domain.pool, domain.oracle.weights, pop, cond, name)
    for k in data.pairs.chosen.tensors:
        torch.testing.assert_close(data.pairs.chosen.tensors[k], again.pairs.chosen.tensors[k])


# ---------------------------------------------------------------------------------------------
# algorithms × domains
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_algorithm_declaration(algo: str) -> None:
    cls = ALGORITHMS.get(algo)
    assert cls.name == algo
    assert set(cls.requires) <= set(REQUIREMENTS), f"unknown requirement in {cls.requires}"
    cls.Config()  # defaults construct
    assert cls.__doc__ or __import__(cls.__module__).__doc__


@pytest.mark.parametrize("domain", DOMAIN_NAMES)
@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_cell_runs_within_budget_and_is_deterministic(algo: str, domain: str, home, cache) -> None:
    store = Store(home / "store.sqlite")
    cell = resolve(CellRequest(algo, domain, preset=PRESET, seed=3))
    rec = run_cell(cell, store=store, cache=cache)
    assert rec.status in ("done", "na"), rec.reason
    if rec.status == "na":
        assert rec.reason, "an n/a cell needs a written reason"
        return
    m = rec.metrics
    assert all(math.isfinite(v) for v in m.values()), "every stored metric is finite"
    for k in ("gold_reward", "win_rate", "normalized_score", "gold_gain"):
        assert k in m, k
    assert ("kl_to_ref" in m) != ("elbo_gap" in m), "exactly one of a KL and a surrogate gap"
    assert m["score_version"] == SCORE_VERSION
    assert 0.0 <= m["win_rate"] <= 1.0
    assert rec.feedback_used <= cell.budget.feedback
    assert rec.train_steps <= cell.budget.steps
    assert rec.online_samples <= cell.budget.online_samples
    again = run_cell(cell, store=store, cache=cache, force=True)
    assert {k: v for k, v in again.metrics.items() if k not in VOLATILE} == {
        k: v for k, v in m.items() if k not in VOLATILE}, "same seed, same config → same metrics"


@pytest.mark.parametrize("domain", DOMAIN_NAMES)
@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_learning_direction(algo: str, domain: str, cache) -> None:
    """Training on the condition's labels beats training on the same labels reversed on at least one
    of the check's signals (``benchmark.checks``): this fails for an algorithm that swaps chosen and
    rejected, inverts a label or flips a sign. An algorithm that declares ``trains = False`` must
    move nothing."""
    dom, _ = _prepare(domain, cache)
    cell = resolve(CellRequest(algo, domain, preset=PRESET))
    checked = dataclasses.replace(cell.algo_cfg, **cell.algo_cls.check_overrides)  # the config the check trains
    if missing := missing_requirements(cell.algo_cls, make_instance(dom, CONDITIONS["default"], cell.budget, 0,
                                                                    torch.device("cpu"))[0], checked):
        pytest.skip(f"n/a: {missing}")
    result = learning_direction(cell.algo_cls, cell.algo_cfg, dom, CONDITIONS["default"], cell.budget)
    assert result.probes >= 8
    if not cell.algo_cls.trains:
        assert not result.moved, f"{algo} declares trains = False but moved: {result.true}, {result.flipped}"
        return
    assert result.learns_forward, (
        f"{algo} on {domain} learns backwards: with the true labels {result.true}, with reversed labels "
        f"{result.flipped}")

"""An algorithm cannot reach the oracle, the evaluation, the store or free labels from what it is handed.

Each test runs a probe algorithm through the real runner (``run_cell``) on the smoke preset and
records what it could reach or do from inside ``train``. ``walk`` follows attributes, slots,
containers, closures, bound methods (``__self__``/``__func__``), ``__wrapped__`` and partials —
the casual routes; deliberate ones (``gc``, ``sys.modules``, frames) are out of scope in-process
(docs/design.md §2, threat model).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from benchmark.api import Algorithm, BudgetExceeded, Policy, RunContext
from benchmark.domain import Domain, OfflinePool, Oracle
from benchmark.evaluation import Evaluator
from benchmark.feedback import RaterChannel
from benchmark.progress import Progress
from benchmark.registry import ALGORITHMS, DOMAINS
from benchmark.runner import CellRequest, prepare_domain, resolve, run_cell
from benchmark.store import Store

FOUND: dict[str, Any] = {}
FORBIDDEN_TYPES: tuple[type, ...] = (Oracle, Evaluator, Domain, OfflinePool, RaterChannel, Store, sqlite3.Connection)
ATOMS = (str, bytes, int, float, bool, complex, type(None), torch.device, torch.dtype, torch.Generator, range)


@dataclass
class NoCfg:
    pass


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The objects reachable from ``obj`` in one casual step, with a label."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"[{k!r}]", v
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield f"[{i}]", v
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield ".args", obj.args
        yield ".keywords", obj.keywords
        return
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
        return
    if isinstance(obj, types.FunctionType):
        for i, cell in enumerate(obj.__closure__ or ()):
            with contextlib.suppress(ValueError):  # an empty cell
                yield f".<closure {obj.__code__.co_freevars[i]}>", cell.cell_contents
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
        if hasattr(obj, "__wrapped__"):
            yield ".__wrapped__", obj.__wrapped__
        return
    if hasattr(obj, "__wrapped__"):
        yield ".__wrapped__", obj.__wrapped__
    if hasattr(obj, "__dict__"):
        for k, v in vars(obj).items():
            yield f".{k}", v
    for klass in type(obj).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                yield f".{slot}", getattr(obj, slot)


def walk(root: Any, name: str, forbidden_ids: dict[int, str], forbidden_ptrs: dict[int, str]) -> list[str]:
    """Paths from ``root`` to anything forbidden (by type, by identity, or by tensor storage)."""
    found, seen, stack = [], set(), [(name, root)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, (*ATOMS, type, types.ModuleType)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, FORBIDDEN_TYPES):
            found.append(f"{path}: {type(obj).__name__}")
            continue
        if id(obj) in forbidden_ids:
            found.append(f"{path}: {forbidden_ids[id(obj)]}")
            continue
        if isinstance(obj, torch.Tensor):
            if obj.numel() and obj.untyped_storage().data_ptr() in forbidden_ptrs:
                found.append(f"{path}: shares storage with {forbidden_ptrs[obj.untyped_storage().data_ptr()]}")
            continue
        stack.extend((path + label, child) for label, child in _children(obj))
    return found


def _secrets(domain: Domain) -> tuple[dict[int, str], dict[int, str]]:
    ids = {id(domain.reference): "the evaluator's reference policy",
           id(domain.eval_contexts): "the evaluation contexts"}
    ptrs = {}
    for name, t in domain.eval_contexts.tensors.items():
        ptrs[t.untyped_storage().data_ptr()] = f"evaluation contexts[{name}]"
    pool = domain.pool
    ptrs[pool.components.untyped_storage().data_ptr()] = "the pool's oracle components"
    if pool.step_rewards is not None:
        ptrs[pool.step_rewards.untyped_storage().data_ptr()] = "the pool's step rewards"
    if pool.trajectories is not None:
        for key in ("rewards", "infos/success", "quality", "ref_scores"):
            if key in pool.trajectories:
                ids[id(pool.trajectories[key])] = f"trajectories[{key}]"
                ptrs[pool.trajectories[key].untyped_storage().data_ptr()] = f"trajectories[{key}]"
    for attr in ("sim",):
        if hasattr(domain, attr):
            ids[id(getattr(domain, attr))] = f"the domain's {attr}"
    return ids, ptrs


class Walker(Algorithm):
    """Walks everything reachable from ``ctx`` and from what its factories return."""

    name = "test-walker"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        ids, ptrs = FOUND["secrets"]
        policy = ctx.domain.make_policy()
        roots = {"ctx": ctx, "make_policy()": policy, "make_scorer('reward')": ctx.domain.make_scorer("reward"),
                 "make_scorer('value')": ctx.domain.make_scorer("value")}
        FOUND["paths"] = [p for name, root in roots.items() for p in walk(root, name, ids, ptrs)]
        return policy


class Cheater(Algorithm):
    """Tries the routes found on review, recording what each one gave."""

    name = "test-cheater"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        d, out = ctx.domain, {}
        contexts = d.train_contexts[:8]
        a = ctx.sample(d.reference, contexts[:1])
        b = ctx.sample(d.reference, contexts)
        used = d.feedback.used
        try:  # one item against eight, charged as one?
            out["broadcast_labels"] = len(d.feedback.compare(contexts, a, b))
        except ValueError as e:
            out["broadcast_error"] = str(e)
        out["broadcast_charged"] = d.feedback.used - used
        for attr in ("used", "budget"):
            try:
                setattr(d.feedback, attr, 0 if attr == "used" else 10**9)
                out[f"{attr}_writable"] = True
            except AttributeError:
                out[f"{attr}_writable"] = False
        policy = d.make_policy()
        before = ctx.samples_used
        policy.sample(contexts, 2, generator=ctx.generator)  # not through ctx.sample
        out["direct_samples_counted"] = ctx.samples_used - before
        try:
            while True:
                d.reference.sample(contexts, 4, generator=ctx.generator)
        except BudgetExceeded:
            out["budget_enforced_on_direct_sampling"] = True
        out["factories_bound_to_domain"] = [n for n in ("make_policy", "make_scorer", "transitions")
                                            if isinstance(getattr(getattr(d, n), "__self__", None), Domain)]
        traj = d.offline.trajectories or {}
        out["trajectory_fields"] = sorted(traj)
        sim = getattr(policy, "simulator", None)
        if sim is not None:
            out["simulator_has_replay"] = hasattr(sim, "replay")
            try:
                sim.rollout(contexts[:1], policy.rollout_act(generator=ctx.generator), record=True)
                out["recorded_rewards"] = True
            except TypeError:
                out["recorded_rewards"] = False
            try:  # a rollout straight from the simulator, not through a (metered) Policy.sample
                sim.rollout(contexts[:1], policy.rollout_act(generator=ctx.generator))
                out["direct_rollout"] = "ran"
            except PermissionError:
                out["direct_rollout"] = "refused"
            before = ctx.samples_used  # a policy of the algorithm's own, with no meter attached
            try:  # the budget is spent by now (above), so a charge is refused
                _OwnPolicy(sim, policy.rollout_act(generator=ctx.generator)).sample(contexts[:2], 1,
                                                                                   generator=ctx.generator)
                out["own_policy_charged"] = ctx.samples_used - before
            except BudgetExceeded:
                out["own_policy_charged"] = "over budget"
        FOUND["cheater"] = out
        return policy


class _OwnPolicy(Policy):
    """A policy an algorithm builds itself around a simulator: no meter is attached to it."""

    def __init__(self, simulator, act):
        super().__init__()
        self.simulator, self.act = simulator, act

    def sample(self, contexts, num=1, *, generator, start=None):
        return self.simulator.rollout(contexts.repeat(num), self.act)

    def log_prob(self, contexts, samples, *, noise=None):
        raise NotImplementedError


@pytest.fixture()
def probes() -> Iterator[None]:
    for cls in (Walker, Cheater):
        ALGORITHMS.add(cls.name, cls)
    yield
    for cls in (Walker, Cheater):
        ALGORITHMS.remove(cls.name)
    FOUND.clear()


def _domain(name: str, cache) -> Domain:
    cell = resolve(CellRequest("sft", name, preset="smoke"))
    return prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())[0]


@pytest.mark.parametrize("name", DOMAINS.names())
def test_nothing_secret_is_reachable_from_ctx(name: str, probes, home, cache) -> None:
    domain = _domain(name, cache)
    FOUND["secrets"] = _secrets(domain)
    rec = run_cell(resolve(CellRequest("test-walker", name, preset="smoke")), store=Store(home / "s.sqlite"),
                   cache=cache)
    assert rec.status == "done", rec.reason
    assert FOUND["paths"] == [], "reachable from inside an algorithm:\n" + "\n".join(FOUND["paths"][:20])


@pytest.mark.parametrize("name", DOMAINS.names())
def test_the_routes_found_on_review_are_closed(name: str, probes, home, cache) -> None:
    rec = run_cell(resolve(CellRequest("test-cheater", name, preset="smoke")), store=Store(home / "s.sqlite"),
                   cache=cache)
    assert rec.status == "done", rec.reason
    out = FOUND["cheater"]
    assert "broadcast_labels" not in out and "one context per item" in out["broadcast_error"]
    assert out["broadcast_charged"] == 0
    assert out["used_writable"] is False and out["budget_writable"] is False
    assert out["direct_samples_counted"] == 16, "policy.sample called directly is charged like ctx.sample"
    assert out["budget_enforced_on_direct_sampling"] is True
    assert out["factories_bound_to_domain"] == []
    assert not {"rewards", "infos/success", "quality", "ref_scores"} & set(out["trajectory_fields"])
    if "simulator_has_replay" in out:
        assert out["simulator_has_replay"] is False and out["recorded_rewards"] is False
        assert out["direct_rollout"] == "refused", "a simulator rollout outside Policy.sample is not counted"
        assert out["own_policy_charged"] in (2, "over budget"), "a policy the algorithm builds is charged in training"
    assert rec.online_samples == rec.metrics["online_samples_used"] <= resolve(
        CellRequest("test-cheater", name, preset="smoke")).budget.online_samples


class Tamperer(Algorithm):
    """Changes the evaluator's reference through a deliberate route (the runner's module state)."""

    name = "test-tamperer"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        import benchmark.runner as runner

        for domain, _ in runner._LOADED.values():
            with torch.no_grad():
                next(domain.reference.parameters()).add_(1.0)
        return ctx.domain.make_policy()


def test_a_changed_evaluator_reference_fails_the_cell(home, cache) -> None:
    ALGORITHMS.add(Tamperer.name, Tamperer)
    try:
        domain = _domain("text", cache)
        saved = {k: v.clone() for k, v in domain.reference.state_dict().items()}
        rec = run_cell(resolve(CellRequest("test-tamperer", "text", preset="smoke")), store=Store(home / "s.sqlite"),
                       cache=cache)
        assert rec.status == "failed" and "reference policy changed" in rec.reason
    finally:
        ALGORITHMS.remove(Tamperer.name)
        domain.reference.load_state_dict(saved)  # the prepared domain is shared by the session

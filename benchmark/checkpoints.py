"""Over-optimisation made visible: the gold reward against the KL to the reference during training.

Gao et al. 2023 ("Scaling laws for reward model overoptimization") plot the gold reward of a policy
against its KL from the initial policy as training proceeds: a proxy that is optimised too far shows
as a curve that rises, peaks and falls. The runner draws that curve for **every cell**, cheaply:

- **when**: after the optimiser steps at the fractions :data:`FRACTIONS` of the cell's step budget
  (``RunContext.on_step``), and once more on the returned policy;
- **what**: the latest policy the algorithm built with ``make_policy()`` (the one in training; a
  method that trains a policy of its own class is seen through its ``make_policy`` base), copied,
  in evaluation mode, sampled in a fresh ``contextvars`` context with no meter (the probe's samples
  are the runner's, not charged to the cell) and with the global torch RNG saved and restored, so
  that probing changes nothing in training (tested: a cell's metrics are the same with and without);
- **where**: the first :data:`PROBE_CONTEXTS` held-out evaluation contexts, one sample each, paired
  with the reference's sample from a generator in the same state (common random numbers);
- **stored** as the cell's curves ``checkpoint/gold_gain`` (mean gold(π) − gold(π_ref)),
  ``checkpoint/kl`` (k1 estimate of KL(π‖π_ref) where the likelihood is exact, else the surrogate's
  ``elbo_gap``) and ``checkpoint/gold_gain_se`` (the gain's standard error over the probe contexts,
  s_d / √n of the paired differences d_c), each a list of (step, value); plotted by ``bench show``
  (with ±2 SE bars) and, per domain, on the leaderboard page.

A probe is 16 samples: its standard error is often as large as the gains it measures (multi-agent
quick: ≈ 8 against final gains of −4 … +8), and the fixed contexts and draws shift a whole curve
alike. The bars say how far a point can be trusted; differences between checkpoints of one cell,
which share contexts and random numbers, are the curve's signal.

The headline metrics remain the final policy's. The best checkpoint's gold gain is stored as
``oracle_peek/best_checkpoint_gold_gain``: it picks a checkpoint by looking at the oracle, so it is
never a score, only a measure of how much a method lost by training past its best point.
"""

from __future__ import annotations

import contextvars
import copy
import math
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch

from benchmark.api import Policy
from benchmark.data import stable_seed
from benchmark.domain import Domain
from benchmark.evaluation import log_probs_chunked
from benchmark.objectives import kl_k1

FRACTIONS = (0.125, 0.25, 0.5, 0.75)
"""Fractions of the step budget after which the policy in training is probed (plus the end)."""
FEW_STEPS = 20
"""Budgets with fewer steps are probed at the end only (the conformance suite stays fast)."""
PROBE_CONTEXTS = 16
"""Held-out contexts of the probe (one sample each)."""
CURVES = ("checkpoint/gold_gain", "checkpoint/kl", "checkpoint/gold_gain_se")


class ProbePoint(NamedTuple):
    """One checkpoint of the curve."""

    gold_gain: float
    """Mean over the probe contexts of gold(π) − gold(π_ref) on common random numbers."""
    kl: float
    """k1 estimate of KL(π‖π_ref) (exact likelihood), else the surrogate's ELBO gap."""
    gold_gain_se: float
    """Standard error of ``gold_gain``: s_d / √n over the n paired differences (NaN if n < 2)."""


def mean_and_se(diff: torch.Tensor) -> tuple[float, float]:
    """(mean, standard error s/√n) of paired differences ``diff`` [n]; the error is NaN for n < 2."""
    n = diff.numel()
    se = float(diff.double().std() / math.sqrt(n)) if n >= 2 else float("nan")
    return float(diff.double().mean()), se


def checkpoint_steps(total: int) -> set[int]:
    """Steps done (1-based counts) after which to probe, for a budget of ``total`` steps (a budget
    under :data:`FEW_STEPS`, e.g. the smoke preset's, only at its end)."""
    if total < FEW_STEPS:
        return set()
    return {s for s in (round(f * total) for f in FRACTIONS) if 0 < s < total}


class CheckpointProbe:
    """Measures (gold gain, KL) of a policy on the probe contexts (see the module docstring)."""

    def __init__(self, domain: Domain, seed: int):
        self.domain = domain
        self.contexts = domain.eval_contexts[:PROBE_CONTEXTS]
        self.seed = stable_seed("checkpoint", domain.name, seed)
        self.exact = "exact_logp" in domain.spec.capabilities
        self._reference_gold: torch.Tensor | None = None
        self.seconds = 0.0
        """Wall time spent probing so far (the cell's ``timings.checkpoints_s``)."""

    def _gold(self, policy: Policy) -> tuple[torch.Tensor, object]:
        gen = torch.Generator().manual_seed(self.seed)
        samples = policy.sample(self.contexts, 1, generator=gen).to("cpu")
        return self.domain.oracle.gold(self.contexts, samples).double().cpu(), samples

    @torch.no_grad()
    def measure(self, policy: Policy) -> ProbePoint:
        """The gold gain of ``policy`` over the reference on the same draws (and its standard
        error), and its KL or ELBO gap."""
        if self._reference_gold is None:
            self._reference_gold = self._gold(self.domain.reference)[0]
        gold, samples = self._gold(policy)
        noise_gen = torch.Generator().manual_seed(self.seed + 1)
        lp, lr = log_probs_chunked(policy, self.domain.reference, self.contexts, samples, noise_gen,
                                   PROBE_CONTEXTS, self.exact)
        divergence = kl_k1(lp.double(), lr.double()) if self.exact else lp.double() - lr.double()
        gain, se = mean_and_se(gold - self._reference_gold)
        return ProbePoint(gain, float(divergence.mean()), se)

    def probe(self, policy: Policy) -> ProbePoint:
        """:meth:`measure` on a metered-free copy, in a fresh context, with the global RNG restored."""
        start = time.perf_counter()
        snapshot = copy.deepcopy(policy)
        snapshot.attach_meter(None)
        snapshot.eval()
        state = torch.get_rng_state()
        try:
            return contextvars.Context().run(self.measure, snapshot)
        finally:
            torch.set_rng_state(state)
            self.seconds += time.perf_counter() - start


class PolicyTracker:
    """Remembers the policies ``make_policy()`` handed out (weakly); ``latest`` is the one in training."""

    def __init__(self) -> None:
        self._refs: list[weakref.ref] = []

    def wrap(self, factory: Callable[[], Policy]) -> Callable[[], Policy]:
        def make() -> Policy:
            policy = factory()
            self._refs.append(weakref.ref(policy))
            return policy

        return make

    def latest(self) -> Policy | None:
        for ref in reversed(self._refs):
            policy = ref()
            if policy is not None:
                return policy
        return None


def step_hook(probe: CheckpointProbe, tracker: PolicyTracker, total: int,
              record: Callable[[int, ProbePoint], None]) -> Callable[[int], None]:
    """The ``RunContext.on_step`` of a cell: probe the latest policy after each checkpoint step."""
    when = checkpoint_steps(total)

    def on_step(done: int) -> None:
        if done in when:
            policy = tracker.latest()
            if policy is not None:
                record(done, probe.probe(policy))

    return on_step


def add_point(curves: dict[str, list[tuple[int, float]]], step: int, point: ProbePoint) -> None:
    """Append one checkpoint to a cell's curves (its standard error only where it is finite)."""
    for name, value in zip(CURVES, point):
        if name != CURVES[2] or math.isfinite(value):
            curves.setdefault(name, []).append((int(step), float(value)))


def peek_metrics(curves: dict[str, list[tuple[int, float]]]) -> dict[str, float]:
    """``oracle_peek/best_checkpoint_gold_gain`` (and its step) from a cell's checkpoint curve."""
    points = curves.get(CURVES[0], [])
    if not points:
        return {}
    step, best = max(points, key=lambda p: (p[1], -p[0]))
    return {"oracle_peek/best_checkpoint_gold_gain": best, "oracle_peek/best_checkpoint_step": float(step)}

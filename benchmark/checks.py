"""Does an algorithm learn in the direction of its labels? (the conformance suite's check)

A method can run, stay finite and still learn backwards (chosen and rejected swapped, a label
inverted, a sign flipped). The check trains the algorithm twice on the same domain and seed: once
on the condition's labels and once on the same data with **every label reversed**
(``Condition.flipped``: pairs swapped, thumbs inverted, the worst samples as demonstrations, the
feedback channel's and the judge's answers reversed). It then measures, on *probe sets* — the
offline pool's distinct samples split at their median gold reward, which no algorithm sees with
their gold —

    margin(π) = mean_{top half} ρ_π − mean_{bottom half} ρ_π,   ρ_π = log π − log π_ref,

on common random numbers (the same noise draws for every policy and sample). Whatever the
method consumes — offline pairs, thumbs, demonstrations, a reward model trained on either, online
labels from the channel or the judge, per-step rewards — learning from the right labels moves
probability towards the gold-better samples relative to learning from reversed ones, so
``margin(true labels) > margin(reversed labels)``. The signal is a log-likelihood ratio, not a
sampled reward, so it is deterministic and visible after a few optimiser steps. An algorithm that
declares ``trains = False`` (the ``reference``) must leave both margins exactly 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark.api import Algorithm, Budget, Contexts, Policy, RunContext, Samples
from benchmark.conditions import Condition
from benchmark.data import sample_keys, stable_seed
from benchmark.domain import Domain
from benchmark.feedback import gold_utility


@dataclass
class DirectionResult:
    margin: float
    """Probe margin of the policy trained on the true labels."""
    margin_flipped: float
    """Probe margin of the policy trained on reversed labels."""
    probes: int

    @property
    def gap(self) -> float:
        return self.margin - self.margin_flipped


class _NullReporter:
    def advance(self, n: int = 1) -> None:
        pass

    def log(self, step: int, metrics: Any) -> None:
        pass


@dataclass
class Probes:
    """Pool samples in two gold-ordered sets: ``weight`` is +1/n_top for the top half by gold, and
    −1/n_bottom for the bottom half (samples at the median are left out)."""

    contexts: Contexts
    samples: Samples
    weight: Tensor

    def __len__(self) -> int:
        return len(self.samples)


def probe_sets(domain: Domain, limit: int = 512) -> Probes:
    """Up to ``limit`` distinct offline-pool samples (evenly spaced), split at the median gold."""
    pool = domain.pool
    keys = sample_keys(pool.samples)
    first = sorted({k: i for i, k in reversed(list(enumerate(keys)))}.values())
    idx = torch.tensor(first)[torch.linspace(0, len(first) - 1, min(limit, len(first))).round().long()]
    gold = gold_utility(pool.components[idx], domain.oracle.weights)
    median = gold.median()
    top, bottom = gold > median, gold < median
    weight = top.double() / max(int(top.sum()), 1) - bottom.double() / max(int(bottom.sum()), 1)
    keep = top | bottom
    idx, weight = idx[keep], weight[keep]
    return Probes(pool.contexts[pool.context_index[idx]], pool.samples[idx], weight)


@torch.no_grad()
def preference_margin(policy: Policy, reference: Policy, probes: Probes, draws: int = 16, seed: int = 0) -> float:
    """mean ρ(top half by gold) − mean ρ(bottom half), averaged over ``draws`` common noise draws
    (one pass for an exact likelihood)."""
    policy.eval()
    gen = torch.Generator().manual_seed(stable_seed("probe", seed))
    total, n = 0.0, 0
    while n < draws:
        noise = policy.draw_noise(probes.contexts, probes.samples, generator=gen)
        rho = policy.log_prob(probes.contexts, probes.samples, noise=noise) - reference.log_prob(
            probes.contexts, probes.samples, noise=noise)
        total += float((rho.double().cpu() * probes.weight).sum())
        n += 1 if noise is not None else draws
    return total / (draws if noise is not None else 1)


def train_once(algo_cls: type[Algorithm], cfg: Any, domain: Domain, condition: Condition, budget: Budget,
               seed: int, device: torch.device) -> Policy:
    """One training run of ``algo_cls`` outside the store (no evaluation)."""
    from benchmark.runner import make_instance, seed_everything

    seed_everything(stable_seed("cell", seed))
    instance, seals, _ = make_instance(domain, condition, budget, seed, device)
    try:
        ctx = RunContext(domain=instance, budget=budget, generator=torch.Generator().manual_seed(
            stable_seed("train", seed)), device=device, seed=seed, reporter=_NullReporter(), meter=seals.handles[1])
        policy = algo_cls().train(ctx, cfg)
        policy.attach_meter(None)
        return policy
    finally:
        seals.close()


CHECK_STEPS = 12
"""Optimiser steps of each training run of the check (at least; the smoke budgets have 4–6, where a
surrogate-likelihood margin is still within its noise)."""


def learning_direction(algo_cls: type[Algorithm], cfg: Any, domain: Domain, condition: Condition, budget: Budget,
                       seed: int = 0, device: torch.device | str = "cpu") -> DirectionResult:
    """Margins after training on ``condition``'s labels and on the same labels reversed, each for
    ``max(budget.steps, CHECK_STEPS)`` steps."""
    device = torch.device(device)
    budget = dataclasses.replace(budget, steps=max(budget.steps, CHECK_STEPS))
    probes = probe_sets(domain)
    margins = []
    for cond in (condition, condition.flipped()):
        policy = train_once(algo_cls, cfg, domain, cond, budget, seed, device)
        margins.append(preference_margin(policy, domain.reference, probes, seed=seed))
    return DirectionResult(margins[0], margins[1], len(probes))


def context_rows(contexts: Contexts, fields: tuple[str, ...]) -> list[tuple]:
    """Each context's identity (the values of ``fields``) as a hashable row."""
    flat = [contexts.tensors[f].reshape(len(contexts), -1).tolist() for f in fields]
    return [tuple(v for col in flat for v in col[i]) for i in range(len(contexts))]


def heldout_overlap(domain: Domain) -> float:
    """Share of evaluation contexts whose identity (``Domain.context_identity``) also occurs among
    the training contexts or the offline pool's contexts (0 for a held-out split)."""
    fields = type(domain).context_identity
    if not fields:
        raise ValueError(f"domain {domain.name} declares no context_identity")
    seen = set(context_rows(domain.train_contexts, fields)) | set(context_rows(domain.pool.contexts, fields))
    rows = context_rows(domain.eval_contexts, fields)
    return sum(r in seen for r in rows) / max(len(rows), 1)

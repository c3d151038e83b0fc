"""Does an algorithm learn in the direction of its labels? (the conformance suite's check)

A method can run, stay finite and still learn backwards (chosen and rejected swapped, a label
inverted, a sign flipped). The check trains the algorithm twice on the same domain and seed: once
on the condition's labels and once on the same data with **every label reversed**
(``Condition.flipped``: pairs swapped, thumbs inverted, the worst samples as demonstrations, the
feedback channel's and the judge's answers reversed), and compares one signal on *probes* — samples
with their gold rewards, which no algorithm sees with their gold:

    margin(π) = Σ_i w_i·ρ_π(x_i, y_i),   ρ_π = log π − log π_ref,   Σ_{w>0} w = −Σ_{w<0} w = 1,

on common random numbers. Learning from the right labels must give the larger margin.

- ``pool``: the **offline pool's** distinct samples split at their median gold (w = ±1/n per half):
  what offline methods move likelihood towards.
- ``on_policy`` (exact-likelihood domains): the **reference's own samples** on training contexts,
  w ∝ their gold centred within each context; to first order the margin is then the change of the
  expected gold reward (Cov_{π_ref}(ρ, g) ≈ Δ E_π[g]), which online methods move.
- ``paired_gold_gain`` (surrogate-likelihood domains, where a single sample's ρ is too noisy for that
  argument): mean gold of the policy's samples minus the reference's on training contexts, drawn
  on common random numbers.

Found on this benchmark: neither kind of probe alone holds for every method in a few steps (an
online method moves likelihood towards its own high-reward samples, which can lower it on the
pool's best ones; IQL's actor follows the offline data before its critics track), so the check
requires the true labels to win on **at least one** signal; a method that learns backwards loses
on all of them (the swapped, inverted and sign-flipped mutants in ``benchmarks/mutants.py`` do, on
every domain). Signals are log-likelihood ratios or paired gold, deterministic given the seed.

Each run gets ``max(preset steps, Algorithm.check_steps)`` steps with ``Algorithm.check_overrides``
applied to its config (a method whose policy moves only after a learned reward model or critic
declares more steps, or a faster target network). An algorithm that declares ``trains = False`` (the
``reference``) must leave every signal exactly 0.
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
    true: dict[str, float]
    """Each signal of the policy trained on the true labels."""
    flipped: dict[str, float]
    """Each signal of the policy trained on reversed labels."""
    probes: int

    @property
    def gaps(self) -> dict[str, float]:
        return {k: self.true[k] - self.flipped[k] for k in self.true}

    @property
    def learns_forward(self) -> bool:
        """At least one signal is larger with the true labels (see the module docstring)."""
        return any(g > 0 for g in self.gaps.values())

    @property
    def moved(self) -> bool:
        return any(v != 0 for v in (*self.true.values(), *self.flipped.values()))


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


@torch.no_grad()
def onpolicy_probes(domain: Domain, contexts: int = 48, k: int = 4, seed: int = 0) -> Probes:
    """The reference's own samples on training contexts, ``k`` per context, weighted by their gold
    reward centred within the context (normalised to unit total weight on each side)."""
    ctx = domain.train_contexts[:contexts]
    samples = domain.reference.sample(ctx, k, generator=torch.Generator().manual_seed(stable_seed("probes", seed)))
    rep = ctx.repeat(k)
    gold = domain.oracle.gold(rep, samples).double().view(-1, k)
    centred = (gold - gold.mean(1, keepdim=True)).flatten()
    pos, neg = centred.clamp(min=0), (-centred).clamp(min=0)
    weight = pos / pos.sum().clamp_min(1e-12) - neg / neg.sum().clamp_min(1e-12)
    keep = torch.nonzero(centred != 0).flatten()
    return Probes(rep[keep], samples[keep], weight[keep])


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
    keep = torch.nonzero(top | bottom).flatten()
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
        rho = (policy.step_log_prob(probes.contexts, probes.samples, noise=noise)[0].sum(-1)
               - reference.step_log_prob(probes.contexts, probes.samples, noise=noise)[0].sum(-1))
        total += float((rho.double().cpu() * probes.weight).sum())
        n += 1 if noise is not None else draws
    return total / (draws if noise is not None else 1)


@torch.no_grad()
def paired_gold_gain(policy: Policy, domain: Domain, contexts: int = 48, k: int = 2, seed: int = 0) -> float:
    """mean gold(π's samples) − mean gold(π_ref's samples) on training contexts, both drawn from
    generators in the same state (common random numbers: a deterministic sampler, such as DDIM at
    η = 0, pairs each policy sample with the reference sample from the same noise)."""
    policy.eval()
    ctx = domain.train_contexts[:contexts]
    rep = ctx.repeat(k)
    gold = []
    for model in (policy, domain.reference):
        gen = torch.Generator().manual_seed(stable_seed("paired-probe", seed))
        gold.append(domain.oracle.gold(rep, model.sample(ctx, k, generator=gen)).double())
    return float((gold[0] - gold[1]).mean())


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




def margins(policy: Policy, domain: Domain, probes: dict[str, Probes], seed: int) -> dict[str, float]:
    """The check's signals of one trained policy (see the module docstring)."""
    out = {name: preference_margin(policy, domain.reference, p, seed=seed) for name, p in probes.items()}
    if domain.spec.surrogate_logp:
        out["paired_gold_gain"] = paired_gold_gain(policy, domain, seed=seed)
    return out


def learning_direction(algo_cls: type[Algorithm], cfg: Any, domain: Domain, condition: Condition, budget: Budget,
                       seed: int = 0, device: torch.device | str = "cpu") -> DirectionResult:
    """The signals after training on ``condition``'s labels and on the same labels reversed, each run
    for ``max(budget.steps, algo_cls.check_steps)`` steps with ``algo_cls.check_overrides``."""
    device = torch.device(device)
    budget = dataclasses.replace(budget, steps=max(budget.steps, algo_cls.check_steps))
    cfg = dataclasses.replace(cfg, **algo_cls.check_overrides)
    probes = {"pool": probe_sets(domain)}
    if not domain.spec.surrogate_logp:
        probes["on_policy"] = onpolicy_probes(domain)
    runs = []
    for cond in (condition, condition.flipped()):
        policy = train_once(algo_cls, cfg, domain, cond, budget, seed, device)
        runs.append(margins(policy, domain, probes, seed))
    return DirectionResult(runs[0], runs[1], min(len(p) for p in probes.values()))


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

"""Diffusion-DRO — Diffusion Denoising Ranking Optimization (Wu, Ruan, Tseng, Shuai, NeurIPS 2025, "Ranking-based
Preference Optimization for Diffusion Models from Implicit User Feedback", arXiv 2510.18353; code
basiclab/DiffusionDRO).

Inverse RL as ranking: an *expert set* (the paper: the top-500 Pick-a-Pic images by PickScore or HPSv2, i.e.
implicit feedback) is ranked above the policy's own samples of the same prompts, drawn online into a replay
buffer. For an expert y_e and a policy sample y_p of context x, scored on common noise (t, ε),

    L = max(0, γ − β·(ρ_θ(x, y_e) − ρ_θ(x, y_p))),   ρ_θ = log π_θ − log π_ref

(``benchmark.objectives.denoising_ranking_loss``). With the diffusion surrogate log π = −s·‖ε − ε_θ(x_t, t, c)‖²,
ρ = −s·Δ with Δ = ‖ε − ε_θ‖² − ‖ε − ε_ref‖², and L = β·s·max(0, Δ_e − Δ_p + m): the authors' loss
``max(diff + margin, 0)``, ``diff`` = (expert error − reference's) − (policy-sample error − reference's), with
their margin m = γ/(β·s). Their m = 0.001 (in mean-squared-error units) is γ = 1 at β = 0.1 and the image
domain's documented s = 10⁴, which are the defaults (β·h then reads as SLiC's hinge max(0, 1 − βh)). On motion
(x̂₀-prediction) the errors are the model's own x₀ errors, whatever ``log_prob`` scores.

Loop (the authors' ``train.py``): each step draws experts (epoch-shuffled), samples one policy sample per
expert's context from the *sampler* — a copy of the policy re-synced every ``sync_every`` optimiser steps
(their ``buffer_update_steps`` = 16 forward steps with 16-step gradient accumulation: every update, hence our
default 1, where the sampler is the policy itself) — pushes the (context, expert, sample) triples into a replay
buffer that keeps the newest ``buffer_size`` (theirs: 4, the per-device batch), and trains on a batch drawn from
it (without replacement when it holds enough).

Readings and departures (the interface has only ``sample`` and ``log_prob``): the authors keep the sampler's
trajectory and score the policy side at a trajectory point x_t against the sampler's own predicted noise; we
score the final sample re-noised with (t, ε) from ``draw_noise``, shared with the expert (common random numbers,
as Diffusion-DPO's pairs; the authors share t only). The sampler uses the domain's own sampler and guidance
(theirs: DPM-Solver++, 20 steps, guidance 1, perturbed timesteps); no prompt dropout (theirs 0.2), no weight EMA
(they evaluate the EMA; every baseline here returns the last iterate). Experts: the offline demonstrations
(``expert="demos"``, the domains' top samples, the paper's expert set) or the chosen sides of the offline pairs
(``"chosen"``); never the oracle. Online samples: ``prompts`` per step (default a batch), fewer when the budget
would not last (``benchmark.training.prompts_per_step``); once spent, training continues on the buffer.

Domains: the loss uses only log-likelihood ratios, so it runs wherever a domain is ``online``: on text and robot
(exact likelihoods) it is a hinge ranking of demonstrations over the policy's own samples (SPIN-like); the
paper's method is defined for diffusion models only, so those cells are our extension.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.api import Algorithm, Batch, Contexts, Policy, RunContext, Samples
from benchmark.objectives import denoising_ranking_loss
from benchmark.training import optimizer_step, pair_logps, prompts_per_step, should_log

#: What each expert set consumes (``Algorithm.requirements``).
EXPERT_REQUIRES = {
    "demos": frozenset({"online", "offline:demos"}),
    "chosen": frozenset({"online", "offline:pairs"}),
}


@dataclass
class DiffusionDROConfig:
    expert: Literal["demos", "chosen"] = "demos"
    """The expert set: offline demonstrations, or the offline pairs' chosen sides (paper: top-500 images: demos)."""
    beta: float = 0.1
    """β, the scale of the log-ratio gap (paper: 1/s with γ = 0.001, the same hinge ÷ 1000 on image; ours 0.1)."""
    margin: float = 1.0
    """γ, the hinge margin on β·(ρ_e − ρ_p) (paper: 0.001 in squared-error units = 1 at β = 0.1, s = 10⁴)."""
    sync_every: int = 1
    """Optimiser steps between re-syncs of the sampler with the policy (paper: every update, 16 forward steps)."""
    buffer_size: int | None = None
    """Triples the replay buffer keeps, newest first (None: the batch size; paper: 4 = its per-device batch)."""
    prompts: int | None = None
    """Fresh policy samples (one per expert) per step (None: the batch size; fewer if the online budget requires)."""
    batch_size: int | None = None
    """(expert, policy sample) pairs per step (None: the preset's batch size; paper: 4 × 16 accumulation × 4 GPUs)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2; paper: 1e-4 for SD-1.5)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (paper: 1.0)."""

    def __post_init__(self) -> None:
        if self.expert not in EXPERT_REQUIRES:
            raise ValueError(f"unknown expert set {self.expert!r}; use demos or chosen")
        if self.beta <= 0 or self.margin < 0:
            raise ValueError(f"Diffusion-DRO needs beta > 0 and margin >= 0, got {self.beta}, {self.margin}")
        if self.sync_every < 1 or (self.buffer_size is not None and self.buffer_size < 1):
            raise ValueError("sync_every and buffer_size must be >= 1")


@dataclass
class ReplayBuffer:
    """The newest ``capacity`` (context, expert, policy sample) triples (the authors' ``ReplayBuffer``)."""

    capacity: int
    contexts: Contexts | None = None
    expert: Samples | None = None
    policy: Samples | None = None

    def __len__(self) -> int:
        return 0 if self.expert is None else len(self.expert)

    def push(self, contexts: Contexts, expert: Samples, policy: Samples) -> None:
        new = (contexts, expert, policy)
        if len(self):
            new = tuple(Batch.cat([old, b]) for old, b in zip((self.contexts, self.expert, self.policy), new))
        keep = torch.arange(max(len(new[1]) - self.capacity, 0), len(new[1]))
        self.contexts, self.expert, self.policy = (b[keep] for b in new)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Contexts, Samples, Samples]:
        """n triples, without replacement when the buffer holds at least n (as the authors')."""
        size = len(self)
        if n <= size:
            idx = torch.randperm(size, generator=generator)[:n]
        else:
            idx = torch.randint(size, (n,), generator=generator)
        return self.contexts[idx], self.expert[idx], self.policy[idx]


def epochs(n: int, generator: torch.Generator) -> Iterator[int]:
    """Indices 0..n−1 in a fresh random order each epoch (the authors' shuffled expert loader)."""
    while True:
        yield from torch.randperm(n, generator=generator).tolist()


class DiffusionDRO(Algorithm):
    name = "diffusion_dro"
    Config = DiffusionDROConfig
    requires = EXPERT_REQUIRES["demos"]  # the default expert set's; requirements(cfg) per config
    paper = "Wu et al. 2025, Ranking-based Preference Optimization for Diffusion Models from Implicit User Feedback"

    @classmethod
    def requirements(cls, cfg: DiffusionDROConfig) -> frozenset[str]:
        return EXPERT_REQUIRES[cfg.expert]

    def train(self, ctx: RunContext, cfg: DiffusionDROConfig) -> Policy:
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        offline = ctx.domain.offline
        contexts, experts = ((offline.demos.contexts, offline.demos.samples) if cfg.expert == "demos"
                             else (offline.pairs.contexts, offline.pairs.chosen))
        contexts, experts = contexts.to(ctx.device), experts.to(ctx.device)
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        batch = cfg.batch_size or ctx.budget.batch_size
        buffer, order = ReplayBuffer(cfg.buffer_size or batch), epochs(len(experts), ctx.generator)
        sampler = policy if cfg.sync_every == 1 else policy.frozen_copy()
        for step in ctx.train_steps():
            if sampler is not policy and step % cfg.sync_every == 0:
                sampler.load_state_dict(policy.state_dict())  # re-sync the sampler with the current policy
            n = prompts_per_step(ctx, 1, cfg.prompts or batch)
            if n:
                idx = torch.tensor(list(itertools.islice(order, n)))
                buffer.push(contexts[idx], experts[idx], ctx.sample(sampler, contexts[idx], 1))
            if not len(buffer):
                break  # no online sample was affordable
            b_ctx, b_expert, b_policy = buffer.sample(batch, ctx.generator)
            pi_e, pi_p, ref_e, ref_p = pair_logps(policy, reference, b_ctx, b_expert, b_policy, ctx.generator)
            rho_e, rho_p = pi_e - ref_e, pi_p - ref_p
            loss = denoising_ranking_loss(rho_e, rho_p, cfg.beta, cfg.margin).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                gap = (rho_e - rho_p).detach()
                ctx.log(step, loss=float(loss.detach()), rho_gap=float(gap.mean()), fresh=n,
                        ranking_accuracy=float((gap > 0).float().mean()))
        return policy

"""SimPO — Simple Preference Optimization with a reference-free reward (Meng et al., 2024).

    L(θ) = −log σ(β/|y_w|·log π_θ(y_w|x) − β/|y_l|·log π_θ(y_l|x) − γ)

A method file for `bench submit examples/simpo.py`: one Algorithm subclass, its Config, and
what it requires. Defaults: β = 2.0, γ = 0.5 (the paper's γ/β ≈ 0.25 on its Mistral setting).
"""

from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.training import optimizer_step


class SimPO(Algorithm):
    name = "simpo"
    requires = frozenset({"offline:pairs"})
    paper = "Meng et al. 2024, SimPO: Simple Preference Optimization with a Reference-Free Reward"

    @dataclass
    class Config:
        beta: float = 2.0
        """β, the scale of the length-normalised reward (paper: 2.0–2.5)."""
        gamma: float = 0.5
        """γ, the target reward margin (paper: γ/β ≈ 0.25–0.5)."""
        lr_scale: float = 1.0
        """Multiplier on the domain's base learning rate."""

    def train(self, ctx: RunContext, cfg: Config) -> Policy:
        policy, pairs = ctx.domain.make_policy(), ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs))):
            b = pairs.select(idx)
            noise = policy.draw_noise(b.contexts, b.chosen, generator=ctx.generator)  # shared by both
            r_w = policy.log_prob(b.contexts, b.chosen, noise=noise) / policy.size(b.chosen)
            r_l = policy.log_prob(b.contexts, b.rejected, noise=noise) / policy.size(b.rejected)
            loss = -F.logsigmoid(cfg.beta * (r_w - r_l) - cfg.gamma).mean()
            optimizer_step(opt, loss, policy.parameters(), 1.0)
            ctx.log(step, loss=float(loss.detach()))
        return policy

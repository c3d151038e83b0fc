"""KTO — Kahneman–Tversky Optimisation (Ethayarajh et al., 2024), from thumbs up/down alone.

    desirable:   λ_D (1 − σ(β (ρ_θ(x, y) − z₀)))
    undesirable: λ_U (1 − σ(β (z₀ − ρ_θ(x, y))))
    z₀ = clamp(mean ρ_θ(x', y_mismatched), min = 0), detached,

the loss of TRL's ``KTOTrainer`` (``loss_type="kto"``). Defaults β = 0.1, λ_D = λ_U = 1 (the paper's
and TRL's).

Ours: the mismatched pairs (x, y') that estimate z₀ rotate completions *within each sampled
training batch* (context i scored with the batch's sample i+1). TRL builds them once, before
training, by rotating completions by one within consecutive dataset chunks of one batch size
(``_get_kl_dataset``), so its y' are a fixed neighbour's rather than the batch's own; both are the
paper's "mismatched" estimate of the KL term, and ours makes the y' the batch's own completions, as
TRL's docstring recommends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.objectives import kto_loss, kto_reference_point, kto_slope
from benchmark.training import logps_with_reference, optimizer_step, should_log


@dataclass
class KTOConfig:
    beta: float = 0.1
    """β, the KL strength in the value function (paper and TRL: 0.1)."""
    desirable_weight: float = 1.0
    """λ_D, the weight of desirable examples (paper: 1.0)."""
    undesirable_weight: float = 1.0
    """λ_U, the weight of undesirable examples (paper: 1.0)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    batch_size: int | None = None
    """Examples per step (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""


class KTO(Algorithm):
    name = "kto"
    Config = KTOConfig
    requires = frozenset({"offline:singles"})
    paper = "Ethayarajh et al. 2024, KTO"

    def train(self, ctx: RunContext, cfg: KTOConfig) -> Policy:
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        data = ctx.domain.offline.singles
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(data), cfg.batch_size)):
            b = data.select(idx)
            lp, lp_ref, _ = logps_with_reference(policy, reference, b.contexts, b.samples, ctx.generator)
            shifted = b.samples[torch.roll(torch.arange(len(b)), -1)]  # KL pairs: (x_i, y_{i+1})
            with torch.no_grad():
                kl_lp, kl_ref, _ = logps_with_reference(policy, reference, b.contexts, shifted, ctx.generator)
            z0 = kto_reference_point(kl_lp, kl_ref)
            rho = lp - lp_ref
            loss = kto_loss(rho, b.label.to(lp.device), z0, cfg.beta, cfg.desirable_weight,
                            cfg.undesirable_weight).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), z0=float(z0), rho=float(rho.detach().mean()),
                        slope=float(kto_slope(rho.detach(), z0, cfg.beta).mean()))
        return policy

"""DPO — Direct Preference Optimization (Rafailov et al., 2023).

    L(θ) = −E_{(x, y_w, y_l)~D} log σ(β [ρ_θ(x, y_w) − ρ_θ(x, y_l)]),
    ρ_θ(x, y) = log π_θ(y|x) − log π_ref(y|x).

On a diffusion domain the same code is Diffusion-DPO (Wallace et al., 2023): ``log_prob`` is
the ELBO surrogate and chosen/rejected share (t, ε) (``benchmark.training.pair_logps``).
TRL's ``hinge`` (SLiC, Zhao et al. 2023) and ``robust`` (rDPO, Chowdhury et al. 2024) loss types are
options.

Defaults: β = 0.1 and no label smoothing, as TRL's DPOConfig. Ours: the learning rate is the
domain's base rate × ``lr_scale`` (TRL's 1e-6 is for 7B models; our policies are ~10⁵–10⁶
parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.objectives import dpo_loss, hinge_loss, logratio_margin, robust_dpo_loss
from benchmark.training import ReferenceMemo, optimizer_step, pair_logps, should_log


@dataclass
class DPOConfig:
    beta: float = 0.1
    """β, the KL strength of the implicit reward (paper and TRL: 0.1)."""
    loss_type: Literal["sigmoid", "hinge", "robust"] = "sigmoid"
    """sigmoid = DPO, hinge = SLiC, robust = rDPO (TRL's names; paper: sigmoid)."""
    label_smoothing: float = 0.0
    """ε of conservative DPO (``sigmoid``) or rDPO's assumed flip rate (``robust``, < 0.5) (TRL: 0)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    batch_size: int | None = None
    """Pairs per step (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""

    def __post_init__(self) -> None:
        if self.loss_type not in ("sigmoid", "hinge", "robust"):
            raise ValueError(f"unknown loss_type {self.loss_type!r}; use sigmoid, hinge or robust")
        if self.loss_type == "robust" and not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"rDPO's flip rate label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


def preference_loss(h: Tensor, cfg: DPOConfig) -> Tensor:
    """The configured loss of margins h = ρ_w − ρ_l (an unknown ``loss_type`` raises)."""
    if cfg.loss_type == "sigmoid":
        return dpo_loss(h, cfg.beta, cfg.label_smoothing)
    if cfg.loss_type == "hinge":
        return hinge_loss(h, cfg.beta)
    if cfg.loss_type == "robust":
        return robust_dpo_loss(h, cfg.beta, cfg.label_smoothing)
    raise ValueError(f"unknown DPO loss_type {cfg.loss_type!r}; use sigmoid, hinge or robust")


class DPO(Algorithm):
    name = "dpo"
    Config = DPOConfig
    requires = frozenset({"offline:pairs"})
    paper = "Rafailov et al. 2023, Direct Preference Optimization"

    def train(self, ctx: RunContext, cfg: DPOConfig) -> Policy:
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        pairs = ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        memo = ReferenceMemo(len(pairs))  # log π_ref of each pair computed once (exact likelihoods)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected,
                                                  ctx.generator, memo, idx)
            h = logratio_margin(pi_w, pi_l, ref_w, ref_l)
            loss = preference_loss(h, cfg).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), reward_margin=float(cfg.beta * h.detach().mean()),
                        reward_accuracy=float((h.detach() > 0).float().mean()))
        return policy

"""DPO — Direct Preference Optimization (Rafailov et al., 2023).

    L(θ) = −E_{(x, y_w, y_l)~D} log σ(β [ρ_θ(x, y_w) − ρ_θ(x, y_l)]),
    ρ_θ(x, y) = log π_θ(y|x) − log π_ref(y|x).

On a diffusion domain the same code is Diffusion-DPO (Wallace et al., 2023): ``log_prob`` is
the ELBO surrogate and chosen/rejected share (t, ε) (``benchmark.training.pair_logps``).
TRL's ``hinge`` (SLiC) and ``robust`` (rDPO) loss types are options (ALGORITHMS.md card 1a).

Defaults: β = 0.1 and no label smoothing, as TRL's DPOConfig. Ours: the learning rate is the
domain's base rate × ``lr_scale`` (TRL's 1e-6 is for 7B models; our policies are ~10⁵–10⁶
parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.objectives import dpo_loss, hinge_loss, logratio_margin, robust_dpo_loss
from benchmark.training import optimizer_step, pair_logps, should_log


@dataclass
class DPOConfig:
    beta: float = 0.1
    loss_type: Literal["sigmoid", "hinge", "robust"] = "sigmoid"
    label_smoothing: float = 0.0
    """ε of conservative DPO (``sigmoid``) or rDPO's assumed flip rate (``robust``)."""
    lr_scale: float = 1.0
    batch_size: int | None = None
    max_grad_norm: float = 1.0


class DPO(Algorithm):
    name = "dpo"
    Config = DPOConfig
    requires = frozenset({"offline:pairs"})
    paper = "Rafailov et al. 2023, Direct Preference Optimization"

    def train(self, ctx: RunContext, cfg: DPOConfig) -> Policy:
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        pairs = ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected,
                                                  ctx.generator)
            h = logratio_margin(pi_w, pi_l, ref_w, ref_l)
            if cfg.loss_type == "sigmoid":
                loss = dpo_loss(h, cfg.beta, cfg.label_smoothing)
            elif cfg.loss_type == "hinge":
                loss = hinge_loss(h, cfg.beta)
            else:
                loss = robust_dpo_loss(h, cfg.beta, cfg.label_smoothing)
            loss = loss.mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), reward_margin=float(cfg.beta * h.detach().mean()),
                        reward_accuracy=float((h.detach() > 0).float().mean()))
        return policy

"""CPL — Contrastive Preference Learning (Hejna et al., 2024), policies from preferences with no
reward model and no RL.

    A(σ) = α Σ_t log π_θ(a_t|s_t)                         (a segment's "advantage")
    L(θ) = −E log σ(A(σ_w) − λ A(σ_l)) + c_BC · E[−log π_θ(σ_w)]

λ ∈ (0, 1] is the conservative ("contrastive") bias of the reference code's biased BCE; λ = 1 is
the regret-preference likelihood of the paper's derivation. There is no reference policy in the
loss: on whole-sample domains (text, image) CPL is DPO without π_ref, with λ.

Defaults from the paper's MetaWorld configuration: α = 0.1, λ = 0.5, BC coefficient 0. The paper
warm-starts with 200k of its 500k steps of behaviour cloning; our policies start from the domain's
reference, which is already trained by behaviour cloning (robot) or maximum likelihood (text, image),
so ``bc_fraction`` defaults to 0 (ours). Log-probs are those of the domain's step view
(``benchmark.training.sequence_logp``): exact for text and robot, the denoising surrogate on image
(docs/design.md, "which likelihood each algorithm gets").
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.objectives import cpl_loss
from benchmark.training import optimizer_step, sequence_logp, should_log


@dataclass
class CPLConfig:
    alpha: float = 0.1
    """α, the temperature that turns summed log-probs into advantages (paper: 0.1)."""
    contrastive_bias: float = 0.5
    """λ, the conservative bias on the rejected segment's advantage (paper: 0.5; 1 = unbiased)."""
    bc_coeff: float = 0.0
    """Weight of a behaviour-cloning term on the chosen side (paper: 0)."""
    bc_fraction: float = 0.0
    """Share of the step budget spent on BC warm-start first (paper: 0.4; ours 0: the reference is the warm start)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    batch_size: int | None = None
    """Pairs per step (None: the preset's batch size; paper: 96 segments)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (ours, as the other baselines)."""

    def __post_init__(self) -> None:
        if not 0 < self.contrastive_bias <= 1:
            raise ValueError(f"contrastive_bias must be in (0, 1], got {self.contrastive_bias}")
        if not 0 <= self.bc_fraction < 1:
            raise ValueError(f"bc_fraction must be in [0, 1), got {self.bc_fraction}")


class CPL(Algorithm):
    name = "cpl"
    Config = CPLConfig
    requires = frozenset({"offline:pairs"})
    paper = "Hejna et al. 2024, Contrastive Preference Learning"

    def train(self, ctx: RunContext, cfg: CPLConfig) -> Policy:
        policy, pairs = ctx.domain.make_policy(), ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        bc_steps = round(ctx.budget.steps * cfg.bc_fraction)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            noise = policy.draw_noise(b.contexts, b.chosen, generator=ctx.generator)  # shared by both sides
            logp_w, _ = sequence_logp(policy, b.contexts, b.chosen, noise)
            bc = -logp_w.mean()
            if step < bc_steps:
                loss = bc
            else:
                logp_l, _ = sequence_logp(policy, b.contexts, b.rejected, noise)
                adv_w, adv_l = cfg.alpha * logp_w, cfg.alpha * logp_l
                loss = cpl_loss(adv_w, adv_l, cfg.contrastive_bias).mean() + cfg.bc_coeff * bc
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), bc_nll=float(bc.detach()))
        return policy

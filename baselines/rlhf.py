"""RLHF — a Bradley–Terry reward model, then on-policy optimisation with RLOO or PPO.

Stage 1 (reward model; Christiano et al. 2017, Ouyang et al. 2022; TRL's RewardTrainer):

    L_RM = −E_{(x, y_w, y_l)} log σ(r_φ(x, y_w) − r_φ(x, y_l)),

on the offline pairs, a share ``rm_holdout`` held out to report the reward model's pair accuracy
(``train/rm_heldout_accuracy``).

Stage 2 (RLOO; Ahmadian et al. 2024, "Back to Basics"): for each prompt, k samples of the current
policy; each is rewarded with the KL-penalised sequence reward

    R_i = r_φ(x, y_i) − β·KL_i,   KL_i = Σ_t (log π_θ − log π_ref)(y_i,t)   (k1; or Σ_t k3),

and the leave-one-out baseline gives A_i = R_i − mean_{j≠i} R_j; the loss is −A_i·log π_θ(y_i)
(``loss_type="rloo"``), or PPO's clipped surrogate over ``ppo_epochs`` passes on the same samples,
value-free as in RLOO's comparison (``loss_type="ppo"``). log π is the sum of the step view's
log-probs: the exact likelihood where the domain has one (text, robot, the stochastic diffusion
chain at η > 0); the diffusion ELBO surrogate at η = 0, which makes the update a reward-weighted
denoising regression (docs/design.md, "which likelihood each algorithm gets").

Defaults: k = 4 (RLOO paper; TRL's ``num_generations`` default is 2), β = 0.05 (TRL RLOO), k1 as in
TRL, clip ε = 0.2, no advantage normalisation (TRL). Ours: the reward model's share of the step
budget (``rm_fraction``), the learning rates as multiples of the domain's base rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.training import prompts_per_step, rloo_update, should_log, train_reward_model


@dataclass
class RLHFConfig:
    k: int = 4
    """Samples per prompt for the leave-one-out baseline (RLOO paper: 4; TRL: 2)."""
    beta: float = 0.05
    """β, the KL penalty's weight in the reward (TRL RLOO: 0.05)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-step KL estimate summed into the penalty: k1 = log π − log π_ref, or Schulman's k3 (TRL: k1)."""
    loss_type: Literal["rloo", "ppo"] = "rloo"
    """rloo: −A·log π (REINFORCE with the leave-one-out baseline); ppo: value-free clipped surrogate."""
    ppo_epochs: int = 4
    """Passes over each batch of samples with ``loss_type="ppo"`` (TRL PPO: 4)."""
    clip_eps: float = 0.2
    """PPO's ratio clip ε (TRL: 0.2)."""
    normalize_advantages: bool = False
    """Standardise advantages per batch (TRL RLOO: False)."""
    prompts: int | None = None
    """Prompts per RL step (None: the preset's batch size ÷ k, fewer if the online budget requires)."""
    rm_fraction: float = 0.3
    """Share of the step budget spent on the reward model (ours)."""
    rm_holdout: float = 0.1
    """Share of the offline pairs held out to measure the reward model (ours)."""
    rm_lr_scale: float = 10.0
    """Reward-model learning rate ÷ the domain's base rate (TRL: RM 1e-4 vs policy 1e-6 or more)."""
    lr_scale: float = 1.0
    """Policy learning rate ÷ the domain's base fine-tuning rate (docs/design.md §2)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {self.k}")
        if not 0 < self.rm_fraction < 1:
            raise ValueError(f"rm_fraction must be in (0, 1), got {self.rm_fraction}")


class RLHF(Algorithm):
    name = "rlhf"
    check_steps = 32  # the reward model must learn before the policy moves
    Config = RLHFConfig
    requires = frozenset({"offline:pairs", "online"})
    paper = "Ouyang et al. 2022 (RLHF); Ahmadian et al. 2024, RLOO"

    def train(self, ctx: RunContext, cfg: RLHFConfig) -> Policy:
        rm_steps = max(1, round(ctx.budget.steps * cfg.rm_fraction))
        rm, accuracy = train_reward_model(ctx, ctx.domain.offline.pairs, rm_steps, cfg.rm_lr_scale, cfg.rm_holdout)
        if accuracy is not None:
            ctx.report(rm_heldout_accuracy=accuracy)
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        prompts = ctx.domain.train_contexts
        for step in ctx.train_steps():
            n = prompts_per_step(ctx, cfg.k, cfg.prompts)
            if n == 0:
                break  # the online-sample budget is spent
            batch = prompts[torch.randint(len(prompts), (n,), generator=ctx.generator)]
            samples = ctx.sample(policy, batch, cfg.k)
            reward, kl, loss = rloo_update(ctx, cfg, policy, reference, rm, opt, batch, samples)
            if should_log(ctx, step):
                ctx.log(step, reward=float(reward.mean()), kl=float(kl.mean()), loss=float(loss))
        return policy

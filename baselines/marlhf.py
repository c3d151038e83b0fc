"""MARLHF: offline preference-based multi-agent RL with reward smoothing and imitation.

Zhang et al. 2024, "Multi-Agent Reinforcement Learning from Human Feedback: Data Coverage and
Algorithmic Techniques" (code: NataliaZhang/Jax-MARLHF). Three stages:

1. **Reward model** from team-level preferences over joint trajectories: per-agent step rewards
   r̂^i_t = r̂_θ(o^i_t, a^i_t, i) (the domain's ``step_reward`` scorer; on a domain with agents it
   sums per-agent heads, r̂_t = Σ_i r̂^i_t), Bradley–Terry on the trajectory sums plus the paper's
   smoothing along the time axis (``train/reward_model.py``, ``MSE_LOSS_COEF``):

       L_RM = −log σ(Σ_t r̂_t(τ_w) − Σ_t r̂_t(τ_l)) + λ · Σ_{τ ∈ {τ_w, τ_l}} Σ_t Σ_i (r̂^i_{t+1} − r̂^i_t)²

2. **Relabel** every offline step with r̂ (standardised) plus the imitation term toward the reference
   (``train/vdn_offline_rm.py``, ``REF_LOG_COEF`` α and ``max_action_space`` |A|):

       r̃_t = r̂_t + Σ_i clip(α · (log π_ref(a^i_t | o^i_t) + log |A|), −10, 1)

   which rewards staying where the reference (a behaviour clone) puts mass: the paper's imitation
   regulariser, a pessimism toward the data's support.
3. **Offline MARL**: IQL (``benchmark.offline_rl``) with value decomposition — the domain's ``q``
   and ``v`` scorers sum per-agent heads (Q_tot = Σ_i Q_i, as VDN) — and an advantage-weighted
   actor on the joint log-likelihood. Ours: the paper trains VDN (and IQL/BCQ variants) and acts
   greedily on Q; we take its IQL variant because its actor is the domain's stochastic policy (with
   a likelihood, so KL to the reference and every other metric are defined) and IQL learns in-sample,
   which the offline setting needs. ``smoothing=0`` and ``imitation=0`` are the paper's ablations.

Needs ``capability:agents``: on a single-agent domain the per-agent decomposition and |A| have no
meaning (those cells are n/a; ``iql`` is the single-agent method of this family).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.api import Algorithm, Batch, Policy, PreferencePairs, RunContext, Scorer
from benchmark.objectives import bradley_terry_loss, temporal_smoothness
from benchmark.offline_rl import iql_train, relabel_steps
from benchmark.training import offline_samples, optimizer_step, should_log


@dataclass
class MARLHFConfig:
    smoothing: float = 1.0
    """λ of the time-axis MSE smoothing of per-agent step rewards (paper's spread runs: 1; 0 = ablation)."""
    imitation: float = 1.0
    """α of the reference log-prob bonus clip(α(log π_ref + log|A|), −10, 1) (spread runs: 1; 0 = ablation)."""
    rm_fraction: float = 0.3
    """Share of the step budget spent on the reward model (ours)."""
    rm_lr_scale: float = 10.0
    """Reward-model learning rate ÷ the domain's base rate (ours; the paper's RM lr is 5e-3)."""
    normalize_reward: bool = True
    """Standardise r̂ over the offline steps before adding the imitation term (ours)."""
    expectile: float = 0.7
    """τ of IQL's value expectile (CORL: 0.7)."""
    temperature: float = 3.0
    """β of IQL's advantage weights (CORL: 3.0)."""
    discount: float = 0.9
    """γ (the paper's VDN config: 0.9; MPE episodes are 25 steps)."""
    target_update: float = 0.005
    """Polyak rate κ of the target Q networks (CORL: 0.005)."""
    max_weight: float = 100.0
    """Clip of the advantage weights (CORL: 100)."""
    critic_lr_scale: float = 10.0
    """V and Q learning rate ÷ the domain's base rate (ours)."""
    lr_scale: float = 1.0
    """Actor learning rate ÷ the domain's base rate."""
    batch_size: int | None = None
    """Trajectories per update (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of every network (ours)."""


def _agent_heads(rm: Scorer, contexts: Batch, samples: Batch) -> Tensor:
    """Per-agent step rewards ``[B, T, N]`` where the scorer has them, else the step rewards ``[B, T]``."""
    per_agent = getattr(rm, "per_agent", None)
    return per_agent(contexts, samples) if per_agent is not None else rm(contexts, samples)


def fit_smoothed_reward(ctx: RunContext, pairs: PreferencePairs, cfg: MARLHFConfig) -> Scorer:
    """Stage 1: the step-reward model under L_RM (module docstring)."""
    rm = ctx.domain.make_scorer("step_reward")
    opt = ctx.optimizer(rm.parameters(), cfg.rm_lr_scale)
    steps = max(1, round(ctx.budget.steps * cfg.rm_fraction))
    for step, idx in zip(ctx.train_steps(steps), ctx.batches(len(pairs))):
        b = pairs.select(idx)
        heads_w, heads_l = _agent_heads(rm, b.contexts, b.chosen), _agent_heads(rm, b.contexts, b.rejected)
        r_w, r_l = heads_w.flatten(1).sum(-1), heads_l.flatten(1).sum(-1)
        bt = bradley_terry_loss(r_w, r_l).mean()
        smooth = (temporal_smoothness(heads_w, b.chosen.mask.bool()) +
                  temporal_smoothness(heads_l, b.rejected.mask.bool())).mean()
        optimizer_step(opt, bt + cfg.smoothing * smooth, rm.parameters(), cfg.max_grad_norm)
        if should_log(ctx, step):
            ctx.log(step, rm_loss=float(bt.detach()), rm_smoothness=float(smooth.detach()),
                    rm_accuracy=float((r_w > r_l).float().mean()))
    return rm.eval()


@torch.no_grad()
def imitation_bonus(ctx: RunContext, contexts: Batch, samples: Batch, alpha: float, chunk: int = 256) -> Tensor:
    """Σ_i clip(α(log π_ref(a^i_t | o^i_t) + log|A|), −10, 1) per step ``[N, T]`` (0 on masked steps)."""
    ref, log_a = ctx.domain.reference, math.log(ctx.domain.spec.n_actions)
    out = []
    for i in range(0, len(samples), chunk):
        c, s = contexts[i : i + chunk], samples[i : i + chunk]
        lp = ref.agent_log_prob(c, s).cpu()  # [B, T, N], 0 on padded agents and masked steps
        present = c.agent_mask.bool()[:, None, :] & s.mask.bool()[..., None]
        out.append((torch.clamp(alpha * (lp + log_a), -10.0, 1.0) * present).sum(-1))
    return torch.cat(out)


class MARLHF(Algorithm):
    name = "marlhf"
    Config = MARLHFConfig
    requires = frozenset({"offline:pairs", "capability:agents"})
    paper = "Zhang et al. 2024, Multi-Agent RL from Human Feedback: Data Coverage and Algorithmic Techniques"
    check_steps = 32  # the reward model must learn before the policy moves
    check_overrides = {"target_update": 0.1}  # as IQL's check: a slow target would leave advantages noise

    def train(self, ctx: RunContext, cfg: MARLHFConfig) -> Policy:
        rm = fit_smoothed_reward(ctx, ctx.domain.offline.pairs, cfg)
        contexts, samples = offline_samples(ctx.domain.offline)
        rewards = relabel_steps(ctx, rm, contexts, samples, cfg.normalize_reward)
        if cfg.imitation > 0:
            rewards = rewards + imitation_bonus(ctx, contexts, samples, cfg.imitation)
        return iql_train(ctx, cfg, contexts, samples, rewards)

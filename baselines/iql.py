"""Offline RL from preference feedback: a reward-model ensemble, relabelled transitions, then IQL.

The route of offline RL-VLM-F (Venkataraman, Wang et al. 2024; RL-VLM-F, Wang et al. 2024): a
per-step reward ensemble r̂ is fitted to the offline preference pairs (a segment's score is the sum
of its per-step rewards, Bradley–Terry over pairs, as PEBBLE and B-Pref), the offline transitions are
relabelled with the ensemble mean, and Implicit Q-Learning (Kostrikov et al. 2022) learns from them:

    L_V = E[|τ − 1(u < 0)|·u²],                u = min_i Q̄_i(s, a) − V(s)          (expectile τ)
    L_Q = ½ Σ_i E[(r̂ + γ(1 − d)·V(s') − Q_i(s, a))²]                            (twin Q)
    L_π = −E[min(exp(β·(min_i Q̄_i(s, a) − V(s))), 100) · log π(a|s)]              (AWR actor)
    Q̄ ← (1 − κ)·Q̄ + κ·Q                                                          (Polyak, κ = 0.005)

with CORL's defaults (``algorithms/offline/iql.py``): τ = 0.7, β = 3.0, γ = 0.99, κ = 0.005, weights
clipped at 100. It runs on every domain's step view (``benchmark.steps``): robot transitions
natively, text as the token MDP, image as the denoising chain (η > 0) or the horizon-1 view (η = 0,
where the actor's log π is the diffusion surrogate: advantage-weighted denoising regression).

Ours: the transitions are the step views of the offline data's samples (both sides of every pair,
the thumbs-rated singles and the demonstrations), not a separate replay buffer; the segment's last
step bootstraps only where the view has its successor (a truncated robot segment's last step has
no Q target); rewards are standardised over the transitions (CORL: off by default for locomotion,
but r̂'s scale is arbitrary); learning rates are multiples of the domain's base rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.offline_rl import iql_train, relabel_steps
from benchmark.training import offline_samples, step_reward_ensemble


@dataclass
class IQLConfig:
    expectile: float = 0.7
    """τ of the value expectile (CORL ``iql_tau``: 0.7)."""
    temperature: float = 3.0
    """β of the advantage weights exp(β·A) (CORL ``beta``: 3.0)."""
    discount: float = 0.99
    """γ (CORL: 0.99)."""
    target_update: float = 0.005
    """Polyak rate κ of the target Q networks (CORL ``tau``: 0.005)."""
    max_weight: float = 100.0
    """Clip of the advantage weights (CORL ``EXP_ADV_MAX``: 100)."""
    rm_ensemble: int = 3
    """Members of the per-step reward ensemble (RL-VLM-F / PEBBLE: 3)."""
    rm_fraction: float = 0.25
    """Share of the step budget spent on the reward ensemble (ours)."""
    rm_holdout: float = 0.1
    """Share of the offline pairs held out to measure the reward ensemble (ours)."""
    rm_lr_scale: float = 10.0
    """Reward-model learning rate ÷ the domain's base rate (ours; CORL/PEBBLE use 3e-4)."""
    critic_lr_scale: float = 10.0
    """V and Q learning rate ÷ the domain's base rate (ours; CORL: 3e-4 for V, Q and actor)."""
    lr_scale: float = 1.0
    """Actor learning rate ÷ the domain's base fine-tuning rate (docs/design.md §2)."""
    normalize_reward: bool = True
    """Standardise the relabelled rewards over the transitions (ours)."""
    batch_size: int | None = None
    """Samples (each with its steps) per update (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of every network (ours; CORL clips none)."""


class IQL(Algorithm):
    name = "iql"
    check_steps = 32  # the reward model must learn before the policy moves
    # in the conformance check's 32 steps a κ = 0.005 target network would hardly move from its
    # initialisation, so the actor's advantages would be noise; the check uses a faster one
    check_overrides = {"target_update": 0.1}
    Config = IQLConfig
    requires = frozenset({"offline:pairs"})
    paper = "Kostrikov et al. 2022, IQL; Venkataraman, Wang et al. 2024, offline RL from VLM feedback"

    def train(self, ctx: RunContext, cfg: IQLConfig) -> Policy:
        rm = step_reward_ensemble(ctx, ctx.domain.offline.pairs, cfg.rm_fraction, cfg.rm_lr_scale, cfg.rm_holdout,
                                  cfg.rm_ensemble)
        contexts, samples = offline_samples(ctx.domain.offline)
        rewards = relabel_steps(ctx, rm, contexts, samples, cfg.normalize_reward)
        return iql_train(ctx, cfg, contexts, samples, rewards)

"""DTR — In-Dataset Trajectory Return Regularization for offline preference-based RL (Tu et al.,
AAAI 2025): a return-conditioned transformer actor kept near the data by behaviour cloning and
pushed up a learned critic.

1. A per-step reward ensemble r̂_e fitted to the segment preferences (Bradley–Terry on Σ_t r̂_e).
2. Ensemble normalisation: r̃ = (1/E) Σ_e (r̂_e − mean_e)/std_e over the dataset's steps.
3. Twin critics by n-step TD on r̃, bootstrapped at a segment's last step L − 1 with the EMA
   actor's action (``benchmark.objectives.n_step_targets``):

       y_t = Σ_{t'=t}^{L−2} γ^{t'−t} r̃_{t'} + γ^{L−1−t} min_i Q̄_i(s_{L−1}, â_{L−1}),
       L_Q = Σ_i E_t<L−1 [(Q_i(s_t, a_t) − y_t)²]

4. The actor, a Decision Transformer (``benchmark.policies.decision``) conditioned on the data's
   own return-to-go:

       L_π = η₂ · BC + η · c(t) · (−Q_i(s_t, â_t) / E|Q_j(s_t, â_t)|),   â = tanh μ,   c(t) = t / T

   with i, j a random ordering of the twins and c ramping from 0 to 1 over training.

Defaults from the authors' code (github.com/TU2021/DTR, README run and ``ql_trainer.py``): η = 3,
η₂ = 1, context K = 20, γ = 0.99, Polyak τ = 0.005 for the critics, an EMA actor (decay 0.995,
every 5 steps, after 2% of training) for the targets, 3 reward models, gradient clip 9, actor
learning rate 3e-4 with weight decay 1e-4.

Ours: BC is the negative log-likelihood of the data's actions under the tanh-Gaussian head
(``bc_loss="nll"``; the paper's deterministic head uses the MSE of its predictions, ``"mse"``,
which leaves σ untrained); the transformer is a residual on the domain's reference actor, and
the return-to-go is a per-step rate with a fixed evaluation goal, ``target_quantile`` of the
data's starting rates (why: ``benchmark/policies/decision.py``); the transitions are the step views
of the offline data's samples (pairs, thumbs-rated singles, demonstrations), as in ``iql``; each
update's actor loss covers ``actor_queries`` random steps per segment (each reads its own K-step
window, so every step would cost K× a causal pass: 6× slower and no better on robot, 22 ± 8 vs 31 ± 15, see
``benchmarks/results/dtr_allsteps_robot_quick.md``).
Runs where the domain has the ``control`` capability (robot); elsewhere n/a.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.api import Algorithm, Batch, Policy, RunContext
from benchmark.objectives import (
    ensemble_z_normalise,
    linear_ramp,
    n_step_targets,
    normalised_q_loss,
    return_to_go_rate,
)
from benchmark.policies.decision import DecisionTransformerPolicy
from benchmark.training import offline_samples, optimizer_step, should_log, step_reward_ensemble


@dataclass
class DTRConfig:
    eta: float = 3.0
    """η, weight of the normalised Q term at the end of its ramp (authors' README: 3.0)."""
    eta_bc: float = 1.0
    """η₂, weight of the behaviour-cloning term (authors: 1.0)."""
    bc_loss: str = "nll"
    """``nll`` (ours: the likelihood of the data's actions) or ``mse`` (paper: MSE of tanh μ)."""
    context_len: int = 20
    """K, steps the transformer sees (authors: 20)."""
    width: int = 64
    """Transformer width (ours; authors: 256 for MuJoCo)."""
    layers: int = 2
    """Transformer layers (ours; authors: 4)."""
    discount: float = 0.99
    """γ of the n-step critic targets (authors: 0.99)."""
    target_update: float = 0.005
    """Polyak rate of the target critics (authors: 0.005)."""
    ema_decay: float = 0.995
    """Decay of the EMA actor that proposes the targets' actions (authors: 0.995)."""
    ema_every: int = 5
    """Steps between EMA updates (authors: 5)."""
    ema_start: float = 0.02
    """Share of the actor's steps before the EMA starts following it (authors: 1k of 50k)."""
    actor_queries: int = 8
    """Steps per segment whose prediction enters the actor loss each update (ours: each query reads
    its own K-step window; the paper's causal pass predicts the K steps of one window)."""
    target_quantile: float = 0.95
    """Quantile of the data's starting return-to-go rates used as the evaluation goal (ours)."""
    rm_ensemble: int = 3
    """Reward models in the ensemble (authors: 3)."""
    rm_fraction: float = 0.25
    """Share of the step budget spent on the reward ensemble (ours, as ``iql``)."""
    rm_holdout: float = 0.1
    """Share of the offline pairs held out to measure the reward ensemble (ours)."""
    rm_lr_scale: float = 10.0
    """Reward-model learning rate ÷ the domain's base rate (ours, as ``iql``)."""
    critic_lr_scale: float = 3.0
    """Critic learning rate ÷ the domain's base rate (authors: 3e-4)."""
    lr_scale: float = 3.0
    """Actor learning rate ÷ the domain's base rate (authors: 3e-4)."""
    weight_decay: float = 1e-4
    """Actor weight decay (authors: 1e-4)."""
    batch_size: int | None = None
    """Segments per update (None: the preset's batch size)."""
    max_grad_norm: float = 9.0
    """Gradient-norm clip of actor and critics (authors' README: 9.0)."""

    def __post_init__(self) -> None:
        if self.bc_loss not in ("nll", "mse"):
            raise ValueError(f"bc_loss must be 'nll' or 'mse', got {self.bc_loss!r}")
        if self.actor_queries < 1:
            raise ValueError(f"actor_queries must be >= 1, got {self.actor_queries}")
        if not 0 <= self.target_quantile <= 1:
            raise ValueError(f"target_quantile must be in [0, 1], got {self.target_quantile}")


class DTR(Algorithm):
    name = "dtr"
    check_steps = 32  # the reward ensemble and the critics must learn before the actor moves
    # a κ = 0.005 target hardly moves in the check's few steps; the check uses a faster one
    check_overrides = {"target_update": 0.1}
    Config = DTRConfig
    requires = frozenset({"offline:pairs", "capability:control"})
    paper = "Tu et al. 2025, In-Dataset Trajectory Return Regularization for Offline Preference-based RL"

    def train(self, ctx: RunContext, cfg: DTRConfig) -> Policy:
        rm = step_reward_ensemble(ctx, ctx.domain.offline.pairs, cfg.rm_fraction, cfg.rm_lr_scale, cfg.rm_holdout,
                                  cfg.rm_ensemble)
        contexts, samples = offline_samples(ctx.domain.offline)
        mask = samples.mask.bool()
        with torch.no_grad():
            raw = torch.cat([rm(contexts[i : i + 256], samples[i : i + 256]).float().cpu()
                             for i in range(0, len(samples), 256)], dim=1)  # [E, N, T]
        rewards = ensemble_z_normalise(raw, mask)
        goals = return_to_go_rate(rewards, mask.float())
        policy = DecisionTransformerPolicy(ctx.domain.make_policy(), cfg.context_len, cfg.width, cfg.layers)
        policy.target_goal.fill_(float(torch.quantile(goals[:, 0], cfg.target_quantile)))
        return self._train_actor_critic(ctx, cfg, policy, contexts, samples, rewards, goals)

    def _train_actor_critic(self, ctx: RunContext, cfg: DTRConfig, policy: DecisionTransformerPolicy,
                            contexts: Batch, samples: Batch, rewards: Tensor, goals: Tensor) -> Policy:
        q = ctx.domain.make_scorer("q", ensemble=2)
        q_target = copy.deepcopy(q).requires_grad_(False)
        ema = copy.deepcopy(policy).requires_grad_(False)
        opt_q = ctx.optimizer(q.parameters(), cfg.critic_lr_scale)
        opt_pi = ctx.optimizer(policy.parameters(), cfg.lr_scale, weight_decay=cfg.weight_decay)
        total, actor_steps = ctx.budget.steps - ctx.steps_done, 0  # the steps the reward ensemble left
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(samples), cfg.batch_size)):
            c, s, r, g = contexts[idx], samples[idx], rewards[idx], goals[idx]
            loss_q = self._critic_loss(q, q_target, ema, c, s, r, g, cfg)
            optimizer_step(opt_q, loss_q, q.parameters(), cfg.max_grad_norm)
            ramp = linear_ramp(actor_steps, total)
            loss_bc, loss_ql = self._actor_losses(ctx, policy, q, c, s, g, cfg)
            loss_pi = cfg.eta_bc * loss_bc + cfg.eta * ramp * loss_ql
            optimizer_step(opt_pi, loss_pi, policy.parameters(), cfg.max_grad_norm)
            with torch.no_grad():
                for pt, p in zip(q_target.parameters(), q.parameters()):
                    pt.lerp_(p, cfg.target_update)
                actor_steps += 1
                if actor_steps > cfg.ema_start * total and actor_steps % cfg.ema_every == 0:
                    for pe, p in zip(ema.parameters(), policy.parameters()):
                        pe.lerp_(p, 1 - cfg.ema_decay)
            if should_log(ctx, step):
                ctx.log(step, loss_q=float(loss_q.detach()), loss_bc=float(loss_bc.detach()),
                        loss_ql=float(loss_ql.detach()), q_ramp=ramp)
        return policy

    @staticmethod
    def _critic_loss(q, q_target, ema: DecisionTransformerPolicy, c: Batch, s: Batch, r: Tensor, g: Tensor,
                     cfg: DTRConfig) -> Tensor:
        """Σ_i E[(Q_i(s_t, a_t) − y_t)²] over t < L − 1 (module docstring, step 3)."""
        mask = s.mask.bool().cpu()
        last = (mask.sum(-1) - 1).clamp_min(0)
        with torch.no_grad():
            a_last = ema.mode_actions(c, s, g, steps=last[:, None].to(ema.device_hint()))  # [B, 1, A]
            q_last = q_target(c, with_actions(s, a_last, last[:, None])).min(0).values.cpu()
            bootstrap = q_last.gather(1, last[:, None]).squeeze(1)
            target = n_step_targets(r, mask, bootstrap, cfg.discount)
        has_target = mask & (torch.arange(mask.shape[1])[None, :] < last[:, None])
        q_all = q(c, s).cpu()  # [2, B, T]
        return ((q_all - target[None]) ** 2)[:, has_target].mean() * 2

    @staticmethod
    def _actor_losses(ctx: RunContext, policy: DecisionTransformerPolicy, q, c: Batch, s: Batch, g: Tensor,
                      cfg: DTRConfig) -> tuple[Tensor, Tensor]:
        """(BC, the normalised Q term) of the actor loss at ``actor_queries`` random valid steps of
        each segment (module docstring, step 4)."""
        mask = s.mask.bool().cpu()
        n = min(cfg.actor_queries, mask.shape[1])
        noise = torch.rand(mask.shape, generator=ctx.generator).masked_fill(~mask, -1.0)
        steps = noise.topk(n, dim=1).indices  # [B, n], valid steps first
        dev = policy.device_hint()
        lp, queried, a_hat = policy.step_log_prob_given(c, s, g, with_mode=True, steps=steps.to(dev))
        if cfg.bc_loss == "nll":
            loss_bc = -lp[queried].mean()
        else:
            target = s.actions.to(dev)[torch.arange(len(steps), device=dev)[:, None], steps.to(dev)]
            loss_bc = ((a_hat - target) ** 2).sum(-1)[queried].mean()
        rows = torch.arange(len(steps))[:, None]
        q_new = q(c, with_actions(s, a_hat, steps))[:, rows, steps].to(dev)  # [2, B, n]
        i = int(torch.randint(2, (1,), generator=ctx.generator))
        return loss_bc, normalised_q_loss(q_new[i][queried], q_new[1 - i][queried]).mean()


def with_actions(samples: Batch, actions: Tensor, steps: Tensor) -> Batch:
    """``samples`` with ``actions [B, n, A]`` put at ``steps [B, n]`` (differentiably), for a per-step critic."""
    a = samples.actions.to(actions.device).clone()
    a[torch.arange(len(steps), device=actions.device)[:, None], steps.to(actions.device)] = actions.to(a.dtype)
    return samples.replace(actions=a.to(samples.actions.device))

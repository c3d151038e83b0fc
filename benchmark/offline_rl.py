"""Offline RL on relabelled step rewards, shared by the methods that use it (IQL, MARLHF).

Implicit Q-Learning (Kostrikov et al. 2022) on the domain's step view (``benchmark.steps``):

    L_V = E[|τ − 1(u < 0)|·u²],                u = min_i Q̄_i(s, a) − V(s)          (expectile τ)
    L_Q = ½ Σ_i E[(r + γ(1 − d)·V(s') − Q_i(s, a))²]                             (twin Q)
    L_π = −E[min(exp(β·(min_i Q̄_i(s, a) − V(s))), w_max) · log π(a|s)]           (AWR actor)
    Q̄ ← (1 − κ)·Q̄ + κ·Q                                                          (Polyak)

The critics are the domain's ``q`` and ``v`` scorers: on a domain with agents they sum per-agent
heads (Q_tot = Σ_i Q_i, VDN's value decomposition), and log π is the joint per-step log-likelihood.
A segment's last step bootstraps only where the view has its successor.
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch
from torch import Tensor

from benchmark.api import Batch, Ensemble, Policy, RunContext, Scorer
from benchmark.objectives import awr_weights, expectile_loss
from benchmark.steps import step_view
from benchmark.training import optimizer_step, should_log


class IQLFields(Protocol):
    """The config fields :func:`iql_train` reads (``baselines/iql.py``'s ``IQLConfig`` has them all)."""

    expectile: float
    temperature: float
    discount: float
    target_update: float
    max_weight: float
    critic_lr_scale: float
    lr_scale: float
    batch_size: int | None
    max_grad_norm: float


@torch.no_grad()
def relabel_steps(ctx: RunContext, rm: Scorer, contexts: Batch, samples: Batch, normalize: bool = True,
                  chunk: int = 256) -> Tensor:
    """r̂ per step ``[N, T]`` of the offline samples: ``rm``'s step reward (an ensemble's mean),
    standardised over the valid steps when ``normalize``."""
    rewards, masks = [], []
    for i in range(0, len(samples), chunk):
        c, s = contexts[i : i + chunk], samples[i : i + chunk]
        r = rm(c, s)
        rewards.append((r.mean(0) if isinstance(rm, Ensemble) else r).float().cpu())
        masks.append(step_view(ctx.domain, c, s).mask)
    r, valid = torch.cat(rewards), torch.cat(masks)
    if normalize:
        mean, std = r[valid].mean(), r[valid].std().clamp_min(1e-6)
        r = torch.where(valid, (r - mean) / std, torch.zeros_like(r))
    return r


def iql_train(ctx: RunContext, cfg: IQLFields, contexts: Batch, samples: Batch, rewards: Tensor) -> Policy:
    """IQL (module docstring) from ``ctx.domain.make_policy()`` on the step views of ``samples`` with
    step rewards ``rewards [N, T]``, for the rest of the cell's step budget; returns the actor."""
    policy = ctx.domain.make_policy()
    v, q = ctx.domain.make_scorer("v"), ctx.domain.make_scorer("q", ensemble=2)
    q_target = copy.deepcopy(q).requires_grad_(False)
    opt_v = ctx.optimizer(v.parameters(), cfg.critic_lr_scale)
    opt_q = ctx.optimizer(q.parameters(), cfg.critic_lr_scale)
    opt_pi = ctx.optimizer(policy.parameters(), cfg.lr_scale)
    for step, idx in zip(ctx.train_steps(), ctx.batches(len(samples), cfg.batch_size)):
        c, s, r = contexts[idx], samples[idx], rewards[idx]
        view = step_view(ctx.domain, c, s)
        mask, done = view.mask, view.done
        with torch.no_grad():
            q_min = q_target(c, s).min(0).values.cpu()
        value = v(c, s).cpu()
        loss_v = expectile_loss(q_min - value, cfg.expectile)[mask].mean()
        optimizer_step(opt_v, loss_v, v.parameters(), cfg.max_grad_norm)
        has_next = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
        next_v = torch.cat([value.detach()[:, 1:], torch.zeros_like(value[:, :1])], dim=1)
        target = r + cfg.discount * (~done).float() * next_v
        valid_q = mask & (done | has_next)
        q_all = q(c, s).cpu()  # [2, B, T]; the mean over both members is ½·Σ_i of the docstring
        loss_q = ((q_all - target[None]) ** 2)[:, valid_q].mean()
        optimizer_step(opt_q, loss_q, q.parameters(), cfg.max_grad_norm)
        weights = awr_weights(q_min - value.detach(), cfg.temperature, cfg.max_weight)
        logp = policy.step_log_prob(c, s, noise=policy.draw_noise(c, s, generator=ctx.generator))[0].cpu()
        loss_pi = -(weights * logp)[mask].mean()
        optimizer_step(opt_pi, loss_pi, policy.parameters(), cfg.max_grad_norm)
        with torch.no_grad():
            for pt, p in zip(q_target.parameters(), q.parameters()):
                pt.lerp_(p, cfg.target_update)
        if should_log(ctx, step):
            ctx.log(step, loss_v=float(loss_v.detach()), loss_q=float(loss_q.detach()),
                    loss_actor=float(loss_pi.detach()), adv_weight=float(weights[mask].mean()))
    return policy

"""Training plumbing shared by algorithms (log-probs of pairs, one optimiser step, logging).

The maths lives in :mod:`benchmark.objectives`; this module only wires a policy, its frozen
reference and the common random numbers of :meth:`Policy.draw_noise` together.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from benchmark.api import Contexts, Policy, RunContext, Samples


def logps_with_reference(
    policy: Policy, reference: Policy, contexts: Contexts, samples: Samples, generator: torch.Generator,
    noise: object | None = None,
) -> tuple[Tensor, Tensor, object | None]:
    """(log π_θ, log π_ref, noise) on the same noise draw; the reference side carries no grad."""
    if noise is None:
        noise = policy.draw_noise(contexts, samples, generator=generator)
    lp = policy.log_prob(contexts, samples, noise=noise)
    with torch.no_grad():
        lp_ref = reference.log_prob(contexts, samples, noise=noise).to(lp.device)
    return lp, lp_ref, noise


def pair_logps(
    policy: Policy, reference: Policy, contexts: Contexts, chosen: Samples, rejected: Samples,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(log π_θ(y_w), log π_θ(y_l), log π_ref(y_w), log π_ref(y_l)); chosen and rejected share one
    noise draw (Diffusion-DPO's shared t and ε; no-op for exact likelihoods)."""
    pi_w, ref_w, noise = logps_with_reference(policy, reference, contexts, chosen, generator)
    pi_l, ref_l, _ = logps_with_reference(policy, reference, contexts, rejected, generator, noise=noise)
    return pi_w, pi_l, ref_w, ref_l


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor, params: Iterable[nn.Parameter],
                   max_grad_norm: float | None = 1.0) -> float:
    """zero_grad → backward → clip → step; returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
    optimizer.step()
    return float(norm)


def should_log(ctx: RunContext, step: int, points: int = 100) -> bool:
    """Log about ``points`` curve points over the step budget (and always the last step)."""
    every = max(1, ctx.budget.steps // points)
    return step % every == 0 or step == ctx.budget.steps - 1

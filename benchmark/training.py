"""Training plumbing shared by algorithms (log-probs of pairs, one optimiser step, logging).

The maths lives in :mod:`benchmark.objectives`; this module only wires a policy, its frozen
reference and the common random numbers of :meth:`Policy.draw_noise` together.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from benchmark.api import Contexts, Policy, PreferencePairs, RunContext, Samples, Scorer
from benchmark.objectives import bradley_terry_loss


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


def sequence_logp(policy: Policy, contexts: Contexts, samples: Samples, noise: object | None = None
                  ) -> tuple[Tensor, Tensor]:
    """(Σ_t log π(a_t|s_t), the per-step log-probs ``[B, T]``) of the step view: the exact
    likelihood where the domain has one, the surrogate on a horizon-1 surrogate view. Pass the same
    ``noise`` (``Policy.draw_noise``) to compare two policies on common random numbers."""
    lp, mask = policy.step_log_prob(contexts, samples, noise=noise)
    lp = lp * mask.to(lp.dtype)
    return lp.sum(-1), lp


def train_reward_model(ctx: RunContext, pairs: PreferencePairs, steps: int, lr_scale: float, holdout: float,
                       kind: str = "reward", ensemble: int = 1) -> tuple[Scorer, float | None]:
    """A Bradley–Terry reward model (Christiano et al. 2017; TRL's RewardTrainer),
    −log σ(r(x, y_w) − r(x, y_l)), on (1 − ``holdout``) of ``pairs``, for ``steps`` of the cell's
    step budget. ``kind="step_reward"`` scores a sample by the sum of its per-step rewards (the
    preference-based-RL segment model); ``ensemble`` members train on the same batches, from their
    own initialisations. Returns the model and its pair accuracy on the held-out share (None when
    there are fewer than 10 pairs to split)."""
    n = len(pairs)
    perm = torch.randperm(n, generator=ctx.generator)
    n_out = int(n * holdout) if n >= 10 else 0
    train, held = pairs.select(perm[n_out:]), pairs.select(perm[:n_out])
    rm = ctx.domain.make_scorer(kind, ensemble=ensemble)
    opt = ctx.optimizer(rm.parameters(), lr_scale)

    def score(b: PreferencePairs) -> tuple[Tensor, Tensor]:
        r_w, r_l = rm(b.contexts, b.chosen), rm(b.contexts, b.rejected)
        return (r_w.sum(-1), r_l.sum(-1)) if kind == "step_reward" else (r_w, r_l)

    for step, idx in zip(ctx.train_steps(steps), ctx.batches(len(train))):
        r_w, r_l = score(train.select(idx))
        loss = bradley_terry_loss(r_w, r_l).mean()
        optimizer_step(opt, loss, rm.parameters(), 1.0)
        if should_log(ctx, step):
            ctx.log(step, rm_loss=float(loss.detach()), rm_accuracy=float((r_w > r_l).float().mean()))
    rm.eval()
    if not n_out:
        return rm, None
    with torch.no_grad():
        r_w, r_l = score(held)
    return rm, float((r_w > r_l).float().mean())

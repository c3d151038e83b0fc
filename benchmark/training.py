"""Training plumbing shared by algorithms (log-probs of pairs, one optimiser step, logging).

The maths lives in :mod:`benchmark.objectives`; this module only wires a policy, its frozen
reference and the common random numbers of :meth:`Policy.draw_noise` together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmark.api import Batch, Contexts, OfflineData, Policy, PreferencePairs, RunContext, Samples, Scorer
from benchmark.objectives import (
    bradley_terry_loss,
    clipped_surrogate_loss,
    kl_k1,
    kl_k3,
    leave_one_out_advantages,
)


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
    generator: torch.Generator, memo: ReferenceMemo | None = None, idx: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(log π_θ(y_w), log π_θ(y_l), log π_ref(y_w), log π_ref(y_l)); chosen and rejected share one
    noise draw (Diffusion-DPO's shared t and ε). With a ``memo`` and the pairs' indices ``idx`` into
    the offline pairs, an exact likelihood's reference terms come from the memo (each pair's
    computed once). Each side is its own forward pass: one pass of 2B (TRL's
    ``concatenated_forward``) was measured no faster on text or multi-agent and slower on robot,
    whose MLP matmuls run slower per FLOP at twice the rows on this CPU (issue #19)."""
    noise = policy.draw_noise(contexts, chosen, generator=generator)
    if noise is None and memo is not None and idx is not None:
        ref_w, ref_l = memo.lookup(idx, reference, contexts, chosen, rejected)
        return policy.log_prob(contexts, chosen), policy.log_prob(contexts, rejected), ref_w, ref_l
    pi_w, ref_w, _ = logps_with_reference(policy, reference, contexts, chosen, generator, noise=noise)
    pi_l, ref_l, _ = logps_with_reference(policy, reference, contexts, rejected, generator, noise=noise)
    return pi_w, pi_l, ref_w, ref_l


class ReferenceMemo:
    """log π_ref(y_w|x) and log π_ref(y_l|x) of each offline pair, computed on the pair's first use
    and kept: the reference never changes, so an offline method that visits its pairs for several
    epochs runs the reference over them once (TRL's ``precompute_ref_log_probs``, done lazily, so a
    run of under one epoch computes nothing it would not have). A pair's first batch computes its
    terms exactly as without the memo. Used only with an exact likelihood (a surrogate that draws
    noise, as diffusion's ELBO, shares each step's draw with the policy's side)."""

    def __init__(self, n_pairs: int):
        self.known = torch.zeros(n_pairs, dtype=torch.bool)
        self.values: Tensor | None = None

    def lookup(self, idx: Tensor, reference: Policy, contexts: Contexts, chosen: Samples,
               rejected: Samples) -> tuple[Tensor, Tensor]:
        """(log π_ref(y_w), log π_ref(y_l)) of the batch whose pair indices are ``idx``."""
        idx = idx.cpu()
        missing = (~self.known[idx]).nonzero().squeeze(1)
        if len(missing):
            if len(missing) < len(idx):
                contexts, chosen, rejected = contexts[missing], chosen[missing], rejected[missing]
            with torch.no_grad():
                w = reference.log_prob(contexts, chosen, noise=None)
                lo = reference.log_prob(contexts, rejected, noise=None)
            if self.values is None:
                self.values = w.new_zeros(len(self.known), 2)
            self.values[idx[missing].to(w.device)] = torch.stack([w, lo], -1)
            self.known[idx[missing]] = True
        pair = self.values[idx.to(self.values.device)]
        return pair[:, 0], pair[:, 1]


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


def sequence_logp(policy: Policy, contexts: Contexts, samples: Samples, noise: object | None = None,
                  rollin: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(Σ_t log π(a_t|s_t), the per-step log-probs ``[B, T]``) of the step view: the exact
    likelihood where the domain has one, the surrogate on a horizon-1 surrogate view. Pass the same
    ``noise`` (``Policy.draw_noise``) to compare two policies on common random numbers. ``rollin``
    ``[B, T']`` (:func:`rollin_steps`, from step 0, cut or padded to T) marks the steps a dataset
    reset forced, which are left out: only the policy's own continuation counts (DR-PO)."""
    lp, mask = policy.step_log_prob(contexts, samples, noise=noise)
    lp = lp * mask.to(lp.dtype)
    if rollin is not None:
        forced = F.pad(rollin.to(lp.device).bool(), (0, max(lp.shape[1] - rollin.shape[1], 0)))
        lp = lp * (~forced[:, : lp.shape[1]]).to(lp.dtype)
    return lp.sum(-1), lp


def rollin_steps(start: Samples) -> Tensor:
    """The steps of the step view that a dataset reset from ``start`` (``Policy.rollin``) forces,
    ``[B, T']`` bool from step 0: ``start.mask`` where the domain marks the kept prefix per step (the
    text domain's response tokens, the robot's replayed actions), else none (``[B, 0]``: the image
    domain's SDEdit restart, whose chain view already masks the denoising steps before the restart
    and whose horizon-1 view is the policy's own denoised image)."""
    if "mask" in start:
        return start.mask.bool()
    return torch.zeros(len(start), 0, dtype=torch.bool)


def prompts_per_step(ctx: RunContext, per_prompt: int, wanted: int | None, reserve: int = 0) -> int:
    """Prompts an online step may sample ``per_prompt`` times each: ``wanted`` (None: the preset's
    batch size ÷ ``per_prompt``), fewer when the online-sample budget, less ``reserve`` samples kept
    for later, would not last the steps left; 0 once it is spent."""
    remaining = ctx.budget.online_samples - ctx.samples_used - reserve
    steps_left = max(ctx.budget.steps - ctx.steps_done, 1)
    wanted = wanted or max(ctx.budget.batch_size // per_prompt, 1)
    affordable = remaining // (per_prompt * steps_left)
    return min(wanted, max(affordable, 1)) if remaining >= per_prompt else 0


class PolicyGradientConfig(Protocol):
    """The fields of an RLHF-family config that :func:`rloo_update` reads (``baselines/rlhf.py``)."""

    k: int
    beta: float
    kl_estimator: str
    loss_type: str
    ppo_epochs: int
    clip_eps: float
    normalize_advantages: bool
    max_grad_norm: float


def rloo_update(ctx: RunContext, cfg: PolicyGradientConfig, policy: Policy, reference: Policy, rm: Scorer,
                opt: torch.optim.Optimizer, contexts: Contexts, samples: Samples, rollin: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """RLHF's on-policy update on ``samples`` (``cfg.k`` per context, laid out as
    ``contexts.repeat(k)``): R_i = r(x, y_i) − β·Σ_t KL_t, leave-one-out advantages, then
    −A·log π (``loss_type="rloo"``) or PPO's clipped surrogate over ``ppo_epochs`` passes. log π is
    the step view's sum (:func:`sequence_logp`) without the ``rollin`` steps when given (the KL
    too: a dataset reset credits only the policy's continuation). Returns (rewards, KLs, the last
    loss) for logging."""
    rep = contexts.repeat(cfg.k)
    noise = policy.draw_noise(rep, samples, generator=ctx.generator)  # common to π, π_old and π_ref
    with torch.no_grad():
        reward = rm(rep, samples).float()
        old_logp, old_steps = sequence_logp(policy, rep, samples, noise, rollin)
        _, ref_steps = sequence_logp(reference, rep, samples, noise, rollin)
        estimate = kl_k1 if cfg.kl_estimator == "k1" else kl_k3
        kl = estimate(old_steps, ref_steps.to(old_steps.device)).sum(-1)
        total = reward.to(kl.device) - cfg.beta * kl
        adv = leave_one_out_advantages(total.view(-1, cfg.k)).flatten()
        if cfg.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy.train()
    for _ in range(cfg.ppo_epochs if cfg.loss_type == "ppo" else 1):
        logp, _ = sequence_logp(policy, rep, samples, noise, rollin)
        if cfg.loss_type == "ppo":
            loss = clipped_surrogate_loss(logp, old_logp, adv, cfg.clip_eps).mean()
        else:
            loss = -(adv * logp).mean()
        optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
    return reward, kl, loss.detach()


def train_reward_model(ctx: RunContext, pairs: PreferencePairs, steps: int, lr_scale: float, holdout: float,
                       kind: str = "reward", ensemble: int = 1, model: Scorer | None = None
                       ) -> tuple[Scorer, float | None]:
    """A Bradley–Terry reward model (Christiano et al. 2017; TRL's RewardTrainer),
    −log σ(r(x, y_w) − r(x, y_l)), on (1 − ``holdout``) of ``pairs``, for ``steps`` of the cell's
    step budget. ``kind="step_reward"`` scores a sample by the sum of its per-step rewards (the
    preference-based-RL segment model); ``ensemble`` members train on the same batches, from their
    own initialisations; ``model`` fine-tunes an existing scorer of that kind instead of a fresh one
    (with a fresh optimiser). Returns the model and its pair accuracy on the held-out share (None
    when there are fewer than 10 pairs to split)."""
    n = len(pairs)
    perm = torch.randperm(n, generator=ctx.generator)
    n_out = int(n * holdout) if n >= 10 else 0
    train, held = pairs.select(perm[n_out:]), pairs.select(perm[:n_out])
    rm = ctx.domain.make_scorer(kind, ensemble=ensemble) if model is None else model.train()
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


def step_reward_ensemble(ctx: RunContext, pairs: PreferencePairs, fraction: float, lr_scale: float, holdout: float,
                         members: int) -> Scorer:
    """The per-step reward ensemble of offline preference-based RL (IQL, DTR): ``members``
    ``step_reward`` models fitted by :func:`train_reward_model` for ``fraction`` of the step budget;
    their held-out pair accuracy is reported as ``train/rm_heldout_accuracy``."""
    steps = max(1, round(ctx.budget.steps * fraction))
    rm, accuracy = train_reward_model(ctx, pairs, steps, lr_scale, holdout, kind="step_reward", ensemble=members)
    if accuracy is not None:
        ctx.report(rm_heldout_accuracy=accuracy)
    return rm


def offline_samples(offline: OfflineData) -> tuple[Contexts, Samples]:
    """Every sample of the offline data with its context: both sides of the pairs, the thumbs-rated
    singles and the demonstrations (the transitions offline RL learns from on the step view)."""
    contexts = Batch.cat([offline.pairs.contexts, offline.pairs.contexts, offline.singles.contexts,
                          offline.demos.contexts])
    samples = Batch.cat([offline.pairs.chosen, offline.pairs.rejected, offline.singles.samples,
                         offline.demos.samples])
    return contexts, samples


def sample_scorer(ctx: RunContext, scorer: str, rm_steps: int, lr_scale: float, holdout: float
                  ) -> Callable[[Contexts, Samples], Tensor]:
    """A free scorer for methods that rank samples without asking for new labels (SoPo, MoDiPO):
    ``"reward_model"``, a Bradley–Terry reward model fitted on the offline pairs for ``rm_steps`` of the
    step budget (:func:`train_reward_model`; held-out pair accuracy reported as
    ``train/rm_heldout_accuracy``), or ``"judge"``, the domain's free judge's ``score``. Returns a
    function (contexts, samples) → scores ``[B]`` (CPU, no gradient, in chunks of 256)."""
    if scorer == "judge":
        if ctx.domain.judge is None:
            raise ValueError(f"scorer='judge' needs capability:judge, which domain {ctx.domain.spec.name} lacks")
        fn = ctx.domain.judge.score
    elif scorer == "reward_model":
        fn, accuracy = train_reward_model(ctx, ctx.domain.offline.pairs, rm_steps, lr_scale, holdout)
        if accuracy is not None:
            ctx.report(rm_heldout_accuracy=accuracy)
    else:
        raise ValueError(f"unknown scorer {scorer!r}; use reward_model or judge")

    @torch.no_grad()
    def score(contexts: Contexts, samples: Samples) -> Tensor:
        parts = [fn(contexts[i : i + 256], samples[i : i + 256]).float().cpu() for i in range(0, len(samples), 256)]
        return torch.cat(parts) if parts else torch.zeros(0)

    return score


def step_features(ctx: RunContext, contexts: Contexts, samples: Samples, continuous: str = "actions") -> Tensor:
    """A model-free embedding ``[B, D]`` of samples from the domain's step view (SoPo's similarity,
    FRFT's nearest pairs). Discrete actions: the normalised histogram of the action ids over the valid
    steps (and every agent slot, on a step view with an agent axis). Continuous: ``"actions"``, the
    valid steps' actions flattened in order (a masked step is zeros); ``"mean_steps"``, the mean over
    valid steps of the flattened (observation, action)."""
    view = ctx.domain.transitions(contexts, samples)
    mask = view["mask"].float().cpu()
    count = mask.sum(1, keepdim=True).clamp_min(1)
    if ctx.domain.spec.action_kind == "discrete":  # an agent axis ([B, T, agents]) counts every agent's id
        action = view["action"].long().cpu()
        per = mask.view(*mask.shape, *[1] * (action.dim() - 2)).expand_as(action)
        hist = torch.zeros(len(mask), ctx.domain.spec.n_actions)
        hist.scatter_add_(1, action.flatten(1), per.flatten(1))
        return hist / per.flatten(1).sum(1, keepdim=True).clamp_min(1)
    action = view["action"].float().cpu()
    if continuous == "actions":
        return (action * mask.view(*mask.shape, *[1] * (action.dim() - 2))).flatten(1)
    if continuous != "mean_steps":
        raise ValueError(f"unknown continuous step features {continuous!r}; use actions or mean_steps")
    steps = torch.cat([view["obs"].flatten(2).float().cpu(), action.flatten(2)], dim=-1)
    return (steps * mask[..., None]).sum(1) / count

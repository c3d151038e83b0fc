"""Inverse alignment (FRFT) — Krishna & Sahoo 2024, "Solving the Inverse Alignment Problem for
Efficient RLHF" (arXiv 2412.10529).

RLHF in which the reward model is periodically re-fitted to the region the policy has moved to.
The *inverse* problem: with the actor and the offline preference data D fixed, optimise the critic
(the reward model). Training alternates:

1. RL (as ``rlhf``): R_i = r_φ(x, y_i) − β·Σ_t KL_t, leave-one-out advantages A_i,
   L = −E[A_i · log π_θ(y_i|x)] (or value-free PPO), for N steps;
2. pause: freeze π_θ; for candidate pairs (x_j, y_w,j, y_l,j) ∈ D draw ŷ_j ~ π_θ(·|x_j) and score
   each pair by how close its responses lie to the policy's, in a feature space f:

       s_j = ½ [cos(f(ŷ_j), f(y_w,j)) + cos(f(ŷ_j), f(y_l,j))]   (features standardised over the candidates);

3. keep the top ``subset_size`` pairs S by s_j and fine-tune the reward model on them (no new labels):

       L_RM = −E_{(x, y_w, y_l) ∈ S} log σ(r_φ(x, y_w) − r_φ(x, y_l));

then resume RL. The first reward model is fitted on all of D (as ``rlhf``).

Which reading: our sources are the paper's abstract and a third-party summary, not the full paper
(the paper gives FRFT with Sentence-BERT embeddings, the policy paused and frozen periodically,
a subset of D "aligned" with the policy's outputs). We read "aligned" as nearest by cosine
similarity to the frozen policy's sample on the *same* prompt, a pair scored by the mean over its
two responses, and "fine-tune" as continuing the same reward model (a fresh optimiser).

Ours:
- the feature space (``feature``): Sentence-BERT is not available on every domain, so by default
  ``steps``, a fixed, model-free embedding of the domain's step view (``DomainInstance.transitions``):
  for discrete actions the normalised histogram of the action ids over valid steps (a bag of words
  on text), for continuous ones the mean over valid steps of the flattened observation and action
  (robot: state and action; image: the prompt and the pixels, or the chain's x_t and x_{t−1});
  ``reward_model``: the reward model's own penultimate activations (the input of its last linear
  layer, averaged over any step axis), which move as it is fine-tuned;
- the schedule: ``refreshes`` pauses evenly spaced over the RL steps (period N = RL steps ÷
  (refreshes + 1)), ``refresh_fraction`` of the step budget for the fine-tuning, shared equally;
- the frozen policy's samples are online samples (charged); at most ``probe_fraction`` of the online
  budget goes to them, which caps the candidates per pause (and the subset in proportion);
- the RL stage is ``rlhf``'s (``benchmark.training.rloo_update``) with its defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.api import Algorithm, Contexts, Policy, RunContext, Samples, Scorer
from benchmark.objectives import pair_proximity
from benchmark.training import prompts_per_step, rloo_update, should_log, step_features, train_reward_model


@dataclass
class InverseAlignmentConfig:
    refreshes: int = 3
    """Pauses of RL for a reward-model refresh, evenly spaced (ours; the abstract gives no period)."""
    subset_size: int = 256
    """Top-k pairs nearest the frozen policy kept per pause, scaled with fewer candidates (ours; paper: ≈2,000)."""
    candidates: int = 1024
    """Offline pairs scored per pause, one frozen-policy sample each (ours; fewer if the budget requires)."""
    probe_fraction: float = 0.25
    """Most of the online-sample budget the pauses' samples may use, all pauses together (ours)."""
    feature: Literal["steps", "reward_model"] = "steps"
    """Feature space of nearness: the step view's actions (``steps``) or the RM's last hidden layer (paper: SBERT)."""
    refresh_fraction: float = 0.1
    """Share of the step budget spent fine-tuning the reward model, all pauses together (ours)."""
    refresh_lr_scale: float = 10.0
    """Fine-tuning learning rate ÷ the domain's base rate (ours; rlhf's reward-model rate)."""
    k: int = 4
    """Samples per prompt for the leave-one-out baseline (RLOO paper: 4, as rlhf; the paper uses PPO)."""
    beta: float = 0.05
    """β, the KL penalty's weight in the reward (TRL RLOO: 0.05, as rlhf)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-step KL estimate summed into the penalty (TRL: k1, as rlhf)."""
    loss_type: Literal["rloo", "ppo"] = "rloo"
    """rloo: −A·log π; ppo: value-free clipped surrogate (the paper: PPO; ours rloo, as rlhf)."""
    ppo_epochs: int = 4
    """Passes over each batch of samples with ``loss_type="ppo"`` (TRL PPO: 4)."""
    clip_eps: float = 0.2
    """PPO's ratio clip ε (TRL: 0.2)."""
    normalize_advantages: bool = False
    """Standardise advantages per batch (TRL RLOO: False)."""
    prompts: int | None = None
    """Prompts per RL step (None: the preset's batch size ÷ k, fewer if the online budget requires; ours)."""
    rm_fraction: float = 0.3
    """Share of the step budget spent on the first reward model (ours, as rlhf)."""
    rm_holdout: float = 0.1
    """Share of the offline pairs held out to measure the first reward model (ours, as rlhf)."""
    rm_lr_scale: float = 10.0
    """First reward model's learning rate ÷ the domain's base rate (ours, as rlhf)."""
    lr_scale: float = 1.0
    """Policy learning rate ÷ the domain's base fine-tuning rate (docs/design.md §2)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {self.k}")
        if self.refreshes < 0 or self.subset_size < 1 or self.candidates < 2:
            raise ValueError("need refreshes >= 0, subset_size >= 1 and candidates >= 2")
        if not (0 < self.rm_fraction < 1 and 0 <= self.refresh_fraction < 1 and 0 <= self.probe_fraction < 1):
            raise ValueError("rm_fraction must be in (0, 1), refresh_fraction and probe_fraction in [0, 1)")


class InverseAlignment(Algorithm):
    name = "inverse_alignment"
    check_steps = 32  # the reward model must learn before the policy moves (as rlhf)
    Config = InverseAlignmentConfig
    requires = frozenset({"offline:pairs", "online"})
    paper = "Krishna & Sahoo 2024, Solving the Inverse Alignment Problem for Efficient RLHF (FRFT)"

    def train(self, ctx: RunContext, cfg: InverseAlignmentConfig) -> Policy:
        pairs = ctx.domain.offline.pairs
        rm_steps = max(1, round(ctx.budget.steps * cfg.rm_fraction))
        rm, accuracy = train_reward_model(ctx, pairs, rm_steps, cfg.rm_lr_scale, cfg.rm_holdout)
        if accuracy is not None:
            ctx.report(rm_heldout_accuracy=accuracy)
        segments, refresh_steps, candidates = self._plan(ctx, cfg, len(pairs))
        subset = max(1, min(candidates, round(cfg.subset_size * candidates / cfg.candidates)))
        ctx.report(refreshes=len(segments) - 1, refresh_subset=subset)
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for i, length in enumerate(segments):
            reserve = (len(segments) - 1 - i) * candidates  # online samples the later pauses need
            self._rl(ctx, cfg, policy, reference, rm, opt, length, reserve)
            if i < len(segments) - 1:
                self._refresh(ctx, cfg, policy, rm, candidates, subset, refresh_steps)
        return policy

    @staticmethod
    def _plan(ctx: RunContext, cfg: InverseAlignmentConfig, n_pairs: int) -> tuple[list[int], int, int]:
        """(RL steps of each segment between pauses, fine-tuning steps per pause, candidates per
        pause): as many of ``refreshes`` pauses as the budgets leave room for, with at least one
        RL step on each side of each."""
        left = ctx.budget.steps - ctx.steps_done
        pauses = cfg.refreshes
        per = max(1, round(ctx.budget.steps * cfg.refresh_fraction) // max(pauses, 1))
        while pauses and left - pauses * per < pauses + 1:
            pauses -= 1
        candidates = min(cfg.candidates, n_pairs, math.floor(cfg.probe_fraction * ctx.budget.online_samples
                                                             / max(pauses, 1)))
        if candidates < 2:
            pauses = 0
        rl = left - pauses * per
        segments = [rl // (pauses + 1) + (1 if i < rl % (pauses + 1) else 0) for i in range(pauses + 1)]
        return segments, per, candidates

    @staticmethod
    def _rl(ctx: RunContext, cfg: InverseAlignmentConfig, policy: Policy, reference: Policy, rm: Scorer,
            opt: torch.optim.Optimizer, length: int, reserve: int) -> None:
        """``length`` RL steps of ``rlhf``'s loop, keeping ``reserve`` online samples for later."""
        prompts = ctx.domain.train_contexts
        for step in ctx.train_steps(length):
            n = prompts_per_step(ctx, cfg.k, cfg.prompts, reserve)
            if n == 0:
                return  # the online-sample budget (less the pauses' share) is spent
            batch = prompts[torch.randint(len(prompts), (n,), generator=ctx.generator)]
            samples = ctx.sample(policy, batch, cfg.k)
            reward, kl, loss = rloo_update(ctx, cfg, policy, reference, rm, opt, batch, samples)
            if should_log(ctx, step):
                ctx.log(step, reward=float(reward.mean()), kl=float(kl.mean()), loss=float(loss))

    def _refresh(self, ctx: RunContext, cfg: InverseAlignmentConfig, policy: Policy, rm: Scorer,
                 candidates: int, subset: int, steps: int) -> None:
        """Pause: the frozen policy's sample on each of ``candidates`` random pairs' contexts, the
        ``subset`` pairs nearest to it (:func:`benchmark.objectives.pair_proximity`), the reward model
        fine-tuned on them for ``steps`` steps."""
        pairs = ctx.domain.offline.pairs
        cand = pairs.select(torch.randperm(len(pairs), generator=ctx.generator)[:candidates])
        if ctx.samples_used + candidates > ctx.budget.online_samples:
            return  # nothing left to look at the policy with
        own = ctx.sample(policy, cand.contexts, 1)  # no gradient, eval mode: the frozen policy
        f_pi, f_w, f_l = (self._features(ctx, cfg, rm, cand.contexts, y) for y in (own, cand.chosen, cand.rejected))
        both = torch.cat([f_w, f_l])
        mean, std = both.mean(0), both.std(0).clamp_min(1e-6)
        score = pair_proximity(*((f - mean) / std for f in (f_pi, f_w, f_l)))
        keep = score.topk(subset).indices.sort().values
        ctx.log(ctx.steps_done, refresh_proximity=float(score[keep].mean()), refresh_proximity_all=float(score.mean()))
        train_reward_model(ctx, cand.select(keep), steps, cfg.refresh_lr_scale, 0.0, model=rm)

    @staticmethod
    @torch.no_grad()
    def _features(ctx: RunContext, cfg: InverseAlignmentConfig, rm: Scorer, contexts: Contexts,
                  samples: Samples, chunk: int = 256) -> Tensor:
        """Feature vectors ``[B, D]`` of samples (see ``feature`` in the module docstring), in chunks."""
        out = []
        for i in range(0, len(samples), chunk):
            c, s = contexts[i : i + chunk], samples[i : i + chunk]
            feats = _rm_features(rm, c, s) if cfg.feature == "reward_model" else step_features(ctx, c, s, "mean_steps")
            out.append(feats.cpu())
        return torch.cat(out).float()


def _rm_features(rm: Scorer, contexts: Contexts, samples: Samples) -> Tensor:
    """The input of the reward model's last linear layer, averaged over any step axis."""
    last = [m for m in rm.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[Tensor] = []
    handle = last.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    try:
        rm(contexts, samples)
    finally:
        handle.remove()
    h = seen[-1]
    return h.flatten(1, -2).mean(1) if h.dim() > 2 else h

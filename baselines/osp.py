"""OSP — Online Self-Preferring language models (Zhai et al., 2024, arXiv 2405.14103).

Online, per step: K samples y_1..y_K ~ π_θ(·|x) of the *current* policy on training prompts; the policy
judges them itself ("self-preferring") — here by its implicit reward

    r_θ(x, y) = β (log π_θ(y|x) − log π_ref(y|x));

the ranked samples y_(1) ≻ … ≻ y_(K) form several pairs ("ranked pairing") whose preference strength
grows with their rank gap,

    p_ij = ½ + (p_max − ½)·(j − i)/(K − 1),

and the policy minimises the soft-preference cross-entropy (SPCE) on them:

    L = −E[ p_ij log σ(β h_ij) + (1 − p_ij) log σ(−β h_ij) ],   h_ij = ρ_θ(y_(i)) − ρ_θ(y_(j)),
    ρ_θ = log π_θ − log π_ref.

No oracle, feedback query or judge is used; the samples count against the online-sample budget.

Which reading we implemented (only the abstract was verified; the rest is recollection): the paper's
self-judge is the policy prompted as an LLM judge; ours is its implicit reward r_θ. Mirrored pairs
(y_(i), y_(K+1−i)) (``pairing="mirror"``; ``"all"``: every i < j); the linear rank-gap strength with
p_max = 1 (``max_strength``); K = 4 (``k``). Ours: the paper starts from an instruction-following SFT
model that can already judge; at θ = θ_ref every r_θ is 0 and the self-judge has no opinion, so a
share ``warmup_fraction`` of the step budget first trains DPO on the offline pairs (hence ``requires``
offline:pairs), which gives the self-judge its first preferences; pairs of identical samples or
equal rewards are dropped; prompts per step = the preset's batch size ÷ K, fewer when the online-sample
budget would not last the steps left. β = 0.1 (TRL's DPO default) is both r_θ's and SPCE's strength.
On a diffusion domain r_θ is the ELBO surrogate's, so the self-ranking is noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from benchmark.api import Algorithm, Contexts, Policy, RunContext
from benchmark.data import sample_keys
from benchmark.objectives import dpo_loss, implicit_reward, logratio_margin, ranked_pairs, soft_preference_loss
from benchmark.training import logps_with_reference, optimizer_step, pair_logps, should_log


@dataclass
class OSPConfig:
    k: int = 4
    """K, samples per prompt ranked by the policy itself (paper's K unverified; ours 4)."""
    beta: float = 0.1
    """β of the self-judging implicit reward and of SPCE (paper's unverified; TRL's DPO default 0.1)."""
    pairing: Literal["mirror", "all"] = "mirror"
    """Ranked pairing: (y_(i), y_(K+1−i)), or every pair i < j (our reading of the paper: mirror)."""
    max_strength: float = 1.0
    """p_max, the soft target of the widest rank gap K − 1 (paper's mapping unverified; ours 1)."""
    warmup_fraction: float = 0.25
    """Share of the step budget spent on DPO over the offline pairs first (ours; the paper has none)."""
    prompts: int | None = None
    """Prompts per online step (None: the preset's batch size ÷ K), fewer if the online budget requires (ours)."""
    batch_size: int | None = None
    """Offline pairs per warm-up step (None: the preset's batch size)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"ranked pairing needs k >= 2 samples per prompt, got {self.k}")
        if self.pairing not in ("mirror", "all"):
            raise ValueError(f"unknown pairing {self.pairing!r}; use mirror or all")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0.5 < self.max_strength <= 1:
            raise ValueError(f"max_strength must be in (0.5, 1], got {self.max_strength}")
        if not 0 < self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in (0, 1): the self-judge needs a warm-up, got "
                             f"{self.warmup_fraction}")


class OSP(Algorithm):
    name = "osp"
    Config = OSPConfig
    requires = frozenset({"offline:pairs", "online"})
    paper = "Zhai et al. 2024, Online Self-Preferring Language Models"

    def train(self, ctx: RunContext, cfg: OSPConfig) -> Policy:
        policy = ctx.domain.make_policy()
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        warmup = max(1, round((ctx.budget.steps - ctx.steps_done) * cfg.warmup_fraction))
        self._warmup(ctx, cfg, policy, opt, warmup)
        prompts = ctx.domain.train_contexts
        for step in ctx.train_steps():
            n = self._prompts_per_step(ctx, cfg)
            if n == 0:
                break  # the online-sample budget is spent
            contexts = prompts[torch.randint(len(prompts), (n,), generator=ctx.generator)]
            self._self_preferring_step(ctx, cfg, policy, opt, contexts, step)
        return policy

    @staticmethod
    def _warmup(ctx: RunContext, cfg: OSPConfig, policy: Policy, opt: torch.optim.Optimizer, steps: int) -> None:
        """DPO on the offline pairs, so that the self-judge r_θ has preferences to start from."""
        pairs = ctx.domain.offline.pairs
        for step, idx in zip(ctx.train_steps(steps), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            lps = pair_logps(policy, ctx.domain.reference, b.contexts, b.chosen, b.rejected, ctx.generator)
            loss = dpo_loss(logratio_margin(*lps), cfg.beta).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, warmup_loss=float(loss.detach()))

    @staticmethod
    def _prompts_per_step(ctx: RunContext, cfg: OSPConfig) -> int:
        """The configured prompts, fewer when the online-sample budget would not last the steps left."""
        remaining = ctx.budget.online_samples - ctx.samples_used
        steps_left = max(ctx.budget.steps - ctx.steps_done, 1)
        wanted = cfg.prompts or max(ctx.budget.batch_size // cfg.k, 1)
        return min(wanted, max(remaining // (cfg.k * steps_left), 1)) if remaining >= cfg.k else 0

    @staticmethod
    def _self_preferring_step(ctx: RunContext, cfg: OSPConfig, policy: Policy, opt: torch.optim.Optimizer,
                              contexts: Contexts, step: int) -> None:
        """K samples per prompt, ranked by r_θ, paired by rank, one SPCE step on the pairs."""
        samples, rep = ctx.sample(policy, contexts, cfg.k), contexts.repeat(cfg.k)
        was_training = policy.training
        policy.eval()
        with torch.no_grad():
            pi, ref, _ = logps_with_reference(policy, ctx.domain.reference, rep, samples, ctx.generator)
        policy.train(was_training)
        reward = implicit_reward(pi, ref, cfg.beta).float().cpu()
        win, lose, p = ranked_pairs(reward.view(len(contexts), cfg.k), cfg.pairing == "mirror", cfg.max_strength)
        keys = sample_keys(samples)
        distinct = torch.tensor([keys[w] != keys[l] for w, l in zip(win.tolist(), lose.tolist())])
        keep = torch.nonzero(distinct & (reward[win] > reward[lose])).flatten()
        if not len(keep):
            return  # every pair tied: the self-judge has no opinion this step
        win, lose, p = win[keep], lose[keep], p[keep]
        lps = pair_logps(policy, ctx.domain.reference, rep[win], samples[win], samples[lose], ctx.generator)
        h = logratio_margin(*lps)
        loss = soft_preference_loss(h, cfg.beta, p.to(h.device)).mean()
        optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
        if should_log(ctx, step):
            ctx.log(step, loss=float(loss.detach()), pairs=len(keep),
                    self_reward_gap=float((reward[win] - reward[lose]).mean()))

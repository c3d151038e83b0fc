"""SeRA — Self-Reviewing and Alignment (Ko et al., 2024, "SeRA: Self-Reviewing and Alignment of Large
Language Models using Implicit Reward Margins", arXiv 2410.09362).

A direct-alignment loss (DPO, IPO or SLiC) trained in rounds; before each round the current policy
reviews the data with its own implicit reward

    r_θ(x, y) = β (log π_θ(y|x) − log π_ref(y|x)),   IRM(x, y_w, y_l) = r_θ(x, y_w) − r_θ(x, y_l).

1. Sample selection: the offline pairs are scored by IRM and a share ``select_ratio`` of them is kept
   (``benchmark.objectives.select_by_margin``).
2. Preference bootstrapping: on training prompts, N samples of the current policy are ranked by r_θ;
   the best and the worst form a new pair (``benchmark.objectives.best_and_worst``). No oracle, reward
   model, judge or feedback query is used; the samples count against the online-sample budget.
3. The next round trains on the selected offline pairs and the bootstrapped pairs, one shuffled set.

Which reading we implemented (only the abstract was verified; the rest is recollection): the kept
pairs are the top ``select_ratio`` = 70 % by IRM (``select_direction="largest"``; ``"smallest"`` is the
opposite reading); 3 rounds share the step budget evenly; the reference stays π_ref throughout. Ours:
round 0 trains on every offline pair (at θ = θ_ref every IRM is 0, so a selection would be arbitrary;
``first_round_full``); each round bootstraps ``bootstrap_prompts`` prompts (default one batch) with
N = 4 candidates, and only the latest round's bootstrapped pairs are trained on (``accumulate``);
bootstrapped pairs with equal rewards or identical samples are dropped. β = 0.1 (TRL's DPO default)
is both the implicit reward's and the loss's strength (IPO's τ, SLiC's scale); IPO here is the paper's
unnormalised form (``baselines/ipo.py`` length-normalises by default). On a diffusion domain r_θ is
the ELBO surrogate's (``benchmark.training.logps_with_reference``), so selection and ranking are noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from benchmark.api import Algorithm, Policy, PreferencePairs, RunContext
from benchmark.data import sample_keys
from benchmark.objectives import (
    best_and_worst,
    direct_alignment_loss,
    implicit_reward,
    implicit_reward_margin,
    logratio_margin,
    select_by_margin,
)
from benchmark.training import logps_with_reference, optimizer_step, pair_logps, should_log


@dataclass
class SeRAConfig:
    base_loss: Literal["dpo", "ipo", "slic"] = "dpo"
    """The direct-alignment loss trained each round (paper: several DAAs; which ones unverified; ours: dpo)."""
    beta: float = 0.1
    """β of the implicit reward and of the loss (IPO's τ, SLiC's scale) (TRL's DPO default: 0.1)."""
    rounds: int = 3
    """Rounds of review and training; the step budget is split evenly (paper: a few; 3 unverified)."""
    select_ratio: float = 0.7
    """Share of the offline pairs kept each round, by IRM (unverified recollection: 0.7)."""
    select_direction: Literal["largest", "smallest"] = "largest"
    """Keep the pairs with the largest IRM, or the smallest (our reading of the paper: largest)."""
    first_round_full: bool = True
    """Round 0 trains on all offline pairs, where IRM ≡ 0 at θ = θ_ref (ours)."""
    num_candidates: int = 4
    """N, policy samples per prompt ranked by r_θ for bootstrapping (ours; the paper's N unverified)."""
    bootstrap_prompts: int | None = None
    """Prompts bootstrapped per round (None: the preset's batch size), fewer if the online budget requires (ours)."""
    accumulate: bool = False
    """Keep the bootstrapped pairs of earlier rounds too (ours: only the latest round's)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    batch_size: int | None = None
    """Pairs per step (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""

    def __post_init__(self) -> None:
        if self.base_loss not in ("dpo", "ipo", "slic"):
            raise ValueError(f"unknown base_loss {self.base_loss!r}; use dpo, ipo or slic")
        if self.select_direction not in ("largest", "smallest"):
            raise ValueError(f"unknown select_direction {self.select_direction!r}; use largest or smallest")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 0 < self.select_ratio <= 1:
            raise ValueError(f"select_ratio must be in (0, 1], got {self.select_ratio}")
        if self.num_candidates < 2:
            raise ValueError(f"bootstrapping needs num_candidates >= 2, got {self.num_candidates}")
        if self.bootstrap_prompts is not None and self.bootstrap_prompts < 0:
            raise ValueError(f"bootstrap_prompts must be >= 0, got {self.bootstrap_prompts}")



class SeRA(Algorithm):
    name = "sera"
    Config = SeRAConfig
    requires = frozenset({"offline:pairs", "online"})
    paper = "Ko et al. 2024, SeRA: Self-Reviewing and Alignment of LLMs using Implicit Reward Margins"

    def train(self, ctx: RunContext, cfg: SeRAConfig) -> Policy:
        policy, offline = ctx.domain.make_policy(), ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        total, boot = ctx.budget.steps - ctx.steps_done, None
        for r in range(cfg.rounds):
            steps = total // cfg.rounds + (r < total % cfg.rounds)
            if steps == 0:
                continue
            data = offline
            if r > 0 or not cfg.first_round_full:
                data = offline.select(self._select(ctx, cfg, policy, offline))
                new = self._bootstrap(ctx, cfg, policy, cfg.rounds - r)
                if boot is None or not cfg.accumulate:
                    boot = new
                elif new is not None:
                    boot = PreferencePairs.cat([boot, new])
                n_boot = 0 if boot is None else len(boot)
                ctx.report(**{f"round{r}_selected": len(data), f"round{r}_bootstrapped": n_boot})
                data = data if boot is None else PreferencePairs.cat([data, boot])
            self._train_round(ctx, cfg, policy, opt, data, steps)
        return policy

    @staticmethod
    @torch.no_grad()
    def _select(ctx: RunContext, cfg: SeRAConfig, policy: Policy, pairs: PreferencePairs,
                chunk: int = 256) -> Tensor:
        """Indices of the offline pairs kept by their IRM under the current policy."""
        was_training, margins = policy.training, []
        policy.eval()
        for i in range(0, len(pairs), chunk):
            b = pairs.select(slice(i, i + chunk))
            lps = pair_logps(policy, ctx.domain.reference, b.contexts, b.chosen, b.rejected, ctx.generator)
            margins.append(implicit_reward_margin(*lps, cfg.beta).float().cpu())
        policy.train(was_training)
        return select_by_margin(torch.cat(margins), cfg.select_ratio, cfg.select_direction == "largest")

    @staticmethod
    def _bootstrap(ctx: RunContext, cfg: SeRAConfig, policy: Policy, rounds_left: int) -> PreferencePairs | None:
        """Best and worst of N policy samples by r_θ, on prompts drawn from the training contexts
        (None when the online budget affords no prompt or no pair survives)."""
        prompts, n = ctx.domain.train_contexts, cfg.num_candidates
        affordable = (ctx.budget.online_samples - ctx.samples_used) // (n * rounds_left)
        wanted = ctx.budget.batch_size if cfg.bootstrap_prompts is None else cfg.bootstrap_prompts
        count = min(wanted, len(prompts), affordable)
        if count <= 0:
            return None
        contexts = prompts[torch.randperm(len(prompts), generator=ctx.generator)[:count]]
        samples = ctx.sample(policy, contexts, n)
        was_training = policy.training
        policy.eval()
        with torch.no_grad():
            pi, ref, _ = logps_with_reference(policy, ctx.domain.reference, contexts.repeat(n), samples,
                                              ctx.generator)
        policy.train(was_training)
        reward = implicit_reward(pi, ref, cfg.beta).float().cpu()
        best, worst = best_and_worst(reward.view(count, n))
        chosen, rejected, margin = samples[best], samples[worst], reward[best] - reward[worst]
        distinct = torch.tensor([a != b for a, b in zip(sample_keys(chosen), sample_keys(rejected))])
        keep = torch.nonzero((margin > 0) & distinct).flatten()
        if not len(keep):
            return None
        self_id = torch.full((len(keep),), -1, dtype=torch.long)  # rater and source: the policy itself
        return PreferencePairs(contexts[keep], chosen[keep], rejected[keep], torch.sigmoid(margin[keep]),
                               self_id, self_id, self_id)

    @staticmethod
    def _train_round(ctx: RunContext, cfg: SeRAConfig, policy: Policy, opt: torch.optim.Optimizer,
                     pairs: PreferencePairs, steps: int) -> None:
        """``steps`` optimiser steps of the base loss on ``pairs``."""
        for step, idx in zip(ctx.train_steps(steps), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            pi_w, pi_l, ref_w, ref_l = pair_logps(policy, ctx.domain.reference, b.contexts, b.chosen,
                                                  b.rejected, ctx.generator)
            h = logratio_margin(pi_w, pi_l, ref_w, ref_l)
            loss = direct_alignment_loss(h, cfg.base_loss, cfg.beta).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), reward_margin=float(cfg.beta * h.detach().mean()),
                        reward_accuracy=float((h.detach() > 0).float().mean()))

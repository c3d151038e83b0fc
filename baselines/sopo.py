"""SoPo — Semi-online Preference Optimization (Tan, Wang, Geng & Zhou, NeurIPS 2025, "SoPo: Text-to-Motion
Generation Using Semi-Online Preference Optimization", arXiv 2412.05095).

Offline DPO overfits (it mines unpreferred samples the model already finds likely) and online DPO samples
with a bias (both sides of a pair come from the model); SoPo pairs a *preferred* sample from the offline data
with an *unpreferred* one the current policy generates for the same prompt. Each step, for offline preferred
samples (x, y_w): K samples y_1..y_K ~ π_θ(·|x); a scorer s picks the worst, y_l = argmin_k s(x, y_k); then

    L = −log σ(β [w·ρ_θ(x, y_w) − m·ρ_θ(x, y_l)]),   ρ_θ = log π_θ(y|x) − log π_ref(y|x),
    w = 2 − min_k (1 + cos(f(y_w), f(y_k)))/2 ∈ [1, 2],   m = 1[s(x, y_w) − s(x, y_l) > margin]

(``benchmark.objectives.sopo_loss`` / ``sopo_positive_weight``), optionally plus λ·DPO on the offline pairs.
On a diffusion domain ``log_prob`` is the Diffusion-DPO surrogate and y_w, y_l share one (t, ε) on π_θ and
π_ref (``benchmark.training.pair_logps``), as in the authors' code.

What we verified: the abstract, and the authors' released code (github.com/Xiaofeng-Tan/SoPo, whose
``.py`` sources are MDM's but whose committed compiled ``diffusion/gaussian_diffusion`` holds SoPo's
``training_losses``): y_w is the dataset's own motion for the prompt; K = 2 samples of the current model
(no gradient), scored by TMR's text–motion similarity in [0, 1]; y_l the lower; m = 1[s(y_l) < 0.45]; the
positive weighted by 2 − min_k sim(y_w, y_k), TMR's motion–motion similarity; the loss above on the
per-sample x̂₀-MSE with common (t, ε) for all four terms, and no offline-pair term.

Our readings (config fields): the preferred sample is an offline demonstration (``positive="demos"``, the
analogue of the dataset's ground-truth motion) or the chosen side of an offline pair (``"chosen"``). The scorer
is a Bradley–Terry reward model fitted first on the offline pairs (``scorer="reward_model"``, no new labels;
TMR is a pretrained discriminative model, which no domain here has) or the domain's free judge (``"judge"``,
requires ``capability:judge``). The similarity's embedding f is model-free, the sample's actions in the
domain's step view (continuous: the valid steps' actions flattened — a motion's normalised features, an
image's pixels, a robot's action sequence; discrete: the normalised histogram of the action ids, a response's
bag of tokens), standing in for TMR's learned motion embedding (the reward model's last-layer activations,
tried first, point the same way for nearly every sample and leave w ≈ 1); ``positive_weight="uniform"`` sets
w = 1. The code's absolute threshold 0.45 has no counterpart on a learned reward's arbitrary scale, so y_l is
kept when it scores more than ``margin`` below the positive (0: below it; None keeps every y_l); a dropped
y_l still leaves the positive's term, as in the code. β = 0.1 as for every DPO variant here (docs/design.md,
one β; the authors' code applies σ to raw MSE differences, Diffusion-DPO's β_dpo = 2, i.e. β = 1/s on our
surrogate's scale s). ``offline_weight`` λ adds DPO on a batch of offline pairs each step (one reading of
"leverages both online and offline DPO"; 0, as in the authors' code). Ours: the reward model takes
``rm_fraction`` of the step budget; prompts per step = the preset's batch size ÷ K, fewer when the online-sample
budget would not last the steps left (``benchmark.training.prompts_per_step``); ``requires`` is the default
config's, ``requirements(cfg)`` follows ``positive``, ``scorer`` and ``offline_weight``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from benchmark.api import Algorithm, Contexts, Policy, RunContext, Samples
from benchmark.objectives import best_and_worst, dpo_loss, logratio_margin, sopo_loss, sopo_positive_weight
from benchmark.training import (
    optimizer_step,
    pair_logps,
    prompts_per_step,
    sample_scorer,
    should_log,
    step_features,
)


@dataclass
class SoPoConfig:
    positive: Literal["demos", "chosen"] = "demos"
    """Where the preferred y_w comes from: the offline demonstrations or the chosen side of the offline pairs
    (paper: the dataset's ground-truth motions, i.e. demonstrations)."""
    scorer: Literal["reward_model", "judge"] = "reward_model"
    """Who picks the worst online sample: a reward model fitted on the offline pairs, or the free judge
    (paper: TMR text–motion similarity, a pretrained discriminative model)."""
    k: int = 2
    """K, online samples per preferred sample; the lowest-scored is y_l (authors' code: 2)."""
    beta: float = 0.1
    """β of the DPO form (ours: the benchmark's one β; authors' code: σ of raw MSE differences)."""
    margin: float | None = 0.0
    """Keep y_l only when s(y_w) − s(y_l) > margin; None keeps all (authors' code: s(y_l) < 0.45 on TMR's [0, 1])."""
    positive_weight: Literal["similarity", "uniform"] = "similarity"
    """w = 2 − min_k sim(y_w, y_k) on the step view's actions, or w = 1 (authors' code: similarity, on TMR's
    motion embedding)."""
    offline_weight: float = 0.0
    """λ, weight of an added DPO loss on a batch of offline pairs each step (authors' code: none, 0)."""
    prompts: int | None = None
    """Preferred samples (prompts) per step (None: the preset's batch size ÷ K), fewer if the online budget requires."""
    rm_fraction: float = 0.3
    """Share of the step budget spent fitting the reward model (ours, as ``rlhf``)."""
    rm_holdout: float = 0.1
    """Share of the offline pairs held out to measure the reward model (ours)."""
    rm_lr_scale: float = 10.0
    """Reward-model learning rate ÷ the domain's base rate (ours, as ``rlhf``)."""
    lr_scale: float = 1.0
    """Policy learning rate ÷ the domain's base fine-tuning rate (docs/design.md §2; authors: 1e-4 for MDM)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (ours, as the other baselines)."""

    def __post_init__(self) -> None:
        if self.positive not in ("demos", "chosen"):
            raise ValueError(f"unknown positive {self.positive!r}; use demos or chosen")
        if self.scorer not in ("reward_model", "judge"):
            raise ValueError(f"unknown scorer {self.scorer!r}; use reward_model or judge")
        if self.positive_weight not in ("similarity", "uniform"):
            raise ValueError(f"unknown positive_weight {self.positive_weight!r}; use similarity or uniform")
        if self.k < 1 or self.beta <= 0 or self.offline_weight < 0:
            raise ValueError("SoPo needs k >= 1, beta > 0 and offline_weight >= 0")
        if not 0 < self.rm_fraction < 1:
            raise ValueError(f"rm_fraction must be in (0, 1), got {self.rm_fraction}")


class SoPo(Algorithm):
    name = "sopo"
    Config = SoPoConfig
    requires = frozenset({"online", "offline:pairs", "offline:demos"})  # the default config's
    paper = "Tan et al. 2025, SoPo: Text-to-Motion Generation Using Semi-Online Preference Optimization"
    check_steps = 32  # the reward model must learn before it can pick meaningful unpreferred samples

    @classmethod
    def requirements(cls, cfg: SoPoConfig) -> frozenset[str]:
        reqs = {"online", "offline:demos" if cfg.positive == "demos" else "offline:pairs"}
        reqs.add("capability:judge" if cfg.scorer == "judge" else "offline:pairs")
        if cfg.offline_weight > 0:
            reqs.add("offline:pairs")
        return frozenset(reqs)

    def train(self, ctx: RunContext, cfg: SoPoConfig) -> Policy:
        rm_steps = max(1, round(ctx.budget.steps * cfg.rm_fraction))
        score = sample_scorer(ctx, cfg.scorer, rm_steps, cfg.rm_lr_scale, cfg.rm_holdout)
        policy, reference, off = ctx.domain.make_policy(), ctx.domain.reference, ctx.domain.offline
        contexts, positives = (off.demos.contexts, off.demos.samples) if cfg.positive == "demos" else (
            off.pairs.contexts, off.pairs.chosen)
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for step in ctx.train_steps():
            n = prompts_per_step(ctx, cfg.k, cfg.prompts)
            if n == 0:
                break  # the online-sample budget is spent
            idx = torch.randint(len(positives), (n,), generator=ctx.generator)
            x, y_w = contexts[idx], positives[idx]
            y_l, weight, keep = self._semi_online(ctx, cfg, policy, score, x, y_w)
            pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, x, y_w, y_l, ctx.generator)
            dev = pi_w.device
            loss = sopo_loss(pi_w - ref_w, pi_l - ref_l, cfg.beta, weight.to(dev), keep.to(dev)).mean()
            if cfg.offline_weight > 0:
                b = off.pairs.select(torch.randint(len(off.pairs), (n,), generator=ctx.generator))
                h = logratio_margin(*pair_logps(policy, reference, b.contexts, b.chosen, b.rejected, ctx.generator))
                loss = loss + cfg.offline_weight * dpo_loss(h, cfg.beta).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), kept=float(keep.mean()), weight=float(weight.mean()),
                        rho_w=float((pi_w - ref_w).detach().mean()), rho_l=float((pi_l - ref_l).detach().mean()))
        return policy

    @staticmethod
    def _semi_online(ctx: RunContext, cfg: SoPoConfig, policy: Policy, score: Callable[[Contexts, Samples], Tensor],
                     x: Contexts, y_w: Samples) -> tuple[Samples, Tensor, Tensor]:
        """(y_l, w, m): the lowest-scored of K fresh policy samples per prompt, the positive's weight and
        whether y_l is kept."""
        n = len(x)
        samples = ctx.sample(policy, x, cfg.k)  # laid out as x.repeat(K)
        rep = x.repeat(cfg.k)
        s = score(rep, samples).view(n, cfg.k)
        worst = best_and_worst(s)[1]
        keep = torch.ones(n)
        if cfg.margin is not None:
            keep = (score(x, y_w) - s.flatten()[worst] > cfg.margin).float()
        weight = torch.ones(n)
        if cfg.positive_weight == "similarity":
            f = torch.cat([step_features(ctx, x, y_w), step_features(ctx, rep, samples)])
            weight = sopo_positive_weight(f[:n], f[n:].view(n, cfg.k, -1))
        return samples[worst], weight, keep

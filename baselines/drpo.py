"""DR-PO — Dataset Reset Policy Optimization (Chang, Zhan, Oertell, Ober, Swamy, Brantley, Sun 2024,
"Dataset Reset Policy Optimization for RLHF", arXiv 2404.08495; code: Cornell-RL/drpo).

RLHF whose rollouts may start from a state of the offline dataset instead of the initial state.

Stage 1 (as ``rlhf``): a Bradley–Terry reward model on the offline pairs,

    L_RM = −E_{(x, y_w, y_l)} log σ(r_φ(x, y_w) − r_φ(x, y_l)).

Stage 2: with probability ``reset_prob`` a rollout is reset to an offline state: a pair's response
y and a roll-in fraction f ~ U[``rollin_low``, ``rollin_high``) give the start s_h = (x, y_{<h})
(``Policy.rollin``: the first h = ⌊f·(|y|−1)⌋ response tokens on text, the simulator state after
replaying ⌊f·T⌋ of the segment's actions on robot, the image noised back ⌈(1−f)·S⌉ of S DDIM steps
on image), and the policy continues it, y' = y_{<h} ⊕ ỹ with ỹ ~ π_θ(·|x, y_{<h}); otherwise it
starts from the pair's context x alone (h = 0). Only the policy's own steps t ≥ h are credited:

    R_i = r_φ(x, y'_i) − β·Σ_{t≥h} KL_t,     A_i = R_i − (1/(k−1))·Σ_{j≠i} R_j,
    L   = −E[A_i · Σ_{t≥h} log π_θ(y'_{i,t} | x, y'_{i,<t})]

for k continuations of each start (or PPO's clipped ratio of the same masked sums,
``loss_type="ppo"``). The paper's code masks the policy-gradient loss on the roll-in tokens and
draws the prefix length uniformly in [0, |y|−2] with probability β = 1 (every rollout is reset).

Ours:
- the optimiser is ``rlhf``'s (``benchmark.training.rloo_update``: RLOO, or value-free PPO), not
  the paper's PPO with a value head and GAE, so that ``drpo`` and ``rlhf`` differ only by the
  resets; the k continuations of one start share its leave-one-out baseline (a per-state baseline);
- the KL penalty is masked to the continuation as well (in the code the roll-in's KL sits at
  positions whose policy-gradient terms are masked, so it credits nothing either);
- reset states come from the pairs' chosen responses (``reset_source``; the paper resets to the
  offline preference data, its code to the TL;DR SFT summaries); every rollout, reset or not, is
  on an offline pair's context (the code's prompts are the reset dataset's), not ``rlhf``'s
  training contexts;
- f ~ U[0, 1) reproduces the code's uniform prefix length on text (the ``<eos>`` is never kept);
- requires ``capability:steps`` as well as ``reset``: the credit needs the roll-in as steps of the
  step view (text tokens, robot actions, the image chain's denoising steps at η > 0, which the
  chain view already masks before the restart). On the image domain's default horizon-1 view
  (η = 0) the one step, scored by the ELBO surrogate at any noise level, holds both the roll-in
  and the continuation; crediting it whole learned backwards in the conformance check (the
  updates concentrate on the reset images), so that cell is n/a (``--domain-set eta=1`` runs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from benchmark.api import Algorithm, Batch, Contexts, Policy, RunContext, Samples
from benchmark.training import prompts_per_step, rloo_update, rollin_steps, should_log, train_reward_model


@dataclass
class DRPOConfig:
    reset_prob: float = 1.0
    """Probability that a rollout starts from an offline state (DR-PO code ``beta``: 1.0)."""
    rollin_low: float = 0.0
    """Lower end of the roll-in fraction f ~ U[low, high) (DR-PO code: prefix length U[0, |y|−2], i.e. 0)."""
    rollin_high: float = 1.0
    """Upper end of the roll-in fraction (DR-PO code: 1.0, never the whole response)."""
    reset_source: Literal["chosen", "both"] = "chosen"
    """Which responses of the pairs give reset states: the chosen ones, or either side at random (ours)."""
    k: int = 4
    """Continuations per start for the leave-one-out baseline (DR-PO: PPO, 1; RLOO paper: 4, as rlhf)."""
    beta: float = 0.05
    """β, the KL penalty's weight in the reward (DR-PO code ``kl_coef``: 0.05)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-step KL estimate summed into the penalty (DR-PO code: k1, log π − log π_ref)."""
    loss_type: Literal["rloo", "ppo"] = "rloo"
    """rloo: −A·log π on the continuation; ppo: value-free clipped surrogate (DR-PO: PPO with a value head)."""
    ppo_epochs: int = 4
    """Passes over each batch of samples with ``loss_type="ppo"`` (DR-PO code: 4)."""
    clip_eps: float = 0.2
    """PPO's ratio clip ε (DR-PO code: 0.2)."""
    normalize_advantages: bool = False
    """Standardise advantages per batch (DR-PO code whitens its GAE advantages; ours False, as rlhf)."""
    prompts: int | None = None
    """Starts per RL step (None: the preset's batch size ÷ k, fewer if the online budget requires; ours)."""
    rm_fraction: float = 0.3
    """Share of the step budget spent on the reward model (ours, as rlhf)."""
    rm_holdout: float = 0.1
    """Share of the offline pairs held out to measure the reward model (ours, as rlhf)."""
    rm_lr_scale: float = 10.0
    """Reward-model learning rate ÷ the domain's base rate (ours, as rlhf)."""
    lr_scale: float = 1.0
    """Policy learning rate ÷ the domain's base fine-tuning rate (docs/design.md §2; DR-PO code: 3e-6)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0; ours, as rlhf)."""

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"the leave-one-out baseline needs k >= 2 continuations per start, got {self.k}")
        if not 0 <= self.reset_prob <= 1:
            raise ValueError(f"reset_prob must be in [0, 1], got {self.reset_prob}")
        if not 0 <= self.rollin_low <= self.rollin_high <= 1:
            raise ValueError(f"need 0 <= rollin_low <= rollin_high <= 1, got {self.rollin_low}, {self.rollin_high}")
        if not 0 < self.rm_fraction < 1:
            raise ValueError(f"rm_fraction must be in (0, 1), got {self.rm_fraction}")


class DRPO(Algorithm):
    name = "drpo"
    check_steps = 32  # the reward model must learn before the policy moves (as rlhf)
    Config = DRPOConfig
    # capability:steps: the roll-in must be a set of steps to leave out of the credit; on a horizon-1
    # view (the image domain at η = 0) the one step holds both the roll-in and the continuation
    requires = frozenset({"offline:pairs", "online", "capability:reset", "capability:steps"})
    paper = "Chang et al. 2024, Dataset Reset Policy Optimization for RLHF (DR-PO)"

    def train(self, ctx: RunContext, cfg: DRPOConfig) -> Policy:
        rm_steps = max(1, round(ctx.budget.steps * cfg.rm_fraction))
        rm, accuracy = train_reward_model(ctx, ctx.domain.offline.pairs, rm_steps, cfg.rm_lr_scale, cfg.rm_holdout)
        if accuracy is not None:
            ctx.report(rm_heldout_accuracy=accuracy)
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for step in ctx.train_steps():
            n = prompts_per_step(ctx, cfg.k, cfg.prompts)
            if n == 0:
                break  # the online-sample budget is spent
            contexts, samples, rollin, resets = self._rollouts(ctx, cfg, policy, n)
            reward, kl, loss = rloo_update(ctx, cfg, policy, reference, rm, opt, contexts, samples, rollin)
            if should_log(ctx, step):
                ctx.log(step, reward=float(reward.mean()), kl=float(kl.mean()), loss=float(loss),
                        reset_share=resets / n)
        return policy

    @staticmethod
    def _rollouts(ctx: RunContext, cfg: DRPOConfig, policy: Policy, n: int
                  ) -> tuple[Contexts, Samples, Tensor, int]:
        """k rollouts on each of ``n`` offline pairs' contexts: reset ones first (from a state of the
        pair's response), then fresh ones. Returns the contexts, the samples (laid out as
        ``contexts.repeat(k)`` within each group), the forced roll-in steps and the resets' count."""
        pairs = ctx.domain.offline.pairs
        idx = torch.randint(len(pairs), (n,), generator=ctx.generator)
        reset = torch.rand(n, generator=ctx.generator) < cfg.reset_prob
        m = int(reset.sum())
        contexts = pairs.contexts[torch.cat([idx[reset], idx[~reset]])]
        groups: list[tuple[Samples, Tensor]] = []
        if m:
            source = DRPO._reset_source(ctx, cfg, idx[reset])
            fraction = cfg.rollin_low + (cfg.rollin_high - cfg.rollin_low) * torch.rand(m, generator=ctx.generator)
            start = policy.rollin(source, fraction).repeat(cfg.k)
            groups.append((ctx.sample(policy, contexts[:m], cfg.k, start=start), rollin_steps(start).cpu()))
        if n - m:
            samples = ctx.sample(policy, contexts[m:], cfg.k)
            groups.append((samples, torch.zeros(len(samples), 0, dtype=torch.bool)))
        width = max(g[1].shape[1] for g in groups)
        rollin = torch.cat([torch.nn.functional.pad(g[1], (0, width - g[1].shape[1])) for g in groups])
        return contexts, Batch.cat([g[0] for g in groups]), rollin, m

    @staticmethod
    def _reset_source(ctx: RunContext, cfg: DRPOConfig, idx: Tensor) -> Samples:
        """The responses of pairs ``idx`` to reset to: the chosen ones (``reset_source="both"``:
        either side with probability ½)."""
        pairs = ctx.domain.offline.pairs
        if cfg.reset_source == "chosen":
            return pairs.chosen[idx]
        rejected = (torch.rand(len(idx), generator=ctx.generator) < 0.5).long()
        both = Batch.cat([pairs.chosen[idx], pairs.rejected[idx]])
        return both[torch.arange(len(idx)) + len(idx) * rejected]

"""GDPO — GFlowNet-DPO (Kwon, Matsunaga & Kim, EMNLP 2024, "GDPO: Learning to Directly Align Language
Models with Diversity Using GFlowNets", arXiv 2410.15096).

Offline preference alignment as a GFlowNet: the policy should sample responses in proportion to a
reward R(y|x) = π_ref(y|x)·R̃(y), where R̃ comes from the preference labels, instead of maximising a
reward as DPO does. Each response of a pair (chosen and rejected) is one trajectory on the step view
and is trained by detailed balance with a learned log-flow φ(s_t):

    δ_t = φ(s_t) + log π_θ(a_t|s_t) − log π_ref(a_t|s_t) − φ(s_{t+1}),   φ(s_L) := log R̃(y)
    log R̃(y) = α·c(y),   c = 0 for the chosen response, c = ``rejected_score`` for the rejected one
    L(θ, φ) = ½ E_pairs[Σ_t δ_t²(y_w) + Σ_t δ_t²(y_l)]          (``benchmark.objectives.gflownet_balance_loss``)

At the optimum π_θ(y|x) ∝ π_ref(y|x)·exp(α·c(y)): a tilt of the reference, not its collapse onto the
chosen responses. ``objective="subtb"`` uses λ-weighted sub-trajectory balance on the same flows.

What we could establish, and which reading we implemented. We could not read the paper's method
section (only its abstract and summaries). We read the authors' code (github.com/ggoggam/gdpo,
``src/gdpo/algo/offline/gdpo.py`` and ``config.py``): a squared detailed-balance loss on the tokens of
the chosen and the rejected response separately (summed over tokens, averaged over both), flows
parametrised through the stop action, log F(s) = log R(s⊤) − log π_θ(⊤|s); the state log-reward is a
reference term, log π_ref(next token|s) + log π_ref(⊤|s) at temperature γ = 0.1, plus α·{0 chosen,
−8 rejected} at the last token; α = 0.1 (its β = 0.1 is unused by the loss), learning rate 5e-6, clip
10. Our reading differs in two ways: (1) our policies expose no stop action, so φ is a learned
per-step value (``make_scorer("v")``) and the response length is fixed by the data; the γ-tempered
stop term is dropped; (2) the reference enters as the cumulative prior π_ref(a_{<t}) (forward-looking
flows), so that π_θ = π_ref with φ ≡ 0 balances neutral labels; the code adds the per-token
log π_ref(a_t|s_t) to each state's reward without a cumulative sum, which we took to be a slip.
Ours: the flow network's learning rate, and one optimiser (one clip) for policy and flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from benchmark.api import Algorithm, Batch, Policy, RunContext, Scorer
from benchmark.objectives import gflownet_balance_loss
from benchmark.training import optimizer_step, should_log


@dataclass
class GDPOConfig:
    objective: Literal["db", "subtb"] = "db"
    """Balance condition: per-step detailed balance (authors' code: db) or λ-weighted sub-trajectory balance."""
    alpha: float = 0.1
    """α, the scale of the label log-reward α·c(y) (authors' code: 0.1)."""
    rejected_score: float = -8.0
    """c of a rejected response in log space; a chosen one has 0 (authors' code: −8)."""
    subtb_lambda: float = 1.0
    """λ of sub-trajectory balance, weight λ^(length) (ours; only with objective='subtb')."""
    flow_lr_scale: float = 10.0
    """Learning rate of the log-flow network ÷ the domain's base rate (ours)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2; authors: 5e-6)."""
    batch_size: int | None = None
    """Pairs per step (None: the preset's batch size; authors: 16)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip of policy and flow together (authors' code: 10)."""

    def __post_init__(self) -> None:
        if self.objective not in ("db", "subtb"):
            raise ValueError(f"unknown objective {self.objective!r}; use db or subtb")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.rejected_score >= 0:
            raise ValueError(f"rejected_score must be < 0 (the chosen side has 0), got {self.rejected_score}")
        if not 0 < self.subtb_lambda <= 1:
            raise ValueError(f"subtb_lambda must be in (0, 1], got {self.subtb_lambda}")
        if self.flow_lr_scale <= 0 or self.lr_scale <= 0:
            raise ValueError("learning-rate scales must be > 0")


def balance_loss(policy: Policy, reference: Policy, flow: Scorer, contexts: Batch, samples: Batch,
                 log_reward: Tensor, noise: object | None, cfg: GDPOConfig) -> Tensor:
    """Per-sample balance loss ``[B]`` of ``samples`` with terminal log-reward ``log_reward``; per-step
    log-probs of the step view (exact for text and robot, the denoising surrogate on image)."""
    logp, mask = policy.step_log_prob(contexts, samples, noise=noise)
    with torch.no_grad():
        logp_ref = reference.step_log_prob(contexts, samples, noise=noise)[0].to(logp.device)
    phi = flow(contexts, samples).to(logp.device)
    lam = cfg.subtb_lambda if cfg.objective == "subtb" else None
    return gflownet_balance_loss(phi, logp, logp_ref, log_reward.to(logp.device), mask.to(logp.device), lam)


class GDPO(Algorithm):
    name = "gdpo"
    Config = GDPOConfig
    requires = frozenset({"offline:pairs"})
    paper = "Kwon et al. 2024, GDPO: Learning to Directly Align Language Models with Diversity Using GFlowNets"

    def train(self, ctx: RunContext, cfg: GDPOConfig) -> Policy:
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        flow = ctx.domain.make_scorer("v")
        pairs = ctx.domain.offline.pairs
        params = [*policy.parameters(), *flow.parameters()]
        opt = ctx.optimizer([{"params": list(policy.parameters())},
                             {"params": list(flow.parameters()), "lr": ctx.domain.spec.lr * cfg.flow_lr_scale}],
                            cfg.lr_scale)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            noise = policy.draw_noise(b.contexts, b.chosen, generator=ctx.generator)  # shared by both sides
            zero = torch.zeros(len(b))
            loss_w = balance_loss(policy, reference, flow, b.contexts, b.chosen, zero, noise, cfg)
            loss_l = balance_loss(policy, reference, flow, b.contexts, b.rejected,
                                  zero + cfg.alpha * cfg.rejected_score, noise, cfg)
            loss = 0.5 * (loss_w.mean() + loss_l.mean())
            optimizer_step(opt, loss, params, cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), loss_chosen=float(loss_w.detach().mean()),
                        loss_rejected=float(loss_l.detach().mean()))
        return policy

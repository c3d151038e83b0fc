"""HyPO — Hybrid Preference Optimization (Song, Swamy, Singh, Bagnell, Sun, 2024, "The Importance of Online
Data: Understanding Preference Fine-tuning via Coverage", arXiv 2406.01462).

DPO on the offline pairs, plus λ times the reverse KL to the reference measured on *unlabelled* samples of
the current policy (no new labels, no reward model):

    L(θ) = −E_{(x, y_w, y_l)~D} log σ(β [ρ_θ(x, y_w) − ρ_θ(x, y_l)]) + λ·E_{x, y~π_θ(·|x)} ρ_θ(x, y),
    ρ_θ(x, y) = log π_θ(y|x) − log π_ref(y|x).

The second term is KL(π_θ ‖ π_ref), whose gradient is taken by REINFORCE on K samples y_1..y_K ~ π_θ(·|x)
per prompt with a baseline b (``benchmark.objectives.reverse_kl_reinforce_loss``):

    ∇ KL ≈ (1/PK) Σ_ij (ρ_ij − b_ij) ∇log π_θ(y_ij|x_i),   b_ij = mean_{l≠j} ρ_il  (leave-one-out, RLOO).

Each step takes one offline batch for the DPO term and, for the KL term, K fresh samples on prompts of that
batch; the two terms are summed into one optimiser step.

Verified (the abstract; a NeurIPS 2024 poster summary of the paper, which lists the hyper-parameters HyPO
reports: learning rate, batch size, scheduler, optimiser, β, λ and "k" for RLOO): offline data for the
contrastive (DPO) loss, online unlabelled data for KL regularisation, the KL term's gradient by RLOO with k
samples. From memory (unverified; config fields where a choice): the sequence-level log-ratio ρ without length
normalisation; the online prompts taken from the offline batch (Algorithm 1's x ~ D; ``online_prompts``).
Not found: the paper's λ, β and k values. Ours: β = 0.1 (TRL's DPO default); λ = 0.01, measured on the text
domain's quick preset (300 steps, seeds 0 and 1): DPO ends at kl_to_ref 0.59–0.61 and win rate 0.528–0.529,
λ = 0.01 at 0.25–0.26 and 0.557–0.558, λ = 0.1 at 0.06 and 0.534–0.540, λ = 0.3 at ≤ 0.02 and 0.514–0.519;
K = 4; prompts per step = the preset's batch size ÷ K, fewer when the online-sample budget would not last
the steps left (once it is spent, the remaining steps are plain DPO); the learning rate is the domain's base
rate × ``lr_scale``.

Which likelihood the KL term reads (``kl_likelihood``): ``steps`` (default) — the step view's sum
(``benchmark.training.sequence_logp``), as ``rlhf``'s policy gradient: exact on text, robot and the diffusion
chain at η > 0 (capability ``exact_logp``; there the term is the KL of the chains, an upper bound on the
samples'), the ELBO surrogate at η = 0 (``DomainSpec.surrogate_logp``), with one (t, ε) draw shared by π_θ and
π_ref (common random numbers). ``exact`` — the same, but the cell is n/a without ``capability:exact_logp``.
``log_prob`` — ``Policy.log_prob``, the likelihood the DPO term reads (the surrogate on a diffusion domain even
at η > 0).

The baseline on a surrogate (``baseline="auto"``, the default): REINFORCE needs E_{y~π}[∇log π(y)] = 0, which
an exact likelihood has and the ELBO surrogate has not. There sg(ρ − b)·log π_θ, with ρ and log π_θ read on the
same draw, has the gradient (ρ − b)∇ρ: with b = 0 it is ∇½ρ², a k2-type penalty that pulls the policy's
denoiser to the reference's on its own samples (zero only at ρ = 0), whereas a leave-one-out or mean baseline
makes it ∇ of the within-prompt variance of ρ, blind to a shift common to all samples. So ``auto`` is ``loo``
(the paper's RLOO) where the KL term's likelihood is exact and ``none`` on a surrogate (image and motion at
η = 0); any baseline can be forced. That penalty is quadratic in a scaled per-draw ρ, so λ reads ~100× stronger
there: on the image domain's quick preset (seed 0) DPO ends at elbo_gap −49 and win rate 0.61; λ = 0.01 at
−7 and 0.50 (the gain cancelled; ``loo`` alike: −8, 0.50), λ = 0.001 at −34 and 0.57, λ = 0.0001 at −14 and
0.59. We keep one λ for every domain (as one β) and report it; pass ``--set lam=1e-4`` for a milder KL there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from benchmark.api import Algorithm, Contexts, DomainSpec, Policy, RunContext, Samples
from benchmark.objectives import dpo_loss, logratio_margin, reverse_kl_reinforce_loss
from benchmark.training import optimizer_step, pair_logps, prompts_per_step, sequence_logp, should_log


@dataclass
class HyPOConfig:
    beta: float = 0.1
    """β of the DPO term (paper's value unverified; TRL's DPO default 0.1)."""
    lam: float = 0.01
    """λ, the weight of the reverse-KL term on online samples (paper tunes it; its value unverified; ours 0.01)."""
    k: int = 4
    """K, online samples per prompt for the KL estimate and its baseline (paper: "k" of RLOO; value unverified)."""
    baseline: Literal["auto", "loo", "mean", "batch", "none"] = "auto"
    """b in (ρ − b)∇log π: loo over the prompt's K (paper: RLOO), its mean, the batch mean, 0; auto: loo where the
    KL term's likelihood is exact, none on a surrogate (ours, see the module docstring)."""
    kl_likelihood: Literal["steps", "exact", "log_prob"] = "steps"
    """log π of the KL term: the step view's sum, the same but n/a without exact_logp, or log_prob (ours: steps)."""
    online_prompts: Literal["pairs", "train"] = "pairs"
    """Prompts sampled online: the offline batch's (our reading of the paper's x ~ D) or the training contexts."""
    prompts: int | None = None
    """Prompts sampled per step (None: the preset's batch size ÷ K), fewer if the online budget requires (ours)."""
    batch_size: int | None = None
    """Offline pairs per step (None: the preset's batch size)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.lam < 0:
            raise ValueError(f"HyPO needs beta > 0 and lam >= 0, got beta={self.beta}, lam={self.lam}")
        if self.baseline not in ("auto", "loo", "mean", "batch", "none"):
            raise ValueError(f"unknown baseline {self.baseline!r}; use auto, loo, mean, batch or none")
        if self.k < (2 if self.baseline in ("auto", "loo", "mean") else 1):
            raise ValueError(f"baseline {self.baseline!r} needs k >= 2 samples per prompt, got {self.k}")
        if self.kl_likelihood not in ("steps", "exact", "log_prob"):
            raise ValueError(f"unknown kl_likelihood {self.kl_likelihood!r}; use steps, exact or log_prob")
        if self.online_prompts not in ("pairs", "train"):
            raise ValueError(f"unknown online_prompts {self.online_prompts!r}; use pairs or train")


def hypo_loss(h: Tensor, logp: Tensor, logp_ref: Tensor, cfg: HyPOConfig, baseline: str) -> tuple[Tensor, Tensor]:
    """(the HyPO loss, its KL-term surrogate): mean −log σ(βh) over the offline pairs' margins h = ρ_w − ρ_l,
    plus λ·mean sg(ρ − b)·log π_θ over the online samples (``cfg.k`` per prompt, ``baseline`` b; empty: no KL
    term)."""
    loss = dpo_loss(h, cfg.beta).mean()
    if not len(logp):
        return loss, torch.zeros((), device=loss.device)
    kl_term = reverse_kl_reinforce_loss(logp, logp_ref, cfg.k, baseline).mean()
    return loss + cfg.lam * kl_term, kl_term


class HyPO(Algorithm):
    name = "hypo"
    Config = HyPOConfig
    requires = frozenset({"offline:pairs", "online"})
    paper = "Song et al. 2024, The Importance of Online Data: Understanding Preference Fine-tuning via Coverage"

    @classmethod
    def requirements(cls, cfg: HyPOConfig) -> frozenset[str]:
        return cls.requires | ({"capability:exact_logp"} if cfg.kl_likelihood == "exact" else set())

    def train(self, ctx: RunContext, cfg: HyPOConfig) -> Policy:
        policy, reference, pairs = ctx.domain.make_policy(), ctx.domain.reference, ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        baseline = kl_baseline(cfg, ctx.domain.spec)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            logp, logp_ref = self._online_logps(ctx, cfg, policy, b.contexts)
            pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected, ctx.generator)
            h = logratio_margin(pi_w, pi_l, ref_w, ref_l)
            loss, kl_term = hypo_loss(h, logp, logp_ref.to(logp.device), cfg, baseline)
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), reward_margin=float(cfg.beta * h.detach().mean()),
                        online_kl=float((logp - logp_ref).detach().mean()) if len(logp) else 0.0,
                        kl_term=float(kl_term.detach()), online_samples=len(logp))
        return policy

    @staticmethod
    def _online_logps(ctx: RunContext, cfg: HyPOConfig, policy: Policy, batch: Contexts) -> tuple[Tensor, Tensor]:
        """(log π_θ with grad, log π_ref) of K fresh samples per prompt on common noise; empty tensors once the
        online-sample budget is spent (or λ = 0)."""
        n = prompts_per_step(ctx, cfg.k, cfg.prompts) if cfg.lam > 0 else 0
        if cfg.online_prompts == "pairs":
            n = min(n, len(batch))
        if n == 0:
            return torch.zeros(0, device=ctx.device), torch.zeros(0, device=ctx.device)
        if cfg.online_prompts == "pairs":
            contexts = batch[torch.arange(n)]  # the offline batch is a random draw already
        else:
            prompts = ctx.domain.train_contexts
            contexts = prompts[torch.randint(len(prompts), (n,), generator=ctx.generator)]
        contexts = contexts.to(ctx.device)
        samples, rep = ctx.sample(policy, contexts, cfg.k), contexts.repeat(cfg.k)
        noise = policy.draw_noise(rep, samples, generator=ctx.generator)  # shared by π_θ and π_ref
        logp = _likelihood(policy, rep, samples, noise, cfg.kl_likelihood)
        with torch.no_grad():
            logp_ref = _likelihood(ctx.domain.reference, rep, samples, noise, cfg.kl_likelihood)
        return logp, logp_ref


def kl_baseline(cfg: HyPOConfig, spec: DomainSpec) -> str:
    """The configured baseline; ``auto``: ``loo`` where the KL term reads an exact likelihood (the step view
    where the domain has ``exact_logp``, ``log_prob`` where it is no surrogate), else ``none``."""
    if cfg.baseline != "auto":
        return cfg.baseline
    exact = not spec.surrogate_logp if cfg.kl_likelihood == "log_prob" else "exact_logp" in spec.capabilities
    return "loo" if exact else "none"


def _likelihood(policy: Policy, contexts: Contexts, samples: Samples, noise: object, kind: str) -> Tensor:
    """log π of the KL term: the step view's sum (``steps``/``exact``) or ``Policy.log_prob``."""
    if kind == "log_prob":
        return policy.log_prob(contexts, samples, noise=noise)
    return sequence_logp(policy, contexts, samples, noise)[0]

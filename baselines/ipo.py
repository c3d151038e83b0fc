"""IPO — Identity Preference Optimisation (Azar et al., 2023, "A General Theoretical Paradigm
to Understand Learning from Human Preferences").

    L(θ) = E_{(x, y_w, y_l)~D} (h − 1/(2τ))²,   h = ρ_θ(x, y_w) − ρ_θ(x, y_l).

Reading implemented: TRL's DPOTrainer (``loss_type="ipo"``) divides each sequence log-ratio by its length
(token count) before taking the difference, a normalisation the IPO authors confirmed to TRL;
``length_normalize=False`` gives the paper's unnormalised form. τ = 0.1 is TRL's default β.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.objectives import ipo_loss, logratio_margin
from benchmark.training import ReferenceMemo, optimizer_step, pair_logps, should_log


@dataclass
class IPOConfig:
    tau: float = 0.1
    """τ, the regularisation of the target margin 1/(2τ) (TRL's β: 0.1; the paper sweeps 0.01–1)."""
    length_normalize: bool = True
    """Divide each sequence log-ratio by its length, as TRL does (the paper: no normalisation)."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    batch_size: int | None = None
    """Pairs per step (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""


class IPO(Algorithm):
    name = "ipo"
    Config = IPOConfig
    requires = frozenset({"offline:pairs"})
    paper = "Azar et al. 2023, IPO"

    def train(self, ctx: RunContext, cfg: IPOConfig) -> Policy:
        policy, reference = ctx.domain.make_policy(), ctx.domain.reference
        pairs = ctx.domain.offline.pairs
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        memo = ReferenceMemo(len(pairs))  # log π_ref of each pair computed once (exact likelihoods)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(pairs), cfg.batch_size)):
            b = pairs.select(idx)
            pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected,
                                                  ctx.generator, memo, idx)
            if cfg.length_normalize:
                n_w = policy.size(b.chosen).to(pi_w.device)
                n_l = policy.size(b.rejected).to(pi_w.device)
                pi_w, ref_w, pi_l, ref_l = pi_w / n_w, ref_w / n_w, pi_l / n_l, ref_l / n_l
            h = logratio_margin(pi_w, pi_l, ref_w, ref_l)
            loss = ipo_loss(h, cfg.tau).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()), margin=float(h.detach().mean()))
        return policy

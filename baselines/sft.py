"""SFT / behaviour cloning: maximum likelihood on preferred samples.

The usual first stage of RLHF and the floor every preference method should beat: fine-tune the
reference on the chosen side of the offline pairs (or on the demonstrations), with the domain's
own likelihood loss (token NLL, denoising MSE, BC NLL; ``Policy.mle_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.training import optimizer_step, should_log


@dataclass
class SFTConfig:
    data: Literal["chosen", "demos"] = "chosen"
    """Train on the chosen side of offline pairs, or on the offline demonstrations."""
    lr_scale: float = 1.0
    """Multiplier on the domain's base fine-tuning learning rate (docs/design.md §2)."""
    batch_size: int | None = None
    """Samples per step (None: the preset's batch size)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (TRL: 1.0)."""


class SFT(Algorithm):
    name = "sft"
    Config = SFTConfig
    requires = frozenset({"offline:pairs"})
    paper = "supervised fine-tuning / behaviour cloning"

    def train(self, ctx: RunContext, cfg: SFTConfig) -> Policy:
        policy = ctx.domain.make_policy()
        off = ctx.domain.offline
        contexts, samples = (off.pairs.contexts, off.pairs.chosen) if cfg.data == "chosen" else (
            off.demos.contexts, off.demos.samples)
        opt = ctx.optimizer(policy.parameters(), cfg.lr_scale)
        for step, idx in zip(ctx.train_steps(), ctx.batches(len(samples), cfg.batch_size)):
            loss = policy.mle_loss(contexts[idx], samples[idx], generator=ctx.generator).mean()
            optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
            if should_log(ctx, step):
                ctx.log(step, loss=float(loss.detach()))
        return policy

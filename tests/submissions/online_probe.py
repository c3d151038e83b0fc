"""A submitted method that uses every online route of the view: it samples its own policy (a
rollout on robot), asks the feedback channel and the judge, builds a scorer and reads the step view,
then takes DPO steps on the labelled pairs. (tests/test_submit.py)"""

from dataclasses import dataclass

import torch

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.objectives import dpo_loss
from benchmark.training import optimizer_step


class OnlineProbe(Algorithm):
    name = "online_probe"
    requires = frozenset({"online", "feedback"})

    @dataclass
    class Config:
        beta: float = 0.1
        """β of the DPO loss on the fresh pairs."""

    def train(self, ctx: RunContext, cfg: Config) -> Policy:
        policy, ref = ctx.domain.make_policy(), ctx.domain.reference
        opt = ctx.optimizer(policy.parameters())
        scorer = ctx.domain.make_scorer(kind="reward")
        assert isinstance(scorer, torch.nn.Module)
        for _ in ctx.train_steps(2):
            idx = torch.randperm(len(ctx.domain.train_contexts), generator=ctx.generator)[:4]
            contexts = ctx.domain.train_contexts.select(idx)
            a = ctx.sample(policy, contexts)
            b = ctx.sample(policy, contexts)
            prefer_a = ctx.domain.feedback.compare(contexts, a, b) > 0.5
            if ctx.domain.judge is not None:
                ctx.domain.judge.compare(contexts, a, b)
            view = ctx.domain.transitions(contexts, a)
            assert "obs" in view and view["obs"].shape[0] == len(contexts)
            lw = policy.log_prob(contexts, a) - ref.log_prob(contexts, a).detach()
            ll = policy.log_prob(contexts, b) - ref.log_prob(contexts, b).detach()
            h = torch.where(prefer_a, lw - ll, ll - lw)
            optimizer_step(opt, dpo_loss(h, cfg.beta).mean(), policy.parameters(), 1.0)
            ctx.report(samples_seen=float(ctx.samples_used), labels=float(ctx.domain.feedback.used))
        return policy

"""The reference itself: the untrained copy of the domain's reference policy.

Not a method but the board's **noise floor**: it consumes nothing, trains nothing and is scored
like every other entry. With paired evaluation (docs/design.md §5) it scores exactly 0 on
``normalized_score`` and 0.5 on ``win_rate``; an entry whose interval covers it is not
distinguishable from doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.api import Algorithm, Policy, RunContext


@dataclass
class ReferenceConfig:
    """No hyper-parameters: the reference is what it is."""


class Reference(Algorithm):
    name = "reference"
    Config = ReferenceConfig
    requires = frozenset()
    paper = "the untrained reference policy (noise floor)"
    trains = False

    def train(self, ctx: RunContext, cfg: ReferenceConfig) -> Policy:
        return ctx.domain.make_policy()

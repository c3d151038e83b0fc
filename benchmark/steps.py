"""The step view of samples, for every domain (docs/design.md §2).

Step-level algorithms (IQL, DTR, MARLHF) need transitions and per-step log-probs. Every domain
gives them as tensors through ``DomainInstance.transitions(contexts, samples)``: sequential domains
natively (capability ``steps``: text tokens, robot actions, diffusion denoising steps where the
chain is stochastic), the others as the horizon-1 view written once here (:func:`horizon_one`:
the context is the observation, the whole sample the action, the episode ends after it).
Algorithms call :func:`step_view` and never branch on the domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.api import Contexts, DomainInstance, Noise, Policy, Samples

FIELDS = ("obs", "action", "next_obs", "done", "mask", "timestep", "cond")


@dataclass
class StepView:
    """Transitions of a batch of samples, tensors ``[B, T, ...]`` (shapes in ``DomainSpec``).

    ``done`` marks the step that ends the sample's episode; ``mask`` the valid steps; ``cond`` is
    per sample ``[B, *cond_shape]``; ``log_prob`` ``[B, T]`` (0 on masked steps) is filled when a
    policy is given."""

    obs: Tensor
    action: Tensor
    next_obs: Tensor
    done: Tensor
    mask: Tensor
    timestep: Tensor
    cond: Tensor
    log_prob: Tensor | None = None

    @property
    def horizon(self) -> int:
        return int(self.mask.shape[1])

    def flat(self, x: Tensor) -> Tensor:
        """The valid steps of a ``[B, T, ...]`` tensor, flattened to ``[N, ...]``."""
        return x[self.mask]


def horizon_one(obs: Tensor, action: Tensor, cond: Tensor) -> dict[str, Tensor]:
    """The horizon-1 view: one step per sample, ``obs [B, 1, ...]``, ``action [B, 1, ...]``, done."""
    b = obs.shape[0]
    ones = torch.ones(b, 1, dtype=torch.bool)
    return {"obs": obs[:, None], "action": action[:, None], "next_obs": obs[:, None].clone(), "done": ones,
            "mask": ones.clone(), "timestep": torch.zeros(b, 1, dtype=torch.long), "cond": cond}


def step_view(instance: DomainInstance, contexts: Contexts, samples: Samples, policy: Policy | None = None,
              *, noise: Noise | None = None) -> StepView:
    """The domain's step view of ``samples`` (from ``contexts``), with ``policy``'s per-step log-probs."""
    tr = instance.transitions(contexts, samples)
    missing = [f for f in FIELDS if f not in tr]
    if missing:
        raise ValueError(f"domain {instance.spec.name}'s transitions lack {missing}")
    view = StepView(tr["obs"], tr["action"], tr["next_obs"], tr["done"].bool(), tr["mask"].bool(),
                    tr["timestep"].long(), tr["cond"])
    if policy is not None:
        lp, mask = policy.step_log_prob(contexts, samples, noise=noise)
        if lp.shape != view.mask.shape:
            raise ValueError(f"step log-probs {tuple(lp.shape)} do not match the step view {tuple(view.mask.shape)}")
        view.log_prob = lp * mask.to(lp.device)
    return view

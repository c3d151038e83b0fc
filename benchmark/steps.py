"""The step view of samples, for every domain (docs/design.md §2).

Step-level algorithms (IQL, DTR, MARLHF) need transitions (obs, action, next_obs, done) and
per-step log-probs. Sequential domains (capability ``steps``) provide them natively through
``DomainInstance.transitions`` and ``Policy.step_log_prob``; every other domain is seen as
horizon 1: the context is the observation, the whole sample is the action, the episode ends
after it, and the per-step log-prob is the sample's log-prob. Algorithms call
:func:`step_view` and never branch on the domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.api import Batch, Contexts, DomainInstance, Noise, Policy, Samples


@dataclass
class StepView:
    """Transitions of a batch of samples, ``[B, T, ...]`` per field (T = 1 for the fallback).

    ``obs``/``action``/``next_obs`` are tensors for sequential domains; in the horizon-1 fallback
    ``obs`` is the contexts batch, ``action`` the samples batch and ``next_obs`` is None.
    ``log_prob`` (``[B, T]``, masked) is filled when a policy is given."""

    obs: Tensor | Batch
    action: Tensor | Batch
    next_obs: Tensor | Batch | None
    done: Tensor
    mask: Tensor
    native: bool
    log_prob: Tensor | None = None

    @property
    def horizon(self) -> int:
        return int(self.mask.shape[1])


def step_view(instance: DomainInstance, contexts: Contexts, samples: Samples, policy: Policy | None = None,
              *, noise: Noise | None = None) -> StepView:
    """The domain's transitions of ``samples`` (from ``contexts``), or the horizon-1 view."""
    if instance.transitions is not None:
        tr = instance.transitions(samples)
        view = StepView(tr["obs"], tr["action"], tr["next_obs"], tr["done"].bool(), tr["mask"].bool(), True)
        if policy is not None:
            lp, mask = policy.step_log_prob(contexts, samples, noise=noise)
            view.log_prob = lp * mask.to(lp.device)
        return view
    n = len(samples)
    ones = torch.ones(n, 1, dtype=torch.bool)
    view = StepView(contexts, samples, None, ones, ones.clone(), False)
    if policy is not None:
        view.log_prob = policy.log_prob(contexts, samples, noise=noise)[:, None]
    return view

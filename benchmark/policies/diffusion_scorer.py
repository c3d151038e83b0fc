"""Reward, value and Q models of the diffusion domains (image, motion), written once.

A scorer embeds the prompt (mean of learned token embeddings) and, where its kind sees a sample,
the sample through the domain's own trunk (a conv stack over an image or over a motion's frames),
and maps the concatenation to a scalar with a small MLP. ``reward`` r(c, x) and ``value`` V(c)
score whole samples; per step (``[B, T]``) on the horizon-1 view (η = 0) ``step_reward`` and ``q``
are r(c, x) and ``v`` is V(c); on the denoising chain (η > 0) they see the step's x_t, its
timestep and, for ``step_reward``/``q``, the action x_{t−1} (stacked as channels, so the trunk is
built for twice the sample's channels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmark.api import Contexts, Samples, Scorer
from benchmark.policies.diffusion import DDIMChain

Trunk = Callable[[int, int], nn.Module]
"""``trunk(channels, dim)``: a module mapping ``[N, channels, *spatial]`` to ``[N, dim]``."""

KINDS = ("reward", "value", "step_reward", "q", "v")


class DiffusionScorer(Scorer):
    """See the module docstring. ``channels`` is the sample's channel count (3 for RGB, D for a
    motion's features), ``vocab`` the prompt vocabulary's size, ``field`` the sample field."""

    def __init__(self, kind: str, *, trunk: Trunk, channels: int, vocab: int, field: str, dim: int = 32,
                 chain: DDIMChain | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown scorer kind {kind!r}")
        self.kind, self.field = kind, field
        self.chain = chain if kind in ("step_reward", "q", "v") else None
        with_sample = kind != "value" and not (kind == "v" and self.chain is None)
        stacked = 2 * channels if self.chain is not None and kind != "v" else channels
        self.prompt = nn.Embedding(vocab, dim)
        self.time = nn.Embedding(1000, dim) if self.chain is not None else None
        self.sample = trunk(stacked, dim) if with_sample else None
        self.head = nn.Sequential(nn.Linear(dim * (2 if with_sample else 1), 64), nn.SiLU(), nn.Linear(64, 1))

    def _score(self, tokens: Tensor, x: Tensor | None, t: Tensor | None = None) -> Tensor:
        p = self.prompt(tokens).mean(1)
        if t is not None:
            p = p + self.time(t)
        if self.sample is not None:
            p = torch.cat([p, self.sample(x.float())], dim=-1)
        return self.head(p).squeeze(-1)

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        dev = self.head[0].weight.device
        tokens = contexts.tokens.to(dev)
        if self.kind != "value" and samples is None:
            raise ValueError(f"a {self.kind} scorer needs samples")
        if self.chain is None:
            out = self._score(tokens, None if self.sample is None else samples.tensors[self.field].to(dev))
            return out if self.kind in ("reward", "value") else out[:, None]
        tr = self.chain.transitions(contexts, samples)
        b, steps = tr["mask"].shape
        x = tr["obs"].to(dev).flatten(0, 1)
        if self.kind != "v":
            x = torch.cat([x, tr["action"].to(dev).flatten(0, 1)], dim=1)
        out = self._score(tokens.repeat_interleave(steps, 0), x, tr["timestep"].to(dev).flatten())
        return out.view(b, steps) * tr["mask"].to(dev).float()

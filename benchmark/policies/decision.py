"""A return-conditioned transformer actor for control domains (capability ``control``).

The Decision Transformer (Chen et al. 2021) conditions a sequence model on the return still to
come; DTR (Tu et al. 2025) uses it as the actor of offline preference-based RL. Here:

    π(a_t | h_t, g, c) = tanh_*N(μ, diag σ²),   (μ, log σ) = base(s_t, c) + Δ_θ(window_t)

``window_t`` is the last K steps up to t, one token per step: the normalised observation s_τ, the
previous action a_{τ−1} (0 at a sample's first step), the return-to-go rate g_τ and the context's
``cond``, plus a learned position within the window; a transformer encoder reads the window and
its last token gives Δ. ``base`` is the domain's tanh-Gaussian actor (``benchmark.policies.control``)
and Δ's output layer starts at zero, so a fresh policy *is* its base.

Ours, where the Decision Transformer differs:
- **Return-to-go as a rate.** Training segments are shorter than evaluation episodes, so an
  absolute return-to-go does not carry over; a token's goal is the mean learned reward still to
  come in its sample, g_τ = mean_{τ' ≥ τ} r̃_τ'. Sampling and ``log_prob`` condition every step on
  one fixed goal, ``target_goal`` (set by the algorithm from the data), not a decremented one.
- **One token per step** (not three), and a residual on the base actor instead of a model trained
  from scratch: every method on this benchmark starts from the domain's reference.
- ``log_prob`` is exact for this conditioning: a sample is scored with the windows its rollout saw.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.api import Contexts, Noise, Policy, Samples
from benchmark.policies.control import LOG_STD_MAX, LOG_STD_MIN, PRE_TANH_LIMIT, TanhGaussianPolicy, clip_actions


def step_windows(x: Tensor, k: int) -> Tensor:
    """``[B, T, ...]`` → ``[B, T, k, ...]``: for each t the k steps ending at t, zero-padded on the left."""
    pad = x.new_zeros(x.shape[0], k - 1, *x.shape[2:])
    return torch.cat([pad, x], 1).unfold(1, k, 1).movedim(-1, 2)


class DecisionTransformerPolicy(Policy):
    """A return-conditioned residual transformer on a :class:`TanhGaussianPolicy` (module docstring)."""

    def __init__(self, base: TanhGaussianPolicy, context_len: int = 20, width: int = 64, layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.base, self.context_len = base, context_len
        self.simulator = base.simulator
        self.__dict__["_sample_meter"] = base.__dict__.get("_sample_meter")  # charged like its base
        obs, act, cond = base.obs_dim, base.act_dim, base.cond_dim
        self.embed = nn.Linear(obs + act + 1 + cond, width)
        self.position = nn.Embedding(context_len, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 2 * act)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("target_goal", torch.zeros(()))

    # -- the distribution -----------------------------------------------------------------------
    def _tokens(self, obs: Tensor, prev_actions: Tensor, goals: Tensor, cond: Tensor | None) -> Tensor:
        x = [(obs - self.base.obs_mean) / self.base.obs_std, prev_actions, goals[..., None]]
        if self.base.cond_dim:
            x.append(cond.to(obs.dtype)[:, None, :].expand(-1, obs.shape[1], -1))
        return self.embed(torch.cat(x, -1))

    def dist_params(self, obs: Tensor, prev_actions: Tensor, goals: Tensor, cond: Tensor | None,
                    steps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(μ, log σ) ``[B, n, A]`` at the query ``steps`` ``[B, n]`` (None: every step, n = T) of
        histories ``obs``/``prev_actions`` ``[B, T, ...]`` and goals ``[B, T]``; each query reads the
        window of K steps ending at it."""
        k, (b, t) = self.context_len, obs.shape[:2]
        if steps is None:
            steps = torch.arange(t, device=obs.device).expand(b, t)
        rows = torch.arange(b, device=obs.device)[:, None]
        windows = step_windows(self._tokens(obs, prev_actions, goals, cond), k)[rows, steps]  # [B, n, K, W]
        n = steps.shape[1]
        pad = (k - 1 - steps.clamp(max=k - 1))[..., None]  # window slots before the sample's first step
        j = torch.arange(k, device=obs.device)
        valid, pos = j >= pad, (j - pad).clamp_min(0)  # [B, n, K]
        h = (windows + self.position(pos)).reshape(b * n, k, -1)
        h = self.body(h, src_key_padding_mask=~valid.reshape(b * n, k))
        delta_mu, delta_log_std = self.head(h[:, -1]).reshape(b, n, -1).chunk(2, dim=-1)
        mu, log_std = self.base.dist_params(obs[rows, steps], cond[:, None, :] if self.base.cond_dim else None)
        # the base's bounds (identities at Δ = 0, where the base already lies inside them)
        return ((mu + delta_mu).clamp(-PRE_TANH_LIMIT, PRE_TANH_LIMIT),
                (log_std + delta_log_std).clamp(LOG_STD_MIN, LOG_STD_MAX))

    def _history(self, contexts: Contexts, samples: Samples, goals: Tensor | None) -> tuple[Tensor, ...]:
        dev = self.device_hint()
        actions = samples.actions.to(dev).float()
        t = actions.shape[1]
        obs = samples.obs.to(dev)[:, :t].float()
        prev = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
        g = self.target_goal.expand(len(samples), t) if goals is None else goals.to(dev).float()
        cond = contexts.cond.to(dev).float() if self.base.cond_dim else None
        return obs, actions, prev, g, cond

    def step_log_prob_given(self, contexts: Contexts, samples: Samples, goals: Tensor | None = None,
                            with_mode: bool = False, steps: Tensor | None = None) -> tuple[Tensor, ...]:
        """Per-step log π(a_t | window_t, g) and the mask, ``[B, n]`` at the query ``steps``
        ``[B, n]`` (None: every step), with per-step ``goals`` ``[B, T]`` (training: the in-dataset
        rates) or the fixed ``target_goal`` (None); ``with_mode`` adds tanh(μ) ``[B, n, A]`` from the
        same forward pass (DTR's â)."""
        obs, actions, prev, g, cond = self._history(contexts, samples, goals)
        mu, log_std = self.dist_params(obs, prev, g, cond, steps)
        mask = samples.mask.to(mu.device).bool()
        if steps is not None:
            rows = torch.arange(len(actions), device=mu.device)[:, None]
            actions, mask = actions[rows, steps], mask[rows, steps]
        a = clip_actions(actions)
        u = torch.atanh(a)
        z = (u - mu) / log_std.exp()
        lp = (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi) - torch.log1p(-a**2)).sum(-1)
        return (lp * mask, mask, torch.tanh(mu)) if with_mode else (lp * mask, mask)

    def mode_actions(self, contexts: Contexts, samples: Samples, goals: Tensor | None = None,
                     steps: Tensor | None = None) -> Tensor:
        """tanh(μ) ``[B, n, A]`` at the query ``steps`` (None: every step): the deterministic action."""
        obs, _, prev, g, cond = self._history(contexts, samples, goals)
        return torch.tanh(self.dist_params(obs, prev, g, cond, steps)[0])

    def step_log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None
                      ) -> tuple[Tensor, Tensor]:
        return self.step_log_prob_given(contexts, samples)

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        return self.step_log_prob_given(contexts, samples)[0].sum(-1)

    def size(self, samples: Samples) -> Tensor:
        return self.base.size(samples)

    # -- sampling -------------------------------------------------------------------------------
    def rollout_act(self, *, generator: torch.Generator) -> Any:
        """The ``act(obs, rows)`` a :class:`Simulator` calls each step; a new ``rows`` object (the
        simulator's next chunk of contexts) starts a new history."""
        state: dict[str, Any] = {"rows": None}

        @torch.no_grad()
        def act(obs: Tensor, rows: Contexts) -> Tensor:
            dev = self.device_hint()
            if state["rows"] is not rows:
                state.update(rows=rows, obs=[], prev=[torch.zeros(len(rows), self.base.act_dim, device=dev)])
            state["obs"].append(obs.to(dev).float())
            k = self.context_len
            o = torch.stack(state["obs"][-k:], 1)
            p = torch.stack(state["prev"][-k:], 1)
            cond = rows.cond.to(dev).float() if self.base.cond_dim else None
            last = torch.full((len(o), 1), o.shape[1] - 1, device=dev)
            mu, log_std = self.dist_params(o, p, self.target_goal.expand(o.shape[:2]), cond, last)
            eps = torch.randn(mu[:, 0].shape, generator=generator).to(dev)
            a = clip_actions(torch.tanh(mu[:, 0] + log_std[:, 0].exp() * eps))
            state["prev"].append(a)
            return a.cpu()

        return act

    @torch.no_grad()
    def sample(self, contexts: Contexts, num: int = 1, *, generator: torch.Generator,
               start: Samples | None = None) -> Samples:
        if start is not None:
            raise NotImplementedError("DecisionTransformerPolicy has no dataset reset (its history would "
                                      "miss the replayed actions)")
        if self.simulator is None:
            raise RuntimeError("this policy has no simulator to roll out in")
        return self.simulator.rollout(contexts.repeat(num), self.rollout_act(generator=generator))

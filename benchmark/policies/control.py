"""Continuous-control policies and scorers (the robot domain's model family; reusable).

A sample is a trajectory segment from a start state: ``obs [B, T+1, D]`` (the observation before
each action, plus the last next-observation), ``actions [B, T, A]`` in (−1, 1) and ``mask [B, T]``
(valid steps). A context carries the start state and a conditioning vector ``cond [B, C]`` (e.g.
a task one-hot). Rolling out needs a simulator, which the domain provides as a
:class:`Simulator`; everything else here is generic.

``TanhGaussianPolicy``: π(a|s) = tanh_*N(μ_θ(s), diag σ_θ(s)²), the SAC/IQL/CPL actor family.
``log_prob`` is exact: Σ_t [log N(atanh a_t; μ, σ) − Σ_d log(1 − a_{t,d}²)] over valid steps
(Contrastive Preference Learning scores a segment by the sum of per-step log-probs).
Ours: actions are clipped to ±(1 − 1e-3) everywhere (datasets, samples) so that saturated
scripted actions keep a finite log-likelihood, and the pre-tanh mean is softly bounded by
atanh(1 − 1e-3) so that a policy cannot move its mode past the clip (where the density at the
clipped action would misstate the probability of the clipped mass, e.g. in KL estimates).
"""

from __future__ import annotations

import abc
import hashlib
import math
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.api import Batch, Contexts, Noise, Policy, Samples, Scorer

ACTION_LIMIT = 1.0 - 1e-3
PRE_TANH_LIMIT = math.atanh(ACTION_LIMIT)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def clip_actions(a: Tensor) -> Tensor:
    return a.clamp(-ACTION_LIMIT, ACTION_LIMIT)


def mlp(inp: int, hidden: int, layers: int, out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, out))
    return nn.Sequential(*mods)


class Simulator(abc.ABC):
    """Rolls a per-step action function out from the contexts' start states (domain-specific).

    Shared, not copied: ``copy.deepcopy`` of a policy (``make_policy``, ``frozen_copy``) keeps the
    same simulator, so environments are built once per process."""

    @abc.abstractmethod
    def rollout(self, contexts: Contexts, act: Any, *, forced: Samples | None = None) -> Samples:
        """Roll out ``act(obs [N, D] float32, contexts [N]) -> actions [N, A]`` (all rows, every
        step) from each context's state for its ``horizon`` steps (``forced``: actions to replay
        for the first ``forced.mask`` steps, dataset reset). Returns samples ``obs``, ``actions``,
        ``mask``."""

    def __deepcopy__(self, memo: dict) -> Simulator:
        return self


class SealedSimulator(Simulator):
    """What a policy holds of its simulator: ``rollout`` and nothing else (no recorded rewards, no
    replay, no environments), through a handle to the sealed simulator (``benchmark.seal``)."""

    __slots__ = ("_handle",)

    def __init__(self, simulator: Simulator):
        from benchmark.seal import seal

        self._handle = seal(simulator, weak=True)

    def rollout(self, contexts: Contexts, act: Any, *, forced: Samples | None = None) -> Samples:
        from benchmark.seal import in_policy_sample, opened

        if not in_policy_sample():
            raise PermissionError("a sealed simulator rolls out only inside Policy.sample, which charges the "
                                  "online-sample budget: call policy.sample(...) or ctx.sample(...)")
        return opened(self._handle).rollout(contexts, act, forced=forced)


class ReplayMemo:
    """Memoised replays of (context, sample) rows in a simulator: an oracle's gold, per-step rewards
    and metrics of the same samples replay once. ``replay(contexts, samples)`` returns a tuple of
    per-sample tensors; a row's key hashes its ``context_fields`` and its ``actions`` and ``mask``."""

    def __init__(self, replay: Any, context_fields: tuple[str, ...], limit: int = 50_000):
        self.replay, self.fields, self.limit = replay, context_fields, limit
        self._cache: OrderedDict[bytes, tuple[Tensor, ...]] = OrderedDict()

    def _key(self, contexts: Contexts, samples: Samples, i: int) -> bytes:
        h = hashlib.sha1()
        for t in (*(contexts.tensors[f][i] for f in self.fields), samples.actions[i], samples.mask[i]):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()

    def __call__(self, contexts: Contexts, samples: Samples) -> tuple[Tensor, ...]:
        keys = [self._key(contexts, samples, i) for i in range(len(samples))]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            self.remember(contexts[todo], samples[todo], *self.replay(contexts[todo], samples[todo]))
        return tuple(torch.stack([self._cache[k][j] for k in keys]) for j in range(len(self._cache[keys[0]])))

    def remember(self, contexts: Contexts, samples: Samples, *values: Tensor) -> None:
        """Store replayed (or recorded) values of these rows."""
        for i in range(len(samples)):
            self._cache[self._key(contexts, samples, i)] = tuple(v[i] for v in values)
            if len(self._cache) > self.limit:
                self._cache.popitem(last=False)


class SimulatorPolicy(Policy):
    """A per-step policy rolled out in a domain's :class:`Simulator` (``self.simulator``), through the
    ``act(obs, contexts)`` function its ``rollout_act`` returns; a dataset reset replays an action prefix."""

    simulator: Simulator | None

    def rollout_act(self, *, generator: torch.Generator) -> Any:
        raise NotImplementedError

    def rollin(self, samples: Samples, fraction: Tensor) -> Samples:
        """Keep the first ⌊f·T⌋ valid actions: the rollout replays them, then acts (dataset reset)."""
        lengths = samples.mask.sum(-1)
        keep = torch.floor(fraction.to(lengths.device).float() * lengths).long()
        pos = torch.arange(samples.actions.shape[1])[None, :]
        mask = (pos < keep[:, None]).long()
        return Batch({"actions": samples.actions * mask.view(*mask.shape, *[1] * (samples.actions.dim() - 2)),
                      "mask": mask})

    @torch.no_grad()
    def sample(self, contexts: Contexts, num: int = 1, *, generator: torch.Generator,
               start: Samples | None = None) -> Samples:
        if self.simulator is None:
            raise RuntimeError("this policy has no simulator to roll out in")
        return self.simulator.rollout(contexts.repeat(num), self.rollout_act(generator=generator), forced=start)


class TanhGaussianPolicy(SimulatorPolicy):
    """π(a|s, c) as a tanh-squashed diagonal Gaussian MLP; ``c`` is the context's ``cond``.

    Observations are standardised with fixed statistics (buffers, from the behaviour data).
    """

    def __init__(self, obs_dim: int, act_dim: int, cond_dim: int = 0, hidden: int = 256, layers: int = 2,
                 simulator: Simulator | None = None):
        super().__init__()
        self.obs_dim, self.act_dim, self.cond_dim = obs_dim, act_dim, cond_dim
        self.net = mlp(obs_dim + cond_dim, hidden, layers, 2 * act_dim)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.simulator = simulator

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(1e-3))

    def dist_params(self, obs: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """(μ, log σ) of the pre-tanh Gaussian, for ``obs [..., D]`` and ``cond [..., C]``."""
        x = (obs - self.obs_mean) / self.obs_std
        if self.cond_dim:
            x = torch.cat([x, cond.to(x.dtype).expand(*x.shape[:-1], self.cond_dim)], dim=-1)
        mu, log_std = self.net(x).chunk(2, dim=-1)
        mu = PRE_TANH_LIMIT * torch.tanh(mu / PRE_TANH_LIMIT)  # the mode stays inside the action clip
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mu, log_std

    def action_log_prob(self, obs: Tensor, cond: Tensor | None, actions: Tensor) -> Tensor:
        """log π(a|s) per step, ``[...]`` (exact tanh-Gaussian density at the clipped action)."""
        mu, log_std = self.dist_params(obs, cond)
        a = clip_actions(actions.to(mu.dtype))
        u = torch.atanh(a)
        z = (u - mu) / log_std.exp()
        normal = -0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)
        return (normal - torch.log1p(-a**2)).sum(-1)

    def _cond(self, contexts: Contexts, steps: int | None = None) -> Tensor | None:
        if not self.cond_dim:
            return None
        c = contexts.cond.to(self.device_hint()).float()
        return c[:, None, :] if steps is not None else c

    def step_log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None
                      ) -> tuple[Tensor, Tensor]:
        dev = self.device_hint()
        actions = samples.actions.to(dev)
        t = actions.shape[1]
        obs = samples.obs.to(dev)[:, :t].float()
        lp = self.action_log_prob(obs, self._cond(contexts, t), actions)
        mask = samples.mask.to(dev).bool()
        return lp * mask, mask

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        lp, _ = self.step_log_prob(contexts, samples)
        return lp.sum(-1)

    def size(self, samples: Samples) -> Tensor:
        return samples.mask.sum(-1).clamp(min=1).to(torch.float32)

    @torch.no_grad()
    def act(self, obs: Tensor, cond: Tensor | None, generator: torch.Generator) -> Tensor:
        """Sampled actions for a batch of observations (the generator draws ε on the CPU)."""
        mu, log_std = self.dist_params(obs.to(self.device_hint()), cond)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        return clip_actions(torch.tanh(mu + log_std.exp() * eps)).cpu()

    def rollout_act(self, *, generator: torch.Generator) -> Any:
        """The ``act(obs, contexts)`` function a :class:`Simulator` calls."""

        def act(obs: Tensor, rows: Contexts) -> Tensor:
            return self.act(obs, self._cond(rows), generator)

        return act


class SegmentScorer(Scorer):
    """MLP scorers of segments (the preference-based-RL models of Christiano et al. 2017 / PEBBLE).

    ``reward``: Σ_t r_θ(s_t, a_t, c) over a segment's valid steps; ``value``: V_θ(s_0, c) of the
    context's start observation; per step (``[B, T]``, 0 on masked steps): ``step_reward``
    r_θ(s_t, a_t, c), ``q`` Q_θ(s_t, a_t, c), ``v`` V_θ(s_t, c)."""

    def __init__(self, obs_dim: int, act_dim: int, cond_dim: int = 0, hidden: int = 256, layers: int = 2,
                 kind: str = "reward", obs_mean: Tensor | None = None, obs_std: Tensor | None = None):
        super().__init__()
        if kind not in ("reward", "value", "step_reward", "q", "v"):
            raise ValueError(f"unknown scorer kind {kind!r}")
        self.kind = kind
        self.cond_dim = cond_dim
        with_action = kind in ("reward", "step_reward", "q")
        self.net = mlp(obs_dim + cond_dim + (act_dim if with_action else 0), hidden, layers, 1)
        self.register_buffer("obs_mean", torch.zeros(obs_dim) if obs_mean is None else obs_mean.clone())
        self.register_buffer("obs_std", torch.ones(obs_dim) if obs_std is None else obs_std.clamp_min(1e-3).clone())

    def per_step(self, contexts: Contexts, samples: Samples) -> Tensor:
        """The head at every step of the segments, ``[B, T]`` (0 on masked steps)."""
        dev = self.obs_mean.device
        t = samples.actions.shape[1]
        parts = [(samples.obs.to(dev)[:, :t].float() - self.obs_mean) / self.obs_std]
        if self.kind != "v":
            parts.append(samples.actions.to(dev).float())
        if self.cond_dim:
            parts.append(contexts.cond.to(dev).float()[:, None, :].expand(-1, t, -1))
        out = self.net(torch.cat(parts, -1)).squeeze(-1)
        return out * samples.mask.to(dev).float()

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        dev = self.obs_mean.device
        if self.kind == "value":
            x = (contexts.obs.to(dev).float() - self.obs_mean) / self.obs_std
            if self.cond_dim:
                x = torch.cat([x, contexts.cond.to(dev).float()], -1)
            return self.net(x).squeeze(-1)
        if samples is None:
            raise ValueError(f"a {self.kind} scorer needs samples")
        steps = self.per_step(contexts, samples)
        return steps.sum(-1) if self.kind == "reward" else steps


def segment_transitions(contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
    """Environment transitions of segments: (s_t, a_t, s_{t+1}); never terminal (episodes are
    truncated, not ended), ``cond`` the context's conditioning vector."""
    t = samples.actions.shape[1]
    mask = samples.mask.bool()
    return {"obs": samples.obs[:, :t], "action": samples.actions, "next_obs": samples.obs[:, 1 : t + 1],
            "done": torch.zeros_like(mask), "mask": mask,
            "timestep": torch.arange(t).expand(len(samples), t).clone(), "cond": contexts.cond}

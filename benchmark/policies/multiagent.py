"""Multi-agent categorical policies and scorers (the ``agents`` capability; reusable).

A sample is a joint trajectory from a start state: ``obs [B, T+1, N, D]`` (every agent's observation
before each step, plus the last), ``actions [B, T, N]`` (discrete ids) and ``mask [B, T]``. A
context carries ``agent_mask [B, N]`` (which of the N agent slots act; the rest are padding, with
zero observations and action 0), ``action_mask [B, n_actions]`` (the valid ids), ``cond [B, C]``
(e.g. a scenario one-hot) and ``obs [B, N, D]`` (the start observation). Rolling out needs a
:class:`~benchmark.policies.control.Simulator` that the domain provides.

``AgentCategoricalPolicy``: π(a_t | s_t) = Π_i π_θ(a_t^i | o_t^i, e_i, c), one categorical per
agent with shared parameters and the agent's one-hot id e_i as input (parameter sharing, as in
MAPPO/VDN with ids). ``log_prob`` is exact: the joint log-likelihood Σ_t Σ_i log π_θ(a_t^i | ·) over
valid steps and agents, so trajectory-level methods (DPO, IPO, KTO, SFT) run unchanged on joint
trajectories; ``step_log_prob`` gives the per-step joint terms ``[B, T]`` and ``agent_log_prob``
the per-agent ones ``[B, T, N]``.

``AgentStepScorer``: per-agent heads f_θ(o^i, a^i, e_i, c) summed over agents (value decomposition,
VDN: Q_tot = Σ_i Q_i); ``per_agent`` returns the heads ``[B, T, N]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmark.api import Contexts, Noise, Samples, Scorer
from benchmark.policies.control import Simulator, SimulatorPolicy, mlp

MASKED_LOGIT = -1e9


class _AgentInputs(nn.Module):
    """Standardised observations with the agent's one-hot id and the context's ``cond`` appended."""

    def __init__(self, obs_dim: int, agents: int, cond_dim: int):
        super().__init__()
        self.obs_dim, self.agents, self.cond_dim = obs_dim, agents, cond_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    @property
    def width(self) -> int:
        return self.obs_dim + self.agents + self.cond_dim

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(1e-3))

    def forward(self, obs: Tensor, cond: Tensor) -> Tensor:
        """``obs [..., N, D]``, ``cond [B, C]`` (B the leading dim) → ``[..., N, D + N + C]``."""
        x = (obs.float() - self.obs_mean) / self.obs_std
        ids = torch.eye(self.agents, device=x.device).expand(*x.shape[:-1], self.agents)
        c = cond.float().to(x.device).view(cond.shape[0], *[1] * (x.dim() - 2), self.cond_dim)
        return torch.cat([x, ids, c.expand(*x.shape[:-1], self.cond_dim)], dim=-1)


class AgentCategoricalPolicy(SimulatorPolicy):
    """π(a^i | o^i, i, c) as a shared MLP over agents; invalid action ids are masked."""

    def __init__(self, obs_dim: int, n_actions: int, agents: int, cond_dim: int, hidden: int = 128, layers: int = 2,
                 simulator: Simulator | None = None):
        super().__init__()
        self.n_actions = n_actions
        self.inputs = _AgentInputs(obs_dim, agents, cond_dim)
        self.net = mlp(self.inputs.width, hidden, layers, n_actions)
        self.simulator = simulator

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        self.inputs.set_normalizer(mean, std)

    def logits(self, obs: Tensor, contexts: Contexts) -> Tensor:
        """Masked logits ``[B, ..., N, n_actions]`` for ``obs [B, ..., N, D]``."""
        dev = self.device_hint()
        out = self.net(self.inputs(obs.to(dev), contexts.cond))
        valid = contexts.action_mask.to(dev).bool().view(len(contexts), *[1] * (out.dim() - 2), self.n_actions)
        return out.masked_fill(~valid, MASKED_LOGIT)

    def agent_log_prob(self, contexts: Contexts, samples: Samples) -> Tensor:
        """log π(a_t^i | o_t^i) ``[B, T, N]``; 0 on padded agents and masked steps."""
        dev = self.device_hint()
        actions = samples.actions.to(dev).long()
        obs = samples.obs.to(dev)[:, : actions.shape[1]]
        lp = F.log_softmax(self.logits(obs, contexts), -1).gather(-1, actions[..., None]).squeeze(-1)
        keep = samples.mask.to(dev).bool()[..., None] & contexts.agent_mask.to(dev).bool()[:, None, :]
        return lp * keep

    def step_log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None
                      ) -> tuple[Tensor, Tensor]:
        return self.agent_log_prob(contexts, samples).sum(-1), samples.mask.to(self.device_hint()).bool()

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        return self.agent_log_prob(contexts, samples).sum((-1, -2))

    def size(self, samples: Samples) -> Tensor:
        return samples.mask.sum(-1).clamp(min=1).to(torch.float32)

    @torch.no_grad()
    def act(self, obs: Tensor, contexts: Contexts, generator: torch.Generator) -> Tensor:
        """Sampled joint actions ``[B, N]`` (Gumbel-max with uniforms drawn on the CPU)."""
        u = torch.rand(*obs.shape[:-1], self.n_actions, generator=generator)
        return self.act_with(obs, contexts, u)

    @torch.no_grad()
    def act_with(self, obs: Tensor, contexts: Contexts, uniforms: Tensor) -> Tensor:
        """Joint actions ``[B, N]`` by Gumbel-max on given uniforms ``[B, N, n_actions]``: two policies
        acting on the same uniforms act alike where their distributions agree (common random numbers)."""
        logits = self.logits(obs, contexts).float().cpu()
        gumbel = -torch.log(-torch.log(uniforms.clamp(1e-12, 1 - 1e-7)))
        return (logits + gumbel).argmax(-1) * contexts.agent_mask.long()

    def rollout_act(self, *, generator: torch.Generator) -> Any:
        """The ``act(obs, contexts)`` function a :class:`Simulator` calls."""

        def act(obs: Tensor, rows: Contexts) -> Tensor:
            return self.act(obs, rows, generator)

        return act


class AgentStepScorer(Scorer):
    """Per-agent MLP heads, summed over agents (value decomposition).

    ``step_reward`` / ``q``: Σ_i f_θ(o_t^i, a_t^i, i, c) per step ``[B, T]``; ``v``: Σ_i V_θ(o_t^i, i, c);
    ``reward``: the step rewards summed over valid steps ``[B]``; ``value``: Σ_i V_θ(o_0^i, i, c) of the
    context's start observation ``[B]``."""

    def __init__(self, obs_dim: int, n_actions: int, agents: int, cond_dim: int, hidden: int = 128,
                 layers: int = 2, kind: str = "reward", obs_mean: Tensor | None = None, obs_std: Tensor | None = None):
        super().__init__()
        if kind not in ("reward", "value", "step_reward", "q", "v"):
            raise ValueError(f"unknown scorer kind {kind!r}")
        self.kind, self.n_actions = kind, n_actions
        self.with_action = kind in ("reward", "step_reward", "q")
        self.inputs = _AgentInputs(obs_dim, agents, cond_dim)
        if obs_mean is not None and obs_std is not None:
            self.inputs.set_normalizer(obs_mean, obs_std)
        self.net = mlp(self.inputs.width + (n_actions if self.with_action else 0), hidden, layers, 1)

    def _heads(self, obs: Tensor, contexts: Contexts, actions: Tensor | None) -> Tensor:
        x = self.inputs(obs, contexts.cond)
        if self.with_action and actions is not None:
            x = torch.cat([x, F.one_hot(actions.long().to(x.device), self.n_actions).float()], -1)
        heads = self.net(x).squeeze(-1)
        agents = contexts.agent_mask.to(x.device).float().view(len(contexts), *[1] * (heads.dim() - 2), -1)
        return heads * agents

    def per_agent(self, contexts: Contexts, samples: Samples) -> Tensor:
        """The heads at every step and agent ``[B, T, N]`` (0 on masked steps and padded agents)."""
        dev = self.inputs.obs_mean.device
        t = samples.actions.shape[1]
        heads = self._heads(samples.obs.to(dev)[:, :t], contexts, samples.actions if self.with_action else None)
        return heads * samples.mask.to(dev).float()[..., None]

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        if self.kind == "value":
            return self._heads(contexts.obs.to(self.inputs.obs_mean.device), contexts, None).sum(-1)
        if samples is None:
            raise ValueError(f"a {self.kind} scorer needs samples")
        steps = self.per_agent(contexts, samples).sum(-1)
        return steps.sum(-1) if self.kind == "reward" else steps


def agent_transitions(contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
    """The step view with an agent axis: ``obs``/``next_obs [B, T, N, D]``, ``action [B, T, N]``;
    never terminal (MPE episodes are truncated, not ended); ``cond`` the context's vector."""
    t = samples.actions.shape[1]
    mask = samples.mask.bool()
    return {"obs": samples.obs[:, :t], "action": samples.actions, "next_obs": samples.obs[:, 1 : t + 1],
            "done": torch.zeros_like(mask), "mask": mask,
            "timestep": torch.arange(t).expand(len(samples), t).clone(), "cond": contexts.cond}

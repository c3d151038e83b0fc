"""MPE scenarios (``mpe2``, PettingZoo's parallel API) as a state-restorable, batched simulator.

Three scenarios, discrete actions, MPE's 25-step episodes:

- ``spread`` (``simple_spread_v3``, N = 3): three agents cover three landmarks without colliding.
- ``reference`` (``simple_reference_v3``): two agents, each knows which landmark its *partner*
  must reach and can only say so (10 symbols); action id = move + 5 · symbol (50 actions).
- ``tag`` (``simple_tag_v3``): three adversaries (the learners) chase one prey, which a script
  steers (:func:`prey_action`), around two obstacles.

A *state* (a context's ``sim_state``) is everything the next step depends on: every entity's
position and velocity, every agent's communication vector and, on ``reference``, which landmark
each agent's partner must reach (the landmarks' colours follow from it). MPE's physics has no
noise (``u_noise``/``c_noise`` are None) and never looks at the step counter (we set
``max_cycles`` out of reach and truncate at the horizon ourselves), so restoring these numbers
into the environment's world (``Scenario.restore``) and replaying the same actions reproduces a
trajectory exactly (tested). One environment per scenario serves every row of a batch: each step
restores the row's state, steps the parallel env, and snapshots the result.

Team reward (the oracle's): the mean over learners of MPE's own per-agent rewards (spread and
reference mix a global and a local term with ``local_ratio`` 0.5; tag's adversaries all get +10
per catch). Scripted behaviour acts from the world state (:func:`expert_actions`).
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.api import Batch, Contexts, Samples
from benchmark.policies.control import Simulator

AGENTS_MAX, OBS_MAX, N_ACTIONS, STATE_MAX = 3, 21, 50, 48
MOVES = 5
"""MPE's discrete moves: 0 no-op, 1 −x, 2 +x, 3 −y, 4 +y."""
DT, DAMPING = 0.1, 0.25


@dataclass(frozen=True)
class ScenarioInfo:
    module: str
    kwargs: dict = field(default_factory=dict)
    learners: int = 3
    """Agents the policy controls (the first ``learners`` of the env's agents)."""
    n_actions: int = MOVES
    """Valid discrete actions of a learner (ids ≥ it are masked)."""
    obs_dim: int = 18


SCENARIOS: dict[str, ScenarioInfo] = {
    "spread": ScenarioInfo("simple_spread_v3", {"N": 3}, 3, MOVES, 18),
    "reference": ScenarioInfo("simple_reference_v3", {}, 2, MOVES * 10, 21),
    "tag": ScenarioInfo("simple_tag_v3", {"num_good": 1, "num_adversaries": 3, "num_obstacles": 2}, 3, MOVES, 16),
}


class Scenario:
    """One MPE parallel env of a scenario, driven row by row from saved states."""

    def __init__(self, name: str):
        info = SCENARIOS[name]
        self.name, self.info = name, info
        module = importlib.import_module(f"mpe2.{info.module}")
        self.env = module.parallel_env(max_cycles=10**9, continuous_actions=False, **info.kwargs)
        self.env.reset(seed=0)
        self.raw = self.env.unwrapped
        self.world = self.raw.world
        self.agents = list(self.env.possible_agents)
        self.learners = self.agents[: info.learners]
        self.dim_c = self.world.dim_c

    # -- state ----------------------------------------------------------------------------------
    def snapshot(self) -> np.ndarray:
        """The world's state as a padded float64 vector ``[STATE_MAX]``."""
        parts = [np.concatenate([e.state.p_pos, e.state.p_vel]) for e in self.world.entities]
        parts += [np.asarray(a.state.c, dtype=np.float64).reshape(self.dim_c) for a in self.world.agents]
        if self.name == "reference":
            parts.append(np.array([self.world.landmarks.index(a.goal_b) for a in self.world.agents], dtype=np.float64))
        flat = np.concatenate(parts)
        out = np.zeros(STATE_MAX)
        out[: len(flat)] = flat
        return out

    def restore(self, state: np.ndarray) -> None:
        """Put the world back into ``state`` (as :meth:`snapshot` wrote it)."""
        s = np.asarray(state, dtype=np.float64)
        i = 0
        for e in self.world.entities:
            e.state.p_pos = s[i : i + 2].copy()
            e.state.p_vel = s[i + 2 : i + 4].copy()
            i += 4
        for a in self.world.agents:
            a.state.c = s[i : i + self.dim_c].copy()
            i += self.dim_c
        if self.name == "reference":
            colours = [np.array([0.75, 0.25, 0.25]), np.array([0.25, 0.75, 0.25]), np.array([0.25, 0.25, 0.75])]
            for lm, col in zip(self.world.landmarks, colours):
                lm.color = col
            for a in self.world.agents:
                a.goal_b = self.world.landmarks[round(s[i])]
                i += 1
            for a in self.world.agents:
                a.goal_a.color = a.goal_b.color

    def reset_state(self, seed: int) -> np.ndarray:
        """A fresh episode's start state (MPE's own reset with ``seed``)."""
        self.env.reset(seed=int(seed))
        return self.snapshot()

    # -- stepping ---------------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        """The learners' observations, padded ``[AGENTS_MAX, OBS_MAX]``."""
        out = np.zeros((AGENTS_MAX, OBS_MAX), dtype=np.float32)
        for k, name in enumerate(self.learners):
            o = self.raw.observe(name)
            out[k, : len(o)] = o
        return out

    def joint_action(self, actions: np.ndarray) -> dict[str, int]:
        """Every agent's action: the learners' ``actions`` and the scripted prey's."""
        act = {name: int(actions[k]) for k, name in enumerate(self.learners)}
        for name in self.agents[len(self.learners):]:
            act[name] = prey_action(self.world, self.world.agents[self.agents.index(name)])
        return act

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Step the learners' ``actions`` (and the scripted prey). Returns (next observations
        ``[AGENTS_MAX, OBS_MAX]``, team reward, per-learner rewards ``[AGENTS_MAX]``).

        What PettingZoo's parallel ``step`` does, without its wrapper stack (its per-agent AEC
        turns, order checks and bounds checks cost ~60% of a step): MPE's ``SimpleEnv`` stores each
        agent's action and runs ``_execute_world_step`` (actions → physics → rewards) once all have
        acted; nothing else of a step reaches the world (no noise, ``max_cycles`` out of reach,
        these scenarios never terminate). :meth:`step_wrapped` is the public path; a test holds
        the two equal."""
        for name, a in self.joint_action(actions).items():
            self.raw.current_actions[self.raw._index_map[name]] = a
        self.raw._execute_world_step()
        return self._outcome({name: self.raw.observe(name) for name in self.learners}, self.raw.rewards)

    def step_wrapped(self, actions: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """:meth:`step` through the parallel env's public ``step`` (the reference for the test)."""
        obs, rewards, _, _, _ = self.env.step(self.joint_action(actions))
        return self._outcome(obs, rewards)

    def _outcome(self, obs: dict[str, np.ndarray], rewards: dict[str, float]) -> tuple[np.ndarray, float, np.ndarray]:
        nxt = np.zeros((AGENTS_MAX, OBS_MAX), dtype=np.float32)
        per = np.zeros(AGENTS_MAX)
        for k, name in enumerate(self.learners):
            nxt[k, : len(obs[name])] = obs[name]
            per[k] = rewards[name]
        return nxt, float(per[: len(self.learners)].mean()), per

    def positions(self) -> np.ndarray:
        """Every entity's position ``[entities, 2]`` (for pictures)."""
        return np.stack([e.state.p_pos for e in self.world.entities])


# -- scripted behaviour ------------------------------------------------------------------------------
def _accel(agent: Any) -> float:
    return 5.0 if agent.accel is None else float(agent.accel)


def greedy_move(agent: Any, target: np.ndarray, lookahead: int = 3) -> int:
    """The move whose predicted position ``lookahead`` steps on (one push, then coasting under
    MPE's damping) lands closest to ``target``."""
    pos, vel = agent.state.p_pos, agent.state.p_vel
    best, best_d = 0, np.inf
    for m, u in enumerate(((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))):
        v = vel * (1 - DAMPING) + np.array(u, dtype=np.float64) * _accel(agent) * DT / agent.mass
        if agent.max_speed is not None and np.linalg.norm(v) > agent.max_speed:
            v = v / np.linalg.norm(v) * agent.max_speed
        p = pos.copy()
        for _ in range(lookahead):
            p = p + v * DT
            v = v * (1 - DAMPING)
        d = float(np.linalg.norm(p - target))
        if d < best_d - 1e-12:
            best, best_d = m, d
    return best


def _spread_expert(world: Any) -> list[int]:
    """Optimal agent→landmark assignment (least total distance), then approach."""
    agents, marks = world.agents, world.landmarks
    dist = np.array([[np.linalg.norm(a.state.p_pos - lm.state.p_pos) for lm in marks] for a in agents])
    perm = min(itertools.permutations(range(len(marks))), key=lambda p: sum(dist[i, j] for i, j in enumerate(p)))
    return [greedy_move(a, marks[perm[i]].state.p_pos) for i, a in enumerate(agents)]


def _reference_expert(world: Any) -> list[int]:
    """Say which landmark the partner must reach; go where the partner said (no-op until it has)."""
    out = []
    for a in world.agents:
        partner = a.goal_a
        symbol = world.landmarks.index(a.goal_b)
        heard = np.asarray(partner.state.c)
        move = 0
        if heard.max() > 0 and int(heard.argmax()) < len(world.landmarks):  # a landmark's symbol
            move = greedy_move(a, world.landmarks[int(heard.argmax())].state.p_pos)
        out.append(move + MOVES * symbol)
    return out


def _tag_expert(world: Any) -> list[int]:
    """Pursue the prey's predicted position, each adversary from its own side until close."""
    advs = [a for a in world.agents if a.adversary]
    prey = next(a for a in world.agents if not a.adversary)
    lead = prey.state.p_pos + 0.3 * prey.state.p_vel
    out = []
    for k, a in enumerate(advs):
        theta = 2 * np.pi * k / len(advs)
        gap = np.linalg.norm(a.state.p_pos - lead)
        offset = 0.25 * min(1.0, gap / 0.6) * np.array([np.cos(theta), np.sin(theta)])
        out.append(greedy_move(a, lead + offset, lookahead=2))
    return out


def expert_actions(scenario: str, world: Any) -> list[int]:
    """The scripted expert's joint action (one id per learner)."""
    return {"spread": _spread_expert, "reference": _reference_expert, "tag": _tag_expert}[scenario](world)


def prey_action(world: Any, prey: Any) -> int:
    """Tag's scripted prey: flee the adversaries (inverse-square weighted), stay inside the arena."""
    away = np.zeros(2)
    for a in world.agents:
        if a.adversary:
            d = prey.state.p_pos - a.state.p_pos
            away += d / max(float(d @ d), 1e-3)
    away -= 2.0 * np.clip(np.abs(prey.state.p_pos) - 0.7, 0, None) * np.sign(prey.state.p_pos) * 10
    moves = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.float64)
    return int(np.argmax(moves @ away - 1e-9 * np.arange(MOVES)))


# -- the batched simulator ---------------------------------------------------------------------------
class MPESim(Simulator):
    """Rolls joint actions out from context rows (one env per scenario, restored row by row).

    ``act(obs [N, AGENTS_MAX, OBS_MAX], contexts [N]) -> actions [N, AGENTS_MAX]`` (long) is called
    once per step for all rows; a scripted behaviour is a :class:`Behaviour`, which reads the world."""

    def __init__(self, scenarios: list[str]):
        self.scenarios = list(scenarios)
        self._envs: dict[int, Scenario] = {}
        self.env_steps = 0

    def env(self, k: int) -> Scenario:
        if k not in self._envs:
            self._envs[k] = Scenario(self.scenarios[k])
        return self._envs[k]

    def start_rows(self, task: list[int], seeds: list[int]) -> dict[str, np.ndarray]:
        """Start states and first observations of fresh episodes (MPE's reset with each seed)."""
        states = np.stack([self.env(k).reset_state(s) for k, s in zip(task, seeds)])
        obs = np.stack([self._observe(k, st) for k, st in zip(task, states)])
        return {"sim_state": states, "obs": obs}

    def _observe(self, k: int, state: np.ndarray) -> np.ndarray:
        env = self.env(k)
        env.restore(state)
        return env.observe()

    def rollout(self, contexts: Contexts, act: Any, *, forced: Samples | None = None, record: bool = False,
                trace: bool = False) -> Samples:
        """See :meth:`benchmark.policies.control.Simulator.rollout`. ``record`` (the domain's own use)
        adds the true team ``rewards [N, T]`` and per-learner ``agent_rewards [N, T, AGENTS_MAX]``;
        ``trace`` adds every entity's ``positions [N, T+1, entities, 2]`` (pictures)."""
        n, task = len(contexts), contexts.task.tolist()
        horizons = contexts.horizon.long()
        h = int(horizons.max())
        states = contexts.sim_state.double().numpy().copy()
        obs = torch.zeros(n, h + 1, AGENTS_MAX, OBS_MAX)
        obs[:, 0] = contexts.obs.float()
        actions = torch.zeros(n, h, AGENTS_MAX, dtype=torch.long)
        rewards = torch.zeros(n, h, dtype=torch.float64)
        agent_rewards = torch.zeros(n, h, AGENTS_MAX, dtype=torch.float64)
        forced_len = forced.mask.sum(-1).long() if forced is not None else torch.zeros(n, dtype=torch.long)
        positions = [[self._positions(task[i], states[i])] for i in range(n)] if trace else None
        for t in range(h):
            a = act.joint(self, contexts, states, t) if isinstance(act, Behaviour) else act(obs[:, t], contexts)
            a = a.long() * contexts.agent_mask.long()
            if forced is not None:
                a = torch.where((t < forced_len)[:, None], forced.actions[:, t].long(), a)
            actions[:, t] = a
            for i in range(n):
                if t >= horizons[i]:
                    continue
                env = self.env(task[i])
                env.restore(states[i])
                o, r, per = env.step(a[i].numpy())
                states[i] = env.snapshot()
                obs[i, t + 1] = torch.from_numpy(o)
                rewards[i, t], agent_rewards[i, t] = r, torch.from_numpy(per)
                self.env_steps += 1
                if positions is not None:
                    positions[i].append(env.positions())
        mask = (torch.arange(h)[None, :] < horizons[:, None]).long()
        out = Batch({"obs": obs, "actions": actions * mask[..., None], "mask": mask})
        if record:
            out = out.replace(rewards=rewards, agent_rewards=agent_rewards)
        if positions is not None:
            out = out.replace(positions=torch.from_numpy(np.stack([np.stack(p) for p in positions])))
        return out

    def _positions(self, k: int, state: np.ndarray) -> np.ndarray:
        env = self.env(k)
        env.restore(state)
        return env.positions()

    @torch.no_grad()
    def replay(self, contexts: Contexts, samples: Samples) -> tuple[Tensor, Tensor]:
        """True team rewards ``[B, T]`` and per-learner rewards ``[B, T, AGENTS_MAX]`` (float64) of
        samples, by restoring each start state and replaying the actions (the oracle's view)."""
        out = self.rollout(contexts.replace(horizon=samples.mask.sum(-1).long()), _idle,
                           forced=Batch({"actions": samples.actions, "mask": samples.mask}), record=True) \
            if len(samples) else None
        if out is None:
            h = samples.actions.shape[1]
            return torch.zeros(0, h, dtype=torch.float64), torch.zeros(0, h, AGENTS_MAX, dtype=torch.float64)
        h = samples.actions.shape[1]
        return pad_steps(out.rewards, h), pad_steps(out.agent_rewards, h)


def _idle(obs: Tensor, contexts: Contexts) -> Tensor:
    return torch.zeros(len(contexts), AGENTS_MAX, dtype=torch.long)


def pad_steps(x: Tensor, h: int) -> Tensor:
    """``x [B, T', ...]`` cut or zero-padded to T = ``h`` steps."""
    if x.shape[1] >= h:
        return x[:, :h]
    return torch.cat([x, x.new_zeros(x.shape[0], h - x.shape[1], *x.shape[2:])], dim=1)


@dataclass
class Behaviour:
    """A scripted joint behaviour: per learner, the expert with probability 1 − ε of its level (a
    uniformly random valid action otherwise), ``slow`` learners idle every other step; ``deviator``
    (unilateral data) gives one learner per episode, drawn uniformly, the level ``deviation``."""

    level: str
    rng: np.random.Generator
    deviation: str | None = None
    _deviators: np.ndarray | None = None

    def joint(self, sim: MPESim, contexts: Contexts, states: np.ndarray, t: int) -> Tensor:
        n = len(contexts)
        if t == 0 or self._deviators is None:
            learners = contexts.agent_mask.sum(-1).numpy()
            self._deviators = np.array([self.rng.integers(k) for k in learners]) if self.deviation else np.full(n, -1)
        out = np.zeros((n, AGENTS_MAX), dtype=np.int64)
        for i, k in enumerate(contexts.task.tolist()):
            env = sim.env(k)
            env.restore(states[i])
            expert = expert_actions(env.name, env.world)
            for j, a in enumerate(expert):
                level = self.deviation if j == self._deviators[i] else self.level
                out[i, j] = self._perturb(a, level, env.info.n_actions, t)
        return torch.from_numpy(out)

    def _perturb(self, a: int, level: str, n_actions: int, t: int) -> int:
        eps, slow = LEVELS[level]
        if slow and t % 2 == 1:
            return 0
        return int(self.rng.integers(n_actions)) if self.rng.random() < eps else int(a)


#: behaviour levels: (ε, slow). The expert's ε = 0.05 is MARLHF's data-collection noise.
LEVELS: dict[str, tuple[float, bool]] = {
    "expert": (0.05, False), "noisy": (0.3, False), "slow": (0.1, True), "weak": (0.6, False),
    "random": (1.0, False), "scripted": (0.0, False),
}

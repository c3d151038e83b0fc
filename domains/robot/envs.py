"""Meta-World (v3) tasks as a batched, state-restorable simulator.

A *start state* (a context row) is everything needed to put a Meta-World env back exactly where
it was: the task's random vector (object/goal placement, fixed at reset), MuJoCo's full
integration state (``mj_getState(mjSTATE_INTEGRATION)``: qpos, qvel, mocap, warm start, ...),
the previous frame of the frame-stacked 39-dim observation, and the path length. Restoring is
``reset`` with that random vector (skipped when the env already holds it) + ``mj_setState``;
replaying the same actions then reproduces the trajectory bit for bit (tested).

Envs are fully observable (goal in the observation, as Meta-World's MT1) and never terminate;
our episodes are truncated at the domain's horizon. Scripted experts come from
``metaworld.policies``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import torch
from torch import Tensor

from benchmark.api import Batch, Contexts, Samples
from benchmark.policies.control import ACTION_LIMIT, Simulator

STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION
OBS_DIM, ACT_DIM, PREV_DIM = 39, 4, 18
RAND_MAX, STATE_MAX = 8, 320  # padded widths of rand_vec and the MuJoCo state


@dataclass(frozen=True)
class TaskInfo:
    env_name: str
    policy: str


#: Meta-World tasks (RL-VLM-F's family first). Names drop the ``-v3`` suffix.
TASKS: dict[str, TaskInfo] = {
    "drawer-open": TaskInfo("drawer-open-v3", "SawyerDrawerOpenV3Policy"),
    "button-press": TaskInfo("button-press-v3", "SawyerButtonPressV3Policy"),
    "sweep-into": TaskInfo("sweep-into-v3", "SawyerSweepIntoV3Policy"),
    "door-open": TaskInfo("door-open-v3", "SawyerDoorOpenV3Policy"),
    "window-open": TaskInfo("window-open-v3", "SawyerWindowOpenV3Policy"),
    "drawer-close": TaskInfo("drawer-close-v3", "SawyerDrawerCloseV3Policy"),
}


def make_env(task: str) -> Any:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[TASKS[task].env_name]()
    env._partially_observable = False  # goal visible, as MT1
    del env.sawyer_observation_space  # cached property: recompute for full observability
    env._freeze_rand_vec = True
    env._set_task_called = True
    env.max_path_length = 10**9  # we truncate ourselves
    env._last_rand_vec = None
    return env


def scripted_policy(task: str) -> Callable[[np.ndarray], np.ndarray]:
    import metaworld.policies as P

    pol = getattr(P, TASKS[task].policy)()

    def act(obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.clip(pol.get_action(np.array(obs, dtype=np.float64)), -ACTION_LIMIT, ACTION_LIMIT)

    return act


def sample_rand_vecs(task: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` task variations (object/goal placements), drawn by the env's own reset logic (which
    rejects invalid placements, e.g. sweep-into's goal too close to the target) from a seeded
    RNG."""
    env = make_env(task)
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env.seed(int(rng.integers(2**31)))
    out = []
    for _ in range(n):
        env.reset()
        out.append(np.array(env._last_rand_vec, dtype=np.float64))
    return np.stack(out)


class MetaWorldSim(Simulator):
    """Envs per task (grown on demand), restored from context rows and stepped in lockstep."""

    def __init__(self, tasks: list[str]):
        self.tasks = list(tasks)
        self._envs: dict[int, list[Any]] = {}
        self.env_steps = 0

    def _env(self, task: int, slot: int) -> Any:
        pool = self._envs.setdefault(task, [])
        while len(pool) <= slot:
            pool.append(make_env(self.tasks[task]))
        return pool[slot]

    # -- state ----------------------------------------------------------------------------
    @staticmethod
    def reset_to(env: Any, rand_vec: np.ndarray) -> np.ndarray:
        """A fresh reset with this variation; returns the observation."""
        env._last_rand_vec = np.array(rand_vec, dtype=np.float64)
        obs, _ = env.reset()
        return obs

    @staticmethod
    def snapshot(env: Any, obs: np.ndarray, task: int) -> dict[str, Any]:
        st = np.zeros(STATE_MAX)
        size = mujoco.mj_stateSize(env.model, STATE_SPEC)
        buf = np.empty(size)
        mujoco.mj_getState(env.model, env.data, buf, STATE_SPEC)
        st[:size] = buf
        rv = np.zeros(RAND_MAX)
        rv[: env._last_rand_vec.size] = env._last_rand_vec
        return {"task": task, "rand_vec": rv, "state": st, "prev_obs": np.array(env._prev_obs, dtype=np.float64),
                "obs": np.array(obs, dtype=np.float32), "t": int(env.curr_path_length)}

    def restore(self, env: Any, ctx: Contexts, i: int) -> None:
        rv_full = ctx.rand_vec[i].numpy()
        rv = rv_full[: env._random_reset_space.low.size]
        if env._last_rand_vec is None or not np.array_equal(env._last_rand_vec, rv):
            self.reset_to(env, rv)
        size = mujoco.mj_stateSize(env.model, STATE_SPEC)
        mujoco.mj_setState(env.model, env.data, ctx.sim_state[i, :size].numpy().astype(np.float64), STATE_SPEC)
        env._prev_obs = ctx.prev_obs[i].numpy().astype(np.float64).copy()
        env.curr_path_length = int(ctx.t[i])

    # -- rollouts -------------------------------------------------------------------------
    def _envs_for(self, contexts: Contexts) -> list[Any]:
        counts: dict[int, int] = {}
        envs = []
        for task in contexts.task.tolist():
            slot = counts.get(task, 0)
            counts[task] = slot + 1
            envs.append(self._env(task, slot))
        for i, env in enumerate(envs):
            self.restore(env, contexts, i)
        return envs

    def rollout(self, contexts: Contexts, act: Any, *, forced: Samples | None = None, chunk: int = 8,
                record: bool = False) -> Samples:
        """See :meth:`Simulator.rollout`; rows step in lockstep, ``chunk`` at a time (bounded env
        pools: building a Meta-World env costs ~0.2 s). ``record`` (the domain's own use, never a
        policy's) adds the true ``rewards`` and ``success`` per step."""
        if len(contexts) > chunk:
            return Batch.cat([self.rollout(contexts[i : i + chunk], act, chunk=chunk, record=record,
                                           forced=None if forced is None else forced[i : i + chunk])
                              for i in range(0, len(contexts), chunk)])
        n = len(contexts)
        horizons = contexts.horizon.long()
        h = int(horizons.max())
        envs = self._envs_for(contexts)
        obs = torch.zeros(n, h + 1, OBS_DIM)
        actions = torch.zeros(n, h, ACT_DIM)
        obs[:, 0] = contexts.obs.float()
        forced_len = forced.mask.sum(-1).long() if forced is not None else torch.zeros(n, dtype=torch.long)
        rewards = torch.zeros(n, h, dtype=torch.float64)
        success = torch.zeros(n, h, dtype=torch.bool)
        for t in range(h):
            a = act(obs[:, t], contexts).float()
            if forced is not None:
                use = (t < forced_len)[:, None]
                a = torch.where(use, forced.actions[:, t].float(), a)
            actions[:, t] = a
            a64 = a.double().numpy()
            for i, env in enumerate(envs):
                if t < horizons[i]:
                    o, r, _, _, info = env.step(a64[i])
                    obs[i, t + 1] = torch.from_numpy(o).float()
                    rewards[i, t] = float(r)
                    success[i, t] = bool(info["success"])
                    self.env_steps += 1
        mask = (torch.arange(h)[None, :] < horizons[:, None]).long()
        out = Batch({"obs": obs, "actions": actions * mask[..., None], "mask": mask})
        return out.replace(rewards=rewards, success=success) if record else out

    @torch.no_grad()
    def replay(self, contexts: Contexts, samples: Samples) -> tuple[Tensor, Tensor]:
        """True per-step rewards ``[B, T]`` (float64) and per-step success ``[B, T]`` of samples,
        by restoring each start state and replaying the actions (the hidden oracle's view)."""
        n, h = samples.actions.shape[:2]
        rewards = torch.zeros(n, h, dtype=torch.float64)
        success = torch.zeros(n, h, dtype=torch.bool)
        acts = samples.actions.double().numpy()
        lengths = samples.mask.sum(-1).tolist()
        for start in range(0, n, 8):
            part = contexts[start : start + 8]
            envs = self._envs_for(part)
            for j, env in enumerate(envs):
                i = start + j
                for t in range(int(lengths[i])):
                    _, r, _, _, info = env.step(acts[i, t])
                    rewards[i, t] = float(r)
                    success[i, t] = bool(info["success"])
                    self.env_steps += 1
        return rewards, success


def contexts_from_snapshots(snaps: list[dict[str, Any]], horizon: int, n_tasks: int) -> Contexts:
    task = torch.tensor([s["task"] for s in snaps], dtype=torch.long)
    return Batch({
        "task": task,
        "cond": torch.nn.functional.one_hot(task, n_tasks).float(),
        "rand_vec": torch.from_numpy(np.stack([s["rand_vec"] for s in snaps])),
        "sim_state": torch.from_numpy(np.stack([s["state"] for s in snaps])),
        "prev_obs": torch.from_numpy(np.stack([s["prev_obs"] for s in snaps])),
        "obs": torch.from_numpy(np.stack([s["obs"] for s in snaps])),
        "t": torch.tensor([s["t"] for s in snaps], dtype=torch.long),
        "horizon": torch.full((len(snaps),), horizon, dtype=torch.long),
    })

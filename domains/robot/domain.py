"""The robot domain: offline preference-based RL on Meta-World manipulation tasks.

Preparation (``build``), deterministic and local (nothing is downloaded):

1. **D4RL-layout datasets** per task, from behaviour policies of graded quality: ``expert``
   (Meta-World's scripted policy), ``medium`` (scripted with Gaussian noise and random-action
   mixing), ``random`` (uniform actions) and ``medium-replay`` (a noise curriculum from random to
   near-expert, like a learning agent's replay buffer). Episodes start from fresh resets and are
   truncated at ``horizon``. D4RL's normalised score anchors (random = 0, expert = 100) are the
   mean returns of the random and expert episodes, stored with the data.
2. **Reference**: behaviour cloning of a tanh-Gaussian MLP (``benchmark.policies.control``) on
   the mixed dataset, conditioned on a task one-hot.
3. **Offline pool**: start states drawn from the datasets; from each, ``pool_candidates``
   segments of ``segment_len`` steps rolled out by the behaviour policies and by the reference
   (a dataset reset); the oracle's view is the true segment return. Labels come later, per
   condition: the scripted teacher on true returns with the B-Pref faults and the equal
   threshold (``benchmark.feedback``), and single-segment thumbs.
4. **Contexts**: training start states (segments, horizon ``segment_len``) and evaluation
   contexts: fresh resets of held-out task variations, horizon = the full episode.

Gold reward of a sample = 100 · return / (R_expert − R_random) of its task (returns in units of
the task's expert–random gap, so tasks weigh alike). ``normalized_score`` is reference-relative as on
every domain; D4RL's normalised score (0 = random, 100 = expert) is the domain metric
``d4rl_score`` (and ``d4rl_score/<task>``), averaged over the balanced evaluation contexts.
Evaluation contexts are fresh resets of task variations (object/goal placements) that no dataset
episode, pool segment or training context uses.
Ours: the task set, horizons, noise levels and dataset sizes (see ``RobotConfig``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.api import Batch, Budget, Contexts, DomainSpec, Samples
from benchmark.domain import Domain, DomainConfig, OfflinePool, Oracle
from benchmark.policies.control import (
    ACTION_LIMIT,
    ReplayMemo,
    SealedSimulator,
    SegmentScorer,
    TanhGaussianPolicy,
    segment_transitions,
)
from benchmark.preparation import FitConfig, clone_state, fit
from benchmark.progress import Progress
from domains.robot.envs import (
    ACT_DIM,
    OBS_DIM,
    MetaWorldSim,
    contexts_from_snapshots,
    make_env,
    sample_rand_vecs,
    scripted_policy,
)

QUALITIES = ("expert", "medium", "random", "medium-replay")
QPOS_MAX = 24


@dataclass
class RobotConfig(DomainConfig):
    tasks: list[str] = field(default_factory=lambda: ["drawer-open", "button-press", "sweep-into", "door-open"])
    horizon: int = 150
    """Episode length (truncation) of datasets and evaluation episodes."""
    segment_len: int = 50
    """Length of preference segments and training samples."""
    episodes: dict[str, int] = field(default_factory=lambda: {
        "expert": 10, "medium": 10, "random": 5, "medium-replay": 10})
    """Dataset episodes per task and quality."""
    medium_noise: float = 0.5
    medium_random_prob: float = 0.3
    snapshot_stride: int = 10
    train_variations: int = 20
    """Task variations (object/goal placements) per task seen in the datasets."""
    hidden: int = 256
    layers: int = 2
    bc_steps: int = 2000
    bc_batch: int = 256
    bc_lr: float = 1e-3
    pool_contexts: int = 96
    """Pool start states per task."""
    pool_candidates: int = 4
    pool_sources: dict[str, float] = field(default_factory=lambda: {
        "expert": 0.25, "medium": 0.25, "random": 0.1, "reference": 0.4})
    train_contexts: int = 64
    """Training start states per task."""
    eval_contexts: int = 40
    eval_samples: int = 2
    best_of: int = 8
    eval_batch: int = 128
    lr: float = 1e-4


class RobotOracle(Oracle):
    """True task reward, by replaying a sample's actions from its start state in the simulator.

    Components: ``return`` = 100 · Σ_t r_t / (R_expert − R_random) of the sample's task (one
    component: the scripted teacher of B-Pref / Uni-RLHF labels on true returns)."""

    component_names = ("return",)
    temperature = 5.0

    def __init__(self, sim: MetaWorldSim, tasks: list[str], scale: Tensor, anchors: Tensor):
        self.sim = sim
        self.tasks = tasks
        self.scale = scale.double()  # [n_tasks]
        self.anchors = anchors.double()  # [n_tasks, 2]: random, expert return
        self.weights = torch.tensor([1.0])
        self._memo = ReplayMemo(sim.replay, ("task", "rand_vec", "sim_state", "t"))

    def replay(self, contexts: Contexts, samples: Samples) -> tuple[Tensor, Tensor]:
        """Per-step true rewards ``[B, T]`` and success ``[B, T]`` (memoised: gold, step rewards
        and metrics of the same samples replay once)."""
        if not len(samples):
            return self.sim.replay(contexts, samples)
        rewards, success = self._memo(contexts, samples)
        return rewards, success

    def remember(self, contexts: Contexts, samples: Samples, rewards: Tensor, success: Tensor) -> None:
        """Seed the memo with rewards recorded while rolling out (the domain's own rollouts)."""
        self._memo.remember(contexts, samples, rewards, success)

    def step_rewards(self, contexts: Contexts, samples: Samples) -> Tensor:
        r, _ = self.replay(contexts, samples)
        return (r * self.scale[contexts.task.cpu()][:, None]).float()

    def components(self, contexts: Contexts, samples: Samples) -> Tensor:
        return self.step_rewards(contexts, samples).double().sum(-1, keepdim=True).float()

    def metrics(self, contexts: Contexts, samples: Samples, num: int) -> dict[str, float]:
        r, s = self.replay(contexts, samples)
        ret = r.sum(-1)
        task = contexts.task.cpu()
        lo, hi = self.anchors[task, 0], self.anchors[task, 1]
        norm = 100 * (ret - lo) / (hi - lo)
        success = s.any(-1).double()
        out: dict[str, float] = {"episode_return": float(ret.mean()), "success_rate": float(success.mean()),
                                 "d4rl_score": float(norm.mean())}
        for k, name in enumerate(self.tasks):
            m = task == k
            if m.any():
                out[f"d4rl_score/{name}"] = float(norm[m].mean())
                out[f"success_rate/{name}"] = float(success[m].mean())
        # action diversity: mean distance between the ``num`` rollouts of a context, per step
        a = samples.actions.float()
        if num > 1:
            a = a.view(-1, num, *a.shape[1:])
            d = (a[:, :, None] - a[:, None, :]).norm(dim=-1).mean(-1)  # [C, num, num]
            out["diversity"] = float(d.sum((1, 2)).mean() / (num * (num - 1)))
        else:
            out["diversity"] = float(a.std(0).mean())
        out["steps"] = float(samples.mask.sum(-1).float().mean())
        return out


class RobotDomain(Domain):
    name = "robot"
    Config = RobotConfig
    context_identity = ("task", "rand_vec")
    description = "Meta-World manipulation (drawer-open, button-press, sweep-into, door-open), offline PbRL"
    presets = {
        "smoke": dict(tasks=["drawer-open", "sweep-into"], horizon=40, segment_len=10,
                      episodes={"expert": 2, "medium": 2, "random": 1, "medium-replay": 2}, train_variations=4,
                      hidden=32, bc_steps=60, bc_batch=64, pool_contexts=6, train_contexts=8, eval_contexts=4,
                      snapshot_stride=5),
        "quick": dict(),
        "standard": dict(horizon=200, episodes={"expert": 25, "medium": 25, "random": 10, "medium-replay": 25},
                         train_variations=50, bc_steps=5000, pool_contexts=160, train_contexts=256,
                         eval_contexts=80),
        "full": dict(tasks=["drawer-open", "button-press", "sweep-into", "door-open", "window-open", "drawer-close"],
                     horizon=250, episodes={"expert": 50, "medium": 50, "random": 20, "medium-replay": 50},
                     train_variations=50, bc_steps=20000, pool_contexts=400, train_contexts=512, eval_contexts=300,
                     eval_samples=4, best_of=4),
    }
    budgets = {
        "smoke": Budget(steps=4, batch_size=8, online_samples=256, feedback=128),
        "quick": Budget(steps=400, batch_size=32, online_samples=4_000, feedback=2_000),
        # offline epochs = steps × batch ÷ (pool contexts × tasks × 2 pairs): quick ≈ 17, where every classic
        # method improved on the reference (3 seeds); standard ≈ 20 and full ≈ 21 keep that regime (2,000
        # and 10,000 steps gave ≈ 100 and 267) with at least quick's gradient steps
        "standard": Budget(steps=400, batch_size=64, online_samples=40_000, feedback=10_000),
        "full": Budget(steps=800, batch_size=128, online_samples=200_000, feedback=50_000),
    }
    cfg: RobotConfig

    def __init__(self, cfg: RobotConfig, device: torch.device | str = "cpu"):
        super().__init__(cfg, device)
        unknown = [t for t in cfg.tasks if t not in __import__("domains.robot.envs", fromlist=["TASKS"]).TASKS]
        if unknown:
            from benchmark.errors import UserError
            from domains.robot.envs import TASKS

            raise UserError(f"robot tasks {unknown} unknown; choose from {', '.join(TASKS)}")
        self.sim = MetaWorldSim(cfg.tasks)

    # -- behaviour policies ----------------------------------------------------------------
    def _behaviour_act(self, quality: str, rng: np.random.Generator, level: float = 0.0) -> Any:
        """``act(obs, contexts)`` of a behaviour policy (numpy RNG, so deterministic)."""
        c = self.cfg
        experts = [scripted_policy(t) for t in c.tasks]
        if quality == "medium-replay":
            noise, p_rand = 0.1 + 0.9 * level, 0.8 * level
        else:
            noise, p_rand = c.medium_noise, c.medium_random_prob

        def act(obs: Tensor, rows: Contexts) -> Tensor:
            o = obs.double().numpy()
            out = np.zeros((len(o), ACT_DIM))
            for i, task in enumerate(rows.task.tolist()):
                if quality == "random":
                    a = rng.uniform(-1, 1, ACT_DIM)
                else:
                    a = experts[task](o[i])
                    if quality != "expert":
                        a = a + noise * rng.standard_normal(ACT_DIM)
                        if rng.random() < p_rand:
                            a = rng.uniform(-1, 1, ACT_DIM)
                out[i] = np.clip(a, -ACTION_LIMIT, ACTION_LIMIT)
            return torch.from_numpy(out).float()

        return act

    # -- preparation -----------------------------------------------------------------------
    def _datasets(self, rng: np.random.Generator, variations: list[np.ndarray], progress: Progress) -> tuple[
            dict[str, Any], list[dict]]:
        """Full episodes of every task × quality in D4RL's layout, and start-state snapshots."""
        c = self.cfg
        cols: dict[str, list] = {k: [] for k in (
            "observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "infos/qpos",
            "infos/qvel", "infos/success", "task", "quality", "episode")}
        snaps: list[dict] = []
        n_eps = sum(c.episodes.get(q, 0) for q in QUALITIES) * len(c.tasks)
        episode = 0
        with progress.task("robot: behaviour datasets", n_eps) as bar:
            for k, task in enumerate(c.tasks):
                env = make_env(task)
                for qi, quality in enumerate(QUALITIES):
                    count = c.episodes.get(quality, 0)
                    for e in range(count):
                        level = 1.0 - e / max(count - 1, 1)
                        act = self._behaviour_act(quality, rng, level)
                        rv = variations[k][int(rng.integers(len(variations[k])))]
                        obs = MetaWorldSim.reset_to(env, rv)
                        row = Batch({"task": torch.tensor([k])})
                        for t in range(c.horizon):
                            if t % c.snapshot_stride == 0 and t + c.segment_len <= c.horizon:
                                snap = MetaWorldSim.snapshot(env, obs, k)
                                snap["quality"] = qi
                                snaps.append(snap)
                            a = act(torch.from_numpy(obs).float()[None], row)[0].double().numpy()
                            qpos = np.zeros(QPOS_MAX)
                            qvel = np.zeros(QPOS_MAX)
                            qpos[: env.model.nq] = env.data.qpos
                            qvel[: env.model.nv] = env.data.qvel
                            nxt, r, _, _, info = env.step(a)
                            self.sim.env_steps += 1
                            for key, v in (("observations", obs), ("next_observations", nxt), ("actions", a),
                                           ("rewards", r), ("terminals", False),
                                           ("timeouts", t == c.horizon - 1), ("infos/qpos", qpos),
                                           ("infos/qvel", qvel), ("infos/success", bool(info["success"])),
                                           ("task", k), ("quality", qi), ("episode", episode)):
                                cols[key].append(v)
                            obs = nxt
                        episode += 1
                        bar.advance()
        floats = {"observations", "next_observations", "actions", "infos/qpos", "infos/qvel"}
        data: dict[str, Any] = {}
        for key, v in cols.items():
            if key in floats:
                data[key] = torch.from_numpy(np.stack(v)).float()
            elif key == "rewards":
                data[key] = torch.tensor(v, dtype=torch.float32)
            elif key in ("terminals", "timeouts", "infos/success"):
                data[key] = torch.tensor(v, dtype=torch.bool)
            else:
                data[key] = torch.tensor(v, dtype=torch.long)
        data["tasks"] = list(c.tasks)
        data["qualities"] = list(QUALITIES)
        data["qpos_dim"] = [make_env(t).model.nq for t in c.tasks]
        data["qvel_dim"] = [make_env(t).model.nv for t in c.tasks]
        return data, snaps

    def _anchors(self, data: dict[str, Any]) -> Tensor:
        """Per task (R_random, R_expert): mean full-episode returns of the random and expert data."""
        out = torch.zeros(len(self.cfg.tasks), 2, dtype=torch.float64)
        ep_ret = torch.zeros(int(data["episode"].max()) + 1, dtype=torch.float64).index_add_(
            0, data["episode"], data["rewards"].double())
        ep_task = torch.zeros_like(ep_ret, dtype=torch.long).index_copy_(0, data["episode"], data["task"])
        ep_q = torch.zeros_like(ep_ret, dtype=torch.long).index_copy_(0, data["episode"], data["quality"])
        for k in range(len(self.cfg.tasks)):
            for j, q in enumerate(("random", "expert")):
                m = (ep_task == k) & (ep_q == QUALITIES.index(q))
                out[k, j] = ep_ret[m].mean() if m.any() else float("nan")
        return out

    def _train_reference(self, data: dict[str, Any], progress: Progress) -> TanhGaussianPolicy:
        c = self.cfg
        torch.manual_seed(c.seed)
        policy = TanhGaussianPolicy(OBS_DIM, ACT_DIM, len(c.tasks), c.hidden, c.layers)
        obs = data["observations"]
        policy.set_normalizer(obs.mean(0), obs.std(0))
        cond = torch.nn.functional.one_hot(data["task"], len(c.tasks)).float()
        acts = data["actions"]
        gen = torch.Generator().manual_seed(c.seed)

        def nll(step: int) -> Tensor:
            idx = torch.randint(len(obs), (c.bc_batch,), generator=gen)
            return -policy.action_log_prob(obs[idx], cond[idx], acts[idx]).mean()

        cfg = FitConfig(c.bc_steps, c.bc_lr, optimizer="adam", schedule="cosine", clip=10.0, log_every=100)
        return fit(policy, nll, cfg, progress, "robot: BC reference on the mixed dataset", metric="nll").model

    def build(self, progress: Progress) -> dict:
        c = self.cfg
        t0 = time.perf_counter()
        rng = np.random.default_rng(c.seed)
        torch.manual_seed(c.seed)
        n_tasks = len(c.tasks)
        variations = [sample_rand_vecs(t, c.train_variations, rng) for t in c.tasks]
        per_task_eval = -(-c.eval_contexts // n_tasks)
        eval_variations = [sample_rand_vecs(t, per_task_eval, rng) for t in c.tasks]

        # 1. datasets + anchors ---------------------------------------------------------------
        data, snaps = self._datasets(rng, variations, progress)
        dataset_steps = self.sim.env_steps
        t_data = time.perf_counter() - t0
        anchors = self._anchors(data)
        data["ref_scores"] = anchors.clone()
        scale = 100.0 / (anchors[:, 1] - anchors[:, 0]).clamp_min(1e-6)

        # 2. reference --------------------------------------------------------------------------
        t1 = time.perf_counter()
        policy = self._train_reference(data, progress)
        policy.simulator = self.sim
        t_bc = time.perf_counter() - t1

        # 3. contexts -----------------------------------------------------------------------------
        snap_task = np.array([s["task"] for s in snaps])

        def draw(n_per_task: int) -> list[dict]:
            out = []
            for k in range(n_tasks):
                idx = np.flatnonzero(snap_task == k)
                out += [snaps[i] for i in rng.choice(idx, size=n_per_task, replace=len(idx) < n_per_task)]
            return out

        train_ctx = contexts_from_snapshots(draw(c.train_contexts), c.segment_len, n_tasks)
        pool_ctx = contexts_from_snapshots(draw(c.pool_contexts), c.segment_len, n_tasks)
        eval_snaps = []
        for i in range(c.eval_contexts):  # round robin over tasks: balanced evaluation
            k = i % n_tasks
            env = self.sim._env(k, 0)
            obs = MetaWorldSim.reset_to(env, eval_variations[k][i // n_tasks])
            eval_snaps.append(MetaWorldSim.snapshot(env, obs, k))
        eval_ctx = contexts_from_snapshots(eval_snaps, c.horizon, n_tasks)

        # 4. offline pool: behaviour sources and the reference from each start state ------------
        t2 = time.perf_counter()
        steps_before = self.sim.env_steps
        sources = list(c.pool_sources)
        weights = np.array([c.pool_sources[s] for s in sources])
        n_ctx, k_cand = len(pool_ctx), c.pool_candidates
        cand_src = rng.choice(len(sources), size=(n_ctx, k_cand), p=weights / weights.sum())
        cand_src.sort(axis=1)
        gen = torch.Generator().manual_seed(c.seed + 1)
        parts: dict[int, Batch] = {}
        with progress.task("robot: offline pool", len(sources)) as bar:
            for s, name in enumerate(sources):
                rows = np.argwhere(cand_src == s)
                if len(rows) == 0:
                    bar.advance()
                    continue
                ctx = pool_ctx[torch.from_numpy(rows[:, 0])]
                if name == "reference":
                    act = policy.rollout_act(generator=gen)
                else:
                    act = self._behaviour_act(name, rng, 0.5)
                out = self.sim.rollout(ctx, act, record=True)
                parts[s] = out
                bar.advance()
        order, batches = [], []
        for s, out in parts.items():
            rows = np.argwhere(cand_src == s)
            order += [int(r[0]) * k_cand + int(r[1]) for r in rows]
            batches.append(out)
        recorded = Batch.cat(batches)[torch.argsort(torch.tensor(order))]
        samples = Batch({k: recorded[k] for k in ("obs", "actions", "mask")})
        context_index = torch.arange(n_ctx).repeat_interleave(k_cand)
        source = torch.from_numpy(cand_src.reshape(-1)).long()
        self.oracle = RobotOracle(self.sim, list(c.tasks), scale, anchors)
        self.oracle.remember(pool_ctx[context_index], samples, recorded.rewards, recorded.success)
        step_r = self.oracle.step_rewards(pool_ctx[context_index], samples)
        components = step_r.double().sum(-1, keepdim=True).float()
        pool_steps = self.sim.env_steps - steps_before
        t_pool = time.perf_counter() - t2
        pool = OfflinePool(
            contexts=pool_ctx, samples=samples, context_index=context_index, source=source, sources=sources,
            components=components, demo=source == sources.index("expert") if "expert" in sources else
            torch.zeros(len(source), dtype=torch.bool), step_rewards=step_r, trajectories=data,
        )
        return {
            "reference": clone_state(policy),
            "anchors": anchors, "scale": scale,
            "train_contexts": train_ctx.state(), "eval_contexts": eval_ctx.state(), "pool": pool.state(),
            "timings": {"datasets_s": t_data, "dataset_steps": dataset_steps, "bc_s": t_bc, "pool_s": t_pool,
                        "pool_steps": pool_steps, "total_s": time.perf_counter() - t0},
        }

    def load(self, state: dict) -> None:
        c = self.cfg
        policy = TanhGaussianPolicy(OBS_DIM, ACT_DIM, len(c.tasks), c.hidden, c.layers,
                                    simulator=SealedSimulator(self.sim))
        policy.load_state_dict(state["reference"])
        policy.to(self.device)
        self.reference = policy.frozen_copy()
        self.anchors = state["anchors"]
        self.oracle = RobotOracle(self.sim, list(c.tasks), state["scale"], state["anchors"])
        self.train_contexts = Batch.from_state(state["train_contexts"])
        self.eval_contexts = Batch.from_state(state["eval_contexts"])
        self.pool = OfflinePool.from_state(state["pool"])
        self.timings = dict(state.get("timings", {}))

    def make_spec(self) -> DomainSpec:
        c = self.cfg
        return DomainSpec(
            name="robot", modality="control",
            capabilities=frozenset({"online", "exact_logp", "reset", "steps", "control"}),
            context_fields=("task", "cond", "rand_vec", "sim_state", "prev_obs", "obs", "t", "horizon"),
            sample_fields=("obs", "actions", "mask"),
            horizon=c.segment_len, obs_shape=(OBS_DIM,), action_shape=(ACT_DIM,), action_kind="continuous",
            cond_shape=(len(c.tasks),), lr=c.lr, batch_size=self.budgets["quick"].batch_size,
            notes="Samples are trajectory segments (obs [T+1, 39], actions [T, 4] in (-1, 1), mask) rolled out "
                  "in Meta-World from the context's start state; log_prob = sum of per-step tanh-Gaussian "
                  "log-probs (exact). Evaluation contexts are fresh resets with the full episode horizon.",
        )

    # -- algorithm-facing extras -----------------------------------------------------------
    def build_scorer(self, kind: str) -> SegmentScorer:
        c = self.cfg
        return SegmentScorer(OBS_DIM, ACT_DIM, len(c.tasks), c.hidden, c.layers, kind,
                             self.reference.obs_mean.cpu(), self.reference.obs_std.cpu()).to(self.device)

    def transitions(self, contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
        """Step view: (obs, action, next_obs, done, mask, timestep, cond); Meta-World never terminates."""
        return segment_transitions(contexts, samples)

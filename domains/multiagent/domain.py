"""The multi-agent domain: offline preference-based MARL on MPE (spread, reference, tag).

Preparation (``build``), deterministic and local:

1. **Scenarios and contexts**: a context is a scenario seed, i.e. MPE's own reset with that seed
   (landmark and agent start states), saved as a restorable state (``domains.multiagent.envs``).
   Training, pool and evaluation seeds are disjoint ranges, so no evaluation start state is seen in
   training.
2. **Anchors**: mean team returns of the scripted experts (ε = 0) and of the uniformly random joint
   policy on ``anchor_episodes`` fresh seeds per scenario: normalized team return is
   100 · (R − R_random) / (R_expert − R_random) (D4RL's convention).
3. **Offline pool, by dataset kind** (MARLHF, Zhang et al. 2024): for each kind and scenario,
   ``pool_contexts`` start states × ``pool_candidates`` joint episodes whose behaviour is drawn from
   the kind's mix (:data:`DATASET_KINDS`): ``expert`` (the script, ε = 0.05), ``noisy`` (ε = 0.3),
   ``slow`` (idles every other step), ``weak`` (ε = 0.6), ``random``, and ``unilateral`` (one learner,
   drawn per episode, random; the others expert). Each kind is a *part* of the pool; the conditions
   ``pure-expert``, ``mix-expert``, ``mix-unilateral`` and ``diversified`` keep one part
   (``Condition.pool_part``), the default condition keeps them all.
4. **Reference**: behaviour cloning of the shared-parameter categorical policy
   (``benchmark.policies.multiagent``) on every pool episode, conditioned on the scenario.

Gold reward of an episode = its normalized team return, 100 · (R − R_random) / (R_expert − R_random)
of its scenario, so that scenarios weigh alike and gold compares across contexts (without the
offset, tag's non-negative returns would all rank above spread's negative ones); per-step gold
rewards are 100 · (r_t − R_random / H) / (R_expert − R_random), which sum to it. Domain
metrics: ``normalized_return`` (and per scenario), ``team_return``, per-learner
``agent_contribution/<i>`` (the learner's own MPE reward, tag: its own catches × 10) and, from extra
rollouts, ``unilateral_gap``: the normalized return lost when one learner (each in turn) plays the
reference's policy while the others play the trained one (0 for the reference itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from benchmark.api import Batch, Budget, Contexts, DomainSpec, Policy, Samples
from benchmark.domain import Domain, DomainConfig, OfflinePool, Oracle
from benchmark.errors import UserError
from benchmark.policies.control import ReplayMemo, SealedSimulator
from benchmark.policies.multiagent import AgentCategoricalPolicy, AgentStepScorer, agent_transitions
from benchmark.preparation import FitConfig, clone_state, fit
from benchmark.progress import Progress
from domains.multiagent.envs import (
    AGENTS_MAX,
    N_ACTIONS,
    OBS_MAX,
    SCENARIOS,
    Behaviour,
    MPESim,
)

SOURCES = ("expert", "noisy", "slow", "weak", "random", "unilateral")
#: MARLHF's dataset kinds as behaviour mixes (its ``NUM_BATCH`` / ``NUM_UNILATERAL_BATCH`` ratios):
#: pure-expert 60; mix-expert 45 expert + 15 worst; mix-unilateral 30 + 15 worst + 15 unilateral;
#: diversified 15 expert, 6 + 6 + 3 intermediate, 15 worst, 15 unilateral.
DATASET_KINDS: dict[str, dict[str, float]] = {
    "pure-expert": {"expert": 1.0},
    "mix-expert": {"expert": 45, "random": 15},
    "mix-unilateral": {"expert": 30, "random": 15, "unilateral": 15},
    "diversified": {"expert": 15, "noisy": 6, "slow": 6, "weak": 3, "random": 15, "unilateral": 15},
}
SEED_RANGES = {"anchor": 1_000_000, "train": 2_000_000, "pool": 3_000_000, "eval": 9_000_000}


@dataclass
class MultiAgentConfig(DomainConfig):
    scenarios: list[str] = field(default_factory=lambda: ["spread", "reference", "tag"])
    """MPE scenarios (``domains.multiagent.envs.SCENARIOS``)."""
    horizon: int = 25
    """Episode length (MPE's ``max_cycles`` default: 25)."""
    anchor_episodes: int = 32
    """Episodes per scenario of the expert and of the random policy that set the normalisation."""
    pool_contexts: int = 24
    """Pool start states per scenario and dataset kind."""
    pool_candidates: int = 4
    """Joint episodes per pool start state (paired at random within it)."""
    train_contexts: int = 64
    """Training start states per scenario (online methods sample from them)."""
    hidden: int = 128
    """Width of the policy's and the scorers' MLPs (MARLHF: 64–128)."""
    layers: int = 2
    bc_steps: int = 1500
    """Behaviour-cloning steps of the reference."""
    bc_batch: int = 64
    """Episodes per behaviour-cloning step."""
    bc_lr: float = 1e-3
    eval_contexts: int = 60
    eval_samples: int = 2
    best_of: int = 8
    eval_batch: int = 128
    lr: float = 3e-5
    """Base fine-tuning learning rate of the policy (algorithms scale it). Measured on quick, seed 0: at
    3e-4 (1e-4) DPO drifted to a KL of 45 (10) nats from the reference in 400 steps and lost return on
    the default condition; at 3e-5 it gains (KL 3.7)."""


class MultiAgentOracle(Oracle):
    """Team reward by replaying a sample's joint actions from its start state in MPE."""

    component_names = ("team_return",)
    temperature = 5.0

    def __init__(self, sim: MPESim, scenarios: list[str], anchors: Tensor):
        self.sim, self.scenarios = sim, scenarios
        self.anchors = anchors.double()  # [scenarios, 2]: random, expert team return
        self.scale = 100.0 / (self.anchors[:, 1] - self.anchors[:, 0]).clamp_min(1e-6)
        self.weights = torch.tensor([1.0])
        self._memo = ReplayMemo(sim.replay, ("task", "sim_state", "horizon"))

    def replay(self, contexts: Contexts, samples: Samples) -> tuple[Tensor, Tensor]:
        """Team rewards ``[B, T]`` and per-learner rewards ``[B, T, N]`` (memoised: gold, step rewards
        and metrics of the same samples replay once)."""
        if not len(samples):
            return self.sim.replay(contexts, samples)
        team, per = self._memo(contexts, samples)
        return team, per

    def step_rewards(self, contexts: Contexts, samples: Samples) -> Tensor:
        """scale · (r_t − R_random / H) per step: a full episode sums to its normalized team return."""
        return self.scaled(contexts, samples.mask, self.replay(contexts, samples)[0])

    def scaled(self, contexts: Contexts, mask: Tensor, rewards: Tensor) -> Tensor:
        """Per-step team rewards ``[B, T]`` on the gold scale (see :meth:`step_rewards`)."""
        task = contexts.task.cpu()
        per_step_offset = self.anchors[task, 0] / contexts.horizon.cpu().double()
        return ((rewards - per_step_offset[:, None] * mask.cpu().double()) * self.scale[task][:, None]).float()

    def components(self, contexts: Contexts, samples: Samples) -> Tensor:
        return self.step_rewards(contexts, samples).double().sum(-1, keepdim=True).float()

    def normalized(self, task: Tensor, team_return: Tensor) -> Tensor:
        lo, hi = self.anchors[task, 0], self.anchors[task, 1]
        return 100 * (team_return.double() - lo) / (hi - lo).clamp_min(1e-6)

    def metrics(self, contexts: Contexts, samples: Samples, num: int) -> dict[str, float]:
        r, per = self.replay(contexts, samples)
        task = contexts.task.cpu()
        ret = r.sum(-1)
        norm = self.normalized(task, ret)
        out = {"team_return": float(ret.mean()), "normalized_return": float(norm.mean())}
        for k, name in enumerate(self.scenarios):
            m = task == k
            if m.any():
                out[f"normalized_return/{name}"] = float(norm[m].mean())
        contribution = per.sum(1)  # [B, AGENTS_MAX]
        for i in range(AGENTS_MAX):
            present = contexts.agent_mask[:, i].bool()
            if present.any():
                out[f"agent_contribution/{i}"] = float(contribution[present, i].mean())
        a = samples.actions.float()
        if num > 1:  # mean share of differing joint actions between a context's draws
            a = a.view(-1, num, *a.shape[1:])
            d = (a[:, :, None] != a[:, None, :]).float().mean((-1, -2))
            out["diversity"] = float(d.sum((1, 2)).mean() / (num * (num - 1)))
        else:
            out["diversity"] = float(a.std(0).mean())
        return out


class MultiAgentDomain(Domain):
    name = "multiagent"
    Config = MultiAgentConfig
    context_identity = ("task", "seed")
    description = "MPE spread / reference / tag (PettingZoo via mpe2), offline preference-based MARL"
    presets = {
        # smoke: lr 3e-4, so that a dozen steps move the tiny policy past noise (the conformance checks)
        "smoke": dict(anchor_episodes=6, pool_contexts=6, pool_candidates=4, train_contexts=32, hidden=64,
                      bc_steps=200, bc_batch=32, eval_contexts=6, best_of=2, lr=3e-4),
        "quick": dict(),
        "standard": dict(anchor_episodes=100, pool_contexts=96, train_contexts=256, bc_steps=4000, eval_contexts=150),
        "full": dict(anchor_episodes=200, pool_contexts=400, train_contexts=512, bc_steps=10000, eval_contexts=300,
                     eval_samples=4, best_of=4),
    }
    budgets = {
        "smoke": Budget(steps=4, batch_size=32, online_samples=1024, feedback=512),
        "quick": Budget(steps=400, batch_size=32, online_samples=4_000, feedback=2_000),
        # offline epochs = steps × batch ÷ (pool contexts × 3 scenarios × 4 kinds × 2 pairs): quick ≈ 22 (573
        # pairs), where the classic methods improved on the reference; standard ≈ 22 and full ≈ 21 keep it
        # (2,000 and 10,000 steps gave ≈ 56 and 133)
        "standard": Budget(steps=800, batch_size=64, online_samples=40_000, feedback=10_000),
        "full": Budget(steps=1600, batch_size=128, online_samples=200_000, feedback=50_000),
    }
    cfg: MultiAgentConfig

    def __init__(self, cfg: MultiAgentConfig, device: torch.device | str = "cpu"):
        super().__init__(cfg, device)
        unknown = [s for s in cfg.scenarios if s not in SCENARIOS]
        if unknown or not cfg.scenarios:
            raise UserError(f"multiagent scenarios {unknown or '[]'} unknown; choose from {', '.join(SCENARIOS)}")
        self.sim = MPESim(cfg.scenarios)

    # -- contexts ------------------------------------------------------------------------------
    def contexts(self, task: list[int], seeds: list[int]) -> Contexts:
        """Start states of fresh episodes: scenario ``task[i]`` reset with ``seeds[i]``."""
        rows = self.sim.start_rows(task, seeds)
        t = torch.tensor(task, dtype=torch.long)
        learners = torch.tensor([SCENARIOS[self.cfg.scenarios[k]].learners for k in task])
        valid = torch.tensor([SCENARIOS[self.cfg.scenarios[k]].n_actions for k in task])
        return Batch({
            "task": t, "cond": torch.nn.functional.one_hot(t, len(self.cfg.scenarios)).float(),
            "seed": torch.tensor(seeds, dtype=torch.long), "sim_state": torch.from_numpy(rows["sim_state"]),
            "obs": torch.from_numpy(rows["obs"]), "t": torch.zeros(len(task), dtype=torch.long),
            "horizon": torch.full((len(task),), self.cfg.horizon, dtype=torch.long),
            "agent_mask": torch.arange(AGENTS_MAX)[None, :] < learners[:, None],
            "action_mask": torch.arange(N_ACTIONS)[None, :] < valid[:, None],
        })

    def _balanced(self, split: str, per_scenario: int, total: int | None = None) -> Contexts:
        """Round-robin over scenarios (balanced), seeds from the split's own range."""
        n = total if total is not None else per_scenario * len(self.cfg.scenarios)
        task = [i % len(self.cfg.scenarios) for i in range(n)]
        base = SEED_RANGES[split] + 10_000 * self.cfg.seed
        return self.contexts(task, [base + i for i in range(n)])

    # -- preparation ---------------------------------------------------------------------------
    def _anchors(self, rng: np.random.Generator) -> Tensor:
        ctx = self._balanced("anchor", self.cfg.anchor_episodes)
        out = torch.zeros(len(self.cfg.scenarios), 2, dtype=torch.float64)
        for j, level in enumerate(("random", "scripted")):
            rec = self.sim.rollout(ctx, Behaviour(level, rng), record=True)
            ret = rec.rewards.sum(-1)
            for k in range(len(self.cfg.scenarios)):
                out[k, j] = ret[ctx.task == k].mean()
        return out

    def _pool(self, rng: np.random.Generator, progress: Progress) -> tuple[Contexts, Batch, dict[str, Tensor]]:
        """Every dataset kind's episodes: contexts, recorded samples and (context, source, part) indices."""
        c, kinds = self.cfg, list(DATASET_KINDS)
        n_per = c.pool_contexts * len(c.scenarios)
        contexts = Batch.cat([self._balanced("pool", c.pool_contexts)] * len(kinds))  # the same starts per kind
        src = np.zeros((len(contexts), c.pool_candidates), dtype=np.int64)
        for p, kind in enumerate(kinds):
            mix = DATASET_KINDS[kind]
            names = list(mix)
            w = np.array([mix[s] for s in names], dtype=np.float64)
            draw = rng.choice(len(names), size=(n_per, c.pool_candidates), p=w / w.sum())
            src[p * n_per : (p + 1) * n_per] = np.array([SOURCES.index(s) for s in names])[draw]
        src.sort(axis=1)
        parts, order = [], []
        with progress.task("multiagent: offline pool", len(SOURCES)) as bar:
            for s, name in enumerate(SOURCES):
                rows = np.argwhere(src == s)
                if len(rows):
                    level, dev = ("expert", "random") if name == "unilateral" else (name, None)
                    parts.append(self.sim.rollout(contexts[torch.from_numpy(rows[:, 0])], Behaviour(level, rng, dev),
                                                  record=True))
                    order += [int(r[0]) * c.pool_candidates + int(r[1]) for r in rows]
                bar.advance()
        recorded = Batch.cat(parts)[torch.argsort(torch.tensor(order))]
        context_index = torch.arange(len(contexts)).repeat_interleave(c.pool_candidates)
        index = {"context_index": context_index, "source": torch.from_numpy(src.reshape(-1)),
                 "part": context_index // n_per}
        return contexts, recorded, index

    def _train_reference(self, contexts: Contexts, samples: Samples, progress: Progress) -> AgentCategoricalPolicy:
        c = self.cfg
        torch.manual_seed(c.seed)
        policy = AgentCategoricalPolicy(OBS_MAX, N_ACTIONS, AGENTS_MAX, len(c.scenarios), c.hidden, c.layers)
        steps = samples.obs[:, :-1][samples.mask.bool()]  # [N, AGENTS_MAX, OBS_MAX]
        policy.set_normalizer(steps.flatten(0, 1).mean(0), steps.flatten(0, 1).std(0))
        gen = torch.Generator().manual_seed(c.seed)

        def nll(step: int) -> Tensor:
            idx = torch.randint(len(samples), (c.bc_batch,), generator=gen)
            return policy.mle_loss(contexts[idx], samples[idx], generator=gen).mean()

        cfg = FitConfig(c.bc_steps, c.bc_lr, optimizer="adam", schedule="cosine", clip=10.0, log_every=100)
        return fit(policy, nll, cfg, progress, "multiagent: BC reference on the pooled datasets", metric="nll").model

    def build(self, progress: Progress) -> dict:
        c = self.cfg
        t0 = time.perf_counter()
        rng = np.random.default_rng(c.seed)
        torch.manual_seed(c.seed)
        anchors = self._anchors(rng)
        self.oracle = MultiAgentOracle(self.sim, list(c.scenarios), anchors)
        t1 = time.perf_counter()
        pool_ctx, recorded, index = self._pool(rng, progress)
        t_pool = time.perf_counter() - t1
        ctx_of = pool_ctx[index["context_index"]]
        samples = Batch({k: recorded[k] for k in ("obs", "actions", "mask")})
        step_r = self.oracle.scaled(ctx_of, samples.mask, recorded.rewards)
        t2 = time.perf_counter()
        policy = self._train_reference(ctx_of, samples, progress)
        t_bc = time.perf_counter() - t2
        pool = OfflinePool(
            contexts=pool_ctx, samples=samples, context_index=index["context_index"], source=index["source"],
            sources=list(SOURCES), components=step_r.double().sum(-1, keepdim=True).float(),
            demo=index["source"] == SOURCES.index("expert"), step_rewards=step_r,
            part=index["part"], parts=list(DATASET_KINDS),
        )
        return {
            "reference": clone_state(policy), "anchors": anchors, "pool": pool.state(),
            "train_contexts": self._balanced("train", c.train_contexts).state(),
            "eval_contexts": self._balanced("eval", 0, c.eval_contexts).state(),
            "timings": {"pool_s": t_pool, "bc_s": t_bc, "env_steps": self.sim.env_steps,
                        "total_s": time.perf_counter() - t0},
        }

    def load(self, state: dict) -> None:
        c = self.cfg
        policy = AgentCategoricalPolicy(OBS_MAX, N_ACTIONS, AGENTS_MAX, len(c.scenarios), c.hidden, c.layers,
                                        simulator=SealedSimulator(self.sim))
        policy.load_state_dict(state["reference"])
        policy.to(self.device)
        self.reference = policy.frozen_copy()
        self.oracle = MultiAgentOracle(self.sim, list(c.scenarios), state["anchors"])
        self.pool = OfflinePool.from_state(state["pool"])
        self.train_contexts = Batch.from_state(state["train_contexts"])
        self.eval_contexts = Batch.from_state(state["eval_contexts"])
        self.timings = dict(state.get("timings", {}))

    def make_spec(self) -> DomainSpec:
        c = self.cfg
        return DomainSpec(
            name="multiagent", modality="multiagent",
            capabilities=frozenset({"online", "exact_logp", "reset", "steps", "agents"}),
            context_fields=("task", "cond", "seed", "sim_state", "obs", "t", "horizon", "agent_mask", "action_mask"),
            sample_fields=("obs", "actions", "mask"),
            horizon=c.horizon, obs_shape=(AGENTS_MAX, OBS_MAX), action_shape=(AGENTS_MAX,), action_kind="discrete",
            n_actions=N_ACTIONS, cond_shape=(len(c.scenarios),), lr=c.lr, batch_size=self.budgets["quick"].batch_size,
            notes="Samples are joint MPE episodes from the context's start state: obs [T+1, agents, 21], actions "
                  "[T, agents] (ids below 50; the context's action_mask marks a scenario's valid ids, agent_mask its "
                  "learners; padded agents act 0). log_prob = Σ_t Σ_agents log π(a|o) (exact). The step view "
                  "carries the agent axis: obs [T, agents, 21], action [T, agents].",
        )

    # -- algorithm-facing extras -------------------------------------------------------------------
    def build_scorer(self, kind: str) -> AgentStepScorer:
        c, ref = self.cfg, self.reference.inputs
        return AgentStepScorer(OBS_MAX, N_ACTIONS, AGENTS_MAX, len(c.scenarios), c.hidden, c.layers, kind,
                               ref.obs_mean.cpu(), ref.obs_std.cpu()).to(self.device)

    def transitions(self, contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
        return agent_transitions(contexts, samples)

    # -- evaluation hooks ----------------------------------------------------------------------------
    @torch.no_grad()
    def policy_metrics(self, policy: Policy, contexts: Contexts, generator: torch.Generator) -> dict[str, float]:
        """``unilateral_gap``: normalized return of the policy minus its mean over learners i of the
        return when learner i plays the reference's policy (one draw per context and deviation)."""
        if not isinstance(policy, AgentCategoricalPolicy):
            return {}
        seed = int(torch.randint(2**62, (1,), generator=generator))
        mine = self._rollout_mixed(policy, None, contexts, seed)
        gaps = []
        for i in range(AGENTS_MAX):
            has = contexts.agent_mask[:, i].bool()
            if has.any():
                gaps.append((mine - self._rollout_mixed(policy, i, contexts, seed))[has])
        return {"unilateral_gap": float(torch.cat(gaps).mean())}

    def _rollout_mixed(self, policy: AgentCategoricalPolicy, deviator: int | None, contexts: Contexts,
                       seed: int) -> Tensor:
        """Normalized returns when ``deviator`` (None: nobody) plays the reference, on common random
        numbers (every rollout with ``seed`` draws the same uniforms; the reference's gap is 0)."""
        ref, gen = self.reference, torch.Generator().manual_seed(seed)

        def act(obs: Tensor, rows: Contexts) -> Tensor:
            u = torch.rand(*obs.shape[:-1], N_ACTIONS, generator=gen)
            a = policy.act_with(obs, rows, u)
            if deviator is not None:
                a[:, deviator] = ref.act_with(obs, rows, u)[:, deviator]
            return a

        out = self.sim.rollout(contexts, act, record=True)
        return self.oracle.normalized(contexts.task, out.rewards.sum(-1))

    def artifacts(self, policy: Policy, out_dir: Path, generator: torch.Generator) -> list[str]:
        from domains.multiagent.pictures import episode_gif

        return episode_gif(self, policy, out_dir, generator)

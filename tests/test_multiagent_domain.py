"""The multi-agent domain: MPE restore/replay, scripted experts, the agent axis, dataset kinds, MARLHF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.conditions import CONDITIONS
from benchmark.data import condition_mismatch, make_offline_data
from benchmark.feedback import RaterPopulation
from benchmark.objectives import temporal_smoothness
from benchmark.progress import Progress
from benchmark.runner import CellRequest, prepare_domain, resolve, run_cell
from benchmark.store import Store
from domains.multiagent.domain import DATASET_KINDS, SOURCES
from domains.multiagent.envs import SCENARIOS, Behaviour, Scenario, expert_actions

KINDS = list(DATASET_KINDS)


def _domain(cache):
    cell = resolve(CellRequest("sft", "multiagent", preset="smoke"))
    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return domain


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_restoring_a_mid_episode_state_replays_the_same_trajectory(name: str) -> None:
    """Record 25 steps of random joint actions; restore the state saved at step 10 into another env
    that has been elsewhere since, replay the same actions: observations and rewards are identical."""
    rng = np.random.default_rng(1)
    env = Scenario(name)
    env.restore(env.reset_state(7))
    acts = rng.integers(SCENARIOS[name].n_actions, size=(25, SCENARIOS[name].learners))
    recorded, saved = [], None
    for t in range(25):
        if t == 10:
            saved = env.snapshot()
        recorded.append(env.step(acts[t]))
    other = Scenario(name)
    other.restore(other.reset_state(123))
    other.step(acts[0])
    other.restore(saved)
    for t in range(10, 25):
        obs, team, per = other.step(acts[t])
        np.testing.assert_array_equal(obs, recorded[t][0])
        assert team == recorded[t][1]
        np.testing.assert_array_equal(per, recorded[t][2])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_direct_step_is_pettingzoos_parallel_step(name: str) -> None:
    """``Scenario.step`` bypasses PettingZoo's wrappers for speed: two envs from the same start, one
    stepped directly and one through the public parallel ``step``, see identical observations,
    rewards and world states over 25 random joint actions (restores in between included)."""
    rng = np.random.default_rng(2)
    direct, wrapped = Scenario(name), Scenario(name)
    start = direct.reset_state(11)
    direct.restore(start)
    wrapped.restore(wrapped.reset_state(11))
    for t in range(25):
        a = rng.integers(SCENARIOS[name].n_actions, size=SCENARIOS[name].learners)
        got, want = direct.step(a), wrapped.step_wrapped(a)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
        np.testing.assert_array_equal(got[2], want[2])
        np.testing.assert_array_equal(direct.snapshot(), wrapped.snapshot())
        if t == 12:  # both continue from a restored state, as the batched simulator does
            state = direct.snapshot()
            direct.restore(state)
            wrapped.restore(state)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scripted_experts_beat_random_by_a_wide_margin(name: str) -> None:
    """Paired over 20 start states: the expert's team return is at least the uniformly random joint
    policy's on 90% of them, and the mean gap is more than 4 standard errors."""
    env, info = Scenario(name), SCENARIOS[name]
    rng = np.random.default_rng(0)

    def episode(seed: int, expert: bool) -> float:
        env.restore(env.reset_state(seed))
        total = 0.0
        for _ in range(25):
            act = expert_actions(name, env.world) if expert else rng.integers(info.n_actions, size=info.learners)
            total += env.step(np.asarray(act))[1]
        return total

    gap = np.array([episode(s, True) - episode(s, False) for s in range(20)])
    assert (gap >= 0).mean() >= 0.9, gap  # tag: a start where neither side catches the prey ties at 0
    assert gap.mean() > 4 * gap.std(ddof=1) / np.sqrt(len(gap)), gap


def test_simulator_replay_matches_the_recorded_rollout(cache) -> None:
    """The oracle's replay of a policy's samples gives the rewards recorded while rolling them out."""
    d = _domain(cache)
    ctx = d.eval_contexts
    out = d.sim.rollout(ctx, d.reference.rollout_act(generator=torch.Generator().manual_seed(0)), record=True)
    team, per = d.sim.replay(ctx, out)
    torch.testing.assert_close(team, out.rewards)
    torch.testing.assert_close(per, out.agent_rewards)
    assert d.sim.rollout(ctx, Behaviour("expert", np.random.default_rng(0))).actions.shape[1:] == (25, 3)


def test_joint_log_prob_is_the_sum_over_agents_and_padded_agents_count_nothing(cache) -> None:
    d = _domain(cache)
    ctx = d.eval_contexts
    s = d.reference.sample(ctx, 1, generator=torch.Generator().manual_seed(0))
    per = d.reference.agent_log_prob(ctx, s)
    assert per.shape == (len(ctx), 25, 3)
    torch.testing.assert_close(d.reference.log_prob(ctx, s), per.sum((1, 2)))
    padded = ~ctx.agent_mask.bool()
    assert padded.any(), "the reference scenario has two learners in three slots"
    assert (per.permute(0, 2, 1)[padded] == 0).all()
    assert (s.actions.permute(0, 2, 1)[padded] == 0).all()
    valid = ctx.action_mask.bool()
    assert valid.gather(1, s.actions.flatten(1)).all(), "every sampled id is valid for its scenario"
    view = d.transitions(ctx, s)
    assert view["obs"].shape == (len(ctx), 25, 3, 21) and view["action"].shape == (len(ctx), 25, 3)


def test_unilateral_gap_is_zero_for_the_reference_and_not_for_another_policy(cache) -> None:
    """With common random numbers, swapping a learner of the reference for the reference changes
    nothing (the gap is exactly 0); for a policy that differs (uniform over valid ids) it is not 0."""
    d = _domain(cache)
    gen = torch.Generator().manual_seed(0)
    assert d.policy_metrics(d.reference, d.eval_contexts, gen)["unilateral_gap"] == 0.0
    noisy = d.make_policy()
    with torch.no_grad():
        noisy.net[-1].weight.zero_()
        noisy.net[-1].bias.zero_()  # uniform over valid ids
    gap = d.policy_metrics(noisy, d.eval_contexts, gen)["unilateral_gap"]
    assert gap != 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_dataset_kind_conditions_keep_their_own_behaviours(kind: str, cache) -> None:
    d = _domain(cache)
    cond = CONDITIONS[kind]
    pop = RaterPopulation.build(d.oracle.weights, cond.raters)
    data = make_offline_data(d.pool, d.oracle.weights, pop, cond, "multiagent")
    allowed = {SOURCES.index(s) for s in DATASET_KINDS[kind]}
    seen = set(data.pairs.source_chosen.tolist()) | set(data.pairs.source_rejected.tolist())
    assert seen and seen <= allowed
    assert set(data.singles.source.tolist()) <= allowed


def test_a_dataset_kind_on_a_domain_without_it_is_na_with_the_reason(home, cache) -> None:
    rec = run_cell(resolve(CellRequest("sft", "text", "pure-expert", preset="smoke")),
                   store=Store(home / "s.sqlite"), cache=cache)
    assert rec.status == "na" and "pure-expert" in rec.reason and "pool parts: none" in rec.reason
    assert condition_mismatch(_domain(cache).pool, CONDITIONS["pure-expert"], "multiagent") is None


def test_temporal_smoothness_is_the_sum_of_squared_consecutive_differences() -> None:
    r = torch.tensor([[1.0, 3.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert float(temporal_smoothness(r, mask)[0]) == (3 - 1) ** 2 + (2 - 3) ** 2
    per_agent = torch.stack([r, 2 * r], -1)  # [B, T, agents]: summed over agents
    assert float(temporal_smoothness(per_agent, mask)[0]) == 5 + 4 * 5
    assert float(temporal_smoothness(torch.ones(1, 4), torch.ones(1, 4, dtype=torch.bool))[0]) == 0.0


@pytest.mark.parametrize("override", ["smoothing=0", "imitation=0"])
def test_marlhf_ablations_change_the_result(override: str, home, cache) -> None:
    """Each ablation switch reaches the trained policy (30 steps and a fast target network, so that
    the critics' difference reaches the actor within the test's budget)."""
    store, fast = Store(home / "s.sqlite"), ("target_update=0.5",)
    full = run_cell(resolve(CellRequest("marlhf", "multiagent", preset="smoke", sets=fast, budget_sets=("steps=30",))),
                    store=store, cache=cache)
    ablated = run_cell(resolve(CellRequest("marlhf", "multiagent", preset="smoke", sets=(*fast, override),
                                           budget_sets=("steps=30",))), store=store, cache=cache)
    assert full.status == ablated.status == "done"
    assert full.run_id != ablated.run_id
    assert full.metrics["kl_to_ref"] != ablated.metrics["kl_to_ref"]


def test_marlhf_reward_model_ranks_the_chosen_side_and_smoothing_smooths(cache) -> None:
    """Stage 1 alone: the reward model fits the pairs' direction (a reversed Bradley–Terry loss would
    rank the rejected side first), and λ = 10 gives smoother per-agent step rewards than λ = 0."""
    import dataclasses

    from baselines.marlhf import MARLHFConfig, _agent_heads, fit_smoothed_reward
    from benchmark.api import RunContext
    from benchmark.checks import _NullReporter
    from benchmark.runner import make_instance

    d = _domain(cache)
    budget = dataclasses.replace(type(d).budget("smoke"), steps=200)
    roughness = {}
    for smoothing in (0.0, 10.0):
        inst, seals, _ = make_instance(d, CONDITIONS["default"], budget, 0, torch.device("cpu"))
        ctx = RunContext(domain=inst, budget=budget, generator=torch.Generator().manual_seed(0),
                         device=torch.device("cpu"), seed=0, reporter=_NullReporter(), meter=seals.handles[1])
        pairs = inst.offline.pairs
        rm = fit_smoothed_reward(ctx, pairs, MARLHFConfig(smoothing=smoothing, rm_fraction=0.5))
        with torch.no_grad():
            chosen = _agent_heads(rm, pairs.contexts, pairs.chosen)
            rejected = _agent_heads(rm, pairs.contexts, pairs.rejected)
            accuracy = (chosen.flatten(1).sum(-1) > rejected.flatten(1).sum(-1)).float().mean()
            roughness[smoothing] = float(temporal_smoothness(chosen, pairs.chosen.mask.bool()).mean())
        seals.close()
        assert accuracy > 0.7, (smoothing, accuracy)
    assert roughness[10.0] < roughness[0.0]

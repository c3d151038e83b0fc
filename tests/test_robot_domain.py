"""The robot domain: state restore, exact segment log-probs, D4RL layout and anchors, the step
view, and the Minari export round trip (smoke preset)."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from benchmark.conditions import CONDITIONS
from benchmark.progress import Progress
from benchmark.runner import CellRequest, make_instance, prepare_domain, resolve
from benchmark.steps import step_view
from domains.robot.domain import QUALITIES, RobotDomain


def _prepare(name: str, cache):
    cell = resolve(CellRequest("dpo", name, preset="smoke"))
    d, stats, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return d, stats


@pytest.fixture(scope="module")
def domain(cache) -> RobotDomain:
    return _prepare("robot", cache)[0]


def test_restoring_a_start_state_reproduces_the_trajectory(domain: RobotDomain) -> None:
    pool = domain.pool
    idx = torch.arange(0, len(pool.samples), max(1, len(pool.samples) // 6))
    ctx, smp = pool.contexts[pool.context_index[idx]], pool.samples[idx]
    # replaying the stored actions from the restored state gives the stored observations ...
    again = domain.sim.rollout(ctx, lambda obs, rows: torch.zeros(len(obs), 4), forced=smp)
    torch.testing.assert_close(again.obs, smp.obs, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.actions, smp.actions)
    # ... and the oracle's replayed rewards are the recorded ones
    torch.testing.assert_close(domain.oracle.step_rewards(ctx, smp), pool.step_rewards[idx], atol=1e-4, rtol=1e-5)
    # a different action sequence from the same state leads elsewhere
    other = domain.sim.rollout(ctx, lambda obs, rows: torch.full((len(obs), 4), 0.9))
    assert (other.obs[:, -1] - smp.obs[:, -1]).abs().max() > 1e-3


def test_log_prob_is_the_exact_sum_of_per_step_tanh_gaussian_log_probs(domain: RobotDomain) -> None:
    ref = domain.reference
    ctx = domain.train_contexts[:3]
    samples = ref.sample(ctx, 2, generator=torch.Generator().manual_seed(0))
    rep = ctx.repeat(2)
    lp = ref.log_prob(rep, samples)
    # independent computation with torch.distributions, step by step
    mu, log_std = ref.dist_params(samples.obs[:, :-1], rep.cond[:, None, :])
    dist = TransformedDistribution(Normal(mu, log_std.exp()), [TanhTransform()])
    per_step = dist.log_prob(samples.actions).sum(-1)
    torch.testing.assert_close(lp, (per_step * samples.mask).sum(-1), atol=2e-3, rtol=1e-4)
    steps, mask = ref.step_log_prob(rep, samples)
    assert steps.shape == (6, domain.cfg.segment_len) and mask.all()
    # actions stay inside the open interval, so every log-prob is finite
    assert samples.actions.abs().max() < 1 and torch.isfinite(lp).all()


def test_decision_transformer_rollout_matches_its_log_prob(domain: RobotDomain) -> None:
    """DTR's actor (``benchmark.policies.decision``): fresh, it is its base; trained or not, the
    actions its rollout draws in the real simulator are those its own per-step windows give with
    the same Gaussian draws, so ``log_prob`` scores a sample with the windows its rollout saw."""
    from benchmark.policies.decision import DecisionTransformerPolicy

    base = domain.reference.frozen_copy()
    dt = DecisionTransformerPolicy(base, context_len=4)
    ctx = domain.train_contexts[:10]  # two of the simulator's chunks of 8 rows: two histories
    fresh = base.sample(ctx, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(dt.log_prob(ctx, fresh), base.log_prob(ctx, fresh))
    with torch.no_grad():
        torch.nn.init.normal_(dt.head.weight, std=0.2)
        dt.target_goal.fill_(0.5)
    samples = dt.sample(ctx, 1, generator=torch.Generator().manual_seed(1))
    assert samples.actions.shape[1] > dt.context_len  # windows slide
    obs, _, prev, goals, cond = dt._history(ctx, samples, None)
    with torch.no_grad():
        mu, log_std = dt.dist_params(obs, prev, goals, cond)
    gen = torch.Generator().manual_seed(1)
    eps = torch.cat([torch.stack([torch.randn(n, 4, generator=gen) for _ in range(obs.shape[1])], 1)
                     for n in (8, 2)])
    redrawn = torch.tanh(mu + log_std.exp() * eps).clamp(-1 + 1e-3, 1 - 1e-3)
    torch.testing.assert_close(redrawn * samples.mask[..., None], samples.actions, atol=1e-4, rtol=0)
    assert not torch.allclose(dt.log_prob(ctx, samples), base.log_prob(ctx, samples))


def test_datasets_follow_d4rl_layout_and_anchors(domain: RobotDomain) -> None:
    tr = domain.pool.trajectories
    n = len(tr["observations"])
    for key in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "infos/qpos",
                "infos/qvel"):
        assert len(tr[key]) == n, key
    c = domain.cfg
    n_eps = sum(c.episodes[q] for q in QUALITIES) * len(c.tasks)
    assert n == n_eps * c.horizon
    assert int(tr["timeouts"].sum()) == n_eps and not tr["terminals"].any()
    # next_observations continue the episode
    same_ep = tr["episode"][1:] == tr["episode"][:-1]
    torch.testing.assert_close(tr["next_observations"][:-1][same_ep], tr["observations"][1:][same_ep])
    # qpos of the padded layout matches the 39-dim observation's hand position via the env? at least
    # the padded tail is zero
    for k, _ in enumerate(c.tasks):
        rows = tr["task"] == k
        assert (tr["infos/qpos"][rows][:, tr["qpos_dim"][k]:] == 0).all()
    # D4RL normalisation: random episodes score 0 on average, expert 100; medium in between
    ep = tr["episode"]
    ret = torch.zeros(int(ep.max()) + 1, dtype=torch.float64).index_add_(0, ep, tr["rewards"].double())
    ep_task = torch.zeros_like(ret, dtype=torch.long).index_copy_(0, ep, tr["task"])
    ep_q = torch.zeros_like(ret, dtype=torch.long).index_copy_(0, ep, tr["quality"])
    for k in range(len(c.tasks)):
        lo, hi = tr["ref_scores"][k].tolist()
        assert hi > lo
        for q, target in (("random", 0.0), ("expert", 100.0)):
            m = (ep_task == k) & (ep_q == QUALITIES.index(q))
            assert math.isclose(float((100 * (ret[m] - lo) / (hi - lo)).mean()), target, abs_tol=1e-3)


def test_pool_holds_behaviour_and_reference_segments(domain: RobotDomain) -> None:
    pool = domain.pool
    assert set(pool.sources) == {"expert", "medium", "random", "reference"}
    assert pool.step_rewards.shape == pool.samples.mask.shape
    torch.testing.assert_close(pool.step_rewards.sum(-1), pool.components[:, 0], atol=1e-3, rtol=1e-5)
    assert (pool.demo == (pool.source == pool.sources.index("expert"))).all()


def test_step_view_native_for_robot(domain: RobotDomain, cache) -> None:
    inst, _, _ = make_instance(domain, CONDITIONS["default"], RobotDomain.budget("smoke"), 0, torch.device("cpu"))
    pairs = inst.offline.pairs
    view = step_view(inst, pairs.contexts, pairs.chosen, inst.reference)
    t = domain.cfg.segment_len
    assert view.horizon == t
    assert view.obs.shape == (len(pairs), t, 39) and view.action.shape == (len(pairs), t, 4)
    torch.testing.assert_close(view.next_obs[:, :-1], view.obs[:, 1:])
    torch.testing.assert_close(view.log_prob.sum(-1), domain.reference.log_prob(pairs.contexts, pairs.chosen))
    assert not view.done.any() and view.mask.all()
    torch.testing.assert_close(view.cond, pairs.contexts.cond)
    # offline trajectories reach algorithms without rewards or anything derived from them
    assert inst.offline.trajectories is not None and "rewards" not in inst.offline.trajectories
    assert not {"infos/success", "quality", "ref_scores"} & set(inst.offline.trajectories)


def test_minari_export_round_trip(domain: RobotDomain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    from benchmark.export import export

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ids = export(domain, "minari", tmp_path)
    tr = domain.pool.trajectories
    assert len(ids) == len(domain.cfg.tasks) * len(QUALITIES)
    for dataset_id in ids:
        _, rest = dataset_id.split("/", 1)
        task, quality = rest.split("/")[0].removeprefix("robot-"), rest.split("/")[1].removesuffix("-v0")
        k, q = domain.cfg.tasks.index(task), QUALITIES.index(quality)
        rows = (tr["task"] == k) & (tr["quality"] == q)
        ds = minari.load_dataset(dataset_id)
        assert ds.total_episodes == domain.cfg.episodes[quality]
        assert ds.total_steps == int(rows.sum())
        first = next(iter(ds.iterate_episodes()))
        r0 = torch.nonzero(rows).flatten()[: domain.cfg.horizon]
        torch.testing.assert_close(torch.as_tensor(first.actions).float(), tr["actions"][r0])
        torch.testing.assert_close(torch.as_tensor(first.rewards).float(), tr["rewards"][r0])
        assert first.observations.shape == (domain.cfg.horizon + 1, 39)
        lo, hi = tr["ref_scores"][k].tolist()
        assert ds.storage.metadata["ref_min_score"] == pytest.approx(lo)
        assert ds.storage.metadata["ref_max_score"] == pytest.approx(hi)
        assert float(minari.get_normalized_score(ds, torch.tensor([hi]).numpy())[0]) == pytest.approx(1.0)


def test_export_command_errors_are_one_line(home: Path, domain: RobotDomain, warm_bench) -> None:
    def _bench(*args: str) -> subprocess.CompletedProcess:
        return warm_bench.run(*args, env=dict(os.environ, COLUMNS="200"))

    bad = _bench("export", "--domain", "robot", "--format", "csv", "--preset", "smoke", "--out", str(home))
    assert bad.returncode == 2 and "unknown export format" in bad.stderr and "Traceback" not in bad.stderr
    bad = _bench("export", "--domain", "robt", "--format", "minari", "--preset", "smoke")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    blocked = home / "file"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("")
    bad = _bench("export", "--domain", "robot", "--format", "minari", "--preset", "smoke", "--out",
                 str(blocked / "sub"))
    assert bad.returncode == 2 and "--out" in bad.stderr and "Traceback" not in bad.stderr

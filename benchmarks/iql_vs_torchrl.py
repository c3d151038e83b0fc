"""Our IQL update next to torchrl's ``IQLLoss`` on the same networks and batch (issue #19).

    pip install -e '.[torchrl]'
    python benchmarks/iql_vs_torchrl.py [--segments 32] [--steps 50] [--updates 50] [--reps 5] [--threads 1 2]

Both sides start from identical weights: the robot domain's networks at its quick preset (39-d
observations, 4-d actions, a 4-task one-hot ``cond``, MLPs 256 × 2): our ``TanhGaussianPolicy``,
two ``SegmentScorer`` Q members and a ``v`` scorer; torchrl gets exact copies, wrapped in
``TensorDictModule``s and a ``ProbabilisticActor`` with a ``TanhNormal`` (low −1, high 1, no
location scaling) over the policy's own (μ, σ). The batch is one set of synthetic segments
(``--segments`` × ``--steps``, fixed seed) flattened into transitions by the robot's step view
(``segment_transitions``). Ours is the maths of ``benchmark.offline_rl.iql_train`` on flat
transitions (CORL's defaults, ``baselines/iql.py``):

    L_V = mean(|τ − 1(u < 0)|·u²),             u = min_i Q̄_i(s, a) − V(s)          (τ = 0.7)
    L_Q = ½ Σ_i mean((r + γ(1 − d)·V(s') − Q_i(s, a))²)                          (γ = 0.99)
    L_π = −mean(min(exp(β·(min_i Q̄_i(s, a) − V(s))), 100) · log π(a|s))           (β = 3)
    Q̄ ← (1 − κ)·Q̄ + κ·Q                                                         (κ = 0.005)

three backward passes and three AdamW (weight decay 0, i.e. Adam) steps with the gradient clip of
``optimizer_step``. torchrl: ``IQLLoss`` (``loss_function="l2"``, the same τ, β, TD0 with the same
γ) + ``SoftUpdate(tau=κ)``, updated as its ``sota-implementations/iql`` script does (one backward
of the summed losses, the three optimisers grouped), with the same optimisers and clip.

Measured at each ``--threads`` (``torch.set_num_threads``): updates per second over ``--updates``
updates, for each of ``--reps`` back-to-back repetitions, alternating which side runs first.
Reported: the medians, the median of the per-repetition ratios ours/torchrl, the losses' agreement
on identical weights, the weights' agreement after ``--agree-updates`` updates of each (torchrl's Q
loss halved onto our scale), and what differs. Writes ``benchmarks/results/iql_vs_torchrl.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from baselines.iql import IQLConfig
from benchmark.api import Batch, Ensemble
from benchmark.objectives import awr_weights, expectile_loss
from benchmark.policies.control import SegmentScorer, TanhGaussianPolicy, clip_actions, segment_transitions
from benchmark.training import optimizer_step

RESULTS = Path(__file__).parent / "results"
OBS_DIM, ACT_DIM = 39, 4  # domains/robot/envs.py
TASKS, HIDDEN, LAYERS = 4, 256, 2  # RobotConfig (quick preset): 4 tasks, MLPs 256 × 2
BASE_LR = 1e-4  # RobotConfig.lr; IQLConfig scales it: critics × 10, actor × 1


# -- data -----------------------------------------------------------------------------------


def synthetic_segments(segments: int, steps: int, seed: int = 0) -> tuple[Batch, Batch]:
    """Robot-shaped segments from a fixed seed: a random walk of observations ``obs [B, T+1, 39]``,
    actions ``tanh(N(0, 1))`` clipped as the domain clips them ``[B, T, 4]``, a full ``mask [B, T]``
    and a task one-hot ``cond [B, 4]`` per segment."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(segments, 1, OBS_DIM, generator=g) + 0.1 * torch.randn(
        segments, steps + 1, OBS_DIM, generator=g).cumsum(1)
    actions = clip_actions(torch.tanh(torch.randn(segments, steps, ACT_DIM, generator=g)))
    task = torch.randint(0, TASKS, (segments,), generator=g)
    cond = nn.functional.one_hot(task, TASKS).float()
    return Batch({"cond": cond}), Batch({"obs": obs, "actions": actions, "mask": torch.ones(segments, steps)})


def flat_transitions(segments: int, steps: int, seed: int = 0) -> dict[str, Tensor]:
    """The step view of :func:`synthetic_segments` flattened to ``N = B·T`` transitions: ``obs``,
    ``action``, ``next_obs``, ``reward`` (N(0, 1), as relabelled rewards are standardised),
    ``done`` (False: Meta-World truncates) and ``cond``."""
    contexts, samples = synthetic_segments(segments, steps, seed)
    view = segment_transitions(contexts, samples)
    mask = view["mask"]
    cond = view["cond"][:, None, :].expand(-1, steps, -1)
    g = torch.Generator().manual_seed(seed + 1)
    return {"obs": view["obs"][mask].float(), "action": view["action"][mask].float(),
            "next_obs": view["next_obs"][mask].float(), "reward": torch.randn(int(mask.sum()), generator=g),
            "done": view["done"][mask], "cond": cond[mask]}


# -- networks -------------------------------------------------------------------------------


class StepScorer(nn.Module):
    """A ``SegmentScorer`` (or an ``Ensemble`` of them) on flat transitions: each transition is a
    one-step segment, scored by the scorer's own ``per_step``. Returns ``[N]`` (``[k, N]`` for an
    ensemble), ``[N, 1]`` with ``keepdim`` (torchrl's value shape)."""

    def __init__(self, scorer: nn.Module, keepdim: bool = False):
        super().__init__()
        self.scorer, self.keepdim = scorer, keepdim

    def forward(self, obs: Tensor, cond: Tensor, action: Tensor | None = None) -> Tensor:
        act = obs[:, None, :0] if action is None else action[:, None]  # a V scorer reads only T
        steps = Batch({"obs": obs[:, None], "actions": act, "mask": obs.new_ones(len(obs), 1)})
        out = self.scorer(Batch({"cond": cond}), steps)
        return out if self.keepdim else out[..., 0]


class StepActor(nn.Module):
    """The policy's tanh-Gaussian parameters (μ, σ) per transition, for torchrl's ``TanhNormal``."""

    def __init__(self, policy: TanhGaussianPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.policy.dist_params(obs, cond)
        return mu, log_std.exp()


@dataclass
class Nets:
    """Our IQL networks: the actor, V, twin Q (an ``Ensemble``) and its Polyak target."""

    policy: TanhGaussianPolicy
    v: SegmentScorer
    q: Ensemble
    q_target: Ensemble

    def state(self) -> dict[str, Tensor]:
        return {f"{name}.{k}": t.detach().clone() for name in ("policy", "v", "q", "q_target")
                for k, t in getattr(self, name).state_dict().items()}


def make_nets(batch: dict[str, Tensor], seed: int = 0) -> Nets:
    """Fresh robot networks (as ``make_policy`` / ``make_scorer("v")`` / ``make_scorer("q",
    ensemble=2)`` build them), observation statistics from the batch."""
    torch.manual_seed(seed)
    mean, std = batch["obs"].mean(0), batch["obs"].std(0)
    policy = TanhGaussianPolicy(OBS_DIM, ACT_DIM, TASKS, HIDDEN, LAYERS)
    policy.set_normalizer(mean, std)
    v = SegmentScorer(OBS_DIM, ACT_DIM, TASKS, HIDDEN, LAYERS, "v", mean, std)
    q = Ensemble([SegmentScorer(OBS_DIM, ACT_DIM, TASKS, HIDDEN, LAYERS, "q", mean, std) for _ in range(2)])
    return Nets(policy, v, q, copy.deepcopy(q).requires_grad_(False))


# -- ours -----------------------------------------------------------------------------------


def our_optimizers(nets: Nets, cfg: IQLConfig) -> list[torch.optim.Optimizer]:
    """``ctx.optimizer``'s AdamW (no weight decay) for V, Q (critic rate) and the actor."""
    critic, actor = BASE_LR * cfg.critic_lr_scale, BASE_LR * cfg.lr_scale
    return [torch.optim.AdamW(nets.v.parameters(), lr=critic, weight_decay=0.0),
            torch.optim.AdamW(nets.q.parameters(), lr=critic, weight_decay=0.0),
            torch.optim.AdamW(nets.policy.parameters(), lr=actor, weight_decay=0.0)]


def our_losses(nets: Nets, batch: dict[str, Tensor], cfg: IQLConfig) -> tuple[Tensor, Tensor, Tensor]:
    """(L_V, L_Q, L_π) of the module docstring on flat transitions, all from the current weights
    (as in ``iql_train``, where V(s') is the pre-update V and Q̄ the pre-Polyak target)."""
    obs, act, cond = batch["obs"], batch["action"], batch["cond"]
    v, q, q_target = StepScorer(nets.v), StepScorer(nets.q), StepScorer(nets.q_target)
    with torch.no_grad():
        q_min = q_target(obs, cond, act).min(0).values
        next_v = v(batch["next_obs"], cond)
    value = v(obs, cond)
    loss_v = expectile_loss(q_min - value, cfg.expectile).mean()
    target = batch["reward"] + cfg.discount * (~batch["done"]).float() * next_v
    loss_q = ((q(obs, cond, act) - target[None]) ** 2).mean()  # the mean over both members: ½·Σ_i
    weights = awr_weights(q_min - value.detach(), cfg.temperature, cfg.max_weight)
    loss_pi = -(weights * nets.policy.action_log_prob(obs, cond, act)).mean()
    return loss_v, loss_q, loss_pi


def our_update(nets: Nets, opts: list[torch.optim.Optimizer], batch: dict[str, Tensor], cfg: IQLConfig) -> None:
    """One IQL update: the three losses, three clipped optimiser steps, the Polyak target."""
    losses = our_losses(nets, batch, cfg)
    for opt, loss, net in zip(opts, losses, (nets.v, nets.q, nets.policy)):
        optimizer_step(opt, loss, net.parameters(), cfg.max_grad_norm)
    with torch.no_grad():
        for pt, p in zip(nets.q_target.parameters(), nets.q.parameters()):
            pt.lerp_(p, cfg.target_update)


# -- torchrl --------------------------------------------------------------------------------


@dataclass
class TorchRL:
    """torchrl's side: the loss module, its target updater, the grouped optimiser (V, Q, actor
    groups), the batch as a TensorDict and the network copies inside."""

    loss: Any
    updater: Any
    opt: torch.optim.Optimizer
    groups: list[list[nn.Parameter]]
    data: Any
    inner: dict[str, nn.Module]


def torchrl_modules(nets: Nets) -> tuple[Any, list[Any], Any, dict[str, nn.Module]]:
    """Exact copies of our networks as torchrl modules: (actor, [Q_1, Q_2], V, the copies)."""
    from tensordict.nn import TensorDictModule
    from torchrl.modules import ProbabilisticActor, TanhNormal

    policy, v = copy.deepcopy(nets.policy), copy.deepcopy(nets.v)
    members = [copy.deepcopy(m) for m in nets.q.members]
    params = TensorDictModule(StepActor(policy), in_keys=["observation", "cond"], out_keys=["loc", "scale"])
    actor = ProbabilisticActor(params, in_keys=["loc", "scale"], distribution_class=TanhNormal,
                               distribution_kwargs={"low": -1.0, "high": 1.0, "tanh_loc": False})
    qs = [TensorDictModule(StepScorer(m, keepdim=True), in_keys=["observation", "cond", "action"],
                           out_keys=["state_action_value"]) for m in members]
    value = TensorDictModule(StepScorer(v, keepdim=True), in_keys=["observation", "cond"], out_keys=["state_value"])
    return actor, qs, value, {"policy": policy, "v": v, "q": members[0]}


def torchrl_data(batch: dict[str, Tensor]) -> Any:
    """The transitions as torchrl's TensorDict (rewards and flags ``[N, 1]``)."""
    from tensordict import TensorDict

    done = batch["done"][:, None]
    nxt = {"observation": batch["next_obs"], "cond": batch["cond"], "reward": batch["reward"][:, None],
           "done": done, "terminated": done}
    return TensorDict({"observation": batch["obs"], "cond": batch["cond"], "action": batch["action"], "next": nxt},
                      batch_size=[len(batch["obs"])])


def make_torchrl(nets: Nets, batch: dict[str, Tensor], cfg: IQLConfig) -> TorchRL:
    """``IQLLoss`` + ``SoftUpdate`` on copies of ``nets``, with our optimisers' settings."""
    from torchrl.objectives import IQLLoss, SoftUpdate, ValueEstimators, group_optimizers

    actor, qs, value, inner = torchrl_modules(nets)
    loss = IQLLoss(actor, qs, value, num_qvalue_nets=2, loss_function="l2", temperature=cfg.temperature,
                   expectile=cfg.expectile)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=cfg.discount)
    updater = SoftUpdate(loss, tau=cfg.target_update)
    groups = [[p for p in params.values(True, True) if p.requires_grad] for params in
              (loss.value_network_params, loss.qvalue_network_params, loss.actor_network_params)]
    critic, actor_lr = BASE_LR * cfg.critic_lr_scale, BASE_LR * cfg.lr_scale
    opt = group_optimizers(*[torch.optim.AdamW(g, lr=lr, weight_decay=0.0)
                             for g, lr in zip(groups, (critic, critic, actor_lr))])
    return TorchRL(loss, updater, opt, groups, torchrl_data(batch), inner)


def torchrl_update(side: TorchRL, cfg: IQLConfig, q_scale: float = 1.0) -> None:
    """One update as torchrl's IQL script does it (one backward of the summed losses, the grouped
    optimisers, ``SoftUpdate``), plus our per-network gradient clip. ``q_scale`` ½ puts its
    Σ_i-over-critics Q loss on our (CORL's) ½·Σ_i scale (agreement only)."""
    side.opt.zero_grad(set_to_none=True)
    out = side.loss(side.data)
    (out["loss_actor"] + out["loss_value"] + q_scale * out["loss_qvalue"]).backward()
    for g in side.groups:
        torch.nn.utils.clip_grad_norm_(g, cfg.max_grad_norm if cfg.max_grad_norm else float("inf"))
    side.opt.step()
    side.updater.step()


def torchrl_state(side: TorchRL) -> dict[str, Tensor]:
    """torchrl's current weights under our names (``Nets.state``'s keys)."""
    loss, out = side.loss, {}
    for name, params, module in (("policy", loss.actor_network_params, loss.actor_network),
                                 ("v", loss.value_network_params, loss.value_network)):
        with params.to_module(module):
            out.update({f"{name}.{k}": t.detach().clone() for k, t in side.inner[name].state_dict().items()})
    for name, params in (("q", loss.qvalue_network_params), ("q_target", loss.target_qvalue_network_params)):
        for i in range(params.shape[0]):
            with params[i].to_module(loss.qvalue_network):
                out.update({f"{name}.members.{i}.{k}": t.detach().clone()
                            for k, t in side.inner["q"].state_dict().items()})
    return out


# -- agreement and timing -------------------------------------------------------------------


def loss_agreement(batch: dict[str, Tensor], cfg: IQLConfig, seed: int = 0) -> dict[str, float]:
    """Both sides' losses on identical weights and batch. torchrl's Q loss sums over the critics
    (Σ_i), ours averages (½·Σ_i, CORL): its difference is taken against 2 × ours."""
    nets = make_nets(batch, seed)
    side = make_torchrl(nets, batch, cfg)
    v, q, pi = (float(x.detach()) for x in our_losses(nets, batch, cfg))
    out = side.loss(side.data)
    tv, tq, tpi = (float(out[k].detach()) for k in ("loss_value", "loss_qvalue", "loss_actor"))
    return {"loss_v_ours": v, "loss_v_torchrl": tv, "loss_v_abs_diff": abs(v - tv),
            "loss_q_ours": q, "loss_q_torchrl": tq, "loss_q_abs_diff_vs_2x_ours": abs(2 * q - tq),
            "loss_actor_ours": pi, "loss_actor_torchrl": tpi, "loss_actor_abs_diff": abs(pi - tpi)}


def trajectory_agreement(batch: dict[str, Tensor], cfg: IQLConfig, updates: int, seed: int = 0) -> dict[str, Any]:
    """Max |Δ weight| per network after ``updates`` updates of each side from identical weights,
    with torchrl's Q loss halved onto our scale (otherwise its Q gradients are 2 × ours)."""
    nets = make_nets(batch, seed)
    side = make_torchrl(nets, batch, cfg)
    opts = our_optimizers(nets, cfg)
    for _ in range(updates):
        our_update(nets, opts, batch, cfg)
        torchrl_update(side, cfg, q_scale=0.5)
    ours, theirs = nets.state(), torchrl_state(side)
    diff = {name: max(float((ours[k] - theirs[k]).abs().max()) for k in ours if k.startswith(name + "."))
            for name in ("policy", "v", "q", "q_target")}
    moved = max(float((ours[k] - v).abs().max()) for k, v in make_nets(batch, seed).state().items())
    return {"updates": updates, "max_abs_param_diff": diff, "max_abs_param_change_ours": moved}


def updates_per_second(step: Any, updates: int) -> float:
    t0 = time.perf_counter()
    for _ in range(updates):
        step()
    return updates / (time.perf_counter() - t0)


def bench(threads: int, batch: dict[str, Tensor], cfg: IQLConfig, updates: int, reps: int, warmup: int
          ) -> dict[str, Any]:
    """Updates per second of each side at ``threads`` torch threads, ``reps`` back-to-back
    repetitions of ``updates`` updates (alternating which side goes first)."""
    torch.set_num_threads(threads)
    nets = make_nets(batch)
    opts, side = our_optimizers(nets, cfg), make_torchrl(nets, batch, cfg)
    sides = {"ours": lambda: our_update(nets, opts, batch, cfg), "torchrl": lambda: torchrl_update(side, cfg)}
    for step in sides.values():
        updates_per_second(step, warmup)
    times: dict[str, list[float]] = {"ours": [], "torchrl": []}
    for rep in range(reps):
        for name in ("ours", "torchrl") if rep % 2 == 0 else ("torchrl", "ours"):
            times[name].append(updates_per_second(sides[name], updates))
    ratios = [o / t for o, t in zip(times["ours"], times["torchrl"])]
    return {"threads": threads, "updates_per_s": times, "ratio_per_rep": ratios,
            "ours_median": statistics.median(times["ours"]), "torchrl_median": statistics.median(times["torchrl"]),
            "ratio_median": statistics.median(ratios)}


# -- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import tensordict
    import torchrl

    return {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "torchrl": torchrl.__version__,
            "tensordict": tensordict.__version__, "nice": os.nice(0), "loadavg_before": os.getloadavg()}


DIFFERENCES = [
    "Q loss: torchrl sums the critics' losses (Σ_i), ours averages them (½·Σ_i, as CORL), so its Q loss "
    "and Q gradients are 2 × ours (Adam is nearly blind to the scale, the clip is not); its default "
    "`loss_function` is smooth L1, set to L2 here.",
    "Actor log π(a|s): torchrl's TanhNormal inverts tanh with a clamp at float eps from ±1 and uses the "
    "log-det 2(log 2 − u − softplus(−2u)); ours is the exact density at the action clipped to ±(1 − 1e-3). "
    "They agree on actions inside the clip (as here) but not on saturated dataset actions, where ours "
    "clips and torchrl's log-prob grows to the eps clamp.",
    "Advantage weights: torchrl clips exp(β·A) at a hard-coded 100 (ours: `max_weight`, 100 by default).",
    "Work per update: torchrl runs the target twin Q twice (actor and value losses) and V(s) twice "
    "(once without gradient), its twin Q through vmap, and one backward of the summed losses; ours runs "
    "each once (the Ensemble loops over its 2 members) and three backward passes (one per network).",
    "Both sides here bootstrap every transition from V(s') of its own next observation; our segment "
    "`iql_train` instead reuses V of the segment's next step and leaves a segment's last step (no "
    "successor in the step view) out of L_Q.",
    "torchrl's IQL script clips no gradients; our per-network clip (1.0) is applied on both sides here.",
]


def write(result: dict[str, Any], tag: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    m, a, t = result["machine"], result["loss_agreement"], result["trajectory_agreement"]
    lines = [
        "# Our IQL update vs torchrl's IQLLoss (robot networks, same batch)", "",
        f"{result['transitions']} transitions ({result['segments']} segments × {result['steps']} steps, synthetic, "
        f"seed {result['seed']}); actor, twin Q and V MLPs {HIDDEN} × {LAYERS} on {OBS_DIM}-d observations + "
        f"{TASKS}-task one-hot, {ACT_DIM}-d actions; τ {result['cfg']['expectile']}, β {result['cfg']['temperature']}, "
        f"γ {result['cfg']['discount']}, κ {result['cfg']['target_update']}, AdamW (no decay) at lr "
        f"{result['lr']['critics']:g} (V, Q) and {result['lr']['actor']:g} (actor), "
        f"clip {result['cfg']['max_grad_norm']}. Updates per second over {result['updates']} updates, median of "
        f"{result['reps']} back-to-back repetitions (alternating which side runs first).", "",
        f"Machine: {m['platform']}, {m['cores']} cores, torch {m['torch']}, torchrl {m['torchrl']}, tensordict "
        f"{m['tensordict']}, nice {m['nice']}; load average {m['loadavg_before']} before, {m['loadavg_after']} after. "
        "**The machine was shared with a background job**: absolute rates are noisy; the ratio is the number "
        "to read.", "",
        "| threads | ours updates/s | torchrl updates/s | ours / torchrl (median of per-rep ratios) | per-rep ratios |",
        "|---|---|---|---|---|",
    ]
    for b in result["bench"]:
        reps = ", ".join(f"{r:.2f}" for r in b["ratio_per_rep"])
        lines.append(f"| {b['threads']} | {b['ours_median']:.2f} | {b['torchrl_median']:.2f} | "
                     f"**{b['ratio_median']:.2f}×** | {reps} |")
    diff = ", ".join(f"{k} {v:.1e}" for k, v in t["max_abs_param_diff"].items())
    lines += [
        "", "Agreement on identical weights and batch:",
        f"- L_V: ours {a['loss_v_ours']:.6g}, torchrl {a['loss_v_torchrl']:.6g}, |Δ| {a['loss_v_abs_diff']:.1e}",
        f"- L_Q: ours {a['loss_q_ours']:.6g} (½·Σ_i), torchrl {a['loss_q_torchrl']:.6g} (Σ_i); "
        f"|torchrl − 2·ours| {a['loss_q_abs_diff_vs_2x_ours']:.1e}",
        f"- L_π: ours {a['loss_actor_ours']:.6g}, torchrl {a['loss_actor_torchrl']:.6g}, "
        f"|Δ| {a['loss_actor_abs_diff']:.1e}",
        f"- after {t['updates']} updates of each (torchrl's Q loss halved onto our scale), max |Δ weight|: {diff} "
        f"(the weights moved by up to {t['max_abs_param_change_ours']:.1e})",
        "", "What differs:", *[f"- {d}" for d in DIFFERENCES],
    ]
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--agree-updates", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="iql_vs_torchrl")
    args = ap.parse_args()
    cfg = IQLConfig()
    info = machine()
    batch = flat_transitions(args.segments, args.steps, args.seed)
    agree = loss_agreement(batch, cfg, args.seed)
    traj = trajectory_agreement(batch, cfg, args.agree_updates, args.seed)
    benches = [bench(n, batch, cfg, args.updates, args.reps, args.warmup) for n in args.threads]
    info["loadavg_after"] = os.getloadavg()
    result = {"segments": args.segments, "steps": args.steps, "transitions": len(batch["obs"]), "seed": args.seed,
              "updates": args.updates, "reps": args.reps, "warmup": args.warmup,
              "cfg": {k: getattr(cfg, k) for k in ("expectile", "temperature", "discount", "target_update",
                                                    "max_weight", "max_grad_norm")},
              "lr": {"critics": BASE_LR * cfg.critic_lr_scale, "actor": BASE_LR * cfg.lr_scale},
              "machine": info, "loss_agreement": agree, "trajectory_agreement": traj, "bench": benches,
              "differences": DIFFERENCES}
    write(result, args.tag)
    print((RESULTS / f"{args.tag}.md").read_text())


if __name__ == "__main__":
    main()

"""How much of this machine's fp32 matmul peak our training step achieves, per domain (issue #19).

    python benchmarks/flop_utilisation.py [--domains text,image,...] [--presets quick,standard] [--threads 1]

For each (domain, preset), one ``dpo`` training step exactly as ``baselines/dpo.py`` takes it
(the policy's and the frozen reference's log-probs of a batch of the default condition's pairs,
the sigmoid loss, backward, clip, AdamW) is

- **counted**: matmul and convolution FLOPs of forward and backward, by
  ``torch.utils.flop_counter.FlopCounterMode`` (the convention of MFU figures: elementwise work and
  the optimiser's update are not counted);
- **timed**: the median wall time of ``--steps`` steps after ``--warmup``.

In the same process, back to back, the peak is measured two ways: a 1024 × 1024 × 1024 fp32
matmul, and the step's own heaviest matmul or convolution shape (recorded by forward hooks on the
policy's ``Linear``, GPT-2 ``Conv1D`` and ``Conv1d``/``Conv2d`` layers), each the median of
repetitions. Utilisation = achieved FLOP/s ÷ peak.

Standard presets, whose preparation takes from minutes (multiagent) to ten (text) on this machine,
are prepared with **token budgets** (``TOKEN_PREP``: one reference-training step, a handful of pool
and evaluation contexts): the models have the standard shapes and the batch is the standard
budget's, which is all a step's FLOPs and speed depend on; their weights are untrained, which they
do not depend on.

Writes ``benchmarks/results/<tag>.{json,md}`` (default ``flop_utilisation``) with the machine, torch version, threads
and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
#: preparation overrides for standard models that keep their shapes and skip the training (so the diffusion
#: references' learning check is switched off: ref_max_error_ratio=100)
TOKEN_PREP: dict[str, tuple[str, ...]] = {
    "text": ("sft_steps=1", "train_contexts=64", "pool_contexts=512", "eval_contexts=8", "indist_contexts=8",
             "best_of=2"),
    "image": ("ref_steps=1", "ref_max_error_ratio=100", "ref_data=64", "classifier_steps=1", "train_contexts=8",
              "pool_contexts=8", "eval_contexts=8", "indist_contexts=8", "best_of=2"),
    "motion": ("ref_steps=1", "ref_max_error_ratio=100", "ref_data=64", "evaluator_data=64", "evaluator_steps=1",
               "train_contexts=8", "pool_contexts=8", "eval_contexts=8", "indist_contexts=8", "best_of=2"),
    "robot": ("bc_steps=1", "pool_contexts=8", "train_contexts=8", "eval_contexts=4"),
    "multiagent": ("bc_steps=1", "anchor_episodes=2", "pool_contexts=8", "train_contexts=8", "eval_contexts=4"),
}


def prepare(domain: str, preset: str) -> tuple[Any, Any, str]:
    """(prepared domain, the preset's budget, how it was prepared)."""
    from benchmark.cache import PreparationCache
    from benchmark.progress import Progress
    from benchmark.runner import CellRequest, prepare_domain, resolve

    sets = TOKEN_PREP.get(domain, ()) if preset in ("standard", "full") else ()
    cell = resolve(CellRequest("dpo", domain, preset=preset, domain_sets=sets))
    dom, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(), torch.device("cpu"), Progress())
    return dom, cell.budget, "token preparation: " + ", ".join(sets) if sets else "full preparation"


def dpo_step(domain: Any, batch: int) -> Any:
    """One ``dpo`` step on the first ``batch`` default-condition pairs (a closure)."""
    from baselines.dpo import DPOConfig, preference_loss
    from benchmark.data import build_offline_data
    from benchmark.feedback import RaterPopulation
    from benchmark.objectives import logratio_margin
    from benchmark.registry import get_condition
    from benchmark.training import optimizer_step, pair_logps

    cond = get_condition("default")
    population = RaterPopulation.build(domain.oracle.weights, cond.raters)
    pairs = build_offline_data(domain.pool, domain.oracle.weights, population, cond, domain.name)[0].pairs
    idx = torch.arange(batch) % len(pairs)  # token preparations have fewer pairs than a batch
    b = pairs.select(idx)
    policy, reference, cfg = domain.make_policy(), domain.reference, DPOConfig()
    opt = torch.optim.AdamW(policy.parameters(), lr=domain.spec.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected, g)
        loss = preference_loss(logratio_margin(pi_w, pi_l, ref_w, ref_l), cfg).mean()
        optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)

    step.policy = policy  # type: ignore[attr-defined]
    return step


def heaviest_shape(policy: Any, step: Any) -> tuple[str, tuple[int, ...], Any] | None:
    """The policy layer whose forward does the most FLOPs in one step: (kind, shape, layer)."""
    from transformers.pytorch_utils import Conv1D

    seen: dict[int, tuple[float, str, tuple[int, ...], Any]] = {}

    def hook(layer: Any, inputs: tuple, _out: Any) -> None:
        x = inputs[0]
        if isinstance(layer, torch.nn.Linear | Conv1D):
            w = layer.weight
            k, n = (w.shape[1], w.shape[0]) if isinstance(layer, torch.nn.Linear) else tuple(w.shape)
            rows = x.numel() // k
            flops, kind, shape = 2.0 * rows * k * n, "matmul", (rows, k, n)
        else:
            out = _out.numel()
            flops = 2.0 * out * layer.weight[0].numel()
            kind, shape = "conv", tuple(x.shape)
        if flops > seen.get(id(layer), (0.0,))[0]:
            seen[id(layer)] = (flops, kind, shape, layer)

    kinds = (torch.nn.Linear, Conv1D, torch.nn.Conv1d, torch.nn.Conv2d)
    handles = [m.register_forward_hook(hook) for m in policy.modules() if isinstance(m, kinds)]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    if not seen:
        return None
    _, kind, shape, layer = max(seen.values(), key=lambda v: v[0])
    return kind, shape, layer


def median_seconds(fn: Any, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak(m: int, k: int, n: int, reps: int) -> float:
    """FLOP/s of an fp32 (m × k) @ (k × n) matmul."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    return 2.0 * m * k * n / median_seconds(lambda: a @ b, reps)


def layer_peak(kind: str, shape: tuple[int, ...], layer: Any, reps: int) -> float:
    """FLOP/s of the layer's own shape run alone, forward only (matmul, or its convolution)."""
    if kind == "matmul":
        return matmul_peak(*shape, reps=reps)
    x = torch.randn(*shape)
    with torch.no_grad():
        out = layer(x)
        flops = 2.0 * out.numel() * layer.weight[0].numel()
        return flops / median_seconds(lambda: layer(x), reps)


def measure(domain: str, preset: str, steps: int, reps: int) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    dom, budget, how = prepare(domain, preset)
    step = dpo_step(dom, budget.batch_size)
    step()  # warm the allocator and any lazy initialisation
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = median_seconds(step, steps, warmup=1)
    heavy = heaviest_shape(step.policy, step)
    peak_1024 = matmul_peak(1024, 1024, 1024, reps)
    peak_model = layer_peak(*heavy, reps=reps) if heavy else None
    achieved = flops / seconds
    return {"domain": domain, "preset": preset, "batch_size": budget.batch_size, "preparation": how,
            "gflop_per_step": flops / 1e9, "ms_per_step": 1e3 * seconds, "achieved_gflops": achieved / 1e9,
            "peak_1024_gflops": peak_1024 / 1e9, "utilisation_1024": achieved / peak_1024,
            "heaviest_op": None if heavy is None else {"kind": heavy[0], "shape": list(heavy[1])},
            "peak_model_shape_gflops": None if peak_model is None else peak_model / 1e9,
            "utilisation_model_shape": None if peak_model is None else achieved / peak_model}


def markdown(res: dict[str, Any]) -> str:
    mach = res["machine"]
    lines = ["# FLOP utilisation of the `dpo` training step", "",
             f"{mach['platform']}, {mach['cpus']} CPUs, torch {mach['torch']}, {mach['threads']} thread(s), load "
             f"average {', '.join(f'{x:.2f}' for x in mach['load_average_at_start'])} at start. Matmul and "
             "convolution FLOPs of forward + backward (FlopCounterMode) ÷ the median step time; peaks measured in "
             "the same process.", "",
             "| domain | preset | batch | GFLOP/step | ms/step | achieved GFLOP/s | peak 1024³ GFLOP/s | util. vs "
             "1024³ | heaviest op (shape) | its own peak GFLOP/s | util. vs own shape |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        op = r["heaviest_op"]
        lines.append(f"| {r['domain']} | {r['preset']} | {r['batch_size']} | {r['gflop_per_step']:.3g} | "
                     f"{r['ms_per_step']:.1f} | {r['achieved_gflops']:.3g} | {r['peak_1024_gflops']:.3g} | "
                     f"{100 * r['utilisation_1024']:.1f}% | {op['kind']} {tuple(op['shape'])} | "
                     f"{r['peak_model_shape_gflops']:.3g} | {100 * r['utilisation_model_shape']:.1f}% |" if op else
                     f"| {r['domain']} | {r['preset']} | {r['batch_size']} | {r['gflop_per_step']:.3g} | "
                     f"{r['ms_per_step']:.1f} | {r['achieved_gflops']:.3g} | {r['peak_1024_gflops']:.3g} | "
                     f"{100 * r['utilisation_1024']:.1f}% | | | |")
    lines += ["", "Preparation: " + "; ".join(f"{r['domain']} {r['preset']}: {r['preparation']}" for r in res["rows"])
              + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domains", default="text,image,motion,robot,multiagent")
    ap.add_argument("--presets", default="quick,standard")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    ap.add_argument("--reps", type=int, default=10, help="repetitions of each peak measurement (median)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--tag", default="flop_utilisation", help="results file name")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    mach = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load_average_at_start": list(os.getloadavg())}
    rows = []
    for preset in args.presets.split(","):
        for domain in args.domains.split(","):
            rows.append(measure(domain, preset, args.steps, args.reps))
            print(f"{domain} {preset}: {100 * rows[-1]['utilisation_1024']:.1f}% of the 1024³ peak", file=sys.stderr)
    res = {"machine": mach, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res)
    (args.out / f"{args.tag}.md").write_text(text)
    sys.stdout.write(text)
    return res


if __name__ == "__main__":
    main()

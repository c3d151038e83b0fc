"""Robot domain on the quick preset: preparation time, env steps/s, DPO vs the BC reference.

Measures, in one process (so the prepared domain and its simulators are shared by the cells):

1. preparation from an empty cache (datasets + BC reference + offline pool + the reference's
   evaluation), with its parts' wall times and environment steps per second;
2. env steps/s of policy rollouts (the reference on the evaluation contexts, batched stepping);
3. DPO, SFT, IPO, KTO over seeds 0..N-1 on the default condition (and KTO on noisy-labels):
   normalized score (D4RL: 0 = random, 100 = expert) per task, mean ± std over seeds, next to
   the reference's.

Writes ``benchmarks/results/robot_quick.json`` and ``.md``. Usage:
``python benchmarks/robot_quick.py [--seeds 3] [--algos dpo,sft,ipo,kto] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--algos", default="dpo,sft,ipo,kto")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--cache", type=Path, default=None, help="reuse a preparation cache (default: a fresh one)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prefbench-robot-quick-"))
    os.environ["PREFBENCH_HOME"] = str(work / "home")
    cache_dir = args.cache or work / "cache"
    os.environ["PREFBENCH_CACHE"] = str(cache_dir)

    from benchmark.cache import PreparationCache
    from benchmark.progress import Progress
    from benchmark.runner import CellRequest, prepare_domain, resolve, run_cell
    from benchmark.store import Store

    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "torch_threads": torch.get_num_threads(),
                             "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                             "load_at_start": os.getloadavg()[0]}}
    cache = PreparationCache(cache_dir)
    cell = resolve(CellRequest("dpo", "robot"))
    t0 = time.perf_counter()
    domain, stats, built = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    res["preparation_s"] = time.perf_counter() - t0
    res["prepared_now"] = built
    tm = domain.timings
    res["preparation_parts"] = tm
    res["dataset_steps_per_s"] = tm["dataset_steps"] / tm["datasets_s"]
    res["pool_steps_per_s"] = tm["pool_steps"] / tm["pool_s"]
    print(f"preparation {res['preparation_s']:.1f}s (built now: {built}); parts {tm}", flush=True)

    # policy rollouts: the reference on the evaluation contexts (fresh resets, full episodes)
    before = domain.sim.env_steps
    t1 = time.perf_counter()
    with torch.no_grad():
        domain.reference.sample(domain.eval_contexts, 1, generator=torch.Generator().manual_seed(0))
    res["policy_rollout_steps_per_s"] = (domain.sim.env_steps - before) / (time.perf_counter() - t1)
    print(f"env steps/s: datasets {res['dataset_steps_per_s']:.0f}, pool {res['pool_steps_per_s']:.0f}, "
          f"policy rollouts {res['policy_rollout_steps_per_s']:.0f}", flush=True)

    store = Store(work / "home" / "prefbench.sqlite")
    algos = args.algos.split(",")
    cells = [(a, "default", s) for a in algos for s in range(args.seeds)]
    if "kto" in algos:
        cells += [("kto", "noisy-labels", s) for s in range(args.seeds)]
    res["cells"] = []
    for algo, cond, seed in cells:
        t = time.perf_counter()
        rec = run_cell(resolve(CellRequest(algo, "robot", cond, seed)), store=store, cache=cache)
        res["cells"].append({"algo": algo, "condition": cond, "seed": seed, "status": rec.status,
                             "wall_s": time.perf_counter() - t, "metrics": rec.metrics})
        m = rec.metrics
        print(f"{algo} {cond} seed {seed}: {rec.status} normalized {m.get('normalized_score', float('nan')):.1f} "
              f"(ref {m.get('reference_normalized_score', float('nan')):.1f}) success {m.get('success_rate', 0):.2f} "
              f"kl {m.get('kl_to_ref', float('nan')):.2f} [{time.perf_counter() - t:.0f}s]", flush=True)

    tasks = list(domain.cfg.tasks)
    ref = stats["ref_metrics"]
    lo, hi = domain.score_anchors(0, 0)
    res["reference"] = {"normalized_score": 100 * (stats["ref_gold_mean"] - lo) / (hi - lo),
                        **{t: ref[f"normalized_score/{t}"] for t in tasks},
                        "success_rate": ref["success_rate"]}
    table: dict = {}
    for algo, cond in dict.fromkeys((a, c) for a, c, _ in cells):
        rows = [c["metrics"] for c in res["cells"] if c["algo"] == algo and c["condition"] == cond
                and c["status"] == "done"]
        if not rows:
            continue
        entry = {}
        for key in ["normalized_score", "success_rate", "kl_to_ref", *[f"normalized_score/{t}" for t in tasks]]:
            v = [r[key] for r in rows]
            entry[key] = {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
        table[f"{algo} [{cond}]"] = entry
    res["summary"] = table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robot_quick.json").write_text(json.dumps(res, indent=2, sort_keys=True, default=float) + "\n")

    def ms(e: dict) -> str:
        return f"{e['mean']:.1f} ± {e['std']:.1f}"

    lines = [
        "# Robot domain, quick preset",
        "",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpus']} CPUs (1-min load average "
        f"{res['machine']['load_at_start']:.2f} at start; above ~0.5 other work shared them); "
        f"torch threads {res['machine']['torch_threads']}, "
        f"OMP_NUM_THREADS={res['machine']['OMP_NUM_THREADS']}.",
        f"Preparation (datasets + BC reference + pool + reference evaluation): {res['preparation_s']:.1f} s "
        f"(datasets {tm['datasets_s']:.1f} s, BC {tm['bc_s']:.1f} s, pool {tm['pool_s']:.1f} s).",
        f"Env steps/s: scripted/random behaviour datasets {res['dataset_steps_per_s']:.0f}; pool rollouts "
        f"{res['pool_steps_per_s']:.0f}; reference policy rollouts {res['policy_rollout_steps_per_s']:.0f}.",
        "",
        "Normalized score (D4RL: 0 = random, 100 = scripted expert), full episodes from fresh resets of "
        "held-out task variations; mean ± std over seeds.",
        "",
        "| policy | mean | " + " | ".join(tasks) + " | success | KL to ref |",
        "|---|---|" + "---|" * len(tasks) + "---|---|",
        f"| BC reference | {res['reference']['normalized_score']:.1f} | "
        + " | ".join(f"{res['reference'][t]:.1f}" for t in tasks) + f" | {res['reference']['success_rate']:.2f} | 0 |",
    ]
    for name, e in table.items():
        lines.append(f"| {name} | {ms(e['normalized_score'])} | "
                     + " | ".join(ms(e[f'normalized_score/{t}']) for t in tasks)
                     + f" | {e['success_rate']['mean']:.2f} | {e['kl_to_ref']['mean']:.1f} |")
    (args.out / "robot_quick.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

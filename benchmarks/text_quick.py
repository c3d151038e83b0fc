"""Text domain on the quick preset: wall times and DPO quality (issue 2's acceptance figures).

Measures, as a user would run them (``bench`` subprocesses, a fresh cache and store):

1. the first ``bench run --algo dpo --domain text`` (domain preparation included) and a second
   cell with the domain cached (wall time of the whole command);
2. DPO over seeds 0, 1, 2: gold reward vs the reference (mean ± std);
3. DPO's KL to the reference for β ∈ {0.03, 0.1, 0.3} (seed 0);
4. SFT, IPO and KTO over the same seeds, for context.

Writes ``benchmarks/results/text_quick.json`` and ``.md``. Usage:
``python benchmarks/text_quick.py [--seeds 3] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bench(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.cli", *args, "-q"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prefbench-text-quick-"))
    env = {**os.environ, "PREFBENCH_HOME": str(work / "home"), "PREFBENCH_CACHE": str(work / "cache")}
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}

    res["first_run_s"] = bench(["run", "--algo", "dpo", "--domain", "text"], env)
    res["cached_run_s"] = bench(["run", "--algo", "dpo", "--domain", "text", "--seed", "1"], env)
    print(f"first run {res['first_run_s']:.1f}s, cached run {res['cached_run_s']:.1f}s", flush=True)

    seeds = list(range(args.seeds))
    for algo in ["dpo", "sft", "ipo", "kto"]:
        for s in seeds:
            bench(["run", "--algo", algo, "--domain", "text", "--seed", str(s)], env)
    for beta in ["0.03", "0.3"]:
        bench(["run", "--algo", "dpo", "--domain", "text", "--set", f"beta={beta}"], env)

    from benchmark.store import Store

    recs = Store(work / "home" / "prefbench.sqlite", readonly=True).records(status="done")
    ref = recs[0].metrics["reference_gold_reward"]
    res["reference_gold_reward"] = ref
    res["target_gold_reward"] = recs[0].metrics["target_gold_reward"]
    res["algorithms"] = {}
    for algo in ["dpo", "sft", "ipo", "kto"]:
        rows = [r for r in recs if r.algo == algo and r.config["algo_config"].get("beta", 0.1) == 0.1]
        g = [r.metrics["gold_reward"] for r in rows]
        res["algorithms"][algo] = {
            "seeds": [r.seed for r in rows], "gold_reward": g,
            "gold_mean": statistics.mean(g), "gold_std": statistics.stdev(g) if len(g) > 1 else 0.0,
            "win_rate_mean": statistics.mean(r.metrics["win_rate"] for r in rows),
            "kl_mean": statistics.mean(r.metrics["kl_to_ref"] for r in rows),
            "normalized_mean": statistics.mean(r.metrics["normalized_score"] for r in rows),
            "accuracy_mean": statistics.mean(r.metrics["accuracy"] for r in rows),
        }
    res["dpo_beta_sweep"] = {
        str(r.config["algo_config"]["beta"]): {"kl_to_ref": r.metrics["kl_to_ref"],
                                               "gold_reward": r.metrics["gold_reward"]}
        for r in recs if r.algo == "dpo" and r.seed == 0
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "text_quick.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    lines = [
        "# Text domain, quick preset",
        "",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpus']} CPUs.",
        f"First `bench run --algo dpo --domain text` (with preparation): {res['first_run_s']:.1f} s; "
        f"a second cell, domain cached: {res['cached_run_s']:.1f} s.",
        "",
        f"Reference gold reward {ref:.3f}; best-of-16 target {res['target_gold_reward']:.3f}.",
        "",
        "| algorithm | gold reward (mean ± std over seeds) | win rate | KL | normalized | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for algo, a in res["algorithms"].items():
        lines.append(f"| {algo} | {a['gold_mean']:.3f} ± {a['gold_std']:.3f} (n={len(a['seeds'])}) | "
                     f"{a['win_rate_mean']:.3f} | {a['kl_mean']:.3f} | {a['normalized_mean']:.1f} | "
                     f"{a['accuracy_mean']:.3f} |")
    lines += ["", "DPO β sweep (seed 0):", "", "| β | KL to reference | gold reward |", "|---|---|---|"]
    for beta, v in sorted(res["dpo_beta_sweep"].items(), key=lambda kv: float(kv[0])):
        lines.append(f"| {beta} | {v['kl_to_ref']:.3f} | {v['gold_reward']:.3f} |")
    (args.out / "text_quick.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

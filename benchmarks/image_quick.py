"""Image domain on the quick preset: wall times and DPO quality (the image issue's acceptance figures).

Measures, as a user would run them (``bench`` subprocesses, a fresh cache and store):

1. the first ``bench run --algo dpo --domain image`` (domain preparation included) and a second
   cell with the domain cached (wall time of the whole command);
2. DPO over seeds 0, 1, 2: gold reward and alignment accuracy vs the reference (mean ± std);
3. SFT, IPO and KTO (seed 0 unless ``--all-seeds``), for context.

Writes ``benchmarks/results/image_quick.json`` and ``.md``. Usage:
``python benchmarks/image_quick.py [--seeds 3] [--all-seeds] [--out benchmarks/results]``.
Torch threads follow the environment (``OMP_NUM_THREADS``); the figure is recorded.
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


def summary(rows: list, key: str) -> tuple[float, float]:
    v = [r.metrics[key] for r in rows]
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--all-seeds", action="store_true", help="run SFT/IPO/KTO on every seed too")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prefbench-image-quick-"))
    env = {**os.environ, "PREFBENCH_HOME": str(work / "home"), "PREFBENCH_CACHE": str(work / "cache")}
    import torch

    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                             "torch_threads_default": torch.get_num_threads(),
                             "load_at_start": os.getloadavg()[0]}}
    res["first_run_s"] = bench(["run", "--algo", "dpo", "--domain", "image"], env)
    res["cached_run_s"] = bench(["run", "--algo", "dpo", "--domain", "image", "--seed", "1"], env)
    print(f"first run {res['first_run_s']:.1f}s, cached run {res['cached_run_s']:.1f}s", flush=True)

    seeds = list(range(args.seeds))
    for algo in ["dpo", "sft", "ipo", "kto"]:
        for s in seeds if (algo == "dpo" or args.all_seeds) else seeds[:1]:
            bench(["run", "--algo", algo, "--domain", "image", "--seed", str(s)], env)
            print(f"{algo} seed {s} done", flush=True)

    from benchmark.store import Store

    recs = Store(work / "home" / "prefbench.sqlite", readonly=True).records(status="done")
    m0 = recs[0].metrics
    res["reference"] = {k: m0[f"reference/{k}"] if k.startswith(("alignment", "fid", "diversity", "oracle"))
                        else m0[f"reference_{k}"] for k in ("gold_reward", "alignment", "alignment_all",
                                                             "fid_classifier", "diversity")}
    res["target_gold_reward"] = m0["target_gold_reward"]
    res["algorithms"] = {}
    for algo in ["dpo", "sft", "ipo", "kto"]:
        rows = sorted((r for r in recs if r.algo == algo), key=lambda r: r.seed)
        entry: dict = {"seeds": [r.seed for r in rows]}
        for key in ("gold_reward", "alignment", "alignment_all", "win_rate", "kl_to_ref", "normalized_score",
                    "fid_classifier", "diversity"):
            entry[key] = [r.metrics[key] for r in rows]
            entry[f"{key}_mean"], entry[f"{key}_std"] = summary(rows, key)
        entry["train_s"] = [r.timings.get("train_s") for r in rows]
        res["algorithms"][algo] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image_quick.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    ref = res["reference"]
    threads = res["machine"]["omp_num_threads"] or f"default ({res['machine']['torch_threads_default']})"
    lines = [
        "# Image domain, quick preset",
        "",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpus']} CPUs, torch threads {threads} "
        f"(1-min load average {res['machine']['load_at_start']:.2f} at start; above ~0.5 other work shared the CPUs).",
        f"First `bench run --algo dpo --domain image` (with preparation): {res['first_run_s']:.1f} s; "
        f"a second cell, domain cached: {res['cached_run_s']:.1f} s.",
        "",
        f"Reference: gold {ref['gold_reward']:.3f} (of 4.5), alignment {ref['alignment']:.3f} "
        f"(all four attributes {ref['alignment_all']:.3f}), FID(classifier) {ref['fid_classifier']:.0f}; "
        f"best-of-16 target {res['target_gold_reward']:.3f}.",
        "",
        "| algorithm | seeds | gold reward | alignment | all-4 alignment | win rate | surrogate KL | normalized | "
        "FID (clf) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for algo, a in res["algorithms"].items():
        lines.append(
            f"| {algo} | {len(a['seeds'])} | {a['gold_reward_mean']:.3f} ± {a['gold_reward_std']:.3f} | "
            f"{a['alignment_mean']:.3f} ± {a['alignment_std']:.3f} | {a['alignment_all_mean']:.3f} | "
            f"{a['win_rate_mean']:.3f} | {a['kl_to_ref_mean']:.0f} | {a['normalized_score_mean']:.1f} | "
            f"{a['fid_classifier_mean']:.0f} |")
    lines += ["", "Mean ± std over seeds (std of one seed is 0). DPO per seed: gold "
              + ", ".join(f"{g:.3f}" for g in res["algorithms"]["dpo"]["gold_reward"]) + "; alignment "
              + ", ".join(f"{g:.3f}" for g in res["algorithms"]["dpo"]["alignment"]) + "."]
    (args.out / "image_quick.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

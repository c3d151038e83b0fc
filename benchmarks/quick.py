"""Quick-preset figures of one domain: wall times and every algorithm over seeds, as users run it.

    python benchmarks/quick.py --domain text                # reference, sft, dpo, ipo, kto; 3 seeds
    python benchmarks/quick.py --domain robot --seeds 5 --algos reference,dpo
    python benchmarks/quick.py --domain text --extra "dpo:beta=0.03" --extra "dpo:beta=0.3"
    python benchmarks/quick.py --domain text --algos oaif,selm --set annotator=oracle --set alpha=0
    python benchmarks/quick.py --domain robot --work /tmp/prefbench-robot-quick-XXXX   # continue a stopped run

1. ``bench run --algo dpo --domain D`` from an empty cache (preparation included) and a second
   cell with the domain cached, as subprocesses (wall time of the whole command);
2. ``bench grid`` of the algorithms × seeds (plus ``--extra`` configurations on seed 0, and the
   ``--conditions`` given) in one process;
3. a table of mean ± std over seeds: normalized_score (with the mean per-cell 95% interval over
   contexts), win rate, gold gain, KL (or the surrogate ``elbo_gap``), the in-distribution
   normalized score, and the domain's key metrics next to the reference's.

Writes ``benchmarks/results/<domain>_quick.json`` and ``.md``.
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

KEY_METRICS = {
    "text": ["accuracy", "diversity", "distinct_2", "verbosity", "length", "indist/accuracy"],
    "image": ["alignment", "alignment_all", "fid_classifier", "diversity"],
    "robot": ["d4rl_score", "success_rate", "diversity", "d4rl_score/drawer-open", "d4rl_score/button-press",
              "d4rl_score/sweep-into", "d4rl_score/door-open"],
    "multiagent": ["normalized_return", "normalized_return/spread", "normalized_return/reference",
                   "normalized_return/tag", "unilateral_gap", "diversity"],
}
HEAD = ["normalized_score", "win_rate", "gold_gain", "kl_to_ref", "elbo_gap", "indist/normalized_score"]
ACCOUNTING = ["train/rm_heldout_accuracy", "feedback_used", "online_samples_used", "judge_queries"]


def bench(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def summarise(recs: list, metrics: list[str]) -> dict:
    rows = sorted(recs, key=lambda r: r.seed)
    out = {"seeds": [r.seed for r in rows], "train_s": [round(r.timings.get("train_s", 0.0), 1) for r in rows]}
    for k in metrics:
        vals = [r.metrics[k] for r in rows if k in r.metrics]
        if vals:
            out[k] = mean_std(vals)
    ci = [r.metrics["normalized_score_ci"] for r in rows if "normalized_score_ci" in r.metrics]
    if ci:
        out["normalized_score_ci_mean"] = statistics.mean(ci)
    return out


def fmt(entry: dict, key: str, digits: int) -> str:
    if key not in entry:
        return "—"
    e = entry[key]
    return f"{e['mean']:.{digits}f} ± {e['std']:.{digits}f}"


def table(res: dict, domain: str) -> list[str]:
    keys = KEY_METRICS.get(domain, [])
    likelihood = "kl_to_ref" if any("kl_to_ref" in e for e in res["entries"].values()) else "elbo_gap"
    cols = ["entry", "seeds", "normalized (± ctx CI)", "win rate", "gold gain", likelihood, "indist normalized",
            *keys]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, e in res["entries"].items():
        ci = f" (±{e['normalized_score_ci_mean']:.1f})" if "normalized_score_ci_mean" in e else ""
        cells = [name, str(len(e["seeds"])), fmt(e, "normalized_score", 1) + ci, fmt(e, "win_rate", 3),
                 fmt(e, "gold_gain", 3), fmt(e, likelihood, 3), fmt(e, "indist/normalized_score", 1),
                 *(fmt(e, k, 3) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    ref = res["reference_metrics"]
    lines += ["", "Reference on the same draws (seed 0): " + ", ".join(
        f"{k} {ref[k]:.3f}" for k in ["gold_reward", *keys] if k in ref) + "."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domain", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--algos", default="reference,sft,dpo,ipo,kto")
    ap.add_argument("--conditions", default="default")
    ap.add_argument("--extra", action="append", default=[], help="ALGO:key=value[,key=value] on seed 0")
    ap.add_argument("--set", action="append", default=[], help="key=value for every algorithm of the grid that has it")
    ap.add_argument("--cache", type=Path, default=None, help="reuse a preparation cache (default: a fresh one)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="results file name (default: <domain>_quick)")
    ap.add_argument("--no-timing", action="store_true", help="skip the timed first and cached `bench run`")
    ap.add_argument("--work", type=Path, default=None,
                    help="the work folder of an earlier run to continue (its done cells are kept)")
    args = ap.parse_args()
    tag = args.tag or f"{args.domain}_quick"
    work = args.work or Path(tempfile.mkdtemp(prefix=f"prefbench-{args.domain}-quick-"))
    env = {**os.environ, "PREFBENCH_HOME": str(work / "home"), "PREFBENCH_CACHE": str(args.cache or work / "cache")}
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "load_at_start": os.getloadavg()[0],
                             "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset")}, "domain": args.domain}
    d = ["--domain", args.domain, "-q"]
    if not args.no_timing:
        res["first_run_s"] = bench(["run", "--algo", "dpo", *d], env)
        res["cached_run_s"] = bench(["run", "--algo", "dpo", "--seed", "1", *d], env)
        print(f"first run {res['first_run_s']:.1f}s, cached run {res['cached_run_s']:.1f}s", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.cli", "grid", "--algos", args.algos, "--domains", args.domain,
                    "--conditions", args.conditions, "--seeds", str(args.seeds),
                    *(x for kv in args.set for x in ("--set", kv))], env=env, check=True)
    for extra in args.extra:
        algo, _, sets = extra.partition(":")
        sets_args = [x for kv in sets.split(",") if kv for x in ("--set", kv)]
        bench(["run", "--algo", algo, *sets_args, *d], env)
    res["grid_s"] = time.perf_counter() - t0

    os.environ.update(env)
    from benchmark.store import Store

    recs = Store(work / "home" / "prefbench.sqlite", readonly=True).records(status="done")
    groups: dict[str, list] = {}
    for r in recs:
        sets = {k: v for k, v in r.config["algo_config"].items() if v != _default(r.algo, k)}
        name = r.algo + (f" ({', '.join(f'{k}={v}' for k, v in sets.items())})" if sets else "")
        name += "" if r.condition == "default" else f" [{r.condition}]"
        groups.setdefault(name, []).append(r)
    metrics = [*HEAD, *KEY_METRICS.get(args.domain, []), *ACCOUNTING]
    res["entries"] = {k: summarise(v, metrics) for k, v in sorted(groups.items())}
    first = min(recs, key=lambda r: (r.seed, r.algo))
    res["reference_metrics"] = {"gold_reward": first.metrics["reference_gold_reward"],
                                "target_gold_reward": first.metrics["target_gold_reward"],
                                **{k.removeprefix("reference/"): v for k, v in first.metrics.items()
                                   if k.startswith("reference/")}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{tag}.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    m = res["machine"]
    timing = (f"First `bench run --algo dpo --domain {args.domain}` (with preparation): {res['first_run_s']:.1f} s; "
              f"a second cell, domain cached: {res['cached_run_s']:.1f} s; " if "first_run_s" in res else "")
    lines = [f"# {args.domain} domain, quick preset ({args.algos})", "",
             f"Machine: {m['platform']}, {m['cpus']} CPUs (1-min load {m['load_at_start']:.2f} at start), "
             f"OMP_NUM_THREADS {m['omp_num_threads']} (threads change the numbers: docs/design.md). "
             f"{timing}the grid: {res['grid_s']:.0f} s.", "",
             "Mean ± std over training seeds. Paired evaluation on held-out contexts: the reference scores exactly "
             "0 / 0.5; (± ctx CI) is the mean per-cell 95% interval over evaluation contexts. Target (best-of-N "
             f"reference) gold {res['reference_metrics']['target_gold_reward']:.3f}.", "", *table(res, args.domain)]
    lines += ["", "| entry | " + " | ".join(ACCOUNTING) + " |", "|" + "---|" * (len(ACCOUNTING) + 1)]
    lines += ["| " + name + " | " + " | ".join(fmt(e, k, 3) for k in ACCOUNTING) + " |"
              for name, e in res["entries"].items()]
    (args.out / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _default(algo: str, key: str) -> object:
    from benchmark.registry import ALGORITHMS

    return getattr(ALGORITHMS.get(algo).Config(), key, None)


if __name__ == "__main__":
    main()

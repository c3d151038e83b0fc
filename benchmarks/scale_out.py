"""Wall time of one grid on each executor, as users run it (issue #18).

    python benchmarks/scale_out.py                       # 4 algorithms × 3 domains × 2 seeds, quick
    python benchmarks/scale_out.py --preset smoke --algos reference,sft --domains text

Each executor runs the same ``bench grid`` as a subprocess into its own fresh store, sharing one
preparation cache that is filled first (so the figures compare execution, not preparation):
``local`` (one process), ``process --workers W`` and ``ray --workers W`` (a local Ray cluster that
the command starts), plus ``slurm --slurm-backend local --workers W`` (submitit's local executor).
Per executor: the grid's wall time, the sum of the cells' own wall times, and the overhead per cell
= (W × grid wall − Σ cell wall) / cells, i.e. the time a worker slot was held without running a
cell (start-up, scheduling, result transfer). Writes ``benchmarks/results/<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.store import Store

EXECUTORS = {
    "local": [],
    "process": ["--executor", "process"],
    "ray": ["--executor", "ray"],
    "slurm-local": ["--executor", "slurm", "--slurm-backend", "local"],
}


def bench(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(name: str, grid: list[str], workers: int, env: dict, work: Path) -> dict:
    home = work / name
    extra = EXECUTORS[name] + (["--workers", str(workers)] if name != "local" else [])
    wall = bench([*grid, *extra], dict(env, PREFBENCH_HOME=str(home)))
    recs = Store(home / "prefbench.sqlite", readonly=True).records()
    cell_wall = sum(r.wall_s or 0.0 for r in recs)
    slots = 1 if name == "local" else workers
    return {"executor": name, "workers": slots, "cells": len(recs), "done": sum(r.status == "done" for r in recs),
            "grid_s": wall, "cells_s": cell_wall, "overhead_per_cell_s": (slots * wall - cell_wall) / max(len(recs), 1),
            "speedup_vs_local": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", default="reference,sft,dpo,ipo")
    ap.add_argument("--domains", default="text,image,robot")
    ap.add_argument("--seeds", default="2")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executors", default="local,process,ray,slurm-local")
    ap.add_argument("--cache", type=Path, default=None, help="a preparation cache to reuse (filled if empty)")
    ap.add_argument("--tag", default="scale_out_quick")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prefbench-scale-"))
    cache = args.cache or work / "cache"
    env = dict(os.environ)
    grid = ["grid", "--algos", args.algos, "--domains", args.domains, "--seeds", args.seeds, "--preset", args.preset,
            "--cache", str(cache), "-q", "--threads", "1"]
    t0 = time.perf_counter()
    bench(["grid", "--algos", "reference", "--domains", args.domains, "--seeds", "1", "--preset", args.preset,
           "--cache", str(cache), "-q"], dict(env, PREFBENCH_HOME=str(work / "prepare")))
    res = {"grid": grid, "prepare_s": time.perf_counter() - t0, "runs": [],
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "load_at_start": os.getloadavg()[0]}}
    for name in args.executors.split(","):
        r = measure(name, grid, args.workers, env, work)
        res["runs"].append(r)
        print(json.dumps(r), flush=True)
    local = next((r["grid_s"] for r in res["runs"] if r["executor"] == "local"), None)
    for r in res["runs"]:
        r["speedup_vs_local"] = None if local is None else local / r["grid_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# One grid on each executor ({args.preset})", "",
             f"`bench {' '.join(grid[:-5])} --threads 1`, {res['machine']['cpus']} CPUs, load "
             f"{res['machine']['load_at_start']:.2f} at start; preparation shared and done first "
             f"({res['prepare_s']:.0f} s). Overhead per cell = (workers × grid wall − Σ cell wall) / cells.", "",
             "| executor | workers | cells (done) | grid wall s | Σ cell wall s | overhead per cell s | "
             "speed-up vs local |",
             "|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        sp = "" if r["speedup_vs_local"] is None else f"{r['speedup_vs_local']:.2f}×"
        lines.append(f"| {r['executor']} | {r['workers']} | {r['cells']} ({r['done']}) | {r['grid_s']:.1f} | "
                     f"{r['cells_s']:.1f} | {r['overhead_per_cell_s']:.2f} | {sp} |")
    (args.out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

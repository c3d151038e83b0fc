"""Where a cell's time goes, and the same cells before and after a code change (issue #19).

    python benchmarks/profile_cells.py --after . [--before /path/to/old/checkout] \\
        [--algo dpo] [--domains text image motion robot multiagent] [--preset quick] [--reps 2]

Each measured run is exactly what a user types, ``bench run --algo A --domain D --preset P``, in a
fresh process with a fresh store and the preparation already cached (a warm-up run per code
version and domain builds it first and is not counted). Reported per domain and version: the
process's wall time (imports, cache load, the cell, storing), and the cell's own split from its
stored timings: loading the preparation, building the condition's data, training (of which the
over-optimisation checkpoints), evaluation, artifacts. ``--before`` and ``--after`` alternate run by
run (``before, after, after, before, ...``) so that load drift on a shared machine falls on both.
Writes ``benchmarks/results/profile_cells_<preset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SPLIT = ["prepare_s", "data_s", "train_s", "checkpoints_s", "eval_s", "artifacts_s"]
"""The stored timings in the table (keys an older checkout lacks are left blank)."""


def bench_run(code: Path, algo: str, domain: str, preset: str, cache: Path, threads: int) -> dict[str, Any]:
    """One ``bench run`` of ``code`` in a fresh process and store: its wall time and stored timings."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": str(code.resolve()), "PREFBENCH_HOME": home,
               "PREFBENCH_CACHE": str(cache), "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "benchmark.cli", "run", "--algo", algo, "--domain", domain,
               "--preset", preset, "--quiet"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} in {code} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        with sqlite3.connect(Path(home) / "prefbench.sqlite") as db:
            (timings,) = db.execute("SELECT timings_json FROM cells WHERE status = 'done'").fetchone()
    return {"process_wall_s": wall, **json.loads(timings)}


def version_of(code: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=code, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=code, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def measure(codes: dict[str, Path], args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{domain: {version label: [run timings, ...]}}; the order alternates between versions."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    labels = list(codes)
    for domain in args.domains:
        runs[domain] = {label: [] for label in labels}
        for label in labels if args.warmup else []:  # builds the preparation of this code version if missing
            print(f"warm-up {label} {domain} ...", flush=True)
            bench_run(codes[label], args.algo, domain, args.preset, args.cache, args.threads)
        for rep in range(args.reps):
            for label in labels if rep % 2 == 0 else labels[::-1]:
                t = bench_run(codes[label], args.algo, domain, args.preset, args.cache, args.threads)
                runs[domain][label].append(t)
                print(f"{domain} {label} rep {rep}: {t['process_wall_s']:.1f} s", flush=True)
    return runs


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def table(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    def cell(v: float | None) -> str:
        return "" if v is None else f"{v:.1f}"

    lines = ["| domain | code | `bench run` wall (s) | " + " | ".join(k.removesuffix("_s") for k in SPLIT) + " |",
             "|---|---|---|" + "---|" * len(SPLIT)]
    for domain, by_version in runs.items():
        for label, rs in by_version.items():
            lines.append(f"| {domain} | {label} | {cell(median(rs, 'process_wall_s'))} | "
                         + " | ".join(cell(median(rs, k)) for k in SPLIT) + " |")
    return lines


def write(result: dict[str, Any], tag: str | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    tag = tag or f"profile_cells_{result['preset']}"
    (RESULTS / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    versions = ", ".join(f"{label} = `{v}`" for label, v in result["versions"].items())
    lines = [f"# Where a `{result['algo']}` cell's time goes ({result['preset']}; {versions})", "",
             f"Median of {result['reps']} runs per domain and version, each `bench run --algo {result['algo']} "
             f"--domain D --preset {result['preset']}` in a fresh process and store with the preparation cached; "
             "versions alternate run by run. Seconds; `checkpoints` is the part of `train` spent on the "
             "over-optimisation probes; blank: the version does not record it.", "",
             f"Machine: {m['platform']}, {m['cores']} cores, {m['threads']} torch thread(s); load average "
             f"{m['loadavg_before']} before, {m['loadavg_after']} after.", "", *table(result["runs"])]
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")
    return RESULTS / f"{tag}.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--after", type=Path, default=Path("."), help="the checkout to measure (default: this one)")
    ap.add_argument("--before", type=Path, help="an older checkout to measure back to back with --after")
    ap.add_argument("--algo", default="dpo")
    ap.add_argument("--domains", nargs="+", default=["text", "image", "motion", "robot", "multiagent"])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "prefbench_profile_cache",
                    help="the preparation cache both versions share (keys differ where their code does)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the warm-up runs (the cache already holds every version's preparations)")
    ap.add_argument("--tag", help="results file name (default profile_cells_<preset>)")
    args = ap.parse_args()
    codes = {"before": args.before, "after": args.after} if args.before else {"after": args.after}
    machine = {"platform": platform.platform(), "cores": os.cpu_count(), "threads": args.threads,
               "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    runs = measure(codes, args)
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result = {"algo": args.algo, "preset": args.preset, "reps": args.reps, "machine": machine,
              "versions": {label: version_of(c) for label, c in codes.items()}, "runs": runs}
    print(write(result, args.tag).read_text())


if __name__ == "__main__":
    main()

"""SIGKILL a smoke grid at random moments, again and again: is anything lost or computed twice?

    python benchmarks/kill_grid.py                 # 10 kills, then the grid to its end
    python benchmarks/kill_grid.py --kills 20 --seed 3

Each round (until ``--kills`` kills have landed) starts ``bench grid`` (a real subprocess on a real
store) and SIGKILLs its whole process group after a random delay. After every kill the store must
open, every cell that was ``done`` before must still be ``done`` with the same ``finished_at`` (not
lost, not recomputed), and no cell may appear twice. After the kills the grid runs to its end;
every cell must be done, each computed exactly once after it first finished.

Writes ``benchmarks/results/kill_grid.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["grid", "-a", "reference,sft,dpo,ipo,kto", "-d", "text,robot", "-p", "smoke", "--seeds", "60", "-q"]


def done_cells(db: Path) -> dict[str, float]:
    """run id → finished_at of the done cells; raises if the store does not open."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT run_id, finished_at FROM cells WHERE status='done'").fetchall()
        keys = conn.execute("SELECT COUNT(*), COUNT(DISTINCT algo || domain || condition || preset || seed || "
                            "config_hash) FROM cells").fetchone()
    if keys[0] != keys[1]:
        raise AssertionError(f"duplicated cells: {keys[0]} rows for {keys[1]} distinct cells")
    return dict(rows)


def kill_round(env: dict, delay: float) -> tuple[bool, float]:
    """Start the grid, SIGKILL it after ``delay`` s (unless it ends first): (killed, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *GRID], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    ap.add_argument("--max-delay", type=float, default=30.0, help="kill moments are uniform in [0.5, this] s")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="prefbench-kill-"))
    env = {**os.environ, "PREFBENCH_HOME": str(work / "home"), "PREFBENCH_CACHE": str(work / "cache")}
    db = work / "home" / "prefbench.sqlite"
    first_done: dict[str, float] = {}
    rounds, lost, recomputed, opened = [], 0, 0, 0
    for i in range(3 * args.kills):  # until --kills SIGKILLs have landed (a round may finish the grid first)
        if sum(r["killed"] for r in rounds) == args.kills:
            break
        killed, secs = kill_round(env, rng.uniform(0.5, args.max_delay))
        now = done_cells(db) if db.exists() else {}
        opened += 1
        lost += sum(r not in now for r in first_done)
        recomputed += sum(r in now and now[r] != t for r, t in first_done.items())
        for r, t in now.items():
            first_done.setdefault(r, t)
        rounds.append({"round": i + 1, "killed": killed, "after_s": round(secs, 1), "done": len(now)})
        print(f"round {i + 1}: {'killed' if killed else 'finished'} after {secs:.1f}s; {len(now)} cells done",
              flush=True)
    t0 = time.perf_counter()
    final = subprocess.run([sys.executable, "-m", "benchmark.cli", *GRID], env=env, capture_output=True, text=True)
    now = done_cells(db)
    lost += sum(r not in now for r in first_done)
    recomputed += sum(r in now and now[r] != t for r, t in first_done.items())
    summary = {"kills": sum(r["killed"] for r in rounds), "store_opened": opened, "cells": len(now),
               "lost": lost, "recomputed_after_done": recomputed, "final_exit": final.returncode,
               "final_s": round(time.perf_counter() - t0, 1), "grid": " ".join(GRID), "rounds": rounds}
    print(f"{summary['kills']} SIGKILLs; store opened {opened}/{len(rounds)} times; {len(now)} cells done at the "
          f"end; lost {lost}; computed again after done {recomputed}; final grid exit {final.returncode}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kill_grid.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# SIGKILLs during a smoke grid", "", f"`bench {' '.join(GRID)}`, killed at random moments "
             f"(seed {args.seed}, uniform in [0.5, {args.max_delay}] s), then run to its end.", "",
             f"**{summary['kills']} SIGKILLs; the store opened {opened} of {len(rounds)} times; cells lost {lost}; "
             f"computed again after done {recomputed}; {len(now)} cells done at the end (exit "
             f"{final.returncode}).**", "", "| round | killed | after s | cells done |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['killed']} | {r['after_s']} | {r['done']} |" for r in rounds]
    (args.out / "kill_grid.md").write_text("\n".join(lines) + "\n")
    if lost or recomputed or final.returncode != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""``bench grid`` as a user runs it: per-cell lines, resuming, a SIGKILL mid-grid, the process pool
with a crashing cell (smoke preset, text domain, real cells and a real store)."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from benchmark.api import Algorithm, RunContext
from benchmark.errors import UserError
from benchmark.executors import LocalExecutor, ProcessExecutor, Settings, get_executor, plan_grid, run_grid
from benchmark.registry import ALGORITHMS
from benchmark.runner import CellRequest, new_record, resolve
from benchmark.store import Store

BENCH = [sys.executable, "-m", "benchmark.cli"]


def bench(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT algo, seed, status, finished_at, metrics_json FROM cells "
                            "ORDER BY algo, seed").fetchall()


def test_grid_runs_every_cell_once_and_resumes(home: Path) -> None:
    args = ["grid", "--algos", "sft", "--domains", "text", "--seeds", "2", "--preset", "smoke"]
    out = bench(*args, home=home)
    assert out.returncode == 0, out.stderr
    assert "= 2 cells" in out.stdout and "0 already stored, 2 to run" in out.stdout
    assert "done   sft × text [default, seed 0]  norm" in out.stdout
    assert "done   sft × text [default, seed 1]  norm" in out.stdout
    assert "grid finished" in out.stdout and "ran 2 cells (2 done, 0 n/a, 0 failed)" in out.stdout
    before = rows(home / "prefbench.sqlite")
    assert [(a, s, st) for a, s, st, *_ in before] == [("sft", 0, "done"), ("sft", 1, "done")]
    again = bench(*args, "--seeds", "3", home=home)  # one more seed: only it runs
    assert again.returncode == 0, again.stderr
    assert "2 already stored, 1 to run" in again.stdout and "seed 2]" in again.stdout
    after = rows(home / "prefbench.sqlite")
    assert after[:2] == before and after[2][:3] == ("sft", 2, "done")


def test_grid_killed_with_sigkill_resumes_without_losing_or_duplicating_cells(home: Path) -> None:
    args = ["grid", "--algos", "sft,dpo", "--domains", "text", "--seeds", "3", "--preset", "smoke", "-q"]
    db = home / "prefbench.sqlite"
    env = {**os.environ, "PREFBENCH_HOME": str(home)}
    proc = subprocess.Popen([*BENCH, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 400
        done = 0
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:  # the grid may hold the write lock (or not have made the table yet) at this instant
                    with sqlite3.connect(db, timeout=5) as conn:
                        done = conn.execute("SELECT count(*) FROM cells WHERE status='done'").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # keep the last count; poll again after the sleep below
                if done >= 2:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, "the grid finished before it could be killed"
        assert 2 <= done < 6
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    killed = rows(db)
    finished = {(a, s): (f, m) for a, s, st, f, m in killed if st == "done"}
    assert len(finished) >= 2 and len(killed) < 6
    assert all(st in ("done", "running") for _, _, st, _, _ in killed)
    out = bench(*args, home=home)
    assert out.returncode == 0, out.stderr
    assert f"{len(finished)} already stored, {6 - len(finished)} to run" in out.stdout
    final = rows(db)
    keys = [(a, s) for a, s, *_ in final]
    assert sorted(keys) == sorted({(a, s) for a in ("sft", "dpo") for s in range(3)}), "a cell lost or duplicated"
    assert all(st == "done" for _, _, st, _, _ in final)
    for a, s, _, f, m in final:  # cells finished before the kill were not run again
        if (a, s) in finished:
            assert (f, m) == finished[(a, s)]


# ---------------------------------------------------------------------------------------------
# the process pool
# ---------------------------------------------------------------------------------------------


@dataclass
class NoCfg:
    pass


class Segfault(Algorithm):
    """Crashes its worker process the hard way (a NULL read: SIGSEGV)."""

    name = "test-grid-segfault"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        time.sleep(0.5)
        ctypes.string_at(0)
        raise AssertionError("unreachable")


class Raises(Algorithm):
    name = "test-grid-raises"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        raise RuntimeError("boom in a worker")


@pytest.fixture()
def crashers() -> Iterator[None]:
    for cls in (Segfault, Raises):
        ALGORITHMS.add(cls.name, cls)
    yield
    for cls in (Segfault, Raises):
        ALGORITHMS.remove(cls.name)


def test_process_pool_isolates_a_crashing_cell(crashers, home: Path, cache_dir: Path) -> None:
    reqs = [CellRequest("sft", "text", seed=0, preset="smoke"), CellRequest(Segfault.name, "text", preset="smoke"),
            CellRequest("sft", "text", seed=1, preset="smoke"), CellRequest(Raises.name, "text", preset="smoke")]
    cells = [resolve(r) for r in reqs]
    store = Store(home / "prefbench.sqlite")
    # as many torch threads per worker as in this process: float reductions split the same way
    settings = Settings(home=str(home), cache_dir=str(cache_dir), threads=torch.get_num_threads())
    started = []
    recs = run_grid(cells, store, ProcessExecutor(workers=2), settings, on_start=lambda c: started.append(c.run_id))
    by_algo = {(r.algo, r.seed): r for r in store.records()}
    assert len(recs) == 4 and len(by_algo) == 4 and sorted(started) == sorted({c.run_id for c in cells})
    seg = by_algo[(Segfault.name, 0)]
    assert seg.status == "failed" and "worker process crashed" in seg.reason
    assert "Segmentation fault" in Path(seg.artifacts[0]).read_text()
    assert by_algo[(Raises.name, 0)].status == "failed"
    assert by_algo[(Raises.name, 0)].reason == "RuntimeError: boom in a worker"
    assert by_algo[("sft", 0)].status == "done" and by_algo[("sft", 1)].status == "done"
    # the same cell in-process gives the same metrics (the result is a function of config and seed)
    local = Store(home / "local.sqlite")
    [rec] = run_grid([cells[0]], local, LocalExecutor(), settings)
    volatile = {"wall_s"}
    assert {k: v for k, v in rec.metrics.items() if k not in volatile} == {
        k: v for k, v in by_algo[("sft", 0)].metrics.items() if k not in volatile}


def test_grid_process_executor_from_the_cli(home: Path) -> None:
    """With a fresh cache the worker prepares the domain, and its progress reaches the log as lines."""
    out = bench("grid", "-a", "sft", "-d", "text", "-s", "2", "-p", "smoke", "--executor", "process", "-j", "2",
                "--cache", str(home.parent / "fresh_cache"), home=home)
    assert out.returncode == 0, out.stderr
    assert "on the process executor (2 workers)" in out.stdout and "ran 2 cells (2 done" in out.stdout
    assert re.search(r"\] text: offline pool: done \(\d+/\d+\)", out.stdout), out.stdout
    assert [(a, s, st) for a, s, st, *_ in rows(home / "prefbench.sqlite")] == [("sft", 0, "done"),
                                                                                ("sft", 1, "done")]


# ---------------------------------------------------------------------------------------------
# planning and bad input
# ---------------------------------------------------------------------------------------------


def test_plan_skips_done_and_na_reruns_running_and_failed(home: Path) -> None:
    store = Store(home / "prefbench.sqlite")
    cells = [resolve(CellRequest("dpo", "text", seed=s, preset="smoke")) for s in range(4)]
    for cell, status in zip(cells, ["done", "na", "failed", "running"]):
        rec = new_record(cell)
        rec.status = status
        store.put(rec)
    todo, kept = plan_grid([*cells, cells[3]], store)
    assert [c.request.seed for c in todo] == [2, 3] and [r.seed for r in kept] == [0, 1]
    todo, kept = plan_grid(cells, store, rerun_failed=False)
    assert [c.request.seed for c in todo] == [3] and [r.seed for r in kept] == [0, 1, 2]
    todo, _ = plan_grid(cells, store, force=True)
    assert len(todo) == 4
    with pytest.raises(UserError, match="--executor dask: unknown executor; valid executors are local, process"):
        get_executor("dask")
    with pytest.raises(UserError, match="--address: not an option of the process executor"):
        get_executor("process", 2, address="127.0.0.1:6379")



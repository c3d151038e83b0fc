"""``--executor slurm`` on submitit's real local executor (``--slurm-backend local``): the same code
path as on a cluster, without one. Smoke preset, text domain, real cells and a real store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import pytest
import torch

from benchmark.api import Algorithm, RunContext
from benchmark.executors import LocalExecutor, Settings, run_grid
from benchmark.registry import ALGORITHMS
from benchmark.runner import CellRequest, resolve
from benchmark.slurm_executor import SlurmExecutor
from benchmark.store import Store

BENCH = [sys.executable, "-m", "benchmark.cli"]
VOLATILE = {"wall_s"}


def bench(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


def stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def test_grid_on_submitit_local_matches_the_local_executor(home: Path, cache_dir: Path) -> None:
    out = bench("grid", "--algos", "reference,sft", "--domains", "text", "--seeds", "2", "--preset", "smoke",
                "--executor", "slurm", "--slurm-backend", "local", "--workers", "2", "--threads", "1", "-q",
                "--cache", str(home.parent / "fresh_cache"), home=home)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "on the slurm executor (2 workers)" in out.stdout and "ran 4 cells (4 done" in out.stdout
    logs = "".join(p.read_text() for p in (home / "slurm").glob("*/*_log.out"))
    assert "text: offline pool: done" in logs, "the preparation job logs its progress"
    st = Store(home / "prefbench.sqlite")
    recs = {(r.algo, r.seed): r for r in st.records()}
    assert sorted(recs) == [("reference", 0), ("reference", 1), ("sft", 0), ("sft", 1)]
    assert all(r.status == "done" and r.env["torch_threads"] == 1 for r in recs.values())
    assert list((home / "slurm").glob("*/*_log.out")), "submitit's logs go to <home>/slurm"
    # the same cells in this process, with one torch thread, give the same metrics
    cells = [resolve(CellRequest(a, "text", seed=s, preset="smoke")) for a, s in sorted(recs)]
    assert {c.run_id for c in cells} == {r.run_id for r in recs.values()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_grid(cells, Store(home / "local.sqlite"), LocalExecutor(),
                         Settings(home=str(home), cache_dir=str(cache_dir)))
    finally:
        torch.set_num_threads(threads)
    for rec in local:
        assert rec.status == "done"
        assert stable(rec.metrics) == stable(recs[(rec.algo, rec.seed)].metrics), (rec.algo, rec.seed)


@dataclass
class NoCfg:
    pass


class KilledJob(Algorithm):
    """Its job process is killed mid-cell (as Slurm does at a time limit or an out-of-memory kill)."""

    name = "test-slurm-killed"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
        raise AssertionError("unreachable")


def test_a_job_that_dies_is_a_failed_record(home: Path, cache_dir: Path) -> None:
    ALGORITHMS.add(KilledJob.name, KilledJob)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job process cannot import this test
    try:
        cell = resolve(CellRequest(KilledJob.name, "text", preset="smoke"))
        store = Store(home / "prefbench.sqlite")
        started: list[str] = []
        ex = SlurmExecutor(1, slurm_backend="local", logs_dir=str(home / "logs"))
        [rec] = run_grid([cell], store, ex, Settings(home=str(home), cache_dir=str(cache_dir), threads=1),
                         on_start=lambda c: started.append(c.run_id))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ALGORITHMS.remove(KilledJob.name)
    assert started == [cell.run_id]
    assert rec.status == "failed" and "ended without a result" in rec.reason and str(home / "logs") in rec.reason
    assert store.get(cell.run_id).status == "failed"


def test_a_job_that_cannot_load_fails_its_cells_with_the_reason(home: Path, cache_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An algorithm the job process cannot import (code not on the nodes' path): the domain's
    preparation job fails to load, and its cells are failed with the job's last error line."""
    (tmp_path / "only_in_the_driver.py").write_text(
        "from dataclasses import dataclass\nfrom benchmark.api import Algorithm\n\n\n@dataclass\nclass Cfg:\n"
        "    pass\n\n\nclass Elsewhere(Algorithm):\n    name = 'test-slurm-elsewhere'\n    Config = Cfg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from only_in_the_driver import Elsewhere

    ALGORITHMS.add(Elsewhere.name, Elsewhere)
    try:
        cell = resolve(CellRequest(Elsewhere.name, "text", preset="smoke"))
        ex = SlurmExecutor(1, slurm_backend="local")
        [rec] = run_grid([cell], Store(home / "prefbench.sqlite"), ex,
                         Settings(home=str(home), cache_dir=str(cache_dir), threads=1))
    finally:
        ALGORITHMS.remove(Elsewhere.name)
        sys.modules.pop("only_in_the_driver", None)
    assert rec.status == "failed"
    assert rec.reason.startswith("domain preparation failed: SlurmJobError: slurm job "), rec.reason
    assert "failed: ModuleNotFoundError: No module named 'only_in_the_driver'; logs: " in rec.reason


REFUSING_SBATCH = """#!/bin/sh
echo "sbatch: error: invalid partition specified: gpux" >&2
echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
exit 1
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--slurm-backend", "pbs"], "--slurm-backend pbs: use slurm (sbatch) or local"),
        ([], "no sbatch or srun on PATH (not on a Slurm login node?); run on one, or use --slurm-backend local"),
        (["--slurm-backend", "local", "--address", "auto"], "--address: not an option of the slurm executor"),
        (["--partition", "gpux"], "submitting 1 job(s) with slurm failed: sbatch: error: invalid partition "
                                  "specified: gpux; check --partition"),
    ],
)
def test_slurm_mistakes_are_one_line(args: list[str], expected: str, home: Path, tmp_path: Path, warm_bench) -> None:
    bare = tmp_path / "bin"  # a PATH without sbatch: only this Python (and a refusing sbatch for --partition)
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    if "--partition" in args:
        for name, text in (("sbatch", REFUSING_SBATCH), ("srun", "#!/bin/sh\nexit 1\n")):
            (bare / name).write_text(text)
            (bare / name).chmod(0o755)
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200", "PATH": str(bare)}
    out = warm_bench.run("grid", "--preset", "smoke", "--algos", "sft", "--domains", "text", "--executor", "slurm",
                         *args, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert expected in lines[0].replace("  ", " "), lines[0]
    db = home / "prefbench.sqlite"
    assert not db.exists() or not sqlite3.connect(db).execute("SELECT count(*) FROM cells").fetchone()[0]

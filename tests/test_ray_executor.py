"""``--executor ray`` on real local Ray clusters (smoke preset, text domain, real cells and stores):
a head started with ``ray start`` that grids join with ``--address``, and clusters the executor
starts itself. No mocks."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

from benchmark.api import Algorithm, RunContext
from benchmark.errors import UserError
from benchmark.executors import Settings, get_executor, run_grid
from benchmark.progress import Progress
from benchmark.ray_executor import RayExecutor
from benchmark.registry import ALGORITHMS
from benchmark.runner import CellRequest, resolve
from benchmark.store import Store

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).parent / "ray"
PROJECT_DIRS = ("benchmark", "domains", "baselines", "leaderboard")
GRID = ["grid", "--algos", "reference,sft", "--domains", "text", "--seeds", "2", "--preset", "smoke"]


def bench(*args: str, home: Path, env: dict | None = None, python: tuple[str, ...] = ("-m",), cwd: Path = ROOT,
          timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, *python, "benchmark.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT algo, seed, status, finished_at, metrics_json FROM cells "
                            "ORDER BY algo, seed").fetchall()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_naming(text: str) -> list[int]:
    """Processes whose command line contains ``text``."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray head (2 CPUs) of its own: ``ray start --block`` in its own session, in its own
    temp dir; stopped by signalling that process, which takes its cluster down with it (``ray stop``
    would stop every Ray cluster of the machine)."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = free_port()
    log = temp / "start.log"
    # no token authentication: Ray 2.60's `ray start` turns it on when ~/.ray/auth_token exists (a local
    # ray.init writes one), and a driver that joins by address sends no token unless RAY_AUTH_MODE=token
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as out:
        head = subprocess.Popen(
            [str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=30)
        for pid in _pids_naming(str(temp)):  # anything of this cluster that outlived its head
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def frozen_copy(dest: Path) -> str:
    """A copy of the project's code in its own git repository (as one runs a long benchmark from a
    frozen copy); returns the code version its records must carry."""
    for d in PROJECT_DIRS:
        shutil.copytree(ROOT / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "frozen"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=dest, check=True, capture_output=True,
                         text=True)
    return sha.stdout.strip()


# ---------------------------------------------------------------------------------------------
# grids from the CLI
# ---------------------------------------------------------------------------------------------


def test_ray_grid_on_a_cluster_matches_the_local_executor(ray_cluster: str, home: Path, tmp_path: Path) -> None:
    """The same cells on the local executor and on a Ray cluster (1 torch thread each) give the same
    metrics. The Ray grid's driver runs a frozen copy of the code through PYTHONPATH, from the
    checkout's directory (``python -P``: the directory is not on the driver's path): the workers must
    run the copy too (Ray puts the driver's directory first on theirs)."""
    local = bench(*GRID, home=home, env={"OMP_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr
    copy = tmp_path / "frozen"
    version = frozen_copy(copy)
    ray_home = tmp_path / "ray-home"
    out = bench(*GRID, "--executor", "ray", "--address", ray_cluster, "--workers", "2", "--threads", "1",
                home=ray_home, env={"PYTHONPATH": str(copy)}, python=("-P", "-m"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "on the ray executor (2 workers)" in out.stdout and "ran 4 cells (4 done" in out.stdout
    assert f"Ray cluster {ray_cluster}: 2 cell(s) at a time" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    by_ray, by_local = Store(ray_home / "prefbench.sqlite").records(), Store(home / "prefbench.sqlite").records()
    assert sorted(r.run_id for r in by_ray) == sorted(r.run_id for r in by_local) and len(by_ray) == 4
    local_metrics = {r.run_id: r.metrics for r in by_local}
    volatile = {"wall_s"}
    for rec in by_ray:
        assert rec.status == "done" and rec.env["torch_threads"] == 1, (rec.status, rec.reason, rec.env)
        assert rec.code_version == version, "a Ray worker ran other code than the driver's frozen copy"
        assert rec.timings["queue_s"] >= 0
        assert {k: v for k, v in rec.metrics.items() if k not in volatile} == {
            k: v for k, v in local_metrics[rec.run_id].items() if k not in volatile}
    assert all(r.env["torch_threads"] == 1 for r in by_local)


def test_ray_grid_killed_with_sigkill_resumes_without_losing_or_duplicating_cells(home: Path) -> None:
    """A grid on a local cluster the driver starts itself (no --address), SIGKILLed (its whole
    process group, cluster included) after its first cell is done; rerun, every cell ends done once
    and the cells finished before the kill are not run again."""
    args = ["grid", "--algos", "sft,dpo", "--domains", "text", "--seeds", "2", "--preset", "smoke",
            "--budget", "steps=250", "--executor", "ray", "--workers", "2", "-q"]
    db = home / "prefbench.sqlite"
    env = {**os.environ, "PREFBENCH_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        done = 0
        while time.time() < deadline and proc.poll() is None and done < 1:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        done = conn.execute("SELECT count(*) FROM cells WHERE status='done'").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # locked or not made yet: poll again
            time.sleep(0.1)
        assert proc.poll() is None, "the grid finished before it could be killed"
        assert 1 <= done < 4
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    killed = rows(db)
    finished = {(a, s): (f, m) for a, s, st, f, m in killed if st == "done"}
    assert len(finished) >= 1 and len(killed) <= 4
    assert all(st in ("done", "running") for _, _, st, _, _ in killed)
    out = bench(*args, home=home)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(finished)} already stored, {4 - len(finished)} to run" in out.stdout
    final = rows(db)
    keys = [(a, s) for a, s, *_ in final]
    assert sorted(keys) == sorted({(a, s) for a in ("sft", "dpo") for s in range(2)}), "a cell lost or duplicated"
    assert all(st == "done" for _, _, st, _, _ in final)
    for a, s, _, f, m in final:  # cells finished before the kill were not run again
        if (a, s) in finished:
            assert (f, m) == finished[(a, s)]


def test_an_unreachable_address_is_one_line(home: Path) -> None:
    port = free_port()  # nothing listens there
    out = bench(*GRID, "--executor", "ray", "--address", f"127.0.0.1:{port}", home=home, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in lines[0]
    assert "ray start --head" in lines[0] and "leave out --address" in lines[0]
    assert not (home / "prefbench.sqlite").exists() or not rows(home / "prefbench.sqlite")


# ---------------------------------------------------------------------------------------------
# faults, in-process drivers
# ---------------------------------------------------------------------------------------------


@dataclass
class NoCfg:
    pass


class Segfault(Algorithm):
    """Crashes its worker the hard way (a NULL read: SIGSEGV), after noting the attempt."""

    name = "test-ray-segfault"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        with open(os.environ["PREFBENCH_TEST_ATTEMPTS"], "a") as fh:  # forwarded by the executor
            fh.write(f"{os.getpid()}\n")
        ctypes.string_at(0)
        raise AssertionError("unreachable")


@pytest.fixture()
def segfault() -> Iterator[None]:
    """The crashing algorithm, registered here; Ray workers cannot import this test module, so its
    classes travel to them by value."""
    ALGORITHMS.add(Segfault.name, Segfault)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ALGORITHMS.remove(Segfault.name)


def test_a_worker_that_dies_is_retried_once_then_failed_alone(ray_cluster: str, segfault, home: Path,
                                                              cache_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = tmp_path / "attempts.txt"
    monkeypatch.setenv("PREFBENCH_TEST_ATTEMPTS", str(attempts))
    sft, crasher = (resolve(CellRequest(a, "text", preset="smoke")) for a in ("sft", Segfault.name))
    store = Store(home / "prefbench.sqlite")
    settings = Settings(home=str(home), cache_dir=str(cache_dir), threads=1)
    recs = run_grid([crasher, sft], store, RayExecutor(2, address=ray_cluster), settings)
    assert not ray.is_initialized(), "the driver stays connected to the cluster"
    by_id = {r.run_id: r for r in store.records()}
    assert len(recs) == 2 and len(by_id) == 2
    seg = by_id[crasher.run_id]
    assert seg.status == "failed" and "worker process crashed (fatal signal)" in seg.reason, seg.reason
    assert "on each of 2 tries (Ray WorkerCrashedError" in seg.reason
    assert "Segmentation fault" in Path(seg.artifacts[0]).read_text()
    assert len(attempts.read_text().split()) == 2, "Ray retries a cell whose worker died, once"
    assert by_id[sft.run_id].status == "done", "a crashing cell takes no other cell with it"


def test_ctrl_c_cancels_the_cells_in_flight_and_stops_the_local_cluster(home: Path, cache_dir: Path) -> None:
    """Ctrl-C (a KeyboardInterrupt in the driver) while a long cell runs on a cluster the executor
    started: the cell's worker and the whole cluster are gone, and the cells in flight are stored as
    failed ("interrupted")."""
    long_cell = resolve(CellRequest("sft", "text", seed=0, preset="smoke", budget_sets=("steps=1000000",)))
    other = resolve(CellRequest("sft", "text", seed=1, preset="smoke"))
    store = Store(home / "prefbench.sqlite")
    settings = Settings(home=str(home), cache_dir=str(cache_dir), threads=1)
    cluster: dict[int, str] = {}  # pid → command line, as the interrupt comes

    def interrupt_once_the_long_cell_runs(cell) -> None:
        if cell.run_id != other.run_id:
            return
        crash_file = home / "artifacts" / long_cell.run_id / "crash.txt"  # written as the cell begins
        deadline = time.time() + 120
        while not crash_file.exists():
            assert time.time() < deadline, "the long cell never started"
            time.sleep(0.1)
        others = "start --head"  # the module's other cluster
        cluster.update({pid: _cmdline(pid) for pid in _descendants(os.getpid(), skip=others) if pid not in before})
        raise KeyboardInterrupt

    # processes this session started before the grid (e.g. the process executor's forkserver) are not its
    before = set(_descendants(os.getpid(), skip="start --head"))
    with pytest.raises(KeyboardInterrupt):
        run_grid([long_cell, other], store, RayExecutor(2), settings, on_start=interrupt_once_the_long_cell_runs)
    assert not ray.is_initialized()
    assert any("ray::_cell_task" in c for c in cluster.values()), cluster  # the long cell's worker
    assert any("raylet" in c for c in cluster.values()), cluster
    deadline = time.time() + 60
    while any(_alive(pid) for pid in cluster) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in cluster), "processes of the cluster outlived the interrupt"
    assert {(r.run_id, r.status, r.reason) for r in store.records()} == {
        (long_cell.run_id, "failed", "interrupted"), (other.run_id, "failed", "interrupted")}


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int, skip: str) -> list[int]:
    """Every process below ``root`` (children, their children, ...) but those under a process whose
    command line contains ``skip``."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                ppid = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [root]
    while todo:
        kids = [p for p in parents.get(todo.pop(), []) if skip not in _cmdline(p)]
        out.extend(kids)
        todo.extend(kids)
    return out


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_ray_options_that_cannot_work_are_one_line_errors(ray_cluster: str, home: Path) -> None:
    cells = [resolve(CellRequest("reference", "text", preset="smoke"))]
    settings = Settings(home=str(home))

    def run(ex: RayExecutor, s: Settings = settings) -> None:
        list(ex.run(cells, s, on_start=lambda c: None, progress=Progress()))

    with pytest.raises(UserError, match="--cpus-per-cell 0: use a positive number"):
        get_executor("ray", 2, cpus_per_cell=0)
    with pytest.raises(UserError, match=r"--gpus-per-cell 1\.5: use 0, a fraction below 1"):
        get_executor("ray", 2, gpus_per_cell=1.5)
    with pytest.raises(UserError, match="--partition: not an option of the ray executor"):
        get_executor("ray", 2, partition="gpu")
    with pytest.raises(UserError, match="--address nowhere: give the cluster's head as host:port"):
        run(RayExecutor(address="nowhere"))
    with pytest.raises(UserError, match="--device cuda on Ray: reserve GPUs with --gpus-per-cell"):
        run(RayExecutor(address=ray_cluster), Settings(home=str(home), device="cuda"))
    with pytest.raises(UserError, match=r"--cpus-per-cell 1 --gpus-per-cell 1: no node of the Ray cluster has "
                                        r"that much \(it has 2 CPUs, 0 GPUs in all\)"):
        run(RayExecutor(address=ray_cluster, gpus_per_cell=1))
    assert not ray.is_initialized()

"""`bench submit`: an outsider's method file lands on the board, isolated from the answers.

Real subprocesses, a real store, the real sandbox (benchmark/sandbox.py): a third-party method
(SimPO, examples/simpo.py) runs and is marked submitted; an adversarial file's every attempt to
reach the store, the cache, the environment, the benchmark's internals or the channel's other
methods fails and its cell is failed with the list; the wall-time and memory limits hold.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.store import Store

ROOT = Path(__file__).resolve().parents[1]
SIMPO = ROOT / "examples" / "simpo.py"
SUBMISSIONS = Path(__file__).parent / "submissions"
SMOKE = ["--seeds", "1", "--preset", "smoke", "--domains", "text", "-q"]


def bench(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def records(home: Path, algo: str) -> list:
    return Store(home / "prefbench.sqlite").records(algo=algo)


def test_simpo_submission_is_checked_runs_and_is_marked_on_the_board(home: Path) -> None:
    out = bench("submit", SIMPO, "--domains", "text", "--seeds", "2", "--preset", "smoke", "-q")
    assert out.returncode == 0, out.stderr
    for line in ("check: smoke cell on text: done", "gives the same metrics", "beats training on them reversed"):
        assert line in out.stdout, out.stdout
    sha = hashlib.sha256(SIMPO.read_bytes()).hexdigest()
    cells = records(home, "simpo")
    assert sorted(r.seed for r in cells) == [0, 1] and all(r.status == "done" for r in cells)
    assert {r.config["algo_source"] for r in cells} == {sha}
    board = bench("leaderboard", "--preset", "smoke")
    assert f"simpo [submitted, sha256 {sha[:12]}]" in board.stdout, board.stdout
    again = bench("submit", SIMPO, "--domains", "text", "--seeds", "2", "--preset", "smoke", "-q", "--skip-checks")
    assert "2 already stored, 0 to run" in again.stdout, again.stdout


def test_static_check_refuses_forbidden_imports_before_running_anything(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(SIMPO.read_text().replace("import torch.nn.functional as F",
                                             "import torch.nn.functional as F\nimport benchmark.runner"))
    out = bench("submit", bad, *SMOKE)
    assert out.returncode == 2
    assert "may not use benchmark.runner" in out.stderr and "Traceback" not in out.stderr
    assert not (home / "prefbench.sqlite").exists() or not records(home, "simpo")


def test_adversary_every_attempt_fails_and_its_cell_is_failed(home: Path, cache_dir: Path, tmp_path: Path) -> None:
    assert bench("run", "--algo", "reference", "--domain", "text", "--preset", "smoke", "-q").returncode == 0
    store = home / "prefbench.sqlite"
    before = {r.run_id: (r.status, r.metrics) for r in Store(store).records()}
    adversary = tmp_path / "adversary.py"
    adversary.write_text((SUBMISSIONS / "adversary.py").read_text().replace("@STORE@", str(store))
                         .replace("@CACHE@", str(cache_dir)).replace("@HOME@", str(home)))
    out = bench("submit", adversary, *SMOKE)
    assert out.returncode == 2 and "sandbox violation" in out.stderr, out.stderr
    (cell,) = records(home, "adversary")
    assert cell.status == "failed" and cell.reason.startswith("SandboxViolation: sandbox violation"), cell.reason
    trace = Path(cell.artifacts[0]).read_text()
    assert "LEAK" not in trace and "LEAK" not in out.stderr
    for refused in (f"open '{store}' (read)", f"list directory {cache_dir}", "import sqlite3", "import domains.text",
                    "import benchmark.runner", "/environ' (read)", "os.system", "subprocess.Popen",
                    f"open '{home}/planted.txt' (write)",
                    "call 'oracle' on handle", "was not given to this cell"):
        assert refused in trace, f"{refused!r} was not refused:\n{trace[-3000:]}"
    assert {r.run_id: (r.status, r.metrics) for r in Store(store).records() if r.algo != "adversary"} == before
    assert not (tmp_path / "stolen.sqlite").exists() and not (home / "planted.txt").exists()


LOOPER = '''
from dataclasses import dataclass
import torch
from benchmark.api import Algorithm

class Hog(Algorithm):
    name = "{name}"
    requires = frozenset()

    @dataclass
    class Config:
        n: int = 0
        """Unused."""

    def train(self, ctx, cfg):
{body}
'''


@pytest.mark.parametrize(("name", "body", "flags", "reason"), [
    ("spinner", "        x = torch.zeros(1)\n        while True:\n            x = x + 1",
     ["--wall-time", "8"], "ran past its wall-time limit of 8 s"),
    ("glutton", "        return torch.ones(int(6e9), dtype=torch.uint8)",
     ["--memory-gb", "1"], "ran out of its memory limit"),
    ("burner", "        x = torch.zeros(1)\n        while True:\n            x = x + 1",
     ["--cpu-time", "8"], "ran past its CPU-time limit of 9 s"),
])
def test_limits_fail_only_the_offending_cell(home: Path, tmp_path: Path, name: str, body: str, flags: list[str],
                                             reason: str) -> None:
    assert bench("run", "--algo", "reference", "--domain", "text", "--preset", "smoke", "-q").returncode == 0
    path = tmp_path / f"{name}.py"
    path.write_text(LOOPER.format(name=name, body=body))
    t0 = time.perf_counter()
    out = bench("submit", path, *SMOKE, *flags)
    assert out.returncode == 2 and reason in out.stderr, out.stderr
    assert time.perf_counter() - t0 < 120
    (cell,) = records(home, name)
    assert cell.status == "failed" and reason in cell.reason
    assert [r.status for r in records(home, "reference")] == ["done"]


def test_the_sandbox_changes_no_number(cache, tmp_path: Path) -> None:
    """The same class, trained in the sandbox and in this process: identical metrics (the view, the
    seeds, the generator and the threads travel unchanged). Only the in-process run has mid-training
    checkpoint probes (the oracle-peek metrics); both have the final policy's point."""
    import importlib.util

    from benchmark.registry import ALGORITHMS
    from benchmark.runner import CellRequest, execute_cell, resolve
    from benchmark.sandbox import Limits
    from benchmark.submit import load_submission

    spec = importlib.util.spec_from_file_location("simpo_in_process", SIMPO)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    in_process = type("SimPOInProcess", (module.SimPO,), {"name": "simpo_in_process"})
    ALGORITHMS.add("simpo_in_process", in_process)
    sandboxed = load_submission(SIMPO, Limits(wall_s=300))
    try:
        metrics, final = {}, {}
        for name in ("simpo_in_process", sandboxed.name):
            rec = execute_cell(resolve(CellRequest(name, "text", preset="smoke")), cache=cache, home=tmp_path)
            assert rec.status == "done", rec.reason
            metrics[name] = {k: v for k, v in rec.metrics.items() if k != "wall_s" and not k.startswith("oracle_peek/")}
            final[name] = (rec.curves["checkpoint/gold_gain"][-1], rec.curves["checkpoint/kl"][-1])
        assert metrics["simpo_in_process"] == metrics[sandboxed.name]
        assert final["simpo_in_process"] == final[sandboxed.name]
    finally:
        ALGORITHMS.remove("simpo_in_process")
        ALGORITHMS.remove(sandboxed.name)

"""The `bench` command as a user runs it: real subprocesses, a real store, the smoke preset."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = [sys.executable, "-m", "benchmark.cli"]


def bench(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture()
def env(home: Path) -> dict:
    e = dict(os.environ)
    e["COLUMNS"] = "200"
    return e


def test_list_shows_every_registry(env: dict) -> None:
    out = bench("list", env=env)
    assert out.returncode == 0, out.stderr
    for word in ["text", "dpo", "ipo", "kto", "sft", "smoke", "quick", "noisy-labels", "partial-coverage"]:
        assert word in out.stdout


def test_run_prints_the_headline_metrics_and_stores_the_cell(env: dict, home: Path) -> None:
    out = bench("run", "--algo", "dpo", "--domain", "text", "--preset", "smoke", "--seed", "1", env=env)
    assert out.returncode == 0, out.stderr
    for metric in ["gold_reward", "win_rate", "kl_to_ref", "normalized_score"]:
        assert metric in out.stdout
    # piped output gets plain progress lines (a log is never silent), never rich's control codes
    assert "train dpo: done" in out.stdout and "\x1b[" not in out.stdout
    assert "deprecated" not in out.stderr, "a library deprecation warning reaches the user"
    rows = sqlite3.connect(home / "prefbench.sqlite").execute("SELECT run_id, status FROM cells").fetchall()
    assert len(rows) == 1 and rows[0][1] == "done"
    run_id = rows[0][0]
    # a second invocation does not run the cell again
    again = bench("run", "--algo", "dpo", "--domain", "text", "--preset", "smoke", "--seed", "1", env=env)
    assert again.returncode == 0 and "already done" in again.stdout
    # runs / show
    runs = bench("runs", env=env)
    assert runs.returncode == 0 and run_id in runs.stdout
    show = bench("show", run_id[:6], env=env)
    assert show.returncode == 0, show.stderr
    assert "algo.beta" in show.stdout and "training curves" in show.stdout and "gold_reward" in show.stdout
    js = bench("show", run_id, "--json", env=env)
    import json

    rec = json.loads(js.stdout)
    assert rec["run_id"] == run_id and rec["config"]["algo_config"]["beta"] == 0.1


def test_set_overrides_reach_the_config(env: dict, home: Path) -> None:
    out = bench("run", "-a", "kto", "-d", "text", "-p", "smoke", "--seed", "2", "--set", "beta=0.05", "-q", env=env)
    assert out.returncode == 0, out.stderr
    import json

    conn = sqlite3.connect(home / "prefbench.sqlite")
    cfg = json.loads(conn.execute("SELECT config_json FROM cells").fetchone()[0])
    assert cfg["algo_config"]["beta"] == 0.05 and cfg["seed"] == 2


def test_show_unknown_run_in_an_existing_store(env: dict, home: Path) -> None:
    assert bench("run", "-a", "sft", "-d", "text", "-p", "smoke", "-q", env=env).returncode == 0
    out = bench("show", "zzzz", env=env)
    assert out.returncode == 2 and "no run 'zzzz'" in out.stderr and "bench runs" in out.stderr


def test_a_cell_killed_mid_training_is_not_done_and_reruns(env: dict, home: Path) -> None:
    args = ["run", "-a", "dpo", "-d", "text", "-p", "smoke", "--budget", "steps=1000", "-q"]
    db = home / "prefbench.sqlite"
    # prepare the domain first so that the kill lands in training, not preparation
    assert bench("run", "-a", "sft", "-d", "text", "-p", "smoke", "-q", env=env).returncode == 0
    proc = subprocess.Popen([*BENCH, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300  # a loaded machine takes a while to import torch and load the cache
        status = None
        while time.time() < deadline:
            row = sqlite3.connect(db).execute(
                "SELECT status FROM cells WHERE algo='dpo'").fetchone()
            status = row[0] if row else None
            if status == "running":
                break
            time.sleep(0.1)
        assert status == "running"
        time.sleep(2.0)  # into the 1000 training steps (the domain is cached)
        assert proc.poll() is None, "the cell finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    row = sqlite3.connect(db).execute("SELECT status, finished_at FROM cells WHERE algo='dpo'").fetchone()
    assert row == ("running", None), "a killed cell must not look finished"
    out = bench(*args, env=env)
    assert out.returncode == 0, out.stderr
    rows = sqlite3.connect(db).execute("SELECT status, train_steps FROM cells WHERE algo='dpo'").fetchall()
    assert rows == [("done", 1000)], "the rerun redid the cell (one row, done)"


def test_line_progress_prints_every_tenth() -> None:
    import io

    from benchmark.progress import LineProgress

    buf = io.StringIO()
    prog = LineProgress(stream=buf)
    with prog.task("prepare", 50) as task:
        for _ in range(50):
            task.advance()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10 and "prepare: 5/50 (10%)" in lines[0] and "prepare: done (50/50)" in lines[-1]

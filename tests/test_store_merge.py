"""``bench store merge``: the stores of two machines that each ran part of a grid become one (real
smoke cells, real stores; one preparation cache for both "machines")."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.store import Store, merge_stores

BENCH = [sys.executable, "-m", "benchmark.cli"]


def bench(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM cells ORDER BY run_id").fetchall()


def copy(src: Path, dst: Path) -> Path:
    """A consistent copy of a store (SQLite's backup: the WAL included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def edit(db: Path, sql: str, *args: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, args)


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, Path]:
    """Two homes: A ran sft seeds 0, 1; B ran seeds 1, 2 (seed 1 on both, independently)."""
    root = tmp_path_factory.mktemp("machines")
    for name, seeds in (("a", "0,1"), ("b", "1,2")):
        out = bench("grid", "--algos", "sft", "--domains", "text", "--seeds", seeds, "--preset", "smoke", "-q",
                    home=root / name)
        assert out.returncode == 0, out.stdout + out.stderr
    return root / "a" / "prefbench.sqlite", root / "b" / "prefbench.sqlite"


def test_merge_two_real_stores_keeps_provenance_and_is_idempotent(machines: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    a, b = machines
    out_db = tmp_path / "merged" / "all.sqlite"
    out = bench("store", "merge", str(a), str(b), "--into", str(out_db), home=tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 added, 0 replaced, 0 already there" in out.stdout  # A
    assert "1 added, 0 replaced, 1 already there" in out.stdout  # B: seed 1 has the same metrics
    merged = Store(out_db, readonly=True).records()
    assert [(r.seed, r.status) for r in merged] == [(0, "done"), (1, "done"), (2, "done")]
    with Store(a, readonly=True) as sa, Store(b, readonly=True) as sb:
        fa, fb = sa.fingerprint(), sb.fingerprint()
        assert sa.get(merged[0].run_id).metrics == merged[0].metrics
    origins = [r.env["merged_from"] for r in merged]
    assert [o[0]["store"] for o in origins] == [str(a.resolve()), str(a.resolve()), str(b.resolve())]
    assert [o[0]["store_sha256"] for o in origins] == [fa, fa, fb]
    before = rows(out_db)
    again = bench("store", "merge", str(a), str(b), "--into", str(out_db), home=tmp_path / "home")
    assert again.returncode == 0 and "0 cell(s) written" in again.stdout, again.stdout + again.stderr
    assert rows(out_db) == before
    # the merged cells are the store's like any others
    runs = bench("runs", "--store", str(out_db), home=tmp_path / "home")
    assert runs.returncode == 0 and "3 cells in" in runs.stdout, runs.stderr
    board = bench("leaderboard", "--store", str(out_db), "--reps", "100", home=tmp_path / "home")
    assert board.returncode == 0 and "sft" in board.stdout, board.stderr


def test_a_conflict_refuses_the_whole_merge(machines: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = machines
    c = copy(b, tmp_path / "c.sqlite")  # "another code version": seed 1 done, with another gold reward
    [(run_id, metrics)] = [(r, m) for r, m, s in sqlite3.connect(c).execute(
        "SELECT run_id, metrics_json, seed FROM cells") if s == 1]
    edit(c, "UPDATE cells SET metrics_json=? WHERE run_id=?",
         json.dumps({**json.loads(metrics), "gold_reward": -1.0}), run_id)
    target = copy(a, tmp_path / "target.sqlite")
    before = rows(target)
    out = bench("store", "merge", str(c), "--into", str(target), home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"1 cell(s) are done in two stores with different metrics ({run_id};" in lines[0]
    assert "nothing was written: pass --prefer STORE" in lines[0]
    assert rows(target) == before, "a refused merge changed the target"
    # into a new store: nothing is created
    fresh = tmp_path / "fresh.sqlite"
    with pytest.raises(UserError, match="different metrics"):
        merge_stores(fresh, [a, c])
    assert not fresh.exists()
    # --prefer settles it: the preferred store's record, the others added as usual
    report = merge_stores(target, [c], prefer=c)
    assert (report.sources[0].replaced, report.sources[0].added) == (1, 1)
    assert Store(target, readonly=True).get(run_id).metrics["gold_reward"] == -1.0
    report = merge_stores(target, [a], prefer=target)  # the target's own record wins
    assert report.changed == 0 and report.sources[0].kept == 1


def test_finished_beats_running_and_failed(machines: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = machines
    killed = copy(a, tmp_path / "killed.sqlite")  # a machine killed mid-cell, another failed
    ids = [r for (r,) in sqlite3.connect(killed).execute("SELECT run_id FROM cells ORDER BY seed")]
    edit(killed, "UPDATE cells SET status='running', metrics_json='{}', finished_at=NULL WHERE run_id=?", ids[0])
    edit(killed, "UPDATE cells SET status='failed', reason='interrupted', metrics_json='{}' WHERE run_id=?", ids[1])
    first = copy(killed, tmp_path / "first.sqlite")
    report = merge_stores(first, [a])  # the done records replace the running and failed ones
    assert (report.sources[0].replaced, report.sources[0].added) == (2, 0)
    assert [r.status for r in Store(first, readonly=True).records()] == ["done", "done"]
    done_first = copy(a, tmp_path / "done_first.sqlite")
    report = merge_stores(done_first, [killed])  # and are kept over them
    assert report.changed == 0 and report.sources[0].kept == 2
    assert rows(done_first) == rows(a)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no store at"),
        ("itself", "is the target store itself"),
        ("prefer", "--prefer"),
        ("garbage", "not a readable prefbench store"),
    ],
)
def test_merge_mistakes_are_one_line(case: str, expected: str, tmp_path: Path) -> None:
    target = tmp_path / "t.sqlite"
    Store(target).close()
    src = {"missing": tmp_path / "none.sqlite", "itself": target, "prefer": target,
           "garbage": tmp_path / "garbage.sqlite"}[case]
    if case == "garbage":
        src.write_bytes(b"not sqlite at all" * 100)
    if case == "prefer":
        src = copy(target, tmp_path / "other.sqlite")
    extra = ["--prefer", str(tmp_path / "elsewhere.sqlite")] if case == "prefer" else []
    out = bench("store", "merge", str(src), "--into", str(target), *extra, home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert expected in lines[0], lines[0]


def test_merge_into_the_default_store(machines: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = machines
    home = tmp_path / "home"
    out = bench("store", "merge", str(a), home=home)
    assert out.returncode == 0, out.stderr
    assert f"into {home / 'prefbench.sqlite'}" in out.stdout
    assert len(Store(home / "prefbench.sqlite", readonly=True).records()) == 2
    shutil.rmtree(home)

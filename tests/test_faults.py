"""Faults of long runs on shared machines: a locked, read-only, full or old store, a bad cache,
two processes on one cell. Nothing finished is ever lost; no cell is computed twice.

Real SQLite and real subprocesses throughout. Two faults cannot be made from outside a process when
the tests run as root (permissions do not bind root): the read-only database is SQLite's own
``mode=ro``, and the full disk is SQLite's own "database or disk is full" error raised by the
connection at the write that stores a finished cell.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.cache import PreparationCache
from benchmark.errors import UserError
from benchmark.progress import Progress
from benchmark.runner import CellRequest, prepare_domain, resolve, run_cell
from benchmark.store import SCHEMA_VERSION, Store

BENCH = [sys.executable, "-m", "benchmark.cli"]
SMOKE_TEXT = ["-d", "text", "-p", "smoke", "-q"]

V1_SCHEMA = """
CREATE TABLE cells (
    run_id TEXT PRIMARY KEY, algo TEXT NOT NULL, domain TEXT NOT NULL, condition TEXT NOT NULL,
    preset TEXT NOT NULL, seed INTEGER NOT NULL, config_hash TEXT NOT NULL, config_json TEXT NOT NULL,
    code_version TEXT NOT NULL, packages_json TEXT NOT NULL, env_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'na')), reason TEXT,
    metrics_json TEXT, curves_json TEXT, timings_json TEXT, artifacts_json TEXT, feedback_used INTEGER,
    online_samples INTEGER, train_steps INTEGER, started_at REAL NOT NULL, finished_at REAL, wall_s REAL);
CREATE INDEX cells_by_key ON cells (domain, algo, condition, preset, seed);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO cells (run_id, algo, domain, condition, preset, seed, config_hash, config_json, code_version,
    packages_json, env_json, status, metrics_json, started_at, finished_at, wall_s)
VALUES ('abc123', 'dpo', 'text', 'default', 'smoke', 0, 'h', '{}', 'v1', '{}', '{}', 'done',
        '{"normalized_score": 7.5}', 1.0, 2.0, 1.0);
"""
"""The schema (and one finished cell) as the first version of the store wrote it."""


def bench_env(home: Path, **extra: str) -> dict:
    return {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200", **extra}


def wait_until(predicate, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def running_row(db: Path, algo: str) -> tuple | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT status, started_at FROM cells WHERE algo=?", (algo,)).fetchone()
    except sqlite3.OperationalError:
        return None


# -- the store's schema ------------------------------------------------------------------------------
def test_a_store_of_the_previous_schema_is_migrated_and_keeps_its_cells(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    with Store(path, readonly=True) as st:  # reading does not migrate
        assert st.schema_version() == 1 and st.get("abc123").metrics == {"normalized_score": 7.5}
    with Store(path) as st:
        assert st.schema_version() == SCHEMA_VERSION == 2
        assert st.get("abc123").status == "done"
        assert st.claim(["abc123"]) == {}  # the table the migration added works
        st.release(["abc123"])


def test_a_newer_store_is_refused_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    with pytest.raises(UserError, match=f"schema version 7, written by a newer prefbench; this one reads versions "
                                        f"up to {SCHEMA_VERSION}"):
        Store(path)


# -- locked, read-only, full -------------------------------------------------------------------------
def test_a_store_locked_for_long_is_one_line_and_still_readable(tmp_path: Path, home: Path) -> None:
    assert subprocess.run([*BENCH, "run", "-a", "reference", *SMOKE_TEXT], env=bench_env(home)).returncode == 0
    holder = sqlite3.connect(home / "prefbench.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer that never lets go
    try:
        env = bench_env(home, PREFBENCH_STORE_TIMEOUT="1")
        out = subprocess.run([*BENCH, "run", "-a", "sft", *SMOKE_TEXT], env=env, capture_output=True, text=True)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "another process has held its lock for more than 1s" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        listed = subprocess.run([*BENCH, "runs"], env=env, capture_output=True, text=True)
        assert listed.returncode == 0 and "reference" in listed.stdout
    finally:
        holder.rollback()
        holder.close()


def test_a_read_only_store_is_one_line_and_still_readable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / "prefbench.sqlite"
    with Store(path) as st:
        st.start(run_id="r1", algo="dpo", domain="text", condition="default", preset="smoke", seed=0,
                 config_hash="h", config={}, code_version="v", packages={}, env={})
    real_connect = sqlite3.connect

    def read_only(database, *args, **kwargs):  # the file as a read-only mount would give it
        return real_connect(f"file:{Path(database).resolve()}?mode=ro", *args, **{**kwargs, "uri": True})

    monkeypatch.setattr("benchmark.store.sqlite3.connect", read_only)
    with pytest.raises(UserError, match="it is read-only; make it writable or pass --store PATH"):
        Store(path)
    monkeypatch.undo()
    with Store(path, readonly=True) as st:
        assert st.get("r1") is not None


class FullDisk:
    """A real connection whose disk fills when a finished cell is written."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params=()):
        if sql.lstrip().startswith("INSERT OR REPLACE INTO cells VALUES") and params[11] != "running":
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_a_full_disk_at_the_last_write_loses_nothing(home: Path, cache: PreparationCache) -> None:
    cell = resolve(CellRequest("reference", "text", preset="smoke"))
    st = Store(home / "prefbench.sqlite")
    st._conn = FullDisk(st._conn)
    with pytest.raises(UserError, match="the disk is full; free some space") as err:
        run_cell(cell, store=st, cache=cache)
    assert f"was saved to {home / 'unsaved' / cell.run_id}.json" in str(err.value)
    assert st.status_of(cell.run_id) == "running"  # visibly not done, never a half-written done
    st.close()
    with Store(home / "prefbench.sqlite") as st:  # space freed: the next writer takes the result in
        rec = st.get(cell.run_id)
        assert rec.status == "done" and rec.metrics["normalized_score"] == 0.0
    assert not list((home / "unsaved").glob("*.json"))


# -- one computation per cell ----------------------------------------------------------------------
def test_two_identical_runs_at_once_train_the_cell_once(home: Path) -> None:
    # long enough (≈ 15 s at one thread) that the second invocation starts while the first still trains
    args = [*BENCH, "run", "-a", "dpo", *SMOKE_TEXT, "--budget", "steps=1500"]
    db = home / "prefbench.sqlite"
    assert subprocess.run([*BENCH, "run", "-a", "reference", *SMOKE_TEXT], env=bench_env(home)).returncode == 0
    first = subprocess.Popen(args, env=bench_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (running_row(db, "dpo") or ("",))[0] == "running")
        started = running_row(db, "dpo")[1]
        second = subprocess.run(args, env=bench_env(home), capture_output=True, text=True, timeout=600)
        _, err1 = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0 and second.returncode == 0, (err1, second.stderr)
    assert "is being run by another process" in second.stderr and "waiting for its result" in second.stderr
    status, started_after = running_row(db, "dpo")
    assert status == "done" and started_after == started, "the second invocation trained the cell again"
    assert "normalized_score" in second.stdout  # it shows the result the first one stored


def test_two_grids_at_once_never_run_a_cell_twice(home: Path) -> None:
    args = [*BENCH, "grid", "-a", "reference,sft", "-d", "text", "-p", "smoke", "--seeds", "2", "-q"]
    assert subprocess.run([*BENCH, "run", "-a", "reference", *SMOKE_TEXT], env=bench_env(home)).returncode == 0
    a = subprocess.Popen(args, env=bench_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(args, env=bench_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    ran = [{ln.split("]")[0] for ln in out.splitlines() if " done " in ln and "another process" not in ln}
           for out, _ in outs]
    assert not (ran[0] & ran[1]), f"both grids ran {ran[0] & ran[1]}"
    with Store(home / "prefbench.sqlite", readonly=True) as st:
        assert sorted(r.status for r in st.records()) == ["done"] * 4


def test_a_dead_runners_claim_and_running_row_are_stale(home: Path, cache: PreparationCache) -> None:
    """A process that claimed a cell and wrote its ``running`` row, then was SIGKILLed: the next
    run does not wait for it and redoes the cell."""
    cell = resolve(CellRequest("reference", "text", preset="smoke"))
    code = (
        "import os, signal, sys\n"
        "from benchmark.store import Store\nfrom benchmark.runner import CellRequest, new_record, resolve\n"
        "cell = resolve(CellRequest('reference', 'text', preset='smoke'))\n"
        f"st = Store({str(home / 'prefbench.sqlite')!r})\n"
        "assert st.claim([cell.run_id]) == {}\nst.put(new_record(cell))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=bench_env(home))
    assert proc.returncode == -signal.SIGKILL
    with Store(home / "prefbench.sqlite") as st:
        assert st.status_of(cell.run_id) == "running" and st.holder(cell.run_id) is None
        t0 = time.perf_counter()
        rec = run_cell(cell, store=st, cache=cache)
        assert rec.status == "done" and time.perf_counter() - t0 < 120


def test_a_live_claim_is_seen_by_another_store_handle(tmp_path: Path) -> None:
    """Claims bind processes, not handles: a claim made by a live subprocess is busy here."""
    path = tmp_path / "s.sqlite"
    Store(path).close()
    code = ("import sys, time\nfrom benchmark.store import Store\n"
            f"st = Store({str(path)!r})\nassert st.claim(['x']) == {{}}\nprint('claimed', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "claimed"
        with Store(path) as st:
            busy = st.claim(["x", "y"])
            assert list(busy) == ["x"] and st.holder("x") is not None
            proc.kill()
            proc.wait()
            assert st.holder("x") is None and st.claim(["x"]) == {}
    finally:
        if proc.poll() is None:
            proc.kill()


# -- the preparation cache ---------------------------------------------------------------------------
def _text_cache_copy(cache_dir: Path, tmp_path: Path) -> tuple[PreparationCache, Path, tuple]:
    cell = resolve(CellRequest("sft", "text", preset="smoke"))
    prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(cache_dir), torch.device("cpu"), Progress())
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir / "text", copy / "text")
    from benchmark.runner import _LOADED, preparation_key

    _LOADED.clear()  # so that the next prepare_domain reads the (damaged) file
    key = preparation_key(cell.domain_cls(cell.domain_cfg, torch.device("cpu")), PreparationCache(copy))
    return PreparationCache(copy), PreparationCache(copy).path("text", key), (cell.domain_cls, cell.domain_cfg)


@pytest.mark.parametrize("damage", ["truncated", "other code", "unwritable"])
def test_a_bad_preparation_cache_is_rebuilt_and_the_cell_runs(damage: str, cache_dir: Path, tmp_path: Path,
                                                              capfd: pytest.CaptureFixture) -> None:
    cache, path, (domain_cls, cfg) = _text_cache_copy(cache_dir, tmp_path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "other code":  # a loadable file whose contents this code cannot use
        torch.save({"domain": {"weights": torch.zeros(3)}, "reference_eval": {}}, path)
    else:  # the cache file cannot be replaced: the built state is used as it is, with a warning
        path.unlink()
        path.mkdir()
    _, stats, built = prepare_domain(domain_cls, cfg, cache, torch.device("cpu"), Progress())
    assert built and "splits" in stats
    if damage == "unwritable":
        assert "warning: cannot write the preparation cache" in capfd.readouterr().err
    else:
        state = torch.load(path, weights_only=True)  # rebuilt in place, and loadable
        assert "splits" in state["reference_eval"]
    from benchmark.runner import _LOADED

    _LOADED.clear()


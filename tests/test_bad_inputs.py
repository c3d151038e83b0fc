"""Bad inputs and faults, as a table: each one a one-line message that names the fix, its exit
status, no traceback, and afterwards the store still opens with every finished cell in it.

Every case runs ``bench`` as a user would (a fresh process, a real SQLite store, the smoke preset):
forked from a server that imported the CLI once (``tests/warm_bench.py``), or, where the case's
environment changes what is imported (plugins on ``PYTHONPATH``), a new interpreter.
The faults that cannot be made from outside a process as root (a read-only database, a disk that
fills during a write) are in ``test_faults.py``, in-process, on the real SQLite errors.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from benchmark.store import SCHEMA_VERSION, Store

BENCH = [sys.executable, "-m", "benchmark.cli"]
RUN = ["run", "-a", "reference", "-d", "text", "-p", "smoke", "-q"]


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    expected: str
    """A piece of the one line printed (on stderr, or stdout for exit 0)."""
    code: int = 2
    setup: Callable[[Path], None] | None = None
    """Prepares the fault in the case's home (``<home>/prefbench.sqlite`` is the store)."""
    env: dict[str, str] = field(default_factory=dict)
    store_kept: bool = True
    """After the case the store opens and the template's finished cell is still there (False: the
    case's "store" is not one — its bytes must then be unchanged)."""


def bench(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


# -- fault makers ------------------------------------------------------------------------------
def garbage_store(home: Path) -> None:
    (home / "prefbench.sqlite").write_text("garbage\n" * 100)
    for suffix in ("-wal", "-shm"):
        (home / f"prefbench.sqlite{suffix}").unlink(missing_ok=True)


def foreign_sqlite(home: Path) -> None:
    garbage_store(home)
    (home / "prefbench.sqlite").unlink()
    conn = sqlite3.connect(home / "prefbench.sqlite")
    conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    conn.commit()
    conn.close()


def newer_schema(home: Path) -> None:
    conn = sqlite3.connect(home / "prefbench.sqlite")
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()


def non_empty_folder(home: Path) -> None:
    (home / "out").mkdir()
    (home / "out" / "thesis.tex").write_text("precious")


def file_in_the_way(home: Path) -> None:
    (home / "blocker").write_text("a file, not a directory")


def ambiguous_ids(home: Path) -> None:
    """A second stored cell whose run id shares the first one's first character."""
    with Store(home / "prefbench.sqlite") as st:
        rec = st.records()[0]
        st.put(dataclasses.replace(rec, run_id=rec.run_id[0] + "0" * (len(rec.run_id) - 1), seed=rec.seed + 1))


def empty_store(home: Path) -> None:
    (home / "empty").mkdir()
    Store(home / "empty" / "prefbench.sqlite").close()


BROKEN_PLUGIN_ENTRY = "[prefbench.algorithms]\nbroken = prefbench_missing_module:Algo\n"


def broken_plugin(home: Path) -> None:
    """An installed distribution whose algorithm entry point fails to import."""
    dist = home / "plugins" / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(BROKEN_PLUGIN_ENTRY)


def run_ids(store: Path) -> set[str]:
    with Store(store, readonly=True) as st:
        return {r.run_id for r in st.records()}


def first_run_id(home: Path) -> str:
    with Store(home / "prefbench.sqlite", readonly=True) as st:
        return st.records()[0].run_id


PLUGIN_ENV = {"PYTHONPATH": "{home}/plugins"}
SMOKE = ["-d", "text", "-p", "smoke"]
CASES = [
    # -- bench run ---------------------------------------------------------------------------------
    Case("unknown algorithm", ["run", "-a", "dpx", *SMOKE], "unknown algorithm 'dpx': did you mean 'dpo'?"),
    Case("unknown domain", ["run", "-a", "dpo", "-d", "txt", "-p", "smoke"], "unknown domain 'txt': did you mean"),
    Case("unknown preset", ["run", "-a", "dpo", "-d", "text", "-p", "smok"], "unknown preset 'smok'"),
    Case("unknown condition", ["run", "-a", "dpo", *SMOKE, "-c", "noisy"], "unknown condition 'noisy'"),
    Case("--set unknown key", ["run", "-a", "dpo", *SMOKE, "--set", "betta=0.1"], "did you mean 'beta'?"),
    Case("--set wrong type", ["run", "-a", "dpo", *SMOKE, "--set", "beta=high"], "beta expects float"),
    Case("--set NaN", ["run", "-a", "dpo", *SMOKE, "--set", "beta=nan"], "beta must be a finite number"),
    Case("--set inf", ["run", "-a", "dpo", *SMOKE, "--set", "beta=-inf"], "beta must be a finite number"),
    Case("--set not key=value", ["run", "-a", "dpo", *SMOKE, "--set", "beta"], "write key=value"),
    Case("--set outside the choices", ["run", "-a", "dpo", *SMOKE, "--set", "loss_type=cubic"],
         "loss_type must be one of"),
    Case("--set refused by the config", ["run", "-a", "dpo", *SMOKE, "--set", "loss_type=robust",
                                         "--set", "label_smoothing=0.6"], "must be in [0, 0.5)"),
    Case("--budget negative", ["run", "-a", "dpo", *SMOKE, "--budget", "steps=-5"], "steps must be >= 0"),
    Case("--budget not a number", ["run", "-a", "dpo", *SMOKE, "--budget", "steps=many"], "--budget steps=many"),
    Case("--budget zero batch", ["run", "-a", "dpo", *SMOKE, "--budget", "batch_size=0"], "batch_size must be >= 1"),
    Case("--domain-set unknown key", ["run", "-a", "dpo", *SMOKE, "--domain-set", "vocab=3"], "has no such key"),
    Case("negative seed", ["run", "-a", "dpo", *SMOKE, "--seed", "-3"], "seeds are non-negative"),
    Case("unknown device", ["run", "-a", "dpo", *SMOKE, "--device", "tpu"], "--device tpu: use cpu or cuda"),
    *([Case("cuda without a GPU", ["run", "-a", "dpo", *SMOKE, "--device", "cuda"], "no CUDA device is visible")]
      if not torch.cuda.is_available() else []),
    Case("store path under a file", [*RUN, "--store", "{home}/blocker/s.sqlite"], "cannot write the store",
         setup=file_in_the_way),
    Case("cache path under a file", ["run", "-a", "sft", *SMOKE, "--cache", "{home}/blocker/cache"],
         "cannot create the cache directory", setup=file_in_the_way),
    Case("grid cache path under a file", ["grid", "-a", "sft", *SMOKE, "--seeds", "1", "--cache",
                                          "{home}/blocker/cache"], "cannot create the cache directory",
         setup=file_in_the_way),
    Case("store timeout not a number", RUN, "PREFBENCH_STORE_TIMEOUT='soon': give seconds",
         env={"PREFBENCH_STORE_TIMEOUT": "soon"}),
    # -- bench submit ------------------------------------------------------------------------------
    Case("submit a missing file", ["submit", "{home}/nope.py", "--preset", "smoke"], "no such file"),
    Case("submit a negative limit", ["submit", "examples/simpo.py", "--wall-time", "-1"],
         "--wall-time, --cpu-time and --memory-gb must be positive"),
    # -- bench grid --------------------------------------------------------------------------------
    Case("--seeds not a number", ["grid", *SMOKE, "--seeds", "abc"], "give a count"),
    Case("--seeds negative", ["grid", *SMOKE, "--seeds", "0,-1"], "non-negative seed"),
    Case("grid unknown algorithm", ["grid", "-a", "dpx", *SMOKE], "unknown algorithm 'dpx'"),
    Case("grid unknown condition", ["grid", *SMOKE, "-c", "nope"], "unknown condition 'nope'"),
    Case("unknown executor", ["grid", *SMOKE, "-e", "nope"], "unknown executor"),
    Case("option of another executor", ["grid", *SMOKE, "-e", "process", "--partition", "gpu"],
         "--partition: not an option of the process executor"),
    Case("zero workers", ["grid", *SMOKE, "-e", "process", "-j", "0"], "--workers 0"),
    Case("zero threads", ["grid", *SMOKE, "--threads", "0"], "--threads 0"),
    Case("grid --set no algorithm has", ["grid", "-a", "sft", *SMOKE, "--set", "beta=0.1"],
         "none of the algorithms sft has this key"),
    # -- bench runs / show -------------------------------------------------------------------------
    Case("runs unknown status", ["runs", "--status", "finished"], "use running, done, failed or na"),
    Case("show unknown run", ["show", "zzzz"], "no run 'zzzz'"),
    Case("show empty id", ["show", ""], "give a run id"),
    Case("show ambiguous id", ["show", "{first_char}"], "is ambiguous (2 runs)", setup=ambiguous_ids),
    Case("show without a store", ["show", "abc", "--store", "{home}/none.sqlite"], "no store at"),
    # -- bench leaderboard / export ----------------------------------------------------------------
    Case("leaderboard unknown format", ["leaderboard", "-f", "pdf"], "--format pdf"),
    Case("leaderboard too few reps", ["leaderboard", "--reps", "5"], "at least 100 bootstrap"),
    Case("leaderboard html to the terminal", ["leaderboard", "-f", "html"], "pass --out DIR"),
    Case("leaderboard on an empty store", ["leaderboard", "--store", "{home}/empty/prefbench.sqlite"],
         "no cells in", setup=empty_store),
    Case("export unknown format", ["export", "-d", "robot", "-f", "parquet"], "unknown export format"),
    Case("export into a non-empty folder", ["export", "-d", "robot", "-f", "minari", "-p", "smoke",
                                            "--out", "{home}/out"], "is not empty (thesis.tex)",
         setup=non_empty_folder),
    # -- the store ---------------------------------------------------------------------------------
    Case("store is garbage (run)", RUN, "is not a readable prefbench store", setup=garbage_store, store_kept=False),
    Case("store is garbage (runs)", ["runs"], "is not a readable prefbench store", setup=garbage_store,
         store_kept=False),
    Case("store is another tool's database", RUN, "is an SQLite database but not a prefbench store",
         setup=foreign_sqlite, store_kept=False),
    Case("store from a newer prefbench", RUN, f"schema version 99, written by a newer prefbench; this one reads "
         f"versions up to {SCHEMA_VERSION}", setup=newer_schema, store_kept=False),
    # -- plugins -----------------------------------------------------------------------------------
    Case("a broken plugin, named", ["run", "-a", "broken", *SMOKE], "algorithm 'broken' cannot be loaded",
         setup=broken_plugin, env=PLUGIN_ENV),
    Case("a broken plugin, listed", ["list"], "cannot be loaded", code=0, setup=broken_plugin, env=PLUGIN_ENV),
    Case("a broken plugin, grid of all", ["grid", "-a", "all", *SMOKE, "--seeds", "1", "--dry-run"],
         "would run", code=0, setup=broken_plugin, env=PLUGIN_ENV),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A home whose store holds one finished cell (the reference on text, smoke)."""
    home = tmp_path_factory.mktemp("template-home")
    env = {**os.environ, "PREFBENCH_HOME": str(home), "PREFBENCH_CACHE": str(cache_dir)}
    out = bench(*RUN, env=env)
    assert out.returncode == 0, out.stderr
    return home


def test_the_table_is_long_enough() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_or_fault(case: Case, template: Path, tmp_path: Path, cache_dir: Path, warm_bench) -> None:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    if case.setup is not None:
        case.setup(home)
    store = home / "prefbench.sqlite"
    before = store.read_bytes() if not case.store_kept else None
    stored = run_ids(store) if case.store_kept else set()
    fill = {"home": str(home), "first_char": first_run_id(home)[0] if case.store_kept else ""}
    env = {**os.environ, "PREFBENCH_HOME": str(home), "PREFBENCH_CACHE": str(cache_dir), "COLUMNS": "300",
           **{k: v.format(**fill) for k, v in case.env.items()}}
    if "PYTHONPATH" in case.env and os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    args = [a.format(**fill) for a in case.args]
    out = bench(*args, env=env) if "PYTHONPATH" in case.env else warm_bench.run(*args, env=env)
    assert out.returncode == case.code, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr + out.stdout
    if case.code == 0:
        assert case.expected in out.stdout + out.stderr
    else:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1, out.stderr
        assert case.expected in lines[0].replace("  ", " ")
    if case.store_kept:
        with Store(store, readonly=True) as st:
            assert first_run_id(template) in {r.run_id for r in st.records(status="done")}
        if case.code != 0:
            assert run_ids(store) == stored, "a refused command must not add or drop a cell"
    else:
        assert store.read_bytes() == before, "a file that is not a prefbench store must never be written"

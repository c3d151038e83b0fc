"""The SQLite store: lifecycle of a cell, lookups, and bad paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.store import Store

KEY = dict(algo="dpo", domain="text", condition="default", preset="smoke", seed=0, config_hash="abc",
           config={"x": 1}, code_version="v", packages={}, env={})


def test_lifecycle_running_then_done(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.start(run_id="r1", **KEY)
    rec = st.get("r1")
    assert rec.status == "running" and rec.finished_at is None
    st.finish("r1", status="done", metrics={"gold_reward": 1.5}, curves={"loss": [(0, 1.0)]}, feedback_used=3,
              train_steps=6)
    rec = st.get("r1")
    assert rec.status == "done" and rec.metrics == {"gold_reward": 1.5} and rec.curves == {"loss": [[0, 1.0]]}
    assert rec.wall_s is not None and rec.wall_s >= 0 and rec.feedback_used == 3
    # a restart of the same cell replaces the row (one row per cell)
    st.start(run_id="r1", **KEY)
    assert [r.status for r in st.records()] == ["running"]


def test_persists_across_connections_and_reads_only(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.start(run_id="r2", **KEY)
        st.finish("r2", status="failed", reason="ValueError: boom")
    ro = Store(path, readonly=True)
    rec = ro.find("r")
    assert rec.status == "failed" and rec.reason == "ValueError: boom"
    assert ro.records(status="done") == [] and len(ro.records(status="failed")) == 1


def test_find_prefix_errors(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.start(run_id="aa1", **KEY)
    st.start(run_id="aa2", **{**KEY, "seed": 1})
    with pytest.raises(UserError, match="ambiguous"):
        st.find("aa")
    with pytest.raises(UserError, match="no run 'zz'"):
        st.find("zz")
    assert st.find("aa2").seed == 1


def test_missing_store_readonly_and_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no store at"):
        Store(tmp_path / "none.sqlite", readonly=True)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write the store"):
        Store(blocker / "s.sqlite")


def test_finish_requires_a_started_cell(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    with pytest.raises(KeyError):
        st.finish("never-started", status="done")


def test_editing_a_cached_module_changes_the_preparation_key(tmp_path) -> None:
    """The cache key covers every module whose output the preparation cache holds: an edit to
    evaluation.py (reference statistics) or data.py (seeds) in a copy of the repository rebuilds;
    an edit to the leaderboard does not."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "repo"
    for sub in ("benchmark", "domains", "baselines", "leaderboard"):
        shutil.copytree(root / sub, copy / sub, ignore=shutil.ignore_patterns("__pycache__"))
    edits = ["leaderboard/tables.py", "benchmark/evaluation.py", "benchmark/data.py", "benchmark/preparation.py"]
    probe = ("import json, pathlib\nfrom benchmark.cache import PreparationCache\n"
             "from benchmark.runner import CellRequest, resolve, preparation_key\n"
             "c = resolve(CellRequest('sft', 'text', preset='smoke'))\n"
             f"cache = PreparationCache({str(tmp_path / 'c')!r})\n"
             "def key(): return preparation_key(c.domain_cls(c.domain_cfg), cache)\n"
             "keys = [key()]\n"
             f"for path in {edits!r}:\n"
             "    f = pathlib.Path(path); f.write_text(f.read_text() + '\\n# edited\\n'); keys.append(key())\n"
             "print(json.dumps(keys))")
    env = {"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=copy, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first, unrelated, *cached = json.loads(out.stdout)
    assert unrelated == first, "an unrelated module must not force a rebuild"
    seen = {first, *cached}
    assert len(seen) == 4, "each cached module's edit gives a new key (a rebuild)"


def test_a_diffusion_domain_prepared_on_a_gpu_has_its_own_cache_key(tmp_path) -> None:
    """Image and motion train their reference on the cell's device: a GPU-trained reference differs
    from a CPU-trained one in rounding, so the two never share a cache file. Domains that prepare
    on the CPU whatever the device (text) keep one key."""
    from benchmark.cache import PreparationCache
    from benchmark.runner import CellRequest, preparation_device, preparation_key, resolve

    cache = PreparationCache(tmp_path)
    for domain, own_key in (("image", True), ("motion", True), ("text", False)):
        cell = resolve(CellRequest("sft", domain, preset="smoke"))
        cpu, gpu = cell.domain_cls(cell.domain_cfg, "cpu"), cell.domain_cls(cell.domain_cfg, "cuda")  # names: no GPU
        assert (preparation_key(cpu, cache) != preparation_key(gpu, cache)) == own_key, domain
        assert (preparation_device(cpu), preparation_device(gpu)) == ("cpu", "cuda" if own_key else "cpu"), domain

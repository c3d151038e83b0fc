"""Shared fixtures: one preparation cache per test session (smoke preset), temp stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmark.cache import PreparationCache

# Tests run on the smoke preset, on the CPU, with deterministic kernels.
torch.use_deterministic_algorithms(True, warn_only=True)
os.environ.setdefault("PREFBENCH_DEVICE", "cpu")
os.environ.setdefault("PREFBENCH_LOADED_DOMAINS", "8")  # every smoke domain stays loaded (no reload per test)
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest-xdist: one worker per core, one torch thread each
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and for the subprocesses tests start (bench, executors, sandbox)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preparation cache shared by the whole session (each smoke domain is built once), and by its
    pytest-xdist workers (the cache locks each build, so a domain is built by one worker)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' common base directory
    default = shared / "prefbench-cache"
    default.mkdir(parents=True, exist_ok=True)
    path = Path(os.environ.get("PREFBENCH_TEST_CACHE", default))
    os.environ["PREFBENCH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def cache(cache_dir: Path) -> PreparationCache:
    return PreparationCache(cache_dir)


@pytest.fixture()
def home(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PREFBENCH_HOME (store + artifacts) per test, sharing the session's cache."""
    monkeypatch.setenv("PREFBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFBENCH_CACHE", str(cache_dir))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def warm_bench(cache_dir: Path):
    """``bench`` through a forking server that imported the CLI once (``tests/warm_bench.py``): for
    the tables of bad inputs, where the interpreter's start would be most of each case's time."""
    from warm_bench import start

    server = start()
    yield server
    server.close()

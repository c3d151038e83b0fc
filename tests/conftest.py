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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preparation cache shared by the whole session (each smoke domain is built once)."""
    path = Path(os.environ.get("PREFBENCH_TEST_CACHE", tmp_path_factory.mktemp("prefbench-cache")))
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

"""A diffusion domain's reference must have learned before anything is built on it: its training curve
is kept in the preparation cache, and a reference no better than its untrained network fails the
preparation with one line, caching nothing (smoke preset, real caches, ``bench`` as a user runs it)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from benchmark.cache import PreparationCache
from benchmark.progress import Progress
from benchmark.runner import CellRequest, preparation_key, prepare_domain, resolve


@pytest.mark.parametrize("name", ["image", "motion"])
def test_the_cached_reference_keeps_its_training_curve_and_passed_its_check(name: str, cache: PreparationCache) -> None:
    cell = resolve(CellRequest("dpo", name, preset="smoke"))
    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    state = torch.load(cache.path(name, preparation_key(domain, cache)), weights_only=False)
    fit = state["domain"]["reference_fit"]
    steps, mse = fit["step"], fit["mse"]
    assert steps == list(range(cell.domain_cfg.ref_steps))  # smoke: a point per step (ref_steps // 100 < 1)
    assert len(mse) == len(steps) and all(math.isfinite(v) for v in mse)
    assert sum(mse[-5:]) < sum(mse[:5])  # the loss fell
    assert fit["error"] < cell.domain_cfg.ref_max_error_ratio * fit["untrained_error"]
    assert fit["ratio"] == pytest.approx(fit["error"] / fit["untrained_error"])


def test_a_reference_that_learned_nothing_fails_its_preparation_and_is_not_cached(
        tmp_path: Path, warm_bench) -> None:
    home, cache = tmp_path / "home", tmp_path / "cache"
    env = {**os.environ, "PREFBENCH_HOME": str(home), "PREFBENCH_CACHE": str(cache)}
    # ref_lr = 0: the trained reference is its untrained network (denoising error ratio 1.0)
    out = warm_bench.run("run", "-a", "reference", "-d", "motion", "-p", "smoke", "-q", "--domain-set", "ref_lr=0",
                         env=env)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "ReferenceNotLearned" in last and "ratio 1.00 > 0.8" in last and "ref_lr" in last, out.stderr
    assert "Traceback" not in out.stderr
    assert not list(cache.rglob("*.pt"))  # nothing cached: the next run trains again
    # the guard's threshold is a config field: relaxed, the same preparation passes and is cached
    out = warm_bench.run("run", "-a", "reference", "-d", "motion", "-p", "smoke", "-q", "--domain-set", "ref_lr=0",
                         "--domain-set", "ref_max_error_ratio=1.01", env=env)
    assert out.returncode == 0, out.stderr
    assert len(list(cache.rglob("*.pt"))) == 1

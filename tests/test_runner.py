"""The runner's failure paths: crashes, divergence, budgets and n/a cells; config overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch

from benchmark.api import Algorithm, RunContext
from benchmark.errors import UserError
from benchmark.registry import ALGORITHMS
from benchmark.runner import CellRequest, apply_sets, resolve, run_cell
from benchmark.store import Store


@dataclass
class NoCfg:
    pass


class Crash(Algorithm):
    name = "test-crash"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        raise ValueError("boom in train")


class Diverge(Algorithm):
    name = "test-diverge"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        policy = ctx.domain.make_policy()
        with torch.no_grad():
            for p in policy.parameters():
                p.fill_(float("nan"))
        return policy


class Greedy(Algorithm):
    name = "test-greedy"
    Config = NoCfg
    requires = frozenset({"feedback"})

    def train(self, ctx: RunContext, cfg: NoCfg):
        ref = ctx.domain.reference
        ctx_ = ctx.domain.train_contexts[:8]
        a = ctx.sample(ref, ctx_)
        while True:
            ctx.domain.feedback.compare(ctx_, a, a)


class Sampler(Algorithm):
    """Samples from a policy directly, forever (not through ctx.sample)."""

    name = "test-sampler"
    Config = NoCfg

    def train(self, ctx: RunContext, cfg: NoCfg):
        policy = ctx.domain.make_policy()
        while True:
            policy.sample(ctx.domain.train_contexts[:8], 4, generator=ctx.generator)


class NeedsTrajectories(Algorithm):
    name = "test-needs-trajectories"
    Config = NoCfg
    requires = frozenset({"offline:trajectories"})

    def train(self, ctx: RunContext, cfg: NoCfg):
        raise AssertionError("an n/a cell must not train")


@pytest.fixture()
def registered() -> Iterator[None]:
    for cls in (Crash, Diverge, Greedy, Sampler, NeedsTrajectories):
        ALGORITHMS.add(cls.name, cls)
    yield
    for cls in (Crash, Diverge, Greedy, Sampler, NeedsTrajectories):
        ALGORITHMS.remove(cls.name)


def _run(algo: str, home: Path, cache) -> tuple:
    store = Store(home / "s.sqlite")
    return run_cell(resolve(CellRequest(algo, "text", preset="smoke")), store=store, cache=cache), store


def test_a_crash_is_stored_as_failed_with_reason_and_traceback(registered, home: Path, cache) -> None:
    rec, store = _run("test-crash", home, cache)
    assert rec.status == "failed" and rec.reason == "ValueError: boom in train"
    tb = Path(rec.artifacts[0])
    assert tb.exists() and "boom in train" in tb.read_text() and "Traceback" in tb.read_text()
    # a failed cell is not done: the next invocation runs it again
    again = run_cell(resolve(CellRequest("test-crash", "text", preset="smoke")), store=store, cache=cache)
    assert again.status == "failed" and again.started_at > rec.started_at


def test_divergence_marks_the_cell_failed(registered, home: Path, cache) -> None:
    rec, _ = _run("test-diverge", home, cache)
    assert rec.status == "failed"
    assert "non-finite" in rec.reason or "nan" in rec.reason.lower()


def test_going_over_the_feedback_budget_fails_the_cell_and_counts(registered, home: Path, cache) -> None:
    rec, _ = _run("test-greedy", home, cache)
    assert rec.status == "failed" and rec.reason.startswith("FeedbackBudgetExceeded")
    budget = resolve(CellRequest("dpo", "text", preset="smoke")).budget
    assert rec.feedback_used == budget.feedback and rec.online_samples == 8


def test_going_over_the_online_sample_budget_fails_the_cell_and_counts(registered, home: Path, cache) -> None:
    rec, _ = _run("test-sampler", home, cache)
    budget = resolve(CellRequest("dpo", "text", preset="smoke")).budget
    assert rec.status == "failed" and rec.reason.startswith("BudgetExceeded: online-sample budget exceeded")
    assert rec.online_samples == budget.online_samples - budget.online_samples % 32 and rec.feedback_used == 0


def test_missing_data_is_an_na_cell_with_a_reason(registered, home: Path, cache) -> None:
    rec, _ = _run("test-needs-trajectories", home, cache)
    assert rec.status == "na" and "offline:trajectories" in rec.reason


@dataclass
class Typed:
    lr: float = 0.1
    steps: int = 3
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    maybe: int | None = None
    widths: tuple = (1, 2)


def test_apply_sets_parses_types() -> None:
    out = apply_sets(Typed, Typed(), ["lr=0.5", "steps=7", "flag=true", "mode=b", "maybe=none", "widths=[3, 4]"],
                     "test")
    assert dataclasses.astuple(out) == (0.5, 7, True, "b", None, (3, 4))
    assert apply_sets(Typed, Typed(), ["maybe=4"], "test").maybe == 4
    for bad, msg in [("steps=1.5", "expects int"), ("flag=maybe", "expects bool"), ("mode=c", "must be one of"),
                     ("nokey=1", "no such key"), ("lr", "write key=value")]:
        with pytest.raises(UserError, match=msg):
            apply_sets(Typed, Typed(), [bad], "test")


def test_run_ids_follow_the_config() -> None:
    a = resolve(CellRequest("dpo", "text", preset="smoke"))
    b = resolve(CellRequest("dpo", "text", preset="smoke"))
    c = resolve(CellRequest("dpo", "text", preset="smoke", sets=("beta=0.2",)))
    d = resolve(CellRequest("dpo", "text", preset="smoke", seed=1))
    assert a.run_id == b.run_id and len({a.run_id, c.run_id, d.run_id}) == 3
    assert c.config["algo_config"]["beta"] == 0.2


def test_a_cell_label_names_its_overrides() -> None:
    """Grid lines of cells that differ only in --set/--domain-set/--budget must not read alike."""
    plain = resolve(CellRequest("dpo", "text", preset="smoke"))
    varied = resolve(CellRequest("dpo", "text", preset="smoke", sets=("beta=0.2",), domain_sets=("families=short",),
                                 budget_sets=("steps=3",)))
    assert plain.label == "dpo × text [default, smoke, seed 0]"
    assert varied.label == "dpo (beta=0.2, families=short, budget steps=3) × text [default, smoke, seed 0]"


def test_a_done_cell_records_its_timings_and_peak_memory(home: Path, cache) -> None:
    rec, _ = _run("sft", home, cache)
    assert rec.status == "done"
    t = rec.timings
    assert t["total_s"] >= t["prepare_s"] + t["data_s"] + t["train_s"] + t["eval_s"] + t["artifacts_s"]
    assert t["train_s"] + t["eval_s"] > 0
    assert 0 < t["checkpoints_s"] < t["train_s"]  # the over-optimisation probes are part of training's wall
    assert 50 < t["peak_rss_mb"] < 64 * 1024  # a torch process holds tens of MiB at least


def test_prepared_domains_stay_loaded_up_to_the_limit(cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$PREFBENCH_LOADED_DOMAINS`` prepared domains stay in memory, the least recently used out first."""
    from benchmark import runner
    from benchmark.progress import Progress

    def prepare(name: str):
        cell = resolve(CellRequest("sft", name, preset="smoke"))
        return runner.prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())[0]

    monkeypatch.setenv("PREFBENCH_LOADED_DOMAINS", "2")
    runner._LOADED.clear()
    text = prepare("text")
    prepare("motion")
    assert prepare("text") is text  # kept, and now the most recently used
    prepare("multiagent")  # motion goes
    assert [k[0] for k in runner._LOADED] == ["text", "multiagent"]
    monkeypatch.setenv("PREFBENCH_LOADED_DOMAINS", "1")
    prepare("motion")
    assert [k[0] for k in runner._LOADED] == ["motion"]
    assert prepare("text") is not text  # reloaded from the cache


def test_a_record_says_how_many_threads_built_its_preparation(tmp_path) -> None:
    """A preparation built with 1 thread and cached is another reference than one built with 2: the
    record carries the builder's count (from the cache file), not the cell's own."""
    import torch

    from benchmark.cache import PreparationCache
    from benchmark.runner import _LOADED, CellRequest, execute_cell, resolve

    cell = resolve(CellRequest("sft", "text", preset="smoke"))
    cache, before = PreparationCache(tmp_path / "cache"), torch.get_num_threads()
    _LOADED.clear()
    try:
        torch.set_num_threads(1)
        first = execute_cell(cell, cache=cache, home=tmp_path)
        _LOADED.clear()  # the next cell loads the file
        torch.set_num_threads(2)
        second = execute_cell(cell, cache=cache, home=tmp_path)
    finally:
        torch.set_num_threads(before)
        _LOADED.clear()
    assert first.env["preparation_threads"] == 1 and first.timings["prepared_now"] == 1.0
    assert first.env["preparation_device"] == second.env["preparation_device"] == "cpu"
    assert second.timings["prepared_now"] == 0.0
    assert (second.env["torch_threads"], second.env["preparation_threads"]) == (2, 1)

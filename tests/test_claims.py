"""`bench report claims`: each verdict rule on a small synthetic store, and a byte-identical report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.runner import CellRequest, new_record, resolve
from benchmark.store import Store
from leaderboard.claims import Claim, all_claims, claim_cells, evaluate, report, verdict_of

CLAIM = Claim("Test et al. 2026", "dpo beats sft", "dpo", "sft", domains=("text",))
SEEDS = [0, 1, 2]


def put(store: Store, algo: str, seed: int, score: float | None, *, status: str = "done", threads: int = 1,
        reason: str | None = None, condition: str = "default", domain_sets: tuple[str, ...] = (),
        built_with: int | None = None, built_on: str = "cpu", **extra: float) -> None:
    rec = new_record(resolve(CellRequest(algo, "text", condition, seed=seed, preset="smoke", domain_sets=domain_sets)),
                     status=status, reason=reason)
    rec.metrics = {} if score is None else {"normalized_score": score, **extra}
    rec.env = dict(rec.env, torch_threads=threads, preparation_threads=built_with, preparation_device=built_on)
    store.put(rec)


def fill(store: Store, diffs: list[float], **kw) -> None:
    for seed, d in zip(SEEDS, diffs):
        put(store, "sft", seed, 10.0)
        put(store, "dpo", seed, 10.0 + d, **kw)


@pytest.mark.parametrize(("diffs", "verdict"), [
    ([5.0, 6.0, 7.0], "reproduced"),
    ([-5.0, -6.0, -7.0], "refuted"),
    ([5.0, -5.0, 1.0], "cannot tell"),
])
def test_verdict_rules_on_a_synthetic_store(tmp_path: Path, diffs: list[float], verdict: str) -> None:
    store = Store(tmp_path / "s.sqlite")
    fill(store, diffs)
    (row,) = evaluate(store, "smoke", SEEDS, [CLAIM])
    assert row.verdict == verdict
    assert row.diff == pytest.approx(sum(diffs) / 3) and row.seeds == SEEDS
    assert row.t_interval[0] <= row.diff <= row.t_interval[1]
    lower_is_better = evaluate(store, "smoke", SEEDS, [Claim("T", "sft beats dpo", "dpo", "sft", domains=("text",),
                                                             higher=False)])[0]
    flipped = {"reproduced": "refuted", "refuted": "reproduced", "cannot tell": "cannot tell"}
    assert lower_is_better.verdict == flipped[verdict]


def test_a_claim_about_data_compares_one_method_across_two_conditions(tmp_path: Path) -> None:
    """``baseline_condition``: the baseline's cells are the same method's under another condition."""
    claim = Claim("T", "dpo does better on clean labels than on noisy ones", "dpo", "dpo", domains=("text",),
                  condition="default", baseline_condition="noisy-labels")
    store = Store(tmp_path / "s.sqlite")
    for seed in SEEDS:
        put(store, "dpo", seed, 10.0 + seed)
        put(store, "dpo", seed, 4.0, condition="noisy-labels")
    (row,) = evaluate(store, "smoke", SEEDS, [claim])
    assert row.verdict == "reproduced" and row.diff == pytest.approx(7.0)
    conditions = {c.request.condition for c in claim_cells([claim], "smoke", SEEDS)}
    assert conditions == {"default", "noisy-labels"}
    assert claim.label == "dpo [default] vs dpo [noisy-labels]"


def test_na_not_run_and_not_comparable(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    for seed in SEEDS[:2]:
        put(store, "sft", seed, 1.0)
        put(store, "dpo", seed, 2.0)
    assert evaluate(store, "smoke", SEEDS, [CLAIM])[0].verdict == "not run"
    put(store, "sft", 2, 1.0)
    put(store, "dpo", 2, 2.0, threads=2)
    assert evaluate(store, "smoke", SEEDS, [CLAIM])[0].verdict == "not comparable"
    put(store, "dpo", 2, 2.0, built_with=2)  # same cell threads, another preparation
    put(store, "sft", 2, 1.0, built_with=1)
    row = evaluate(store, "smoke", SEEDS, [CLAIM])[0]
    assert row.verdict == "not comparable" and row.reason.endswith("built on cpu, 1 thread; cpu, 2 threads")
    put(store, "dpo", 2, 2.0, built_with=1, built_on="cuda")  # same threads, prepared on a GPU
    row = evaluate(store, "smoke", SEEDS, [CLAIM])[0]
    assert row.verdict == "not comparable" and row.reason.endswith("built on cpu, 1 thread; cuda, 1 thread")
    put(store, "dpo", 2, 2.0, built_with=1)
    assert evaluate(store, "smoke", SEEDS, [CLAIM])[0].verdict != "not comparable"
    put(store, "dpo", 2, None, status="na", reason="domain text lacks capability:steps")
    row = evaluate(store, "smoke", SEEDS, [CLAIM])[0]
    assert row.verdict == "n/a" and "lacks capability:steps" in row.reason


def test_the_bootstrap_alone_never_decides() -> None:
    """Three seeds, a noisy difference: the bootstrap interval excludes 0, Student-t does not."""
    verdict, fig = verdict_of([0.1, 2.0, 0.2])
    assert fig["boot_interval"][0] > 0 and fig["t_interval"][0] < 0 and verdict == "cannot tell"


def test_report_is_byte_identical_and_grid_claims_lists_its_cells(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    fill(store, [5.0, 6.0, 7.0])
    env = dict(os.environ, PREFBENCH_HOME=str(tmp_path))
    run = [sys.executable, "-m", "benchmark.cli"]
    outs = []
    for name in ("a.md", "b.md"):
        r = subprocess.run([*run, "report", "claims", "--preset", "smoke", "--seeds", "3", "--store",
                            str(tmp_path / "s.sqlite"), "--out", str(tmp_path / name)], capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    text = outs[0].decode()
    assert "preset: **smoke**; seeds: 0, 1, 2" in text and "not run" in text
    only = report(store, "smoke", [0, 1, 2], reps=200, domains=["text"])  # e.g. the domains run with more seeds
    others = ("image", "robot", "motion", "multiagent")
    assert "| text |" in only and all(f"| {d} |" in text for d in others)
    assert not any(f"| {d} |" in only for d in others)
    bad = subprocess.run([*run, "report", "claims", "--preset", "smoke", "--domains", "txt", "--store",
                          str(tmp_path / "s.sqlite")], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "txt" in bad.stderr and "Traceback" not in bad.stderr
    dry = subprocess.run([*run, "grid", "--claims", "--preset", "smoke", "--seeds", "2", "--dry-run", "--store",
                          str(tmp_path / "s.sqlite")], capture_output=True, text=True, env=env, timeout=300)
    assert dry.returncode == 0, dry.stderr
    expected = {c.run_id for c in claim_cells(all_claims(), "smoke", [0, 1])}
    listed = {line.split()[2] for line in dry.stdout.splitlines() if line.startswith("would run")}
    stored = {r.run_id for r in store.records()}
    assert listed == expected - stored and len(expected) > 40


def test_the_leaderboard_page_carries_the_claims(tmp_path: Path) -> None:
    from leaderboard.aggregate import SCORE_VERSION

    store = Store(tmp_path / "s.sqlite")
    for seed in SEEDS:  # a registered claim's cells: GDPO vs DPO on text (diversity, normalized score)
        for algo, div in (("gdpo", 0.9 + 0.01 * seed), ("dpo", 0.8)):
            put(store, algo, seed, 1.0)
            rec = store.records(algo=algo)[seed]
            rec.metrics.update(score_version=SCORE_VERSION, diversity=div)
            store.put(rec)
    env = dict(os.environ, PREFBENCH_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "benchmark.cli", "leaderboard", "--store", str(tmp_path / "s.sqlite"),
                        "--format", "html,md", "--out", str(tmp_path / "site")], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "site" / "index.html").read_text()
    assert 'id="claims"' in page and "seed papers&#x27; claims" in page
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "## seed papers' claims" in md and "| GDPO's outputs are more diverse than DPO's | text |" in md
    assert "| reproduced |" in md and "SeRA" not in md  # only claims whose cells the board holds


def test_a_sweep_reports_the_gap_per_level_and_a_verdict_on_its_trend(tmp_path: Path) -> None:
    from leaderboard.claims import Sweep, evaluate_sweeps, sweep_plot, sweeps_markdown

    sweep = Sweep("Test 2026", "the gap grows", "rlhf", "dpo", "partial-coverage", ("0", "0.5", "0.9"),
                  domains=("text",))
    store = Store(tmp_path / "s.sqlite")
    for level, gap in (("0", 0.0), ("0.5", 4.0), ("0.9", 8.0)):
        for seed in SEEDS:
            put(store, "dpo", seed, 10.0, condition=f"partial-coverage@{level}")
            put(store, "rlhf", seed, 10.0 + gap + seed * 0.1 * gap, condition=f"partial-coverage@{level}")
    (row,) = evaluate_sweeps(store, "smoke", SEEDS, [sweep])
    assert row.verdict == "reproduced" and row.trend == pytest.approx(8.0 + 0.8)
    assert [r.diff for r in row.levels] == pytest.approx([0.0, 4.4, 8.8])
    md = sweeps_markdown([row], "img/s.png")
    assert "| text | 0 [+0, +0] | 4.4" in md and "| reproduced |" in md and "![" in md
    assert sweep_plot([row], tmp_path / "s.png") and (tmp_path / "s.png").stat().st_size > 1000
    put(store, "rlhf", 2, 10.0, condition="partial-coverage@0.9")  # the gap no longer grows on seed 2
    put(store, "rlhf", 1, 10.0, condition="partial-coverage@0.9")
    assert evaluate_sweeps(store, "smoke", SEEDS, [sweep])[0].verdict == "cannot tell"


@pytest.mark.parametrize(("sign", "verdict"), [(1.0, "reproduced"), (-1.0, "refuted")])
def test_rank_agreement_of_synthetic_raters_and_the_gold(tmp_path: Path, sign: float, verdict: str) -> None:
    from leaderboard.claims import rank_agreement, raters_markdown, raters_plot

    store = Store(tmp_path / "s.sqlite")
    for i, algo in enumerate(("reference", "sft", "dpo", "ipo", "kto")):
        for seed in SEEDS:
            put(store, algo, seed, 0.0)
            rec = store.records(algo=algo)[seed]
            win = 0.5 + 0.02 * i + 0.001 * seed
            rec.metrics.update(win_rate=win, **{"raters/win_rate": 0.5 + sign * (win - 0.5)})
            store.put(rec)
    row = rank_agreement(store.records(), "text", SEEDS)
    assert row.verdict == verdict and row.tau == pytest.approx(sign) and len(row.entries) == 5
    assert row.interval == (pytest.approx(sign), pytest.approx(sign))
    assert f"| text | dpo, ipo, kto, reference, sft | {sign:.4g} |" in raters_markdown([row])
    assert raters_plot([row], tmp_path / "tau.png")
    assert rank_agreement(store.records(), "text", [0, 1, 2, 3]).verdict == "not run"  # seed 3 is missing


def test_the_generation_verification_grid_reports_the_gap_per_cell_and_its_trend_per_column(tmp_path: Path) -> None:
    """rlhf − dpo over task families × reward-model size: DPO's cells are shared across the RM knob
    (it reads no reward model), and the verdict per column is on gap(long) − gap(short)."""
    from leaderboard.aggregate import SCORE_VERSION, load_board
    from leaderboard.claims import experiment_plots
    from leaderboard.gap import GAP_GRIDS, evaluate_grids, grid_plot, grids_markdown

    (grid,) = GAP_GRIDS
    assert {c.run_id for c in claim_cells(grid.claims(), "smoke", SEEDS) if c.request.algo == "dpo"} == {
        c.run_id for c in claim_cells(grid.claims()[::2], "smoke", SEEDS) if c.request.algo == "dpo"}
    store = Store(tmp_path / "s.sqlite")
    gaps = {"short": 1.0, "all": 3.0, "long": 6.0}
    for (row, row_sets), (_col, col_sets) in [(r, c) for r in grid.rows for c in grid.columns]:
        small = col_sets == ("scorer_layers=1",)
        for seed in SEEDS:
            put(store, "dpo", seed, 10.0, domain_sets=row_sets, accuracy=0.5, score_version=SCORE_VERSION)
            put(store, "rlhf", seed, 10.0 + gaps[row] * (-1 if small else 1) + 0.1 * seed, score_version=SCORE_VERSION,
                domain_sets=row_sets + col_sets, **{"train/rm_heldout_accuracy": 0.6 if small else 0.8})
    small, large = evaluate_grids(store, "smoke", SEEDS)
    assert [c.diff for c in large.cells] == pytest.approx([1.1, 3.1, 6.1])
    assert large.verdict == "reproduced" and large.trend == pytest.approx(5.0)
    assert small.verdict == "refuted" and small.trend == pytest.approx(-5.0)
    assert small.method_diagnostic == pytest.approx([0.6] * 3) and large.baseline_diagnostic == pytest.approx([0.5] * 3)
    md = grids_markdown([small, large], "img/g.png")
    assert "| long | -5.9 [" in md and "| large RM (all blocks) | 5 |" in md and "| 0.5 |" in md
    assert grid_plot([small, large], tmp_path / "g.png") and (tmp_path / "g.png").stat().st_size > 1000
    made = experiment_plots(load_board(tmp_path / "s.sqlite", preset="smoke"), tmp_path / "img")
    assert [name for name, _ in made] == ["generation_verification"]  # the page's plot; no sweep or raters cells
    first = (tmp_path / "img" / "generation_verification.svg").read_bytes()
    experiment_plots(load_board(tmp_path / "s.sqlite", preset="smoke"), tmp_path / "img")
    assert (tmp_path / "img" / "generation_verification.svg").read_bytes() == first  # ids do not change
    put(store, "rlhf", 2, 0.0, domain_sets=("families=long", "scorer_layers=0"), status="failed")
    assert evaluate_grids(store, "smoke", SEEDS)[1].verdict == "not run"
    for (_, row_sets), (_, col_sets) in [(r, c) for r in grid.rows for c in grid.columns if c == grid.columns[0]]:
        put(store, "rlhf", 2, 0.0, domain_sets=row_sets + col_sets, status="failed")
    assert experiment_plots(load_board(tmp_path / "s.sqlite", preset="smoke"), tmp_path / "img2") == []  # incomplete

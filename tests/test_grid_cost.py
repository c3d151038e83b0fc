"""``benchmarks/grid_cost.py``: the estimator's arithmetic on a small synthetic store (issue #19)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from benchmark.registry import ALGORITHMS, DOMAINS
from benchmark.runner import CellRequest, new_record, resolve
from benchmark.store import Store

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "grid_cost.py"
GRID = {"algos": ["dpo", "sft", "marlhf"], "domains": ["text", "image"], "conditions": ["default", "noisy-labels"],
        "seeds": 2}


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("grid_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def put(store: Store, algo: str, domain: str, seed: int, train: float = 0.0, rest: float = 0.0, *,
        prep: float = 0.0, prepared: bool = False, status: str = "done", reason: str | None = None,
        budget: tuple[str, ...] = (), preset: str = "quick") -> None:
    rec = new_record(resolve(CellRequest(algo, domain, "default", seed=seed, preset=preset, budget_sets=budget)),
                     status=status, reason=reason)
    if status == "done":
        rec.timings = {"prepare_s": prep, "prepared_now": float(prepared), "train_s": train, "eval_s": rest,
                       "total_s": prep + train + rest}
    store.put(rec)


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A store (text: dpo and sft measured, marlhf n/a; image: dpo measured) and a results folder
    whose image report gives the image preparation (230 s first run − 30 s cached = 200 s)."""
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        put(store, "dpo", "text", 0, 10.0, 2.0, prep=60.0, prepared=True)
        put(store, "dpo", "text", 1, 12.0, 2.0, prep=0.5)
        put(store, "dpo", "text", 2, 14.0, 2.0)
        put(store, "sft", "text", 0, 4.0, 2.0)
        put(store, "sft", "text", 1, 4.0, 2.0)
        put(store, "dpo", "image", 0, 30.0, 10.0)
        put(store, "dpo", "image", 1, 30.0, 10.0)
        put(store, "sft", "image", 0, 999.0, 999.0, budget=("steps=5",))  # another budget: not a quick cell
        put(store, "marlhf", "text", 0, status="na", reason="domain text lacks capability:agents")
    results = tmp_path / "results"
    results.mkdir()
    (results / "image_quick.json").write_text(json.dumps({"first_run_s": 230.0, "cached_run_s": 30.0}))
    return path, results


def run(gc, inputs: tuple[Path, Path], preset: str = "quick", overheads: dict | None = None) -> dict:
    m = gc.Measured()
    gc.read_store(inputs[0], m)
    return gc.estimate(m, preset=preset, workers=[1, 2], ray_workers=[4], results=inputs[1],
                       overheads=overheads, **GRID)


def test_medians_imputation_and_domain_totals(gc, inputs: tuple[Path, Path]) -> None:
    res = run(gc, inputs)
    pairs = {(p["algo"], p["domain"]): p for p in res["pairs"]}
    assert (pairs["dpo", "text"]["train_s"], pairs["dpo", "text"]["rest_s"]) == pytest.approx((12.0, 2.0))
    assert pairs["dpo", "text"]["measured_cells"] == 3 and not pairs["dpo", "text"]["imputed"]
    # sft never ran on image: its text training × image/text training ratio of dpo (30 / 12), the image's rest
    assert pairs["sft", "image"]["imputed"] and pairs["sft", "image"]["source"].startswith("imputed: sft on text")
    assert pairs["sft", "image"]["cell_s"] == pytest.approx(4.0 * 30.0 / 12.0 + 10.0)
    assert pairs["marlhf", "image"]["source"] == "imputed: domain median"
    assert pairs["marlhf", "image"]["cell_s"] == pytest.approx(40.0)
    text, image = res["domains"]
    assert text["pairs"] == {"measured": 2, "imputed": 0, "n/a": 1} and text["na_cells"] == 4
    assert image["pairs"] == {"measured": 1, "imputed": 2, "n/a": 0} and image["runnable_cells"] == 12
    assert (text["preparation_s"], image["preparation_s"], text["cache_load_s"]) == pytest.approx((60.0, 200.0, 0.5))
    assert image["preparation_source"] == "image_quick.json: first run − cached run"
    assert text["median_cell_s"] == pytest.approx((6.0 + 14.0) / 2)
    # text: 60 prep + 4 × 14 (dpo) + 4 × 6 (sft) + 4 n/a lookups × 0.5; image: 200 + 4 × (40 + 20 + 40)
    assert (text["total_s"], image["total_s"]) == pytest.approx((142.0, 600.0))


def test_wall_time_on_workers_and_ray(gc, inputs: tuple[Path, Path]) -> None:
    res = run(gc, inputs)
    cells = 4 * 14 + 4 * 6 + 4 * 0.5 + 4 * (40 + 20 + 40)  # 482 s of cells (n/a: a cache lookup each)
    assert res["serial"]["estimate_s"] == pytest.approx(260.0 + 0.5 + cells)  # preps + loads + cells
    two = res["machine_workers"][1]
    assert two["prep_phase_s"] == pytest.approx(200.0)  # the two preparations side by side
    assert two["estimate_s"] == pytest.approx(200.0 + 0.5 + cells / 2)
    assert two["bound_s"] == pytest.approx(two["estimate_s"] + 40.0)  # + the longest cell
    res = run(gc, inputs, overheads={"ray": 1.0})
    shared, rebuilt = res["ray_shared_cache"][0], res["ray_no_shared_cache"][0]
    assert shared["estimate_s"] == pytest.approx(200.0 + 0.5 + (cells + 24 * 1.0) / 4)
    assert rebuilt["estimate_s"] == pytest.approx(200.0 + 260.0 + (cells + 24 * 1.0) / 4)  # each node builds both
    assert shared["longest_cell_s"] == pytest.approx(41.0)
    assert gc.longest_first([5.0, 4.0, 3.0, 3.0], 2) == pytest.approx(8.0)
    m = gc.Measured()
    gc.read_store(inputs[0], m)
    assert gc.unseen_pool_parts(m, ["text"], ["pure-expert", "default"]) == {("*", "text", "pure-expert")}


def test_standard_scales_the_quick_costs_by_budgets_and_evaluation(gc, inputs: tuple[Path, Path]) -> None:
    res = run(gc, inputs, preset="standard")
    cls = DOMAINS.get("text")
    q, s = cls.budget("quick"), cls.budget("standard")
    cq, cs = cls.config("quick"), cls.config("standard")
    train = s.steps * s.batch_size / (q.steps * q.batch_size)
    rest = cs.eval_contexts * cs.eval_samples / (cq.eval_contexts * cq.eval_samples)
    pairs = {(p["algo"], p["domain"]): p for p in res["pairs"]}
    assert res["extrapolated"] and pairs["dpo", "text"]["cell_s"] == pytest.approx(12.0 * train + 2.0 * rest)
    assert res["domains"][0]["preparation_s"] == pytest.approx(60.0 * max(1.0, cs.sft_steps / cq.sft_steps))


def test_cells_measured_at_standard_replace_and_calibrate_the_extrapolation(gc, inputs, tmp_path: Path) -> None:
    """dpo × text measured at standard: its cost is the measurement; sft × text is extrapolated, its
    training and its rest each × text's measured ÷ extrapolated factor; image (nothing at standard)
    takes the median factors of all domains."""
    plain = {(p["algo"], p["domain"]): p["at_preset"] for p in run(gc, inputs, preset="standard")["pairs"]}
    path = tmp_path / "standard.sqlite"
    with Store(path) as store:
        put(store, "dpo", "text", 0, 300.0, 100.0, prep=900.0, prepared=True, preset="standard")
        put(store, "dpo", "text", 1, 340.0, 100.0, prep=1.0, preset="standard")
        put(store, "sft", "text", 0, 1.0, 1.0)  # a quick cell in the standard store: not read as standard
        put(store, "sft", "image", 0, 900.0, 900.0, preset="standard")  # imputed at quick: costs, never calibrates
    m, target = gc.Measured(), gc.Measured()
    gc.read_store(inputs[0], m)
    gc.read_store(path, target, "standard")
    res = gc.estimate(m, preset="standard", workers=[1], ray_workers=[1], results=inputs[1], target=target, **GRID)
    pairs = {(p["algo"], p["domain"]): p for p in res["pairs"]}
    train, rest = 320.0 / plain["dpo", "text"]["train_s"], 100.0 / plain["dpo", "text"]["rest_s"]
    assert pairs["dpo", "text"]["cell_s"] == pytest.approx(420.0)
    assert pairs["dpo", "text"]["at_preset"]["source"] == "measured at standard (2 cells)"
    assert pairs["sft", "image"]["cell_s"] == pytest.approx(1800.0)
    for key in (("sft", "text"), ("dpo", "image")):
        assert pairs[key]["cell_s"] == pytest.approx(plain[key]["train_s"] * train + plain[key]["rest_s"] * rest)
    cal = {c["domain"]: c for c in res["calibration"]}
    assert cal["image"]["rest_factor_source"] == "rest: median of 1 measured on other domains"
    text, image = res["domains"]
    prep_factor = 900.0 / run(gc, inputs, preset="standard")["domains"][0]["preparation_s"]
    assert text["preparation_s"] == pytest.approx(900.0) and text["cache_load_s"] == pytest.approx(1.0)
    assert image["preparation_s"] == pytest.approx(run(gc, inputs, preset="standard")["domains"][1]["preparation_s"]
                                                   * prep_factor)
    assert text["training_s"] + text["rest_s"] == pytest.approx(sum(pairs[a, "text"]["cell_s"] * 4
                                                                    for a in ("dpo", "sft")))
    res["machine"] = gc.machine()
    md = gc.markdown(res)
    assert "Calibration (measured at standard ÷ extrapolated from quick)" in md
    assert "| text | dpo | " in md and "| image | sft | " in md
    with pytest.raises(SystemExit, match="only with --preset standard"):
        gc.main(["--store", str(inputs[0]), "--measured-store", str(path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="write DOMAIN=SECONDS"):
        gc.main(["--store", str(inputs[0]), "--preset", "standard", "--preparation", "text=soon"])
    res = gc.main(["--store", str(inputs[0]), "--preset", "standard", "--preparation", "image=5000", "--workers", "1",
                   "--ray-workers", "1", "--results", str(inputs[1]), "--out", str(tmp_path / "o"), "--algos",
                   "dpo,sft,marlhf", "--domains", "text,image", "--conditions", "default,noisy-labels", "--seeds", "2"])
    assert res["domains"][1]["preparation_s"] == pytest.approx(5000.0)


def test_an_earlier_standard_report_stands_in_for_its_stores(gc, inputs, tmp_path: Path) -> None:
    """--measured-costs: the standard report's measured pairs and preparation give the same estimate
    without its store; a new standard store replaces the report's pair it measures again and
    recalibrates the domain; a quick report is refused with a one-line error."""
    std = tmp_path / "standard.sqlite"
    with Store(std) as store:
        put(store, "dpo", "text", 0, 300.0, 100.0, prep=900.0, prepared=True, preset="standard")
        put(store, "dpo", "text", 1, 340.0, 100.0, prep=1.0, preset="standard")
        put(store, "dpo", "image", 0, 500.0, 900.0, preset="standard")
    grid = ["--algos", "dpo,sft,marlhf", "--domains", "text,image", "--conditions", "default,noisy-labels", "--seeds",
            "2", "--workers", "1", "--ray-workers", "1", "--results", str(inputs[1])]
    first = gc.main(["--store", str(inputs[0]), "--preset", "standard", "--measured-store", str(std), *grid,
                     "--out", str(tmp_path / "first")])
    report = tmp_path / "first" / "grid_cost_standard.json"
    again = gc.main(["--store", str(inputs[0]), "--preset", "standard", "--measured-costs", str(report), *grid,
                     "--out", str(tmp_path / "again")])
    for key in ("domains", "pairs", "calibration", "serial"):
        assert again[key] == first[key], key
    assert str(report) in again["inputs"]["stores_at_preset"][0]["path"]
    newer = tmp_path / "newer.sqlite"
    with Store(newer) as store:
        put(store, "dpo", "image", 0, 100.0, 300.0, preset="standard")
    merged = gc.main(["--store", str(inputs[0]), "--preset", "standard", "--measured-costs", str(report),
                      "--measured-store", str(newer), *grid, "--out", str(tmp_path / "merged")])
    pairs = {(p["algo"], p["domain"]): p for p in merged["pairs"]}
    assert pairs["dpo", "image"]["cell_s"] == pytest.approx(400.0)  # the new store's, not the report's 1,400
    assert pairs["dpo", "text"]["cell_s"] == pytest.approx(420.0)  # the report's
    assert merged["domains"][0]["preparation_s"] == pytest.approx(900.0)
    old_sft = {(p["algo"], p["domain"]): p for p in first["pairs"]}["sft", "image"]["cell_s"]
    assert pairs["sft", "image"]["cell_s"] == pytest.approx(old_sft * 400.0 / 1400.0, rel=0.3)
    assert pairs["sft", "image"]["cell_s"] < old_sft / 2  # image's factors follow the new cell
    gc.main(["--store", str(inputs[0]), *grid, "--out", str(tmp_path / "quick")])
    with pytest.raises(SystemExit, match="pass a report of --preset standard"):
        gc.main(["--store", str(inputs[0]), "--preset", "standard", "--measured-costs",
                 str(tmp_path / "quick" / "grid_cost_quick.json"), *grid, "--out", str(tmp_path / "x")])


def test_the_command_writes_json_and_markdown(gc, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    gc.main(["--store", str(inputs[0]), "--algos", "dpo,sft,marlhf", "--domains", "text,image", "--conditions",
             "default,noisy-labels", "--seeds", "2", "--workers", "1,2", "--ray-workers", "4", "--results",
             str(inputs[1]), "--out", str(out)])
    res = json.loads((out / "grid_cost_quick.json").read_text())
    md = (out / "grid_cost_quick.md").read_text()
    assert res["grid"]["cells"] == 3 * 2 * 2 * 2 and res["machine"]["cpus"] >= 1
    assert "- image: marlhf, sft" in md and "| **all** | 24 |" in md and str(inputs[0].resolve()) in md
    again = gc.main(["--costs", str(out / "grid_cost_quick.json"), "--algos", "dpo,sft,marlhf", "--domains",
                     "text,image", "--conditions", "default,noisy-labels", "--seeds", "2", "--workers", "1,2",
                     "--ray-workers", "4", "--results", str(inputs[1]), "--out", str(tmp_path / "again")])
    for key in ("domains", "pairs", "serial", "machine_workers", "if_unseen_pool_parts_na"):  # no store read
        assert again[key] == res[key], key
    newer = tmp_path / "newer.sqlite"  # a store measuring sft on image: it fills a pair the report imputed
    with Store(newer) as store:
        put(store, "sft", "image", 0, 8.0, 10.0)
        put(store, "dpo", "text", 0, 20.0, 2.0)
    merged = gc.main(["--costs", str(out / "grid_cost_quick.json"), "--store", str(newer), "--algos", "dpo,sft,marlhf",
                      "--domains", "text,image", "--seeds", "2", "--results", str(inputs[1]), "--out", str(tmp_path)])
    pairs = {(p["algo"], p["domain"]): p for p in merged["pairs"]}
    assert pairs["sft", "image"]["cell_s"] == pytest.approx(18.0) and not pairs["sft", "image"]["imputed"]
    assert pairs["dpo", "text"]["train_s"] == pytest.approx(12.0)  # the report's measurement is kept
    assert pairs["sft", "text"]["train_s"] == pytest.approx(4.0)  # the report's, kept


def test_claims_cost_prices_exactly_the_cells_grid_claims_runs(tmp_path: Path, gc) -> None:
    """``benchmarks/claims_cost.py``: every claim cell priced once; the text families are extra preparations."""
    from leaderboard.claims import all_claims, claim_cells

    spec = importlib.util.spec_from_file_location("claims_cost", SCRIPT.parent / "claims_cost.py")
    cc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cc)
    names = DOMAINS.names()
    report = {"preset": "smoke",
              "pairs": [{"algo": a, "domain": d, "cell_s": 2.0} for a in ALGORITHMS.names() for d in names],
              "domains": [{"domain": d, "preparation_s": 100.0, "preparation_source": "test", "cache_load_s": 1.0}
                          for d in names]}
    (tmp_path / "costs.json").write_text(json.dumps(report))
    res = cc.main(["--costs", str(tmp_path / "costs.json"), "--seeds", "2", "--workers", "1,2", "--out", str(tmp_path)])
    n = len(claim_cells(all_claims(), "smoke", [0, 1]))
    assert res["cells"] == n and sum(p["cells"] for p in res["preparations"]) == n
    text_preps = [p for p in res["preparations"] if p["domain"] == "text"]
    assert len(text_preps) == 3  # families all, short, long; scorer_layers is a runtime field
    assert res["serial_s"] == pytest.approx(100.0 * len(res["preparations"]) + 2.0 * n)
    assert res["walls"][1]["estimate_s"] < res["walls"][0]["estimate_s"]
    assert (tmp_path / "claims_cost_smoke.md").read_text().startswith("# `bench grid --claims`")


def test_flop_utilisation_counts_and_times_a_real_dpo_step(tmp_path: Path) -> None:
    """``benchmarks/flop_utilisation.py`` on the smoke text model: FLOPs at least the policy's
    forward matmuls over the batch, a timed step, the peaks and the page."""
    spec = importlib.util.spec_from_file_location("flop_utilisation", SCRIPT.parent / "flop_utilisation.py")
    fu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fu)
    res = fu.main(["--domains", "text", "--presets", "smoke", "--steps", "1", "--reps", "2", "--out", str(tmp_path)])
    (row,) = res["rows"]
    cfg = DOMAINS.get("text").config("smoke")
    tokens = row["batch_size"] * 2 * (cfg.prompt_len + cfg.response_len)  # chosen and rejected sequences
    lm_head = 2.0 * tokens * cfg.n_embd * len(DOMAINS.get("text")(cfg)._vocab())
    assert row["gflop_per_step"] * 1e9 > 2 * lm_head  # policy fwd + bwd + reference fwd ⊃ the LM heads
    assert row["ms_per_step"] > 0 and 0 < row["utilisation_1024"] < 1.5
    assert row["heaviest_op"]["kind"] == "matmul" and row["heaviest_op"]["shape"][1] == cfg.n_embd
    assert "| text | smoke |" in (tmp_path / "flop_utilisation.md").read_text()


def test_standard_summary_says_whether_each_method_improves_on_the_reference(tmp_path: Path) -> None:
    """``benchmarks/standard.py``: mean ± std per algorithm over seeds and the verdict from the
    normalized score's interval (yes / worse / cannot tell)."""
    spec = importlib.util.spec_from_file_location("standard_summary", SCRIPT.parent / "standard.py")
    st = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(st)
    path = tmp_path / "s.sqlite"
    scores = {"reference": [0.0, 0.0, 0.0], "dpo": [30.0, 32.0, 34.0], "kto": [-5.0, -7.0, -6.0],
              "ipo": [10.0, -10.0, 2.0]}
    with Store(path) as store:
        for algo, values in scores.items():
            for seed, v in enumerate(values):
                rec = new_record(resolve(CellRequest(algo, "text", seed=seed, preset="standard")), status="done")
                rec.metrics = {"normalized_score": v, "gold_reward": 1.5 + v / 100, "data/offline_epochs": 2.0}
                rec.timings = {"total_s": 60.0 + seed, "train_s": 50.0, "eval_s": 8.0, "peak_rss_mb": 900.0}
                store.put(rec)
        # a diagnostic cell with an override (--set beta=1.0) is not the method's standard figure
        rec = new_record(resolve(CellRequest("dpo", "text", seed=0, preset="standard", sets=("beta=1.0",))),
                         status="done")
        rec.metrics = {"normalized_score": -90.0, "gold_reward": 0.6}
        store.put(rec)
        rec = new_record(resolve(CellRequest("kto", "text", seed=0, preset="standard",
                                             domain_sets=("families=long",))), status="done")
        rec.metrics = {"normalized_score": 90.0, "gold_reward": 2.4}
        store.put(rec)
    res = st.main(["--domain", "text", "--store", str(path), "--out", str(tmp_path)])
    rows = res["algorithms"]
    assert {a: r["improves_on_reference"] for a, r in rows.items()} == {
        "dpo": "yes", "ipo": "cannot tell", "kto": "worse", "reference": None}
    assert rows["dpo"]["normalized_score"]["mean"] == pytest.approx(32.0)
    assert rows["dpo"]["normalized_score"]["std"] == pytest.approx(2.0)
    assert rows["dpo"]["time/total_s"]["mean"] == pytest.approx(61.0)
    assert "| dpo | 3 | 1.82 ± 0.02 |" in (tmp_path / "text_standard.md").read_text()


def test_dpo_vs_trl_agrees_with_trl_and_bounds_the_ratio(tmp_path: Path, cache_dir: Path) -> None:
    """``benchmarks/dpo_vs_trl.py`` on the smoke text model: our step (chosen and rejected in one
    pass) and TRL's DPOTrainer, from the same weights on the same pairs, give the same losses step
    by step; the page reports the FLOP ceiling, which must be consistent with the measured times."""
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling flop_utilisation
    try:
        spec = importlib.util.spec_from_file_location("dpo_vs_trl", SCRIPT.parent / "dpo_vs_trl.py")
        dvt = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dvt)
        res = dvt.main(["--preset", "smoke", "--steps", "4", "--reps", "1", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(SCRIPT.parent))
    agr, c = res["agreement"], res["ceiling"]
    assert agr["steps"] == 4 and agr["max_abs_diff"] < 1e-5, agr
    assert agr["first_loss_ours"] == pytest.approx(0.693147, abs=1e-5)  # log 2: policy = reference at step 0
    assert c["gflop_per_step"] > 0 and 0 < c["utilisation_ours"] < 1.5
    assert c["max_speedup_over_trl"] == pytest.approx(1 / c["utilisation_trl"], rel=1e-6)  # peak ÷ TRL's rate
    assert "no implementation of this step can run more than" in (tmp_path / "dpo_vs_trl_smoke.md").read_text()


def test_kto_saturation_reads_kto_s_logged_slope_from_a_real_cell(tmp_path: Path, cache) -> None:
    """KTO logs z₀, ρ and the sigmoid's slope at every curve point; ``benchmarks/kto_saturation.py``
    averages them per window, counts the saturated steps and plots them."""
    from benchmark.runner import run_cell

    spec = importlib.util.spec_from_file_location("kto_saturation", SCRIPT.parent / "kto_saturation.py")
    ks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ks)
    with Store(tmp_path / "s.sqlite") as store:
        rec = run_cell(resolve(CellRequest("kto", "text", preset="smoke")), store=store, cache=cache)
    assert rec.status == "done"
    steps = [k for k, _ in rec.curves["slope"]]
    assert steps == [k for k, _ in rec.curves["z0"]] == [k for k, _ in rec.curves["rho"]]
    assert steps == list(range(rec.train_steps))
    assert all(0 <= v <= 1 for _, v in rec.curves["slope"]) and rec.curves["slope"][0][1] == pytest.approx(1.0)
    assert ks.windows([[0, 1.0], [1, 3.0], [2, 5.0], [5, 7.0]], 2, 6) == [2.0, 5.0, 7.0]
    ks.main(["--store", str(tmp_path / "s.sqlite"), "--domain", "text", "--preset", "smoke", "--out", str(tmp_path)])
    assert (tmp_path / "text_smoke_curves" / "kto_saturation.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no done kto cells of robot"):
        ks.main(["--store", str(tmp_path / "s.sqlite"), "--domain", "robot", "--preset", "smoke"])

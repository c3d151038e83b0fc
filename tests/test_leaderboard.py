"""The leaderboard as a user gets it: a small smoke grid on the text domain (real cells, a real
store), then ``bench leaderboard`` in every format, rendered in headless Chromium."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmark.api import Algorithm, RunContext
from benchmark.executors import LocalExecutor, Settings, run_grid
from benchmark.metrics import SCORE_VERSION
from benchmark.registry import ALGORITHMS
from benchmark.runner import CellRequest, resolve
from benchmark.store import Store
from leaderboard.aggregate import Stat, aggregates, best_index, load_board, mean_ci

BENCH = [sys.executable, "-m", "benchmark.cli"]
SEEDS = (0, 1)


@dataclass
class NoCfg:
    pass


class NeedsTrajectories(Algorithm):
    """Needs offline trajectories, which the text domain lacks: an n/a cell with a reason."""

    name = "test-lb-needs-trajectories"
    Config = NoCfg
    requires = frozenset({"offline:trajectories"})

    def train(self, ctx: RunContext, cfg: NoCfg):
        raise AssertionError("an n/a cell must not train")


@pytest.fixture(scope="module")
def board_home(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Path]:
    """sft and dpo × text × 2 seeds (done) and an algorithm that is n/a on text, in one store."""
    home = tmp_path_factory.mktemp("lb") / "home"
    ALGORITHMS.add(NeedsTrajectories.name, NeedsTrajectories)
    try:
        cells = [resolve(CellRequest(a, "text", "default", s, "smoke"))
                 for s in SEEDS for a in ("sft", "dpo", NeedsTrajectories.name)]
        store = Store(home / "prefbench.sqlite")
        recs = run_grid(cells, store, LocalExecutor(), Settings(home=str(home), cache_dir=str(cache_dir)))
        store.close()
    finally:
        ALGORITHMS.remove(NeedsTrajectories.name)
    assert sorted(r.status for r in recs) == ["done"] * 4 + ["na"] * 2
    yield home


def bench(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFBENCH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------


def test_mean_ci_is_the_student_t_interval_over_seeds() -> None:
    s = mean_ci([1.0, 2.0, 3.0])
    assert s is not None and s.n == 3 and s.mean == 2.0
    # t(0.975, 2) = 4.3027, sd = 1, n = 3
    assert s.half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    one = mean_ci([5.0, float("nan")])
    assert one is not None and one.n == 1 and one.lo is None
    assert mean_ci([]) is None


def test_best_is_marked_only_when_intervals_are_disjoint() -> None:
    a, b, c = Stat(10, 3, 1, 9, 11), Stat(5, 3, 1, 4, 6), Stat(10.5, 3, 1, 8, 13)
    assert best_index([a, b], higher=True) == 0
    assert best_index([b, a], higher=False) == 0
    assert best_index([a, b, c], higher=True) is None  # c's mean is best but a is within its interval
    assert best_index([a, Stat(4, 1)], higher=True) is None  # one seed: no interval, no verdict
    assert best_index([a, None], higher=True) is None  # a single contender is not "best"


# ---------------------------------------------------------------------------------------------
# aggregates
# ---------------------------------------------------------------------------------------------


def test_aggregates_follow_the_store_and_show_missing_entries(board_home: Path) -> None:
    board = load_board(board_home / "prefbench.sqlite")
    assert board.preset == "smoke" and len(board.records) == 6
    aggs = aggregates(board, reps=300)
    assert [a.condition for a in aggs] == ["default"]
    agg = aggs[0]
    assert [t.domain for t in agg.tasks] == ["text"]
    assert [e.label for e in agg.entries] == ["dpo", "sft"]
    # the n/a algorithm is not averaged over fewer domains: it is missing, with its reason
    assert set(agg.missing) == {NeedsTrajectories.name}
    assert "n/a" in agg.missing[NeedsTrajectories.name] and "offline:trajectories" in agg.missing[
        NeedsTrajectories.name]
    store = Store(board_home / "prefbench.sqlite", readonly=True)
    for label in ("dpo", "sft"):
        scores = sorted(r.metrics["normalized_score"] for r in store.records(algo=label, status="done"))
        assert agg.matrices[label].shape == (len(SEEDS), 1)
        assert sorted(agg.matrices[label][:, 0]) == scores
        mean = agg.stats[label]["mean"]
        assert mean.estimate == pytest.approx(np.mean(scores))
        assert agg.stats[label]["optimality gap"].estimate == pytest.approx(
            100 - np.mean(np.minimum(scores, 100)))
        for s in agg.stats[label].values():
            assert s.lo is not None and s.lo <= s.estimate <= s.hi
    assert agg.baseline == "dpo" and 0.0 <= agg.improvement["sft"].estimate <= 1.0
    assert agg.pairwise[("sft", "dpo")] + agg.pairwise[("dpo", "sft")] == pytest.approx(1.0)
    # seeded bootstrap: recomputing gives the same intervals, and does not disturb NumPy's global RNG
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    again = aggregates(board, reps=300)[0]
    assert np.array_equal(np.random.get_state()[1], before)
    assert again.stats == agg.stats and again.improvement == agg.improvement


def test_an_algorithm_is_one_entry_across_domains_with_their_own_budgets(tmp_path: Path, cache_dir: Path) -> None:
    """Real smoke cells on every registered domain: each domain's preset budget differs, yet each
    algorithm is one entry aggregated over all domains; a ``--budget`` override is its own entry."""
    from benchmark.registry import DOMAINS

    domains = sorted(DOMAINS.names())
    assert len(domains) >= 2
    budgets = {tuple(sorted(vars(DOMAINS.get(d).budget("smoke")).items())) for d in domains}
    assert len(budgets) > 1, "the domains' smoke budgets no longer differ: this test would not test anything"
    cells = [resolve(CellRequest(a, d, "default", s, "smoke")) for d in domains for s in SEEDS for a in ("sft", "dpo")]
    cells.append(resolve(CellRequest("dpo", domains[0], "default", 0, "smoke", budget_sets=("steps=3",))))
    store = Store(tmp_path / "prefbench.sqlite")
    recs = run_grid(cells, store, LocalExecutor(), Settings(home=str(tmp_path), cache_dir=str(cache_dir)))
    store.close()
    assert all(r.status == "done" for r in recs)
    board = load_board(tmp_path / "prefbench.sqlite")
    assert [e.label for e in board.entries] == ["dpo (steps=3)", "dpo (steps=default)", "sft"]
    full = aggregates(board, reps=100)[0]
    assert [t.domain for t in full.tasks] == domains
    assert set(full.stats) == {"sft", "dpo (steps=default)"} and not full.missing.keys() - {"dpo (steps=3)"}
    assert full.matrices["dpo (steps=default)"].shape == (len(SEEDS), len(domains))
    assert full.matrices["sft"].shape == (len(SEEDS), len(domains))
    assert "no cells" in full.missing["dpo (steps=3)"]


# ---------------------------------------------------------------------------------------------
# bench leaderboard
# ---------------------------------------------------------------------------------------------


def test_leaderboard_prints_markdown_with_seeds_reasons_and_provenance(board_home: Path) -> None:
    out = bench("leaderboard", "--reps", "300", home=board_home)
    assert out.returncode == 0, out.stderr
    md = out.stdout
    assert md.startswith("# prefbench leaderboard")
    assert f"store: {(board_home / 'prefbench.sqlite').resolve()}" in md and "cells: 6 (4 done, 2 n/a)" in md
    code = Store(board_home / "prefbench.sqlite", readonly=True).records()[0].code_version
    assert f"code versions: {code} (6 cells)" in md
    assert "over training seeds" in md and "stratified-bootstrap" in md
    rows = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert re.search(r"\| dpo \| 2 \| -?[\d.]+ ± [\d.]+ \|", rows["dpo"]), rows["dpo"]
    na_row = rows[NeedsTrajectories.name]
    assert "n/a" in na_row and "offline:trajectories" in na_row


def test_every_format_is_a_pure_function_of_the_store(board_home: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        res = bench("leaderboard", "--format", "all", "--out", str(out), "--reps", "300", home=board_home)
        assert res.returncode == 0, res.stderr
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {"index.html", "leaderboard.md", "leaderboard.csv", "leaderboard.tex",
                                       "img/bars_text.png", "img/bars_text.svg", "img/frontier_text.png",
                                       "img/profile_default_all.png", "img/aggregates_default_all.svg",
                                       "img/feedback.png"}
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between two regenerations"
    store = str((board_home / "prefbench.sqlite").resolve())
    for name in ("index.html", "leaderboard.md", "leaderboard.csv", "leaderboard.tex"):
        text = (a / name).read_text()
        assert store in text.replace("\\_", "_") and "6 (4 done, 2 n/a)" in text, name
    # CSV: one row per (entry, task, metric), numbers at full precision
    lines = [ln for ln in (a / "leaderboard.csv").read_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    score = {r["entry"]: r for r in rows if r["table"] == "domain" and r["metric"] == "normalized_score"}
    recs = Store(board_home / "prefbench.sqlite", readonly=True).records(algo="sft", status="done")
    assert float(score["sft"]["estimate"]) == pytest.approx(np.mean([r.metrics["normalized_score"] for r in recs]))
    assert score["sft"]["n_seeds"] == "2" and score["sft"]["seeds"] == "0 1"
    assert score[NeedsTrajectories.name]["estimate"] == "" and "n/a" in score[NeedsTrajectories.name]["note"]
    assert any(r["table"] == "aggregate-all" and r["metric"] == "IQM" and r["entry"] == "dpo" for r in rows)
    tex = (a / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex
    # plots carry no dates
    svg = (a / "img" / "bars_text.svg").read_text()
    assert "<dc:date>" not in svg


def test_leaderboard_bad_input_is_one_line(board_home: Path, tmp_path: Path, warm_bench) -> None:
    for args, expected in [
        (["--format", "html"], "pass --out DIR"),
        (["--format", "pdf"], "--format pdf: use md, csv, latex, html"),
        (["--preset", "quick"], "--preset quick: the store has no cells of that preset"),
        (["--baseline", "nosuch"], "--baseline nosuch: no such entry"),
        (["--store", str(tmp_path / "none.sqlite")], "no store at"),
    ]:
        out = warm_bench.run("leaderboard", *args, env={**os.environ, "PREFBENCH_HOME": str(board_home)})
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert expected in lines[0], lines[0]


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
IMAGE_PROBE = """<script>window.addEventListener("load", function () {
  var out = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    out.push(im.getAttribute("src") + "=" + im.naturalWidth + "x" + im.naturalHeight);
  }
  var pre = document.createElement("pre"); pre.id = "image-probe"; pre.textContent = out.join(";");
  document.body.appendChild(pre);
});</script></body>"""


def test_html_page_renders_in_headless_chromium(board_home: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, ("headless Chromium is needed for this test and is not installed: "
                      "apt-get install -y chromium (.ci/run installs it)")
    site = tmp_path / "site"
    res = bench("leaderboard", "--format", "html", "--out", str(site), "--reps", "300", home=board_home)
    assert res.returncode == 0, res.stderr
    page = (site / "index.html").read_text()
    assert "http://" not in page and "https://" not in page, "the page must not load anything from a network"
    probe = site / "probe.html"
    probe.write_text(page.replace("</body>", IMAGE_PROBE))

    def run(*args: str) -> subprocess.CompletedProcess:
        profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=120)

    dom = run("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the tables rendered: every table of the page, with its rows
    assert html.count("<table") == page.count("<table") >= 4
    for text in ("cross-domain — default", "text — default", ">dpo<", ">sft<", "n/a"):
        assert text in html, text
    # the images loaded: every <img> has a decoded size
    m = re.search(r'<pre id="image-probe">([^<]*)</pre>', html)
    assert m, "the probe script did not run"
    sizes = dict(item.split("=") for item in m.group(1).split(";"))
    assert len(sizes) == page.count("<img ") >= 5
    for src, size in sizes.items():
        w, h = (int(x) for x in size.split("x"))
        assert w > 100 and h > 100, f"{src} did not load ({size})"
    shot = tmp_path / "leaderboard.png"
    res = run("--window-size=1280,2400", f"--screenshot={shot}", (site / "index.html").as_uri())
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, res.stderr[-2000:]
    keep = os.environ.get("PREFBENCH_SCREENSHOT")
    if keep:  # to look at it: PREFBENCH_SCREENSHOT=/tmp/shot.png pytest tests/test_leaderboard.py
        shutil.copy(shot, keep)


# ---------------------------------------------------------------------------------------------
# a board with holes: two domains, an n/a algorithm, a failed cell, uneven seeds, two configs
# ---------------------------------------------------------------------------------------------


def _record(algo: str, domain: str, seed: int, status: str, score: float | None = None, reason: str | None = None,
            beta: float = 0.1, condition: str = "default", steps: int = 10):
    from benchmark.store import Record

    metrics = {} if score is None else {"normalized_score": score, "gold_reward": score / 100, "win_rate": 0.5,
                                        "kl_to_ref": 0.01, "diversity": 1.0, "feedback_used": 0.0,
                                        "score_version": SCORE_VERSION}
    cfg = {"algo_config": {"beta": beta}, "budget": {"steps": steps}, "budget_overrides": {},
           "domain_config": {"size": 1}}
    return Record(run_id=f"{algo}-{beta}-{domain}-{condition}-{seed}", algo=algo, domain=domain, condition=condition,
                  preset="smoke", seed=seed, config_hash="h", config=cfg, code_version="abc123", packages={}, env={},
                  status=status, reason=reason, metrics=metrics, curves={}, timings={}, artifacts=[],
                  feedback_used=0, online_samples=0, train_steps=10, started_at=1.0, finished_at=2.0, wall_s=1.0)


@pytest.fixture()
def holey_store(tmp_path: Path) -> Path:
    """Stored records written directly (the leaderboard reads only the store): domains a and b,
    each with its own preset budget (10 and 20 steps, no overrides); x on both (3 seeds on a,
    2 on b); y n/a on b; z failed once on a; dpo in two configurations."""
    store = Store(tmp_path / "s.sqlite")
    for s, v in enumerate([10.0, 20.0, 30.0]):
        store.put(_record("x", "a", s, "done", v))
        store.put(_record("y", "a", s, "done", v + 100))
        store.put(_record("dpo", "a", s, "done", v + 5))
        store.put(_record("dpo", "a", s, "done", v + 7, beta=0.05))
        store.put(_record("dpo", "b", s, "done", v, steps=20))
        store.put(_record("dpo", "b", s, "done", v, beta=0.05, steps=20))
        store.put(_record("y", "b", s, "na", reason="domain b lacks offline:trajectories", steps=20))
        if s < 2:
            store.put(_record("x", "b", s, "done", v + 1, steps=20))
            store.put(_record("z", "a", s, "done", v))
        else:
            store.put(_record("z", "a", s, "failed", reason="RuntimeError: diverged"))
        store.put(_record("z", "b", s, "done", v, steps=20))
    store.close()
    return tmp_path / "s.sqlite"


def test_missing_entries_are_never_averaged_over_fewer_domains(holey_store: Path) -> None:
    from leaderboard.tables import build_tables, to_markdown

    board = load_board(holey_store)
    labels = [e.label for e in board.entries]
    assert labels == ["dpo (beta=0.05)", "dpo (beta=0.1)", "x", "y", "z"]
    aggs = aggregates(board, reps=200, baseline="x")
    full, common = aggs
    assert full.scope == "all" and [t.domain for t in full.tasks] == ["a", "b"]
    assert "y" in full.missing and "n/a: domain b lacks offline:trajectories" in full.missing["y"]
    assert "y" not in full.stats
    # x: 3 seeds on a, 2 on b -> the first 2 seeds of each, with a note
    assert full.runs["x"] == 2 and full.matrices["x"].tolist() == [[10.0, 11.0], [20.0, 21.0]]
    assert "2 seeds per domain" in full.notes["x"]
    # z: one failed cell on a leaves 2 done seeds there
    assert full.runs["z"] == 2
    assert full.stats["x"]["mean"].estimate == pytest.approx((15.0 + 16.0) / 2)
    assert full.baseline == "x" and "x" not in full.improvement and "z" in full.improvement
    # the second aggregate covers only domain a, where every entry has cells, and says so
    assert common.scope == "common" and [t.domain for t in common.tasks] == ["a"] and "y" in common.stats
    md = to_markdown(board, build_tables(board, aggs))
    assert "cross-domain — default (common domains)" in md and "only the domains where every entry has cells" in md
    y_rows = [ln for ln in md.splitlines() if ln.startswith("| y |")]
    assert any("missing" in ln and "n/a: domain b lacks" in ln for ln in y_rows)
    assert any("n/a" in ln for ln in y_rows)
    z_row = next(ln for ln in md.splitlines() if ln.startswith("| z | 2 |") and "±" in ln)
    assert "1 failed: RuntimeError: diverged" in z_row
    # y is best on a with disjoint intervals: marked; nothing else in that column is
    a_table = md.split("## a — default\n")[1].split("## ")[0]
    assert "**" in next(ln for ln in a_table.splitlines() if ln.startswith("| y |"))
    assert sum("**" in ln for ln in a_table.splitlines()) == 1
    # x (10, 20, 30 on a: 20 ± 24.8) and its win rate (0.5 ± 0) cover the reference's 0 and 0.5;
    # y (110, 120, 130) does not
    x_row = next(ln for ln in a_table.splitlines() if ln.startswith("| x |"))
    assert "20 ± 24.8 °" in x_row and x_row.count("°") == 2
    y_row = next(ln for ln in a_table.splitlines() if ln.startswith("| y |"))
    assert y_row.count("°") == 1


def test_cells_of_an_older_scoring_definition_are_left_out(holey_store: Path) -> None:
    store = Store(holey_store)
    old = _record("w", "a", 0, "done", 50.0)
    del old.metrics["score_version"]
    store.put(old)
    store.close()
    board = load_board(holey_store)
    assert "w" not in [e.algo for e in board.entries] and board.stale == 1
    assert any(k == "left out" and "1 done cells" in v for k, v in board.provenance())


# ---------------------------------------------------------------------------------------------
# the page links the runs' pictures (image artifacts)
# ---------------------------------------------------------------------------------------------


def test_html_page_links_each_entrys_pictures_and_skips_missing_files(tmp_path: Path) -> None:
    """x: seed 0's PNG (its text artifact is not a picture); y: seed 0's file is gone, so seed 1's GIF;
    v: stored under a home that no longer resolves, found under the store's folder; z: nothing on disk."""
    from PIL import Image

    from leaderboard.site import run_pictures, to_html, write
    from leaderboard.tables import build_tables

    home = tmp_path / "home"
    store = Store(home / "prefbench.sqlite")

    def art(run_id: str, name: str) -> Path:
        path = home / "artifacts" / run_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    frames = [Image.new("RGB", (16, 12), c) for c in ("red", "blue")]
    for seed in (0, 1):
        x, y, v, z = (_record(a, "a", seed, "done", 10.0 + seed) for a in "xyvz")
        frames[0].save(art(x.run_id, "grid.png"))
        art(x.run_id, "samples.txt").write_text("not a picture")
        x.artifacts = [str(art(x.run_id, "grid.png")), str(art(x.run_id, "samples.txt"))]
        if seed == 1:
            frames[0].save(art(y.run_id, "motion.gif"), save_all=True, append_images=frames[1:], duration=50)
        y.artifacts = [str(art(y.run_id, "motion.gif"))]
        frames[1].save(art(v.run_id, "grid.png"))
        v.artifacts = [f"gone/home/artifacts/{v.run_id}/grid.png"]
        z.artifacts = [str(home / "artifacts" / z.run_id / "grid.png")]
        for rec in (x, y, v, z):
            store.put(rec)
    store.close()
    board = load_board(home / "prefbench.sqlite")
    aggs = aggregates(board, reps=100)
    write(board, aggs, ["html"], home / "site")
    page = (home / "site" / "index.html").read_text()
    assert '<h2 id="pictures">' in page and '<a href="#pictures">pictures</a>' in page
    links = re.findall(r'<a href="([^"]+)"><img src="([^"]+)" width="\d+"', page)
    assert all(href == src for href, src in links)
    assert [h for h, _ in links] == ["../artifacts/v-0.1-a-default-0/grid.png",
                                     "../artifacts/x-0.1-a-default-0/grid.png",
                                     "../artifacts/y-0.1-a-default-1/motion.gif"]
    for href, _ in links:  # the relative links resolve to the files, from the page's folder
        assert (home / "site" / href).resolve().is_file()
    assert "x · seed 0 · grid.png" in page and "y · seed 1 · motion.gif" in page and "z · seed" not in page
    assert "samples.txt" not in page
    # a page written away from the store's home links absolute file URIs
    far = run_pictures(board, tmp_path / "elsewhere" / "deep" / "site")
    assert [p.href for p in far] == [(home / "artifacts" / f"{e}-0.1-a-default-{s}" / n).resolve().as_uri()
                                     for e, s, n in (("v", 0, "grid.png"), ("x", 0, "grid.png"),
                                                     ("y", 1, "motion.gif"))]
    # once every file is gone there is no pictures section at all
    shutil.rmtree(home / "artifacts")
    bare = to_html(board, build_tables(board, aggs), [], run_pictures(board, home / "site"))
    assert "pictures" not in bare and "<img " not in bare


def test_the_board_says_when_a_domain_mixes_two_preparations(tmp_path: Path) -> None:
    """Cells whose preparations were built with different thread counts have different references:
    the provenance names the domain and the counts; one preparation gives no such line."""
    from benchmark.runner import new_record

    store = Store(tmp_path / "s.sqlite")
    for seed, built, device in ((0, 1, "cpu"), (1, 1, "cpu"), (2, 2, "cpu"), (3, 1, "cuda")):
        rec = new_record(resolve(CellRequest("sft", "text", seed=seed, preset="smoke")), status="done")
        rec.metrics = {"normalized_score": 1.0, "score_version": SCORE_VERSION}
        rec.env = dict(rec.env, preparation_threads=built, preparation_device=device)
        store.put(rec)
    store.close()
    board = load_board(tmp_path / "s.sqlite", preset="smoke")
    assert dict(board.provenance())["not one reference"] == ("text: preparations built on cpu, 1 thread (2 cells), "
                                                             "cpu, 2 threads (1 cells), cuda, 1 thread (1 cells); "
                                                             "compare cells of one preparation")
    one = load_board(tmp_path / "s.sqlite", preset="smoke")
    one.records = [r for r in one.records if r.env["preparation_threads"] == 1]
    assert "cuda, 1 thread (1 cells)" in dict(one.provenance())["not one reference"]  # same threads, not the same
    one.records = [r for r in one.records if r.env["preparation_device"] == "cpu"]
    assert "not one reference" not in dict(one.provenance())

"""The ``bench`` command line.

User mistakes (unknown names, bad ``--set`` values, unwritable paths) end in one line that
names the problem and the fix, with exit status 2; a cell that fails while running is stored as
failed with its reason and ends with exit status 1.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmark.errors import UserError
from benchmark.store_cli import store_app

app = typer.Typer(
    name="bench",
    help="prefbench: every preference-optimisation algorithm on every domain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(store_app, name="store")  # bench store merge (benchmark/store_cli.py)
# Piped or redirected output gets a wide page (rich's 80 columns truncate the runs table to "a…").
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err_console = Console(stderr=True)


StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="SQLite store (default: $PREFBENCH_HOME/prefbench.sqlite or ./runs/...)."),
]


def error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    error_line(message)
    raise typer.Exit(code)


def command(name: str, on: typer.Typer | None = None) -> Any:
    """``@app.command`` (or ``on``'s) whose user errors print as one line (exit 2), never a traceback."""

    def deco(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except UserError as e:
                fail(str(e))

        return (on or app).command(name)(wrapper)

    return deco


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def _open_store(path: Path | None, readonly: bool = False):
    from benchmark.store import Store

    return Store(path, readonly=readonly)


# ---------------------------------------------------------------------------------------------
# bench list
# ---------------------------------------------------------------------------------------------


@command("list")
def list_cmd() -> None:
    """Domains, algorithms, presets and conditions."""
    from rich.markup import escape

    from benchmark.conditions import CONDITIONS
    from benchmark.presets import PRESETS
    from benchmark.registry import ALGORITHMS, DOMAINS

    t = Table(title="domains", title_justify="left")
    t.add_column("name", style="bold")
    t.add_column("description")
    for name in DOMAINS.names():
        try:
            d = DOMAINS.get(name)
            t.add_row(name, d.description)
        except Exception as e:  # a broken third-party plugin must not hide the rest
            t.add_row(name, f"[red]{escape(str(e))}[/]")
    console.print(t)

    t = Table(title="algorithms", title_justify="left")
    t.add_column("name", style="bold")
    t.add_column("needs")
    t.add_column("paper")
    for name in ALGORITHMS.names():
        try:
            a = ALGORITHMS.get(name)
            t.add_row(name, ", ".join(sorted(a.requires)), a.paper)
        except Exception as e:
            t.add_row(name, "", f"[red]{escape(str(e))}[/]")
    console.print(t)

    t = Table(title="presets", title_justify="left")
    t.add_column("name", style="bold")
    t.add_column("meaning")
    for k, v in PRESETS.items():
        t.add_row(k, v)
    console.print(t)

    t = Table(title="conditions", title_justify="left")
    t.add_column("name", style="bold")
    t.add_column("meaning")
    for c in CONDITIONS.values():
        t.add_row(c.name, c.description)
    console.print(t)


# ---------------------------------------------------------------------------------------------
# bench run
# ---------------------------------------------------------------------------------------------


def _metrics_table(rec: Any, title: str) -> Table:
    """Headline metrics (with their 95% intervals over contexts), then the domain's own, each
    beside the reference's value on the same evaluation draws."""
    from rich.markup import escape

    from benchmark.metrics import HEADLINE, NULL_VALUES, SECONDARY_PREFIXES, is_accounting

    m = rec.metrics
    t = Table(title=escape(title), title_justify="left")
    t.add_column("metric", style="bold")
    t.add_column("policy", justify="right")
    t.add_column("reference", justify="right")
    ref = {**NULL_VALUES, "gold_reward": m.get("reference_gold_reward"), "kl_to_ref": 0.0, "kl_k3_to_ref": 0.0,
           "elbo_gap": 0.0}
    shown = [k for k in (*HEADLINE, "gold_gain", "kl_k3_to_ref") if k in m and not is_accounting(k)]
    for k in shown:
        r = ref.get(k, m.get(f"reference/{k}"))
        ci = m.get(f"{k}_ci")
        value = _fmt(m[k]) + (f" ± {_fmt(ci)}" if ci is not None else "")
        t.add_row(k, value, "" if r is None else _fmt(r))
    t.add_section()
    for k in sorted(m):
        if k in shown or is_accounting(k) or k.endswith("_ci") or k.startswith(SECONDARY_PREFIXES):
            continue
        r, ci, r_ci = m.get(f"reference/{k}"), m.get(f"{k}_ci"), m.get(f"reference/{k}_ci")
        t.add_row(k, _fmt(m[k]) + (f" ± {_fmt(ci)}" if ci is not None else ""),
                  "" if r is None else _fmt(r) + (f" ± {_fmt(r_ci)}" if r_ci is not None else ""))
    trained = sorted(k for k in m if k.startswith("train/"))
    if trained:
        t.add_section()
        for k in trained:
            t.add_row(k, _fmt(m[k]), "")
    indist = sorted(k for k in m if k.startswith("indist/") and k.removeprefix("indist/") in
                    ("gold_reward", "win_rate", "normalized_score"))
    if indist:
        t.add_section()
        for k in indist:
            ci = m.get(f"{k}_ci")
            r = {"indist/gold_reward": m.get("indist/reference_gold_reward")}.get(k, NULL_VALUES.get(
                k.removeprefix("indist/")))
            t.add_row(k, _fmt(m[k]) + (f" ± {_fmt(ci)}" if ci is not None else ""), "" if r is None else _fmt(r))
    return t


@command("run")
def run_cmd(
    algo: Annotated[str, typer.Option("--algo", "-a", help="Algorithm name (`bench list`).")],
    domain: Annotated[str, typer.Option("--domain", "-d", help="Domain name (`bench list`).")],
    condition: Annotated[str, typer.Option("--condition", "-c", help="Data/feedback condition.")] = "default",
    seed: Annotated[int, typer.Option("--seed", "-s", help="Training seed.")] = 0,
    preset: Annotated[str, typer.Option("--preset", "-p", help="smoke | quick | standard | full")] = "quick",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Algorithm config override key=value.")] = None,
    domain_sets: Annotated[
        list[str] | None, typer.Option("--domain-set", help="Domain config override key=value.")] = None,
    budget_sets: Annotated[
        list[str] | None, typer.Option("--budget", help="Budget override key=value (steps, batch_size, "
                                       "online_samples, feedback).")] = None,
    store: StoreOpt = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Preparation cache directory.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu | cuda (default $PREFBENCH_DEVICE or cpu)")
                      ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run again even if the cell is done.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run one cell: train, evaluate, store, print a table."""
    import torch
    from rich.markup import escape

    from benchmark.cache import PreparationCache
    from benchmark.progress import live, make_progress
    from benchmark.runner import CellRequest, default_device, resolve, run_cell

    dev = device or default_device()
    if dev.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {dev}: no CUDA device is visible here; use --device cpu")
    if not (dev == "cpu" or dev.startswith("cuda") or dev == "mps"):
        fail(f"--device {dev}: use cpu or cuda[:N]")
    cell = resolve(CellRequest(algo, domain, condition, seed, preset, tuple(sets or ()), tuple(domain_sets or ()),
                               tuple(budget_sets or ())))
    pcache = PreparationCache(cache).ensure_writable()
    st = _open_store(store)
    existing = st.get(cell.run_id)
    if existing is not None and existing.status in ("done", "na") and not force:
        console.print(f"[yellow]cell {cell.run_id} ({escape(cell.label)}) is already {existing.status}; "
                      "showing the stored result (--force runs it again)[/]")
        rec = existing
    else:
        console.print(f"[bold]{escape(cell.label)}[/]  run [cyan]{cell.run_id}[/]  store {st.path}")
        t0 = time.perf_counter()
        prog = make_progress(console, quiet)
        with live(prog):
            rec = run_cell(cell, store=st, cache=pcache, device=dev, progress=prog, force=force,
                           notify=lambda msg: err_console.print(f"[yellow]{escape(msg)}[/]", highlight=False))
        console.print(f"wall time {time.perf_counter() - t0:.1f}s")
    _print_record(rec)
    if rec.status == "failed":
        tb = f"; traceback in {rec.artifacts[0]}" if rec.artifacts else ""
        fail(f"cell {rec.run_id} failed: {rec.reason}{tb}", code=1)


@command("export")
def export_cmd(
    domain: Annotated[str, typer.Option("--domain", "-d", help="Domain name (`bench list`).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="minari (robot: D4RL-layout trajectories as Minari "
                                     "datasets) | trl (text: preference pairs, tokenizer, reference for TRL)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("data"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty --out directory.")
                         ] = False,
    preset: Annotated[str, typer.Option("--preset", "-p", help="smoke | quick | standard | full")] = "quick",
    condition: Annotated[str, typer.Option("--condition", "-c", help="trl: the condition whose labelled pairs "
                                           "are exported (seed-independent, as every cell's offline data).")
                         ] = "default",
    domain_sets: Annotated[
        list[str] | None, typer.Option("--domain-set", help="Domain config override key=value.")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Preparation cache directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Export a domain's generated offline data (prepares the domain if it is not cached)."""
    import torch

    from benchmark.cache import PreparationCache
    from benchmark.export import FORMATS, check_format, check_out_dir, export
    from benchmark.progress import live, make_progress
    from benchmark.runner import CellRequest, prepare_domain, resolve

    if fmt not in FORMATS:
        fail(f"--format {fmt}: unknown export format; valid formats are {', '.join(FORMATS)}")
    cell = resolve(CellRequest("sft", domain, condition=condition, preset=preset,
                               domain_sets=tuple(domain_sets or ())))
    check_format(fmt, domain)
    if fmt != "trl" and condition != "default":
        fail(f"--condition {condition}: only --format trl exports a condition's labels")
    check_out_dir(out, overwrite, fmt)
    prog = make_progress(console, quiet)
    with live(prog):
        dom, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(cache), torch.device("cpu"),
                                   prog)
    written = export(dom, fmt, out, condition)
    for name in written:
        console.print(f"  {name}")
    if fmt == "trl":
        console.print(f"wrote the {domain} domain's pairs (condition {condition}), tokenizer and reference under "
                      f"{out} (datasets.load_from_disk; see {out / 'README.txt'})")
        return
    console.print(f"wrote {len(written)} {fmt} datasets under {out} (set MINARI_DATASETS_PATH={out} to load them)")


def _print_record(rec: Any) -> None:
    if rec.status == "na":
        console.print(f"[yellow]n/a[/]: {rec.reason}")
        return
    if rec.status != "done":
        return
    console.print(_metrics_table(rec, f"{rec.algo} on {rec.domain} [{rec.condition}, {rec.preset}, seed {rec.seed}]"))
    tm, m, budget = rec.timings, rec.metrics, rec.config.get("budget", {})
    console.print(
        "± : 95% interval over evaluation contexts (paired with the reference on the same draws; a domain "
        "metric's own interval, e.g. motion's over evaluator replications)  |  "
        f"target (best-of-N reference) gold reward {_fmt(m.get('target_gold_reward'))}  |  "
        f"steps {rec.train_steps}/{budget.get('steps')}  feedback {rec.feedback_used}/{budget.get('feedback')}  "
        f"online samples {rec.online_samples}/{budget.get('online_samples')}"
    )
    console.print(
        f"run [cyan]{rec.run_id}[/]  prepare {tm.get('prepare_s', 0):.1f}s"
        f"{' (built now)' if tm.get('prepared_now') else ' (cached)'}  data {tm.get('data_s', 0):.1f}s  "
        f"train {tm.get('train_s', 0):.1f}s (checkpoints {tm.get('checkpoints_s', 0):.1f}s)  "
        f"eval {tm.get('eval_s', 0):.1f}s" + (f"  peak RSS {tm['peak_rss_mb']:.0f} MiB" if "peak_rss_mb" in tm else "")
    )
    for a in rec.artifacts:
        console.print(f"artifact: {a}")


# ---------------------------------------------------------------------------------------------
# bench runs / bench show
# ---------------------------------------------------------------------------------------------


@command("runs")
def runs_cmd(
    store: StoreOpt = None,
    domain: Annotated[str | None, typer.Option("--domain", "-d")] = None,
    algo: Annotated[str | None, typer.Option("--algo", "-a")] = None,
    status: Annotated[str | None, typer.Option("--status", help="running | done | failed | na")] = None,
) -> None:
    """Stored cells as a table."""
    if status is not None and status not in ("running", "done", "failed", "na"):
        fail(f"--status {status}: use running, done, failed or na")
    st = _open_store(store, readonly=True)
    recs = st.records(domain=domain, algo=algo, status=status)
    from rich import box

    t = Table(title=f"{len(recs)} cells in {st.path}", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False, padding=(0, 1), collapse_padding=True, show_edge=False)
    t.add_column("run", no_wrap=True, min_width=12, style="cyan")
    for col in ["algo", "domain", "condition", "preset", "seed", "status", "gold", "win", "KL", "norm", "wall s",
                "code"]:
        t.add_column(col, justify="right" if col in ("seed", "gold", "win", "KL", "norm", "wall s") else "left",
                     no_wrap=True)
    fmts = {"gold_reward": "{:.3f}", "win_rate": "{:.3f}", "kl_to_ref": "{:.3f}", "normalized_score": "{:.1f}"}
    for r in recs:
        m = r.metrics
        code = r.code_version[:7] + ("*" if r.code_version.endswith("+dirty") else "")
        t.add_row(r.run_id, r.algo, r.domain, r.condition, r.preset, str(r.seed),
                  {"done": "[green]done[/]", "failed": "[red]failed[/]", "na": "[yellow]n/a[/]"}.get(
                      r.status, r.status),
                  *(fmt.format(m[k]) if k in m else "" for k, fmt in fmts.items()),
                  f"{r.wall_s:.0f}" if r.wall_s else "", code)
    console.print(t)


@command("show")
def show_cmd(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix), from `bench runs`.")],
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole record as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the over-optimisation curve (gold gain vs "
                                              "KL at the training checkpoints) to this PNG.")] = None,
) -> None:
    """One cell: config, metrics, curves, the over-optimisation checkpoints, timings."""
    import dataclasses

    st = _open_store(store, readonly=True)
    rec = st.find(run_id)
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(rec), indent=2, sort_keys=True, default=str) + "\n")
        return
    console.print(f"[bold]{rec.algo} × {rec.domain}[/] \\[{rec.condition}, {rec.preset}, seed {rec.seed}]  "
                  f"run [cyan]{rec.run_id}[/]  status {rec.status}" + (f" ({rec.reason})" if rec.reason else ""))
    console.print(f"code {rec.code_version}  config hash {rec.config_hash}  "
                  f"torch {rec.packages.get('torch')}  device {rec.env.get('device')}")
    t = Table(title="config", title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value")
    for section in ["algo_config", "budget"]:
        for k, v in rec.config.get(section, {}).items():
            t.add_row(f"{section.replace('_config', '')}.{k}", _fmt(v))
    for k, v in rec.config.get("domain_config", {}).items():
        if k != "extra":
            t.add_row(f"domain.{k}", _fmt(v) if not isinstance(v, dict) else json.dumps(v))
    console.print(t)
    if rec.status == "done":
        console.print(_metrics_table(rec, "metrics"))
    if rec.curves:
        t = Table(title="training curves", title_justify="left")
        for col in ["curve", "points", "first", "last", "min", "max", "trend"]:
            t.add_column(col)
        for k, pts in rec.curves.items():
            vals = [v for _, v in pts]
            t.add_row(k, str(len(vals)), _fmt(vals[0]), _fmt(vals[-1]), _fmt(min(vals)), _fmt(max(vals)),
                      _spark(vals))
        console.print(t)
    _show_checkpoints(rec, plot)
    if rec.timings:
        console.print("timings: " + "  ".join(f"{k}={_fmt(v)}" for k, v in rec.timings.items()))
    for a in rec.artifacts:
        console.print(f"artifact: {a}")


def _show_checkpoints(rec: Any, plot: Path | None) -> None:
    """The cell's over-optimisation curve as a table (and a PNG with ``--plot``)."""
    from leaderboard.plots import cell_curve_png, checkpoint_curve, checkpoint_errors

    curve, errors = checkpoint_curve(rec), checkpoint_errors(rec)
    if len(curve) < 2:
        if plot is not None:
            fail(f"cell {rec.run_id} has no checkpoint curve (it is not done, or was run before checkpoints existed)")
        return
    kl = "KL" if "kl_to_ref" in rec.metrics else "ELBO gap"
    t = Table(title="over-optimisation: the policy in training at checkpoints (16 held-out contexts)",
              title_justify="left")
    for col in ["step", kl, "gold gain", "± standard error"]:
        t.add_column(col, justify="right")
    for step, x, y in curve:
        t.add_row(str(step), _fmt(x), _fmt(y), _fmt(errors[step]) if step in errors else "")
    console.print(t)
    if plot is not None:
        console.print(f"wrote {cell_curve_png(rec, plot)}")


def _spark(vals: list[float], width: int = 24) -> str:
    bars = "▁▂▃▄▅▆▇█"
    if len(vals) > width:
        step = len(vals) / width
        vals = [vals[int(i * step)] for i in range(width)]
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return bars[0] * len(vals)
    return "".join(bars[int((v - lo) / (hi - lo) * (len(bars) - 1))] for v in vals)


# ---------------------------------------------------------------------------------------------
# bench grid
# ---------------------------------------------------------------------------------------------


def _parse_seeds(spec: str) -> list[int]:
    """``N`` (seeds 0..N-1) or a comma list (``0,3,7``)."""
    try:
        if "," in spec:
            seeds = sorted({int(s) for s in spec.split(",") if s.strip()})
        else:
            seeds = list(range(int(spec)))
    except ValueError:
        raise UserError(f"--seeds {spec}: give a count (--seeds 3: seeds 0, 1, 2) or a list (--seeds 0,3,7)") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seeds {spec}: give at least one non-negative seed")
    return seeds


def _cell_line(rec: Any, seconds: float, done: int, total: int, overrides: str = "") -> str:
    from rich.markup import escape

    label = escape(f"{rec.algo}{overrides} × {rec.domain} [{rec.condition}, seed {rec.seed}]")
    head = f"[dim]{done:>{len(str(total))}}/{total}[/] "
    if rec.status == "done":
        m = rec.metrics
        return (f"{head}[green]done[/]   {label}  norm {_fmt(m.get('normalized_score'))}  "
                f"gold {_fmt(m.get('gold_reward'))}  "
                + (f"KL {_fmt(m['kl_to_ref'])}" if "kl_to_ref" in m else f"elbo gap {_fmt(m.get('elbo_gap'))}")
                + f"  {seconds:.1f}s")
    if rec.status == "na":
        return f"{head}[yellow]n/a[/]    {label}  {escape(str(rec.reason))}"
    return f"{head}[red]failed[/] {label}  {escape(str(rec.reason))}  {seconds:.1f}s"


@command("grid")
def grid_cmd(
    algos: Annotated[str, typer.Option("--algos", "-a", help="'all' or a comma list of algorithms.")] = "all",
    domains: Annotated[str, typer.Option("--domains", "-d", help="'all' or a comma list of domains.")] = "all",
    conditions: Annotated[str, typer.Option("--conditions", "-c", help="'all' or a comma list of conditions."
                                            )] = "default",
    seeds: Annotated[str, typer.Option("--seeds", "-s", help="A count N (seeds 0..N-1) or a list 0,3,7.")] = "3",
    preset: Annotated[str, typer.Option("--preset", "-p", help="smoke | quick | standard | full")] = "quick",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Algorithm config override key=value (applied to "
                                                   "every algorithm that has the key).")] = None,
    domain_sets: Annotated[
        list[str] | None, typer.Option("--domain-set", help="Domain config override key=value.")] = None,
    budget_sets: Annotated[list[str] | None, typer.Option("--budget", help="Budget override key=value.")] = None,
    executor: Annotated[str, typer.Option("--executor", "-e", help="local (in-process) | process (a pool) | ray "
                                          "(a Ray cluster; the ray extra) | slurm (job arrays via submitit; the "
                                          "slurm extra)")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", "-j", help="Worker processes (process executor; "
                                                "default: the number of cores).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads per worker (process "
                                                "executor; default: cores ÷ workers).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="ray: the cluster to join (host:port, or "
                                                "'auto'); default: start a local one.")] = None,
    cpus_per_cell: Annotated[float | None, typer.Option("--cpus-per-cell", help="ray/slurm: CPUs each cell "
                                                        "reserves (default 1).")] = None,
    gpus_per_cell: Annotated[float | None, typer.Option("--gpus-per-cell", help="ray/slurm: GPUs each cell "
                                                        "reserves (default 0).")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="slurm: the partition to submit to.")] = None,
    time_limit: Annotated[int | None, typer.Option("--time-limit", help="slurm: minutes per cell job "
                                                   "(default 60).")] = None,
    mem_gb: Annotated[float | None, typer.Option("--mem-gb", help="slurm: memory per cell job in GB "
                                                 "(default 8).")] = None,
    slurm_backend: Annotated[str | None, typer.Option("--slurm-backend", help="slurm: 'slurm' (sbatch), or "
                                                      "'local' (submitit's local executor, same code path, "
                                                      "no cluster); default: slurm.")] = None,
    logs_dir: Annotated[Path | None, typer.Option("--logs-dir", help="slurm: where submitit writes job "
                                                  "scripts and logs (default <home>/slurm).")] = None,
    store: StoreOpt = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Preparation cache directory.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu | cuda (default $PREFBENCH_DEVICE or cpu)")
                      ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run every cell again, even done ones.")] = False,
    skip_failed: Annotated[bool, typer.Option("--skip-failed", help="Keep failed cells as they are (by default "
                                              "they run again, like interrupted ones).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would run, run nothing.")] = False,
    claims: Annotated[bool, typer.Option("--claims", help="Run exactly the cells `bench report claims` needs "
                                         "(instead of --algos × --domains × --conditions; --algos and --domains "
                                         "narrow them).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (one line per cell stays).")
                     ] = False,
) -> None:
    """Run every (algorithm × domain × condition × seed) cell not already done; resumable."""
    import dataclasses

    from rich.markup import escape

    from benchmark.executors import Settings, get_executor, plan_grid, run_grid
    from benchmark.progress import live, make_progress
    from benchmark.registry import ALGORITHMS, DOMAINS, parse_conditions
    from benchmark.runner import CellRequest, default_device, resolve

    dev = device or default_device()
    if not (dev == "cpu" or dev.startswith("cuda") or dev == "mps"):
        fail(f"--device {dev}: use cpu or cuda[:N]")
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail(f"--device {dev}: no CUDA device is visible here; use --device cpu")
    skipped: dict[str, str] = {}
    algo_names = ALGORITHMS.parse(algos, skipped)
    domain_names = DOMAINS.parse(domains, skipped)
    for why in skipped.values():
        err_console.print(f"[yellow]warning:[/] {escape(why)}; left out of the grid", highlight=False, soft_wrap=True)
    if not algo_names or not domain_names:
        fail("no algorithm or no domain of the grid can be loaded (see the warnings above)")
    cond_names = parse_conditions(conditions)
    seed_list = _parse_seeds(seeds)
    ex = get_executor(executor, workers, address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell,
                      partition=partition, time_limit=time_limit, mem_gb=mem_gb, slurm_backend=slurm_backend,
                      logs_dir=None if logs_dir is None else str(logs_dir))
    if threads is not None and threads < 1:
        fail(f"--threads {threads}: use a positive number")
    sets = list(sets or ())
    for item in sets:  # a --set must name a key of at least one algorithm in the grid
        key = item.partition("=")[0].strip()
        if "=" in item and not any(key in {f.name for f in dataclasses.fields(ALGORITHMS.get(a).Config)}
                                   for a in algo_names):
            fail(f"--set {key}: none of the algorithms {', '.join(algo_names)} has this key")
    cells = []
    for domain in domain_names:
        for seed in seed_list:
            for cond in cond_names:
                for algo in algo_names:
                    cfg_keys = {f.name for f in dataclasses.fields(ALGORITHMS.get(algo).Config)}
                    own = tuple(s for s in sets if "=" not in s or s.partition("=")[0].strip() in cfg_keys)
                    cells.append(resolve(CellRequest(algo, domain, cond, seed, preset, own,
                                                     tuple(domain_sets or ()), tuple(budget_sets or ()))))
    if claims:
        from leaderboard.claims import all_claims, claim_cells

        if sets or domain_sets or budget_sets:
            fail("--claims runs the claims' own configurations: drop --set, --domain-set and --budget")
        cells = [c for c in claim_cells(all_claims(), preset, seed_list)
                 if c.request.algo in algo_names and c.request.domain in domain_names]
        if not cells:
            fail(f"--claims: no claim needs {', '.join(algo_names)} on {', '.join(domain_names)}; see `bench report "
                 "claims`")
        algo_names = sorted({c.request.algo for c in cells})
        domain_names = sorted({c.request.domain for c in cells})
    st = _open_store(store)
    todo, kept = plan_grid(cells, st, force=force, rerun_failed=not skip_failed)
    total = len(todo) + len(kept)
    if claims:
        console.print(f"[bold]grid --claims[/]: {total} cells of {len(algo_names)} algorithm(s) on "
                      f"{len(domain_names)} domain(s), seeds {seeds}, preset {preset}; {len(kept)} already stored, "
                      f"{len(todo)} to run on the {ex.name} executor; store {st.path}")
    else:
        console.print(f"[bold]grid[/]: {len(algo_names)} algorithm(s) × {len(domain_names)} domain(s) × "
                      f"{len(cond_names)} condition(s) × {len(seed_list)} seed(s) = {total} cells, preset {preset}; "
                      f"{len(kept)} already stored, {len(todo)} to run on the {ex.name} executor"
                      + (f" ({ex.workers} workers)" if ex.name != "local" else "") + f"; store {st.path}")
    if dry_run:
        for c in todo:
            console.print(f"would run {c.run_id}  {escape(c.label)}")
        return
    from benchmark.cache import PreparationCache

    PreparationCache(cache).ensure_writable()  # a bad --cache is one line here, not a failed cell per worker
    settings = Settings(home=str(st.path.parent), cache_dir=str(cache) if cache else None, device=dev,
                        threads=threads)
    t0 = time.perf_counter()
    starts: dict[str, float] = {}
    counter = {"n": 0}
    prog = make_progress(console, quiet, remove_finished=True)

    def on_start(cell: Any) -> None:
        starts[cell.run_id] = time.perf_counter()

    records: list[Any] = []
    with live(prog), prog.task(f"grid: {len(todo)} cells", len(todo)) as overall:
        def on_result(cell: Any, rec: Any) -> None:
            counter["n"] += 1
            overall.advance()
            took = time.perf_counter() - starts.get(cell.run_id, t0)
            line = _cell_line(rec, took, counter["n"], len(todo), cell.overrides)
            if cell.run_id not in starts:  # another process ran it while this grid waited
                line += "  [dim](run by another process)[/]"
            console.print(line, highlight=False)
            records.append(rec)

        run_grid(todo, st, ex, settings, progress=prog, on_start=on_start, on_result=on_result)
    n = {s: sum(r.status == s for r in records) for s in ("done", "na", "failed")}
    console.print(f"[bold]grid finished[/] in {time.perf_counter() - t0:.1f}s: ran {len(records)} cells "
                  f"({n['done']} done, {n['na']} n/a, {n['failed']} failed), {len(kept)} already stored; "
                  f"`bench leaderboard` tabulates the store")
    if n["failed"]:
        for r in records:
            if r.status == "failed":
                err_console.print(f"[red]failed[/] {r.run_id} {escape(r.algo)} × {escape(r.domain)} "
                                  f"[{escape(r.condition)}, seed {r.seed}]: {escape(str(r.reason))}", highlight=False)
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# bench leaderboard
# ---------------------------------------------------------------------------------------------


@command("leaderboard")
def leaderboard_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="md | csv | latex | html, a comma list, or all.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write files (and plots) into; "
                                             "without it the table goes to the terminal.")] = None,
    store: StoreOpt = None,
    preset: Annotated[str | None, typer.Option("--preset", "-p", help="Which preset's cells (needed when the "
                                               "store holds several).")] = None,
    domains: Annotated[str | None, typer.Option("--domains", "-d", help="Comma list of domains (default: all "
                                                "in the store).")] = None,
    conditions: Annotated[str | None, typer.Option("--conditions", "-c", help="Comma list of conditions "
                                                   "(default: all in the store).")] = None,
    reps: Annotated[int, typer.Option("--reps", help="Bootstrap resamples for the aggregate intervals (rliable "
                                      "uses 50000 for publication).")] = 2000,
    seed: Annotated[int, typer.Option("--bootstrap-seed", help="random_state of every bootstrap.")] = 0,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Entry that probability of improvement is "
                                                 "measured against (default: dpo, if on the board).")] = None,
) -> None:
    """Tables (per domain, cross-domain with rliable), plots and a static page from the store."""
    from benchmark.registry import parse_conditions
    from leaderboard.aggregate import aggregates, load_board
    from leaderboard.site import parse_formats, render, write

    formats = parse_formats(fmt)
    if out is None and (len(formats) > 1 or formats == ["html"]):
        fail(f"--format {fmt}: writes files (a page with images, or several formats); pass --out DIR")
    if reps < 100:
        fail(f"--reps {reps}: use at least 100 bootstrap resamples (2000 by default)")
    dom_list = [d.strip() for d in domains.split(",") if d.strip()] if domains else None
    cond_list = parse_conditions(conditions) if conditions else None
    board = load_board(store or None, preset=preset, domains=dom_list, conditions=cond_list)
    aggs = aggregates(board, reps=reps, seed=seed, baseline=baseline)
    if out is None:
        sys.stdout.write(render(board, aggs, formats[0]))
        return
    try:
        files = write(board, aggs, formats, out)
    except OSError as e:
        fail(f"cannot write to {out}: {e.strerror or e}; pass --out to a writable directory")
    counts = board.status_counts()
    console.print(f"leaderboard of {len(board.records)} cells ({counts.get('done', 0)} done) from {board.store}, "
                  f"preset {board.preset}: wrote {len(files)} files to {out}")
    for f in files:
        if f.suffix != ".svg" and f.parent == out:
            console.print(f"  {f}")


# ---------------------------------------------------------------------------------------------
# bench report
# ---------------------------------------------------------------------------------------------

report_app = typer.Typer(help="Reports regenerated from the store.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@command("claims", on=report_app)
def report_claims_cmd(
    preset: Annotated[str, typer.Option("--preset", "-p", help="Which preset's cells (never mixed).")] = "quick",
    seeds: Annotated[str, typer.Option("--seeds", "-s", help="A count N (seeds 0..N-1) or a list 0,3,7.")] = "3",
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the Markdown report here (default: "
                                             "print it).")] = None,
    reps: Annotated[int, typer.Option("--reps", help="Bootstrap resamples.")] = 2000,
    domains: Annotated[str, typer.Option("--domains", "-d", help="Only these domains' rows (comma list), e.g. "
                                         "those run with more seeds.")] = "all",
) -> None:
    """Each seed paper's headline claim: paired difference, 95% intervals, verdict; and the experiments."""
    from benchmark.presets import check_preset
    from benchmark.registry import DOMAINS
    from leaderboard.claims import report

    check_preset(preset)
    seed_list = _parse_seeds(seeds)
    kept = None if domains.strip() == "all" else DOMAINS.parse(domains)
    if reps < 100:
        fail(f"--reps {reps}: use at least 100 bootstrap resamples")
    st = _open_store(store, readonly=True)
    if out is None:
        sys.stdout.write(report(st, preset, seed_list, reps=reps, domains=kept))
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report(st, preset, seed_list, reps=reps, img=out.parent / "img", domains=kept))
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}; pass --out to a writable path")
    console.print(f"wrote {out} (plots in {out.parent / 'img'})")


# ---------------------------------------------------------------------------------------------
# bench submit
# ---------------------------------------------------------------------------------------------


@command("submit")
def submit_cmd(
    path: Annotated[Path, typer.Argument(help="A .py file with one Algorithm subclass (see the README).")],
    domains: Annotated[str, typer.Option("--domains", "-d", help="'all' or a comma list of domains.")] = "all",
    conditions: Annotated[str, typer.Option("--conditions", "-c", help="'all' or a comma list of conditions."
                                            )] = "default",
    seeds: Annotated[str, typer.Option("--seeds", "-s", help="A count N (seeds 0..N-1) or a list 0,3,7.")] = "3",
    preset: Annotated[str, typer.Option("--preset", "-p", help="smoke | quick | standard | full")] = "quick",
    wall_time: Annotated[float, typer.Option("--wall-time", help="Seconds each sandboxed training may take."
                                             )] = 3600.0,
    cpu_time: Annotated[float | None, typer.Option("--cpu-time", help="CPU seconds each sandboxed training may "
                                                   "use (default: wall time × threads).")] = None,
    memory_gb: Annotated[float, typer.Option("--memory-gb", help="GiB each sandboxed training may allocate.")
                         ] = 8.0,
    skip_checks: Annotated[bool, typer.Option("--skip-checks", help="Run the grid without the smoke "
                                              "conformance checks (not for the board).")] = False,
    store: StoreOpt = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Preparation cache directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Check a method file, run it isolated from the answers on every chosen cell, put it on the board."""
    from rich.markup import escape

    from benchmark.cache import PreparationCache
    from benchmark.executors import LocalExecutor, Settings, plan_grid, run_grid
    from benchmark.progress import live, make_progress
    from benchmark.registry import DOMAINS, parse_conditions
    from benchmark.runner import CellRequest, resolve
    from benchmark.sandbox import Limits
    from benchmark.submit import conformance, load_submission

    if wall_time <= 0 or memory_gb <= 0 or (cpu_time is not None and cpu_time <= 0):
        fail("--wall-time, --cpu-time and --memory-gb must be positive")
    limits = Limits(wall_s=wall_time, cpu_s=cpu_time, memory_gb=memory_gb)
    domain_names = DOMAINS.parse(domains)
    cond_names = parse_conditions(conditions)
    seed_list = _parse_seeds(seeds)
    cls = load_submission(path, limits)
    console.print(f"[bold]{escape(cls.name)}[/] from {escape(str(path))} (sha256 {cls.source_sha256[:12]}): "  # type: ignore[attr-defined]
                  f"requires {', '.join(sorted(cls.requires)) or 'nothing'}")
    st = _open_store(store)
    pcache = PreparationCache(cache).ensure_writable()
    prog = make_progress(console, quiet, remove_finished=True)
    with live(prog):
        if not skip_checks:
            conformance(cls, domain_names, store=st, cache=pcache, device="cpu", progress=prog,
                        say=lambda m: console.print(escape(m), highlight=False))
        cells = [resolve(CellRequest(cls.name, d, c, s, preset)) for d in domain_names for s in seed_list
                 for c in cond_names]
        todo, kept = plan_grid(cells, st)
        console.print(f"grid: {len(cells)} cells of preset {preset}, {len(kept)} already stored, {len(todo)} to run")
        settings = Settings(home=str(st.path.parent), cache_dir=str(cache) if cache else None)
        records = run_grid(todo, st, LocalExecutor(), settings, progress=prog, on_result=lambda c, r: console.print(
            _cell_line(r, r.wall_s or 0.0, 0, len(todo)), highlight=False))
    failed = [r for r in records if r.status == "failed"]
    console.print(f"[bold]submitted[/] {escape(cls.name)}: {len(records) - len(failed)} cells ran, {len(failed)} "
                  f"failed; `bench leaderboard --preset {preset}` shows it marked \\[submitted]")
    if failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    """Entry point: typer, with user errors as one line."""
    try:
        app(standalone_mode=True)
    except UserError as e:  # outside typer: print the line and exit here, not through typer.Exit
        error_line(str(e))
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: a cell that was running is marked failed and reruns next time")
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

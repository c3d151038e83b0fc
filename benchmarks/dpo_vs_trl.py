"""Our ``dpo`` training step next to TRL's ``DPOTrainer`` on the same model and data (issue #19).

    pip install -e '.[trl]'
    python benchmarks/dpo_vs_trl.py [--preset quick] [--steps 96] [--reps 3] [--threads 1] [--precompute-ref]

Both start from identical weights (the text domain's reference GPT-2, its frozen copy as the DPO
reference), see the same pairs in the same order (the default condition's, the first steps × batch
of them, in order; TRL gets them through ``bench export --format trl``'s strings and tokenizer) and
use the same optimiser (AdamW, the domain's base learning rate, constant, no weight decay, clip 1.0)
and loss (sigmoid, β = 0.1). Measured, for each of ``--reps`` back-to-back repetitions: the median
ms per optimiser step (forward, backward, clip, update; TRL: its ``training_step``, between the
callback's step begin and end, so its collation is outside), the wall time of the whole loop per
step, and the peak resident-memory growth (RSS sampled every 2 ms; the CPU has no allocator
counter). Reported: the median over repetitions; the loss curves' agreement (per step, from the
first repetition). Writes ``benchmarks/results/dpo_vs_trl_<preset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"


class PeakRSS:
    """Peak resident-set growth over a block, sampled by a thread (bytes)."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.growth = self.peak - self.base


def load_domain(preset: str, sets: tuple[str, ...] = ()) -> Any:
    """The prepared text domain of ``preset`` with domain overrides ``sets`` (built into the
    preparation cache if missing)."""
    from benchmark.cache import PreparationCache
    from benchmark.progress import Progress
    from benchmark.runner import CellRequest, prepare_domain, resolve

    cell = resolve(CellRequest("dpo", "text", preset=preset, domain_sets=sets))
    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(None), torch.device("cpu"),
                                  Progress())
    return domain, cell.budget


def default_pairs(domain: Any) -> Any:
    """The default condition's offline pairs (what a ``dpo`` cell trains on)."""
    from benchmark.data import build_offline_data
    from benchmark.feedback import RaterPopulation
    from benchmark.registry import get_condition

    cond = get_condition("default")
    population = RaterPopulation.build(domain.oracle.weights, cond.raters)
    return build_offline_data(domain.pool, domain.oracle.weights, population, cond, domain.name)[0].pairs


def our_step(domain: Any, pairs: Any, batch: int, beta: float) -> Any:
    """``step(k)``: our dpo's step k (``baselines/dpo.py``) on pairs [k·batch, (k+1)·batch); returns the loss."""
    from baselines.dpo import DPOConfig, preference_loss
    from benchmark.objectives import logratio_margin
    from benchmark.training import optimizer_step, pair_logps

    policy, reference = domain.make_policy(), domain.reference
    cfg = DPOConfig(beta=beta)
    opt = torch.optim.AdamW(policy.parameters(), lr=domain.spec.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)

    def step(k: int) -> float:
        b = pairs.select(torch.arange(k * batch, (k + 1) * batch))
        pi_w, pi_l, ref_w, ref_l = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected, g)
        loss = preference_loss(logratio_margin(pi_w, pi_l, ref_w, ref_l), cfg).mean()
        optimizer_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
        return float(loss.detach())

    return step


def run_ours(domain: Any, pairs: Any, steps: int, batch: int, beta: float) -> dict[str, Any]:
    """Our dpo's step over the pairs in order: losses, ms per step, wall, peak RSS."""
    step = our_step(domain, pairs, batch, beta)
    losses, ms = [], []
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        for k in range(steps):
            s = time.perf_counter()
            losses.append(step(k))
            ms.append(1e3 * (time.perf_counter() - s))
        wall = time.perf_counter() - t0
    return {"losses": losses, "ms_per_step": statistics.median(ms), "wall_ms_per_step": 1e3 * wall / steps,
            "peak_rss_growth_mb": mem.growth / 2**20}


def ceiling(domain: Any, pairs: Any, batch: int, beta: float, ms: dict[str, float]) -> dict[str, float]:
    """What bounds the ratio: our step's matmul FLOPs F (forward + backward, FlopCounterMode), this
    machine's fp32 1024³ matmul peak P measured now, each side's F ÷ its ms/step as a share of P
    (TRL pads a batch to its longest pair, so its own count is at most F), and the largest speed-up
    of a step doing F over TRL's that the peak allows: P · t_TRL ÷ F."""
    from flop_utilisation import matmul_peak
    from torch.utils.flop_counter import FlopCounterMode

    step = our_step(domain, pairs, batch, beta)
    with FlopCounterMode(display=False) as counter:
        step(0)
    flops, peak = counter.get_total_flops(), matmul_peak(1024, 1024, 1024, reps=10)
    rate = {side: flops / (ms[side] / 1e3) for side in ms}
    return {"gflop_per_step": flops / 1e9, "peak_gflops": peak / 1e9,
            **{f"utilisation_{side}": rate[side] / peak for side in ms}, "max_speedup_over_trl": peak / rate["trl"]}


def _trl_trainer(domain: Any, rows: dict[str, list[str]], steps: int, batch: int, beta: float, out: Path,
                 precompute: bool = False) -> Any:
    """A DPOTrainer on the rows, in order, with our optimiser's settings; it records losses and step times."""
    import copy

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class Timed(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            trainer.ms.append(1e3 * (time.perf_counter() - self.start))

    class InOrder(DPOTrainer):
        def _get_train_sampler(self, *a: Any, **k: Any) -> Any:
            return torch.utils.data.SequentialSampler(self.train_dataset)

        def compute_loss(self, *a: Any, **k: Any) -> Any:
            loss = super().compute_loss(*a, **k)
            self.losses.append(float((loss[0] if isinstance(loss, tuple) else loss).detach()))
            return loss

    model = copy.deepcopy(domain.reference.model).train().requires_grad_(True)
    args = DPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, beta=beta,
                     learning_rate=domain.spec.lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
                     optim="adamw_torch", loss_type=["sigmoid"], report_to=[], save_strategy="no", logging_steps=10**9,
                     use_cpu=True, bf16=False, fp16=False, max_length=model.config.n_positions, disable_tqdm=True,
                     dataloader_num_workers=0, seed=0, precompute_ref_log_probs=precompute)
    ref = copy.deepcopy(domain.reference.model).eval()  # TRL would reload it from a path; ours has none
    trainer = InOrder(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_dict(rows),
                      processing_class=copy.deepcopy(domain.tokenizer), callbacks=[Timed()])
    trainer.losses, trainer.ms = [], []
    return trainer


def run_trl(domain: Any, rows: dict[str, list[str]], steps: int, batch: int, beta: float, out: Path,
            precompute: bool = False) -> dict[str, Any]:
    """TRL's DPOTrainer over the same pairs: losses, ms per step, wall per step (with
    ``precompute``, the reference's pass over the data happens inside ``train()``: in the wall, not
    in the steps), peak RSS."""
    trainer = _trl_trainer(domain, rows, steps, batch, beta, out, precompute)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    return {"losses": trainer.losses, "ms_per_step": statistics.median(trainer.ms),
            "wall_ms_per_step": 1e3 * wall / steps, "peak_rss_growth_mb": mem.growth / 2**20}


def agreement(a: list[float], b: list[float]) -> dict[str, float]:
    """How closely two loss curves agree, step by step."""
    d = [abs(x - y) for x, y in zip(a, b)]
    return {"steps": len(d), "first_loss_ours": a[0], "first_loss_trl": b[0], "last_loss_ours": a[-1],
            "last_loss_trl": b[-1], "max_abs_diff": max(d), "mean_abs_diff": sum(d) / len(d),
            "corr": float(torch.corrcoef(torch.tensor([a, b]))[0, 1])}


def machine(threads: int) -> dict[str, Any]:
    import transformers
    import trl

    return {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "threads": threads, "loadavg_before": os.getloadavg()}


def summarise(reps: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in reps) for k in ("ms_per_step", "wall_ms_per_step",
                                                               "peak_rss_growth_mb")}


def busy(m: dict[str, Any]) -> bool:
    """Whether the 1-minute load average before or after exceeded the threads this run used."""
    return max(m["loadavg_before"][0], m["loadavg_after"][0]) > m["threads"] + 0.5


def ceiling_lines(c: dict[str, float] | None) -> list[str]:
    if not c:
        return []
    return [f"What bounds the ratio: one step is {c['gflop_per_step']:.3g} GFLOP of matmuls (forward + backward); "
            f"this machine's fp32 1024³ matmul peak, measured in the same run, is {c['peak_gflops']:.3g} GFLOP/s. "
            f"Our step reaches {100 * c['utilisation_ours']:.0f}% of it and TRL's (counted with our FLOPs) "
            f"{100 * c['utilisation_trl']:.0f}%, so no implementation of this step can run more than "
            f"**{c['max_speedup_over_trl']:.2f}×** TRL's "
            "throughput here" + (": TRL's step is mostly the same arithmetic as ours, not per-step overhead, and a "
                                 "5× target is out of reach on this machine." if c["max_speedup_over_trl"] < 5
                                 else ".")]


def write(result: dict[str, Any], tag: str, out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    m, ours, theirs, agr = result["machine"], result["ours"], result["trl"], result["agreement"]
    lines = [
        f"# Our dpo step vs TRL's DPOTrainer ({result['preset']} text domain)", "",
        f"GPT-2 reference, {result['params']:,} parameters; {result['steps']} steps × batch {result['batch']} pairs "
        f"(the default condition's first, in order), β {result['beta']}, AdamW lr {result['lr']} constant; median "
        f"of {result['reps']} back-to-back repetitions (alternating which runs first).", "",
        f"Machine: {m['platform']}, {m['cores']} cores, torch {m['torch']}, transformers {m['transformers']}, "
        f"trl {m['trl']}, {m['threads']} torch thread(s); load average {m['loadavg_before']} before, "
        f"{m['loadavg_after']} after."
        + (" **The machine was shared with a background job** that kept its cores busy: absolute times are "
           "inflated and noisy; the ratio is the number to read." if busy(m) else ""), "",
        f"TRL's `precompute_ref_log_probs`: {result.get('precompute', False)}."
        + (f" Token preparation ({', '.join(result['domain_sets'])}): the preset's shapes, untrained weights."
           if result.get("domain_sets") else ""), "",
        "| | ms/step (median) | wall ms/step | peak RSS growth (MB) |", "|---|---|---|---|",
        f"| prefbench dpo | {ours['ms_per_step']:.2f} | {ours['wall_ms_per_step']:.2f} | "
        f"{ours['peak_rss_growth_mb']:.1f} |",
        f"| TRL DPOTrainer | {theirs['ms_per_step']:.2f} | {theirs['wall_ms_per_step']:.2f} | "
        f"{theirs['peak_rss_growth_mb']:.1f} |", "",
        f"Loss curves from identical weights ({agr['steps']} steps): first {agr['first_loss_ours']:.6f} vs "
        f"{agr['first_loss_trl']:.6f}, last {agr['last_loss_ours']:.6f} vs {agr['last_loss_trl']:.6f}; "
        f"max |diff| {agr['max_abs_diff']:.2e}, mean |diff| {agr['mean_abs_diff']:.2e}, correlation {agr['corr']:.6f}.",
        "", *ceiling_lines(result.get("ceiling")),
        "", "Peak RSS growth is sampled every 2 ms (CPU: no allocator counter) and includes the allocator's "
        "first-touch growth of whichever runs first in the process; TRL's includes its dataloader. TRL's "
        "ms/step is its training_step (its batch collation is outside; ours includes selecting the batch); "
        "wall ms/step is each loop's total over its steps.",
    ]
    (out / f"{tag}.md").write_text("\n".join(lines) + "\n")
    return out / f"{tag}.md"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--precompute-ref", action="store_true", help="TRL with precompute_ref_log_probs=True")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    ap.add_argument("--token-prep", action="store_true",
                    help="prepare the domain with flop_utilisation.py's token budget (the preset's model and "
                         "batch, untrained weights: speed only; minutes instead of ten at standard)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import tempfile
    import warnings

    import datasets

    datasets.disable_progress_bars()
    warnings.simplefilter("ignore", FutureWarning)  # TRL's use of transformers' deprecated names

    from benchmark.export import trl_rows

    info = machine(args.threads)
    from flop_utilisation import TOKEN_PREP

    sets = TOKEN_PREP["text"] if args.token_prep else ()
    domain, budget = load_domain(args.preset, sets)
    n = args.steps * budget.batch_size
    pairs = default_pairs(domain)
    if len(pairs) < n:
        raise SystemExit(f"--steps {args.steps}: only {len(pairs)} pairs, {n} needed at batch {budget.batch_size}")
    rows = {k: v[:n] for k, v in trl_rows(domain).items()}
    pairs = pairs.select(torch.arange(n))
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):  # alternate which runs first (allocator warm-up, load drift)
            first_ours = rep % 2 == 0
            if first_ours:
                ours.append(run_ours(domain, pairs, args.steps, budget.batch_size, args.beta))
            theirs.append(run_trl(domain, rows, args.steps, budget.batch_size, args.beta, Path(tmp),
                                  args.precompute_ref))
            if not first_ours:
                ours.append(run_ours(domain, pairs, args.steps, budget.batch_size, args.beta))
    info["loadavg_after"] = os.getloadavg()
    result = {"preset": args.preset, "domain_sets": list(sets), "precompute": args.precompute_ref, "steps": args.steps,
              "batch": budget.batch_size, "beta": args.beta,
              "lr": domain.spec.lr, "reps": args.reps, "params": sum(p.numel() for p in domain.reference.parameters()),
              "machine": info, "ours": summarise(ours), "trl": summarise(theirs),
              "agreement": agreement(ours[0]["losses"], theirs[0]["losses"]),
              "ceiling": ceiling(domain, pairs, budget.batch_size, args.beta,
                                 {"ours": summarise(ours)["ms_per_step"], "trl": summarise(theirs)["ms_per_step"]}),
              "repetitions": {"ours": ours, "trl": theirs}}
    tag = f"dpo_vs_trl_{args.preset}" + ("_precompute" if args.precompute_ref else "")
    print(write(result, tag, args.out).read_text())
    return result


if __name__ == "__main__":
    main()

"""Does the motion domain's evaluation order the behaviour sources as their quality grades do? (#13)

    python benchmarks/motion_sources.py                 # quick preset, 192 prompts per source
    python benchmarks/motion_sources.py --preset smoke --prompts 32

For every behaviour source of :mod:`domains.motion.motions` (clean, jittered, foot skating, wrong
direction, truncated, wrong action, frozen) one motion per prompt is generated for the held-out and
in-distribution evaluation prompts of the prepared domain, and scored as a trained policy would be:
the hidden oracle's gold reward and the evaluator's R-precision, FID, MM-Dist and Diversity (mean
and 95% interval over the domain's replications), against ground-truth motions of the same prompts
drawn from another stream. Also the reference's own samples. Writes
``benchmarks/results/motion_sources_<preset>.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmark.api import Batch
from benchmark.cache import PreparationCache, default_cache_dir
from benchmark.progress import Progress
from benchmark.runner import CellRequest, prepare_domain, resolve
from domains.motion import motions as M
from domains.motion.evaluator import evaluate

METRICS = ("gold", "r_precision_top3", "fid", "mm_dist", "diversity")


def prompts(domain, n: int) -> Batch:
    ctx = Batch.cat([domain.eval_contexts, domain.indist_contexts])
    return ctx[: min(n, len(ctx))]


def score(domain, ctx: Batch, motion: torch.Tensor) -> dict[str, float]:
    gold = domain.oracle.gold(ctx, Batch({"motion": motion}))
    out = evaluate(domain.oracle.evaluator, ctx.tokens, motion, domain.oracle.real_motions(ctx), 1,
                   domain.oracle.eval_cfg, torch.Generator().manual_seed(0), layout="interleave")
    half = float(stats.t.ppf(0.975, len(gold) - 1) * gold.std() / np.sqrt(len(gold)))
    return {"gold": float(gold.mean()), "gold_ci": half, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--prompts", type=int, default=192)
    args = ap.parse_args()
    cell = resolve(CellRequest("reference", "motion", preset=args.preset))
    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(default_cache_dir()),
                                  torch.device("cpu"), Progress())
    ctx = prompts(domain, args.prompts)
    rng = random.Random(123)  # not the oracle's ground-truth stream (seed 0)
    meanings = [M.Meaning.from_ids(r) for r in ctx.meaning.tolist()]
    rows = {}
    for source in M.SOURCES:
        pos = np.stack([M.behaviour(source, m, rng, domain.cfg.frames) for m in meanings])
        rows[source] = score(domain, ctx, domain._to_model(pos).motion)
    with torch.no_grad():
        ref = domain.reference.sample(ctx, 1, generator=torch.Generator().manual_seed(0)).motion
    rows["reference (samples)"] = score(domain, ctx, ref)
    grades = list(M.SOURCES)
    order = {m: [s for s in sorted(grades, key=lambda s: rows[s][m], reverse=m not in ("fid", "mm_dist"))]
             for m in METRICS}
    tau = {m: float(stats.kendalltau(range(len(grades)), [order[m].index(s) for s in grades]).statistic)
           for m in METRICS}
    out = Path(__file__).parent / "results" / f"motion_sources_{args.preset}"
    out.with_suffix(".json").write_text(json.dumps({"preset": args.preset, "prompts": len(ctx), "rows": rows,
                                                    "kendall_tau_vs_grade": tau}, indent=2))
    lines = [f"# Motion: evaluation of the behaviour sources ({args.preset}, {len(ctx)} prompts, "
             f"{domain.oracle.eval_cfg.replications} replications)", "",
             "Sources in decreasing quality grade; mean ± 95% interval (gold: over prompts; evaluator "
             "metrics: over replications). Kendall τ between each metric's ranking and the grades at the end.", "",
             "| source | gold | R-precision top-3 | FID ↓ | MM-Dist ↓ | Diversity |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['gold']:.2f} ± {r['gold_ci']:.2f} | {r['r_precision_top3']:.3f} ± "
                     f"{r['r_precision_top3_ci']:.3f} | {r['fid']:.3f} ± {r['fid_ci']:.3f} | {r['mm_dist']:.3f} ± "
                     f"{r['mm_dist_ci']:.3f} | {r['diversity']:.3f} ± {r['diversity_ci']:.3f} |")
    real = rows[M.SOURCES[0]]
    lines += [f"| ground truth (real) | — | {real['real_r_precision_top3']:.3f} | {real['real_fid']:.3f} (halves) | "
              f"{real['real_mm_dist']:.3f} | {real['real_diversity']:.3f} |", "",
              "Kendall τ (metric's ranking of the 7 sources vs their grades): "
              + ", ".join(f"{m} {t:+.2f}" for m, t in tau.items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

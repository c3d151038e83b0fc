"""The motion domain's acceptance table (#13): reference and methods on the HumanML3D-style metrics.

    bench grid --algos dpo,sft,ipo,kto --domains motion --seeds 3 --preset quick   # fills the store
    python benchmarks/motion_quick.py [--store runs/prefbench.sqlite] [--tag motion_quick]

Reads the store's quick motion cells (default condition) and prints, per method, mean ± std over
its seeds of: gold reward, normalized score, R-precision top-3, FID, MM-Dist, Diversity and
MultiModality; the reference's row comes from the same cells (``reference/<metric>``, the reference
scored on the same draws), with the ground truth's (``real_*``). Writes
``benchmarks/results/<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmark.cache import default_home
from benchmark.store import Store

COLUMNS = (("gold_reward", "gold"), ("normalized_score", "norm. score"), ("r_precision_top3", "R-prec. top-3"),
           ("fid", "FID ↓"), ("mm_dist", "MM-Dist ↓"), ("diversity", "Diversity"), ("multimodality", "MModality"))


def cell(values: list[float]) -> str:
    if not values:
        return "—"
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def reference_value(m: dict, key: str) -> float | None:
    if key == "gold_reward":
        return m.get("reference_gold_reward")
    if key == "normalized_score":
        return 0.0
    return m.get(f"reference/{key}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(default_home() / "prefbench.sqlite"))
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--tag", default="motion_quick")
    args = ap.parse_args()
    recs = [r for r in Store(Path(args.store), readonly=True).records()
            if r.domain == "motion" and r.preset == args.preset and r.condition == "default" and r.status == "done"]
    by_algo: dict[str, list] = {}
    for r in recs:
        by_algo.setdefault(r.algo, []).append(r)
    any_algo = next(iter(by_algo.values()))  # the reference is the same on every method's draws (same seed)
    rows = {"reference": {k: [reference_value(r.metrics, k) for r in any_algo] for k, _ in COLUMNS}}
    rows["ground truth (real)"] = {k: [r.metrics.get(f"real_{k}") for r in any_algo] for k, _ in COLUMNS}
    for algo, rs in sorted(by_algo.items()):
        rows[algo] = {k: [r.metrics.get(k) for r in rs] for k, _ in COLUMNS}
    seeds = {a: sorted(r.seed for r in rs) for a, rs in by_algo.items()}
    clean = {name: {k: [x for x in v if x is not None] for k, v in row.items()} for name, row in rows.items()}
    out = Path(__file__).parent / "results" / args.tag
    out.with_suffix(".json").write_text(json.dumps({"preset": args.preset, "seeds": seeds, "rows": clean}, indent=2))
    lines = [f"# Motion, {args.preset} preset: mean ± std over seeds {seeds}", "",
             "| method | " + " | ".join(label for _, label in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in clean.items():
        lines.append(f"| {name} | " + " | ".join(cell(row[k]) for k, _ in COLUMNS) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

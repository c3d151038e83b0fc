"""The `standard` preset's figures of one domain from a store (issue #21).

    bench grid --algos reference,sft,dpo,ipo,kto,rlhf --domains text --seeds 3 --preset standard
    python benchmarks/standard.py --domain text --store runs/prefbench.sqlite [--grid-log grid.log]

Per algorithm, mean ± std over the seeds of the issue's table (gold reward, win rate, normalized
score, KL to the reference, length and verbosity, task accuracy, EOS rate), the passes over the
offline pairs (``data/offline_epochs``), the best checkpoint's gold gain (an oracle peek, labelled
so) and the cost per cell: wall time (training, evaluation) and the process's peak resident memory
where the cells stored it. Whether the method improves on the reference is read off the
normalized score's interval over seeds (Student-t, 95%).

Writes ``benchmarks/results/<domain>_standard.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmark.store import Store
from leaderboard.aggregate import mean_ci

RESULTS = Path(__file__).parent / "results"
METRICS = {
    "text": ["gold_reward", "win_rate", "normalized_score", "kl_to_ref", "length", "verbosity", "accuracy",
             "eos_rate"],
    "motion": ["gold_reward", "win_rate", "normalized_score", "elbo_gap", "r_precision_top3", "fid", "mm_dist",
               "diversity"],
    "robot": ["gold_reward", "win_rate", "normalized_score", "d4rl_score", "success_rate", "kl_to_ref"],
    "image": ["gold_reward", "win_rate", "normalized_score", "elbo_gap", "alignment", "alignment_all",
              "fid_classifier", "diversity"],
}
DEFAULT_METRICS = ["gold_reward", "win_rate", "normalized_score", "kl_to_ref"]
EXTRA = ["data/offline_epochs", "oracle_peek/best_checkpoint_gold_gain", "gold_gain"]
TIMINGS = ["total_s", "train_s", "eval_s", "peak_rss_mb"]


def _stat(values: list[float]) -> dict[str, float | None] | None:
    st = mean_ci(values)  # None when no value is finite
    return None if st is None else st.as_row()


def verdict(ns: dict[str, Any] | None) -> str | None:
    """yes / worse / cannot tell, from the normalized score's 95% interval over seeds."""
    if ns is None or ns["lo"] is None:
        return None
    return "yes" if ns["lo"] > 0 else "worse" if ns["hi"] < 0 else "cannot tell"


def is_default_config(r: Any) -> bool:
    """The cell is the one ``bench grid`` runs with no ``--set``, ``--domain-set`` or ``--budget``
    (the run id hashes the whole config; a diagnostic cell is not the method's standard figure)."""
    from benchmark.runner import CellRequest, resolve

    default = resolve(CellRequest(r.algo, r.domain, seed=r.seed, preset=r.preset, condition=r.condition))
    return default.run_id == r.run_id


def summarise(records: list[Any], domain: str) -> dict[str, Any]:
    """Per algorithm (default condition, default config): each metric's and timing's statistics."""
    metrics = METRICS.get(domain, DEFAULT_METRICS) + EXTRA
    by_algo: dict[str, list[Any]] = {}
    for r in records:
        if (r.domain == domain and r.condition == "default" and r.status == "done" and r.preset == "standard"
                and is_default_config(r)):
            by_algo.setdefault(r.algo, []).append(r)
    out = {}
    for algo, recs in sorted(by_algo.items()):
        row = {"seeds": sorted(r.seed for r in recs)}
        for m in metrics:
            vals = [r.metrics[m] for r in recs if m in r.metrics]
            if vals:
                row[m] = _stat(vals)
        for t in TIMINGS:
            vals = [r.timings[t] for r in recs if t in r.timings and not (t == "total_s" and r.timings.get(
                "prepared_now"))]
            if vals:
                row[f"time/{t}"] = _stat(vals)
        ns = row.get("normalized_score")
        row["improves_on_reference"] = verdict(ns) if algo != "reference" else None
        out[algo] = row
    return out


def _cell(s: dict[str, Any] | None) -> str:
    return "" if s is None else f"{s['mean']:.3g} ± {s['std']:.2g}"


def markdown(domain: str, table: dict[str, Any], store: str, note: str) -> str:
    metrics = METRICS.get(domain, DEFAULT_METRICS)
    lines = [f"# {domain}, standard preset", "",
             f"Mean ± std over seeds (default condition), from {store}. {note}".rstrip(), "",
             "| algorithm | seeds | " + " | ".join(metrics) + " | improves on the reference (95% t over seeds) |",
             "|---|---|" + "---|" * (len(metrics) + 1)]
    for algo, row in table.items():
        lines.append(f"| {algo} | {len(row['seeds'])} | " + " | ".join(_cell(row.get(m)) for m in metrics)
                     + f" | {row['improves_on_reference'] if row['improves_on_reference'] is not None else ''} |")
    lines += ["", "| algorithm | offline epochs | best checkpoint gold gain (oracle peek) | final gold gain | "
              "cell wall s | train s | eval s | peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for algo, row in table.items():
        lines.append(f"| {algo} | {_cell(row.get('data/offline_epochs'))} | "
                     f"{_cell(row.get('oracle_peek/best_checkpoint_gold_gain'))} | {_cell(row.get('gold_gain'))} | "
                     + " | ".join(_cell(row.get(f"time/{t}")) for t in TIMINGS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domain", required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--note", default="", help="a sentence for the report (machine, threads, how it ran)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    with Store(args.store, readonly=True) as st:
        table = summarise(st.records(), args.domain)
    if not table:
        raise SystemExit(f"no done standard cells of {args.domain} in {args.store}")
    res = {"domain": args.domain, "store": str(args.store), "note": args.note, "algorithms": table}
    text = markdown(args.domain, table, str(args.store), args.note)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.domain}_standard.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / f"{args.domain}_standard.md").write_text(text)
    sys.stdout.write(text)
    return res


if __name__ == "__main__":
    main()

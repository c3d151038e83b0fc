"""How far the over-optimisation curve's level sits from the final evaluation (issue #21).

    python benchmarks/probe_offset.py --store A.sqlite [--store B.sqlite ...] [--name standard]

Every cell probes its policy during training on the first 16 held-out contexts, one sample each,
paired with the reference (``benchmark.checkpoints``); the last probe is taken on the final policy.
The final evaluation measures the same policy on all held-out contexts with several samples each.
Per done, trained cell, the **offset** = last probe's gold gain − the final evaluation's gold gain.
Noise alone averages to zero over cells; a mean offset away from zero is the probe contexts' own
bias (the same 16 contexts in every cell of a domain), which shifts every point of every curve, and
the best-checkpoint gold gain (an oracle peek), by that much.

Writes ``<out>/probe_offset_<name>.{json,md}`` and prints the Markdown.
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


def offsets(records: list[Any]) -> list[dict[str, Any]]:
    """One row per done cell whose last probe was taken on its final policy."""
    rows = []
    for r in records:
        curve = r.curves.get("checkpoint/gold_gain") or []
        if r.status != "done" or r.algo == "reference" or not curve or "gold_gain" not in r.metrics:
            continue
        step, last = curve[-1]
        if step != r.train_steps:
            continue
        rows.append({"domain": r.domain, "preset": r.preset, "algo": r.algo, "seed": r.seed, "step": step,
                     "last_probe": last, "final": r.metrics["gold_gain"], "offset": last - r.metrics["gold_gain"]})
    return rows


def by_domain(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per (domain, preset): n, mean ± std of the offset and its 95% Student-t interval."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(f"{row['domain']} ({row['preset']})", []).append(row["offset"])
    return {key: mean_ci(vals).as_row() for key, vals in sorted(groups.items())}


def markdown(summary: dict[str, dict[str, Any]], rows: list[dict[str, Any]], stores: list[str]) -> str:
    lines = ["# The curve's level against the final evaluation", "",
             "offset = last probe's gold gain (16 held-out contexts × 1 sample) − final gold gain (the whole "
             f"evaluation), same policy. Stores: {', '.join(stores)}.", "",
             "| domain | cells | offset mean ± std | 95% t interval |", "|---|---|---|---|"]
    for key, s in summary.items():
        interval = "" if s["lo"] is None else f"[{s['lo']:+.3f}, {s['hi']:+.3f}]"
        lines.append(f"| {key} | {s['n']} | {s['mean']:+.3f} ± {s['std']:.3f} | {interval} |")
    lines += ["", "| domain | algorithm | seed | last probe | final | offset |", "|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["domain"], r["algo"], r["seed"])):
        lines.append(f"| {row['domain']} | {row['algo']} | {row['seed']} | {row['last_probe']:+.3f} | "
                     f"{row['final']:+.3f} | {row['offset']:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, action="append", required=True, help="a store (repeat)")
    ap.add_argument("--name", default="standard", help="the report's file name part")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for path in args.store:
        with Store(path, readonly=True) as st:
            rows += offsets(st.records())
    if not rows:
        raise SystemExit(f"no done, trained cells with a final probe in {', '.join(map(str, args.store))}")
    summary = by_domain(rows)
    text = markdown(summary, rows, [str(p) for p in args.store])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"probe_offset_{args.name}.json").write_text(
        json.dumps({"stores": [str(p) for p in args.store], "domains": summary, "cells": rows}, indent=2) + "\n")
    (args.out / f"probe_offset_{args.name}.md").write_text(text)
    sys.stdout.write(text)
    return summary


if __name__ == "__main__":
    main()

"""What `bench grid --claims` costs from an empty store: the claims report's cells, priced (issue #20).

    python benchmarks/claims_cost.py [--costs benchmarks/results/grid_cost_quick.json] [--seeds 3]

Nothing is run. The cells are exactly those ``bench grid --claims`` would run
(``leaderboard.claims.claim_cells`` of every claim, sweep level and grid cell); each is priced by
its (algorithm, domain) cost in a ``benchmarks/grid_cost.py`` report (measured quick cells, or
imputed there, as marked in that report). A domain config override that changes preparation (the
text families of the generation–verification grid) is one more preparation of that domain; runtime
overrides (``scorer_layers``) are not. Wall times follow ``grid_cost.wall_time`` (preparations
longest-first, cache loads per worker, then the cells on W slots).

Writes ``<out>/claims_cost_<preset>.{json,md}`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from benchmark.cache import hash_obj
from leaderboard.claims import all_claims, claim_cells

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from grid_cost import HOUR, DomainPlan, machine, wall_time, write_report  # noqa: E402


def preparation_key(cell) -> tuple[str, str]:
    """(domain, hash of the config fields that key its preparation)."""
    runtime = cell.domain_cls.runtime_fields
    return cell.request.domain, hash_obj({k: v for k, v in cell.config["domain_config"].items() if k not in runtime})


def priced(report: dict) -> str:
    """What the report's per-pair costs are."""
    if report["preset"] == "quick":
        return "measured or imputed quick costs"
    kind = "measured there or extrapolated from quick and calibrated" if report.get("calibrated") else \
        "extrapolated from quick"
    return f"{report['preset']} costs, {kind}"


def plans(cells: list, report: dict) -> list[DomainPlan]:
    """One plan per preparation: its cells priced by the report's (algorithm, domain) costs."""
    pair = {(p["algo"], p["domain"]): p["cell_s"] for p in report["pairs"]}
    dom = {d["domain"]: d for d in report["domains"]}
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in cells:
        grouped[preparation_key(c)].append(pair[c.request.algo, c.request.domain])
    return [DomainPlan(d, dom[d]["preparation_s"], dom[d]["preparation_source"], dom[d]["cache_load_s"], {}, costs)
            for (d, _), costs in sorted(grouped.items())]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--costs", type=Path, default=HERE / "results" / "grid_cost_quick.json")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16, 64])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    report = json.loads(args.costs.read_text())
    preset = report["preset"]
    cells = claim_cells(all_claims(), preset, list(range(args.seeds)))
    ps = plans(cells, report)
    per_domain = Counter(c.request.domain for c in cells)
    res = {"preset": preset, "seeds": args.seeds, "cells": len(cells),
           "cells_per_domain": dict(sorted(per_domain.items())),
           "preparations": [{"domain": p.name, "cells": len(p.cells), "preparation_s": p.prep_s,
                             "cells_s": sum(p.cells)} for p in ps],
           "serial_s": sum(p.total_s for p in ps), "walls": [wall_time(ps, w) for w in args.workers],
           "costs_from": str(args.costs), "machine": machine()}
    lines = [f"# `bench grid --claims` from an empty store, {preset} preset, {args.seeds} seeds", "",
             f"{len(cells)} cells ({', '.join(f'{d} {n}' for d, n in res['cells_per_domain'].items())}) in "
             f"{len(ps)} preparations, priced by {args.costs.name} ({priced(report)} per algorithm and domain; the "
             "process executor's overhead per cell is not added).", "",
             "| workers | wall h |", "|---|---|",
             *(f"| {w['workers']} | {w['estimate_s'] / HOUR:.2f} |" for w in res["walls"]),
             "", f"Serial, one core: {res['serial_s'] / HOUR:.2f} h."]
    write_report(args.out, f"claims_cost_{preset}", res, "\n".join(lines) + "\n")
    return res


if __name__ == "__main__":
    main()

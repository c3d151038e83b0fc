"""The seed methods' headline claims, tested on `benchmarks/quick.py` results (issues #15, #16).

    python benchmarks/compare.py            # reads benchmarks/results/*_quick*.json, writes claims_quick.{md,json}

Each claim compares a method with its baseline on one metric of one domain (and condition): the
per-seed difference, paired by training seed (a cell is a function of code, config and seed, so
the same seed means the same data and evaluation draws in every results file), its mean and 95%
Student-t interval over seeds, and a verdict on the paper's predicted direction:

- **reproduced**: the interval lies on the predicted side of 0;
- **refuted**: it lies on the other side;
- **cannot tell**: it covers 0 (with 3 seeds, only large effects resolve).

A claim whose method and baseline come from two files is paired only if both files saw the same
preparation (the same reference gold reward on the same draws).

Also a per-domain table of every method's mean and 95% interval over seeds. Claims are rows of
``CLAIMS``. `bench report claims` (leaderboard/claims.py) does the same on a store, with the
claims as data there; this script stays for the result files of issues #15 and #16, whose cells
were run in separate stores (some with another torch thread count, so they cannot be merged).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from leaderboard.aggregate import mean_ci

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    domain: str
    method: str
    baseline: str
    metric: str
    file: str
    higher: bool = True
    baseline_file: str | None = None


def _claims() -> list[Claim]:
    out = []
    for d in ("text", "image", "robot"):
        f = f"offline_{d}_quick"
        g = "offline_robot_quick_t1" if d == "robot" else f  # robot's GDPO and CPL rerun with diversity
        out += [
            Claim("Richemond et al. 2024 (DRO)", "DRO beats KTO on the same single-trajectory (thumbs) data", d,
                  "dro", "kto", "normalized_score", f),
            Claim("Kwon et al. 2024 (GDPO)", "GDPO's outputs are more diverse than DPO's", d, "gdpo", "dpo",
                  "diversity", g),
            Claim("Kwon et al. 2024 (GDPO)", "... at a gold reward no lower than DPO's", d, "gdpo", "dpo",
                  "normalized_score", g),
            Claim("Ko et al. 2024 (SeRA)", "SeRA improves on its base DAA (DPO)", d, "sera", "dpo",
                  "normalized_score", f),
            Claim("Hejna et al. 2024 (CPL)", "(context, not the paper's claim) CPL against DPO", d, "cpl", "dpo",
                  "normalized_score", g),
        ]
    out += [
        Claim("Ko et al. 2024 (SeRA)", "SeRA improves on DPO under noisy labels", "text", "sera [noisy-labels]",
              "dpo [noisy-labels]", "normalized_score", "noisy_text_quick"),
        Claim("Hejna et al. 2024 (CPL)", "CPL beats behaviour cloning on robot segments", "robot", "cpl", "sft",
              "d4rl_score", "offline_robot_quick_t1"),
        Claim("Hejna et al. 2024 (CPL)", "CPL beats preference IQL (reward model + IQL)", "robot", "cpl", "iql",
              "d4rl_score", "offline_robot_quick_t1", baseline_file="dtr_robot_quick"),
        Claim("Tu et al. 2025 (DTR)", "DTR beats reward model + IQL (the offline PbRL baseline)", "robot", "dtr",
              "iql", "d4rl_score", "dtr_robot_quick"),
        Claim("Tu et al. 2025 (DTR)", "(context, not the paper's claim) DTR against DPO", "robot", "dtr", "dpo",
              "normalized_score", "dtr_robot_quick"),
        # the online seed methods (issue #16), text
        Claim("Guo et al. 2024 (OAIF)", "online AI feedback beats offline DPO", "text", "oaif", "dpo",
              "normalized_score", "online_text_quick"),
        Claim("Guo et al. 2024 (OAIF)", "(context) OAIF against RLHF", "text", "oaif", "rlhf",
              "normalized_score", "online_text_quick"),
        Claim("Chang et al. 2024 (DR-PO)", "dataset resets: DR-PO ≥ RLHF", "text", "drpo", "rlhf",
              "normalized_score", "online_text_quick"),
        Claim("Krishna & Sahoo 2024 (FRFT)", "refitting the reward model on policy-near pairs beats RLHF", "text",
              "inverse_alignment", "rlhf", "normalized_score", "online_text_quick"),
        Claim("Zhang et al. 2024 (SELM)", "(context) SELM against offline DPO", "text", "selm", "dpo",
              "normalized_score", "online_text_quick"),
        Claim("Zhang et al. 2024 (SELM)", "the optimistic term helps: SELM beats iterative DPO (α = 0)", "text",
              "selm", "selm (alpha=0.0)", "normalized_score", "online_text_quick",
              baseline_file="online_set_text_quick"),
        Claim("Guo et al. 2024 (OAIF)", "online feedback beats offline DPO, with the oracle as annotator", "text",
              "oaif (annotator=oracle)", "dpo", "normalized_score", "online_set_text_quick",
              baseline_file="online_text_quick"),
        Claim("Zhai et al. 2024 (OSP)", "OSP beats DPO when offline data are scarce", "text", "osp [low-budget]",
              "dpo [low-budget]", "normalized_score", "online_lowbudget_text_quick"),
        # robot (annotator = the oracle: robot has no judge)
        Claim("Chang et al. 2024 (DR-PO)", "dataset resets: DR-PO ≥ RLHF", "robot", "drpo", "rlhf",
              "normalized_score", "online_robot_quick"),
        Claim("Krishna & Sahoo 2024 (FRFT)", "refitting the reward model on policy-near pairs beats RLHF", "robot",
              "inverse_alignment", "rlhf", "normalized_score", "online_robot_quick"),
        Claim("Guo et al. 2024 (OAIF)", "online feedback beats offline DPO, with the oracle as annotator", "robot",
              "oaif (annotator=oracle)", "dpo", "normalized_score", "online_robot_quick",
              baseline_file="dtr_robot_quick"),
        # image (annotator = the oracle: image has no judge; DR-PO is n/a there at η = 0)
        Claim("Guo et al. 2024 (OAIF)", "online feedback beats offline DPO, with the oracle as annotator", "image",
              "oaif (annotator=oracle)", "dpo", "normalized_score", "online_image_quick"),
        Claim("Krishna & Sahoo 2024 (FRFT)", "refitting the reward model on policy-near pairs beats RLHF", "image",
              "inverse_alignment", "rlhf", "normalized_score", "online_image_quick"),
        Claim("Zhang et al. 2024 (SELM)", "(context) SELM against offline DPO", "image", "selm", "dpo",
              "normalized_score", "online_image_quick"),
        Claim("Zhai et al. 2024 (OSP)", "(context, default data, not the paper's scarce-data claim) OSP against DPO",
              "image", "osp", "dpo", "normalized_score", "online_image_quick"),
    ]
    return out


CLAIMS = _claims()


def per_seed(results: dict, entry: str, metric: str) -> dict[int, float] | None:
    e = results.get("entries", {}).get(entry)
    if not e or metric not in e:
        return None
    return dict(zip(e["seeds"], e[metric]["values"]))


def test_claim(c: Claim, files: dict[str, dict]) -> dict:
    row = asdict(c)
    missing = [f for f in (c.file, c.baseline_file or c.file) if f not in files]
    if missing:
        return {**row, "verdict": "not run", "reason": f"no results file {missing[0]}.json"}
    ref_a, ref_b = (files[f]["reference_metrics"]["gold_reward"] for f in (c.file, c.baseline_file or c.file))
    if abs(ref_a - ref_b) > 1e-9:  # e.g. prepared with another torch thread count (docs/design.md)
        return {**row, "verdict": "not run", "reason": f"{c.file} and {c.baseline_file} were prepared differently "
                f"(reference gold {ref_a:.4f} vs {ref_b:.4f}); no pairing across them"}
    a = per_seed(files[c.file], c.method, c.metric)
    b = per_seed(files[c.baseline_file or c.file], c.baseline, c.metric)
    if a is None or b is None:
        return {**row, "verdict": "not run", "reason": "method or baseline missing from the results"}
    seeds = sorted(set(a) & set(b))
    diffs = [(a[s] - b[s]) * (1 if c.higher else -1) for s in seeds]
    st = mean_ci(diffs)
    lo, hi = (st.lo, st.hi) if st and st.lo is not None else (float("nan"), float("nan"))
    verdict = "reproduced" if lo > 0 else "refuted" if hi < 0 else "cannot tell"
    return {**row, "seeds": seeds, "method_mean": mean_ci([a[s] for s in seeds]).mean,
            "baseline_mean": mean_ci([b[s] for s in seeds]).mean, "diff": st.mean, "lo": lo, "hi": hi,
            "verdict": verdict}


def entry_table(name: str, results: dict, metrics: list[str]) -> list[str]:
    lines = [f"### {name}", "", "| entry | seeds | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
    for entry, e in results["entries"].items():
        cells = []
        for m in metrics:
            st = mean_ci(e[m]["values"]) if m in e else None
            cells.append("—" if st is None else f"{st.mean:.3g} ± {st.half:.2g}" if st.half is not None
                         else f"{st.mean:.3g}")
        lines.append(f"| {entry} | {len(e['seeds'])} | " + " | ".join(cells) + " |")
    return [*lines, ""]


KEY = {"text": ["normalized_score", "win_rate", "kl_to_ref", "diversity", "accuracy"],
       "image": ["normalized_score", "win_rate", "elbo_gap", "diversity", "alignment"],
       "robot": ["normalized_score", "win_rate", "kl_to_ref", "d4rl_score", "success_rate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--tag", default="claims_quick")
    args = ap.parse_args()
    files = {p.stem: json.loads(p.read_text()) for p in sorted(args.results.glob("*_quick*.json"))}
    files = {k: v for k, v in files.items() if isinstance(v, dict) and "entries" in v}  # quick.py outputs only
    rows = [test_claim(c, files) for c in CLAIMS]
    lines = ["# The seed methods' claims (quick preset)", "",
             "Difference = method − baseline per training seed (paired), mean and 95% Student-t interval over "
             "seeds; verdict on the paper's predicted direction (higher is better for every metric here). "
             "Regenerate: `python benchmarks/compare.py`.", "",
             "| paper | claim | domain | method vs baseline | metric | method | baseline | difference [95% CI] | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["verdict"] == "not run":
            lines.append(f"| {r['paper']} | {r['claim']} | {r['domain']} | {r['method']} vs {r['baseline']} | "
                         f"{r['metric']} | | | | not run ({r['reason']}) |")
            continue
        lines.append(f"| {r['paper']} | {r['claim']} | {r['domain']} | {r['method']} vs {r['baseline']} | "
                     f"{r['metric']} | {r['method_mean']:.3g} | {r['baseline_mean']:.3g} | "
                     f"{r['diff']:+.3g} [{r['lo']:+.3g}, {r['hi']:+.3g}] | {r['verdict']} |")
    lines += ["", "## Every method, mean ± 95% interval half-width over seeds", ""]
    for name, res in files.items():
        dom = res.get("domain")
        if name.startswith(("offline_", "dtr_", "noisy_", "online_")) and dom in KEY:
            threads = res.get("machine", {}).get("omp_num_threads", "unset")
            lines += entry_table(f"{name} ({dom}; OMP_NUM_THREADS {threads})", res, KEY[dom])
    (args.results / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    (args.results / f"{args.tag}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

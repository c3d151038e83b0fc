"""Mutation score of the fast tests: do they notice when the maths is wrong?

Each mutant is a small, plausible bug — a sign flip, swapped arguments, a dropped term — applied to
a copy of the repository (the working tree is never touched); the fast tests then run on that
copy. A mutant is *killed* when a test fails, *survives* when all pass. The target is every
core-maths mutant killed.

    python benchmarks/mutants.py                    # all mutants, the fast tests
    python benchmarks/mutants.py --only dpo,eval    # mutants whose name contains a word
    python benchmarks/mutants.py --repo /path/to/other/checkout --tests "tests/test_objectives.py"

Writes ``benchmarks/results/mutants.{json,md}``. A mutant whose pattern is not in the file is
reported as not applicable (useful to score an older checkout with the same list).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST_TESTS = [
    "tests/test_objectives.py",
    "tests/test_feedback.py",
    "tests/test_conditions.py",
    "tests/test_evaluation.py",
    "tests/test_conformance.py::test_learning_direction",
    "tests/test_conformance.py::test_offline_data_per_condition",
]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    patterns: tuple[tuple[str, str], ...]
    """Alternatives (old, new): the first ``old`` found in the file is replaced (once)."""
    core: bool = True
    """Core maths (objectives, losses, evaluation, labels): must be killed."""


def m(name: str, path: str, old: str, new: str, *alts: tuple[str, str], core: bool = True) -> Mutant:
    return Mutant(name, path, ((old, new), *alts), core)


OBJ, EVAL, FEED, DATA = (
    "benchmark/objectives.py",
    "benchmark/evaluation.py",
    "benchmark/feedback.py",
    "benchmark/data.py",
)
MUTANTS = [
    # -- the seven the issue listed --------------------------------------------------------------
    m(
        "dpo: chosen and rejected swapped",
        "baselines/dpo.py",
        "b.contexts, b.chosen, b.rejected",
        "b.contexts, b.rejected, b.chosen",
    ),
    m("kto: labels inverted", "baselines/kto.py", "b.label.to(lp.device)", "(1 - b.label).to(lp.device)"),
    m(
        "ipo: margin flipped",
        "baselines/ipo.py",
        "h = logratio_margin(pi_w, pi_l, ref_w, ref_l)",
        "h = -logratio_margin(pi_w, pi_l, ref_w, ref_l)",
    ),
    m(
        "eval: win_rate sign flipped",
        EVAL,
        "torch.sigmoid((pol.double() - ref.double()) / temperature)",
        "torch.sigmoid((ref.double() - pol.double()) / temperature)",
        (
            "torch.sigmoid((gold - ref_gold) / d.oracle.temperature)",
            "torch.sigmoid((ref_gold - gold) / d.oracle.temperature)",
        ),
    ),
    m(
        "eval: normalized_score sign flipped",
        EVAL,
        '"normalized_score": 100.0 * gain / scale',
        '"normalized_score": -100.0 * gain / scale',
        ('"normalized_score": 100.0 * (g - lo) / (hi - lo)', '"normalized_score": -100.0 * (g - lo) / (hi - lo)'),
    ),
    m(
        "eval: kl_to_ref sign flipped",
        EVAL,
        '"kl_to_ref": float(kl_k1(lp, lp_ref).mean())',
        '"kl_to_ref": float(kl_k1(lp_ref, lp).mean())',
    ),
    m(
        "eval: best-of-N target is a mean",
        EVAL,
        '"target": float(gold.max(dim=1).values.mean())',
        '"target": float(gold.mean())',
    ),
    # -- objectives ------------------------------------------------------------------------------
    m(
        "obj: logratio margin adds the rejected side",
        OBJ,
        "return (pi_w - ref_w) - (pi_l - ref_l)",
        "return (pi_w - ref_w) + (pi_l - ref_l)",
    ),
    m(
        "obj: dpo logsigmoid of −z",
        OBJ,
        "-(1 - label_smoothing) * F.logsigmoid(z)",
        "-(1 - label_smoothing) * F.logsigmoid(-z)",
    ),
    m("obj: dpo label smoothing dropped", OBJ, "- label_smoothing * F.logsigmoid(-z)", "- 0.0 * F.logsigmoid(-z)"),
    m("obj: robust dpo normaliser", OBJ, "/ (1 - 2 * eps)", "/ (1 + 2 * eps)"),
    m("obj: hinge sign", OBJ, "torch.relu(1 - beta * h)", "torch.relu(1 + beta * h)"),
    m("obj: ipo target sign", OBJ, "(h - 1 / (2 * tau)) ** 2", "(h + 1 / (2 * tau)) ** 2"),
    m("obj: soft preference weights swapped", OBJ, "-p * F.logsigmoid(z) - (1 - p)", "-(1 - p) * F.logsigmoid(z) - p"),
    m("obj: implicit reward sign", OBJ, "beta * (pi - ref)", "beta * (ref - pi)"),
    m(
        "obj: kto reference point clamped from above",
        OBJ,
        ".mean().clamp(min=0).detach()",
        ".mean().clamp(max=0).detach()",
    ),
    m(
        "obj: kto desirable term reversed",
        OBJ,
        "(1 - torch.sigmoid(beta * (rho - z0)))",
        "(1 - torch.sigmoid(beta * (z0 - rho)))",
    ),
    m(
        "obj: bradley-terry sides swapped",
        OBJ,
        "-F.logsigmoid(r_w - r_l - margin)",
        "-F.logsigmoid(r_l - r_w - margin)",
    ),
    m("obj: k3 estimator sign", OBJ, "torch.expm1(-d) + d", "torch.expm1(d) - d"),
    m("obj: gae drops the value baseline", OBJ, "* nonterminal - values[:, i]", "* nonterminal + values[:, i]"),
    m(
        "obj: expectile weights inverted",
        OBJ,
        "torch.abs(tau - (u < 0).to(u.dtype))",
        "torch.abs(tau - (u > 0).to(u.dtype))",
    ),
    m("obj: cpl bias on the chosen side", OBJ, "-F.logsigmoid(adv_w - bias * adv_l)",
      "-F.logsigmoid(bias * adv_w - adv_l)"),
    m("obj: dro advantage sign", OBJ, "return -rho * (reward - value).detach()",
      "return rho * (reward - value).detach()"),
    m("obj: dro value target sign", OBJ, "0.5 * (reward - value - tau * rho.detach()) ** 2",
      "0.5 * (reward - value + tau * rho.detach()) ** 2"),
    m("obj: gflownet residual sign of the policy", OBJ, "delta = (log_flow + logp - logp_ref - next_flow)",
      "delta = (log_flow - logp + logp_ref - next_flow)"),
    m("obj: margin selection keeps the other end", OBJ, "descending=largest, stable=True",
      "descending=not largest, stable=True"),
    m("obj: best and worst swapped", OBJ, "return offset + rewards.argmax(-1), offset + rewards.argmin(-1)",
      "return offset + rewards.argmin(-1), offset + rewards.argmax(-1)"),
    # -- baselines and training plumbing -----------------------------------------------------------
    m(
        "sft: trains on the rejected side",
        "baselines/sft.py",
        "(off.pairs.contexts, off.pairs.chosen)",
        "(off.pairs.contexts, off.pairs.rejected)",
    ),
    m(
        "dpo: loss of −h",
        "baselines/dpo.py",
        "return dpo_loss(h, cfg.beta, cfg.label_smoothing)",
        "return dpo_loss(-h, cfg.beta, cfg.label_smoothing)",
    ),
    m(
        "kto: reference point from swapped log-probs",
        "baselines/kto.py",
        "z0 = kto_reference_point(kl_lp, kl_ref)",
        "z0 = kto_reference_point(kl_ref, kl_lp)",
    ),
    m(
        "training: pair_logps returns the sides swapped",
        "benchmark/training.py",
        "return pi_w, pi_l, ref_w, ref_l",
        "return pi_l, pi_w, ref_l, ref_w",
    ),
    m("cpl: advantages of the sides swapped", "baselines/cpl.py",
      "adv_w, adv_l = cfg.alpha * logp_w, cfg.alpha * logp_l", "adv_w, adv_l = cfg.alpha * logp_l, cfg.alpha * logp_w"),
    m("dro: thumbs inverted", "baselines/dro.py", "r = (b.label if", "r = ((1 - b.label) if"),
    # -- evaluation --------------------------------------------------------------------------------
    m(
        "eval: gain is reference minus policy",
        EVAL,
        "diff = pol.double().mean(1) - ref.double().mean(1)",
        "diff = ref.double().mean(1) - pol.double().mean(1)",
    ),
    m(
        "eval: the scale's 0 is the best-of-N",
        EVAL,
        '"ref_mean": float(gold.mean())',
        '"ref_mean": float(gold.max(dim=1).values.mean())',
    ),
    m(
        "eval: reference drawn on other randomness",
        EVAL,
        "draws = self._draws(self.domain.reference.eval(), split, ctx, seed, progress",
        "draws = self._draws(self.domain.reference.eval(), split, ctx, seed + 1, progress",
    ),
    m(
        "eval: interval at the wrong quantile",
        EVAL,
        "stats.t.ppf(0.5 + level / 2, n - 1)",
        "stats.t.ppf(level / 2, n - 1)",
    ),
    m("eval: non-finite check drops the check", EVAL, "if not math.isfinite(float(v))", "if False"),
    # -- feedback ----------------------------------------------------------------------------------
    m(
        "feedback: BT draw reversed",
        FEED,
        "label = (torch.rand(p.shape, generator=generator) < p)",
        "label = (torch.rand(p.shape, generator=generator) > p)",
    ),
    m(
        "feedback: strength of the other label",
        FEED,
        "strength = torch.where(label == 1, p, 1 - p)",
        "strength = torch.where(label == 1, 1 - p, p)",
    ),
    m(
        "feedback: mistakes never flip",
        FEED,
        "flip & (label != 0.5), 1.0 - label, label",
        "flip & (label != 0.5), label, label",
    ),
    m(
        "feedback: myopic discount reversed",
        FEED,
        "torch.arange(t - 1, -1, -1, dtype=torch.float32)",
        "torch.arange(0, t, dtype=torch.float32)",
    ),
    m(
        "feedback: budget check ignores the request",
        FEED,
        "if self._used + n > self._budget:",
        "if self._used > self._budget:",
    ),
    m(
        "feedback: ranks ascending",
        FEED,
        "order = torch.argsort(u, dim=1, descending=True)",
        "order = torch.argsort(u, dim=1, descending=False)",
    ),
    m(
        "feedback: channel labels inverted",
        FEED,
        "(1 - label if self._invert else label)",
        "(label if self._invert else 1 - label)",
    ),
    # -- data --------------------------------------------------------------------------------------
    m(
        "data: chosen is the rejected",
        DATA,
        "chosen = torch.where(label == 1, a, b)",
        "chosen = torch.where(label == 1, b, a)",
    ),
    m(
        "data: thumbs inverted",
        DATA,
        "thumbs = (score > 0).to(torch.float32)",
        "thumbs = (score < 0).to(torch.float32)",
    ),
    m("data: duplicates paired", DATA, "if keys[j] not in seen:", "if True:"),
    m("data: coverage drop keeps the best", DATA, "keep &= gold < cut", "keep &= gold >= cut"),
    m(
        "data: flipped demos are the best",
        DATA,
        "demo_idx = kept[torch.argsort(gold[kept])[: len(demo_idx)]]",
        "demo_idx = kept[torch.argsort(gold[kept], descending=True)[: len(demo_idx)]]",
    ),
]


def copy_repo(src: Path, dst: Path) -> None:
    """The tracked and untracked-not-ignored files of ``src`` (git's view), into ``dst``."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=src, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        target = dst / f
        target.parent.mkdir(parents=True, exist_ok=True)
        if (src / f).is_file():
            shutil.copy2(src / f, target)


def run_tests(repo: Path, tests: list[str], cache: Path, timeout: float) -> tuple[bool, str, float]:
    existing = [t for t in tests if (repo / t.split("::")[0]).exists()]
    env = {**os.environ, "PYTHONPATH": str(repo), "PREFBENCH_TEST_CACHE": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *existing],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, "timeout", time.perf_counter() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    first = lines[0] if lines else (out.stdout.strip().splitlines() or [""])[-1]
    return out.returncode == 0, first[:200], time.perf_counter() - t0


def apply(repo: Path, mutant: Mutant) -> bool:
    path = repo / mutant.path
    if not path.exists():
        return False
    text = path.read_text()
    for old, new in mutant.patterns:
        if old in text:
            path.write_text(text.replace(old, new, 1))
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout to mutate (copied; never modified)")
    ap.add_argument("--tests", default=" ".join(FAST_TESTS), help="test selection (space-separated)")
    ap.add_argument("--only", default="", help="comma-separated words: run mutants whose name contains one")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results directory")
    ap.add_argument("--tag", default="mutants", help="results file name")
    args = ap.parse_args()
    tests = args.tests.split()
    words = [w for w in args.only.split(",") if w]
    chosen = [mu for mu in MUTANTS if not words or any(w in mu.name for w in words)]
    results = []
    with tempfile.TemporaryDirectory(prefix="prefbench-mutants-") as tmp:
        tmp_path = Path(tmp)
        cache = tmp_path / "cache"
        base = tmp_path / "base"
        copy_repo(args.repo, base)
        ok, msg, secs = run_tests(base, tests, cache, args.timeout)
        print(f"unmutated: {'pass' if ok else 'FAIL'} in {secs:.0f}s {msg}", flush=True)
        if not ok:
            sys.exit("the fast tests fail without any mutant: fix them first")
        for mu in chosen:
            work = tmp_path / "mutant"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(base, work)
            if not apply(work, mu):
                results.append({"name": mu.name, "path": mu.path, "core": mu.core, "status": "n/a", "test": ""})
                print(f"  n/a       {mu.name}", flush=True)
                continue
            passed, msg, secs = run_tests(work, tests, cache, args.timeout)
            status = "survived" if passed else "killed"
            results.append(
                {
                    "name": mu.name,
                    "path": mu.path,
                    "core": mu.core,
                    "status": status,
                    "test": msg,
                    "seconds": round(secs, 1),
                }
            )
            print(f"  {status:9s} {mu.name}  [{secs:.0f}s] {'' if passed else msg}", flush=True)
    write(results, args, tests)


def write(results: list[dict], args: argparse.Namespace, tests: list[str]) -> None:
    applied = [r for r in results if r["status"] != "n/a"]
    killed = [r for r in applied if r["status"] == "killed"]
    core = [r for r in applied if r["core"]]
    score = len(killed) / max(len(applied), 1)
    summary = (
        f"{len(killed)}/{len(applied)} mutants killed ({100 * score:.0f}%); core maths "
        f"{sum(r['status'] == 'killed' for r in core)}/{len(core)}; "
        f"{len(results) - len(applied)} not applicable"
    )
    print(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(
        json.dumps({"repo": str(args.repo), "tests": tests, "summary": summary, "mutants": results}, indent=2) + "\n"
    )
    lines = [
        f"# Mutation score ({args.tag})",
        "",
        summary,
        "",
        f"Tests: `{' '.join(tests)}`",
        "",
        "| mutant | file | status | first failing test |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['name']} | `{r['path']}` | {r['status']} | {r['test'].replace('|', '/')} |" for r in results]
    (args.out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

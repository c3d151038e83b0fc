"""Speed of the motion domain's array kernels (#13, #19): feature conversion and scoring.

    python benchmarks/motion_kernels.py [--repeats 5]

Times, as the median of ``--repeats`` runs on this machine, the conversions between joint
positions and the 263-dim HumanML3D-style features (:func:`domains.motion.skeleton.to_features`,
:func:`~domains.motion.skeleton.from_features`) on 2,000 motions of 48 frames, and the hidden
oracle's component scores (:func:`domains.motion.motions.score`) on 2,000 motions. The targets
(under 1 s per conversion and 2 s for scoring on one core) are checked here, never in the tests:
a loaded CI machine is no place for a stopwatch. Writes ``benchmarks/results/motion_kernels.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from flop_utilisation import median_seconds

from domains.motion import motions as M
from domains.motion import skeleton as K

TARGETS_S = {"to_features": 1.0, "from_features": 1.0, "score": 2.0}


def measure(repeats: int) -> dict[str, float]:
    """Seconds per kernel on 2,000 motions of 48 frames."""
    pos = np.tile(np.stack([M.generate(m, random.Random(4), 48) for m in M.all_meanings()]), (50, 1, 1, 1))
    feats = K.to_features(pos)
    rng = random.Random(123)
    meanings = [M.random_meaning(rng, "any") for _ in range(len(pos))]
    return {"to_features": median_seconds(lambda: K.to_features(pos), repeats, warmup=1),
            "from_features": median_seconds(lambda: K.from_features(feats), repeats, warmup=1),
            "score": median_seconds(lambda: M.score(meanings, pos), repeats, warmup=1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per kernel; the median is reported")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="results folder")
    args = ap.parse_args(argv)
    seconds = measure(args.repeats)
    rows = ["| kernel (2,000 motions × 48 frames) | median s | target s | met |", "|---|---:|---:|---|"]
    rows += [f"| {k} | {v:.3f} | {TARGETS_S[k]:.1f} | {'yes' if v < TARGETS_S[k] else 'NO'} |"
             for k, v in seconds.items()]
    print("\n".join(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "motion_kernels.json").write_text(json.dumps({"seconds": seconds, "targets_s": TARGETS_S,
                                                              "repeats": args.repeats}, indent=2))
    (args.out / "motion_kernels.md").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()

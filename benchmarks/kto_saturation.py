"""Why KTO collapses on robot at `standard` (issue #21): its logged z₀, ρ and sigmoid slope per seed.

    bench run --algo kto --domain robot --preset standard --seed 2     # and --seed 0
    python benchmarks/kto_saturation.py --store runs/prefbench.sqlite --domain robot --preset standard

KTO logs, every few steps, its reference point z₀, the batch mean of ρ = log π/π_ref and ``slope`` =
mean 4 σ(u) σ(−u) with u = β(ρ − z₀) (``benchmark.objectives.kto_slope``): the gradient its sigmoid
still passes, relative to the peak. Prints their means per window of steps, the share of logged steps
with slope < 0.05 (saturated), and plots z₀, slope and the checkpoints' KL per seed.

Writes ``benchmarks/results/<domain>_<preset>_curves/kto_saturation.png``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmark.store import Store

RESULTS = Path(__file__).parent / "results"
SATURATED = 0.05


def windows(curve: list[list[float]], width: int, steps: int) -> list[float | None]:
    """Mean of a logged curve over [a, a + width) for a = 0, width, … < steps."""
    out = []
    for a in range(0, steps, width):
        vals = [v for k, v in curve if a <= k < a + width]
        out.append(statistics.fmean(vals) if vals else None)
    return out


def plot(records: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    for seed, r in sorted(records.items()):
        line = ax[0].plot(*zip(*r.curves["z0"]), lw=1, label=f"seed {seed}")[0]
        ax[1].plot(*zip(*r.curves["slope"]), lw=1, color=line.get_color())
        ax[2].plot(*zip(*r.curves["checkpoint/kl"]), "o-", color=line.get_color())
    ax[0].set_yscale("symlog", linthresh=10)
    ax[0].set_ylabel("z₀ (KTO's reference point)", fontsize=8)
    ax[1].set_ylabel("slope: mean 4σ(u)σ(−u), u = β(ρ − z₀)", fontsize=8)
    ax[2].set_ylabel("KL to the reference (checkpoints)", fontsize=8)
    ax[2].set_xlabel("training step")
    ax[0].legend(fontsize=8)
    ax[0].set_title("KTO: z₀, how much gradient the sigmoid passes, and the drift", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--domain", default="robot")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--window", type=int, default=50, help="steps per row of the printed table")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    with Store(args.store, readonly=True) as st:
        records = {r.seed: r for r in st.records(algo="kto", domain=args.domain, preset=args.preset, status="done")
                   if "slope" in r.curves}
    if not records:
        raise SystemExit(f"no done kto cells of {args.domain} at {args.preset} with a logged slope in {args.store}")
    for seed, r in sorted(records.items()):
        steps = int(r.train_steps or max(k for k, _ in r.curves["slope"]) + 1)
        slopes = [v for _, v in r.curves["slope"]]
        share = sum(v < SATURATED for v in slopes) / len(slopes)
        print(f"seed {seed}: normalized {r.metrics['normalized_score']:+.2f}, slope < {SATURATED} on {share:.0%} "
              f"of logged steps")
        for key in ("z0", "rho", "slope"):
            row = windows(r.curves[key], args.window, steps)
            print(f"  {key:5s} per {args.window} steps: " + " ".join("—" if v is None else f"{v:.3g}" for v in row))
    plot(records, args.out / f"{args.domain}_{args.preset}_curves" / "kto_saturation.png")


if __name__ == "__main__":
    main()

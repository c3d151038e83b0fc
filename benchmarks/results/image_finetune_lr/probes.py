"""The checkpoint probes of the image `standard` cells at fine-tuning lr 1e-4 and 1e-5 (as run, 2026-12-05).

    python benchmarks/results/image_finetune_lr/probes.py STORE [STORE ...]

Reads every done image `standard` cell of the stores; writes ``probes.csv`` (algo, lr, seed, step, gold gain,
ELBO gap) and ``probes.png`` (gold gain vs step, mean over the seeds, one panel per learning rate) next to
this file.
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmark.store import Store

HERE = Path(__file__).parent


def rows(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        for r in Store(path, readonly=True).records(status="done", domain="image"):
            if r.preset != "standard" or r.algo == "reference":
                continue
            lr = r.config["domain_config"]["lr"] * r.config["algo_config"].get("lr_scale", 1.0)
            kl = dict(r.curves.get("checkpoint/kl", []))
            for step, gain in [(0, 0.0), *r.curves.get("checkpoint/gold_gain", [])]:
                out.append(dict(algo=r.algo, lr=f"{lr:.0e}", seed=r.seed, step=step, gold_gain=gain,
                                elbo_gap=kl.get(step, 0.0)))
    return out


def main() -> None:
    data = rows(sys.argv[1:])
    with open(HERE / "probes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)
    lrs = sorted({d["lr"] for d in data}, reverse=True)
    colour = {a: f"C{i}" for i, a in enumerate(sorted({d["algo"] for d in data}))}
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.5 * len(lrs), 4), sharey=True, squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for algo in sorted({d["algo"] for d in data if d["lr"] == lr}):
            mine = [d for d in data if (d["lr"], d["algo"]) == (lr, algo)]
            steps = sorted({d["step"] for d in mine})
            mean = [sum(d["gold_gain"] for d in mine if d["step"] == s) / sum(d["step"] == s for d in mine)
                    for s in steps]
            seeds = len({d["seed"] for d in mine})
            ax.plot(steps, mean, marker="o", color=colour[algo], label=f"{algo} ({seeds} seed{'s' * (seeds > 1)})")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=f"fine-tuning lr {lr}", xlabel="training step", ylabel="gold gain over the reference (probe)")
        ax.legend(fontsize=8)
    fig.suptitle("image, standard, 1e-3 reference: checkpoint probes (16 held-out contexts × 1 sample), "
                 "mean over seeds")
    fig.tight_layout()
    fig.savefig(HERE / "probes.png", dpi=110)
    print(f"{len(data)} probe points -> {HERE / 'probes.csv'}, {HERE / 'probes.png'}")


if __name__ == "__main__":
    main()

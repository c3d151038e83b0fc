# ruff: noqa  (as run on 2026-12-04/05 from /tmp/diag; see README.md here)
"""Write the diagnostic runs' per-step training records as CSV and plot them (loss and gradient norm vs step)."""
import csv, sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

out = Path(sys.argv[1])
runs = [(label, torch.load(path, weights_only=False)["rec"]) for label, path in zip(sys.argv[2::2], sys.argv[3::2])]
fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
for label, rec in runs:
    with open(out / f"{label}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "grad_norm", "lr"])
        for i, (lo, g, lr) in enumerate(zip(rec["loss"], rec["gnorm"], rec["lr"])):
            w.writerow([i + 1, f"{lo:.5f}", f"{g:.4f}", f"{lr:.3e}"])
    k = 25
    xs = list(range(k, len(rec["loss"]) + 1))
    smooth = lambda v: [sum(v[i - k:i]) / k for i in xs]
    axes[0].plot(xs, smooth(rec["loss"]), label=label)
    axes[1].plot(xs, smooth(rec["gnorm"]), label=label)
axes[0].set_yscale("log"); axes[0].set_ylabel("training loss (ε-MSE, mean of 25)")
axes[1].set_ylabel("gradient norm (mean of 25)"); axes[1].set_xlabel("optimiser step")
axes[0].legend(); axes[0].set_title("image `standard` reference training, 2 CPU threads")
fig.tight_layout(); fig.savefig(out / "loss_and_grad_norm.png", dpi=110)
print("wrote", out)

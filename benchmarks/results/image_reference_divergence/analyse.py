# ruff: noqa  (as run on 2026-12-04/05 from /tmp/diag; see README.md here)
"""Denoising error (the preparation's check: 256 first training samples, fixed draws) of each snapshot of the
diagnostic run, against the untrained network."""
import random, sys
import torch
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
from benchmark.runner import CellRequest, resolve
from benchmark.preparation import denoising_error
from domains.image import scenes as S
d = torch.load(sys.argv[1], weights_only=False)
cell = resolve(CellRequest(algo="dpo", domain="image", preset="standard", seed=0))
dom = cell.domain_cls(cell.domain_cfg, torch.device("cpu"))
c = dom.cfg
rng = random.Random(c.seed)
sources = list(c.mixture); weights = [c.mixture[s] for s in sources]
scenes = [S.random_scene(rng) for _ in range(c.ref_data)]
srcs = rng.choices(sources, weights, k=c.ref_data)
ctx = dom.encode(scenes[:256]); data = dom._render(srcs[:256], scenes[:256], rng)
torch.manual_seed(c.seed)
untrained = dom.make_denoiser().eval()
policy = dom.make_diffusion_policy(untrained)
base = denoising_error(policy, untrained, ctx, data)
print("untrained", round(base, 4))
net = dom.make_denoiser().eval()
rec = d["rec"]
for step, sn in sorted(d["snaps"].items()):
    row = [step]
    for which in ("ema", "model"):
        net.load_state_dict(sn[which]); row.append(round(denoising_error(policy, net, ctx, data) / base, 3))
    lo = rec["loss"][step - 250:step]; gn = rec["gnorm"][step - 250:step]
    row += [round(sum(lo) / len(lo), 4), round(max(lo), 3), round(sum(gn) / len(gn), 3), round(max(gn), 2), f"{rec['lr'][step-1]:.2e}"]
    print("step %5d ratio ema %.3f model %.3f | loss mean %.4f max %.3f | gnorm mean %.3f max %.2f | lr %s" % tuple(row), flush=True)
net.load_state_dict(d["final"]); print("final ema ratio", round(denoising_error(policy, net, ctx, data) / base, 3))

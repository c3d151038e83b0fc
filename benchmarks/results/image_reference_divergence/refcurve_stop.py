# ruff: noqa  (as run on 2026-12-04/05 from /tmp/diag; see README.md here)
"""Diagnose the standard image reference: the same training loop as benchmark.preparation.fit (same ops,
so the same numbers), recording every step's loss, gradient norm and lr, and EMA snapshots every 250 steps."""
import copy, hashlib, json, random, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
import benchmark.preparation as P
from benchmark.runner import CellRequest, resolve, seed_everything, stable_seed
from benchmark.progress import Progress

STOP = int(sys.argv[3])
REC = {"loss": [], "gnorm": [], "lr": []}
SNAPS = {}

def fit(model, loss_at, cfg, progress, title, metric="loss"):
    opt, sched = P._optimizer(model, cfg)
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema is not None else None
    snapshots = {}
    model.train()
    t0 = time.time()
    for step in range(cfg.steps):
        if step == STOP:
            break
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        REC["loss"].append(float(loss.detach())); REC["gnorm"].append(float(gn)); REC["lr"].append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        if ema is not None:
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
        if step + 1 in cfg.snapshots:
            snapshots[step + 1] = P.clone_state(ema if ema is not None else model)
        if (step + 1) % 250 == 0 or (step + 1 >= 1150 and (step + 1) % 25 == 0):
            SNAPS[step + 1] = {"ema": P.clone_state(ema), "model": P.clone_state(model)}
            print(step + 1, f"{time.time()-t0:.0f}s loss(last50)={sum(REC['loss'][-50:])/50:.4f} gnorm={sum(REC['gnorm'][-50:])/50:.3f}", flush=True)
    out = ema if ema is not None else model
    return P.Fitted(out.eval(), snapshots)

P.fit = fit
cell = resolve(CellRequest(algo="dpo", domain="image", preset="standard", seed=0))
dom = cell.domain_cls(cell.domain_cfg, torch.device("cpu"))
seed_everything(stable_seed("prepare", cell.domain_cls.name, cell.domain_cfg.seed))
c = dom.cfg
class Stop(Exception):
    pass
import benchmark.preparation as PP
orig = PP.denoising_error
def stop(*a, **k):
    raise Stop
PP.denoising_error = stop
try:
    dom._train_reference(random.Random(c.seed), torch.Generator().manual_seed(c.seed), Progress())
except (Stop, KeyError):
    pass
torch.save({"rec": REC, "snaps": SNAPS}, sys.argv[2])
print("saved", flush=True)

# ruff: noqa  (as run on 2026-12-04/05 from /tmp/diag; see README.md here)
"""Diagnose the standard image reference: the same training loop as benchmark.preparation.fit (same ops,
so the same numbers), recording every step's loss, gradient norm and lr, and EMA snapshots every 250 steps."""
import copy, hashlib, json, random, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
import benchmark.preparation as P
from benchmark.runner import CellRequest, resolve, seed_everything, stable_seed
from benchmark.progress import Progress

REC = {"loss": [], "gnorm": [], "lr": []}
SNAPS = {}

def fit(model, loss_at, cfg, progress, title, metric="loss"):
    opt, sched = P._optimizer(model, cfg)
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema is not None else None
    snapshots = {}
    model.train()
    t0 = time.time()
    for step in range(cfg.steps):
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
        if (step + 1) % 250 == 0:
          if (step + 1) % 1000 == 0:
            SNAPS[step + 1] = {'ema': P.clone_state(ema), 'model': P.clone_state(model)}
          if True:
            print(step + 1, f"{time.time()-t0:.0f}s loss(last50)={sum(REC['loss'][-50:])/50:.4f} gnorm={sum(REC['gnorm'][-50:])/50:.3f}", flush=True)
    out = ema if ema is not None else model
    return P.Fitted(out.eval(), snapshots, {"step": list(range(len(REC["loss"]))), "mse": list(REC["loss"])})

P.fit = fit
cell = resolve(CellRequest(algo="dpo", domain="image", preset="standard", seed=0, domain_sets=tuple(sys.argv[3:])))
print(cell.domain_cfg.ref_lr, flush=True)
dom = cell.domain_cls(cell.domain_cfg, torch.device("cpu"))
seed_everything(stable_seed("prepare", cell.domain_cls.name, cell.domain_cfg.seed))
c = dom.cfg
class N(Progress):
    def note(self, m): print("NOTE", m, flush=True)
try:
    model, early = (lambda r: (r.model, r.early_state))(dom._train_reference(random.Random(c.seed), torch.Generator().manual_seed(c.seed), N()))
except Exception as e:
    print("FAILED", type(e).__name__, e, flush=True)
    torch.save({"rec": REC, "snaps": SNAPS}, sys.argv[2]); raise SystemExit(1)
sd = model.state_dict()
h = hashlib.sha256(b"".join(v.float().numpy().tobytes() for v in sd.values())).hexdigest()[:16]
print("hash", h, flush=True)
torch.save({"rec": REC, "snaps": SNAPS, "final": P.clone_state(model), "early": early}, sys.argv[2])

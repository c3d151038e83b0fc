"""Domain preparation machinery, written once: the reference's supervised training loop and state
cloning. Every domain's ``build`` trains its reference (and any auxiliary network) with :func:`fit`
and stores weights with :func:`clone_state`; the motion and multi-agent domains will too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.progress import Progress


@dataclass(frozen=True)
class FitConfig:
    """How a domain trains a network before any cell runs."""

    steps: int
    """Optimiser steps."""
    lr: float
    """Peak learning rate."""
    optimizer: Literal["adamw", "adam"] = "adamw"
    """AdamW (with ``weight_decay``) or Adam."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    """One-cycle (``warmup`` share of warm-up), cosine annealing to 0, or constant."""
    warmup: float = 0.1
    """The one-cycle schedule's warm-up share."""
    clip: float = 1.0
    """Gradient-norm clip."""
    ema: float | None = None
    """Decay of an exponential moving average of the weights (None: no EMA), warmed up as
    min(ema, (1 + step)/(10 + step))."""
    snapshots: tuple[int, ...] = ()
    """Steps after which the EMA's (else the model's) weights are kept (e.g. an early checkpoint)."""
    log_every: int = 50
    """Steps between training-curve points on the progress bar."""


@dataclass
class Fitted:
    model: nn.Module
    """The trained network (the EMA copy when ``FitConfig.ema`` is set), in eval mode."""
    snapshots: dict[int, dict[str, Tensor]]
    """Weights after each step of ``FitConfig.snapshots``."""


def _optimizer(model: nn.Module, cfg: FitConfig) -> tuple[torch.optim.Optimizer, object | None]:
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=cfg.warmup)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    else:
        sched = None
    return opt, sched


def fit(model: nn.Module, loss_at: Callable[[int], Tensor], cfg: FitConfig, progress: Progress, title: str,
        metric: str = "loss") -> Fitted:
    """Minimise ``loss_at(step)`` (a scalar, drawing its own batch) for ``cfg.steps`` steps:
    zero grads → backward → clip → step → schedule → EMA, with a progress task named ``title``."""
    opt, sched = _optimizer(model, cfg)
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema is not None else None
    snapshots: dict[int, dict[str, Tensor]] = {}
    model.train()
    with progress.task(title, cfg.steps) as task:
        for step in range(cfg.steps):
            loss = loss_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if sched is not None:
                sched.step()
            if ema is not None:
                decay = min(cfg.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(pm, 1 - decay)
            if step + 1 in cfg.snapshots:
                snapshots[step + 1] = clone_state(ema if ema is not None else model)
            task.advance()
            if step % cfg.log_every == 0:
                task.log(step, {metric: float(loss.detach())})
    out = ema if ema is not None else model
    return Fitted(out.eval(), snapshots)


def clone_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of a module's weights (what a domain's preparation state stores; it loads
    with ``torch.load(weights_only=True)``)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}

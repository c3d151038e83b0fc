"""Domain preparation machinery, written once: the reference's supervised training loop and state
cloning. Every domain's ``build`` trains its reference (and any auxiliary network) with :func:`fit`
and stores weights with :func:`clone_state`. The diffusion domains (image, motion) share the
reference's denoising fit (:func:`train_diffusion_reference`) and the offline pool's assembly from
behaviour policies and procedural sources (:func:`sample_pool_parts`, :func:`assemble_pool`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.api import Batch, Contexts, Policy, Samples
from benchmark.domain import OfflinePool, Oracle
from benchmark.policies.diffusion import DiffusionPolicy
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
    curve: dict[str, list[float]] = field(default_factory=dict)
    """The training curve: ``step`` and the loss (under its metric name) every ``FitConfig.log_every`` steps."""


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
    curve: dict[str, list[float]] = {"step": [], metric: []}
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
                curve["step"].append(step)
                curve[metric].append(float(loss.detach()))
                task.log(step, {metric: curve[metric][-1]})
    out = ema if ema is not None else model
    return Fitted(out.eval(), snapshots, curve)


def clone_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached CPU copy of a module's weights (what a domain's preparation state stores, the same
    wherever it was trained; it loads with ``torch.load(weights_only=True)``)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# diffusion domains (image, motion): the reference's training and the offline pool
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffusionReferenceConfig:
    """How a diffusion domain trains its reference on its behaviour mixture."""

    steps: int
    """Optimiser steps."""
    batch: int
    """Samples per step."""
    lr: float
    """Peak learning rate (one-cycle)."""
    ema: float
    """EMA decay; the EMA is the reference."""
    cfg_dropout: float
    """Share of prompts replaced by the null condition (classifier-free guidance training)."""
    early_fraction: float
    """The early-checkpoint behaviour policy is the EMA after this share of the steps."""
    max_error_ratio: float
    """The trained reference's denoising error must be at most this share of its untrained network's."""


class ReferenceNotLearned(RuntimeError):
    """A diffusion reference came out of training no better than its untrained network: the
    preparation stops and caches nothing (a board on it would measure nothing)."""


@dataclass
class DiffusionReference:
    """What :func:`train_diffusion_reference` returns."""

    model: nn.Module
    """The EMA denoiser (the reference), in eval mode."""
    early_state: dict[str, Tensor]
    """The early checkpoint's weights (a behaviour policy of the pool)."""
    report: dict[str, float | list[float]]
    """The training curve (``step``, ``mse``) and the learning check (``error``, ``untrained_error``,
    ``ratio``), kept in the preparation cache."""


CHECK_SAMPLES = 256
"""Training samples (the first ones) on which the learning check measures the denoising error."""


def denoising_error(policy: DiffusionPolicy, contexts: Contexts, data: Samples) -> float:
    """mean ‖ε − ε_θ(x_t, t, c)‖² of ``policy``'s denoiser (put in eval mode) on the first :data:`CHECK_SAMPLES`
    of (contexts, data), conditioned, with the same (t, ε) draws at every call (their own generator: the
    training's random stream is untouched)."""
    ctx, x = contexts[:CHECK_SAMPLES], data[:CHECK_SAMPLES]
    noise = policy.draw_noise(ctx, x, generator=torch.Generator().manual_seed(0))
    policy.denoiser.eval()
    with torch.no_grad():
        return float(policy.denoise_error(ctx, x, noise, drop=torch.zeros(len(x), dtype=torch.bool)).mean())


def train_diffusion_reference(policy: DiffusionPolicy, contexts: Contexts, data: Samples, cfg: DiffusionReferenceConfig,
                              generator: torch.Generator, progress: Progress, title: str) -> DiffusionReference:
    """Fit ``policy.denoiser`` on (contexts, data) with the denoising loss of ``policy`` (ε- or
    x̂₀-MSE at a uniform timestep) and condition dropout, then check that it learned: its denoising error
    must be at most ``cfg.max_error_ratio`` × the untrained network's (else :class:`ReferenceNotLearned`).
    Afterwards ``policy``'s denoiser is the EMA (the reference)."""
    n = len(data)
    early_at = max(1, round(cfg.steps * cfg.early_fraction))
    before = denoising_error(policy, contexts, data)  # the untrained network's

    def denoising_loss(step: int) -> Tensor:
        idx = torch.randint(0, n, (cfg.batch,), generator=generator)
        drop = torch.rand(cfg.batch, generator=generator) < cfg.cfg_dropout
        noise = policy.draw_noise(contexts[idx], data[idx], generator=generator)
        return policy.denoise_error(contexts[idx], data[idx], noise, drop=drop).mean()

    fit_cfg = FitConfig(cfg.steps, cfg.lr, ema=cfg.ema, snapshots=(early_at,), log_every=max(1, cfg.steps // 100))
    fitted = fit(policy.denoiser, denoising_loss, fit_cfg, progress, title, metric="mse")
    policy.denoiser = fitted.model
    error = denoising_error(policy, contexts, data)
    report = {**fitted.curve, "error": error, "untrained_error": before, "ratio": error / before}
    progress.note(f"{title}: denoising error {error:.4f} (untrained {before:.4f}, ratio {error / before:.2f})")
    if error > cfg.max_error_ratio * before:
        mse = fitted.curve["mse"]
        tenth = max(1, len(mse) // 10)
        raise ReferenceNotLearned(
            f"the reference did not learn: denoising error {error:.3f} against {before:.3f} untrained (ratio "
            f"{error / before:.2f} > {cfg.max_error_ratio}; training mse {sum(mse[:tenth]) / tenth:.3f} in its first "
            f"tenth, {sum(mse[-tenth:]) / tenth:.3f} in its last); nothing was cached. Rerun with another ref_lr or "
            "seed (--domain-set ref_lr=… or seed=…)")
    return DiffusionReference(fitted.model, fitted.snapshots[early_at], report)


@dataclass
class PoolPart:
    """Candidates of the offline pool from one generation step: ``samples`` attached to contexts by
    ``context_index``, each from the source ``source`` (an index into the pool's source names)."""

    samples: Samples
    context_index: Tensor
    source: Tensor


@torch.no_grad()
def sample_pool_parts(behaviours: Mapping[str, Policy], names: Sequence[str], contexts: Contexts,
                      candidates: Mapping[str, int], field: str, chunk: int, generator: torch.Generator,
                      progress: Progress, title: str) -> list[PoolPart]:
    """``candidates[name]`` samples per context of each behaviour policy (only the ``field`` sample
    tensor is kept: a pool sample carries no chain), sampled in chunks of ``chunk`` samples;
    ``names`` are the pool's source names (the index of each source)."""
    n = len(contexts)
    total = sum(candidates.get(name, 0) for name in behaviours)
    parts = []
    with progress.task(title, total * n) as task:
        for name, policy in behaviours.items():
            k = candidates.get(name, 0)
            if not k:
                continue
            step = max(1, chunk // k)
            drawn = Batch.cat([Batch({field: policy.sample(contexts[i : i + step], k, generator=generator)
                                      .tensors[field].cpu()}) for i in range(0, n, step)])
            parts.append(PoolPart(drawn, torch.arange(n).repeat_interleave(k), torch.full((n * k,), names.index(name))))
            task.advance(n * k)
    return parts


def assemble_pool(contexts: Contexts, parts: Sequence[PoolPart], names: Sequence[str], oracle: Oracle,
                  demo_source: str, demo_quantile: float) -> OfflinePool:
    """The offline pool of ``parts``, with the oracle's components; the demonstrations are the samples
    of ``demo_source`` at or above its ``demo_quantile`` of gold (the Diffusion-DRO expert set: the
    top of the reference's own samples)."""
    samples = Batch.cat([p.samples for p in parts])
    context_index = torch.cat([p.context_index for p in parts])
    source = torch.cat([p.source for p in parts])
    components = oracle.components(contexts[context_index], samples)
    gold = components @ oracle.weights.to(components.dtype)
    is_demo_source = source == list(names).index(demo_source)
    cut = torch.quantile(gold[is_demo_source], demo_quantile) if bool(is_demo_source.any()) else gold.max()
    return OfflinePool(contexts=contexts, samples=samples, context_index=context_index, source=source,
                       sources=list(names), components=components, demo=is_demo_source & (gold >= cut))

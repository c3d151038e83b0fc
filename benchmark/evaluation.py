"""Evaluation with the hidden oracle on held-out contexts (the runner's, never an algorithm's).

Common metrics of every cell (DESIGN §5):

- ``gold_reward``: mean oracle reward of the policy's samples on the evaluation contexts;
- ``win_rate``: P(policy sample ≻ reference sample) under the gold Bradley–Terry model,
  σ((g_π − g_ref)/T_oracle), paired by (context, sample index);
- ``kl_to_ref``: sample estimate E_π[log π − log π_ref] (k1; ``kl_k3_to_ref`` too);
- ``diversity`` and the domain's own metrics (from ``Oracle.metrics``);
- ``normalized_score`` = 100·(gold − lo)/(hi − lo), (lo, hi) from ``Domain.score_anchors``:
  by default the reference's gold reward and the best-of-N reference target.

The reference's evaluation samples and the target are computed once at preparation time and
cached with the domain (:func:`reference_statistics`).
"""

from __future__ import annotations

import math

import torch

from benchmark.api import Batch, Contexts, Policy, Samples
from benchmark.data import stable_seed
from benchmark.domain import Domain
from benchmark.objectives import kl_k1, kl_k3
from benchmark.progress import Progress


def _ctx_chunk(cfg_chunk: int, num: int) -> int:
    return max(1, cfg_chunk // max(num, 1))


@torch.no_grad()
def sample_chunked(
    policy: Policy, contexts: Contexts, num: int, generator: torch.Generator, chunk: int, progress: Progress,
    what: str,
) -> Samples:
    """``policy.sample`` over contexts in chunks, laid out like ``contexts.repeat(num)``."""
    c = _ctx_chunk(chunk, num)
    out = []
    with progress.task(what, len(contexts)) as task:
        for i in range(0, len(contexts), c):
            part = contexts[i : i + c]
            out.append(policy.sample(part, num, generator=generator).to("cpu"))
            task.advance(len(part))
    return Batch.cat(out)


@torch.no_grad()
def log_probs_chunked(
    policy: Policy, reference: Policy, contexts: Contexts, samples: Samples, generator: torch.Generator, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    lp, lr = [], []
    for i in range(0, len(samples), chunk):
        ctx, smp = contexts[i : i + chunk], samples[i : i + chunk]
        noise = policy.draw_noise(ctx, smp, generator=generator)
        lp.append(policy.log_prob(ctx, smp, noise=noise).float().cpu())
        lr.append(reference.log_prob(ctx, smp, noise=noise).float().cpu())
    return torch.cat(lp), torch.cat(lr)


@torch.no_grad()
def gold_chunked(domain: Domain, contexts: Contexts, samples: Samples, chunk: int) -> torch.Tensor:
    return torch.cat([
        domain.oracle.gold(contexts[i : i + chunk], samples[i : i + chunk]).float().cpu()
        for i in range(0, len(samples), chunk)
    ])


@torch.no_grad()
def reference_statistics(domain: Domain, progress: Progress) -> dict:
    """The reference's evaluation samples, their gold rewards and the best-of-N target."""
    cfg = domain.cfg
    ref = domain.reference.eval()
    k, n = cfg.eval_samples, max(cfg.best_of, cfg.eval_samples)
    gen = torch.Generator().manual_seed(stable_seed("reference-eval", domain.name, cfg.seed))
    ctx = domain.eval_contexts
    samples = sample_chunked(ref, ctx, n, gen, cfg.eval_batch, progress, f"{domain.name}: reference best-of-{n}")
    gold = gold_chunked(domain, ctx.repeat(n), samples, cfg.eval_batch).view(len(ctx), n)
    first_k = (torch.arange(len(ctx))[:, None] * n + torch.arange(k)[None, :]).reshape(-1)
    ref_samples = samples[first_k]
    ref_metrics = domain.oracle.metrics(ctx.repeat(k), ref_samples, k)
    return {
        "ref_gold": gold[:, :k].reshape(-1),
        "ref_gold_mean": float(gold[:, :k].mean()),
        "target": float(gold.max(dim=1).values.mean()),
        "ref_metrics": {key: float(v) for key, v in ref_metrics.items()},
    }


class Evaluator:
    """Scores a trained policy against the domain's oracle and cached reference statistics."""

    def __init__(self, domain: Domain, ref_stats: dict):
        self.domain = domain
        self.stats = ref_stats

    @torch.no_grad()
    def evaluate(self, policy: Policy, seed: int, progress: Progress | None = None) -> dict[str, float]:
        progress = progress or Progress()
        d, cfg = self.domain, self.domain.cfg
        policy.eval()
        k = cfg.eval_samples
        gen = torch.Generator().manual_seed(stable_seed("eval", d.name, seed))
        ctx = d.eval_contexts
        samples = sample_chunked(policy, ctx, k, gen, cfg.eval_batch, progress, "evaluate")
        ctx_rep = ctx.repeat(k)
        gold = gold_chunked(d, ctx_rep, samples, cfg.eval_batch)
        ref_gold = self.stats["ref_gold"]
        win = torch.sigmoid((gold - ref_gold) / d.oracle.temperature).mean()
        lp, lp_ref = log_probs_chunked(policy, d.reference, ctx_rep, samples, gen, cfg.eval_batch)
        lo, hi = d.score_anchors(self.stats["ref_gold_mean"], self.stats["target"])
        g = float(gold.mean())
        metrics = {
            "gold_reward": g,
            "gold_reward_std": float(gold.std()),
            "win_rate": float(win),
            "kl_to_ref": float(kl_k1(lp, lp_ref).mean()),
            "kl_k3_to_ref": float(kl_k3(lp, lp_ref).mean()),
            "normalized_score": 100.0 * (g - lo) / (hi - lo) if hi != lo else float("nan"),
            "reference_normalized_score": (100.0 * (self.stats["ref_gold_mean"] - lo) / (hi - lo) if hi != lo
                                           else float("nan")),
            "reference_gold_reward": self.stats["ref_gold_mean"],
            "target_gold_reward": self.stats["target"],
            "eval_samples": float(len(samples)),
        }
        for key, v in d.oracle.metrics(ctx_rep, samples, k).items():
            metrics[key] = float(v)
        for key, v in self.stats.get("ref_metrics", {}).items():
            metrics[f"reference/{key}"] = float(v)
        return metrics


CORE_METRICS = ("gold_reward", "win_rate", "kl_to_ref", "normalized_score")


def non_finite(metrics: dict[str, float]) -> list[str]:
    """Core metrics that are NaN or infinite (such a cell is marked failed)."""
    return [k for k in CORE_METRICS if not math.isfinite(metrics.get(k, float("nan")))]

"""What each stored metric means: one table, used by the CLI, the leaderboard and the docs.

A metric has a direction (``higher`` True/False, or None for a trade-off such as KL or
diversity, which is never marked "best"), a unit and a one-line meaning. ``headline`` metrics are
the columns of every table; ``accounting`` ones (budgets used, anchors, intervals) are shown
apart and never ranked. Metrics a domain adds (``Oracle.metrics``) need no entry: they are shown
without a direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SCORE_VERSION = 2
"""Version of the scoring definitions (stored with every cell as ``score_version``). 2: paired,
common-random-number evaluation on held-out contexts, one reference-relative ``normalized_score``
on every domain. Cells of another version are not mixed into a leaderboard."""


@dataclass(frozen=True)
class MetricInfo:
    name: str
    description: str
    higher: bool | None = None
    """True: higher is better; False: lower is better; None: a trade-off (never marked best)."""
    unit: str = ""
    headline: bool = False
    accounting: bool = False


_METRICS = [
    MetricInfo("normalized_score", "100·(gold − reference gold on the same draws)/(best-of-N target − reference "
               "mean); 0 = the reference, 100 = its best-of-N under the oracle", True, "points", headline=True),
    MetricInfo("gold_reward", "mean hidden-oracle reward of the policy's samples on held-out contexts", True,
               "reward", headline=True),
    MetricInfo("win_rate", "P(policy sample ≻ reference sample on the same context and draw) under the gold "
               "Bradley–Terry model", True, "probability", headline=True),
    MetricInfo("kl_to_ref", "E_π[log π − log π_ref] on the policy's samples (k1); only where log_prob is an "
               "exact likelihood", None, "nats", headline=True),
    MetricInfo("elbo_gap", "s·E_π[mse_ref − mse_π] of the diffusion ELBO surrogate (not a KL: it can be "
               "negative); domains without exact likelihoods", None, "surrogate nats", headline=True),
    MetricInfo("diversity", "the domain's within-context diversity of samples", None, "", headline=True),
    MetricInfo("feedback_used", "queries charged to the feedback channel", None, "queries", headline=True,
               accounting=True),
    MetricInfo("kl_k3_to_ref", "Schulman's k3 estimate of KL(π‖π_ref) on the policy's samples", None, "nats"),
    MetricInfo("gold_gain", "paired gold difference, policy − reference, mean over held-out contexts", True,
               "reward"),
    MetricInfo("gold_gain_ci", "95% interval half-width of gold_gain over contexts", None, "reward",
               accounting=True),
    MetricInfo("normalized_score_ci", "95% interval half-width of normalized_score over contexts", None, "points",
               accounting=True),
    MetricInfo("win_rate_ci", "95% interval half-width of win_rate over contexts", None, "probability",
               accounting=True),
    MetricInfo("reference_gold_reward", "the reference's gold reward on the same contexts and draws", None,
               "reward", accounting=True),
    MetricInfo("target_gold_reward", "best-of-N reference gold reward (the 100 of normalized_score)", None,
               "reward", accounting=True),
    MetricInfo("reference_mean_gold_reward", "the reference's mean gold over all N best-of-N draws (the 0 of "
               "the score's scale)", None, "reward", accounting=True),
    MetricInfo("gold_reward_std", "standard deviation of the policy's per-sample gold reward", None, "reward",
               accounting=True),
    MetricInfo("eval_contexts", "held-out evaluation contexts", None, "", accounting=True),
    MetricInfo("eval_samples", "evaluation samples of the policy", None, "", accounting=True),
    MetricInfo("train_steps", "optimiser steps taken", None, "steps", accounting=True),
    MetricInfo("online_samples_used", "samples drawn from policies during training", None, "samples",
               accounting=True),
    MetricInfo("judge_queries", "items the free AI judge was asked about", None, "items", accounting=True),
    MetricInfo("wall_s", "wall time of the cell", False, "s", accounting=True),
    MetricInfo("score_version", "version of the scoring definitions", None, "", accounting=True),
]

METRICS: dict[str, MetricInfo] = {m.name: m for m in _METRICS}
HEADLINE: tuple[str, ...] = tuple(m.name for m in _METRICS if m.headline)
ACCOUNTING: frozenset[str] = frozenset(m.name for m in _METRICS if m.accounting)
HIGHER_IS_BETTER: dict[str, bool] = {m.name: m.higher for m in _METRICS if m.higher is not None and m.headline}
NULL_VALUES: dict[str, float] = {"normalized_score": 0.0, "win_rate": 0.5, "gold_gain": 0.0}
"""What the untrained reference scores under paired evaluation (exactly)."""

#: prefixes of derived metrics that are not ranked: the reference's own values on the same draws,
#: the in-distribution split, the offline data's statistics
SECONDARY_PREFIXES = ("reference/", "indist/", "data/", "train/")


def is_accounting(name: str) -> bool:
    return name in ACCOUNTING or name.startswith("data/")


def info(name: str) -> MetricInfo:
    """The table's entry, or a direction-less one for a domain's own metric."""
    return METRICS.get(name, MetricInfo(name, "domain metric"))


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (as FID):
    ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2(Σ_a^½ Σ_b Σ_a^½)^½) (Heusel et al. 2017); shared by the image and
    motion domains' FID metrics."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    eye = 1e-6 * torch.eye(ca.shape[0], dtype=torch.float64)
    ca, cb = ca + eye, cb + eye
    va, qa = torch.linalg.eigh(ca)
    sa = qa @ torch.diag(va.clamp(min=0).sqrt()) @ qa.T
    cross = torch.linalg.eigvalsh(sa @ cb @ sa).clamp(min=0).sqrt().sum()
    return max(0.0, float((mu_a - mu_b).pow(2).sum() + torch.trace(ca) + torch.trace(cb) - 2 * cross))

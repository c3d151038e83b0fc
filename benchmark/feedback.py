"""Synthetic feedback: annotators, rater populations and the budgeted feedback channel.

Labels come from the hidden oracle through *raters*. A rater has its own weights on the oracle's
reward components (rater populations after Monti et al. 2019, "All You Need is Ratings":
raters are drawn from a few clusters, each with its own taste), and answers with the B-Pref
teacher model (Lee et al. 2021, "B-Pref"): Bradley–Terry noise (``stochastic``),
``mistake`` flips, ``myopic`` discounting of early steps, ``skip`` of uninformative queries and
``equal`` (tie) labels.

Ours: B-Pref states its thresholds relative to the average segment return; to make one
condition fit every domain, temperatures and the equal threshold here are in units of the gold
reward's standard deviation over the domain's offline pool (``scale``), and ``skip`` is a
quantile: a query is skipped when both items lie in the pool's bottom ``skip`` fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.api import Contexts, FeedbackBudgetExceeded, FeedbackChannel, Judge, Samples
from benchmark.domain import Oracle


@dataclass(frozen=True)
class AnnotatorConfig:
    """One rater's answering model (B-Pref teacher faults). Units: see module docstring."""

    temperature: float = 0.3
    """Bradley–Terry temperature (× scale); 0 = the deterministic "oracle" teacher."""
    mistake: float = 0.0
    """Probability of flipping a label."""
    myopic_gamma: float = 1.0
    """Discount of earlier steps (only where the oracle has per-step rewards)."""
    skip: float = 0.0
    """Skip a query when both items are in the pool's bottom ``skip`` quantile."""
    equal: float = 0.0
    """Label a tie (0.5) when |Δutility| < equal × scale."""


@dataclass(frozen=True)
class RaterPopulationConfig:
    """Clusters of synthetic raters with different weights on the oracle's components."""

    n_raters: int = 12
    n_clusters: int = 3
    dispersion: float = 0.1
    """Relative spread of cluster weights around the gold weights (log-normal scale)."""
    flip: float = 0.0
    """Probability that a cluster inverts its weight on a (non-first) component."""
    within: float = 0.05
    """Spread of individual raters around their cluster."""
    seed: int = 0


@dataclass
class RaterPopulation:
    """Materialised raters: ``weights [R, K]``, ``cluster [R]``."""

    weights: Tensor
    cluster: Tensor
    cluster_weights: Tensor

    @staticmethod
    def build(gold_weights: Tensor, cfg: RaterPopulationConfig) -> RaterPopulation:
        g = torch.Generator().manual_seed(10_007 + cfg.seed)
        w = gold_weights.to(torch.float32)
        k = w.numel()
        c = max(cfg.n_clusters, 1)
        log_scale = cfg.dispersion * torch.randn(c, k, generator=g)
        signs = torch.ones(c, k)
        if cfg.flip > 0 and k > 1:
            flips = torch.rand(c, k, generator=g) < cfg.flip
            flips[:, 0] = False  # the first component (e.g. correctness) keeps its sign
            signs[flips] = -1.0
        cluster_w = w * signs * torch.exp(log_scale)
        # unequal cluster shares; raters are assigned in proportion
        probs = torch.rand(c, generator=g) + 0.5
        cluster = torch.multinomial(probs / probs.sum(), cfg.n_raters, replacement=True, generator=g)
        rater_w = cluster_w[cluster] * torch.exp(cfg.within * torch.randn(cfg.n_raters, k, generator=g))
        return RaterPopulation(rater_w, cluster, cluster_w)

    def __len__(self) -> int:
        return int(self.weights.shape[0])


def kmeans(x: Tensor, k: int, seed: int = 0, iters: int = 100) -> Tensor:
    """Lloyd's k-means on the rows of ``x`` with k-means++ seeding from ``seed``; cluster index per row."""
    g = torch.Generator().manual_seed(seed)
    x = x.to(torch.float64)
    k = min(k, x.shape[0])
    centres = x[torch.randint(x.shape[0], (1,), generator=g)]
    while centres.shape[0] < k:  # k-means++: the next centre far from the chosen ones
        d2 = torch.cdist(x, centres).min(dim=1).values ** 2
        centres = torch.cat([centres, x[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
    labels = torch.cdist(x, centres).argmin(dim=1)
    for _ in range(iters):
        centres = torch.stack([x[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(k)])
        new = torch.cdist(x, centres).argmin(dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def synthesize_raters(base: RaterPopulation, judgments: Tensor, n_clusters: int, n_raters: int,
                      seed: int = 0) -> RaterPopulation:
    """Synthetic raters by clustering (Monti et al. 2019): cluster the base raters by their
    judgments ``[R, P]`` (standardised utilities of P probe items), then draw ``n_raters`` raters,
    a cluster with probability ∝ its size and weights from N(μ_c, Σ_c) of that cluster's raters
    (Σ_c shrunk towards its diagonal, plus a small ridge, so that a cluster of one rater is valid)."""
    z = (judgments - judgments.mean(1, keepdim=True)) / judgments.std(1, keepdim=True).clamp_min(1e-8)
    labels = kmeans(z, n_clusters, seed)
    g = torch.Generator().manual_seed(seed + 1)
    w = base.weights.to(torch.float64)
    k = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=k).to(torch.float64)
    cluster = torch.multinomial(sizes / sizes.sum(), n_raters, replacement=True, generator=g)
    means, out = [], torch.empty(n_raters, w.shape[1], dtype=torch.float64)
    for c in range(k):
        members = w[labels == c]
        mu = members.mean(0)
        cov = (torch.atleast_2d(torch.cov(members.T)) if len(members) > 1
               else torch.zeros(w.shape[1], w.shape[1], dtype=torch.float64))
        cov = 0.5 * cov + 0.5 * torch.diag(torch.diag(cov)) + 1e-6 * torch.eye(w.shape[1], dtype=torch.float64)
        means.append(mu)
        idx = (cluster == c).nonzero().flatten()
        if len(idx):
            chol = torch.linalg.cholesky(cov)
            out[idx] = mu + torch.randn(len(idx), w.shape[1], generator=g, dtype=torch.float64) @ chol.T
    return RaterPopulation(out.to(torch.float32), cluster, torch.stack(means).to(torch.float32))


@dataclass
class UtilityScale:
    """Pool statistics that give the annotator's units a meaning in every domain."""

    mean: float
    std: float
    skip_threshold: float

    @staticmethod
    def from_gold(gold: Tensor, skip_quantile: float) -> UtilityScale:
        gold = gold.to(torch.float32)
        std = float(gold.std()) if gold.numel() > 1 else 1.0
        skip = float(torch.quantile(gold, skip_quantile)) if skip_quantile > 0 else -float("inf")
        return UtilityScale(float(gold.mean()), max(std, 1e-6), skip)


def rater_utility(
    components: Tensor, raters: Tensor, population: RaterPopulation, step_rewards: Tensor | None,
    annot: AnnotatorConfig,
) -> Tensor:
    """What each rater thinks an item is worth. Myopic raters (γ<1) with per-step rewards use
    Σ_t γ^{T-1-t} r_t of the gold step rewards instead (B-Pref's myopic teacher)."""
    if step_rewards is not None and annot.myopic_gamma < 1.0:
        t = step_rewards.shape[1]
        disc = annot.myopic_gamma ** torch.arange(t - 1, -1, -1, dtype=torch.float32)
        return step_rewards.to(torch.float32) @ disc
    return (components.to(torch.float32) * population.weights[raters]).sum(-1)


def gold_utility(components: Tensor, weights: Tensor) -> Tensor:
    return components.to(torch.float32) @ weights.to(torch.float32)


def label_pairs(
    u_a: Tensor, u_b: Tensor, gold_a: Tensor, gold_b: Tensor, annot: AnnotatorConfig, scale: UtilityScale,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """B-Pref labels from rater utilities: (label [B] with 1 = a ≻ b, 0.5 tie, NaN skipped;
    strength [B] = the probability, under the rater's own answering model (Bradley–Terry noise
    and mistakes), of the label actually given — below 0.5 when the rater gave the less likely
    answer; 0.5 for a tie, NaN for a skip)."""
    diff = (u_a - u_b) / scale.std
    if annot.temperature > 0:
        p = torch.sigmoid(diff / annot.temperature)
        label = (torch.rand(p.shape, generator=generator) < p).to(torch.float32)
    else:
        p = (diff > 0).to(torch.float32) + 0.5 * (diff == 0).to(torch.float32)
        label = (diff > 0).to(torch.float32)
        label[diff == 0] = 0.5
    if annot.mistake > 0:
        flip = torch.rand(label.shape, generator=generator) < annot.mistake
        label = torch.where(flip & (label != 0.5), 1.0 - label, label)
        p = (1 - annot.mistake) * p + annot.mistake * (1 - p)
    strength = torch.where(label == 1, p, 1 - p)
    if annot.equal > 0:
        label = torch.where(diff.abs() < annot.equal, torch.full_like(label, 0.5), label)
    strength = torch.where(label == 0.5, torch.full_like(strength, 0.5), strength)
    if annot.skip > 0:
        skipped = torch.maximum(gold_a, gold_b) < scale.skip_threshold
        label = torch.where(skipped, torch.full_like(label, float("nan")), label)
        strength = torch.where(skipped, torch.full_like(strength, float("nan")), strength)
    return label, strength


class InvertedJudge:
    """A judge whose every answer is reversed (the label-flipped check of learning direction)."""

    def __init__(self, judge: Judge):
        self._judge = judge

    def score(self, contexts: Contexts, samples: Samples) -> Tensor:
        return -self._judge.score(contexts, samples)

    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        return 1 - self._judge.compare(contexts, a, b)


class RaterChannel(FeedbackChannel):
    """The budgeted feedback channel of one cell: oracle → rater population → labels."""

    def __init__(
        self, oracle: Oracle, population: RaterPopulation, annot: AnnotatorConfig, scale: UtilityScale,
        budget: int, seed: int, device: torch.device | str = "cpu", invert: bool = False,
    ):
        self._oracle = oracle
        self._population = population
        self._annot = annot
        self._scale = scale
        self._gen = torch.Generator().manual_seed(7_919 * (seed + 1))
        self._device = torch.device(device)
        self._invert = invert
        self._budget = int(budget)
        self._used = 0
        self.calls = {"compare": 0, "rate": 0, "rank": 0}

    @property
    def budget(self) -> int:
        return self._budget

    @property
    def used(self) -> int:
        return self._used

    @staticmethod
    def _same_length(what: str, contexts: Contexts, *parts: Samples) -> int:
        """The batch size B of a query: every part must have exactly B items (no broadcasting,
        which would answer many items for the price of one)."""
        n = len(contexts)
        lengths = [len(p) for p in parts]
        if any(m != n for m in lengths) or n == 0:
            raise ValueError(f"{what} needs one context per item: got {n} contexts and samples of lengths "
                             f"{lengths}; repeat the contexts (Batch.repeat) to match")
        return n

    def _charge(self, n: int, what: str) -> None:
        if self._used + n > self._budget:
            raise FeedbackBudgetExceeded(
                f"feedback budget exceeded: {what} of {n} queries with {self.remaining} of {self._budget} "
                "left; ask for fewer labels or raise the preset/condition's feedback budget"
            )
        self._used += n
        self.calls[what] += 1

    def _raters(self, n: int) -> Tensor:
        return torch.randint(len(self._population), (n,), generator=self._gen)

    @torch.no_grad()
    def _utility(self, contexts: Contexts, samples: Samples, raters: Tensor) -> tuple[Tensor, Tensor]:
        comps = self._oracle.components(contexts, samples).cpu()
        steps = self._oracle.step_rewards(contexts, samples)
        steps = steps.cpu() if steps is not None else None
        gold = gold_utility(comps, self._oracle.weights.cpu())
        return rater_utility(comps, raters, self._population, steps, self._annot), gold

    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        n = self._same_length("compare", contexts, a, b)
        self._charge(n, "compare")
        raters = self._raters(n)
        u_a, g_a = self._utility(contexts, a, raters)
        u_b, g_b = self._utility(contexts, b, raters)
        label, _ = label_pairs(u_a, u_b, g_a, g_b, self._annot, self._scale, self._gen)
        return (1 - label if self._invert else label).to(self._device)

    def rate(self, contexts: Contexts, samples: Samples) -> Tensor:
        n = self._same_length("rate", contexts, samples)
        self._charge(n, "rate")
        u, _ = self._utility(contexts, samples, self._raters(n))
        z = (u - self._scale.mean) / self._scale.std
        z = z + self._annot.temperature * torch.randn(z.shape, generator=self._gen)
        return (-z if self._invert else z).to(self._device)

    def rank(self, contexts: Contexts, candidates: Sequence[Samples]) -> Tensor:
        k = len(candidates)
        if k < 2:
            raise ValueError(f"rank needs at least 2 candidates per context, got {k}")
        n = self._same_length("rank", contexts, *candidates)
        self._charge(n * (k - 1), "rank")
        raters = self._raters(n)
        u = torch.stack([self._utility(contexts, c, raters)[0] for c in candidates], dim=1) / self._scale.std
        if self._annot.temperature > 0:  # Plackett–Luce via Gumbel perturbation
            gumbel = -torch.log(-torch.log(torch.rand(u.shape, generator=self._gen).clamp_min(1e-12)))
            u = u / self._annot.temperature + gumbel
        order = torch.argsort(u, dim=1, descending=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(k).expand(n, k).contiguous())
        return (k - 1 - ranks if self._invert else ranks).to(self._device)

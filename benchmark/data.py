"""Offline data: from a domain's unlabelled pool to the labelled data of one condition.

The pool (candidate samples from several behaviour policies, with the oracle's hidden view of
each) is built once per domain; each condition relabels it through its rater population. The
data seed depends on (domain, condition) only — not on the cell's seed — so, as with D4RL, every
training seed sees the same dataset and seed variance measures training alone.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from benchmark.api import Demonstrations, OfflineData, PreferencePairs, SingleFeedback
from benchmark.conditions import Condition
from benchmark.domain import OfflinePool
from benchmark.feedback import RaterPopulation, UtilityScale, gold_utility, label_pairs, rater_utility


def stable_seed(*parts: object) -> int:
    """A seed from strings/ints that is the same in every process and Python version."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


def pool_scale(pool: OfflinePool, weights: Tensor, condition: Condition) -> UtilityScale:
    return UtilityScale.from_gold(gold_utility(pool.components, weights), condition.annotator.skip)


def _keep_mask(pool: OfflinePool, gold: Tensor, condition: Condition, g: torch.Generator) -> Tensor:
    keep = torch.ones(len(pool.samples), dtype=torch.bool)
    if condition.coverage_drop > 0:
        cut = torch.quantile(gold, 1.0 - condition.coverage_drop)
        keep &= gold < cut
    if condition.data_fraction < 1.0:
        n_ctx = len(pool.contexts)
        kept_ctx = torch.randperm(n_ctx, generator=g)[: max(1, round(n_ctx * condition.data_fraction))]
        ctx_mask = torch.zeros(n_ctx, dtype=torch.bool)
        ctx_mask[kept_ctx] = True
        keep &= ctx_mask[pool.context_index]
    return keep


def _pair_indices(pool: OfflinePool, keep: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Disjoint random pairs among each context's kept candidates (a shuffled round-robin)."""
    firsts, seconds = [], []
    idx_all = torch.nonzero(keep).flatten()
    ctx = pool.context_index[idx_all]
    order = torch.argsort(ctx * 1_000_003 + torch.randperm(len(idx_all), generator=g), stable=True)
    idx_sorted, ctx_sorted = idx_all[order], ctx[order]
    _, counts = torch.unique_consecutive(ctx_sorted, return_counts=True)
    start = 0
    for c in counts.tolist():
        members = idx_sorted[start : start + c]
        start += c
        for i in range(0, c - 1, 2):
            firsts.append(int(members[i]))
            seconds.append(int(members[i + 1]))
    return torch.tensor(firsts, dtype=torch.long), torch.tensor(seconds, dtype=torch.long)


def make_offline_data(
    pool: OfflinePool, weights: Tensor, population: RaterPopulation, condition: Condition, domain: str
) -> OfflineData:
    """Label ``pool`` under ``condition``: preference pairs, thumbs, demonstrations."""
    g = torch.Generator().manual_seed(stable_seed("offline", domain, condition.name))
    gold = gold_utility(pool.components, weights)
    scale = UtilityScale.from_gold(gold, condition.annotator.skip)
    keep = _keep_mask(pool, gold, condition, g)
    ctx_of = pool.context_index

    # preference pairs ---------------------------------------------------------------------
    a, b = _pair_indices(pool, keep, g)
    raters = torch.randint(len(population), (len(a),), generator=g)
    steps = pool.step_rewards
    u_a = rater_utility(pool.components[a], raters, population, None if steps is None else steps[a],
                        condition.annotator)
    u_b = rater_utility(pool.components[b], raters, population, None if steps is None else steps[b],
                        condition.annotator)
    label, strength = label_pairs(u_a, u_b, gold[a], gold[b], condition.annotator, scale, g)
    decided = (label == 0) | (label == 1)  # ties and skips carry no pair
    a, b, label, strength, raters = a[decided], b[decided], label[decided], strength[decided], raters[decided]
    chosen = torch.where(label == 1, a, b)
    rejected = torch.where(label == 1, b, a)
    pairs = PreferencePairs(
        contexts=pool.contexts[ctx_of[chosen]],
        chosen=pool.samples[chosen],
        rejected=pool.samples[rejected],
        strength=strength,
        rater=raters,
        source_chosen=pool.source[chosen],
        source_rejected=pool.source[rejected],
    )

    # single-sample thumbs -----------------------------------------------------------------
    single_idx = torch.nonzero(keep).flatten()
    s_raters = torch.randint(len(population), (len(single_idx),), generator=g)
    u = rater_utility(pool.components[single_idx], s_raters, population,
                      None if steps is None else steps[single_idx], condition.annotator)
    # a rater's neutral point: the median utility they would assign over the whole pool
    all_u = (pool.components.to(torch.float32) @ population.weights.T)  # [M, R]
    neutral = all_u.median(dim=0).values[s_raters]
    score = (u - neutral) / scale.std
    if condition.annotator.temperature > 0:
        score = score + condition.annotator.temperature * torch.randn(score.shape, generator=g)
    thumbs = (score > 0).to(torch.float32)
    if condition.annotator.mistake > 0:
        flip = torch.rand(thumbs.shape, generator=g) < condition.annotator.mistake
        thumbs = torch.where(flip, 1 - thumbs, thumbs)
    singles = SingleFeedback(
        contexts=pool.contexts[ctx_of[single_idx]], samples=pool.samples[single_idx], label=thumbs,
        score=score, rater=s_raters, source=pool.source[single_idx],
    )

    # demonstrations -----------------------------------------------------------------------
    demo_idx = torch.nonzero(keep & pool.demo.to(torch.bool)).flatten()
    if len(demo_idx) == 0:  # partial coverage may remove every demo: keep the best survivors
        kept = torch.nonzero(keep).flatten()
        demo_idx = kept[torch.argsort(gold[kept], descending=True)[: max(1, len(kept) // 10)]]
    demos = Demonstrations(
        contexts=pool.contexts[ctx_of[demo_idx]], samples=pool.samples[demo_idx], source=pool.source[demo_idx]
    )

    trajectories = None
    if pool.trajectories is not None:  # offline PbRL sees no rewards
        trajectories = {k: v for k, v in pool.trajectories.items() if k != "rewards"}
    return OfflineData(pairs=pairs, singles=singles, demos=demos, sources=list(pool.sources),
                       trajectories=trajectories)

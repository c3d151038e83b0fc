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

from benchmark.api import Batch, Demonstrations, OfflineData, PreferencePairs, SingleFeedback
from benchmark.conditions import Condition
from benchmark.domain import OfflinePool
from benchmark.feedback import RaterPopulation, UtilityScale, gold_utility, label_pairs, rater_utility

#: trajectory fields that are rewards or derived from them (success flags, the behaviour policy's
#: quality label, the D4RL anchor returns): never handed to algorithms
REWARD_DERIVED = frozenset({"rewards", "infos/success", "quality", "qualities", "ref_scores"})


def stable_seed(*parts: object) -> int:
    """A seed from strings/ints that is the same in every process and Python version."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


def pool_scale(pool: OfflinePool, weights: Tensor, condition: Condition) -> UtilityScale:
    return UtilityScale.from_gold(gold_utility(pool.components, weights), condition.annotator.skip)


def condition_mismatch(pool: OfflinePool, condition: Condition, domain: str) -> str | None:
    """Why ``condition`` cannot apply to this pool (its cells are n/a, with the reason), or None."""
    if condition.pool_part and condition.pool_part not in (pool.parts or []):
        have = ", ".join(pool.parts) if pool.parts else "none"
        return (f"condition {condition.name} keeps pool part {condition.pool_part!r}; "
                f"domain {domain}'s pool parts: {have}")
    return None


def _keep_mask(pool: OfflinePool, gold: Tensor, condition: Condition, g: torch.Generator) -> Tensor:
    keep = torch.ones(len(pool.samples), dtype=torch.bool)
    if condition.pool_part:
        if pool.parts is None or pool.part is None or condition.pool_part not in pool.parts:
            raise ValueError(condition_mismatch(pool, condition, "this"))
        keep &= pool.part == pool.parts.index(condition.pool_part)
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


def sample_keys(samples: Batch) -> list[bytes]:
    """A content key per sample (all tensor fields): equal keys mean identical samples."""
    rows = [t.detach().cpu().contiguous().reshape(len(samples), -1) for _, t in sorted(samples.tensors.items())]
    keys = []
    for i in range(len(samples)):
        h = hashlib.sha1()
        for r in rows:
            h.update(r[i].numpy().tobytes())
        keys.append(h.digest())
    return keys


def _pair_indices(pool: OfflinePool, keep: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Disjoint random pairs among each context's kept, *distinct* candidates (a shuffled
    round-robin; a candidate identical to an earlier one of its context is not paired, so no pair
    has the same sample on both sides)."""
    firsts, seconds = [], []
    idx_all = torch.nonzero(keep).flatten()
    ctx = pool.context_index[idx_all]
    order = torch.argsort(ctx * 1_000_003 + torch.randperm(len(idx_all), generator=g), stable=True)
    idx_sorted, ctx_sorted = idx_all[order], ctx[order]
    keys = sample_keys(pool.samples[idx_sorted]) if len(idx_sorted) else []
    _, counts = torch.unique_consecutive(ctx_sorted, return_counts=True)
    start = 0
    for c in counts.tolist():
        seen: set[bytes] = set()
        members = []
        for j in range(start, start + c):
            if keys[j] not in seen:
                seen.add(keys[j])
                members.append(int(idx_sorted[j]))
        start += c
        for i in range(0, len(members) - 1, 2):
            firsts.append(members[i])
            seconds.append(members[i + 1])
    return torch.tensor(firsts, dtype=torch.long), torch.tensor(seconds, dtype=torch.long)


def _pairs(pool: OfflinePool, gold: Tensor, keep: Tensor, population: RaterPopulation, condition: Condition,
           scale: UtilityScale, g: torch.Generator) -> tuple[PreferencePairs, dict[str, float]]:
    """Labelled preference pairs and their statistics (the runner's, never an algorithm's)."""
    a, b = _pair_indices(pool, keep, g)
    raters = torch.randint(len(population), (len(a),), generator=g)
    steps = pool.step_rewards
    u_a = rater_utility(pool.components[a], raters, population, None if steps is None else steps[a],
                        condition.annotator)
    u_b = rater_utility(pool.components[b], raters, population, None if steps is None else steps[b],
                        condition.annotator)
    label, strength = label_pairs(u_a, u_b, gold[a], gold[b], condition.annotator, scale, g)
    tied = (gold[a] - gold[b]).abs() <= 1e-6
    decided = (label == 0) | (label == 1)  # ties and skips carry no pair
    a, b, label, strength, raters = a[decided], b[decided], label[decided], strength[decided], raters[decided]
    if condition.invert:
        label, strength = 1 - label, 1 - strength
    chosen = torch.where(label == 1, a, b)
    rejected = torch.where(label == 1, b, a)
    ctx_of = pool.context_index
    pairs = PreferencePairs(
        contexts=pool.contexts[ctx_of[chosen]], chosen=pool.samples[chosen], rejected=pool.samples[rejected],
        strength=strength, rater=raters, source_chosen=pool.source[chosen], source_rejected=pool.source[rejected],
    )
    untied = gold[chosen] != gold[rejected]
    stats = {"data/pairs": float(len(chosen)), "data/candidate_pairs": float(len(tied)),
             "data/tied_gold_share": float(tied.float().mean()) if len(tied) else 0.0}
    if bool(untied.any()):
        stats["data/label_accuracy"] = float((gold[chosen] > gold[rejected])[untied].float().mean())
    return pairs, stats


def _singles(pool: OfflinePool, keep: Tensor, population: RaterPopulation, condition: Condition,
             scale: UtilityScale, g: torch.Generator) -> SingleFeedback:
    """Single-sample thumbs: the rater's score against their own median over the pool."""
    single_idx = torch.nonzero(keep).flatten()
    s_raters = torch.randint(len(population), (len(single_idx),), generator=g)
    steps = pool.step_rewards
    u = rater_utility(pool.components[single_idx], s_raters, population,
                      None if steps is None else steps[single_idx], condition.annotator)
    all_u = (pool.components.to(torch.float32) @ population.weights.T)  # [M, R]
    neutral = all_u.median(dim=0).values[s_raters]
    score = (u - neutral) / scale.std
    if condition.annotator.temperature > 0:
        score = score + condition.annotator.temperature * torch.randn(score.shape, generator=g)
    thumbs = (score > 0).to(torch.float32)
    if condition.annotator.mistake > 0:
        flip = torch.rand(thumbs.shape, generator=g) < condition.annotator.mistake
        thumbs = torch.where(flip, 1 - thumbs, thumbs)
    if condition.invert:
        thumbs, score = 1 - thumbs, -score
    ctx_of = pool.context_index
    return SingleFeedback(contexts=pool.contexts[ctx_of[single_idx]], samples=pool.samples[single_idx],
                          label=thumbs, score=score, rater=s_raters, source=pool.source[single_idx])


def _demos(pool: OfflinePool, gold: Tensor, keep: Tensor, condition: Condition) -> Demonstrations:
    """The pool's demonstrations (the worst samples, as many, when labels are inverted)."""
    demo_idx = torch.nonzero(keep & pool.demo.to(torch.bool)).flatten()
    kept = torch.nonzero(keep).flatten()
    if len(demo_idx) == 0:  # partial coverage may remove every demo: keep the best survivors
        demo_idx = kept[torch.argsort(gold[kept], descending=True)[: max(1, len(kept) // 10)]]
    if condition.invert:
        demo_idx = kept[torch.argsort(gold[kept])[: len(demo_idx)]]
    ctx_of = pool.context_index
    return Demonstrations(contexts=pool.contexts[ctx_of[demo_idx]], samples=pool.samples[demo_idx],
                          source=pool.source[demo_idx])


def build_offline_data(
    pool: OfflinePool, weights: Tensor, population: RaterPopulation, condition: Condition, domain: str
) -> tuple[OfflineData, dict[str, float]]:
    """Label ``pool`` under ``condition``: preference pairs, thumbs, demonstrations; and the
    data's statistics (pairs, the share of candidate pairs tied under the gold reward, the share
    of labels that agree with the gold order), stored with each cell as ``data/*``."""
    # a flipped condition relabels the very same data (its seed is its unflipped name's)
    g = torch.Generator().manual_seed(stable_seed("offline", domain, condition.name.removesuffix("+flipped")))
    gold = gold_utility(pool.components, weights)
    scale = UtilityScale.from_gold(gold, condition.annotator.skip)
    keep = _keep_mask(pool, gold, condition, g)
    pairs, stats = _pairs(pool, gold, keep, population, condition, scale, g)
    singles = _singles(pool, keep, population, condition, scale, g)
    demos = _demos(pool, gold, keep, condition)
    trajectories = None
    if pool.trajectories is not None:  # offline PbRL sees no rewards, nor anything derived from them
        trajectories = {k: v for k, v in pool.trajectories.items() if k not in REWARD_DERIVED}
    data = OfflineData(pairs=pairs, singles=singles, demos=demos, sources=list(pool.sources),
                       trajectories=trajectories)
    return data, stats


def make_offline_data(
    pool: OfflinePool, weights: Tensor, population: RaterPopulation, condition: Condition, domain: str
) -> OfflineData:
    """The labelled offline data of ``condition`` (see :func:`build_offline_data`)."""
    return build_offline_data(pool, weights, population, condition, domain)[0]

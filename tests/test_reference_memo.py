"""The reference memo (benchmark.training.ReferenceMemo): offline pairs' reference log-probs,
computed once per pair, equal to computing them every step."""

from __future__ import annotations

import torch

from benchmark.data import build_offline_data
from benchmark.feedback import RaterPopulation
from benchmark.progress import Progress
from benchmark.registry import get_condition
from benchmark.runner import CellRequest, prepare_domain, resolve
from benchmark.training import ReferenceMemo, pair_logps


def test_the_memo_gives_each_pairs_reference_terms_and_computes_them_once(cache) -> None:
    cell = resolve(CellRequest("dpo", "text", preset="smoke"))
    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    cond = get_condition("default")
    population = RaterPopulation.build(domain.oracle.weights, cond.raters)
    pairs = build_offline_data(domain.pool, domain.oracle.weights, population, cond, domain.name)[0].pairs
    policy, reference = domain.make_policy(), domain.reference
    with torch.no_grad():  # a policy unlike the reference: its terms and the reference's cannot be swapped
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    sizes: list[int] = []
    log_prob = reference.log_prob
    reference.log_prob = lambda c, s, noise=None: sizes.append(len(s)) or log_prob(c, s, noise=noise)
    memo, g = ReferenceMemo(len(pairs)), torch.Generator().manual_seed(0)
    batches = [([3, 1, 4, 5], [4, 4]), ([5, 9, 2, 6, 1], [3, 3]), ([6, 5, 3], [])]  # (pairs, reference calls)
    try:
        for ids, expected_calls in batches:
            idx = torch.tensor(ids)
            b = pairs.select(idx)
            sizes.clear()
            remembered = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected, g, memo, idx)
            assert sizes == expected_calls, "each pair's reference terms are computed on its first use only"
            computed = pair_logps(policy, reference, b.contexts, b.chosen, b.rejected, g)
            for a, e in zip(remembered, computed, strict=True):
                torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
            assert not torch.allclose(remembered[0], remembered[2])
    finally:
        del reference.log_prob

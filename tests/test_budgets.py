"""The presets' budgets in the field's units: passes over the offline preference pairs (issue #21).

A step draws one batch of pairs, so a DPO-style method makes steps × batch ÷ pairs passes. The
nominal pair count is the pool's contexts × ⌊candidates ÷ 2⌋ (disjoint pairs per context; ties and
duplicates make the real count, stored per cell as ``data/offline_epochs``, somewhat smaller)."""

from __future__ import annotations

import pytest

from benchmark.registry import DOMAINS

NOMINAL_PAIRS = {
    "text": lambda c: c.pool_contexts * (c.pool_candidates // 2),
    "image": lambda c: c.pool_contexts * (sum(c.pool_candidates.values()) // 2),
    "motion": lambda c: c.pool_contexts * (sum(c.pool_candidates.values()) // 2),
    "robot": lambda c: c.pool_contexts * len(c.tasks) * (c.pool_candidates // 2),
    "multiagent": lambda c: c.pool_contexts * len(c.scenarios) * 4 * (c.pool_candidates // 2),
}
#: passes at standard and full: DPO's 1–3 epochs on text (Rafailov et al. 2023; TRL), up to
#: Diffusion-DPO's ≈ 5 on the diffusion domains, and the offline-RL domains' measured quick regime
#: (≈ 17 and 22 passes, where every classic method improved on the reference)
REGIME = {"text": (1, 3), "image": (1, 5), "motion": (1, 5), "robot": (10, 25), "multiagent": (10, 25)}


@pytest.mark.parametrize("preset", ["standard", "full"])
@pytest.mark.parametrize("domain", sorted(NOMINAL_PAIRS))
def test_budgets_give_the_published_number_of_passes_over_the_pairs(domain: str, preset: str) -> None:
    cls = DOMAINS.get(domain)
    budget = cls.budget(preset)
    epochs = budget.steps * budget.batch_size / NOMINAL_PAIRS[domain](cls.config(preset))
    lo, hi = REGIME[domain]
    assert lo <= epochs <= hi, f"{domain} {preset}: {epochs:.1f} passes over the offline pairs"

"""Annotators (B-Pref teacher faults), rater populations and the budgeted channel."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.api import FeedbackBudgetExceeded
from benchmark.conditions import CONDITIONS
from benchmark.feedback import (
    AnnotatorConfig,
    RaterChannel,
    RaterPopulation,
    RaterPopulationConfig,
    UtilityScale,
    label_pairs,
    rater_utility,
)
from benchmark.progress import Progress
from benchmark.runner import CellRequest, prepare_domain, resolve

SCALE = UtilityScale(mean=0.0, std=1.0, skip_threshold=-float("inf"))


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_oracle_teacher_is_deterministic_with_ties_half() -> None:
    u_a, u_b = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 2.0])
    label, strength = label_pairs(u_a, u_b, u_a, u_b, AnnotatorConfig(temperature=0.0), SCALE, _g())
    assert label.tolist() == [1.0, 0.0, 0.5]
    assert strength.tolist() == [1.0, 1.0, 0.5]  # a noiseless teacher is sure of what it says


def test_bradley_terry_rate_matches_sigmoid() -> None:
    n = 40_000
    u_a, u_b = torch.full((n,), 0.5), torch.zeros(n)
    label, _ = label_pairs(u_a, u_b, u_a, u_b, AnnotatorConfig(temperature=0.5), SCALE, _g(1))
    assert label.mean().item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.01)


def test_strength_is_the_probability_of_the_label_given() -> None:
    n = 20_000
    u_a, u_b = torch.full((n,), 0.5), torch.zeros(n)
    annot = AnnotatorConfig(temperature=0.5, mistake=0.1)
    label, strength = label_pairs(u_a, u_b, u_a, u_b, annot, SCALE, _g(3))
    p_a = 0.9 / (1 + math.exp(-1.0)) + 0.1 * (1 - 1 / (1 + math.exp(-1.0)))
    assert torch.allclose(strength[label == 1], torch.tensor(p_a))
    assert torch.allclose(strength[label == 0], torch.tensor(1 - p_a))
    # calibrated: the label's frequency is its stated probability
    assert label.mean().item() == pytest.approx(p_a, abs=0.01)
    assert (strength[label == 0] < 0.5).all(), "the less likely answer is stated as such"


def test_mistake_flips_at_the_stated_rate() -> None:
    n = 40_000
    u_a, u_b = torch.ones(n), torch.zeros(n)
    label, _ = label_pairs(u_a, u_b, u_a, u_b, AnnotatorConfig(temperature=0.0, mistake=0.2), SCALE, _g(2))
    assert (1 - label.mean().item()) == pytest.approx(0.2, abs=0.01)


def test_equal_threshold_makes_ties() -> None:
    u_a, u_b = torch.tensor([0.05, 0.5]), torch.tensor([0.0, 0.0])
    label, _ = label_pairs(u_a, u_b, u_a, u_b, AnnotatorConfig(temperature=0.0, equal=0.1), SCALE, _g())
    assert label.tolist() == [0.5, 1.0]


def test_skip_drops_uninformative_queries() -> None:
    scale = UtilityScale.from_gold(torch.arange(10.0), skip_quantile=0.3)
    g_a, g_b = torch.tensor([1.0, 8.0]), torch.tensor([0.0, 0.0])
    label, _ = label_pairs(g_a, g_b, g_a, g_b, AnnotatorConfig(temperature=0.0, skip=0.3), scale, _g())
    assert math.isnan(label[0].item()) and label[1].item() == 1.0


def test_myopic_teacher_discounts_early_steps() -> None:
    pop = RaterPopulation.build(torch.tensor([1.0]), RaterPopulationConfig(n_raters=1, n_clusters=1,
                                                                           dispersion=0.0, within=0.0))
    steps_a = torch.tensor([[5.0, 0.0, 0.0, 0.0]])  # good early
    steps_b = torch.tensor([[0.0, 0.0, 0.0, 2.0]])  # good late
    comps_a, comps_b = steps_a.sum(1, keepdim=True), steps_b.sum(1, keepdim=True)
    r = torch.tensor([0])
    full = AnnotatorConfig(myopic_gamma=1.0)
    myopic = AnnotatorConfig(myopic_gamma=0.5)
    assert rater_utility(comps_a, r, pop, steps_a, full) > rater_utility(comps_b, r, pop, steps_b, full)
    assert rater_utility(comps_a, r, pop, steps_a, myopic) < rater_utility(comps_b, r, pop, steps_b, myopic)


def test_population_without_dispersion_is_the_gold_rater() -> None:
    w = torch.tensor([1.0, 0.5, -0.1])
    pop = RaterPopulation.build(w, RaterPopulationConfig(n_raters=5, dispersion=0.0, within=0.0))
    torch.testing.assert_close(pop.weights, w.expand(5, 3))


def test_heterogeneous_population_disagrees_but_keeps_the_primary_component() -> None:
    w = torch.tensor([1.0, 0.5, 1.0, -0.1])
    pop = RaterPopulation.build(w, CONDITIONS["heterogeneous-raters"].raters)
    assert len(pop) == 24 and int(pop.cluster.max()) < 4
    assert (pop.weights[:, 0] > 0).all(), "the first component never flips"
    signs = torch.sign(pop.cluster_weights[:, 1:])
    assert (signs != torch.sign(w[1:])).any(), "some cluster inverts a secondary component"
    again = RaterPopulation.build(w, CONDITIONS["heterogeneous-raters"].raters)
    torch.testing.assert_close(pop.weights, again.weights)


@pytest.fixture(scope="module")
def text_domain(cache):
    cell = resolve(CellRequest("dpo", "text", preset="smoke"))
    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())
    return domain


def test_channel_labels_follow_the_oracle_and_charge_the_budget(text_domain) -> None:
    d = text_domain
    pop = RaterPopulation.build(d.oracle.weights, RaterPopulationConfig(dispersion=0.0, within=0.0))
    ch = RaterChannel(d.oracle, pop, AnnotatorConfig(temperature=0.0), SCALE, budget=40, seed=0)
    ctx = d.eval_contexts[:8]
    a = d.reference.sample(ctx, 1, generator=_g(0))
    b = d.reference.sample(ctx, 1, generator=_g(1))
    ga, gb = d.oracle.gold(ctx, a), d.oracle.gold(ctx, b)
    expected = torch.where(ga > gb, 1.0, torch.where(ga < gb, 0.0, 0.5))
    torch.testing.assert_close(ch.compare(ctx, a, b), expected)
    ranks = ch.rank(ctx, [a, b])
    assert (ranks[ga > gb, 0] == 0).all() and (ranks[ga < gb, 0] == 1).all()
    assert ch.used == 16
    z = ch.rate(ctx, a)
    torch.testing.assert_close(z, ga)  # standardised with mean 0, std 1, no noise
    assert ch.used == 24
    ch.compare(ctx, a, b)
    ch.compare(ctx, a, b)  # 40 of 40: exactly the budget is allowed
    with pytest.raises(FeedbackBudgetExceeded, match="feedback budget exceeded"):
        ch.compare(ctx, a, b)
    assert ch.used == 40, "a refused query is not charged"


def test_inverted_channel_reverses_every_answer(text_domain) -> None:
    d = text_domain
    pop = RaterPopulation.build(d.oracle.weights, RaterPopulationConfig(dispersion=0.0, within=0.0))
    ctx = d.eval_contexts[:8]
    a = d.reference.sample(ctx, 1, generator=_g(0))
    b = d.reference.sample(ctx, 1, generator=_g(1))
    plain = RaterChannel(d.oracle, pop, AnnotatorConfig(temperature=0.0), SCALE, budget=100, seed=0)
    flipped = RaterChannel(d.oracle, pop, AnnotatorConfig(temperature=0.0), SCALE, budget=100, seed=0, invert=True)
    torch.testing.assert_close(flipped.compare(ctx, a, b), 1 - plain.compare(ctx, a, b))
    torch.testing.assert_close(flipped.rate(ctx, a), -plain.rate(ctx, a))
    torch.testing.assert_close(flipped.rank(ctx, [a, b, a]), 2 - plain.rank(ctx, [a, b, a]))


def test_synthetic_raters_by_clustering_keep_the_clusters_of_the_base_population() -> None:
    """Two well-separated base clusters (one inverts component 2): k-means on their judgments finds
    them, and the synthetic raters are drawn around each cluster's mean in proportion to its size."""
    from benchmark.feedback import RaterPopulation, kmeans, synthesize_raters

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[1.0, 1.0, 0.5], [1.0, -1.0, 0.5]])
    members = torch.tensor([0] * 18 + [1] * 6)
    weights = centres[members] + 0.05 * torch.randn(24, 3, generator=g)
    base = RaterPopulation(weights, members, centres)
    probes = torch.randn(200, 3, generator=g)
    judgments = (probes @ weights.T).T
    labels = kmeans(judgments, 2, seed=3)
    assert len({(int(a), int(b)) for a, b in zip(labels, members)}) == 2  # the same partition
    synth = synthesize_raters(base, judgments, 2, 400, seed=1)
    inverted = synth.weights[:, 1] < 0
    assert 0.15 < float(inverted.float().mean()) < 0.35  # 6 of 24 base raters invert component 2
    assert torch.allclose(synth.weights[inverted].mean(0), centres[1], atol=0.05)
    assert torch.allclose(synth.weights[~inverted].mean(0), centres[0], atol=0.05)
    again = synthesize_raters(base, judgments, 2, 400, seed=1)
    assert torch.equal(again.weights, synth.weights)

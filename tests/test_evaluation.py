"""Evaluation metrics point the right way: null, better, worse and over-optimised policies.

Every domain is checked with policies whose ordering is known by construction, built from the
reference and the hidden oracle: the reference itself (must score exactly 0 / 0.5 / 0 KL), its
best-of-k under the oracle (strictly better), its worst-of-k (strictly worse), and copies with
perturbed weights (KL grows with the perturbation). Nothing here depends on an algorithm.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.api import Contexts, Noise, Policy, Samples
from benchmark.checks import heldout_overlap
from benchmark.evaluation import Evaluator, non_finite, paired_metrics, t_half_width
from benchmark.progress import Progress
from benchmark.registry import DOMAINS
from benchmark.runner import CellRequest, prepare_domain, resolve, run_cell
from benchmark.store import Store

DOMAIN_NAMES = DOMAINS.names()


def _prepare(name: str, cache):
    cell = resolve(CellRequest("sft", name, preset="smoke"))
    return prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device("cpu"), Progress())[:2]


class SelectedOfK(Policy):
    """The reference's best (or worst) of ``k`` samples per output under the hidden oracle."""

    def __init__(self, domain, k: int, worst: bool = False):
        super().__init__()
        self.domain, self.k, self.worst = domain, k, worst
        self.ref = domain.reference

    def sample(self, contexts: Contexts, num: int = 1, *, generator: torch.Generator,
               start: Samples | None = None) -> Samples:
        rep = contexts.repeat(num)
        draws = self.ref.sample(rep, self.k, generator=generator)
        gold = self.domain.oracle.gold(rep.repeat(self.k), draws).view(len(rep), self.k)
        pick = gold.argmin(1) if self.worst else gold.argmax(1)
        return draws[torch.arange(len(rep)) * self.k + pick]

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> torch.Tensor:
        return self.ref.log_prob(contexts, samples, noise=noise)

    def draw_noise(self, contexts: Contexts, samples: Samples, *, generator: torch.Generator) -> Noise | None:
        return self.ref.draw_noise(contexts, samples, generator=generator)


def _perturbed(domain, scale: float) -> Policy:
    policy = domain.make_policy()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * p.std().nan_to_num(0.0) * torch.randn(p.shape, generator=gen))
    return policy


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_metric_directions_on_constructed_policies(name: str, cache) -> None:
    domain, stats = _prepare(name, cache)
    ev = Evaluator(domain, stats)
    null = ev.evaluate(domain.make_policy(), seed=1)
    assert null["normalized_score"] == 0.0 and null["win_rate"] == 0.5 and null["gold_gain"] == 0.0
    assert null["gold_reward"] == null["reference_gold_reward"]
    likelihood = "kl_to_ref" if "exact_logp" in domain.spec.capabilities else "elbo_gap"
    assert null[likelihood] == 0.0
    assert "kl_to_ref" not in null or "elbo_gap" not in null, "a surrogate gap is never reported as a KL"
    better = ev.evaluate(SelectedOfK(domain, 4), seed=1)
    worse = ev.evaluate(SelectedOfK(domain, 4, worst=True), seed=1)
    assert better["normalized_score"] > 0 > worse["normalized_score"]
    assert better["win_rate"] > 0.5 > worse["win_rate"]
    assert better["gold_reward"] > null["gold_reward"] > worse["gold_reward"]
    assert better["gold_gain"] > 0 > worse["gold_gain"]
    # the best-of-N policy (N = the target's N) scores about 100: the scale is (best-of-N − mean)
    top = ev.evaluate(SelectedOfK(domain, stats["best_of"]), seed=1)
    assert 30 < top["normalized_score"] < 300
    assert stats["splits"]["heldout"]["target"] > stats["splits"]["heldout"]["ref_mean"]
    assert not non_finite(better) and not non_finite(worse)


@pytest.mark.parametrize("name", [n for n in DOMAIN_NAMES])
def test_kl_grows_with_distance_from_the_reference(name: str, cache) -> None:
    domain, stats = _prepare(name, cache)
    ev = Evaluator(domain, stats)
    if "exact_logp" not in domain.spec.capabilities:  # a surrogate likelihood: its gap is not a KL
        m = ev.evaluate(_perturbed(domain, 0.05), seed=0)
        assert "kl_to_ref" not in m and "kl_k3_to_ref" not in m and math.isfinite(m["elbo_gap"])
        return
    near = ev.evaluate(_perturbed(domain, 0.05), seed=0)
    far = ev.evaluate(_perturbed(domain, 0.5), seed=0)
    assert 0 < near["kl_to_ref"] < far["kl_to_ref"]
    assert 0 < near["kl_k3_to_ref"] < far["kl_k3_to_ref"]


def test_paired_metrics_on_constructed_gold() -> None:
    ref = torch.tensor([[1.0, 2.0], [0.0, 1.0], [2.0, 2.0]])
    same = paired_metrics(ref, ref, target=3.0, ref_mean=1.0, temperature=0.5)
    assert same["normalized_score"] == 0 and same["win_rate"] == 0.5 and same["gold_gain_ci"] == 0
    up = paired_metrics(ref + torch.tensor([[1.0], [0.0], [2.0]]), ref, target=3.0, ref_mean=1.0, temperature=0.5)
    assert up["gold_gain"] == pytest.approx(1.0) and up["normalized_score"] == pytest.approx(50.0)
    assert up["win_rate"] > 0.5 and up["gold_reward"] == pytest.approx(ref.mean().item() + 1.0)
    # the interval is the Student-t interval over contexts: d = (1, 0, 2), sd = 1, n = 3
    assert up["gold_gain_ci"] == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)
    assert up["normalized_score_ci"] == pytest.approx(100 * up["gold_gain_ci"] / 2.0)
    down = paired_metrics(ref - 1.0, ref, target=3.0, ref_mean=1.0, temperature=0.5)
    assert down["normalized_score"] == pytest.approx(-50.0) and down["win_rate"] < 0.5
    # a degenerate scale (target = mean) is not a score: the cell must fail, not publish a number
    flat = paired_metrics(ref + 1.0, ref, target=1.0, ref_mean=1.0, temperature=0.5)
    assert "normalized_score" in non_finite(flat)
    assert math.isnan(t_half_width(torch.tensor([1.0])))


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_evaluation_contexts_are_held_out(name: str, cache) -> None:
    domain, _ = _prepare(name, cache)
    assert heldout_overlap(domain) == 0.0


def test_text_and_image_partitions() -> None:
    import random

    from domains.image import scenes as S
    from domains.text import tasks as T

    rng = random.Random(0)
    for _ in range(3000):
        assert not T.is_heldout(T.random_task(rng))
        t = T.random_task(rng, split="heldout")
        assert T.is_heldout(t) and t.family in T.HELDOUT_FAMILIES
    held = [s for s in S.all_scenes() if S.is_heldout(s)]
    train = [s for s in S.all_scenes() if not S.is_heldout(s)]
    assert len(held) == 24 and len(train) == 72
    # compositional: every pair of attribute values still occurs in training
    for i in range(4):
        for j in range(i + 1, 4):
            pairs = {(s.labels[i], s.labels[j]) for s in S.all_scenes()}
            assert pairs == {(s.labels[i], s.labels[j]) for s in train}
    assert all(not S.is_heldout(S.random_scene(rng)) for _ in range(500))
    assert all(S.is_heldout(S.random_scene(rng, "heldout")) for _ in range(500))


@pytest.mark.parametrize("name", DOMAIN_NAMES)
def test_reference_algorithm_is_the_noise_floor(name: str, home, cache) -> None:
    store = Store(home / "store.sqlite")
    for seed in (0, 1):
        rec = run_cell(resolve(CellRequest("reference", name, preset="smoke", seed=seed)), store=store, cache=cache)
        assert rec.status == "done", rec.reason
        m = rec.metrics
        assert m["normalized_score"] == 0.0 and m["win_rate"] == 0.5 and m["gold_gain"] == 0.0
        assert m["raters/win_rate"] == 0.5  # the synthetic raters see the same samples on both sides
        assert m["gold_reward"] == m["reference_gold_reward"]
        assert m.get("kl_to_ref", 0.0) == 0.0 and m.get("elbo_gap", 0.0) == 0.0
        assert m["train_steps"] == 0 and m["feedback_used"] == 0 and m["online_samples_used"] == 0


def test_non_finite_domain_metric_fails_the_cell(home, cache, monkeypatch) -> None:
    domain, _ = _prepare("text", cache)
    original = type(domain.oracle).metrics

    def broken(self, contexts, samples, num):
        return {**original(self, contexts, samples, num), "accuracy": float("inf")}

    monkeypatch.setattr(type(domain.oracle), "metrics", broken)
    rec = run_cell(resolve(CellRequest("reference", "text", preset="smoke", seed=5)), store=Store(home / "s.sqlite"),
                   cache=cache)
    assert rec.status == "failed" and "accuracy" in rec.reason


def test_synthetic_raters_prefer_what_every_rater_weighs_positively(cache) -> None:
    """Draws that differ only in the oracle's first component (whose sign no rater cluster flips):
    the raters' win rate is above 0.5 for the better side and mirrors it for the worse."""
    from benchmark.evaluation import Draws

    domain, stats = _prepare("text", cache)
    ev = Evaluator(domain, stats)
    base = torch.zeros(32, domain.oracle.weights.numel())
    better = base.clone()
    better[:, 0] = 1.0
    draws = {name: Draws(None, None, torch.zeros(8, 4), comps) for name, comps in (("base", base), ("up", better))}
    up, down = ev._rater_win_rate(draws["up"], draws["base"]), ev._rater_win_rate(draws["base"], draws["up"])
    assert up > 0.6 and down == pytest.approx(1 - up)

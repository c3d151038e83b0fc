"""HyPO (Song et al. 2024): the DPO term plus λ·REINFORCE estimate of KL(π_θ ‖ π_ref), against hand-computed
values, the gradient direction of the KL term, and its unbiasedness on an enumerable policy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from baselines.hypo import HyPO, HyPOConfig, hypo_loss
from benchmark.objectives import logratio_margin, reverse_kl_reinforce_loss
from benchmark.registry import ALGORITHMS

# two prompts, K = 3 online samples each (laid out prompt by prompt)
LOGP = [-1.0, -2.0, -3.0, -2.0, -2.0, -2.0]
REF = [-1.5, -1.5, -1.5, -1.0, -1.0, -1.0]
# ρ = (0.5, −0.5, −1.5 | −1, −1, −1)


@pytest.mark.parametrize(("baseline", "adv"), [
    # leave-one-out: b = (−1, −0.5, 0 | −1, −1, −1)
    ("loo", [1.5, 0.0, -1.5, 0.0, 0.0, 0.0]),
    # the prompt's mean: b = (−0.5 | −1)
    ("mean", [1.0, 0.0, -1.0, 0.0, 0.0, 0.0]),
    # the batch mean: b = −4.5/6 = −0.75
    ("batch", [1.25, 0.25, -0.75, -0.25, -0.25, -0.25]),
    ("none", [0.5, -0.5, -1.5, -1.0, -1.0, -1.0]),
])
def test_kl_surrogate_golden_and_direction(baseline: str, adv: list[float]) -> None:
    """L_ij = (ρ_ij − b_ij)·log π_θ(y_ij), with the gradient only through log π_θ: descent lowers log π_θ − log
    π_ref on the samples above the baseline and raises it below."""
    logp = torch.tensor(LOGP, requires_grad=True)
    loss = reverse_kl_reinforce_loss(logp, torch.tensor(REF), k=3, baseline=baseline)
    assert loss.tolist() == pytest.approx([a * lp for a, lp in zip(adv, LOGP)], abs=1e-6)
    loss.sum().backward()
    assert logp.grad.tolist() == pytest.approx(adv, abs=1e-6)
    rho = [lp - r for lp, r in zip(LOGP, REF)]
    step = logp.detach() - 0.1 * logp.grad  # one descent step
    for j, a in enumerate(adv):
        new_rho = float(step[j]) - REF[j]
        if a > 0:
            assert new_rho < rho[j]
        elif a < 0:
            assert new_rho > rho[j]


def test_hypo_loss_golden() -> None:
    """DPO: log-probs π_w = −10, π_l = −12, ref_w = −11, ref_l = −11.5 ⇒ h = 1.5, −log σ(0.15) = log(1 + e^−0.15);
    KL term (loo, the first prompt above): mean(1.5·−1, 0·−2, −1.5·−3) = 1; total = DPO + λ·1."""
    h = logratio_margin(*(torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.5)))
    cfg = HyPOConfig(beta=0.1, lam=0.01, k=3, baseline="loo")
    loss, kl_term = hypo_loss(h, torch.tensor(LOGP[:3]), torch.tensor(REF[:3]), cfg, "loo")
    dpo = math.log1p(math.exp(-0.15))
    assert dpo == pytest.approx(0.620957, abs=1e-6)
    assert kl_term.item() == pytest.approx(1.0, abs=1e-6)
    assert loss.item() == pytest.approx(dpo + 0.01 * 1.0, abs=1e-6)
    # no online samples (budget spent): plain DPO
    loss, kl_term = hypo_loss(h, torch.zeros(0), torch.zeros(0), cfg, "loo")
    assert loss.item() == pytest.approx(dpo, abs=1e-6) and kl_term.item() == 0.0


@pytest.mark.parametrize("baseline", ["loo", "none"])
def test_kl_estimator_unbiased(baseline: str) -> None:
    """On a categorical policy over 3 outcomes, the expectation of the estimator's gradient over every draw of
    K = 2 samples equals ∇ KL(π_θ ‖ π_ref) (autograd on the exact KL)."""
    theta = torch.tensor([0.3, -0.2, 0.8], requires_grad=True)
    logp_ref = torch.log_softmax(torch.tensor([0.0, 0.5, -0.5]), -1)
    logp = torch.log_softmax(theta, -1)
    (exact,) = torch.autograd.grad((logp.exp() * (logp - logp_ref)).sum(), theta)
    expected = torch.zeros(3)
    for y in itertools.product(range(3), repeat=2):
        logp = torch.log_softmax(theta, -1)
        idx = torch.tensor(y)
        surrogate = reverse_kl_reinforce_loss(logp[idx], logp_ref[idx], k=2, baseline=baseline).mean()
        (g,) = torch.autograd.grad(surrogate, theta)
        expected += logp.detach()[idx].sum().exp() * g
    assert torch.allclose(expected, exact, atol=1e-6)


def test_registered_and_requirements() -> None:
    assert ALGORITHMS.get("hypo") is HyPO
    assert HyPO.requirements(HyPOConfig()) == {"offline:pairs", "online"}
    assert "capability:exact_logp" in HyPO.requirements(HyPOConfig(kl_likelihood="exact"))
    with pytest.raises(ValueError):
        HyPOConfig(baseline="loo", k=1)
    with pytest.raises(ValueError):
        reverse_kl_reinforce_loss(torch.zeros(2), torch.zeros(2), k=2, baseline="median")


def test_auto_baseline_and_surrogate_reading() -> None:
    """``auto``: loo where the KL term's likelihood is exact, none on a surrogate. On a surrogate (the score has no
    zero mean) the surrogate loss is a sample-path penalty: with b = 0 its gradient is ∇½ρ², with leave-one-out
    K/(K−1)·∇½Σ_j(ρ_j − ρ̄)² (the within-prompt variance, blind to a common shift)."""
    from baselines.hypo import kl_baseline
    from benchmark.api import DomainSpec

    def spec(caps: set[str], surrogate: bool) -> DomainSpec:
        return DomainSpec("d", "m", frozenset(caps), (), (), surrogate_logp=surrogate)

    text, image0, image1 = spec({"online", "exact_logp"}, False), spec({"online"}, True), \
        spec({"online", "exact_logp"}, True)
    assert kl_baseline(HyPOConfig(), text) == "loo"
    assert kl_baseline(HyPOConfig(), image0) == "none"
    assert kl_baseline(HyPOConfig(), image1) == "loo"  # the exact chain
    assert kl_baseline(HyPOConfig(kl_likelihood="log_prob"), image1) == "none"  # the surrogate, even at η > 0
    assert kl_baseline(HyPOConfig(baseline="batch"), image0) == "batch"
    ref = torch.tensor(REF[:3])
    for baseline, penalty in (("none", lambda r: 0.5 * (r**2).sum()),
                              ("loo", lambda r: 1.5 * 0.5 * ((r - r.mean()) ** 2).sum())):
        logp = torch.tensor(LOGP[:3], requires_grad=True)
        (g,) = torch.autograd.grad(reverse_kl_reinforce_loss(logp, ref, 3, baseline).sum(), logp)
        logp2 = torch.tensor(LOGP[:3], requires_grad=True)
        (g2,) = torch.autograd.grad(penalty(logp2 - ref), logp2)
        assert torch.allclose(g, g2, atol=1e-6)

"""Losses against hand-computed values (computed by hand from the papers' equations) and basic identities."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark import objectives as O

# DPO: logps πc=−10, πr=−12, refc=−11, refr=−11.5, β=0.1 ⇒ Δ=1.5
PI_W, PI_L, REF_W, REF_L = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.5))


def test_margin() -> None:
    assert O.logratio_margin(PI_W, PI_L, REF_W, REF_L).item() == pytest.approx(1.5)


def test_implicit_reward_golden() -> None:
    """r = β (log π − log π_ref): higher where the policy raised the sample's likelihood."""
    r = O.implicit_reward(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]), 0.5)
    assert torch.allclose(r, torch.tensor([0.5, -0.5]))


def test_gdpo_balance_golden_and_direction() -> None:
    """By hand: φ = (0.5, 0.2), log π = (−1, −2), log π_ref = (−1.5, −1), log R̃ = −0.5 ⇒
    δ = (0.5 + 0.5 − 0.2, 0.2 − 1 + 0.5) = (0.8, −0.3): DB = 0.73; SubTB(λ=1) over (0,1), (1,2), (0,2)
    = (0.64 + 0.09 + 0.25)/3; SubTB(λ=0.5) = (0.5·0.64 + 0.5·0.09 + 0.25·0.25)/1.25 = 0.342.
    A row with one valid step ends there: δ_0 = 0.5 + 0.5 + 0.5 = 1.5."""
    phi = torch.tensor([[0.5, 0.2], [0.5, 0.0]])
    logp, ref = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]]), torch.tensor([[-1.5, -1.0], [-1.5, 0.0]])
    log_r, mask = torch.tensor([-0.5, -0.5]), torch.tensor([[True, True], [True, False]])
    db = O.gflownet_balance_loss(phi, logp, ref, log_r, mask)
    assert db.tolist() == pytest.approx([0.73, 2.25], abs=1e-6)
    sub1 = O.gflownet_balance_loss(phi, logp, ref, log_r, mask, subtb_lambda=1.0)
    assert sub1.tolist() == pytest.approx([0.98 / 3, 2.25], abs=1e-6)
    assert O.gflownet_balance_loss(phi, logp, ref, log_r, mask, 0.5)[0].item() == pytest.approx(0.342, abs=1e-6)
    # direction: from π = π_ref and φ = 0, descent lowers the likelihood of the response with the lower
    # label reward (rejected, α·c = −0.8) and leaves the chosen one (0) balanced; a flipped sign raises it
    lp = torch.zeros(2, 3, requires_grad=True)
    rewards = torch.tensor([0.0, -0.8])
    for lam in (None, 1.0):
        (g,) = torch.autograd.grad(O.gflownet_balance_loss(torch.zeros(2, 3), lp, torch.zeros(2, 3), rewards,
                                                           torch.ones(2, 3, dtype=torch.bool), lam).sum(), lp)
        assert (g[1, -1] > 0).item() and torch.allclose(g[0], torch.zeros(3))


def test_cpl_golden() -> None:
    """−log σ(A_w − λ A_l), by hand: A_w = −1, A_l = −3, λ = 0.5 → −log σ(0.5)."""
    loss = O.cpl_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), 0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))), abs=1e-6)
    # λ = 1 is DPO's form without a reference: only the difference matters
    assert O.cpl_loss(torch.tensor([2.0]), torch.tensor([1.0]), 1.0).item() == pytest.approx(
        O.cpl_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), 1.0).item())


def test_dro_golden_and_gradient_of_the_joint_objective() -> None:
    """Value: ½(r − V − τρ)² = ½(1 − 0.25 − 2·0.5)² = 0.03125. Policy: −ρ(r − V) + (τ/2)ρ² has
    1/τ times the ρ-gradient of the joint objective ½(r − V − τρ)²."""
    r, v, tau = torch.tensor([1.0]), torch.tensor([0.25]), 2.0
    rho = torch.tensor([0.5], requires_grad=True)
    assert O.dro_value_loss(v, rho, r, tau).item() == pytest.approx(0.03125)
    (g_policy,) = torch.autograd.grad(O.dro_policy_loss(rho, r, v, tau).sum(), rho)
    (g_joint,) = torch.autograd.grad((0.5 * (r - v - tau * rho) ** 2).sum(), rho)
    assert g_policy.item() == pytest.approx(g_joint.item() / tau)
    assert g_policy.item() == pytest.approx(-(1.0 - 0.25) + tau * 0.5)
    vv = torch.tensor([0.25], requires_grad=True)  # the value loss moves V only, toward r − τρ
    (g_v,) = torch.autograd.grad(O.dro_value_loss(vv, rho, r, tau).sum(), vv)
    assert g_v.item() == pytest.approx(-(1.0 - 0.25 - tau * 0.5))


def test_sera_margin_selection_and_best_worst_golden() -> None:
    """IRM = β(ρ_w − ρ_l): β = 0.1, ρ_w = −10 + 11 = 1, ρ_l = −12 + 11.5 = −0.5 → 0.15. Keeping
    round(0.5·5) = 2 of margins [0.3, −1, 2, 0.3, 0.1]: largest → pairs 0 and 2 (the tie at 0.3 keeps
    the earlier), smallest → 1 and 4. Best/worst of rewards [[1, 3, 2], [0, −1, 5]] → flat 1, 0 and
    5, 4."""
    assert O.implicit_reward_margin(PI_W, PI_L, REF_W, REF_L, 0.1).item() == pytest.approx(0.15)
    m = torch.tensor([0.3, -1.0, 2.0, 0.3, 0.1])
    assert O.select_by_margin(m, 0.5).tolist() == [0, 2]
    assert O.select_by_margin(m, 0.5, largest=False).tolist() == [1, 4]
    assert O.select_by_margin(m, 0.01).tolist() == [2]  # at least one pair
    assert O.select_by_margin(m, 1.0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        O.select_by_margin(m, 0.0)
    best, worst = O.best_and_worst(torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]]))
    assert best.tolist() == [1, 5] and worst.tolist() == [0, 4]


def test_dtr_maths_golden() -> None:
    """Ensemble normalisation: members [1, 3] and [0, 40] (third step masked) both z-score to
    [−1/√2, 1/√2], so scale does not weigh a member. n-step targets with γ = 0.5, bootstrap 10 at
    the last valid step (L = 4): y_2 = 3 + 0.5·10 = 8, y_1 = 2 + 0.5·3 + 0.25·10 = 6,
    y_0 = 1 + 1 + 0.75 + 1.25 = 4, y_3 = 0; L = 2, bootstrap 5: y_0 = 1 + 2.5. The Q term divides by
    mean|Q_j| = 2. Return-to-go rates of [1, 2, 3, (4 masked)]: [6/3, 5/2, 3/1, 0]."""
    r = torch.tensor([[[1.0, 3.0, 99.0]], [[0.0, 40.0, -7.0]]])
    z = O.ensemble_z_normalise(r, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(z, torch.tensor([[-0.5**0.5, 0.5**0.5, 0.0]]))
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    y = O.n_step_targets(rewards, mask, torch.tensor([10.0, 5.0]), 0.5)
    torch.testing.assert_close(y, torch.tensor([[4.0, 6.0, 8.0, 0.0], [3.5, 0.0, 0.0, 0.0]]))
    q = O.normalised_q_loss(torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 3.0]))
    torch.testing.assert_close(q, torch.tensor([-1.0, -2.0]))
    assert [O.linear_ramp(t, 10) for t in (0, 5, 20)] == [0.0, 0.5, 1.0]
    g = O.return_to_go_rate(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(g, torch.tensor([[2.0, 2.5, 3.0, 0.0]]))


def test_osp_ranked_pairs_golden() -> None:
    """Rewards [[0.1, 0.4, 0.3, 0.2], [5, 5, 1, 2]], K = 4. Prompt 0 ranks candidates 1, 2, 3, 0;
    prompt 1 (tie at 5: the earlier first) ranks 0, 1, 3, 2, i.e. flat 4, 5, 7, 6. Mirrored pairs
    (rank 0, rank 3) with gap 3 → p = ½ + ½·3/3 = 1 and (rank 1, rank 2) with gap 1 → p = ½ + ½/3 = 2/3:
    winners [1, 2, 4, 5], losers [0, 3, 6, 7]. All pairs: 6 per prompt; with p_max = 0.9 the pair
    (rank 0, rank 2) has p = 0.5 + 0.4·2/3 = 0.7667."""
    r = torch.tensor([[0.1, 0.4, 0.3, 0.2], [5.0, 5.0, 1.0, 2.0]])
    win, lose, p = O.ranked_pairs(r)
    assert win.tolist() == [1, 2, 4, 5] and lose.tolist() == [0, 3, 6, 7]
    torch.testing.assert_close(p, torch.tensor([1.0, 2 / 3, 1.0, 2 / 3]))
    win, lose, p = O.ranked_pairs(r, mirror=False, max_strength=0.9)
    assert len(win) == 12 and win[:3].tolist() == [1, 1, 1] and lose[:3].tolist() == [2, 3, 0]
    assert p[1].item() == pytest.approx(0.5 + 0.4 * 2 / 3)
    assert (r.flatten()[win] >= r.flatten()[lose]).all()


def test_dpo_sigmoid_golden() -> None:
    h = O.logratio_margin(PI_W, PI_L, REF_W, REF_L)
    assert O.dpo_loss(h, 0.1).item() == pytest.approx(0.620957, abs=1e-6)


def test_pair_proximity_golden() -> None:
    """f_π = (1, 0). Pair 0: f_w = (1, 0) (cos 1), f_l = (0, 2) (cos 0) → ½(1 + 0) = 0.5.
    Pair 1: f_π = (3, 4), f_w = (3, 4) (cos 1), f_l = (4, 3): cos = (12 + 12)/(5·5) = 0.96
    → ½(1 + 0.96) = 0.98. Pair 2: f_π = 0 → cos 0 for both → 0."""
    pi = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    w = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    lose = torch.tensor([[0.0, 2.0], [4.0, 3.0], [1.0, -1.0]])
    torch.testing.assert_close(O.pair_proximity(pi, w, lose), torch.tensor([0.5, 0.98, 0.0]))


def test_hinge_golden() -> None:
    assert O.hinge_loss(torch.tensor([1.5]), 0.1).item() == pytest.approx(0.85, abs=1e-6)


def test_optimistic_dpo_golden() -> None:
    """SELM: h = 1.5, β = 0.1 gives the DPO part −log σ(0.15) = log(1 + e^−0.15) = 0.620957; the
    exploration term α·β·ρ with α = 0.5, ρ = 2 adds 0.5·0.1·2 = 0.1 → 0.720957; α = 0 is DPO; its
    gradient in ρ is +α·β = 0.05 (descent lowers ρ_θ(y_ref))."""
    rho = torch.tensor([2.0], requires_grad=True)
    loss = O.optimistic_dpo_loss(torch.tensor([1.5]), rho, 0.1, 0.5)
    assert loss.item() == pytest.approx(0.720957, abs=1e-6)
    assert O.optimistic_dpo_loss(torch.tensor([1.5]), rho, 0.1, 0.0).item() == pytest.approx(0.620957, abs=1e-6)
    loss.sum().backward()
    assert rho.grad.item() == pytest.approx(0.05)


def test_robust_golden() -> None:
    assert O.robust_dpo_loss(torch.tensor([1.5]), 0.1, 0.1).item() == pytest.approx(0.602207, abs=1e-6)


def test_ipo_golden_unnormalised_and_trl_normalised() -> None:
    assert O.ipo_loss(torch.tensor([1.5]), 0.1).item() == pytest.approx(12.25, abs=1e-6)
    # TRL: each sequence log-ratio divided by its length (5 chosen tokens, 4 rejected)
    h = O.logratio_margin(PI_W / 5, PI_L / 4, REF_W / 5, REF_L / 4)
    assert O.ipo_loss(h, 0.1).item() == pytest.approx(21.855625, abs=1e-5)


def test_kto_golden() -> None:
    # KTO: ρ_c=1, ρ_r=−0.5, z₀=0.2, β=0.1
    rho = torch.tensor([1.0, -0.5])
    loss = O.kto_loss(rho, torch.tensor([1, 0]), 0.2, 0.1)
    assert loss[0].item() == pytest.approx(0.480011, abs=1e-6)
    assert loss[1].item() == pytest.approx(0.482507, abs=1e-6)


def test_kto_reference_point_is_clamped_and_detached() -> None:
    pi = torch.tensor([-1.0, -2.0], requires_grad=True)
    z0 = O.kto_reference_point(pi, torch.tensor([0.0, 0.0]))
    assert z0.item() == 0.0 and not z0.requires_grad
    z0 = O.kto_reference_point(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0]))
    assert z0.item() == pytest.approx(1.0)


def test_kto_slope_is_the_sigmoid_gradient_relative_to_its_peak() -> None:
    # 4 σ(u) σ(−u) with u = β(ρ − z₀): 1 at ρ = z₀, even in u, ≈ 0 once |u| is large; and it is
    # |∂ loss/∂ρ| ÷ (β/4) of the desirable (or undesirable) KTO loss
    rho = torch.tensor([2.0, 2.0 + 30.0, 2.0 - 30.0, 2.0 + 1000.0], requires_grad=True)
    slope = O.kto_slope(rho, 2.0, 0.1)
    assert slope[0].item() == pytest.approx(1.0)
    assert slope[1].item() == pytest.approx(slope[2].item())
    assert slope[1].item() == pytest.approx(4 * math.exp(-3) / (1 + math.exp(-3)) ** 2, rel=1e-5)
    assert slope[3].item() < 1e-20
    O.kto_loss(rho, torch.ones(4), 2.0, 0.1).sum().backward()
    assert torch.allclose(rho.grad.abs(), 0.1 / 4 * slope.detach())


def test_label_smoothing_and_soft_preference_agree() -> None:
    h = torch.tensor([0.7, -0.3])
    torch.testing.assert_close(O.dpo_loss(h, 0.5, 0.2), O.soft_preference_loss(h, 0.5, torch.tensor(0.8)))
    torch.testing.assert_close(O.dpo_loss(h, 0.5), O.soft_preference_loss(h, 0.5, torch.tensor(1.0)))


def test_bradley_terry_loss() -> None:
    assert O.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0])).item() == pytest.approx(
        math.log1p(math.exp(-1.0)))
    centred = O.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), center=0.01)
    assert centred.item() == pytest.approx(math.log1p(math.exp(-1.0)) + 0.09)


def test_kl_estimators() -> None:
    lp, lr = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    torch.testing.assert_close(O.kl_k1(lp, lr), torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(O.kl_k2(lp, lr), torch.tensor([0.125, 0.5]))
    k3 = O.kl_k3(lp, lr)
    assert (k3 >= 0).all()
    torch.testing.assert_close(k3, torch.tensor([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]))


def test_gae_matches_a_hand_computation() -> None:
    r = torch.tensor([[1.0, 0.0, 2.0]])
    v = torch.tensor([[0.5, 0.2, 0.1, 0.0]])
    d = torch.tensor([[0, 0, 1]])
    adv, ret = O.gae(r, v, d, gamma=0.9, lam=0.8)
    d2 = 2.0 - 0.1
    d1 = 0.0 + 0.9 * 0.1 - 0.2
    d0 = 1.0 + 0.9 * 0.2 - 0.5
    a2 = d2
    a1 = d1 + 0.9 * 0.8 * a2
    a0 = d0 + 0.9 * 0.8 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(ret, adv + v[:, :3])


def test_expectile_loss_is_asymmetric() -> None:
    u = torch.tensor([2.0, -2.0])
    out = O.expectile_loss(u, 0.7)
    torch.testing.assert_close(out, torch.tensor([0.7 * 4, 0.3 * 4]))


# -- properties (hypothesis) ------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

finite = st.floats(min_value=-30, max_value=30, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(d=finite)
def test_k3_is_non_negative_and_zero_only_at_equality(d: float) -> None:
    from benchmark.objectives import kl_k3

    v = float(kl_k3(torch.tensor([d], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)))
    assert v >= 0 and (v > 0 or abs(d) < 1e-6) and (d != 0 or v == 0)


@settings(max_examples=200, deadline=None)
@given(h=finite, dh=st.floats(min_value=1e-3, max_value=10))
def test_preference_losses_fall_as_the_margin_grows(h: float, dh: float) -> None:
    from benchmark.objectives import dpo_loss, robust_dpo_loss

    a, b = torch.tensor([h], dtype=torch.float64), torch.tensor([h + dh], dtype=torch.float64)
    assert dpo_loss(b, 0.5) < dpo_loss(a, 0.5)
    assert robust_dpo_loss(b, 0.5, 0.1) < robust_dpo_loss(a, 0.5, 0.1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=12))
def test_paired_metrics_are_antisymmetric(rows: list[tuple[float, float]]) -> None:
    from benchmark.evaluation import paired_metrics

    pol = torch.tensor([[a] for a, _ in rows], dtype=torch.float64)
    ref = torch.tensor([[b] for _, b in rows], dtype=torch.float64)
    fwd = paired_metrics(pol, ref, target=2.0, ref_mean=1.0, temperature=0.5)
    back = paired_metrics(ref, pol, target=2.0, ref_mean=1.0, temperature=0.5)
    assert fwd["gold_gain"] == pytest.approx(-back["gold_gain"], abs=1e-9)
    assert fwd["normalized_score"] == pytest.approx(-back["normalized_score"], abs=1e-7)
    assert fwd["win_rate"] == pytest.approx(1 - back["win_rate"], abs=1e-9)


def test_direct_alignment_loss_dispatches_to_the_named_loss() -> None:
    """h = 1.5, β = 0.1: dpo 0.620957, hinge 0.85, ipo (1.5 − 5)² = 12.25; an unknown name raises."""
    h = torch.tensor([1.5])
    assert O.direct_alignment_loss(h, "dpo", 0.1).item() == pytest.approx(0.620957, abs=1e-6)
    assert O.direct_alignment_loss(h, "hinge", 0.1).item() == pytest.approx(0.85, abs=1e-6)
    assert O.direct_alignment_loss(h, "ipo", 0.1).item() == pytest.approx(12.25, abs=1e-6)
    with pytest.raises(ValueError):
        O.direct_alignment_loss(h, "kto", 0.1)

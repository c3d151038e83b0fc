"""SoPo and MoDiPO: their losses and selections against hand-computed values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from baselines.modipo import MoDiPO, MoDiPOConfig, ranked_indices
from baselines.sopo import SoPo, SoPoConfig
from benchmark import objectives as O
from benchmark.api import Batch
from benchmark.training import step_features


def softplus(z: float) -> float:
    """−log σ(z) = log(1 + e^{−z})."""
    return math.log1p(math.exp(-z))


# -- SoPo's loss ----------------------------------------------------------------------------------


def test_sopo_loss_golden() -> None:
    """By hand: ρ_w = 1, ρ_l = −0.5, β = 0.1, w = 1.5: kept y_l ⇒ z = 0.1·(1.5·1 + 0.5) = 0.2;
    dropped y_l (m = 0) ⇒ z = 0.1·1.5 = 0.15; L = log(1 + e^{−z})."""
    rho_w, rho_l = torch.tensor([1.0, 1.0]), torch.tensor([-0.5, -0.5])
    loss = O.sopo_loss(rho_w, rho_l, 0.1, torch.tensor([1.5, 1.5]), torch.tensor([1.0, 0.0]))
    assert loss.tolist() == pytest.approx([softplus(0.2), softplus(0.15)], abs=1e-7)
    assert softplus(0.2) == pytest.approx(0.598138869, abs=1e-8)
    # w = m = 1 is DPO on the semi-online pair
    assert O.sopo_loss(rho_w, rho_l, 0.1).tolist() == pytest.approx(O.dpo_loss(rho_w - rho_l, 0.1).tolist())


def test_sopo_loss_is_the_authors_diffusion_form() -> None:
    """The authors' code: −log σ(−[(2 − p)(L_θ(y_w) − L_ref(y_w)) − m(L_θ(y_l) − L_ref(y_l))]) on x̂₀-MSEs L.
    By hand: L_θ(y_w) = 0.2, L_ref(y_w) = 0.5, L_θ(y_l) = 0.4, L_ref(y_l) = 0.3, p = 0.6, m = 1 ⇒
    −[1.4·(−0.3) − 0.1] = 0.52. Ours with log π = −s·L, s = 10, β = 0.1 (β·s = 1): ρ_w = 3, ρ_l = −1 ⇒
    β(w ρ_w − ρ_l) = 0.1·(4.2 + 1) = 0.52."""
    s = 10.0
    rho_w, rho_l = torch.tensor([-s * (0.2 - 0.5)]), torch.tensor([-s * (0.4 - 0.3)])
    loss = O.sopo_loss(rho_w, rho_l, 0.1, torch.tensor([2 - 0.6]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(softplus(0.52), abs=1e-6)


def test_sopo_loss_gradient_raises_the_positive_and_lowers_the_negative() -> None:
    rho_w, rho_l = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    O.sopo_loss(rho_w, rho_l, 0.1, 1.5, 1.0).sum().backward()
    # ∂L/∂ρ_w = −β·w·σ(−z) = −0.1·1.5·0.5; ∂L/∂ρ_l = +β·m·σ(−z) = 0.05
    assert rho_w.grad.item() == pytest.approx(-0.075)
    assert rho_l.grad.item() == pytest.approx(0.05)


def test_sopo_positive_weight_golden() -> None:
    """Similarities (1 + cos)/2: prompt 1, f_w = (1, 0) against (1, 0) and (0, 1) ⇒ 1 and ½ ⇒ w = 2 − ½;
    prompt 2, f_w = (0, 2) against (0, −1) and (0, 3) ⇒ 0 and 1 ⇒ w = 2."""
    positive = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    online = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, -1.0], [0.0, 3.0]]])
    assert O.sopo_positive_weight(positive, online).tolist() == pytest.approx([1.5, 2.0])


# -- SoPo's semi-online pair -------------------------------------------------------------------------


class _StubCtx:
    """Just what ``SoPo._semi_online`` touches: ``sample`` returns fixed samples laid out as x.repeat(K)."""

    def __init__(self, values: list[float]):
        self.values = values

    def sample(self, policy, contexts, num):
        assert len(contexts) * num == len(self.values)
        return Batch({"v": torch.tensor(self.values)})


def _score(contexts, samples):
    return samples.v.clone()


def test_sopo_picks_the_lowest_scored_online_sample_and_masks_by_the_positive() -> None:
    """K = 3, two prompts; online scores (0.5, 0.1, 0.9) and (0.4, 0.8, 0.2) ⇒ y_l = 0.1 and 0.2 (the lowest);
    positives score 0.3 and 0.1 ⇒ with margin 0 the first y_l is kept (0.3 − 0.1 > 0), the second not."""
    x, y_w = Batch({"c": torch.tensor([0, 1])}), Batch({"v": torch.tensor([0.3, 0.1])})
    ctx = _StubCtx([0.5, 0.1, 0.9, 0.4, 0.8, 0.2])
    cfg = SoPoConfig(k=3, positive_weight="uniform")
    y_l, weight, keep = SoPo._semi_online(ctx, cfg, None, _score, x, y_w)
    assert y_l.v.tolist() == pytest.approx([0.1, 0.2])
    assert keep.tolist() == [1.0, 0.0]
    assert weight.tolist() == [1.0, 1.0]
    _, _, keep_all = SoPo._semi_online(ctx, SoPoConfig(k=3, margin=None, positive_weight="uniform"), None, _score,
                                       x, y_w)
    assert keep_all.tolist() == [1.0, 1.0]
    _, _, keep_far = SoPo._semi_online(ctx, SoPoConfig(k=3, margin=0.25, positive_weight="uniform"), None, _score,
                                       x, y_w)
    assert keep_far.tolist() == [0.0, 0.0]  # 0.3 − 0.1 = 0.2 is not above 0.25


def test_sopo_similarity_embedding_is_the_step_views_actions() -> None:
    """Discrete: actions (1, 2, 2, ·) on 3 valid steps ⇒ histogram (0, ⅓, ⅔); continuous: the valid steps'
    actions flattened, a masked step zeroed."""
    def ctx(action, mask, kind, n=0):
        view = {"action": torch.tensor(action), "mask": torch.tensor(mask)}
        return SimpleNamespace(domain=SimpleNamespace(transitions=lambda c, s: view,
                                                      spec=SimpleNamespace(action_kind=kind, n_actions=n)))

    hist = step_features(ctx([[1, 2, 2, 0]], [[True, True, True, False]], "discrete", 3), None, None)
    assert hist.tolist()[0] == pytest.approx([0.0, 1 / 3, 2 / 3])
    flat = step_features(ctx([[[1.0, 2.0], [3.0, 4.0]]], [[True, False]], "continuous"), None, None)
    assert flat.tolist() == [[1.0, 2.0, 0.0, 0.0]]


def test_sopo_requirements_follow_the_config() -> None:
    assert SoPo.requirements(SoPoConfig()) == {"online", "offline:pairs", "offline:demos"} == SoPo.requires
    assert SoPo.requirements(SoPoConfig(scorer="judge")) == {"online", "capability:judge", "offline:demos"}
    assert SoPo.requirements(SoPoConfig(scorer="judge", positive="chosen")) == {
        "online", "capability:judge", "offline:pairs"}
    assert "offline:pairs" in SoPo.requirements(SoPoConfig(scorer="judge", offline_weight=0.5))
    with pytest.raises(ValueError):
        SoPoConfig(scorer="oracle")


# -- MoDiPO ------------------------------------------------------------------------------------------


def test_modipo_ranked_indices_golden() -> None:
    """Scores (1, 3, 2) and a tied (5, 5, 5): best against worst ⇒ (1 ≻ 0) for the first, none for the tie;
    all ranked pairs ⇒ order 1, 2, 0 ⇒ (1 ≻ 2), (1 ≻ 0), (2 ≻ 0); min_gap 1.5 keeps only the gap-2 pair."""
    scores = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    win, lose = ranked_indices(scores, "best_worst", 0.0)
    assert (win.tolist(), lose.tolist()) == ([1], [0])
    win, lose = ranked_indices(scores, "all", 0.0)
    assert (win.tolist(), lose.tolist()) == ([1, 1, 2], [2, 0, 0])
    win, lose = ranked_indices(scores, "all", 1.5)
    assert (win.tolist(), lose.tolist()) == ([1], [0])


def test_modipo_preference_set_spends_the_budget_once_on_the_reference() -> None:
    """Budget 7 samples, K = 2 ⇒ 3 prompts (of 5) sampled from the reference, one best/worst pair each."""
    prompts = Batch({"c": torch.arange(5)})
    drawn = []

    def sample(policy, contexts, num):
        assert policy == "reference"
        drawn.append(len(contexts) * num)
        rep = contexts.repeat(num)  # sample value = 10·context + its position among the context's K
        return Batch({"v": 10.0 * rep.c + torch.arange(num).repeat(len(contexts))})

    ctx = SimpleNamespace(domain=SimpleNamespace(train_contexts=prompts, reference="reference"),
                          budget=SimpleNamespace(online_samples=7), samples_used=0, sample=sample,
                          generator=torch.Generator().manual_seed(0))
    contexts, chosen, rejected = MoDiPO._preference_set(ctx, MoDiPOConfig(k=2), _score)
    assert drawn == [6]
    assert len(chosen) == 3
    assert (chosen.v - rejected.v).tolist() == [1.0, 1.0, 1.0]  # the higher-scored sample is chosen
    assert (chosen.v // 10).tolist() == contexts.c.float().tolist()  # pairs keep their own prompt


def test_modipo_requirements_follow_the_scorer() -> None:
    assert MoDiPO.requirements(MoDiPOConfig()) == {"online", "offline:pairs"} == MoDiPO.requires
    assert MoDiPO.requirements(MoDiPOConfig(scorer="judge")) == {"online", "capability:judge"}
    with pytest.raises(ValueError):
        MoDiPOConfig(k=1)


def test_both_are_registered() -> None:
    from benchmark.registry import ALGORITHMS

    assert ALGORITHMS.get("sopo") is SoPo
    assert ALGORITHMS.get("modipo") is MoDiPO

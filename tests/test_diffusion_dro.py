"""Diffusion-DRO's ranking loss against hand-computed values, its replay buffer, and its requirements."""

from __future__ import annotations

import pytest
import torch

from baselines.diffusion_dro import DiffusionDRO, DiffusionDROConfig, ReplayBuffer
from benchmark.api import Batch
from benchmark.objectives import denoising_ranking_loss


def test_ranking_loss_golden() -> None:
    """By hand, β = 0.1, γ = 1:
    - ρ_e = 2 − 0 = 2, ρ_p = −5 − (−2) = −3: gap 5, 1 − 0.5 = 0.5;
    - ρ_e = −4, ρ_p = 1: gap −5, 1 + 0.5 = 1.5 (the policy sample ranked above the expert costs more);
    - ρ_e = 20, ρ_p = 0: gap 20, 1 − 2 < 0 → 0 (ranked beyond the margin: no loss)."""
    rho_e = torch.tensor([2.0, -4.0, 20.0])
    rho_p = torch.tensor([-3.0, 1.0, 0.0])
    loss = denoising_ranking_loss(rho_e, rho_p, beta=0.1, margin=1.0)
    assert loss.tolist() == pytest.approx([0.5, 1.5, 0.0])
    # swapping expert and policy sample changes the value (the loss is not symmetric)
    assert denoising_ranking_loss(rho_p, rho_e, 0.1, 1.0).tolist() == pytest.approx([1.5, 0.5, 3.0])
    # γ = 0.5, β = 0.2, gap 1: 0.5 − 0.2 = 0.3
    assert denoising_ranking_loss(torch.tensor([1.0]), torch.tensor([0.0]), 0.2, 0.5).item() == pytest.approx(0.3)


def test_ranking_loss_is_the_authors_error_form() -> None:
    """With the diffusion surrogate ρ = −s·Δ, Δ = err_θ − err_ref (mean squared noise errors): the authors'
    max(Δ_e − Δ_p + m, 0) with m = γ/(βs), times βs. By hand, s = 10⁴, β = 0.1 (βs = 1000), γ = 1 (m = 0.001):
    expert errors θ 0.100, ref 0.102 (Δ_e = −0.002); policy sample θ 0.205, ref 0.200 (Δ_p = 0.005):
    diff = −0.007, max(−0.007 + 0.001, 0) = 0 (the expert gained more); swapped: 0.007 + 0.001 = 0.008 → 8."""
    s, beta, gamma = 1e4, 0.1, 1.0
    err = {"e": (0.100, 0.102), "p": (0.205, 0.200)}
    rho = {k: torch.tensor([-s * (th - ref)], dtype=torch.float64) for k, (th, ref) in err.items()}
    assert denoising_ranking_loss(rho["e"], rho["p"], beta, gamma).item() == pytest.approx(0.0, abs=1e-9)
    assert denoising_ranking_loss(rho["p"], rho["e"], beta, gamma).item() == pytest.approx(8.0)


def test_ranking_loss_gradient_raises_the_expert() -> None:
    """Descent raises ρ of the expert and lowers ρ of the policy sample while inside the margin."""
    rho_e = torch.tensor([0.0], requires_grad=True)
    rho_p = torch.tensor([0.0], requires_grad=True)
    denoising_ranking_loss(rho_e, rho_p, 0.1, 1.0).sum().backward()
    assert rho_e.grad.item() == pytest.approx(-0.1)
    assert rho_p.grad.item() == pytest.approx(0.1)


def test_replay_buffer_keeps_the_newest() -> None:
    buf = ReplayBuffer(capacity=3)

    def batch(values: list[float]) -> Batch:
        return Batch({"x": torch.tensor(values)})

    buf.push(batch([1, 2]), batch([10, 20]), batch([100, 200]))
    buf.push(batch([3, 4]), batch([30, 40]), batch([300, 400]))
    assert len(buf) == 3
    assert buf.expert.x.tolist() == [20, 30, 40] and buf.policy.x.tolist() == [200, 300, 400]
    c, e, p = buf.sample(3, torch.Generator().manual_seed(0))
    assert sorted(e.x.tolist()) == [20, 30, 40]  # without replacement
    assert (e.x * 10 == p.x).all() and (c.x * 10 == e.x).all()  # triples stay aligned
    assert len(buf.sample(5, torch.Generator().manual_seed(0))[0]) == 5  # with replacement beyond its size


def test_requirements_follow_the_expert_set() -> None:
    assert DiffusionDRO.requirements(DiffusionDROConfig()) == {"online", "offline:demos"}
    assert DiffusionDRO.requirements(DiffusionDROConfig(expert="chosen")) == {"online", "offline:pairs"}
    with pytest.raises(ValueError):
        DiffusionDROConfig(expert="oracle")

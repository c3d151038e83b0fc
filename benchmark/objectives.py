"""Shared maths of preference optimisation, written once.

Every function works on per-example tensors and returns per-example losses (``[B]``) unless
it says otherwise; algorithms take the mean. Notation (docs/design.md §2): ρ = log π_θ − log
π_ref of a whole sample, β the KL strength, σ the logistic function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# -- preference losses over implicit rewards (DPO family) ---------------------------------------


def logratio_margin(pi_w: Tensor, pi_l: Tensor, ref_w: Tensor, ref_l: Tensor) -> Tensor:
    """h = ρ_w − ρ_l = (log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))."""
    return (pi_w - ref_w) - (pi_l - ref_l)


def dpo_loss(h: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """DPO (Rafailov et al. 2023): −log σ(βh); with ε = ``label_smoothing`` the conservative
    form −(1−ε) log σ(βh) − ε log σ(−βh) (TRL ``sigmoid`` with label smoothing)."""
    z = beta * h
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def robust_dpo_loss(h: Tensor, beta: float, eps: float) -> Tensor:
    """rDPO (Chowdhury et al. 2024, TRL ``robust``): [−(1−ε) log σ(βh) + ε log σ(−βh)] / (1−2ε).

    ε is the assumed label-flip rate; ε ≥ 0.5 would make the labels uninformative (or inverted) and
    the normaliser non-positive, so it raises."""
    if not 0 <= eps < 0.5:
        raise ValueError(f"rDPO's flip rate must be in [0, 0.5), got {eps}")
    z = beta * h
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


def hinge_loss(h: Tensor, beta: float) -> Tensor:
    """SLiC hinge (TRL ``hinge``): max(0, 1 − βh)."""
    return torch.relu(1 - beta * h)


def ipo_loss(h: Tensor, tau: float) -> Tensor:
    """IPO (Azar et al. 2023): (h − 1/(2τ))²."""
    return (h - 1 / (2 * tau)) ** 2


def direct_alignment_loss(h: Tensor, kind: str, beta: float) -> Tensor:
    """The direct-alignment loss ``kind`` of log-ratio margins h = ρ_w − ρ_l: ``dpo`` −log σ(βh),
    ``ipo`` (h − 1/(2β))² (unnormalised), ``hinge`` (SLiC) max(0, 1 − βh)."""
    if kind == "dpo":
        return dpo_loss(h, beta)
    if kind == "ipo":
        return ipo_loss(h, beta)
    if kind == "hinge":
        return hinge_loss(h, beta)
    raise ValueError(f"unknown direct-alignment loss {kind!r}; use dpo, ipo or hinge")


def soft_preference_loss(h: Tensor, beta: float, p: Tensor) -> Tensor:
    """Cross-entropy with a soft target p = P(w ≻ l): −p log σ(βh) − (1−p) log σ(−βh)
    (OSP's SPCE; tie labels 0.5 in Bradley–Terry reward fitting)."""
    z = beta * h
    return -p * F.logsigmoid(z) - (1 - p) * F.logsigmoid(-z)


def ranked_pairs(rewards: Tensor, mirror: bool = True, max_strength: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """OSP's ranked pairing (Zhai et al. 2024; our reading). Each prompt's K candidates are ranked by
    ``rewards [P, K]`` (best first; ties by position); ranks i < j are paired, either mirrored,
    (i, K−1−i) for i < K/2 (``mirror``), or all of them, with the preference strength

        p_ij = ½ + (p_max − ½)·(j − i)/(K − 1)      (a wider rank gap, a surer preference).

    Returns flat indices (into the P·K candidates, laid out as ``contexts.repeat(K)``) of the winners
    and of the losers, and p, each ``[P·M]``, prompt by prompt."""
    n, k = rewards.shape
    order = torch.sort(rewards, dim=-1, descending=True, stable=True).indices  # [P, K]: rank → candidate
    if mirror:
        hi = torch.arange(k // 2, device=rewards.device)
        lo = k - 1 - hi
    else:
        hi, lo = torch.triu_indices(k, k, offset=1, device=rewards.device)
    offset = torch.arange(n, device=rewards.device)[:, None] * k
    strength = 0.5 + (max_strength - 0.5) * (lo - hi).to(rewards.dtype) / (k - 1)
    return (offset + order[:, hi]).flatten(), (offset + order[:, lo]).flatten(), strength.repeat(n)


def implicit_reward(pi: Tensor, ref: Tensor, beta: float) -> Tensor:
    """DPO's implicit reward r = β (log π_θ − log π_ref)."""
    return beta * (pi - ref)


def optimistic_dpo_loss(h: Tensor, rho_explore: Tensor, beta: float, alpha: float) -> Tensor:
    """SELM's optimistic DPO (Zhang et al. 2024; the authors' ``optimistic_dpo_loss``):

        −log σ(βh) + α·β·ρ_θ(x, y_ref),   h = ρ_θ(x, y_w) − ρ_θ(x, y_l),   y_ref ~ π_ref,

    minimising the second term lowers the likelihood of what π_ref already generates (exploration);
    α = 0 is DPO."""
    return dpo_loss(h, beta) + alpha * beta * rho_explore


# -- GDPO (GFlowNet balance) --------------------------------------------------------------------


def gflownet_balance_loss(log_flow: Tensor, logp: Tensor, logp_ref: Tensor, log_reward: Tensor, mask: Tensor,
                          subtb_lambda: float | None = None) -> Tensor:
    """GFlowNet balance of one trajectory per row (GDPO, Kwon et al. 2024), target π ∝ π_ref·R̃.

    Forward-looking flows F(s_t) = exp(φ_t)·π_ref(a_{<t}|s_0) (P_B = 1 on a tree), so the per-step
    detailed-balance residual, with the terminal flow fixed to the label's log-reward log R̃(y), is

        δ_t = φ_t + log π_θ(a_t|s_t) − log π_ref(a_t|s_t) − φ_{t+1},   φ_L := log R̃(y)

    (L = the row's valid steps; ``mask`` is a prefix mask). ``subtb_lambda=None``: detailed balance
    Σ_t δ_t². Otherwise sub-trajectory balance (Madan et al. 2023) over all 0 ≤ i < j ≤ L:
    Σ λ^{j−i} (Σ_{i≤t<j} δ_t)² / Σ λ^{j−i}. Tensors ``[B, T]``, ``log_reward [B]``; returns ``[B]``.
    """
    valid = mask.bool()
    nxt = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1) & valid
    shifted = torch.cat([log_flow[:, 1:], log_flow[:, -1:]], dim=1)
    next_flow = torch.where(nxt, shifted, log_reward[:, None].to(log_flow.dtype))
    delta = (log_flow + logp - logp_ref - next_flow) * valid.to(logp.dtype)
    if subtb_lambda is None:
        return (delta**2).sum(-1)
    cum = torch.cat([torch.zeros_like(delta[:, :1]), delta.cumsum(-1)], dim=1)  # C_k = Σ_{t<k} δ_t
    diff = cum[:, None, :] - cum[:, :, None]  # [B, i, j] = C_j − C_i
    k = torch.arange(cum.shape[1], device=cum.device)
    length = (k[None, :] - k[:, None]).to(cum.dtype)
    end_ok = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)  # node j exists iff j ≤ L
    w = torch.where(length > 0, subtb_lambda**length.clamp(min=0), torch.zeros_like(length))[None] * end_ok[:, None, :]
    return (w * diff**2).sum((1, 2)) / w.sum((1, 2))


# -- CPL ----------------------------------------------------------------------------------------


def cpl_loss(adv_w: Tensor, adv_l: Tensor, bias: float) -> Tensor:
    """CPL's biased BCE (Hejna et al. 2024) for a preferred segment: −log σ(A_w − λ A_l), with
    A = α Σ_t log π(a_t|s_t) and λ = ``bias`` ∈ (0, 1] the conservative ("contrastive") bias;
    λ = 1 is the unbiased regret-preference likelihood."""
    return -F.logsigmoid(adv_w - bias * adv_l)


# -- SeRA ---------------------------------------------------------------------------------------


def implicit_reward_margin(pi_w: Tensor, pi_l: Tensor, ref_w: Tensor, ref_l: Tensor, beta: float) -> Tensor:
    """SeRA's implicit reward margin (Ko et al. 2024): IRM = r_θ(x, y_w) − r_θ(x, y_l) with
    r_θ = β (log π_θ − log π_ref), i.e. β·h of :func:`logratio_margin`."""
    return implicit_reward(pi_w, ref_w, beta) - implicit_reward(pi_l, ref_l, beta)


def select_by_margin(margin: Tensor, ratio: float, largest: bool = True) -> Tensor:
    """Indices (ascending) of the k = max(1, round(ratio·n)) pairs with the largest margins
    (``largest=False``: the smallest); ties keep the earlier pair (a stable sort)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"the kept ratio must be in (0, 1], got {ratio}")
    k = max(1, round(ratio * margin.numel()))
    order = torch.sort(margin.flatten(), descending=largest, stable=True).indices
    return order[:k].sort().values


def best_and_worst(rewards: Tensor) -> tuple[Tensor, Tensor]:
    """Rewards ``[P, N]`` of N candidates per prompt → flat indices (into the P·N candidates, laid
    out as ``contexts.repeat(N)``) of each prompt's argmax and argmin (first one on a tie)."""
    offset = torch.arange(rewards.shape[0], device=rewards.device) * rewards.shape[1]
    return offset + rewards.argmax(-1), offset + rewards.argmin(-1)


# -- DRO ----------------------------------------------------------------------------------------


def dro_policy_loss(rho: Tensor, reward: Tensor, value: Tensor, tau: float) -> Tensor:
    """DRO-V's policy loss (Richemond et al. 2024): −ρ·(r − V(x)) + (τ/2) ρ², the advantage r − V
    held fixed (∇ρ = ∇ log π, so the first term is the policy gradient −∇log π·(r − V)). Its
    gradient is 1/τ times the θ-gradient of the joint objective ½ (r − V(x) − τ ρ)²."""
    return -rho * (reward - value).detach() + 0.5 * tau * rho**2


def dro_value_loss(value: Tensor, rho: Tensor, reward: Tensor, tau: float) -> Tensor:
    """DRO's value regression: ½ (r − V(x) − τ ρ)², with ρ held fixed (V → τ log Z(x) at the optimum)."""
    return 0.5 * (reward - value - tau * rho.detach()) ** 2


# -- KTO ---------------------------------------------------------------------------------------


def kto_reference_point(pi_mismatched: Tensor, ref_mismatched: Tensor) -> Tensor:
    """z₀ = clamp(mean ρ over mismatched (x, y') pairs, min=0), detached (TRL ``kto``)."""
    return (pi_mismatched - ref_mismatched).mean().clamp(min=0).detach()


def kto_loss(
    rho: Tensor, desirable: Tensor, z0: Tensor | float, beta: float, w_desirable: float = 1.0,
    w_undesirable: float = 1.0,
) -> Tensor:
    """KTO (Ethayarajh et al. 2024), Eq. 7 as in TRL: desirable λ_D(1 − σ(β(ρ − z₀))),
    undesirable λ_U(1 − σ(β(z₀ − ρ)))."""
    d = desirable.to(torch.bool)
    loss_d = w_desirable * (1 - torch.sigmoid(beta * (rho - z0)))
    loss_u = w_undesirable * (1 - torch.sigmoid(beta * (z0 - rho)))
    return torch.where(d, loss_d, loss_u)


def kto_slope(rho: Tensor, z0: Tensor | float, beta: float) -> Tensor:
    """How much gradient KTO's value function still passes: 4 σ(u) σ(−u), u = β(ρ − z₀), the slope of
    σ relative to its peak. 1 where ρ = z₀; near 0 where the sigmoid saturates (|u| ≳ 5) and the example
    no longer moves the policy. The same for desirable and undesirable examples (σ′ is even)."""
    u = beta * (rho - z0)
    return 4 * torch.sigmoid(u) * torch.sigmoid(-u)


# -- reward models -----------------------------------------------------------------------------


def bradley_terry_loss(r_w: Tensor, r_l: Tensor, margin: Tensor | float = 0.0, center: float = 0.0) -> Tensor:
    """Reward-model loss (TRL RewardTrainer): −log σ(r_w − r_l − m) + c·(r_w + r_l)²."""
    loss = -F.logsigmoid(r_w - r_l - margin)
    if center:
        loss = loss + center * (r_w + r_l) ** 2
    return loss


# -- KL estimators (Schulman's k1, k2, k3) ------------------------------------------------------


def kl_k1(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """k1 = log π − log π_ref (unbiased on samples from π)."""
    return logp - logp_ref


def kl_k2(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """k2 = ½ (log π − log π_ref)²."""
    return 0.5 * (logp - logp_ref) ** 2


def kl_k3(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """k3 = (e^{−d} − 1) + d with d = log π − log π_ref (unbiased, non-negative)."""
    d = logp - logp_ref
    return torch.expm1(-d) + d


# -- RL building blocks ------------------------------------------------------------------------


def gae(rewards: Tensor, values: Tensor, dones: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over ``[B, T]`` tensors; ``values`` is ``[B, T+1]``.
    Returns (advantages, returns)."""
    b, t = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    for i in reversed(range(t)):
        nonterminal = 1.0 - dones[:, i].to(rewards.dtype)
        delta = rewards[:, i] + gamma * values[:, i + 1] * nonterminal - values[:, i]
        last = delta + gamma * lam * nonterminal * last
        adv[:, i] = last
    return adv, adv + values[:, :t]


def leave_one_out_advantages(rewards: Tensor) -> Tensor:
    """RLOO (Ahmadian et al. 2024): rewards ``[P, k]`` of k samples per prompt →
    A_i = R_i − (Σ_{j≠i} R_j)/(k − 1) = k/(k−1)·(R_i − mean_j R_j)."""
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("leave-one-out needs at least 2 samples per prompt")
    return (rewards - rewards.mean(-1, keepdim=True)) * k / (k - 1)


def clipped_surrogate_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, eps: float) -> Tensor:
    """PPO's clipped objective (Schulman et al. 2017), as a loss:
    max(−A·r, −A·clip(r, 1−ε, 1+ε)), r = exp(log π − log π_old)."""
    ratio = torch.exp(logp - old_logp)
    return torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))


def pair_proximity(policy: Tensor, chosen: Tensor, rejected: Tensor, eps: float = 1e-8) -> Tensor:
    """Inverse alignment's (FRFT, Krishna & Sahoo 2024) selection score of an offline pair: how
    close its responses lie to the frozen policy's response for the same prompt, the mean cosine
    similarity ½[cos(f_π, f_w) + cos(f_π, f_l)] of feature vectors ``[B, D]`` (standardised by the
    caller); ``[B]`` in [−1, 1]. A zero vector has similarity 0 to everything."""
    def cos(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps)

    return 0.5 * (cos(policy, chosen) + cos(policy, rejected))


def awr_weights(adv: Tensor, temperature: float, max_weight: float = 100.0) -> Tensor:
    """IQL's advantage-weighted regression weights min(exp(β·A), w_max) (CORL: β = 3, w_max = 100)."""
    return torch.exp(temperature * adv).clamp(max=max_weight)


def expectile_loss(u: Tensor, tau: float) -> Tensor:
    """IQL's asymmetric L2: |τ − 1(u<0)| u² (Kostrikov et al. 2022, CORL ``asymmetric_l2_loss``)."""
    return torch.abs(tau - (u < 0).to(u.dtype)) * u**2


def whiten(x: Tensor, eps: float = 1e-8) -> Tensor:
    return (x - x.mean()) / (x.std() + eps) if x.numel() > 1 else x - x.mean()


# -- offline RL on learned rewards (DTR) --------------------------------------------------------


def ensemble_z_normalise(rewards: Tensor, mask: Tensor) -> Tensor:
    """DTR's ensemble normalisation (Tu et al. 2025): each member e's per-step rewards z-scored
    over the dataset's valid steps, then averaged, r̃ = (1/E) Σ_e (r_e − mean_e)/std_e.
    ``rewards [E, B, T]``, ``mask [B, T]``; returns ``[B, T]`` (0 on masked steps)."""
    valid = rewards[:, mask]  # [E, N]
    mean, std = valid.mean(-1), valid.std(-1).clamp_min(1e-6)
    z = (rewards - mean[:, None, None]) / std[:, None, None]
    return z.mean(0) * mask.to(z.dtype)


def n_step_targets(rewards: Tensor, mask: Tensor, bootstrap: Tensor, discount: float) -> Tensor:
    """DTR's n-step critic targets over a segment of L = Σ mask valid steps, bootstrapped at its
    last step (the reference code's ``k_rewards`` with ``use_discount``; no terminal states):

        y_t = Σ_{t'=t}^{L−2} γ^{t'−t} r_{t'} + γ^{L−1−t} · Q̄(s_{L−1}, â_{L−1}),     t < L − 1

    ``rewards``, ``mask`` ``[B, T]``, ``bootstrap`` ``[B]`` (the target value at the last valid
    step). Returns ``[B, T]``; entries at t ≥ L − 1 are 0 (they have no target)."""
    length = mask.sum(-1, keepdim=True)
    t = torch.arange(rewards.shape[1], device=rewards.device)[None, :]
    inside = (t < length - 1).to(rewards.dtype)  # steps before the last valid one
    r = rewards * inside
    # discounted suffix sums of r up to step L−2: G_t = r_t + γ G_{t+1}
    g = torch.zeros_like(r)
    acc = torch.zeros_like(r[:, 0])
    for i in reversed(range(r.shape[1])):
        acc = r[:, i] + discount * acc
        g[:, i] = acc
    tail = discount ** (length - 1 - t).clamp_min(0).to(rewards.dtype)
    return (g + tail * bootstrap[:, None]) * inside


def normalised_q_loss(q_actor: Tensor, q_scale: Tensor) -> Tensor:
    """The Q term of DTR's (and TD3+BC's) actor loss, −Q_i(s, â) / mean|Q_j(s, â)| with the
    scale detached, so that its weight η means the same whatever the rewards' scale. Per element."""
    return -q_actor / q_scale.abs().mean().detach().clamp_min(1e-6)


def linear_ramp(step: int, total: int) -> float:
    """c(t) = t / total, clipped to [0, 1]: DTR's schedule of the Q term (0 at the start, 1 at the end)."""
    return min(1.0, max(0.0, step / max(1, total)))


def return_to_go_rate(rewards: Tensor, mask: Tensor) -> Tensor:
    """g_t = (Σ_{t' ≥ t} r_{t'}) / (L − t): the mean reward still to come in the sample, ``[B, T]``."""
    r = rewards * mask
    to_go = r.flip(1).cumsum(1).flip(1)
    remaining = mask.flip(1).cumsum(1).flip(1).clamp_min(1)
    return to_go / remaining * mask


# -- HyPO (reverse KL on the policy's own samples) ------------------------------------------------


def reverse_kl_reinforce_loss(logp: Tensor, logp_ref: Tensor, k: int, baseline: str = "loo") -> Tensor:
    """REINFORCE surrogate of KL(π_θ ‖ π_ref) on the policy's own samples (HyPO, Song et al. 2024).

    For y ~ π_θ(·|x), ∇_θ KL = E[ρ ∇log π_θ(y|x)] with ρ = log π_θ(y|x) − log π_ref(y|x) (the score
    function has mean 0, so a baseline b that does not depend on y leaves it unbiased):

        L_ij = sg(ρ_ij − b_ij) · log π_θ(y_ij|x_i),       ∇ E[L] = E[(ρ − b) ∇log π_θ] = ∇ KL(π_θ ‖ π_ref),

    over K = ``k`` samples per prompt laid out prompt by prompt (``contexts.repeat(k)``), ``[P·K]``.
    ``baseline``: ``loo`` b_ij = mean_{l≠j} ρ_il (RLOO; needs K ≥ 2), ``mean`` the prompt's mean
    (including y_ij itself: scales the gradient by (K−1)/K), ``batch`` the mean over all samples,
    ``none`` b = 0. Descent lowers log π_θ of the samples whose ρ lies above the baseline. Per sample."""
    rho = (logp - logp_ref.to(logp.device)).detach().view(-1, k)
    if baseline == "loo":
        adv = leave_one_out_advantages(rho)
    elif baseline == "mean":
        adv = rho - rho.mean(-1, keepdim=True)
    elif baseline == "batch":
        adv = rho - rho.mean()
    elif baseline == "none":
        adv = rho
    else:
        raise ValueError(f"unknown KL baseline {baseline!r}; use loo, mean, batch or none")
    return adv.flatten() * logp


def denoising_ranking_loss(rho_expert: Tensor, rho_policy: Tensor, beta: float, margin: float) -> Tensor:
    """Diffusion-DRO's hinge ranking loss (Wu et al. 2025, arXiv 2510.18353; the authors' ``train.py``):
    an expert sample must gain more likelihood over π_ref than the policy's own sample of the same
    context,

        L = max(0, γ − β·(ρ_θ(x, y_e) − ρ_θ(x, y_p))),   ρ_θ = log π_θ − log π_ref.

    With the diffusion surrogate ρ = −s·Δ, Δ = ‖ε − ε_θ(x_t, t, c)‖² − ‖ε − ε_ref(x_t, t, c)‖², this is
    β·s·max(0, Δ_e − Δ_p + m), the authors' ``max(diff + margin, 0)`` with ``diff = Δ_e − Δ_p`` and
    m = γ/(β·s). Per example."""
    return torch.relu(margin - beta * (rho_expert - rho_policy))


# -- SoPo ---------------------------------------------------------------------------------------


def sopo_loss(rho_w: Tensor, rho_l: Tensor, beta: float, weight_w: Tensor | float = 1.0,
              keep_l: Tensor | float = 1.0) -> Tensor:
    """SoPo's semi-online DPO loss (Tan et al. 2025, arXiv 2412.05095, as in the authors' code): a
    preferred y_w from the offline data against an unpreferred y_l the current policy generated,

        L = −log σ(β [w·ρ_θ(x, y_w) − m·ρ_θ(x, y_l)]),   ρ_θ = log π_θ − log π_ref,

    w ≥ 1 the preferred sample's weight (:func:`sopo_positive_weight`) and m ∈ {0, 1} whether y_l is
    kept (a "valuable" unpreferred sample); m = 0 leaves −log σ(β·w·ρ_w). w = m = 1 is DPO on the pair."""
    return -F.logsigmoid(beta * (weight_w * rho_w - keep_l * rho_l))


def sopo_positive_weight(positive: Tensor, online: Tensor, eps: float = 1e-8) -> Tensor:
    """SoPo's weight of each offline preferred sample (the authors' code), w = 2 − min_k s_k, where
    s_k = (1 + cos(f_w, f_k))/2 ∈ [0, 1] is its similarity to the k-th online sample of its prompt, from
    embeddings ``positive [P, D]`` and ``online [P, K, D]``: a positive unlike every sample the policy
    drew counts up to twice. Returns ``[P]`` in [1, 2]."""
    norms = (positive.norm(dim=-1)[:, None] * online.norm(dim=-1)).clamp_min(eps)
    cos = (positive[:, None, :] * online).sum(-1) / norms
    return 2 - ((1 + cos) / 2).min(dim=-1).values


def temporal_smoothness(rewards: Tensor, mask: Tensor) -> Tensor:
    """MARLHF's smoothing of learned step rewards along time (Zhang et al. 2024):
    Σ_t (r̂_{t+1} − r̂_t)² over consecutive valid steps, per sample ``[B]``; ``rewards`` is ``[B, T]``
    or ``[B, T, ...]`` (e.g. per agent; trailing axes are summed), ``mask [B, T]``."""
    both = (mask[:, 1:] & mask[:, :-1]).to(rewards.dtype)
    sq = (rewards[:, 1:] - rewards[:, :-1]) ** 2
    if sq.dim() > 2:
        sq = sq.flatten(2).sum(-1)
    return (sq * both.to(sq.device)).sum(-1)

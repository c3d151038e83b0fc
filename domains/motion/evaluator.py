"""The text-to-motion evaluator "as the field reports it": Guo et al. (2022, *Generating Diverse and
Natural 3D Human Motions from Text*, CVPR) protocol, as run by MDM, MotionGPT and SoPo.

**The protocol.** A text encoder and a motion encoder are trained contrastively to map a prompt and
its motion close together in a shared space; every metric is then computed on those embeddings:

- ``r_precision_top1/2/3``: in batches of 32 (text, motion) pairs, for each motion rank the 32 texts
  by Euclidean distance; the share of motions whose own text is within the top 1, 2, 3;
- ``mm_dist`` (their "Matching score" / "MM-Dist"): mean Euclidean distance between a motion and its
  own text;
- ``fid``: Fréchet distance between the Gaussians fitted to generated and real motion embeddings;
- ``diversity``: mean distance between two random sets of 300 motions, paired one to one;
- ``multimodality``: per text, mean distance between pairs of its generated motions, averaged over
  texts (the paper: 10 pairs out of 30 motions for each of 100 texts).

Each metric is the mean over ``replications`` (20 in the paper) with a 95% Student-t half-width
(``<name>_ci``; the papers' "± 95% confidence interval over 20 replications"). The same metrics on
the ground-truth motions of the same prompts are reported under ``real_`` (the papers' "Real" row).

**What is replicated here.** :func:`evaluate` takes K samples per context, generated once. Each
replication (i) uses one of the K samples per context, drawn at random, wherever the protocol uses
one motion per text (R-precision, MM-Dist, FID, Diversity), (ii) re-draws R-precision's shuffle and
Diversity's and Multimodality's pairs. Guo et al. regenerate every motion in every replication, so
their interval also covers the generator's randomness; ours covers it only through the choice among
the K samples (with K = 1 not at all: only the evaluation draws then vary).

**What differs from Guo et al.**

- *Our own small encoders*, trained on this benchmark's prompts and motions (not their GloVe + POS
  bi-GRU and conv + bi-GRU encoders on HumanML3D, 512-d): absolute values are on our scale and are
  comparable only within this benchmark, never with the papers' tables.
- *InfoNCE* (symmetric, CLIP-style, on unit-norm embeddings) instead of their margin-based
  contrastive loss (in their released code: margin 10, one shifted-batch negative per pair): every in-batch pair is a
  negative, so a few hundred steps suffice, and on the unit sphere Euclidean distance is monotone in
  the cosine the loss sharpens, so the metrics rank exactly as the loss was trained to. The price:
  distances lie in [0, 2], so Diversity and MM-Dist are on a different scale from the papers'.
- *Disjoint pairs*: Diversity's two sets are disjoint and Multimodality's pairs are of distinct
  samples; the released code draws both index sets independently, so a motion is sometimes paired
  with itself (distance 0), which biases both slightly low.
- *Small N*: fewer than 32 contexts use R-precision batches of min(32, N); Diversity uses
  min(300, N // 2) pairs; leftovers after whole batches are dropped as by the papers' loaders
  (``drop_last``) but re-drawn by the next replication's shuffle. FID from N ≈ 100 samples in a 64-d
  space carries a large positive bias: compare FIDs only at equal N.
- *Real FID* is between two random halves of the real motions (theirs: against a second pass over
  the test set, whose random crops and caption choices differ); at N/2 against N/2 it is a noise
  floor above the floor of the generated FID at N against N.
- *Fewer replications* in the quick presets (``EvaluatorConfig.replications``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.evaluation import t_half_width
from benchmark.metrics import frechet_distance
from benchmark.preparation import FitConfig, fit
from benchmark.progress import Progress

Layout = Literal["repeat", "interleave"]


@dataclass(frozen=True)
class EvaluatorConfig:
    """The evaluator's encoders, its contrastive training and the evaluation protocol."""

    dim: int = 64
    """Dimension of the shared text–motion embedding space (Guo et al.: 512)."""
    hidden: int = 64
    """Width of the text bi-GRU and the motion conv stack (Guo et al.'s code: 512 for the text bi-GRU and
    the movement convs, 1024 for the motion bi-GRU)."""
    steps: int = 300
    """Contrastive training steps (no paper default: theirs trains on HumanML3D to convergence)."""
    batch: int = 128
    """Matched pairs per training step; the other B − 1 pairs are each pair's InfoNCE negatives."""
    lr: float = 3e-3
    """Peak learning rate of the one-cycle AdamW schedule (constant below 20 steps)."""
    temperature: float = 0.1
    """Temperature of the InfoNCE loss on cosine similarities (CLIP learns it from 0.07; fixed here;
    Guo et al. use a margin loss instead, with margin 10)."""
    replications: int = 20
    """Replications of the evaluation draws averaged per metric (20 in the paper)."""
    r_precision_batch: int = 32
    """Pairs per R-precision batch: each motion's text ranked among this many (32 in the paper)."""
    r_precision_top: int = 3
    """R-precision reported at top-1 … top-k (k = 3 in the paper)."""
    diversity_pairs: int = 300
    """Motion pairs drawn for Diversity (300 in the paper; at most N // 2 here)."""
    multimodality_pairs: int = 10
    """Sample pairs drawn per text for Multimodality (10 in the paper, from 30 samples of 100 texts)."""
    embed_chunk: int = 1024
    """Rows embedded at a time by ``embed_text`` / ``embed_motion`` (memory only; no effect on values)."""


class TextEncoder(nn.Module):
    """Token ids ``[N, L]`` (0 = padding, anywhere) → unit-norm ``[N, dim]``: word embeddings, a
    bidirectional GRU over the non-pad tokens (packed), masked mean-pooling, a linear projection."""

    def __init__(self, vocab: int, dim: int, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden, padding_idx=0)
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * (hidden // 2), dim)

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = left_align(tokens)
        mask = tokens != 0
        lengths = mask.sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        states, _ = nn.utils.rnn.pad_packed_sequence(packed, batch_first=True, total_length=tokens.shape[1])
        pooled = (states * mask[..., None]).sum(1) / lengths[:, None]
        return F.normalize(self.project(pooled), dim=-1)


def left_align(tokens: Tensor) -> Tensor:
    """The non-pad tokens of each row moved to its front, in order (padding then trails)."""
    order = (tokens == 0).to(torch.int8).argsort(dim=1, stable=True)
    return tokens.gather(1, order)


class MotionEncoder(nn.Module):
    """Motions ``[N, D, F]`` (features × frames) → unit-norm ``[N, dim]``: a 1-D conv stack over frames
    that downsamples time by 4 (as Guo et al.'s movement encoder), mean- and max-pooling over time, a
    linear projection."""

    def __init__(self, features: int, dim: int, hidden: int = 64):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(features, hidden, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.project = nn.Linear(2 * hidden, dim)

    def forward(self, motions: Tensor) -> Tensor:
        h = self.convs(motions)
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=-1)
        return F.normalize(self.project(pooled), dim=-1)


class MotionEvaluator(nn.Module):
    """The paired text and motion encoders into one shared, unit-norm embedding space; their sizes
    (``dim``, ``hidden``) and the embedding chunk come from ``cfg``, so that a stored state loads into
    ``MotionEvaluator(vocab, features, cfg)`` with the config it was trained with."""

    def __init__(self, vocab: int, features: int, cfg: EvaluatorConfig | None = None):
        super().__init__()
        cfg = cfg or EvaluatorConfig()
        self.text = TextEncoder(vocab, cfg.dim, cfg.hidden)
        self.motion = MotionEncoder(features, cfg.dim, cfg.hidden)
        self.chunk = cfg.embed_chunk

    def forward(self, tokens: Tensor, motions: Tensor) -> tuple[Tensor, Tensor]:
        """Both embeddings, with gradients (training)."""
        return self.text(tokens), self.motion(motions)

    def embed_text(self, tokens: Tensor) -> Tensor:
        """``[N, L]`` token ids → ``[N, dim]`` text embeddings (no grad, eval mode, chunked)."""
        return self._embed(self.text, tokens)

    def embed_motion(self, motions: Tensor) -> Tensor:
        """``[N, D, F]`` motions → ``[N, dim]`` motion embeddings (no grad, eval mode, chunked)."""
        return self._embed(self.motion, motions.float())

    @torch.no_grad()
    def _embed(self, encoder: nn.Module, x: Tensor) -> Tensor:
        was_training = self.training
        self.eval()
        try:
            return torch.cat([encoder(x[i : i + self.chunk]) for i in range(0, len(x), self.chunk)])
        finally:
            self.train(was_training)


# ---------------------------------------------------------------------------------------------------
# Training


def info_nce(text_emb: Tensor, motion_emb: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021) over a batch of matched pairs: the mean of the
    cross-entropies of text→motion and motion→text classification with logits cos(t_i, m_j) / τ, the
    matched pair i = j the target. Embeddings are unit-norm, so the cosine is their dot product."""
    logits = text_emb @ motion_emb.T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def train_evaluator(tokens: Tensor, motions: Tensor, vocab: int, cfg: EvaluatorConfig, generator: torch.Generator,
                    progress: Progress | None = None) -> MotionEvaluator:
    """Train a :class:`MotionEvaluator` on matched pairs (``tokens[i]`` describes ``motions[i]``) with
    :func:`info_nce`, each step on ``cfg.batch`` distinct pairs. Deterministic given ``generator``: it
    seeds the initialisation (inside a forked RNG: the global torch RNG is left as it was) and draws
    every batch."""
    if tokens.ndim != 2 or motions.ndim != 3 or len(tokens) != len(motions):
        raise ValueError(f"want tokens [N, L] and motions [N, D, F] of one N; got {tuple(tokens.shape)} and "
                         f"{tuple(motions.shape)}")
    n, batch = len(tokens), min(cfg.batch, len(tokens))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MotionEvaluator(vocab, motions.shape[1], cfg).to(motions.device)
    motions = motions.float()

    def contrastive_loss(step: int) -> Tensor:
        idx = torch.randperm(n, generator=generator)[:batch]
        return info_nce(*model(tokens[idx], motions[idx]), cfg.temperature)

    schedule = "onecycle" if cfg.steps >= 20 else "constant"  # torch's one-cycle breaks below ~10 steps
    fit_cfg = FitConfig(cfg.steps, cfg.lr, schedule=schedule, log_every=max(1, cfg.steps // 10))
    fitted = fit(model, contrastive_loss, fit_cfg, progress or Progress(),
                 "motion: train the evaluator (text–motion InfoNCE)", metric="infonce")
    return fitted.model


# ---------------------------------------------------------------------------------------------------
# Metrics on embeddings


def r_precision(text_emb: Tensor, motion_emb: Tensor, batch: int = 32, top: int = 3,
                generator: torch.Generator | None = None, per: Literal["motion", "text"] = "motion") -> Tensor:
    """R-precision (Guo et al. 2022's evaluation metrics): shuffle the N pairs (none when ``generator`` is None), split
    them into ⌊N / b⌋ batches of b = min(``batch``, N) pairs (the remainder dropped, as the papers'
    loaders do), and within a batch rank, for each motion, the b texts by Euclidean distance; top-k
    accuracy is the share of motions whose own text ranks within the first k. Returns
    ``[top]`` float64: top-1 … top-``top``.

    ``per="text"`` ranks instead, for each text, the b motions: what the released code
    (``calculate_R_precision(text, motion)`` in Guo et al.'s and MDM's evaluation) computes; the paper
    describes the per-motion pool. Exact ties are broken at random in expectation (a collapsed
    evaluator scores chance, not 1)."""
    n = _same_length(text_emb, motion_emb)
    size = min(batch, n)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    groups = order[: n // size * size].view(-1, size)
    dist = torch.cdist(motion_emb[groups].double(), text_emb[groups].double(),
                       compute_mode="donot_use_mm_for_euclid_dist")  # [G, motion, text]
    if per == "text":
        dist = dist.transpose(1, 2)
    return top_k_hits(dist, top).mean(dim=(0, 1))


def top_k_hits(dist: Tensor, top: int) -> Tensor:
    """``dist [G, b, b]`` (query × candidate, the match on the diagonal) → ``[G, b, top]``: the
    probability that the match ranks within the first k = 1 … ``top`` under a random order of exact
    ties: with s candidates strictly closer and t others tied, (clamp(k − s, 0, t + 1)) / (t + 1)."""
    own = dist.diagonal(dim1=1, dim2=2)[..., None]
    others = ~torch.eye(dist.shape[-1], dtype=torch.bool, device=dist.device)
    closer = (dist < own).sum(-1, keepdim=True)
    tied = ((dist == own) & others).sum(-1, keepdim=True)
    k = torch.arange(1, top + 1, device=dist.device)
    return (k - closer).clamp(min=0).minimum(tied + 1).double() / (tied + 1)


def mm_dist(text_emb: Tensor, motion_emb: Tensor) -> float:
    """MM-Dist (Guo et al.'s "multimodal distance", MDM's "Matching score"): the mean Euclidean distance
    between each motion's embedding and its own text's, (1/N) Σ_i ‖t_i − m_i‖."""
    _same_length(text_emb, motion_emb)
    return float((text_emb.double() - motion_emb.double()).norm(dim=1).mean())


def fid(gen_emb: Tensor, real_emb: Tensor) -> float:
    """FID on motion embeddings (Guo et al. 2022): the Fréchet distance ‖μ_g − μ_r‖² +
    tr(Σ_g + Σ_r − 2(Σ_g Σ_r)^½) between Gaussians fitted to generated and real embeddings."""
    return frechet_distance(gen_emb, real_emb)


def diversity(motion_emb: Tensor, pairs: int = 300, generator: torch.Generator | None = None) -> float:
    """Diversity (Guo et al. 2022): draw two disjoint random sets of S = min(``pairs``, N // 2) motions,
    pair them one to one, and average the Euclidean distance: (1/S) Σ_s ‖m_{a_s} − m_{b_s}‖. (The
    released code draws the two sets independently, so a motion may meet itself.)"""
    size = min(pairs, len(motion_emb) // 2)
    if size < 1:
        raise ValueError(f"diversity needs at least 2 motions, got {len(motion_emb)}")
    perm = torch.randperm(len(motion_emb), generator=generator)
    first, second = motion_emb[perm[:size]].double(), motion_emb[perm[size : 2 * size]].double()
    return float((first - second).norm(dim=1).mean())


def multimodality(grouped_emb: Tensor, pairs: int = 10, generator: torch.Generator | None = None) -> float:
    """Multimodality (Guo et al. 2022): for each of T texts with K ≥ 2 generated motions
    (``grouped_emb [T, K, dim]``), the mean Euclidean distance over ``pairs`` random pairs of two
    *distinct* samples, averaged over texts. Each draw is an ordered pair uniform over the K(K − 1)
    ordered pairs, so the estimate is unbiased for the mean distance between two samples of a text.

    Small K: the paper draws 10 pairs among 30 samples. With K = 2 every text has one pair, so the
    per-text value is that single distance whatever ``pairs`` is: exact for the samples at hand (and
    the same in every replication: its interval is then 0) but a one-sample estimate of the text's
    spread, noisy per text and reliable only averaged over many texts."""
    if grouped_emb.ndim != 3 or grouped_emb.shape[1] < 2:
        raise ValueError(f"multimodality needs [T, K ≥ 2, dim] embeddings, got {tuple(grouped_emb.shape)}")
    texts, k = grouped_emb.shape[:2]
    first = torch.randint(0, k, (texts, pairs), generator=generator)
    second = (first + torch.randint(1, k, (texts, pairs), generator=generator)) % k
    emb = grouped_emb.double()
    a = emb.gather(1, first[..., None].expand(-1, -1, emb.shape[-1]))
    b = emb.gather(1, second[..., None].expand(-1, -1, emb.shape[-1]))
    return float((a - b).norm(dim=-1).mean())


def _same_length(text_emb: Tensor, motion_emb: Tensor) -> int:
    if text_emb.shape != motion_emb.shape or text_emb.ndim != 2:
        raise ValueError(f"want matched [N, dim] text and motion embeddings, got {tuple(text_emb.shape)} and "
                         f"{tuple(motion_emb.shape)}")
    return len(text_emb)


# ---------------------------------------------------------------------------------------------------
# The protocol


def group_samples(samples: Tensor, num: int, layout: Layout) -> Tensor:
    """``[N·K, ...]`` samples → ``[N, K, ...]`` (context i, sample j). ``layout="interleave"``: sample j
    of context i at index i·K + j, ``[a, a, b, b]`` (``repeat_interleave(K)``: this project's
    ``Batch.repeat`` and ``Policy.sample``); ``"repeat"``: at j·N + i, ``[a, b, a, b]``
    (``torch.cat([batch] * K)``, ``Tensor.repeat``). No default: the two are easily confused and a
    wrong one silently scrambles R-precision, MM-Dist and Multimodality."""
    n = len(samples) // num
    if layout == "repeat":
        return samples.view(num, n, *samples.shape[1:]).transpose(0, 1)
    if layout == "interleave":
        return samples.view(n, num, *samples.shape[1:])
    raise ValueError(f"layout must be 'repeat' or 'interleave', got {layout!r}")


def evaluate(evaluator: MotionEvaluator, tokens: Tensor, generated: Tensor, real: Tensor, num: int,
             cfg: EvaluatorConfig, generator: torch.Generator, *, layout: Layout) -> dict[str, float]:
    """The Guo et al. protocol on N prompts (``tokens [N, L]``), their K = ``num`` generated motions
    (``generated [N·K, D, F]`` in ``layout``, required: ``"interleave"`` for ``Policy.sample``'s
    ``[a, a, b, b]``, ``"repeat"`` for ``torch.cat([batch] * K)``; see :func:`group_samples`) and their
    ground-truth motions (``real [N, D, F]``): ``r_precision_top1..k``, ``fid`` (against ``real``), ``mm_dist``,
    ``diversity``, ``multimodality`` (K ≥ 2 only), and ``real_r_precision_top1..k``, ``real_fid`` (two
    halves of ``real``), ``real_mm_dist``, ``real_diversity``: each the mean over ``cfg.replications``
    replications (see the module docstring), with ``<name>_ci`` its 95% Student-t half-width."""
    _check_inputs(tokens, generated, real, num)
    if cfg.replications < 1:
        raise ValueError(f"cfg.replications must be ≥ 1, got {cfg.replications}")
    text = evaluator.embed_text(tokens).cpu()  # the metrics are small: on the CPU, wherever the evaluator runs
    grouped = group_samples(evaluator.embed_motion(generated).cpu(), num, layout)
    real_emb = evaluator.embed_motion(real).cpu()
    runs = [_replication(text, grouped, real_emb, cfg, generator) for _ in range(cfg.replications)]
    return summarise(runs)


def _check_inputs(tokens: Tensor, generated: Tensor, real: Tensor, num: int) -> None:
    n = len(tokens)
    if num < 1:
        raise ValueError(f"num (samples per context) must be ≥ 1, got {num}")
    if len(generated) != n * num:
        raise ValueError(f"generated must hold N·K = {n}·{num} = {n * num} motions (K per context), "
                         f"got {len(generated)}")
    if real.shape[0] != n:
        raise ValueError(f"real must hold one ground-truth motion per context (N = {n}), got {real.shape[0]}")
    if generated.shape[1:] != real.shape[1:]:
        raise ValueError(f"generated and real motions differ in shape: {tuple(generated.shape[1:])} vs "
                         f"{tuple(real.shape[1:])}")
    if n < 4:
        raise ValueError(f"the protocol needs at least 4 contexts (FID on halves of the real motions), got {n}")


def _replication(text: Tensor, grouped: Tensor, real: Tensor, cfg: EvaluatorConfig,
                 generator: torch.Generator) -> dict[str, float]:
    """One replication: one random sample per context, fresh shuffles and pairs."""
    n, k = grouped.shape[:2]
    gen = grouped[torch.arange(n), torch.randint(0, k, (n,), generator=generator)]
    out = _one_motion_per_text(text, gen, cfg, generator)
    out["fid"] = fid(gen, real)
    if k >= 2:
        out["multimodality"] = multimodality(grouped, cfg.multimodality_pairs, generator)
    real_out = _one_motion_per_text(text, real, cfg, generator)
    halves = torch.randperm(n, generator=generator)
    real_out["fid"] = fid(real[halves[: n // 2]], real[halves[n // 2 : 2 * (n // 2)]])
    return out | {f"real_{name}": value for name, value in real_out.items()}


def _one_motion_per_text(text: Tensor, motion: Tensor, cfg: EvaluatorConfig,
                         generator: torch.Generator) -> dict[str, float]:
    """R-precision, MM-Dist and Diversity of one motion per text."""
    hits = r_precision(text, motion, cfg.r_precision_batch, cfg.r_precision_top, generator)
    out = {f"r_precision_top{i + 1}": float(h) for i, h in enumerate(hits)}
    out["mm_dist"] = mm_dist(text, motion)
    out["diversity"] = diversity(motion, cfg.diversity_pairs, generator)
    return out


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the mean over replications and ``<name>_ci``, the 95% Student-t half-width of that
    mean (NaN with a single replication; 0 when every replication agrees)."""
    out: dict[str, float] = {}
    for name in runs[0]:
        values = torch.tensor([run[name] for run in runs], dtype=torch.float64)
        out[name] = float(values.mean())
        out[f"{name}_ci"] = 0.0 if bool((values == values[0]).all()) and len(values) > 1 else t_half_width(values)
    return out


"""The motion domain: text-to-motion diffusion (an MDM-style transformer) on procedurally generated
human motions, with a hidden kinematic oracle and the field's evaluator.

Preparation (``build``), all deterministic and local (nothing is downloaded):

1. prompts: a meaning (action, direction, speed, body side, repetitions) phrased by one of several
   templates (:mod:`domains.motion.motions`); a share of the meanings is held out for evaluation;
2. the reference's training set: motions of a **mixture** of behaviour sources of graded quality
   (clean, jittered, foot skating, wrong direction, truncated, wrong action, frozen), as
   HumanML3D-style features (:mod:`domains.motion.skeleton`) normalised per feature, so that the
   reference is mediocre and alignment has room;
3. the reference: :class:`domains.motion.model.MotionDenoiser` (MDM: x̂₀-prediction, a condition
   token, classifier-free guidance with 10% condition dropout) trained with the shared diffusion
   fit of :mod:`benchmark.preparation`; its EMA is the reference, an early EMA a weaker behaviour;
4. the evaluator (Guo et al. 2022; :mod:`domains.motion.evaluator`): contrastive text and motion
   encoders trained on clean generated motions and frozen — hidden, for evaluation only;
5. the offline pool: per pool prompt, samples of the reference (with and without guidance) and of
   the early checkpoint, and motions of the behaviour sources; the expert demonstrations are the
   top of the reference's own samples under the oracle.

**Hidden oracle**: text match (action, direction, speed, side, repetitions decoded from the joint
trajectories by analytic rules) plus physical plausibility (bone-length constancy, foot skating,
ground penetration, jerk) — :func:`domains.motion.motions.score`. **Metrics**, besides the
benchmark's: R-precision top-1/2/3, FID, MM-Dist, Diversity and MultiModality in the evaluator's
embedding (mean and 95% interval over ``eval_replications`` replications; the papers use 20), the
ground truth's under ``real_*``, and the oracle's components as ``oracle_*``.

Samples are ``samples.motion`` ``[B, D, F]``: normalised features × frames (channels first, as an
image's). The policy is :class:`benchmark.policies.diffusion.DiffusionPolicy` with x̂₀-prediction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.api import Batch, Budget, Contexts, DomainSpec, Samples
from benchmark.diffusion_domain import GEN_SOURCES, DiffusionConfig, DiffusionDomain
from benchmark.domain import OfflinePool, Oracle
from benchmark.preparation import (
    PoolPart,
    assemble_pool,
    clone_state,
    sample_pool_parts,
)
from benchmark.progress import Progress
from domains.motion import motions as M
from domains.motion import skeleton as K
from domains.motion.evaluator import EvaluatorConfig, MotionEvaluator, evaluate, train_evaluator
from domains.motion.model import MotionDenoiser, motion_trunk


@dataclass
class MotionConfig(DiffusionConfig):
    frames: int = 48
    """Frames per motion at 20 fps (HumanML3D clips are up to 196; ours 40–60, 2–3 s)."""
    dim: int = 64
    """Transformer width of the denoiser (MDM: 512)."""
    layers: int = 3
    """Transformer layers of the denoiser (MDM: 8)."""
    heads: int = 4
    """Attention heads of the denoiser (MDM: 4)."""
    ref_steps: int = 1500
    """Optimiser steps of the reference's training."""
    ref_lr: float = 1e-3
    """Peak learning rate of the reference's training."""
    logp_scale: float = 1e3
    """s in log_prob = −s·mean‖x₀ − x̂₀‖² (image: 10⁴). Calibrated, not from a paper: at 10⁴ one Adam step
    at lr 10⁻⁴ moves the MDM transformer's log-ratios far past IPO's target 1/(2τ) and IPO's unsaturated
    squared loss oscillates (it learned backwards in the conformance check); at 10³ it does not."""
    ref_data: int = 4096
    """Generated training motions of the reference (a fixed set)."""
    mixture: dict[str, float] = field(default_factory=lambda: {
        "clean": 0.3, "jittered": 0.15, "foot_skating": 0.15, "wrong_direction": 0.1, "truncated": 0.1,
        "wrong_action": 0.1, "frozen": 0.1})
    """Shares of the behaviour sources in the reference's training data and the pool's generated motions."""
    evaluator_data: int = 4096
    """Clean (motion, phrasing) pairs the evaluator's encoders are trained on."""
    evaluator_steps: int = 400
    """Training steps of the evaluator's contrastive encoders."""
    eval_replications: int = 5
    """Replications of the evaluator's metrics (Guo et al.: 20; fewer in smoke and quick)."""
    pool_candidates: dict[str, int] = field(default_factory=lambda: {
        "reference": 2, "reference_noguide": 1, "early_checkpoint": 1, "procedural": 2})
    """Candidates per pool prompt by source; ``procedural`` draws from the behaviour mixture."""
    eval_contexts: int = 96
    """Held-out evaluation prompts (meanings held out of training, ``motions.is_heldout``)."""
    indist_contexts: int = 96
    """In-distribution evaluation prompts (training meanings)."""
    best_of: int = 16
    """N of the best-of-N reference target (normalized_score = 100)."""


def normalise(features: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Features ``[..., F, D]`` → model space ``[..., D, F]``: (x − μ)/σ per feature, channels first."""
    return ((features - mean) / std).transpose(-1, -2).contiguous()


def denormalise(motion: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Model space ``[..., D, F]`` → features ``[..., F, D]`` (the inverse of :func:`normalise`)."""
    return motion.detach().float().cpu().transpose(-1, -2) * std + mean


class MotionOracle(Oracle):
    """Gold reward of :func:`domains.motion.motions.score` on joint positions decoded from the
    features, plus the evaluator's metrics."""

    component_names = M.COMPONENTS
    temperature = 0.5

    def __init__(self, mean: Tensor, std: Tensor, evaluator: MotionEvaluator, eval_cfg: EvaluatorConfig,
                 frames: int):
        self.weights = torch.tensor(M.GOLD_WEIGHTS, dtype=torch.float32)
        self.mean, self.std = mean, std
        self.evaluator, self.eval_cfg, self.frames = evaluator, eval_cfg, frames

    def positions(self, samples: Samples) -> np.ndarray:
        """Joint positions ``[B, F, J, 3]`` of model-space motions."""
        return K.from_features(denormalise(samples.motion, self.mean, self.std).numpy())

    def components(self, contexts: Contexts, samples: Samples) -> Tensor:
        meanings = [M.Meaning.from_ids(row) for row in contexts.meaning.cpu().tolist()]
        comps = M.score(meanings, self.positions(samples))
        return torch.from_numpy(np.asarray(comps, dtype=np.float32)).reshape(-1, len(M.COMPONENTS))

    def real_motions(self, contexts: Contexts) -> Tensor:
        """Ground-truth (clean, generated) motions of ``contexts`` in model space, one per context,
        from a fixed stream (the papers' "real" row)."""
        rng = random.Random(0)
        pos = np.stack([M.generate(M.Meaning.from_ids(row), rng, self.frames)
                        for row in contexts.meaning.cpu().tolist()])
        return normalise(torch.from_numpy(K.to_features(pos)).float(), self.mean, self.std)

    def metrics(self, contexts: Contexts, samples: Samples, num: int) -> dict[str, float]:
        unique = contexts.select(torch.arange(0, len(contexts), num))  # layout: contexts.repeat(num)
        out = evaluate(self.evaluator, unique.tokens, samples.motion.detach().float().cpu(),
                       self.real_motions(unique), num, self.eval_cfg, torch.Generator().manual_seed(0),
                       layout="interleave")
        comps = self.components(contexts, samples)
        out.update({f"oracle_{c}": float(comps[:, i].mean()) for i, c in enumerate(M.COMPONENTS)})
        return out


class MotionDomain(DiffusionDomain):
    name = "motion"
    Config = MotionConfig
    context_identity = ("meaning",)
    step_obs_field, step_action_field = "tokens", "motion"
    description = "text-to-motion diffusion (MDM-style transformer, DDIM + CFG) on procedural human motions"
    presets = {
        "smoke": dict(frames=40, dim=32, layers=1, ref_steps=40, ref_batch=32, ref_data=256, sample_steps=4,
                      evaluator_data=256, evaluator_steps=20, eval_replications=2, train_contexts=32, pool_contexts=24,
                      eval_contexts=8, indist_contexts=4, eval_samples=2, best_of=4),
        "quick": dict(),
        "standard": dict(frames=60, dim=128, layers=4, ref_steps=6000, ref_data=16384, sample_steps=20,
                         evaluator_data=16384, evaluator_steps=2000, eval_replications=20, train_contexts=2048,
                         pool_contexts=1024, eval_contexts=192, indist_contexts=192, eval_samples=4),
        "full": dict(frames=60, dim=256, layers=8, ref_steps=20000, ref_data=65536, sample_steps=50,
                     evaluator_data=32768, evaluator_steps=4000, eval_replications=20, train_contexts=4096,
                     pool_contexts=4096, eval_contexts=384, indist_contexts=384, eval_samples=4),
    }
    budgets = {
        "smoke": Budget(steps=4, batch_size=8, online_samples=256, feedback=256),
        "quick": Budget(steps=150, batch_size=32, online_samples=4_096, feedback=2_048),
        # offline epochs = steps × batch ÷ (pool contexts × 3 pairs): quick ≈ 4, standard ≈ 3 and full ≈ 3
        # (1,000 and 4,000 steps gave ≈ 21; Diffusion-DPO trained ≈ 5 epochs of Pick-a-Pic, DPO 1–3)
        "standard": Budget(steps=150, batch_size=64, online_samples=50_000, feedback=10_000),
        "full": Budget(steps=600, batch_size=64, online_samples=200_000, feedback=50_000),
    }
    sample_field, prediction, vocab_size = "motion", "sample", len(M.VOCAB)
    clip = 6.0
    """x̂₀ is clipped to ±6 standard deviations of the features (DDIM's x̂₀ clip, as images' ±1)."""
    scorer_trunk = motion_trunk
    cfg: MotionConfig

    def sample_shape(self) -> tuple[int, ...]:
        return (K.feature_dim(), self.cfg.frames)

    def make_denoiser(self) -> MotionDenoiser:
        c = self.cfg
        return MotionDenoiser(K.feature_dim(), c.frames, len(M.VOCAB), M.MAX_WORDS, c.dim, c.layers, c.heads)

    # -- encoding ----------------------------------------------------------------------------
    @staticmethod
    def encode(meanings: list[M.Meaning], rng: random.Random) -> Contexts:
        """Contexts of meanings, each phrased by a template drawn from ``rng``."""
        texts = [rng.choice(M.phrasings(m)) for m in meanings]
        return Batch({"tokens": torch.tensor([M.tokenize(t, M.MAX_WORDS) for t in texts], dtype=torch.long),
                      "meaning": torch.tensor([m.ids() for m in meanings], dtype=torch.long)}, {"text": texts})

    def _motions(self, sources: list[str], meanings: list[M.Meaning], rng: random.Random) -> np.ndarray:
        """Joint positions ``[N, F, J, 3]`` of behaviour sources."""
        return np.stack([M.behaviour(src, m, rng, self.cfg.frames) for src, m in zip(sources, meanings)])

    def _to_model(self, positions: np.ndarray) -> Samples:
        return Batch({"motion": normalise(torch.from_numpy(K.to_features(positions)).float(), self.mean, self.std)})

    # -- preparation -------------------------------------------------------------------------
    def _reference_data(self, rng: random.Random) -> tuple[Contexts, np.ndarray]:
        c = self.cfg
        meanings = [M.random_meaning(rng, "train") for _ in range(c.ref_data)]
        sources = rng.choices(list(c.mixture), [c.mixture[s] for s in c.mixture], k=c.ref_data)
        return self.encode(meanings, rng), self._motions(sources, meanings, rng)

    def _train_evaluator(self, rng: random.Random, gen: torch.Generator, progress: Progress) -> MotionEvaluator:
        c = self.cfg
        meanings = [M.random_meaning(rng, "any") for _ in range(c.evaluator_data)]
        ctx = self.encode(meanings, rng)
        data = self._to_model(self._motions(["clean"] * len(meanings), meanings, rng)).motion
        torch.manual_seed(c.seed + 1)
        return train_evaluator(ctx.tokens, data, len(M.VOCAB), self.evaluator_config(), gen, progress)

    def evaluator_config(self) -> EvaluatorConfig:
        return EvaluatorConfig(steps=self.cfg.evaluator_steps, replications=self.cfg.eval_replications)

    def _pool(self, ref_model: nn.Module, early_state: dict, pool_ctx: Contexts, rng: random.Random,
              gen: torch.Generator, progress: Progress) -> OfflinePool:
        c = self.cfg
        names = [*GEN_SOURCES, *M.SOURCES]
        unknown = set(c.pool_candidates) - {*GEN_SOURCES, "procedural"}
        if unknown:
            raise ValueError(f"unknown pool sources {sorted(unknown)}; use {[*GEN_SOURCES, 'procedural']}")
        parts = sample_pool_parts(self.behaviour_policies(ref_model, early_state), names, pool_ctx,
                                  c.pool_candidates, "motion", c.eval_batch, gen, progress,
                                  "motion: offline pool (behaviour policies)")
        k = c.pool_candidates.get("procedural", 0)
        if k:
            srcs = rng.choices(list(c.mixture), [c.mixture[s] for s in c.mixture], k=len(pool_ctx) * k)
            meanings = [M.Meaning.from_ids(row) for row in pool_ctx.meaning.tolist() for _ in range(k)]
            parts.append(PoolPart(self._to_model(self._motions(srcs, meanings, rng)),
                                  torch.arange(len(pool_ctx)).repeat_interleave(k),
                                  torch.tensor([names.index(s) for s in srcs])))
        return assemble_pool(pool_ctx, parts, names, self.oracle, "reference", c.demo_quantile)

    def build(self, progress: Progress) -> dict:
        c = self.cfg
        rng = random.Random(c.seed)
        gen = torch.Generator().manual_seed(c.seed)
        ctx, positions = self._reference_data(rng)
        features = torch.from_numpy(K.to_features(positions)).float()
        self.mean = features.mean((0, 1))
        self.std = features.std((0, 1)).clamp(min=1e-2)
        ref = self.fit_reference(
            ctx, Batch({"motion": normalise(features, self.mean, self.std)}), gen, progress,
            "motion: train the reference (MDM on the behaviour mixture)")
        evaluator = self._train_evaluator(rng, gen, progress)
        self.oracle = MotionOracle(self.mean, self.std, evaluator, self.evaluator_config(), c.frames)
        splits = {"train_contexts": (c.train_contexts, "train"), "eval_contexts": (c.eval_contexts, "heldout"),
                  "indist_contexts": (c.indist_contexts, "train"), "pool_contexts": (c.pool_contexts, "train")}
        contexts = {name: self.encode([M.random_meaning(rng, split) for _ in range(n)], rng)
                    for name, (n, split) in splits.items()}
        pool = self._pool(ref.model, ref.early_state, contexts.pop("pool_contexts"), rng, gen, progress)
        return {"reference": clone_state(ref.model), "reference_fit": ref.report, "evaluator": clone_state(evaluator),
                "feature_mean": self.mean, "feature_std": self.std, "pool": pool.state(),
                **{name: ctx.state() for name, ctx in contexts.items()}}

    def load(self, state: dict) -> None:
        self.mean, self.std = state["feature_mean"], state["feature_std"]
        self.load_reference(state["reference"])
        evaluator = MotionEvaluator(len(M.VOCAB), K.feature_dim(), self.evaluator_config())
        evaluator.load_state_dict(state["evaluator"])
        self.oracle = MotionOracle(self.mean, self.std, evaluator.eval(), self.evaluator_config(), self.cfg.frames)
        self.train_contexts = Batch.from_state(state["train_contexts"])
        self.eval_contexts = Batch.from_state(state["eval_contexts"])
        self.indist_contexts = Batch.from_state(state["indist_contexts"]) if self.cfg.indist_contexts else None
        self.pool = OfflinePool.from_state(state["pool"])

    def make_spec(self) -> DomainSpec:
        c = self.cfg
        return self.diffusion_spec(modality="motion", context_fields=("tokens", "meaning", "text"),
                                   cond_shape=(M.MAX_WORDS,), batch_size=self.budgets["quick"].batch_size,
                                   what=f"{c.frames} frames × {K.feature_dim()} HumanML3D-style features "
                                        "(normalised, channels first)")

    # -- artifacts ---------------------------------------------------------------------------
    def artifacts(self, policy: Any, out_dir: Path, generator: torch.Generator) -> list[str]:
        """``motion.gif``: for 4 evaluation prompts, the reference's and the trained policy's motion
        from the same initial noise, stick figures side by side with the prompt as the row title."""
        from domains.motion.render import animate

        ctx = self.eval_contexts[:4]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.no_grad():
            ref = self.reference.sample(ctx, 1, generator=torch.Generator().manual_seed(seed))
            mine = policy.sample(ctx, 1, generator=torch.Generator().manual_seed(seed))
        ref_pos, pol_pos = self.oracle.positions(ref), self.oracle.positions(mine)
        rows = [(ctx.text[i], [ref_pos[i], pol_pos[i]]) for i in range(len(ctx))]
        left = [name.startswith("l_") for name in K.JOINTS]
        path = animate(rows, K.PARENTS, Path(out_dir) / "motion.gif", fps=K.FPS, left=left)
        return [str(path)]

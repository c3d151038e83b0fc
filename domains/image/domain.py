"""The image domain: text-to-image diffusion (diffusers) on compositional scenes, hidden scene oracle.

Preparation (``build``), all deterministic and local:

1. contexts: prompts "count colour shape position" (:mod:`domains.image.scenes`);
2. a training set rendered by behaviour sources of several qualities — clean, partly wrong
   (one of colour/shape/position/count changed), ugly (noise, blur, dirty background), ugly and
   wrong — in a **mixture**, so the reference is mediocre and alignment has room;
3. the reference: a diffusers ``UNet2DConditionModel`` with the domain's own prompt encoder
   (learned token + position embeddings feeding cross-attention, their mean added to the time
   embedding), trained with the DDPM ε-loss and 10% null-prompt dropout (for classifier-free
   guidance); an EMA of the weights is the reference, and an early EMA snapshot is a weaker
   behaviour policy. The image is pixel-unshuffled (space-to-depth, 2×2 → 12 channels at 16 px),
   so the UNet works at 8×8: the cheap "patchify" of simple diffusion (Hoogeboom et al. 2023),
   which lets a CPU train it in minutes;
4. a hidden alignment classifier (small CNN, four heads: count, colour, shape, position), trained on
   clean renderings (with mild noise/blur augmentation), used for evaluation only: alignment
   accuracy and a Fréchet distance in its feature space;
5. the offline pool: per pool prompt, samples of the reference (guidance w), of the reference
   without guidance, of the early checkpoint, and renderings of the behaviour sources; the
   "expert" demonstrations are the top of the reference's own samples under the oracle (as the
   Diffusion-DRO expert set).

The policy is :class:`benchmark.policies.diffusion.DiffusionPolicy` (Diffusion-DPO surrogate
``log_prob`` with the documented ``logp_scale``, DDIM + CFG sampling, SDEdit dataset reset); what
the diffusion domains share (config, policies, scorers, step view, spec) is
:class:`benchmark.diffusion_domain.DiffusionDomain`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from scipy import ndimage
from torch import Tensor, nn

from benchmark.api import Batch, Budget, Contexts, DomainSpec, Samples
from benchmark.diffusion_domain import GEN_SOURCES, DiffusionConfig, DiffusionDomain
from benchmark.domain import OfflinePool, Oracle
from benchmark.metrics import frechet_distance
from benchmark.preparation import (
    DiffusionReference,
    FitConfig,
    PoolPart,
    assemble_pool,
    clone_state,
    fit,
    sample_pool_parts,
)
from benchmark.progress import Progress
from domains.image import scenes as S


@dataclass
class ImageConfig(DiffusionConfig):
    size: int = 16
    """Image side in pixels (16 for smoke/quick, 32 for standard)."""
    patch: int = 2
    """Pixel-unshuffle factor: the UNet sees (3·patch²) channels at size/patch."""
    widths: tuple[int, ...] = (32, 64)
    """The UNet's block widths."""
    cross_dim: int = 32
    """Width of the prompt encoder (the UNet's cross-attention dimension)."""
    ref_data: int = 6144
    """Rendered training images of the reference (a fixed set)."""
    mixture: dict[str, float] = field(default_factory=lambda: {
        "clean": 0.3, "wrong": 0.35, "ugly": 0.2, "ugly_wrong": 0.15})
    """Shares of the rendering behaviour sources in the reference's training data and the pool's renderings."""
    classifier_steps: int = 300
    """Training steps of the hidden alignment classifier."""
    pool_candidates: dict[str, int] = field(default_factory=lambda: {
        "reference": 2, "reference_noguide": 1, "early_checkpoint": 1, "render": 2})
    """Candidates per pool prompt by source; ``render`` draws from the rendering mixture."""
    eval_contexts: int = 96
    """Held-out evaluation prompts, drawn from the 24 held-out scenes (``scenes.is_heldout``)."""
    indist_contexts: int = 96
    """In-distribution evaluation prompts, drawn from the 72 training scenes."""
    best_of: int = 16
    """N of the best-of-N reference target (normalized_score = 100)."""


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------


class PromptEncoder(nn.Module):
    """Learned token + position embeddings (the domain's own tiny text encoder)."""

    def __init__(self, dim: int, length: int = 4):
        super().__init__()
        self.tok = nn.Embedding(len(S.VOCAB), dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.norm(self.tok(tokens) + self.pos)


class SceneDenoiser(nn.Module):
    """ε_θ(x_t, t, prompt): prompt encoder → cross-attention (+ pooled into the time embedding) of a
    diffusers UNet2DConditionModel on the pixel-unshuffled image."""

    def __init__(self, size: int, patch: int, widths: tuple[int, ...], cross_dim: int):
        super().__init__()
        self.patch = patch
        self.encoder = PromptEncoder(cross_dim)
        ch = 3 * patch * patch
        n = len(widths)
        self.unet = UNet2DConditionModel(
            sample_size=size // patch, in_channels=ch, out_channels=ch, layers_per_block=1,
            block_out_channels=tuple(widths),
            down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
            up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
            cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=8,
            class_embed_type="projection", projection_class_embeddings_input_dim=cross_dim,
        )

    def forward(self, x: Tensor, t: Tensor, contexts: Contexts, drop: Tensor | None = None) -> Tensor:
        tokens = contexts.tokens.to(x.device)
        if drop is not None:
            tokens = torch.where(drop.to(x.device)[:, None], torch.full_like(tokens, S.NULL), tokens)
        h = self.encoder(tokens)
        z = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x
        out = self.unet(z, t, encoder_hidden_states=h, class_labels=h.mean(1)).sample
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


class SceneClassifier(nn.Module):
    """Small CNN with four heads (count, colour, shape, position); ``features`` is its 64-d
    penultimate layer (the FID feature space)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(512, 64), nn.ReLU(),
        )
        self.heads = nn.ModuleList([nn.Linear(64, len(v)) for v in S.VALUES])

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> list[Tensor]:
        f = self.body(x)
        return [h(f) for h in self.heads]


def image_trunk(channels: int, dim: int) -> nn.Module:
    """The image scorers' trunk: two stride-2 convolutions, pooled to 2×2, then linear to ``dim``."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.SiLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, dim),
    )


# ---------------------------------------------------------------------------------------------
# the oracle and evaluation metrics
# ---------------------------------------------------------------------------------------------


def to_unit(images: Tensor) -> np.ndarray:
    """Model-space images in [−1, 1] → numpy [0, 1]."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()


class ImageOracle(Oracle):
    """Gold reward of :mod:`domains.image.scenes` on image tensors, plus evaluation metrics from
    the hidden alignment classifier."""

    component_names = S.COMPONENTS
    temperature = 0.5

    def __init__(self, classifier: SceneClassifier, size: int):
        self.weights = torch.tensor(S.GOLD_WEIGHTS)
        self.classifier = classifier
        self.size = size

    @staticmethod
    def scenes(contexts: Contexts) -> list[S.Scene]:
        return [S.Scene.from_ids(row) for row in contexts.tokens.cpu().tolist()]

    def components(self, contexts: Contexts, samples: Samples) -> Tensor:
        imgs = to_unit(samples.image)
        rows = [S.score(sc, im) for sc, im in zip(self.scenes(contexts), imgs)]
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, len(S.COMPONENTS))

    @torch.no_grad()
    def classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted labels [B, 4], features [B, 64]) of model-space images."""
        clf = self.classifier.eval()
        x = images.detach().float().cpu().clamp(-1, 1)
        f = clf.features(x)
        preds = torch.stack([h(f).argmax(-1) for h in clf.heads], dim=1)
        return preds, f

    def metrics(self, contexts: Contexts, samples: Samples, num: int) -> dict[str, float]:
        scenes = self.scenes(contexts)
        labels = torch.tensor([sc.labels for sc in scenes])
        preds, feats = self.classify(samples.image)
        correct = preds == labels
        rng = random.Random(0)
        clean = torch.from_numpy(np.stack([S.render(sc, self.size, rng) for sc in scenes])) * 2 - 1
        _, clean_feats = self.classify(clean)
        imgs = samples.image.detach().float().cpu().clamp(-1, 1)
        n = len(imgs) // max(num, 1)
        div = []
        if num > 1:
            grouped = ((imgs + 1) / 2).reshape(n, num, -1)
            d = torch.cdist(grouped, grouped) / math.sqrt(grouped.shape[-1])  # RMS pixel distance
            div = (d.sum((1, 2)) / (num * (num - 1))).tolist()
        comps = self.components(contexts, samples)
        out = {
            "alignment": float(correct.float().mean()),
            "alignment_all": float(correct.all(1).float().mean()),
            **{f"alignment_{a}": float(correct[:, i].float().mean()) for i, a in enumerate(S.ATTRIBUTES)},
            "fid_classifier": frechet_distance(feats, clean_feats),
            "diversity": float(np.mean(div)) if div else 0.0,
        }
        out.update({f"oracle_{c}": float(comps[:, i].mean()) for i, c in enumerate(S.COMPONENTS)})
        return out


# ---------------------------------------------------------------------------------------------
# the domain
# ---------------------------------------------------------------------------------------------


class ImageDomain(DiffusionDomain):
    name = "image"
    Config = ImageConfig
    context_identity = ("tokens",)
    step_obs_field, step_action_field = "tokens", "image"
    description = "text-to-image diffusion (diffusers UNet, DDIM + CFG) on compositional scenes"
    presets = {
        "smoke": dict(widths=(16, 32), cross_dim=16, ref_steps=40, ref_batch=32, ref_data=512, sample_steps=4,
                      classifier_steps=40, train_contexts=32, pool_contexts=24, eval_contexts=8, indist_contexts=4,
                      eval_samples=2,
                      best_of=4, pool_candidates={"reference": 2, "reference_noguide": 1, "early_checkpoint": 1,
                                                  "render": 2}),
        "quick": dict(),
        # ref_lr 1e-3 at 32×32: at the default 3e-3 one standard reference training in three diverged (an attention
        # blow-up at step ≈ 1,370). lr 1e-5: at the default 1e-4 every method's fine-tune fell below this better-fit
        # reference within 19 steps (DPO −24.8, IPO −67.0); at 1e-5 DPO +32.3 (seed 0), near Diffusion-DPO's 2e-5
        # (benchmarks/results/image_standard_notes.md). full follows both, not yet run
        "standard": dict(size=32, patch=2, widths=(48, 96), cross_dim=48, ref_steps=6000, ref_batch=64, ref_lr=1e-3,
                         lr=1e-5, ref_data=32768, sample_steps=20, classifier_steps=1000, train_contexts=2048,
                         pool_contexts=1024, eval_contexts=192, indist_contexts=192, eval_samples=4, best_of=16),
        "full": dict(size=32, patch=2, widths=(64, 128), cross_dim=64, ref_steps=20000, ref_batch=128, ref_lr=1e-3,
                     lr=1e-5, ref_data=65536, sample_steps=25, classifier_steps=2000, train_contexts=4096,
                     pool_contexts=4096, eval_contexts=384, indist_contexts=384, eval_samples=4, best_of=16),
    }
    budgets = {
        "smoke": Budget(steps=4, batch_size=8, online_samples=256, feedback=256),
        "quick": Budget(steps=150, batch_size=32, online_samples=4_096, feedback=2_048),
        # offline epochs = steps × batch ÷ (pool contexts × 3 pairs): quick ≈ 4, standard ≈ 3 and full ≈ 3
        # (1,000 and 4,000 steps gave ≈ 21; Diffusion-DPO trained ≈ 5 epochs of Pick-a-Pic, DPO 1–3)
        "standard": Budget(steps=150, batch_size=64, online_samples=50_000, feedback=10_000),
        "full": Budget(steps=600, batch_size=64, online_samples=200_000, feedback=50_000),
    }
    sample_field, prediction, clip, vocab_size = "image", "epsilon", 1.0, len(S.VOCAB)
    scorer_trunk = image_trunk
    cfg: ImageConfig

    # -- encoding ----------------------------------------------------------------------------
    @staticmethod
    def encode(scenes: list[S.Scene]) -> Contexts:
        return Batch({"tokens": torch.tensor([sc.token_ids() for sc in scenes], dtype=torch.long)},
                     {"text": [sc.text for sc in scenes]})

    def _render(self, sources: list[str], scenes: list[S.Scene], rng: random.Random) -> Samples:
        imgs = np.stack([S.behaviour(src, sc, self.cfg.size, rng) for src, sc in zip(sources, scenes)])
        return Batch({"image": torch.from_numpy(imgs) * 2 - 1})

    def sample_shape(self) -> tuple[int, ...]:
        return (3, self.cfg.size, self.cfg.size)

    def make_denoiser(self) -> SceneDenoiser:
        c = self.cfg
        return SceneDenoiser(c.size, c.patch, tuple(c.widths), c.cross_dim)

    # -- preparation -------------------------------------------------------------------------
    def _train_reference(self, rng: random.Random, gen: torch.Generator, progress: Progress) -> DiffusionReference:
        c = self.cfg
        sources = list(c.mixture)
        weights = [c.mixture[s] for s in sources]
        scenes = [S.random_scene(rng) for _ in range(c.ref_data)]
        srcs = rng.choices(sources, weights, k=c.ref_data)
        ctx = self.encode(scenes)
        data = self._render(srcs, scenes, rng)
        title = "image: train the reference (DDPM on the rendering mixture)"
        return self.fit_reference(ctx, data, gen, progress, title)

    def _train_classifier(self, rng: random.Random, gen: torch.Generator, progress: Progress) -> SceneClassifier:
        c = self.cfg
        torch.manual_seed(c.seed + 1)
        clf = SceneClassifier()
        n = max(1024, 8 * c.classifier_steps)
        scenes = [S.random_scene(rng, "any") for _ in range(n)]  # the oracle's classifier sees every scene
        imgs = np.stack([S.render(sc, c.size, rng) for sc in scenes])
        # mild augmentation (noise or blur on a third each) so that it reads generated images
        for i in range(n):
            r = rng.random()
            if r < 1 / 3:
                imgs[i] = np.clip(imgs[i] + np.random.default_rng(i).normal(0, 0.06, imgs[i].shape), 0, 1)
            elif r < 2 / 3:
                imgs[i] = ndimage.gaussian_filter(imgs[i], sigma=(0, 0.5 * c.size / 16, 0.5 * c.size / 16))
        x = torch.from_numpy(imgs).float() * 2 - 1
        y = torch.tensor([sc.labels for sc in scenes])

        def classification_loss(step: int) -> Tensor:
            idx = torch.randint(0, n, (128,), generator=gen)
            return sum(F.cross_entropy(o, y[idx, i]) for i, o in enumerate(clf(x[idx])))

        cfg = FitConfig(c.classifier_steps, 3e-3, schedule="constant", clip=float("inf"), log_every=10**9)
        return fit(clf, classification_loss, cfg, progress, "image: alignment classifier (clean renderings)").model

    def build(self, progress: Progress) -> dict:
        c = self.cfg
        rng = random.Random(c.seed)
        gen = torch.Generator().manual_seed(c.seed)
        ref = self._train_reference(rng, gen, progress)
        clf = self._train_classifier(rng, gen, progress)
        self.oracle = ImageOracle(clf, c.size)

        train_ctx = self.encode([S.random_scene(rng) for _ in range(c.train_contexts)])
        eval_ctx = self.encode([S.random_scene(rng, "heldout") for _ in range(c.eval_contexts)])
        indist_ctx = self.encode([S.random_scene(rng) for _ in range(c.indist_contexts)])
        pool_ctx = self.encode([S.random_scene(rng) for _ in range(c.pool_contexts)])

        # offline pool: behaviour policies, then renderings of the behaviour sources ----------
        behaviours = self.behaviour_policies(ref.model, ref.early_state)
        names = [*GEN_SOURCES, *S.SOURCES]
        unknown = set(c.pool_candidates) - {*GEN_SOURCES, "render"}
        if unknown:
            raise ValueError(f"unknown pool sources {sorted(unknown)}; use {[*GEN_SOURCES, 'render']}")
        parts = sample_pool_parts(behaviours, names, pool_ctx, c.pool_candidates, "image", c.eval_batch, gen,
                                  progress, "image: offline pool (behaviour policies)")
        k = c.pool_candidates.get("render", 0)
        if k:
            srcs = rng.choices(list(c.mixture), [c.mixture[s] for s in c.mixture], k=len(pool_ctx) * k)
            scenes = [sc for sc in self.oracle.scenes(pool_ctx) for _ in range(k)]
            parts.append(PoolPart(self._render(srcs, scenes, rng), torch.arange(len(pool_ctx)).repeat_interleave(k),
                                  torch.tensor([names.index(s) for s in srcs])))
        pool = assemble_pool(pool_ctx, parts, names, self.oracle, "reference", c.demo_quantile)
        return {
            "reference": clone_state(ref.model),
            "reference_fit": ref.report,
            "classifier": clone_state(clf),
            "train_contexts": train_ctx.state(),
            "eval_contexts": eval_ctx.state(),
            "indist_contexts": indist_ctx.state(),
            "pool": pool.state(),
        }

    def load(self, state: dict) -> None:
        self.load_reference(state["reference"])
        clf = SceneClassifier()
        clf.load_state_dict(state["classifier"])
        self.oracle = ImageOracle(clf.eval(), self.cfg.size)
        self.train_contexts = Batch.from_state(state["train_contexts"])
        self.eval_contexts = Batch.from_state(state["eval_contexts"])
        self.indist_contexts = Batch.from_state(state["indist_contexts"]) if self.cfg.indist_contexts else None
        self.pool = OfflinePool.from_state(state["pool"])

    def make_spec(self) -> DomainSpec:
        c = self.cfg
        return self.diffusion_spec(modality="image", context_fields=("tokens", "text"), cond_shape=(4,),
                                   batch_size=self.budgets["quick"].batch_size,
                                   what=f"{c.size}×{c.size} RGB in [−1, 1]")

    # -- artifacts ---------------------------------------------------------------------------
    def artifacts(self, policy: Any, out_dir: Path, generator: torch.Generator) -> list[str]:
        """``grid.png``: for 8 evaluation prompts, 4 reference samples | 4 policy samples, drawn
        from the same initial noise (same seeds), upscaled ×4, prompt on the left."""
        from PIL import Image, ImageDraw

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ctx = self.eval_contexts[:8]
        k = 4
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.no_grad():
            ref = self.reference.sample(ctx, k, generator=torch.Generator().manual_seed(seed))
            mine = policy.sample(ctx, k, generator=torch.Generator().manual_seed(seed))
        scale, pad, label_w, head = 4, 2, 150, 16
        cell = self.cfg.size * scale
        width = label_w + 2 * k * (cell + pad) + 3 * pad
        height = head + len(ctx) * (cell + pad) + pad
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        x_ref, x_pol = label_w, label_w + k * (cell + pad) + 3 * pad
        draw.text((x_ref, 2), "reference", fill=(0, 0, 0))
        draw.text((x_pol, 2), "trained policy (same seeds)", fill=(0, 0, 0))
        for r in range(len(ctx)):
            y = head + r * (cell + pad)
            draw.text((4, y + cell // 2 - 6), ctx.text[r], fill=(0, 0, 0))
            for j in range(k):
                for x0, imgs in ((x_ref, ref), (x_pol, mine)):
                    arr = (to_unit(imgs.image[r * k + j : r * k + j + 1])[0].transpose(1, 2, 0) * 255).round()
                    tile = Image.fromarray(arr.astype(np.uint8)).resize((cell, cell), Image.NEAREST)
                    canvas.paste(tile, (x0 + j * (cell + pad), y))
        path = out_dir / "grid.png"
        canvas.save(path)
        return [str(path)]

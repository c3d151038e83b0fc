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
``log_prob`` with the documented ``logp_scale``, DDIM + CFG sampling, SDEdit dataset reset).
"""

from __future__ import annotations

import copy
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

from benchmark.api import Batch, Budget, Contexts, DomainSpec, Samples, Scorer
from benchmark.domain import Domain, DomainConfig, OfflinePool, Oracle
from benchmark.policies.diffusion import DDIMChain, DiffusionPolicy
from benchmark.preparation import FitConfig, clone_state, fit
from benchmark.progress import Progress
from domains.image import scenes as S

GEN_SOURCES = ("reference", "reference_noguide", "early_checkpoint")


@dataclass
class ImageConfig(DomainConfig):
    size: int = 16
    """Image side in pixels (16 for smoke/quick, 32 for standard)."""
    patch: int = 2
    """Pixel-unshuffle factor: the UNet sees (3·patch²) channels at size/patch."""
    widths: tuple[int, ...] = (32, 64)
    cross_dim: int = 32
    train_timesteps: int = 1000
    sample_steps: int = 10
    """DDIM steps for sampling."""
    guidance: float = 3.0
    """Classifier-free guidance scale of every policy's sampler."""
    eta: float = 0.0
    """DDIM η (0: deterministic given the initial noise; 1: DDPM-like)."""
    logp_scale: float = 1e4
    """s in log_prob = −s·mean‖ε − ε_θ‖²: DPO's β = 0.1 then is Diffusion-DPO's β_dpo = 2·β·s = 2000."""
    logp_draws: int = 1
    """(t, ε) draws averaged per log_prob (Diffusion-DPO uses one)."""
    ref_steps: int = 1200
    ref_batch: int = 64
    ref_lr: float = 3e-3
    ref_data: int = 6144
    """Rendered training images of the reference (a fixed set)."""
    ema: float = 0.99
    cfg_dropout: float = 0.1
    early_fraction: float = 0.25
    """The early-checkpoint behaviour policy is the EMA after this share of the reference's steps."""
    mixture: dict[str, float] = field(default_factory=lambda: {
        "clean": 0.3, "wrong": 0.35, "ugly": 0.2, "ugly_wrong": 0.15})
    classifier_steps: int = 300
    train_contexts: int = 512
    pool_contexts: int = 384
    pool_candidates: dict[str, int] = field(default_factory=lambda: {
        "reference": 2, "reference_noguide": 1, "early_checkpoint": 1, "render": 2})
    """Candidates per pool prompt by source; ``render`` draws from the rendering mixture."""
    demo_quantile: float = 0.75
    """Expert set: reference samples at or above this quantile of the reference's pool gold."""
    eval_contexts: int = 96
    """Held-out evaluation prompts, drawn from the 24 held-out scenes (``scenes.is_heldout``)."""
    indist_contexts: int = 96
    """In-distribution evaluation prompts, drawn from the 72 training scenes."""
    best_of: int = 16
    lr: float = 1e-4
    """Base fine-tuning learning rate for algorithms (``DomainSpec.lr``)."""


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


class ImageScorer(Scorer):
    """A small CNN and a prompt embedding. ``reward`` r(c, x) and ``value`` V(c) score whole
    samples; per step (``[B, T]``) on the horizon-1 view (η = 0) ``step_reward`` and ``q`` are r(c, x)
    and ``v`` is V(c); on the denoising chain (η > 0) they see the step's x_t, its timestep and, for
    ``step_reward``/``q``, the action x_{t−1} (stacked as channels)."""

    def __init__(self, kind: str = "reward", dim: int = 32, chain: DDIMChain | None = None):
        super().__init__()
        if kind not in ("reward", "value", "step_reward", "q", "v"):
            raise ValueError(f"unknown scorer kind {kind!r}")
        self.kind = kind
        self.chain = chain if kind in ("step_reward", "q", "v") else None
        with_image = kind != "value" and not (kind == "v" and self.chain is None)
        channels = 6 if self.chain is not None and kind != "v" else 3
        self.prompt = nn.Embedding(len(S.VOCAB), dim)
        self.time = nn.Embedding(1000, dim) if self.chain is not None else None
        self.image = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.SiLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, dim),
        ) if with_image else None
        self.head = nn.Sequential(nn.Linear(dim * (2 if with_image else 1), 64), nn.SiLU(), nn.Linear(64, 1))

    def _score(self, tokens: Tensor, image: Tensor | None, t: Tensor | None = None) -> Tensor:
        p = self.prompt(tokens).mean(1)
        if t is not None:
            p = p + self.time(t)
        if self.image is not None:
            p = torch.cat([p, self.image(image.float())], dim=-1)
        return self.head(p).squeeze(-1)

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        dev = self.head[0].weight.device
        tokens = contexts.tokens.to(dev)
        if self.kind != "value" and samples is None:
            raise ValueError(f"a {self.kind} scorer needs samples")
        if self.chain is None:
            out = self._score(tokens, None if self.image is None else samples.image.to(dev))
            return out if self.kind in ("reward", "value") else out[:, None]
        tr = self.chain.transitions(contexts, samples)
        b, steps = tr["mask"].shape
        x = tr["obs"].to(dev).flatten(0, 1)
        if self.kind != "v":
            x = torch.cat([x, tr["action"].to(dev).flatten(0, 1)], dim=1)
        out = self._score(tokens.repeat_interleave(steps, 0), x, tr["timestep"].to(dev).flatten())
        return out.view(b, steps) * tr["mask"].to(dev).float()


# ---------------------------------------------------------------------------------------------
# the oracle and evaluation metrics
# ---------------------------------------------------------------------------------------------


def to_unit(images: Tensor) -> np.ndarray:
    """Model-space images in [−1, 1] → numpy [0, 1]."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (as FID)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    eye = 1e-6 * torch.eye(ca.shape[0], dtype=torch.float64)
    ca, cb = ca + eye, cb + eye
    va, qa = torch.linalg.eigh(ca)
    sa = qa @ torch.diag(va.clamp(min=0).sqrt()) @ qa.T
    cross = torch.linalg.eigvalsh(sa @ cb @ sa).clamp(min=0).sqrt().sum()
    return max(0.0, float((mu_a - mu_b).pow(2).sum() + torch.trace(ca) + torch.trace(cb) - 2 * cross))


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


class ImageDomain(Domain):
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
        "standard": dict(size=32, patch=2, widths=(48, 96), cross_dim=48, ref_steps=6000, ref_batch=64,
                         ref_data=32768, sample_steps=20, classifier_steps=1000, train_contexts=2048,
                         pool_contexts=1024, eval_contexts=192, indist_contexts=192, eval_samples=4, best_of=16),
        "full": dict(size=32, patch=2, widths=(64, 128), cross_dim=64, ref_steps=20000, ref_batch=128,
                     ref_data=65536, sample_steps=25, classifier_steps=2000, train_contexts=4096,
                     pool_contexts=4096, eval_contexts=384, indist_contexts=384, eval_samples=4, best_of=16),
    }
    budgets = {
        "smoke": Budget(steps=4, batch_size=8, online_samples=256, feedback=256),
        "quick": Budget(steps=150, batch_size=32, online_samples=4_096, feedback=2_048),
        "standard": Budget(steps=1000, batch_size=64, online_samples=50_000, feedback=10_000),
        "full": Budget(steps=4000, batch_size=64, online_samples=200_000, feedback=50_000),
    }
    #: log_prob's scale and draws change no preparation: a sweep over them reuses the cache
    runtime_fields = frozenset({"lr", "logp_scale", "logp_draws"})
    cfg: ImageConfig

    @property  # type: ignore[override]
    def reference(self) -> DiffusionPolicy:
        """The frozen reference, with the current config's runtime log_prob settings."""
        self._reference.scale, self._reference.draws = self.cfg.logp_scale, self.cfg.logp_draws
        return self._reference

    @reference.setter
    def reference(self, policy: DiffusionPolicy) -> None:
        self._reference = policy

    # -- encoding ----------------------------------------------------------------------------
    @staticmethod
    def encode(scenes: list[S.Scene]) -> Contexts:
        return Batch({"tokens": torch.tensor([sc.token_ids() for sc in scenes], dtype=torch.long)},
                     {"text": [sc.text for sc in scenes]})

    def _render(self, sources: list[str], scenes: list[S.Scene], rng: random.Random) -> Samples:
        imgs = np.stack([S.behaviour(src, sc, self.cfg.size, rng) for src, sc in zip(sources, scenes)])
        return Batch({"image": torch.from_numpy(imgs) * 2 - 1})

    def _denoiser(self) -> SceneDenoiser:
        c = self.cfg
        return SceneDenoiser(c.size, c.patch, tuple(c.widths), c.cross_dim)

    def _policy(self, denoiser: nn.Module, guidance: float | None = None) -> DiffusionPolicy:
        c = self.cfg
        return DiffusionPolicy(
            denoiser, shape=(3, c.size, c.size), train_timesteps=c.train_timesteps, steps=c.sample_steps,
            guidance=c.guidance if guidance is None else guidance, eta=c.eta, scale=c.logp_scale,
            draws=c.logp_draws,
        )

    # -- preparation -------------------------------------------------------------------------
    def _train_reference(self, rng: random.Random, gen: torch.Generator, progress: Progress
                         ) -> tuple[SceneDenoiser, dict]:
        c = self.cfg
        sources = list(c.mixture)
        weights = [c.mixture[s] for s in sources]
        scenes = [S.random_scene(rng) for _ in range(c.ref_data)]
        srcs = rng.choices(sources, weights, k=c.ref_data)
        ctx = self.encode(scenes)
        data = self._render(srcs, scenes, rng)
        torch.manual_seed(c.seed)  # model initialisation
        model = self._denoiser()
        policy = self._policy(model)
        early_at = max(1, round(c.ref_steps * c.early_fraction))

        def denoising_loss(step: int) -> Tensor:
            idx = torch.randint(0, c.ref_data, (c.ref_batch,), generator=gen)
            drop = torch.rand(c.ref_batch, generator=gen) < c.cfg_dropout
            noise = policy.draw_noise(ctx[idx], data[idx], generator=gen)
            return policy.denoise_error(ctx[idx], data[idx], noise, drop=drop).mean()

        cfg = FitConfig(c.ref_steps, c.ref_lr, ema=c.ema, snapshots=(early_at,))
        fitted = fit(model, denoising_loss, cfg, progress, "image: train the reference (DDPM on the rendering mixture)",
                     metric="mse")
        return fitted.model, fitted.snapshots[early_at]

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

    @torch.no_grad()
    def _sample_chunked(self, policy: DiffusionPolicy, ctx: Contexts, num: int, gen: torch.Generator) -> Samples:
        """Images only (a pool sample carries no chain: renderings have none)."""
        step = max(1, self.cfg.eval_batch // num)
        return Batch.cat([Batch({"image": policy.sample(ctx[i : i + step], num, generator=gen).image})
                          for i in range(0, len(ctx), step)])

    def build(self, progress: Progress) -> dict:
        c = self.cfg
        rng = random.Random(c.seed)
        gen = torch.Generator().manual_seed(c.seed)
        ref_model, early_state = self._train_reference(rng, gen, progress)
        clf = self._train_classifier(rng, gen, progress)
        self.oracle = ImageOracle(clf, c.size)

        train_ctx = self.encode([S.random_scene(rng) for _ in range(c.train_contexts)])
        eval_ctx = self.encode([S.random_scene(rng, "heldout") for _ in range(c.eval_contexts)])
        indist_ctx = self.encode([S.random_scene(rng) for _ in range(c.indist_contexts)])
        pool_ctx = self.encode([S.random_scene(rng) for _ in range(c.pool_contexts)])

        # offline pool --------------------------------------------------------------------------
        early_model = self._denoiser()
        early_model.load_state_dict(early_state)
        behaviours = {
            "reference": self._policy(ref_model),
            "reference_noguide": self._policy(ref_model, guidance=1.0),
            "early_checkpoint": self._policy(early_model.eval()),
        }
        pool_sources = [*GEN_SOURCES, *S.SOURCES]
        unknown = set(c.pool_candidates) - {*GEN_SOURCES, "render"}
        if unknown:
            raise ValueError(f"unknown pool sources {sorted(unknown)}; use {[*GEN_SOURCES, 'render']}")
        n_ctx = len(pool_ctx)
        parts: list[Samples] = []
        src_ids: list[Tensor] = []
        ctx_ids: list[Tensor] = []
        gen_total = sum(c.pool_candidates.get(s, 0) for s in GEN_SOURCES)
        with progress.task("image: offline pool (behaviour policies)", gen_total * n_ctx) as task:
            for name in GEN_SOURCES:
                k = c.pool_candidates.get(name, 0)
                if k:
                    parts.append(self._sample_chunked(behaviours[name], pool_ctx, k, gen))
                    src_ids.append(torch.full((n_ctx * k,), pool_sources.index(name)))
                    ctx_ids.append(torch.arange(n_ctx).repeat_interleave(k))
                    task.advance(n_ctx * k)
        k = c.pool_candidates.get("render", 0)
        if k:
            sources = list(c.mixture)
            weights = [c.mixture[s] for s in sources]
            srcs = rng.choices(sources, weights, k=n_ctx * k)
            scenes = [sc for sc in self.oracle.scenes(pool_ctx) for _ in range(k)]
            parts.append(self._render(srcs, scenes, rng))
            src_ids.append(torch.tensor([pool_sources.index(s) for s in srcs]))
            ctx_ids.append(torch.arange(n_ctx).repeat_interleave(k))
        samples = Batch.cat(parts)
        context_index = torch.cat(ctx_ids)
        source = torch.cat(src_ids)
        components = self.oracle.components(pool_ctx[context_index], samples)
        gold = components @ self.oracle.weights
        is_ref = source == pool_sources.index("reference")
        cut = torch.quantile(gold[is_ref], c.demo_quantile) if bool(is_ref.any()) else gold.max()
        demo = is_ref & (gold >= cut)
        pool = OfflinePool(contexts=pool_ctx, samples=samples, context_index=context_index, source=source,
                           sources=pool_sources, components=components, demo=demo)
        return {
            "reference": clone_state(ref_model),
            "classifier": clone_state(clf),
            "train_contexts": train_ctx.state(),
            "eval_contexts": eval_ctx.state(),
            "indist_contexts": indist_ctx.state(),
            "pool": pool.state(),
        }

    def load(self, state: dict) -> None:
        model = self._denoiser()
        model.load_state_dict(state["reference"])
        self.reference = self._policy(model.to(self.device)).frozen_copy()
        clf = SceneClassifier()
        clf.load_state_dict(state["classifier"])
        self.oracle = ImageOracle(clf.eval(), self.cfg.size)
        self.train_contexts = Batch.from_state(state["train_contexts"])
        self.eval_contexts = Batch.from_state(state["eval_contexts"])
        self.indist_contexts = Batch.from_state(state["indist_contexts"]) if self.cfg.indist_contexts else None
        self.pool = OfflinePool.from_state(state["pool"])

    def make_spec(self) -> DomainSpec:
        c = self.cfg
        chain = c.eta > 0
        return DomainSpec(
            name="image", modality="image",
            capabilities=frozenset({"online", "reset", *(("steps", "exact_logp") if chain else ())}),
            context_fields=("tokens", "text"), sample_fields=("image",), horizon=c.sample_steps if chain else 1,
            obs_shape=(3, c.size, c.size) if chain else (4,), action_shape=(3, c.size, c.size),
            action_kind="continuous", cond_shape=(4,), surrogate_logp=True, lr=c.lr,
            batch_size=self.budgets["quick"].batch_size,
            notes=(f"log_prob: Diffusion-DPO ELBO surrogate −s·mean‖ε − ε_θ(x_t,t,c)‖² with s = {c.logp_scale:g} "
                   f"(β = 0.1 ≙ Diffusion-DPO β_dpo = {0.2 * c.logp_scale:g}); draw_noise gives (t, ε); "
                   f"samples: {c.size}×{c.size} RGB in [−1, 1] by DDIM ({c.sample_steps} steps, η = {c.eta:g}) "
                   f"with CFG w = {c.guidance:g}; `start` (rollin) is an SDEdit restart. Step view: "
                   + ("the denoising chain (x_t, t, prompt) → x_prev with exact Gaussian step log-probs (η > 0)."
                      if chain else "horizon 1 (prompt → image; the DDIM chain is deterministic at η = 0).")),
        )

    def build_scorer(self, kind: str) -> ImageScorer:
        chain = copy.deepcopy(self.reference.chain) if self.cfg.eta > 0 else None
        return ImageScorer(kind, chain=chain).to(self.device)

    def transitions(self, contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
        """η > 0: the denoising chain as an MDP (``DDIMChain.transitions``); η = 0: the horizon-1
        view (observation = the prompt's tokens, action = the image)."""
        if self.cfg.eta > 0:
            return self.reference.chain.transitions(contexts, samples)
        return super().transitions(contexts, samples)

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

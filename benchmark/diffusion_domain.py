"""What the diffusion domains (image, motion) share, written once: the config fields of a
conditional diffusion model and its sampler, the policies built on a denoiser, the reference's
runtime log-likelihood settings, the step view, the scorers and the ``DomainSpec``.

A subclass sets ``sample_field`` (``image``, ``motion``), ``prediction`` (ε̂ or x̂₀), ``clip``,
``vocab_size`` and ``scorer_trunk``, and implements ``sample_shape`` and ``make_denoiser``; it
keeps its own data, oracle, preparation (on :mod:`benchmark.preparation`) and pictures.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from benchmark.api import Contexts, DomainSpec, Samples
from benchmark.domain import Domain, DomainConfig
from benchmark.policies.diffusion import DiffusionPolicy
from benchmark.policies.diffusion_scorer import DiffusionScorer, Trunk
from benchmark.preparation import DiffusionReference, DiffusionReferenceConfig, train_diffusion_reference
from benchmark.progress import Progress

GEN_SOURCES = ("reference", "reference_noguide", "early_checkpoint")
"""The offline pool's generated sources: the reference with and without guidance, and its early checkpoint."""


@dataclass
class DiffusionConfig(DomainConfig):
    """Fields of every diffusion domain (their paper defaults where a paper sets one)."""

    train_timesteps: int = 1000
    """Diffusion timesteps T of training (DDPM: 1000)."""
    sample_steps: int = 10
    """DDIM steps for sampling."""
    guidance: float = 3.0
    """Classifier-free guidance scale of every policy's sampler."""
    eta: float = 0.0
    """DDIM η (0: deterministic given the initial noise; 1: DDPM-like)."""
    logp_scale: float = 1e4
    """s in log_prob = −s·mean‖error‖² (the Diffusion-DPO surrogate; see ``benchmark.policies.diffusion``)."""
    logp_draws: int = 1
    """(t, ε) draws averaged per log_prob (Diffusion-DPO uses one)."""
    ref_steps: int = 1200
    """Optimiser steps of the reference's training."""
    ref_batch: int = 64
    """Batch size of the reference's training."""
    ref_lr: float = 3e-3
    """Peak learning rate of the reference's training."""
    ema: float = 0.99
    """EMA decay of the reference's weights (the EMA is the reference)."""
    cfg_dropout: float = 0.1
    """Share of null prompts in the reference's training (classifier-free guidance; MDM: 0.1)."""
    early_fraction: float = 0.25
    """The early-checkpoint behaviour policy is the EMA after this share of the reference's steps."""
    ref_max_error_ratio: float = 0.8
    """The preparation fails (caches nothing) unless the reference's denoising error is at most this share of
    its untrained network's (a guard against a training run that learned nothing)."""
    train_contexts: int = 512
    """Prompts of the training split offered to algorithms."""
    pool_contexts: int = 384
    """Prompts of the offline pool."""
    demo_quantile: float = 0.75
    """Expert set: reference samples at or above this quantile of the reference's pool gold."""
    lr: float = 1e-4
    """Base fine-tuning learning rate for algorithms (``DomainSpec.lr``)."""

    def reference_training(self) -> DiffusionReferenceConfig:
        return DiffusionReferenceConfig(self.ref_steps, self.ref_batch, self.ref_lr, self.ema, self.cfg_dropout,
                                        self.early_fraction, self.ref_max_error_ratio)


class DiffusionDomain(Domain):
    """Base of the diffusion domains; see the module docstring."""

    Config = DiffusionConfig
    cache_deps = (*Domain.cache_deps, "benchmark.diffusion_domain")
    prepares_on_device = True
    sample_field: ClassVar[str] = "image"
    prediction: ClassVar[str] = "epsilon"
    clip: ClassVar[float | None] = 1.0
    vocab_size: ClassVar[int] = 0
    scorer_trunk: ClassVar[Trunk]
    #: log_prob's scale and draws change no preparation: a sweep over them reuses the cache
    runtime_fields = frozenset({"lr", "logp_scale", "logp_draws"})
    cfg: DiffusionConfig

    def sample_shape(self) -> tuple[int, ...]:
        """A sample's shape, channels first (``(3, H, W)``, ``(D, F)``)."""
        raise NotImplementedError

    def make_denoiser(self) -> nn.Module:
        """A fresh denoiser ``(x_t, t, contexts, drop) -> prediction``."""
        raise NotImplementedError

    @property  # type: ignore[override]
    def reference(self) -> DiffusionPolicy:
        """The frozen reference, with the current config's runtime log_prob settings."""
        self._reference.scale, self._reference.draws = self.cfg.logp_scale, self.cfg.logp_draws
        return self._reference

    @reference.setter
    def reference(self, policy: DiffusionPolicy) -> None:
        self._reference = policy

    def make_diffusion_policy(self, denoiser: nn.Module, guidance: float | None = None) -> DiffusionPolicy:
        c = self.cfg
        return DiffusionPolicy(
            denoiser, shape=self.sample_shape(), train_timesteps=c.train_timesteps, steps=c.sample_steps,
            guidance=c.guidance if guidance is None else guidance, eta=c.eta, scale=c.logp_scale,
            draws=c.logp_draws, clip=self.clip, sample_field=self.sample_field, prediction=self.prediction,
        )

    def fit_reference(self, contexts: Contexts, data: Samples, generator: torch.Generator, progress: Progress,
                      title: str) -> DiffusionReference:
        """Train the reference denoiser on (contexts, data) and check that it learned (the EMA denoiser, its
        early weights, its training curve and check: :func:`~benchmark.preparation.train_diffusion_reference`). It
        trains on the domain's device (most of the preparation's time; a GPU takes it where the cells
        run); the initial weights and every batch, noise and dropout draw come from CPU generators,
        the same on every device."""
        torch.manual_seed(self.cfg.seed)  # model initialisation
        policy = self.make_diffusion_policy(self.make_denoiser().to(self.device))
        return train_diffusion_reference(policy, contexts, data, self.cfg.reference_training(), generator,
                                         progress, title)

    def behaviour_policies(self, reference: nn.Module, early_state: dict[str, Tensor]) -> dict[str, DiffusionPolicy]:
        """The pool's generated sources (``GEN_SOURCES``) from the trained denoiser and its early weights,
        on the domain's device."""
        early = self.make_denoiser().to(self.device)
        early.load_state_dict(early_state)
        reference = reference.to(self.device)
        return {
            "reference": self.make_diffusion_policy(reference),
            "reference_noguide": self.make_diffusion_policy(reference, guidance=1.0),
            "early_checkpoint": self.make_diffusion_policy(early.eval()),
        }

    def load_reference(self, state: dict[str, Tensor]) -> None:
        model = self.make_denoiser()
        model.load_state_dict(state)
        self.reference = self.make_diffusion_policy(model.to(self.device)).frozen_copy()

    def build_scorer(self, kind: str) -> DiffusionScorer:
        chain = copy.deepcopy(self.reference.chain) if self.cfg.eta > 0 else None
        return DiffusionScorer(kind, trunk=type(self).scorer_trunk, channels=self.sample_shape()[0],
                               vocab=self.vocab_size, field=self.sample_field, chain=chain).to(self.device)

    def transitions(self, contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
        """η > 0: the denoising chain as an MDP (``DDIMChain.transitions``); η = 0: the horizon-1
        view (observation = the prompt's tokens, action = the sample)."""
        if self.cfg.eta > 0:
            return self.reference.chain.transitions(contexts, samples)
        return super().transitions(contexts, samples)

    def diffusion_spec(self, *, modality: str, context_fields: tuple[str, ...], cond_shape: tuple[int, ...],
                       batch_size: int, what: str) -> DomainSpec:
        """The ``DomainSpec`` of a diffusion domain; ``what`` describes a sample for the notes."""
        c = self.cfg
        chain = c.eta > 0
        shape = self.sample_shape()
        error = "ε − ε_θ(x_t,t,c)" if self.prediction == "epsilon" else "x₀ − x̂₀_θ(x_t,t,c)"
        return DomainSpec(
            name=self.name, modality=modality,
            capabilities=frozenset({"online", "reset", *(("steps", "exact_logp") if chain else ())}),
            context_fields=context_fields, sample_fields=(self.sample_field,),
            horizon=c.sample_steps if chain else 1, obs_shape=shape if chain else cond_shape, action_shape=shape,
            action_kind="continuous", cond_shape=cond_shape, surrogate_logp=True, lr=c.lr, batch_size=batch_size,
            notes=(f"log_prob: Diffusion-DPO ELBO surrogate −s·mean‖{error}‖² with s = {c.logp_scale:g} "
                   f"(β = 0.1 ≙ Diffusion-DPO β_dpo = {0.2 * c.logp_scale:g}); draw_noise gives (t, ε); "
                   f"samples: {what} by DDIM ({c.sample_steps} steps, η = {c.eta:g}) "
                   f"with CFG w = {c.guidance:g}; `start` (rollin) is an SDEdit restart. Step view: "
                   + ("the denoising chain (x_t, t, prompt) → x_prev with exact Gaussian step log-probs (η > 0)."
                      if chain else f"horizon 1 (prompt → {self.sample_field}; the DDIM chain is deterministic "
                      "at η = 0).")),
        )

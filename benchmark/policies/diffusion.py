"""Diffusion policies over a diffusers denoiser (the image domain's model family; motion reuses it).

A sample is ``samples.image`` (any ``[B, *shape]`` tensor in the data scale, e.g. pixels in
[−1, 1]). The denoiser is any module ``denoiser(x_t, t, contexts, drop) -> ε̂`` (``drop``: a
``[B]`` bool mask of contexts replaced by the null condition, for classifier-free guidance).

- **Training noise**: diffusers ``DDPMScheduler`` (ε-prediction): x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε.
- **Sampling**: diffusers ``DDIMScheduler`` (Song et al. 2021) with ``steps`` steps, η =
  ``eta``, and classifier-free guidance ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅) (Ho & Salimans 2022).
- **log_prob** is the Diffusion-DPO surrogate (Wallace et al. 2023): the ELBO of a diffusion model
  is, up to constants, −E_{t,ε}[T·ω(λ_t)/2 · ‖ε − ε_θ(x_t, t, c)‖²]; Diffusion-DPO keeps one draw
  of (t, ε) and a constant weight, and puts a large β (2500–5000 for SD) on the difference.
  Ours: ``log_prob = −scale · mean_{C,H,W} ‖ε − ε_θ(x_t, t, c)‖²``, one (t, ε) per sample (or the
  mean over ``draws``), with the domain's documented ``scale`` folded in so that the algorithms'
  usual β ≈ 0.1 is sensible: DPO's β·(ρ_w − ρ_l) then equals Diffusion-DPO's
  −½·β_dpo·(Δmse_θ − Δmse_ref) with β_dpo = 2·β·scale (β = 0.1, scale = 10⁴ ⇒ β_dpo = 2000).
  It is a surrogate: it is exact only up to a constant and a scale, and its value has variance
  over (t, ε); :meth:`draw_noise` returns the (t, ε) so that policy and reference — and a pair's
  chosen and rejected — are scored on common random numbers.
- **Dataset reset** (SDEdit, Meng et al. 2022): ``rollin`` keeps an image and the DDIM step
  index to restart from; ``sample(start=...)`` noises it to that step with the sampling
  generator and denoises from there.
- ``mle_loss`` is the plain denoising MSE on which the reference was trained (SFT on images).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

from benchmark.api import Batch, Contexts, Noise, Policy, Samples


class DiffusionPolicy(Policy):
    """π(x | c) of a conditional ε-prediction denoiser; see the module docstring."""

    def __init__(
        self, denoiser: nn.Module, *, shape: tuple[int, ...], train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2", steps: int = 10, guidance: float = 3.0, eta: float = 0.0,
        scale: float = 1e4, draws: int = 1, clip: float | None = 1.0,
    ):
        super().__init__()
        self.denoiser = denoiser
        self.shape = tuple(shape)
        self.train_timesteps = train_timesteps
        self.beta_schedule = beta_schedule
        self.steps = steps
        self.guidance = guidance
        self.eta = eta
        self.scale = scale
        self.draws = draws
        self.clip = clip
        self.ddpm = DDPMScheduler(num_train_timesteps=train_timesteps, beta_schedule=beta_schedule,
                                  prediction_type="epsilon", clip_sample=clip is not None,
                                  clip_sample_range=clip or 1.0)
        self.ddim = DDIMScheduler.from_config(self.ddpm.config)
        self.ddim.set_timesteps(steps)

    @property
    def device(self) -> torch.device:
        return self.device_hint()

    # -- noise and the surrogate likelihood ------------------------------------------------
    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        ab = self.ddpm.alphas_cumprod.to(x0.device)[t.to(x0.device)].to(x0.dtype)
        ab = ab.view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def draw_noise(self, contexts: Contexts, samples: Samples, *, generator: torch.Generator) -> Noise:
        """(t, ε) per sample and draw: ``t`` [B, K] uniform over the training timesteps, ``eps``
        [B, K, *shape] standard normal (K = ``draws``)."""
        b, k = len(samples), self.draws
        t = torch.randint(0, self.train_timesteps, (b, k), generator=generator)
        eps = torch.randn((b, k, *self.shape), generator=generator)
        return Batch({"t": t, "eps": eps})

    def denoise_error(self, contexts: Contexts, samples: Samples, noise: Noise | None = None,
                      drop: Tensor | None = None) -> Tensor:
        """mean_{C,H,W} ‖ε − ε_θ(x_t, t, c)‖², averaged over the draws: ``[B]``."""
        if noise is None:
            noise = self.draw_noise(contexts, samples, generator=torch.default_generator)
        dev = self.device
        x0 = samples.image.to(dev)
        b, k = x0.shape[0], noise.t.shape[1]
        t = noise.t.to(dev).reshape(-1)
        eps = noise.eps.to(dev).reshape(b * k, *self.shape)
        x0k = x0.repeat_interleave(k, dim=0)
        ctx = contexts.to(dev).repeat(k) if k > 1 else contexts.to(dev)
        xt = self.add_noise(x0k, eps, t)
        pred = self.denoiser(xt, t, ctx, drop.repeat_interleave(k) if drop is not None else None)
        err = (pred.float() - eps.float()).pow(2).flatten(1).mean(-1)
        return err.view(b, k).mean(-1)

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        return -self.scale * self.denoise_error(contexts, samples, noise)

    def mle_loss(self, contexts: Contexts, samples: Samples, *, generator: torch.Generator) -> Tensor:
        """The denoising MSE (the reference's own training loss), ``[B]``."""
        return self.denoise_error(contexts, samples, self.draw_noise(contexts, samples, generator=generator))

    # -- sampling --------------------------------------------------------------------------
    def eps(self, x: Tensor, t: Tensor | int, contexts: Contexts) -> Tensor:
        """Guided noise prediction at timestep ``t`` (CFG when ``guidance`` ≠ 1)."""
        b = x.shape[0]
        tt = torch.as_tensor(t, device=x.device).expand(b) if not torch.is_tensor(t) or t.dim() == 0 else t
        if self.guidance == 1.0:
            return self.denoiser(x, tt, contexts, None)
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
        both = self.denoiser(torch.cat([x, x]), torch.cat([tt, tt]), Batch.cat([contexts, contexts]), drop)
        cond, uncond = both[:b], both[b:]
        return uncond + self.guidance * (cond - uncond)

    def rollin(self, samples: Samples, fraction: Tensor) -> Samples:
        """SDEdit start: keep the image and restart ⌈(1−f)·steps⌉ DDIM steps before the end."""
        remaining = torch.ceil((1 - fraction.float().clamp(0, 1)) * self.steps).long()
        return Batch({"image": samples.image.clone(), "step": (self.steps - remaining).cpu()})

    @torch.no_grad()
    def sample(self, contexts: Contexts, num: int = 1, *, generator: torch.Generator,
               start: Samples | None = None) -> Samples:
        ctx = contexts.repeat(num).to(self.device)
        b = len(ctx)
        x = torch.randn((b, *self.shape), generator=generator).to(self.device)
        timesteps = self.ddim.timesteps
        first = torch.zeros(b, dtype=torch.long)
        if start is not None:  # SDEdit: the offline image noised to the start step's timestep
            first = start.step.cpu().long().clamp(0, self.steps)
            t0 = timesteps[first.clamp(max=self.steps - 1)]
            x0 = start.image.to(self.device).float()
            noised = self.add_noise(x0, x, t0)
            done = (first >= self.steps).to(self.device).view(-1, *([1] * len(self.shape)))
            x = torch.where(done, x0, noised)
        for i, t in enumerate(timesteps.tolist()):
            active = first <= i
            if not bool(active.any()):
                continue
            eps = self.eps(x, t, ctx)
            var_noise = torch.randn((b, *self.shape), generator=generator).to(self.device) if self.eta > 0 else None
            out = self.ddim.step(eps, t, x, eta=self.eta, variance_noise=var_noise).prev_sample
            mask = active.to(self.device).view(-1, *([1] * len(self.shape)))
            x = torch.where(mask, out, x)
        if self.clip is not None:
            x = x.clamp(-self.clip, self.clip)
        return Batch({"image": x})


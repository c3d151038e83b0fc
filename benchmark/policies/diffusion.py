"""Diffusion policies over a diffusers denoiser (the image domain's model family; motion reuses it).

A sample is the field ``sample_field`` of a batch (``samples.image`` on image: pixels in [−1, 1],
``[B, 3, H, W]``; ``samples.motion`` on motion: normalised features, ``[B, D, F]``): any
channels-first ``[B, *shape]`` tensor in the data scale. The denoiser is any module
``denoiser(x_t, t, contexts, drop)`` (``drop``: a ``[B]`` bool mask of contexts replaced by the null
condition, for classifier-free guidance) that predicts ``prediction``:

- ``"epsilon"`` (ε̂, DDPM/Stable Diffusion; the image domain), trained on ‖ε − ε̂‖²;
- ``"sample"`` (x̂₀, as MDM, Tevet et al. 2023; the motion domain), trained on ‖x₀ − x̂₀‖². For
  sampling it is turned into ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t), and guidance mixes x̂₀ the same way
  (the map is affine, so guiding x̂₀ or ε̂ is the same).

- **Training noise**: diffusers ``DDPMScheduler`` (ε-prediction): x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε.
- **Sampling**: diffusers ``DDIMScheduler`` (Song et al. 2021) with ``steps`` steps, η =
  ``eta``, and classifier-free guidance ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅) (Ho & Salimans 2022).
- **log_prob** is the Diffusion-DPO surrogate (Wallace et al. 2023): the ELBO of a diffusion model
  is, up to constants, −E_{t,ε}[T·ω(λ_t)/2 · ‖ε − ε_θ(x_t, t, c)‖²]; Diffusion-DPO keeps one draw
  of (t, ε) and a constant weight, and puts a large β (2500–5000 for SD) on the difference.
  Ours: ``log_prob = −scale · mean_{C,H,W} ‖ε − ε_θ(x_t, t, c)‖²`` (with x̂₀-prediction the same
  with ‖x₀ − x̂₀‖², the model's own training error), one (t, ε) per sample (or the mean over
  ``draws``), with the domain's documented ``scale`` folded in so that the algorithms' usual β ≈ 0.1
  is sensible: DPO's β·(ρ_w − ρ_l) then equals Diffusion-DPO's
  −½·β_dpo·(Δmse_θ − Δmse_ref) with β_dpo = 2·β·scale (β = 0.1, scale = 10⁴ ⇒ β_dpo = 2000).
  It is a surrogate: it is exact only up to a constant and a scale, and its value has variance
  over (t, ε); :meth:`draw_noise` returns the (t, ε) so that policy and reference — and a pair's
  chosen and rejected — are scored on common random numbers.
- **Dataset reset** (SDEdit, Meng et al. 2022): ``rollin`` keeps an image and the DDIM step
  index to restart from; ``sample(start=...)`` noises it to that step with the sampling
  generator and denoises from there.
- ``mle_loss`` is the plain denoising MSE on which the reference was trained (SFT on images or motions).
- **The denoising chain as an MDP** (DDPO, Black et al. 2023; DPOK, Fan et al. 2023): with η > 0
  each DDIM step is Gaussian, x_{k+1} ~ N(μ_θ(x_k, t_k, c), σ_k² I), so the chain has an exact
  log-likelihood: ``step_log_prob`` returns log N(x_{k+1}; μ_θ, σ_k²) per step (the final step,
  σ = 0, is deterministic and masked). Samples drawn with η > 0 carry their ``chain``
  ``[B, S+1, *shape]``; a sample without one (an offline image) gets a latent path drawn from
  DDIM's η-forward process q_σ(x_{1:S} | x_0), seeded by the image's content so that the step view
  and the step log-probs see the same path. With η = 0 the chain is deterministic and the step
  view is the horizon-1 view with the surrogate ``log_prob``.
"""

from __future__ import annotations

import hashlib
import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

from benchmark.api import Batch, Contexts, Noise, Policy, Samples


class DDIMChain:
    """The DDIM sampler's arithmetic, without a network: step statistics, the η-forward process and
    the denoising MDP's transitions (shared by :class:`DiffusionPolicy` and the chain scorers)."""

    def __init__(self, ddim: DDIMScheduler, steps: int, eta: float, clip: float | None, shape: tuple[int, ...],
                 field: str = "image"):
        self.ddim, self.steps, self.eta, self.clip, self.shape = ddim, steps, eta, clip, tuple(shape)
        self.field = field
        """The sample field the chain ends at (``image``, ``motion``)."""

    def _alphas(self, k: int) -> tuple[float, float]:
        """(ᾱ_t, ᾱ_prev) of DDIM step index k (diffusers' DDIMScheduler.step arithmetic)."""
        t = int(self.ddim.timesteps[k])
        prev = t - self.ddim.config.num_train_timesteps // self.steps
        ac = self.ddim.alphas_cumprod
        return float(ac[t]), float(ac[prev]) if prev >= 0 else float(self.ddim.final_alpha_cumprod)

    def sigma(self, k: int) -> float:
        """σ_k = η·sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)), the std of DDIM step k."""
        a_t, a_prev = self._alphas(k)
        return self.eta * math.sqrt(max((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 0.0))

    def step_mean(self, x: Tensor, eps: Tensor, k: int) -> Tensor:
        """μ of DDIM step k: √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ²)·ε̂, x̂₀ = (x − √(1−ᾱ_t)·ε̂)/√ᾱ_t (clipped)."""
        a_t, a_prev = self._alphas(k)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
        return math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - self.sigma(k) ** 2, 0.0)) * eps

    def posterior_chain(self, x0: Tensor, generator: torch.Generator) -> Tensor:
        """A latent path ``[B, S+1, *shape]`` from DDIM's η-forward process: x at the first timestep
        ~ q(x_t | x₀), then x_prev ~ N(√ᾱ_prev·x₀ + √(1 − ᾱ_prev − σ²)·ε_t, σ²), ε_t = (x_t −
        √ᾱ_t·x₀)/√(1 − ᾱ_t); it ends at x₀."""
        a_first, _ = self._alphas(0)
        x = math.sqrt(a_first) * x0 + math.sqrt(1 - a_first) * torch.randn(x0.shape, generator=generator)
        chain = [x]
        for k in range(self.steps):
            a_t, a_prev = self._alphas(k)
            sig = self.sigma(k)
            eps_t = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sig**2, 0.0)) * eps_t
            x = x + sig * torch.randn(x0.shape, generator=generator) if sig > 0 else x
            chain.append(x)
        return torch.stack(chain, dim=1)

    def with_chain(self, samples: Samples) -> Samples:
        """``samples`` with a ``chain`` and ``chain_mask`` (drawn from the forward process, seeded by
        each sample's content, where a sample has none)."""
        if "chain" in samples:
            return samples
        chains = []
        for img in samples.tensors[self.field].detach().cpu().float():
            seed = int.from_bytes(hashlib.sha256(img.numpy().tobytes()).digest()[:4], "little")
            chains.append(self.posterior_chain(img[None], torch.Generator().manual_seed(seed))[0])
        mask = torch.tensor([self.sigma(k) > 0 for k in range(self.steps)]).expand(len(samples), -1).clone()
        return samples.replace(chain=torch.stack(chains), chain_mask=mask)

    def transitions(self, contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
        """The denoising MDP: observation k = x at DDIM step k (with its timestep and the prompt as
        ``cond``), action k = the next x; done at the last stochastic step."""
        smp = self.with_chain(samples)
        chain, mask = smp.chain.cpu(), smp.chain_mask.cpu().bool()
        b = len(samples)
        t = self.ddim.timesteps.long().expand(b, self.steps).clone()
        last = torch.where(mask, torch.arange(self.steps).expand(b, -1), -1).max(-1).values
        done = torch.arange(self.steps)[None, :] == last[:, None]
        return {"obs": chain[:, :-1], "action": chain[:, 1:], "next_obs": chain[:, 1:], "done": done, "mask": mask,
                "timestep": t, "cond": contexts.tokens.cpu()}



class DiffusionPolicy(Policy):
    """π(x | c) of a conditional ε-prediction denoiser; see the module docstring."""

    def __init__(
        self, denoiser: nn.Module, *, shape: tuple[int, ...], train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2", steps: int = 10, guidance: float = 3.0, eta: float = 0.0,
        scale: float = 1e4, draws: int = 1, clip: float | None = 1.0, sample_field: str = "image",
        prediction: str = "epsilon",
    ):
        super().__init__()
        if prediction not in ("epsilon", "sample"):
            raise ValueError(f"unknown prediction {prediction!r}; use 'epsilon' (ε̂) or 'sample' (x̂₀)")
        self.denoiser = denoiser
        self.sample_field = sample_field
        self.prediction = prediction
        self.shape = tuple(shape)
        self.train_timesteps = train_timesteps
        self.beta_schedule = beta_schedule
        self.steps = steps
        self.guidance = guidance
        self.scale = scale
        self.draws = draws
        self.clip = clip
        self.ddpm = DDPMScheduler(num_train_timesteps=train_timesteps, beta_schedule=beta_schedule,
                                  prediction_type="epsilon", clip_sample=clip is not None,
                                  clip_sample_range=clip or 1.0)
        self.ddim = DDIMScheduler.from_config(self.ddpm.config)
        self.ddim.set_timesteps(steps)
        self.chain = DDIMChain(self.ddim, steps, eta, clip, self.shape, sample_field)

    @property
    def eta(self) -> float:
        """DDIM η of the sampler (0: deterministic chain; > 0: a Gaussian per step)."""
        return self.chain.eta

    @eta.setter
    def eta(self, value: float) -> None:
        self.chain.eta = value

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
        """mean_{C,H,W} ‖ε − ε_θ(x_t, t, c)‖² (x̂₀-prediction: ‖x₀ − x̂₀_θ(x_t, t, c)‖²), averaged over the
        draws: ``[B]``."""
        if noise is None:
            noise = self.draw_noise(contexts, samples, generator=torch.default_generator)
        dev = self.device
        x0 = samples.tensors[self.sample_field].to(dev)
        b, k = x0.shape[0], noise.t.shape[1]
        t = noise.t.to(dev).reshape(-1)
        eps = noise.eps.to(dev).reshape(b * k, *self.shape)
        x0k = x0.repeat_interleave(k, dim=0)
        ctx = contexts.to(dev).repeat(k) if k > 1 else contexts.to(dev)
        xt = self.add_noise(x0k, eps, t)
        pred = self.denoiser(xt, t, ctx, drop.repeat_interleave(k) if drop is not None else None)
        target = eps if self.prediction == "epsilon" else x0k
        err = (pred.float() - target.float()).pow(2).flatten(1).mean(-1)
        return err.view(b, k).mean(-1)

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        return -self.scale * self.denoise_error(contexts, samples, noise)

    def mle_loss(self, contexts: Contexts, samples: Samples, *, generator: torch.Generator) -> Tensor:
        """The denoising MSE (the reference's own training loss), ``[B]``."""
        return self.denoise_error(contexts, samples, self.draw_noise(contexts, samples, generator=generator))

    # -- sampling --------------------------------------------------------------------------
    def eps(self, x: Tensor, t: Tensor | int, contexts: Contexts) -> Tensor:
        """Guided noise prediction ε̂ at timestep ``t`` (CFG when ``guidance`` ≠ 1; an x̂₀ prediction
        is guided, then turned into ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t))."""
        b = x.shape[0]
        tt = torch.as_tensor(t, device=x.device).expand(b) if not torch.is_tensor(t) or t.dim() == 0 else t
        if self.guidance == 1.0:
            out = self.denoiser(x, tt, contexts, None)
        else:
            drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
            both = self.denoiser(torch.cat([x, x]), torch.cat([tt, tt]), Batch.cat([contexts, contexts]), drop)
            cond, uncond = both[:b], both[b:]
            out = uncond + self.guidance * (cond - uncond)
        if self.prediction == "epsilon":
            return out
        ab = self.ddpm.alphas_cumprod.to(x.device)[tt.long()].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return (x - ab.sqrt() * out) / (1 - ab).sqrt()

    def rollin(self, samples: Samples, fraction: Tensor) -> Samples:
        """SDEdit start: keep the sample and restart ⌈(1−f)·steps⌉ DDIM steps before the end."""
        remaining = torch.ceil((1 - fraction.float().clamp(0, 1)) * self.steps).long()
        field = self.sample_field
        return Batch({field: samples.tensors[field].clone(), "step": (self.steps - remaining).cpu()})

    def step_log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None
                      ) -> tuple[Tensor, Tensor]:
        """η > 0: log N(x_{k+1}; μ_θ(x_k, t_k, c), σ_k²) per DDIM step (exact; the guided ε̂ as in
        sampling). η = 0: the horizon-1 view with the surrogate ``log_prob``."""
        if self.eta <= 0:
            return super().step_log_prob(contexts, samples, noise=noise)
        smp = self.chain.with_chain(samples)
        dev = self.device
        chain, mask = smp.chain.to(dev), smp.chain_mask.to(dev).bool()
        ctx = contexts.to(dev)
        out = []
        for k in range(self.steps):
            sig = self.chain.sigma(k)
            if sig <= 0:
                out.append(torch.zeros(len(samples), device=dev))
                continue
            x, nxt = chain[:, k].float(), chain[:, k + 1].float()
            mu = self.chain.step_mean(x, self.eps(x, int(self.ddim.timesteps[k]), ctx), k)
            norm = nxt[0].numel() * (math.log(sig) + 0.5 * math.log(2 * math.pi))
            out.append(-((nxt - mu) ** 2).flatten(1).sum(-1) / (2 * sig**2) - norm)
        lp = torch.stack(out, dim=1)
        return lp * mask, mask

    @torch.no_grad()
    def sample(self, contexts: Contexts, num: int = 1, *, generator: torch.Generator,
               start: Samples | None = None) -> Samples:
        ctx = contexts.repeat(num).to(self.device)
        b = len(ctx)
        x = torch.randn((b, *self.shape), generator=generator).to(self.device)
        first = torch.zeros(b, dtype=torch.long)
        if start is not None:  # SDEdit: the offline sample noised to the start step's timestep
            first = start.step.cpu().long().clamp(0, self.steps)
            t0 = self.ddim.timesteps[first.clamp(max=self.steps - 1)]
            x0 = start.tensors[self.sample_field].to(self.device).float()
            noised = self.add_noise(x0, x, t0)
            done = (first >= self.steps).to(self.device).view(-1, *([1] * len(self.shape)))
            x = torch.where(done, x0, noised)
        chain, active_steps = [x], []
        for k, t in enumerate(self.ddim.timesteps.tolist()):
            active = first <= k
            sig = self.chain.sigma(k)
            active_steps.append(active & (sig > 0))
            if not bool(active.any()):
                chain.append(x)
                continue
            mu = self.chain.step_mean(x, self.eps(x, t, ctx), k)
            out = mu + sig * torch.randn((b, *self.shape), generator=generator).to(self.device) if sig > 0 else mu
            x = torch.where(active.to(self.device).view(-1, *([1] * len(self.shape))), out, x)
            chain.append(x)
        out = x.clamp(-self.clip, self.clip) if self.clip is not None else x
        if self.eta <= 0:
            return Batch({self.sample_field: out})
        return Batch({self.sample_field: out, "chain": torch.stack(chain, dim=1),
                      "chain_mask": torch.stack(active_steps, 1)})

"""The motion domain's networks: an MDM-style transformer denoiser and the scorers' trunk.

**Denoiser** (MDM, Tevet et al. 2023, "Human Motion Diffusion Model"): a transformer encoder over
the motion's frames that predicts the clean motion x̂₀ (not the noise). The sequence is one
condition token followed by the F frame tokens (each frame's features projected to ``dim``, plus a
sinusoidal position encoding). The condition token is the sum of the timestep embedding
(sinusoidal → MLP) and the prompt embedding; for classifier-free guidance the prompt embedding is
zeroed for dropped prompts (MDM's ``mask_cond``). MDM encodes the prompt with a frozen CLIP; ours is
the domain's own small text encoder (learned word and position embeddings, one transformer layer,
masked mean pooling), trained with the denoiser. Dropout is 0 (MDM: 0.1) so that the surrogate
log-likelihood is a deterministic function of (t, ε), as on image.

The transformer blocks are our own (pre-norm attention with ``scaled_dot_product_attention`` and a
GELU MLP), not ``nn.TransformerEncoderLayer``: torch's layer takes a different "fast path" kernel in
eval mode, so a trainable copy (train mode) and the frozen reference (eval mode) would give
log-probabilities that differ in the last bits, and a policy equal to the reference must give a
log-ratio of exactly 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api import Contexts


def sinusoidal(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding [N, dim] of positions (Vaswani et al. 2017): sin/cos of p·10000^(−2i/dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device).float() / half)
    angle = positions.float()[:, None] * freq[None]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block: h + Attn(LN(h)), then h + MLP(LN(h)) (GELU, width 2·dim)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: Tensor, keep: Tensor | None = None) -> Tensor:
        """``h`` [B, N, dim]; ``keep`` [B, N] bool: the positions that may be attended to."""
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :] if keep is not None else None
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return h + self.mlp(self.norm2(h))


class PromptEncoder(nn.Module):
    """Word + position embeddings, one transformer layer, masked mean over non-pad words."""

    def __init__(self, vocab: int, length: int, dim: int, heads: int):
        super().__init__()
        self.word = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.layer = Block(dim, heads)

    def forward(self, tokens: Tensor) -> Tensor:
        keep = tokens != 0
        keep = keep | ~keep.any(1, keepdim=True)  # an all-pad prompt attends to its pads
        h = self.layer(self.word(tokens) + self.pos[: tokens.shape[1]], keep)
        w = keep.float()[..., None]
        return (h * w).sum(1) / w.sum(1)


class MotionDenoiser(nn.Module):
    """x̂₀_θ(x_t, t, prompt) on motions ``[B, D, F]`` (see the module docstring)."""

    def __init__(self, features: int, frames: int, vocab: int, length: int, dim: int = 128, layers: int = 4,
                 heads: int = 4):
        super().__init__()
        self.dim = dim
        self.prompt = PromptEncoder(vocab, length, dim, heads)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.inp = nn.Linear(features, dim)
        self.register_buffer("frame_pos", sinusoidal(torch.arange(frames + 1), dim), persistent=False)
        self.body = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, features))

    def forward(self, x: Tensor, t: Tensor, contexts: Contexts, drop: Tensor | None = None) -> Tensor:
        cond = self.prompt(contexts.tokens.to(x.device))
        if drop is not None:
            cond = cond * (~drop.to(x.device)).float()[:, None]
        token = self.time(sinusoidal(t.to(x.device), self.dim)) + cond
        frames = self.inp(x.transpose(1, 2))
        h = torch.cat([token[:, None], frames], dim=1) + self.frame_pos[: frames.shape[1] + 1]
        for block in self.body:
            h = block(h)
        return self.out(h[:, 1:]).transpose(1, 2)


def motion_trunk(channels: int, dim: int) -> nn.Module:
    """The motion scorers' trunk: two stride-2 temporal convolutions over ``[N, channels, F]``,
    mean-pooled over frames, then linear to ``dim``."""
    return nn.Sequential(
        nn.Conv1d(channels, 64, 5, stride=2, padding=2), nn.SiLU(), nn.Conv1d(64, 64, 5, stride=2, padding=2),
        nn.SiLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, dim),
    )

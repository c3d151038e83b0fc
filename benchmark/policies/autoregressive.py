"""Autoregressive policies over a transformers causal LM (the text domain's model family).

Contexts carry ``prompt_ids`` / ``prompt_mask`` (left-padded); samples carry ``tokens`` /
``mask`` (right-padded to a fixed response length; the mask covers the response up to and
including ``<eos>``). ``log_prob`` is the exact sequence log-likelihood Σ_t log π(y_t | x, y_<t);
sampling is at temperature 1 so that samples follow the distribution ``log_prob`` scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api import Batch, Contexts, Noise, Policy, Samples, Scorer


def _positions(attn: Tensor) -> Tensor:
    return (attn.long().cumsum(-1) - 1).clamp(min=0)


class AutoregressivePolicy(Policy):
    """π(y|x) from a causal LM; ``start`` continues from a response prefix (dataset reset:
    ``start.tokens`` with ``start.mask`` marking the forced prefix)."""

    def __init__(self, model: nn.Module, *, response_len: int, eos_id: int, pad_id: int):
        super().__init__()
        self.model = model
        self.response_len = response_len
        self.eos_id = eos_id
        self.pad_id = pad_id

    @property
    def device(self) -> torch.device:
        return self.device_hint()

    def _forward(self, contexts: Contexts, samples: Samples) -> Tensor:
        """Logits predicting each response token, ``[B, R, V]``."""
        ctx, smp = contexts.to(self.device), samples.to(self.device)
        p = ctx.prompt_ids.shape[1]
        ids = torch.cat([ctx.prompt_ids, smp.tokens], dim=1)
        attn = torch.cat([ctx.prompt_mask, torch.ones_like(smp.tokens)], dim=1)
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=_positions(attn))
        return out.logits[:, p - 1 : -1]

    def step_log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None
                      ) -> tuple[Tensor, Tensor]:
        logits = self._forward(contexts, samples).float()
        tokens = samples.tokens.to(self.device)
        lp = torch.gather(F.log_softmax(logits, -1), 2, tokens[..., None]).squeeze(-1)
        mask = samples.mask.to(self.device).bool()
        return lp * mask, mask

    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        lp, _ = self.step_log_prob(contexts, samples)
        return lp.sum(-1)

    def size(self, samples: Samples) -> Tensor:
        return samples.mask.sum(-1).clamp(min=1).to(torch.float32)

    def rollin(self, samples: Samples, fraction: Tensor) -> Samples:
        """Keep the first ⌊f·len⌋ response tokens (never the ``<eos>``) as the forced prefix."""
        lengths = samples.mask.sum(-1)
        keep = torch.floor(fraction.to(lengths.device).float() * (lengths - 1).clamp(min=0)).long()
        pos = torch.arange(samples.tokens.shape[1], device=lengths.device)[None, :]
        mask = (pos < keep[:, None]).long()
        return Batch({"tokens": samples.tokens * mask + self.pad_id * (1 - mask), "mask": mask})

    @torch.no_grad()
    def sample(self, contexts: Contexts, num: int = 1, *, generator: torch.Generator,
               start: Samples | None = None) -> Samples:
        ctx = contexts.repeat(num).to(self.device)
        ids, attn = ctx.prompt_ids, ctx.prompt_mask.long()
        b, r = ids.shape[0], self.response_len
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=_positions(attn), use_cache=True)
        past, logits = out.cache, out.logits[:, -1]
        next_pos = attn.sum(-1)
        tokens = torch.full((b, r), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((b, r), dtype=torch.long, device=self.device)
        alive = torch.ones(b, dtype=torch.bool, device=self.device)
        if start is not None:
            forced_tok = start.tokens.to(self.device)
            forced_len = start.mask.to(self.device).sum(-1)
        for t in range(r):
            probs = torch.softmax(logits.float(), -1).cpu()
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(self.device)
            if start is not None:
                tok = torch.where(t < forced_len, forced_tok[:, t], tok)
            tok = torch.where(alive, tok, torch.full_like(tok, self.pad_id))
            tokens[:, t] = tok
            mask[:, t] = alive.long()
            alive = alive & (tok != self.eos_id)
            if not bool(alive.any()) or t == r - 1:
                break
            attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype, device=self.device)], dim=1)
            out = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                             cache=past, use_cache=True)
            next_pos = next_pos + 1
            past, logits = out.cache, out.logits[:, -1]
        return Batch({"tokens": tokens, "mask": mask})


class SequenceScorer(Scorer):
    """A reward (prompt + response) or value (prompt only) head on a causal-LM backbone: the
    hidden state at the last attended position → a scalar (as TRL's reward models do)."""

    def __init__(self, backbone: nn.Module, hidden: int, kind: str = "reward"):
        super().__init__()
        if kind not in ("reward", "value"):
            raise ValueError(f"scorer kind must be 'reward' or 'value', not {kind!r}")
        self.kind = kind
        self.backbone = backbone
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=1.0 / hidden**0.5)

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        dev = self.head.weight.device
        ids, attn = contexts.prompt_ids.to(dev), contexts.prompt_mask.to(dev).long()
        if self.kind == "reward":
            if samples is None:
                raise ValueError("a reward scorer needs samples")
            ids = torch.cat([ids, samples.tokens.to(dev)], dim=1)
            attn = torch.cat([attn, samples.mask.to(dev).long()], dim=1)
        out = self.backbone(input_ids=ids, attention_mask=attn, position_ids=_positions(attn))
        h = out.last_hidden_state
        last = attn.shape[1] - 1 - torch.flip(attn, dims=[1]).argmax(dim=1)  # last attended position
        return self.head(h[torch.arange(h.shape[0], device=dev), last]).squeeze(-1)

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
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=_positions(attn), use_cache=False)
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


def token_transitions(contexts: Contexts, samples: Samples, pad_id: int) -> dict[str, Tensor]:
    """The token-level MDP: observation t = the prompt and the first t response tokens (later
    positions padded), action t = token t, done at the last valid token (``<eos>`` or the cut)."""
    prompt, tokens = contexts.prompt_ids.cpu(), samples.tokens.cpu()
    mask = samples.mask.cpu().bool()
    b, r = tokens.shape
    p = prompt.shape[1]
    seq = torch.cat([prompt, torch.where(mask, tokens, torch.full_like(tokens, pad_id))], dim=1)  # [B, P+R]
    step = torch.arange(r)
    keep = torch.cat([torch.ones(r, p, dtype=torch.bool), step[None, :] < step[:, None]], dim=1)  # [T, P+R]
    keep_next = torch.cat([torch.ones(r, p, dtype=torch.bool), step[None, :] <= step[:, None]], dim=1)
    obs = torch.where(keep[None], seq[:, None, :], torch.full_like(seq[:, None, :], pad_id))
    next_obs = torch.where(keep_next[None], seq[:, None, :], torch.full_like(seq[:, None, :], pad_id))
    last = mask.long().sum(-1) - 1
    done = (step[None, :] == last[:, None]) & mask
    return {"obs": obs, "action": tokens, "next_obs": next_obs, "done": done, "mask": mask,
            "timestep": step.expand(b, r).clone(), "cond": torch.zeros(b, 0)}


class SequenceScorer(Scorer):
    """Heads on a causal-LM backbone (as TRL's reward models). ``reward`` (prompt + response) and
    ``value`` (prompt only): the hidden state at the last attended position → a scalar. Per-step
    kinds over the token MDP (:func:`token_transitions`), one causal pass for all steps:
    ``v`` V(s_t) and ``q`` Q(s_t, ·)[a_t] from the state before token t (a head over the
    vocabulary for ``q``), ``step_reward`` r(s_t, a_t) from the state after it."""

    def __init__(self, backbone: nn.Module, hidden: int, kind: str = "reward", vocab: int = 0):
        super().__init__()
        if kind not in ("reward", "value", "step_reward", "q", "v"):
            raise ValueError(f"unknown scorer kind {kind!r}")
        self.kind = kind
        self.backbone = backbone
        self.head = nn.Linear(hidden, vocab if kind == "q" else 1)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=1.0 / hidden**0.5)

    def _steps(self, contexts: Contexts, samples: Samples) -> Tensor:
        dev = self.head.weight.device
        p = contexts.prompt_ids.shape[1]
        tokens, mask = samples.tokens.to(dev), samples.mask.to(dev)
        ids = torch.cat([contexts.prompt_ids.to(dev), tokens], dim=1)
        attn = torch.cat([contexts.prompt_mask.to(dev).long(), torch.ones_like(tokens)], dim=1)
        h = self.backbone(input_ids=ids, attention_mask=attn, position_ids=_positions(attn),
                          use_cache=False).last_hidden_state
        if self.kind == "step_reward":
            out = self.head(h[:, p:]).squeeze(-1)
        elif self.kind == "v":
            out = self.head(h[:, p - 1 : -1]).squeeze(-1)
        else:
            out = torch.gather(self.head(h[:, p - 1 : -1]), 2, tokens[..., None]).squeeze(-1)
        return out * mask.to(out.dtype)

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        dev = self.head.weight.device
        if self.kind in ("step_reward", "q", "v"):
            if samples is None:
                raise ValueError(f"a {self.kind} scorer needs samples (it scores the steps of the token MDP)")
            return self._steps(contexts, samples)
        ids, attn = contexts.prompt_ids.to(dev), contexts.prompt_mask.to(dev).long()
        if self.kind == "reward":
            if samples is None:
                raise ValueError("a reward scorer needs samples")
            ids = torch.cat([ids, samples.tokens.to(dev)], dim=1)
            attn = torch.cat([attn, samples.mask.to(dev).long()], dim=1)
        out = self.backbone(input_ids=ids, attention_mask=attn, position_ids=_positions(attn), use_cache=False)
        h = out.last_hidden_state
        last = attn.shape[1] - 1 - torch.flip(attn, dims=[1]).argmax(dim=1)  # last attended position
        return self.head(h[torch.arange(h.shape[0], device=dev), last]).squeeze(-1)

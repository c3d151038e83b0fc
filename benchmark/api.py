"""The one preference-optimisation interface.

Every domain is written against this file and every algorithm is written against this file;
neither imports the other. A *cell* is (algorithm, domain, condition, seed, preset): the runner
prepares the domain, hands the algorithm a :class:`RunContext`, receives a trained
:class:`Policy`, evaluates it with the hidden oracle and stores one record.

What an algorithm may see is exactly :class:`DomainInstance` (through ``ctx.domain``):
the frozen reference policy, factories for trainable policies and scorers, training contexts,
the offline data of the cell's condition, a budgeted :class:`FeedbackChannel` and an optional
free (imperfect) judge. The oracle, the evaluation contexts and the store stay with the runner.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Batches: contexts and samples
# --------------------------------------------------------------------------------------------

IndexLike = int | slice | Sequence[int] | Tensor


class Batch:
    """Named tensors that share a leading batch dimension, plus per-item Python metadata.

    Contexts (prompts, start states) and samples (responses, images, trajectory segments) are
    both ``Batch`` objects; what keys they hold is the domain's business and is listed in its
    :class:`DomainSpec`. Algorithms only index, concatenate, repeat and move batches.

    ``batch["tokens"]`` or ``batch.tokens`` reads a tensor, ``batch[idx]`` selects items.
    """

    __slots__ = ("meta", "tensors")

    def __init__(self, tensors: Mapping[str, Tensor] | None = None, meta: Mapping[str, list] | None = None):
        self.tensors: dict[str, Tensor] = dict(tensors or {})
        self.meta: dict[str, list] = {k: list(v) for k, v in (meta or {}).items()}
        sizes = {int(t.shape[0]) for t in self.tensors.values()} | {len(v) for v in self.meta.values()}
        if len(sizes) > 1:
            raise ValueError(f"Batch fields disagree on the batch size: {sizes}")

    # -- size and access -------------------------------------------------------------------
    def __len__(self) -> int:
        for t in self.tensors.values():
            return int(t.shape[0])
        for v in self.meta.values():
            return len(v)
        return 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.tensors[name]
        except KeyError:
            pass
        try:
            return self.meta[name]
        except KeyError:
            raise AttributeError(f"Batch has no field {name!r}; fields: {self.keys()}") from None

    def __getitem__(self, key: str | IndexLike) -> Any:
        if isinstance(key, str):
            return self.tensors[key] if key in self.tensors else self.meta[key]
        return self.select(key)

    def __contains__(self, key: str) -> bool:
        return key in self.tensors or key in self.meta

    def keys(self) -> list[str]:
        return [*self.tensors, *self.meta]

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self.tensors.items()}
        return f"Batch(n={len(self)}, tensors={shapes}, meta={list(self.meta)})"

    # -- transformations -------------------------------------------------------------------
    def select(self, idx: IndexLike) -> Batch:
        """Items ``idx``: an int (keeps a batch of one), a slice, indices, or a boolean mask."""
        if isinstance(idx, int):
            idx = [idx]
        if isinstance(idx, Tensor):
            idx = torch.nonzero(idx.cpu()).flatten() if idx.dtype == torch.bool else idx.to(torch.long).cpu()
        tensors = {k: v[idx.to(v.device) if isinstance(idx, Tensor) else idx] for k, v in self.tensors.items()}
        if isinstance(idx, slice):
            meta = {k: v[idx] for k, v in self.meta.items()}
        else:
            positions = idx.tolist() if isinstance(idx, Tensor) else list(idx)
            meta = {k: [v[i] for i in positions] for k, v in self.meta.items()}
        return Batch(tensors, meta)

    def repeat(self, num: int) -> Batch:
        """Each item ``num`` times in a row: ``[a, a, b, b]`` (the layout of ``Policy.sample``)."""
        if num == 1:
            return self
        idx = torch.arange(len(self)).repeat_interleave(num)
        return self.select(idx)

    def to(self, device: torch.device | str) -> Batch:
        return Batch({k: v.to(device) for k, v in self.tensors.items()}, self.meta)

    def detach(self) -> Batch:
        return Batch({k: v.detach() for k, v in self.tensors.items()}, self.meta)

    def clone(self) -> Batch:
        """A copy that shares no tensor storage with this batch."""
        return Batch({k: v.detach().clone() for k, v in self.tensors.items()}, self.meta)

    def replace(self, **fields: Any) -> Batch:
        """A copy with some fields replaced or added."""
        tensors, meta = dict(self.tensors), dict(self.meta)
        for k, v in fields.items():
            if isinstance(v, Tensor):
                tensors[k] = v
                meta.pop(k, None)
            else:
                meta[k] = list(v)
                tensors.pop(k, None)
        return Batch(tensors, meta)

    @staticmethod
    def cat(batches: Sequence[Batch]) -> Batch:
        """Concatenate along the batch dimension (fields must match; shapes must agree)."""
        if not batches:
            return Batch()
        first = batches[0]
        tensors = {k: torch.cat([b.tensors[k] for b in batches]) for k in first.tensors}
        meta = {k: [x for b in batches for x in b.meta[k]] for k in first.meta}
        return Batch(tensors, meta)

    def state(self) -> dict:
        """A ``torch.save``-able form that loads with ``weights_only=True``."""
        return {"tensors": dict(self.tensors), "meta": dict(self.meta)}

    @staticmethod
    def from_state(state: Mapping) -> Batch:
        return Batch(state["tensors"], state["meta"])


Contexts = Batch
Samples = Batch
Noise = Batch


# --------------------------------------------------------------------------------------------
# Policies and scorers
# --------------------------------------------------------------------------------------------


class Policy(nn.Module, abc.ABC):
    """Every domain's trainable generator.

    ``log_prob`` is exact for autoregressive, Gaussian and categorical policies; for diffusion it
    is the Diffusion-DPO ELBO surrogate. It is on a scale where the algorithms' usual KL
    strengths (β ≈ 0.1) are sensible: a domain with a surrogate likelihood folds its
    documented scale into ``log_prob`` (see ``DomainSpec.notes``) so that no algorithm special-
    cases a domain.

    Every subclass's ``sample`` is metered: when the runner has attached a sample meter (to the
    reference handed to an algorithm and to every policy ``make_policy`` returns), each call is
    charged to the cell's online-sample budget, wherever it is made (``benchmark.seal``).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "sample" in cls.__dict__:
            from benchmark.seal import metered

            cls.sample = metered(cls.__dict__["sample"])  # type: ignore[method-assign]

    def attach_meter(self, handle: int | None) -> None:
        """Charge this policy's samples (and those of policies inside it) to a sealed meter."""
        for m in self.modules():
            if isinstance(m, Policy):
                m.__dict__["_sample_meter"] = handle

    @abc.abstractmethod
    def sample(
        self, contexts: Contexts, num: int = 1, *, generator: torch.Generator, start: Samples | None = None
    ) -> Samples:
        """``num`` samples per context, laid out like ``contexts.repeat(num)``.

        ``start`` (capability ``"reset"``): partial samples to continue from, one per output
        sample — a text prefix, an image noised to step k, a simulator state. This is how
        "dataset reset" works in every domain.
        """

    @abc.abstractmethod
    def log_prob(self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None) -> Tensor:
        """log π(sample | context), shape ``[B]``. Differentiable w.r.t. the policy parameters.

        ``noise`` (from :meth:`draw_noise`) gives common random numbers so that a policy and its
        reference are scored on the same draw; noise drawn for one batch may be reused for another
        batch of the same shape (Diffusion-DPO shares (t, ε) between chosen and rejected).
        """

    def rollin(self, samples: Samples, fraction: Tensor) -> Samples:
        """A ``start`` for :meth:`sample` that keeps the first ``fraction`` ∈ [0, 1] of each sample
        (capability ``"reset"``): a response prefix, an image noised back to step ⌈(1−f)·T⌉, the
        simulator state ⌊f·H⌋ steps in. Dataset-reset methods (DR-PO) use it without knowing the
        domain."""
        raise NotImplementedError(f"{type(self).__name__} has no dataset reset (capability 'reset')")

    def draw_noise(self, contexts: Contexts, samples: Samples, *, generator: torch.Generator) -> Noise | None:
        """Randomness that ``log_prob`` needs (None for exact likelihoods)."""
        return None

    def step_log_prob(
        self, contexts: Contexts, samples: Samples, *, noise: Noise | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-step log-probs ``[B, T]`` and a validity mask ``[B, T]``, aligned with the domain's
        step view (``DomainInstance.transitions``).

        Sequential domains return one entry per step (token, action, denoising step); the generic
        fallback treats a sample as one step (horizon 1). Where the domain declares ``exact_logp``,
        the sum over steps is the exact log-likelihood of the sample (and of its latent path);
        policy-gradient methods use that sum.
        """
        lp = self.log_prob(contexts, samples, noise=noise)
        return lp[:, None], torch.ones_like(lp, dtype=torch.bool)[:, None]

    def size(self, samples: Samples) -> Tensor:
        """How many units ``log_prob`` sums over, per sample (tokens, steps; 1 for an image).

        Used for length-normalised objectives (IPO as in TRL, SimPO)."""
        return torch.ones(len(samples))

    def mle_loss(self, contexts: Contexts, samples: Samples, *, generator: torch.Generator) -> Tensor:
        """Per-sample maximum-likelihood training loss ``[B]`` on the scale the reference was
        trained with (mean token NLL, denoising MSE, BC NLL). SFT/BC minimise it."""
        noise = self.draw_noise(contexts, samples, generator=generator)
        return -self.log_prob(contexts, samples, noise=noise) / self.size(samples).to(self.device_hint())

    def device_hint(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def frozen_copy(self) -> Policy:
        """A detached copy with gradients off (a reference snapshot)."""
        ref = copy.deepcopy(self)
        ref.requires_grad_(False)
        ref.eval()
        return ref


#: What ``make_scorer(kind=...)`` builds; all on the domain's own feature trunk.
SCORER_KINDS = {
    "reward": "r(x, y) of a whole sample → [B] (a Bradley–Terry reward model)",
    "value": "V(x) of a context → [B]",
    "step_reward": "r(s_t, a_t) per step of the step view → [B, T] (segment return = the sum)",
    "q": "Q(s_t, a_t) per step of the step view → [B, T]",
    "v": "V(s_t) per step of the step view → [B, T]",
}
STEP_KINDS = frozenset({"step_reward", "q", "v"})


class Scorer(nn.Module, abc.ABC):
    """A domain-appropriate network for reward models, critics and value functions.

    ``forward(contexts, samples)`` → ``[B]`` for ``kind="reward"``; ``forward(contexts)`` → ``[B]``
    for ``kind="value"``; ``forward(contexts, samples)`` → ``[B, T]`` for the per-step kinds
    (``step_reward``, ``q``, ``v``), aligned with the domain's step view, 0 on masked steps.
    An ensemble of k (``make_scorer(kind, ensemble=k)``) returns ``[k, ...]``.
    """

    kind: str = "reward"

    @abc.abstractmethod
    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor: ...


class Ensemble(Scorer):
    """k independently initialised scorers of one kind; ``forward`` stacks them: ``[k, ...]``."""

    def __init__(self, members: Sequence[Scorer]):
        super().__init__()
        kinds = {m.kind for m in members}
        if len(kinds) != 1 or not members:
            raise ValueError(f"an ensemble needs members of one kind, got {sorted(kinds)}")
        self.kind = members[0].kind
        self.members = nn.ModuleList(members)

    def forward(self, contexts: Contexts, samples: Samples | None = None) -> Tensor:
        return torch.stack([m(contexts, samples) for m in self.members])


@runtime_checkable
class Judge(Protocol):
    """An imperfect but free AI annotator (capability ``"judge"``), as OAIF, SELM and OSP use."""

    def score(self, contexts: Contexts, samples: Samples) -> Tensor:
        """A scalar judgement per sample ``[B]``."""
        ...

    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        """P(a ≻ b) as the judge sees it, ``[B]`` in [0, 1]."""
        ...


# --------------------------------------------------------------------------------------------
# Data an algorithm may see
# --------------------------------------------------------------------------------------------


@dataclass
class PreferencePairs:
    """Offline preference pairs (context, chosen, rejected) with provenance.

    ``strength`` is the probability, under the rater's own answering model, of the label given
    (that chosen ≻ rejected), in (0, 1): below 0.5 when the rater gave the less likely answer.
    No pair has the same sample on both sides.
    ``rater`` the synthetic rater's id; ``source_*`` the generation source (behaviour policy) ids,
    named in ``OfflineData.sources``.
    """

    contexts: Contexts
    chosen: Samples
    rejected: Samples
    strength: Tensor
    rater: Tensor
    source_chosen: Tensor
    source_rejected: Tensor

    def __len__(self) -> int:
        return len(self.chosen)

    def select(self, idx: IndexLike) -> PreferencePairs:
        return PreferencePairs(
            self.contexts[idx], self.chosen[idx], self.rejected[idx], self.strength[idx],
            self.rater[idx], self.source_chosen[idx], self.source_rejected[idx],
        )

    @staticmethod
    def cat(sets: Sequence[PreferencePairs]) -> PreferencePairs:
        """Concatenate along the pair dimension, on the first set's device (e.g. offline pairs
        followed by pairs an algorithm built from its own samples)."""
        dev = next(iter(sets[0].chosen.tensors.values())).device
        return PreferencePairs(
            *(Batch.cat([getattr(p, f).to(dev) for p in sets]) for f in ("contexts", "chosen", "rejected")),
            *(torch.cat([getattr(p, f).to(dev) for p in sets])
              for f in ("strength", "rater", "source_chosen", "source_rejected")),
        )


@dataclass
class SingleFeedback:
    """Single-sample feedback: thumbs up (1) / down (0), and the rater's score."""

    contexts: Contexts
    samples: Samples
    label: Tensor
    score: Tensor
    rater: Tensor
    source: Tensor

    def __len__(self) -> int:
        return len(self.samples)

    def select(self, idx: IndexLike) -> SingleFeedback:
        return SingleFeedback(
            self.contexts[idx], self.samples[idx], self.label[idx], self.score[idx], self.rater[idx],
            self.source[idx],
        )


@dataclass
class Demonstrations:
    """Samples regarded as good without a comparison ("expert" sets, SFT targets)."""

    contexts: Contexts
    samples: Samples
    source: Tensor

    def __len__(self) -> int:
        return len(self.samples)

    def select(self, idx: IndexLike) -> Demonstrations:
        return Demonstrations(self.contexts[idx], self.samples[idx], self.source[idx])


@dataclass
class OfflineData:
    """Everything offline that the cell's condition provides.

    ``trajectories`` is a D4RL-layout dict for sequential domains (observations, actions,
    rewards *removed* — offline PbRL sees no rewards — terminals, timeouts, ...), else None.
    """

    pairs: PreferencePairs
    singles: SingleFeedback
    demos: Demonstrations
    sources: list[str]
    trajectories: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------
# Feedback: the only path to labels
# --------------------------------------------------------------------------------------------


class FeedbackBudgetExceeded(RuntimeError):
    """Raised when an algorithm asks for more labels than the cell's feedback budget."""


class FeedbackChannel(abc.ABC):
    """Budgeted access to the (noisy, heterogeneous) raters of the cell's condition.

    Each call charges the budget before answering; going over raises
    :class:`FeedbackBudgetExceeded` (never a silent truncation). ``used`` is stored with the
    cell's result.
    """

    @property
    @abc.abstractmethod
    def budget(self) -> int:
        """Queries this cell may ask for (read-only)."""

    @property
    @abc.abstractmethod
    def used(self) -> int:
        """Queries charged so far (read-only)."""

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    @abc.abstractmethod
    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        """Labels ``[B]``: 1 = a preferred, 0 = b preferred, 0.5 = tie, NaN = skipped. Costs B.
        ``contexts``, ``a`` and ``b`` must have the same length B (no broadcasting)."""

    @abc.abstractmethod
    def rate(self, contexts: Contexts, samples: Samples) -> Tensor:
        """Rater scores ``[B]`` (standardised; > 0 reads as thumbs up). Costs B."""

    @abc.abstractmethod
    def rank(self, contexts: Contexts, candidates: Sequence[Samples]) -> Tensor:
        """Rankings ``[B, K]`` of K ≥ 2 candidates per context (0 = best). Costs B·(K−1)."""


# --------------------------------------------------------------------------------------------
# The domain as algorithms see it
# --------------------------------------------------------------------------------------------

#: Capabilities a domain may declare (``DomainSpec.capabilities``) and algorithms may require.
CAPABILITIES = {
    "online": "policies may be sampled during training (ctx.sample, under the online-sample budget)",
    "steps": "a native multi-step view: transitions and per-step log-probs (sequential domains)",
    "reset": "Policy.sample(start=...) continues from partial samples (dataset reset)",
    "judge": "a free, imperfect AI judge",
    "exact_logp": "the likelihood of the domain's own samples is exact (not a surrogate)",
    "agents": "several agents act at each step (multi-agent domains): the step view's obs/action carry an agent "
              "axis ([B, T, N, ...]), contexts an agent_mask [B, N] (padded slots are False), policies an "
              "agent_log_prob(contexts, samples) -> [B, T, N] and per-step scorers a per_agent(contexts, samples) -> "
              "[B, T, N] whose sum over agents is their [B, T] output (benchmark.policies.multiagent)",
    "control": "continuous control: samples are trajectories of a per-step actor from benchmark.policies.control, "
               "rolled out in the domain's simulator (sequence policies such as a Decision Transformer can wrap it)",
}


@dataclass(frozen=True)
class DomainSpec:
    """Static facts about a domain that algorithms may rely on.

    The step view (``DomainInstance.transitions``) has these shapes, per sample: ``obs`` and
    ``next_obs`` ``[T, *obs_shape]``, ``action`` ``[T, *action_shape]`` (``action_kind`` discrete:
    integer ids below ``n_actions``; continuous: floats), ``cond`` ``[*cond_shape]`` and
    ``done``/``mask``/``timestep`` ``[T]``, with T ≤ ``horizon``."""

    name: str
    modality: str
    capabilities: frozenset[str]
    context_fields: tuple[str, ...]
    sample_fields: tuple[str, ...]
    horizon: int = 1
    """Steps per sample in the step view (1 for the horizon-1 view)."""
    obs_shape: tuple[int, ...] = ()
    """Shape of one step's observation."""
    action_shape: tuple[int, ...] = ()
    """Shape of one step's action (``()`` for a discrete id)."""
    action_kind: str = "continuous"
    """``discrete`` or ``continuous``."""
    n_actions: int = 0
    """Number of discrete actions (0 for continuous)."""
    cond_shape: tuple[int, ...] = ()
    """Shape of the per-sample task/condition features ``cond``."""
    lr: float = 1e-4
    """Base fine-tuning learning rate for this domain's policies; algorithms scale it."""
    batch_size: int = 32
    """The quick preset's batch size (a hint for algorithms' own phases)."""
    surrogate_logp: bool = False
    """``log_prob`` is a surrogate (e.g. the diffusion ELBO), not the sum of the step view's log-probs."""
    notes: str = ""
    """How ``log_prob`` and the step view are defined on this domain."""


@dataclass
class DomainInstance:
    """What an algorithm may see of a domain, for one cell."""

    spec: DomainSpec
    reference: Policy
    make_policy: Callable[[], Policy]
    make_scorer: Callable[..., Scorer]
    train_contexts: Contexts
    offline: OfflineData
    feedback: FeedbackChannel
    transitions: Callable[[Contexts, Samples], dict[str, Tensor]]
    """The step view of (contexts, samples): tensors ``obs``, ``action``, ``next_obs``, ``done``,
    ``mask``, ``timestep``, ``cond`` (shapes in :class:`DomainSpec`); use ``benchmark.steps.step_view``."""
    judge: Judge | None = None


# --------------------------------------------------------------------------------------------
# Budgets and the run context
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """A cell's budgets, set by the preset (and the condition, for feedback)."""

    steps: int
    """Optimiser steps the algorithm may take."""
    batch_size: int
    """Examples per step."""
    online_samples: int
    """Samples the algorithm may draw from its policies during training."""
    feedback: int
    """Oracle labels the feedback channel may give."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "online_samples", "feedback"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class BudgetExceeded(RuntimeError):
    """An algorithm went over a non-feedback budget (online samples)."""


class Reporter(Protocol):
    """Progress and curves sink; the runner provides one (a rich progress bar, or nothing)."""

    def advance(self, n: int = 1) -> None: ...

    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...


@dataclass
class RunContext:
    """Everything an algorithm's ``train`` gets: the domain view, budgets, randomness, device."""

    domain: DomainInstance
    budget: Budget
    generator: torch.Generator
    device: torch.device
    seed: int
    reporter: Reporter
    meter: int | None = None
    """Handle of the cell's sealed sample meter (``benchmark.seal``); None: samples are not metered."""
    steps_done: int = 0
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    """Scalars an algorithm reports about its own training (``report``), stored as ``train/<name>``."""
    on_step: Callable[[int], None] | None = None
    """The runner's hook after each optimiser step, given the steps done (checkpoint probes of the
    over-optimisation curve, ``benchmark.checkpoints``); algorithms leave it alone."""

    @property
    def samples_used(self) -> int:
        """Online samples drawn so far by this cell's policies (wherever they were drawn)."""
        if self.meter is None:
            return 0
        from benchmark.seal import opened

        return opened(self.meter).used

    # -- the loop --------------------------------------------------------------------------
    def train_steps(self, total: int | None = None) -> Iterator[int]:
        """Yield optimiser-step indices up to the preset's step budget, advancing the progress
        bar. An algorithm with several phases may call it repeatedly: all phases share one
        budget."""
        remaining = self.budget.steps - self.steps_done
        n = remaining if total is None else min(total, remaining)
        for _ in range(max(n, 0)):
            step = self.steps_done
            yield step
            self.steps_done += 1
            self.reporter.advance(1)
            if self.on_step is not None:
                self.on_step(self.steps_done)

    def batches(self, n: int, batch_size: int | None = None) -> Iterator[Tensor]:
        """Infinite, seeded stream of index batches over a dataset of ``n`` items (epoch
        shuffling, the last partial batch dropped unless the data are smaller than a batch)."""
        bs = min(batch_size or self.budget.batch_size, n)
        if n <= 0:
            raise ValueError("cannot draw batches from an empty dataset")
        while True:
            perm = torch.randperm(n, generator=self.generator)
            for i in range(0, n - bs + 1, bs):
                yield perm[i : i + bs]

    def sample(
        self, policy: Policy, contexts: Contexts, num: int = 1, *, start: Samples | None = None
    ) -> Samples:
        """Online samples from ``policy`` (no gradient, eval mode), charged to the online-sample budget
        by the policy's meter (over budget raises :class:`BudgetExceeded`)."""
        was_training = policy.training
        policy.eval()
        with torch.no_grad():
            out = policy.sample(contexts.to(self.device), num, generator=self.generator, start=start)
        policy.train(was_training)
        return out.detach()

    def optimizer(
        self, params: Any, lr_scale: float = 1.0, weight_decay: float = 0.0
    ) -> torch.optim.Optimizer:
        """AdamW at the domain's base learning rate × ``lr_scale``."""
        return torch.optim.AdamW(params, lr=self.domain.spec.lr * lr_scale, weight_decay=weight_decay)

    def report(self, **metrics: float) -> None:
        """Record scalars about training (e.g. a reward model's held-out accuracy), stored with the
        cell's metrics as ``train/<name>``; never part of the score."""
        self.summary.update({k: float(v) for k, v in metrics.items()})

    def log(self, step: int, **metrics: float) -> None:
        """Record training-curve points (stored with the cell)."""
        for k, v in metrics.items():
            self.curves.setdefault(k, []).append((int(step), float(v)))
        self.reporter.log(step, metrics)


# --------------------------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------------------------


class Algorithm(abc.ABC):
    """A preference-optimisation method. One file in ``baselines/``, registered by name.

    ``Config`` is a dataclass of hyper-parameters with the paper's defaults;
    ``requires`` lists what it consumes (see :data:`REQUIREMENTS`).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    requires: ClassVar[frozenset[str]] = frozenset()
    paper: ClassVar[str] = ""
    trains: ClassVar[bool] = True
    """False only for a null entry that returns the reference unchanged (``reference``): the
    conformance suite then checks that nothing moved instead of the learning direction."""
    check_steps: ClassVar[int] = 12
    """Optimiser steps the conformance suite's learning-direction check gives each training run
    (``benchmark.checks``); methods whose policy moves only after a learned reward model need more."""
    check_overrides: ClassVar[dict[str, Any]] = {}
    """Config overrides for that check's tiny problem (documented in the algorithm's file)."""

    @classmethod
    def requirements(cls, cfg: Any) -> frozenset[str]:
        """What a cell with config ``cfg`` consumes: ``requires`` (the default config's), unless a
        config field changes it (OAIF's ``annotator``: the judge or the feedback channel)."""
        return cls.requires

    @abc.abstractmethod
    def train(self, ctx: RunContext, cfg: Any) -> Policy:
        """Train and return a policy (typically ``ctx.domain.make_policy()`` fine-tuned)."""


#: Requirements an algorithm may declare (``Algorithm.requires``); a cell whose domain or condition
#: lacks one is n/a, with the missing requirement named. Every domain has a step view (horizon 1
#: where nothing better exists): require ``capability:steps`` only for a native multi-step one.
REQUIREMENTS = {
    "offline:pairs": "offline preference pairs",
    "offline:singles": "offline single-sample (thumbs) feedback",
    "offline:demos": "offline demonstrations",
    "offline:trajectories": "D4RL-style unlabelled trajectories",
    "online": "online sampling from the policy",
    "feedback": "queries to the feedback channel",
    **{f"capability:{k}": v for k, v in CAPABILITIES.items()},
}


def config_fields(cfg_cls: type) -> dict[str, dataclasses.Field]:
    """The dataclass fields of an algorithm or domain config, by name."""
    return {f.name: f for f in dataclasses.fields(cfg_cls)}

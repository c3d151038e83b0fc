"""What a domain implements: preparation, the hidden oracle, the offline pool, policies.

A domain is a package under ``domains/`` that subclasses :class:`Domain`. The runner calls
:meth:`Domain.build` once per (config, code version) — the result is cached — then
:meth:`Domain.load`, and builds each cell's :class:`~benchmark.api.DomainInstance` from what the
domain exposes. Algorithms never see this class: only the instance.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from benchmark.api import SCORER_KINDS, Batch, Budget, Contexts, DomainSpec, Ensemble, Judge, Policy, Samples, Scorer
from benchmark.progress import Progress
from benchmark.steps import horizon_one


class Oracle(abc.ABC):
    """The hidden gold reward of a domain.

    Gold reward = ``components @ weights``. Components are what rater populations weigh
    differently (e.g. correctness, helpfulness, harmlessness, verbosity); ``temperature`` is the
    Bradley–Terry temperature of the *gold* preference model, in reward units, used for win rates.
    Only the runner (evaluation, feedback, offline labelling) ever calls it.
    """

    component_names: tuple[str, ...]
    weights: Tensor
    temperature: float = 1.0

    @abc.abstractmethod
    def components(self, contexts: Contexts, samples: Samples) -> Tensor:
        """Per-sample reward components ``[B, K]`` (contexts aligned with samples)."""

    def gold(self, contexts: Contexts, samples: Samples) -> Tensor:
        return self.components(contexts, samples) @ self.weights.to(torch.float32)

    def step_rewards(self, contexts: Contexts, samples: Samples) -> Tensor | None:
        """Per-step gold rewards ``[B, T]`` for sequential domains (myopic raters), else None."""
        return None

    def metrics(self, contexts: Contexts, samples: Samples, num: int) -> dict[str, float]:
        """Domain metrics of evaluation samples (``num`` per context, laid out as
        ``contexts.repeat(num)``). Must include ``diversity``."""
        return {"diversity": float("nan")}


@dataclass
class OfflinePool:
    """Candidate samples from several generation sources, before any labelling.

    ``contexts`` has N items; ``samples`` has M items, each attached to a context by
    ``context_index``. ``components`` (and ``step_rewards``) are the hidden oracle's view of each
    sample; the runner turns them into labels through the cell's rater population, so a
    condition can relabel without regenerating. ``demo`` marks samples offered as demonstrations
    (e.g. an expert behaviour policy, or the top of a reference pool under the oracle).
    """

    contexts: Batch
    samples: Batch
    context_index: Tensor
    source: Tensor
    sources: list[str]
    components: Tensor
    demo: Tensor
    step_rewards: Tensor | None = None
    trajectories: dict[str, Any] | None = None
    part: Tensor | None = None
    """Per sample, the index of its named part of the pool (``parts``), e.g. a dataset kind."""
    parts: list[str] | None = None
    """Names of the pool's parts; a condition with ``pool_part`` keeps one (None: no parts)."""

    def state(self) -> dict:
        return {
            "contexts": self.contexts.state(), "samples": self.samples.state(),
            "context_index": self.context_index, "source": self.source, "sources": list(self.sources),
            "components": self.components, "demo": self.demo, "step_rewards": self.step_rewards,
            "trajectories": self.trajectories, "part": self.part, "parts": self.parts,
        }

    @staticmethod
    def from_state(s: Mapping) -> OfflinePool:
        return OfflinePool(
            Batch.from_state(s["contexts"]), Batch.from_state(s["samples"]), s["context_index"],
            s["source"], list(s["sources"]), s["components"], s["demo"], s.get("step_rewards"),
            s.get("trajectories"), s.get("part"), s.get("parts"),
        )


@dataclass
class DomainConfig:
    """Fields every domain config has; domains subclass it (dataclasses) and add their own."""

    seed: int = 0
    eval_contexts: int = 64
    """Held-out contexts for evaluation."""
    eval_samples: int = 2
    """Samples per evaluation context."""
    best_of: int = 16
    """N of the best-of-N reference target that defines normalized_score = 100 (and of the
    reference mean over all N draws that scales it)."""
    eval_batch: int = 256
    """Evaluation chunk size (bounds memory; part of the config since sampling order follows it)."""
    extra: dict[str, Any] = field(default_factory=dict)


class Domain(abc.ABC):
    """Base class of a domain. Subclasses set the class attributes and implement build/load.

    After :meth:`load`, the attributes ``reference``, ``oracle``, ``pool``, ``train_contexts`` and
    ``eval_contexts`` (and optionally ``indist_contexts``) are available; ``spec`` comes from
    :meth:`make_spec` (it may depend on runtime config fields such as ``lr``).
    """

    name: ClassVar[str]
    Config: ClassVar[type[DomainConfig]] = DomainConfig
    description: ClassVar[str] = ""
    #: preset name -> overrides of ``Config`` fields
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: preset name -> training budgets for cells on this domain
    budgets: ClassVar[dict[str, Budget]] = {}
    #: extra modules (besides the domain's own package) whose source keys the preparation cache
    cache_deps: ClassVar[tuple[str, ...]] = ("benchmark.api", "benchmark.domain", "benchmark.policies")
    #: config fields that do not change preparation (excluded from the cache key)
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"lr"})
    #: whether ``build`` trains on the domain's device (a GPU-trained reference differs from a
    #: CPU-trained one in rounding, so the cache keys the device type then)
    prepares_on_device: ClassVar[bool] = False

    #: context fields that identify a context for the held-out check (a prompt, a scene, a task
    #: variation): no evaluation context may share them with a training or pool context
    context_identity: ClassVar[tuple[str, ...]] = ()
    #: the horizon-1 step view's observation (a context tensor field) and action (a sample field)
    step_obs_field: ClassVar[str] = ""
    step_action_field: ClassVar[str] = ""

    reference: Policy
    oracle: Oracle
    pool: OfflinePool
    train_contexts: Contexts
    eval_contexts: Contexts
    """Held-out evaluation contexts: never seen by the reference's training, the offline pool or
    the training contexts (docs/design.md §5)."""
    indist_contexts: Contexts | None = None
    """An optional in-distribution evaluation split (metrics ``indist/*``)."""
    built_with: dict[str, Any] = {}
    """How the prepared state was built (``torch_threads``), set by the runner from the cache file: a
    preparation built with another thread count is another reference (the device is in the cache key,
    and records carry both as ``preparation_threads`` and ``preparation_device``)."""

    def __init__(self, cfg: DomainConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)

    # -- configuration ---------------------------------------------------------------------
    @classmethod
    def config(cls, preset: str, **overrides: Any) -> DomainConfig:
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        values = {**cls.presets.get(preset, {}), **overrides}
        unknown = set(values) - fields
        if unknown:
            raise KeyError(f"unknown {cls.name} domain config keys {sorted(unknown)}")
        return cls.Config(**values)

    @classmethod
    def budget(cls, preset: str) -> Budget:
        return cls.budgets[preset]

    def build_config(self) -> dict[str, Any]:
        """The config fields that key the preparation cache."""
        return {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in self.runtime_fields}

    # -- preparation -----------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, progress: Progress) -> dict:
        """Deterministic, expensive preparation: train the reference, generate the offline pool,
        contexts, etc. It must be a function of the config alone: seed every generator (and the
        global torch RNG before initialising models) from ``cfg.seed``. Returns a state that ``torch.save`` writes and
        ``torch.load(weights_only=True)`` reads back (tensors, numbers, strings, lists, dicts)."""

    @abc.abstractmethod
    def load(self, state: dict) -> None:
        """Restore from :meth:`build`'s state and set the attributes listed in the class doc."""

    @abc.abstractmethod
    def make_spec(self) -> DomainSpec:
        """Static facts for algorithms (see :class:`~benchmark.api.DomainSpec`)."""

    @property
    def spec(self) -> DomainSpec:
        return self.make_spec()

    # -- what algorithms get through the instance ------------------------------------------
    def make_policy(self) -> Policy:
        """A fresh trainable copy of the reference."""
        import copy

        policy = copy.deepcopy(self.reference)
        policy.requires_grad_(True)
        policy.train()
        return policy

    def make_scorer(self, kind: str = "reward", ensemble: int = 1) -> Scorer:
        """A fresh scorer of ``kind`` (``benchmark.api.SCORER_KINDS``), or an :class:`Ensemble` of
        ``ensemble`` independently initialised ones."""
        if kind not in SCORER_KINDS:
            raise ValueError(f"unknown scorer kind {kind!r}; kinds are {', '.join(SCORER_KINDS)}")
        if ensemble < 1:
            raise ValueError(f"an ensemble needs at least one member, got {ensemble}")
        if ensemble == 1:
            return self.build_scorer(kind)
        return Ensemble([self.build_scorer(kind) for _ in range(ensemble)])

    @abc.abstractmethod
    def build_scorer(self, kind: str) -> Scorer:
        """One fresh scorer of ``kind`` on the domain's feature trunk (see ``SCORER_KINDS``)."""

    def judge(self) -> Judge | None:
        """A free imperfect AI judge, if the domain declares the ``judge`` capability. It must
        hold its own model of quality, never the oracle."""
        return None

    def transitions(self, contexts: Contexts, samples: Samples) -> dict[str, Tensor]:
        """The step view of samples (shapes in :class:`~benchmark.api.DomainSpec`). The default
        is the horizon-1 view: the context's ``step_obs_field`` is the observation, the sample's
        ``step_action_field`` the action, and the episode ends after it."""
        return horizon_one(contexts.tensors[self.step_obs_field], samples.tensors[self.step_action_field],
                           contexts.tensors[self.step_obs_field])

    # -- evaluation hooks ------------------------------------------------------------------
    def policy_metrics(self, policy: Policy, contexts: Contexts, generator: torch.Generator) -> dict[str, float]:
        """Domain metrics that need the policy itself, not only its samples (e.g. the multi-agent
        domain's unilateral deviation gap), on the held-out evaluation contexts; none by default."""
        return {}

    def artifacts(self, policy: Policy, out_dir: Path, generator: torch.Generator) -> list[str]:
        """Write per-run artifacts (e.g. a PNG grid); return their paths."""
        return []

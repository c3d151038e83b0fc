"""Sealing: what an algorithm is handed holds no path to the oracle, the evaluation or the store.

The runner keeps every object that could answer for the oracle (the domain, the feedback channel,
the simulator, the sample meter) in a *vault* and hands algorithms facades that hold only an
integer handle: :class:`SealedCall` (the ``make_policy``/``make_scorer``/``transitions``
factories), :class:`SealedFeedback`, :class:`SealedSimulator`. Walking attributes, slots,
containers, closures, bound methods (``__self__``/``__func__``), ``__wrapped__`` or partials from
an algorithm's ``ctx`` never reaches an oracle, an evaluator, the evaluation contexts,
reward-derived data or a store connection (``tests/test_sealing.py`` walks it).

Threat model (docs/design.md §2): this closes the *casual* in-process routes. Deliberate ones — the
garbage collector, ``sys.modules`` (this module's vault, ``benchmark.runner._LOADED``), stack
frames — remain open inside one process; they are closed by running a submitted method in its own
process (``bench submit``: ``benchmark.sandbox``).

**Online samples are metered where they are drawn.** Every :class:`~benchmark.api.Policy`
subclass's ``sample`` is wrapped (``Policy.__init_subclass__``) to charge the policy's
:class:`SampleMeter`, which the runner attaches to the reference copy and to every policy
``make_policy`` returns, so calling ``policy.sample`` directly is counted as ``ctx.sample`` is;
during training, a policy the algorithm built itself (no meter of its own) is charged to the cell,
and a sealed simulator rolls out only inside a ``Policy.sample`` call (never directly, uncounted).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from torch import Tensor

from benchmark.api import BudgetExceeded, Contexts, FeedbackChannel, Samples

_STRONG: dict[int, Any] = {}
_WEAK: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_HANDLES = itertools.count(1)


def seal(obj: Any, *, weak: bool = False) -> int:
    """Put ``obj`` in the vault; returns its handle. ``weak``: kept only while something else
    holds it (domain-lifetime objects such as a simulator)."""
    handle = next(_HANDLES)
    (_WEAK if weak else _STRONG)[handle] = obj
    return handle


def opened(handle: int) -> Any:
    """The sealed object (the runner's side only)."""
    try:
        return _STRONG[handle] if handle in _STRONG else _WEAK[handle]
    except KeyError:
        raise RuntimeError("this sealed object belongs to a cell that has finished") from None


def release(handles: Sequence[int]) -> None:
    for h in handles:
        _STRONG.pop(h, None)
        _WEAK.pop(h, None)


class SealedCall:
    """A callable that forwards to a sealed callable; holds nothing but a handle."""

    __slots__ = ("_handle", "_name")

    def __init__(self, handle: int, name: str):
        self._handle = handle
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return opened(self._handle)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<sealed {self._name}>"


class SampleMeter:
    """Online samples drawn by a cell's policies, against the preset's budget."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.used = 0

    def charge(self, n: int) -> None:
        if self.used + n > self.budget:
            raise BudgetExceeded(
                f"online-sample budget exceeded: {self.used} used + {n} asked > {self.budget}; sample less or "
                "raise the preset's online_samples (--budget online_samples=N)")
        self.used += n


_IN_SAMPLE: contextvars.ContextVar[bool] = contextvars.ContextVar("prefbench_in_sample", default=False)
_TRAINING_METER: contextvars.ContextVar[int | None] = contextvars.ContextVar("prefbench_training_meter",
                                                                              default=None)


@contextlib.contextmanager
def training_meter(handle: int) -> Iterator[None]:
    """While an algorithm trains (the runner's side): a ``Policy.sample`` of a policy that carries
    no meter of its own (one the algorithm built itself) is charged to the cell's meter."""
    token = _TRAINING_METER.set(handle)
    try:
        yield
    finally:
        _TRAINING_METER.reset(token)


def in_policy_sample() -> bool:
    """Whether a ``Policy.sample`` call is running (sealed simulators roll out only then)."""
    return _IN_SAMPLE.get()


def metered(fn: Any) -> Any:
    """Wrap a ``Policy.sample`` implementation so that it charges the policy's meter, or during
    training the cell's (:func:`training_meter`), once, even when one policy's ``sample`` calls
    another's."""
    if getattr(fn, "_prefbench_metered", False):
        return fn

    def sample(self: Any, contexts: Contexts, num: int = 1, **kwargs: Any) -> Samples:
        if _IN_SAMPLE.get():
            return fn(self, contexts, num, **kwargs)
        handle = self.__dict__.get("_sample_meter") or _TRAINING_METER.get()
        if handle is not None:
            opened(handle).charge(len(contexts) * num)
        token = _IN_SAMPLE.set(True)
        try:
            return fn(self, contexts, num, **kwargs)
        finally:
            _IN_SAMPLE.reset(token)

    sample._prefbench_metered = True  # type: ignore[attr-defined]
    sample.__doc__ = fn.__doc__
    sample.__name__ = fn.__name__
    sample.__qualname__ = fn.__qualname__
    return sample


class SealedFeedback(FeedbackChannel):
    """The feedback channel as algorithms see it: the same calls, counters read-only."""

    __slots__ = ("_handle",)

    def __init__(self, handle: int):
        self._handle = handle

    @property
    def budget(self) -> int:  # type: ignore[override]
        return opened(self._handle).budget

    @property
    def used(self) -> int:  # type: ignore[override]
        return opened(self._handle).used

    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        return opened(self._handle).compare(contexts, a, b)

    def rate(self, contexts: Contexts, samples: Samples) -> Tensor:
        return opened(self._handle).rate(contexts, samples)

    def rank(self, contexts: Contexts, candidates: Sequence[Samples]) -> Tensor:
        return opened(self._handle).rank(contexts, candidates)


class SealedJudge:
    """A judge through a handle (what a sandboxed method holds of the cell's counting judge)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: int):
        self._handle = handle

    def score(self, contexts: Contexts, samples: Samples) -> Tensor:
        return opened(self._handle).score(contexts, samples)

    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        return opened(self._handle).compare(contexts, a, b)


class CountingJudge:
    """A judge that counts the items it is asked about (stored per cell as ``judge_queries``)."""

    __slots__ = ("_count", "_judge")

    def __init__(self, judge: Any):
        self._judge = judge
        self._count = [0]

    @property
    def queries(self) -> int:
        return self._count[0]

    def score(self, contexts: Contexts, samples: Samples) -> Tensor:
        self._count[0] += len(samples)
        return self._judge.score(contexts, samples)

    def compare(self, contexts: Contexts, a: Samples, b: Samples) -> Tensor:
        self._count[0] += len(a)
        return self._judge.compare(contexts, a, b)

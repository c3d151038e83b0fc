"""Registries of domains and algorithms (decorators + entry points), with "did you mean".

Built-in names map to ``"module:attr"`` strings imported lazily, so listing is cheap and a
broken optional domain does not break the others. Third-party packages register through the
entry-point groups ``prefbench.domains`` and ``prefbench.algorithms`` (pyproject:
``[project.entry-points."prefbench.algorithms"] my_algo = "my_pkg.algo:MyAlgo"``), or at run time
with the ``@register_domain`` / ``@register_algorithm`` decorators.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from benchmark.errors import UserError

T = TypeVar("T")

_BUILTIN_DOMAINS = {
    "text": "domains.text:TextDomain",
    "image": "domains.image:ImageDomain",
    "robot": "domains.robot:RobotDomain",
}
_BUILTIN_ALGORITHMS = {
    "sft": "baselines.sft:SFT",
    "dpo": "baselines.dpo:DPO",
    "ipo": "baselines.ipo:IPO",
    "kto": "baselines.kto:KTO",
    "reference": "baselines.reference:Reference",
}


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._lazy: dict[str, str] = dict(builtins)
        self._loaded: dict[str, T] = {}
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            self._lazy.setdefault(ep.name, ep.value)

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise ValueError(f"a registered {self.kind} needs a name")
            self._loaded[key] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self._loaded[name] = obj

    def names(self) -> list[str]:
        self._scan()
        return sorted(set(self._lazy) | set(self._loaded))

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def get(self, name: str) -> T:
        self._scan()
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._lazy:
            valid = self.names()
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown {self.kind} {name!r}: {hint}valid {self.kind}s are {', '.join(valid)}")
        module, _, attr = self._lazy[name].partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        self._loaded[name] = obj
        return obj

    def parse(self, spec: str) -> list[str]:
        """``"all"`` or a comma-separated list, each name checked."""
        names = self.names() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
        if not names:
            raise UserError(f"no {self.kind} given: pass a comma-separated list or 'all'")
        for n in names:
            self.get(n)
        return names


DOMAINS: Registry[Any] = Registry("domain", "prefbench.domains", _BUILTIN_DOMAINS)
ALGORITHMS: Registry[Any] = Registry("algorithm", "prefbench.algorithms", _BUILTIN_ALGORITHMS)

register_domain = DOMAINS.register
register_algorithm = ALGORITHMS.register


def get_condition(name: str):
    from benchmark.conditions import CONDITIONS

    if name not in CONDITIONS:
        close = difflib.get_close_matches(name, list(CONDITIONS), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown condition {name!r}: {hint}valid conditions are {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


def parse_conditions(spec: str) -> list[str]:
    from benchmark.conditions import CONDITIONS

    names = list(CONDITIONS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        get_condition(n)
    return names

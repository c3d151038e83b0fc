"""Registries of domains and algorithms (decorators + entry points), with "did you mean".

Built-in names map to ``"module:attr"`` strings imported lazily, so listing is cheap and a
broken optional domain does not break the others. Third-party packages register through the
entry-point groups ``prefbench.domains`` and ``prefbench.algorithms`` (pyproject:
``[project.entry-points."prefbench.algorithms"] my_algo = "my_pkg.algo:MyAlgo"``), or at run time
with the ``@register_domain`` / ``@register_algorithm`` decorators.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from benchmark.errors import UserError, did_you_mean

T = TypeVar("T")

_BUILTIN_DOMAINS = {
    "text": "domains.text:TextDomain",
    "image": "domains.image:ImageDomain",
    "motion": "domains.motion:MotionDomain",
    "robot": "domains.robot:RobotDomain",
    "multiagent": "domains.multiagent:MultiAgentDomain",
}
_BUILTIN_ALGORITHMS = {
    "sft": "baselines.sft:SFT",
    "dpo": "baselines.dpo:DPO",
    "ipo": "baselines.ipo:IPO",
    "kto": "baselines.kto:KTO",
    "reference": "baselines.reference:Reference",
    "rlhf": "baselines.rlhf:RLHF",
    "iql": "baselines.iql:IQL",
    "marlhf": "baselines.marlhf:MARLHF",
    "drpo": "baselines.drpo:DRPO",
    "inverse_alignment": "baselines.inverse_alignment:InverseAlignment",
    "cpl": "baselines.cpl:CPL",
    "gdpo": "baselines.gdpo:GDPO",
    "dro": "baselines.dro:DRO",
    "sera": "baselines.sera:SeRA",
    "oaif": "baselines.oaif:OAIF",
    "osp": "baselines.osp:OSP",
    "dtr": "baselines.dtr:DTR",
    "selm": "baselines.selm:SELM",
    "sopo": "baselines.sopo:SoPo",
    "modipo": "baselines.modipo:MoDiPO",
    "diffusion_dro": "baselines.diffusion_dro:DiffusionDRO",
    "hypo": "baselines.hypo:HyPO",
}


class Registry(Generic[T]):
    """Names → classes. Refuses a name registered twice (built-in, entry point or decorator) and
    an object that is not a subclass of ``base`` (``"module:Class"``, resolved lazily)."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str], base: str | None = None):
        self.kind = kind
        self.group = group
        self.base = base
        self._lazy: dict[str, str] = dict(builtins)
        self._loaded: dict[str, T] = {}
        self._conflicts: dict[str, list[str]] = {}
        self._scanned = False

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            if ep.name in self._lazy and self._lazy[ep.name] != ep.value:
                self._conflicts.setdefault(ep.name, [self._lazy[ep.name]]).append(ep.value)
            self._lazy.setdefault(ep.name, ep.value)

    def _check(self, name: str, obj: Any) -> None:
        if self.base is None:
            return
        module, _, attr = self.base.partition(":")
        base = getattr(importlib.import_module(module), attr)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise UserError(f"{self.kind} {name!r} is {obj!r}, not a subclass of {base.__module__}.{base.__name__}; "
                            f"register a {base.__name__} subclass")

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise ValueError(f"a registered {self.kind} needs a name")
            self.add(key, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` as ``name`` (refused if the name is taken or ``obj`` has the wrong base)."""
        self._scan()
        taken = self._loaded.get(name)
        if (taken is not None and taken is not obj) or (taken is None and name in self._lazy):
            where = self._lazy.get(name) or f"{getattr(taken, '__module__', '?')}.{getattr(taken, '__name__', taken)}"
            raise UserError(f"{self.kind} {name!r} is already registered ({where}); choose another name")
        self._check(name, obj)
        self._loaded[name] = obj

    def remove(self, name: str) -> None:
        """Forget a name registered at run time (tests, notebooks)."""
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        self._scan()
        return sorted(set(self._lazy) | set(self._loaded))

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def get(self, name: str) -> T:
        self._scan()
        if name in self._conflicts:
            raise UserError(f"{self.kind} {name!r} is registered by several packages "
                            f"({', '.join(self._conflicts[name])}); uninstall all but one")
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._lazy:
            valid = self.names()
            raise UserError(f"unknown {self.kind} {name!r}: {did_you_mean(name, valid)}valid {self.kind}s are "
                            f"{', '.join(valid)}")
        module, _, attr = self._lazy[name].partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as e:  # a broken plugin: one line, and the others still work
            raise UserError(f"{self.kind} {name!r} cannot be loaded from {self._lazy[name]} ({type(e).__name__}: "
                            f"{e}); reinstall or fix the package that provides it (the others still run)") from None
        self._check(name, obj)
        self._loaded[name] = obj
        return obj

    def parse(self, spec: str, skipped: dict[str, str] | None = None) -> list[str]:
        """``"all"`` or a comma-separated list, each name checked. Under ``"all"`` an entry that
        cannot be loaded (a broken plugin) is left out and its error put in ``skipped``; a name
        given explicitly must load."""
        everything = spec.strip() == "all"
        names = self.names() if everything else [s.strip() for s in spec.split(",") if s.strip()]
        if not names:
            raise UserError(f"no {self.kind} given: pass a comma-separated list or 'all'")
        ok = []
        for n in names:
            try:
                self.get(n)
            except UserError as e:
                if not everything:
                    raise
                if skipped is not None:
                    skipped[n] = str(e)
                continue
            ok.append(n)
        return ok


DOMAINS: Registry[Any] = Registry("domain", "prefbench.domains", _BUILTIN_DOMAINS, base="benchmark.domain:Domain")
ALGORITHMS: Registry[Any] = Registry("algorithm", "prefbench.algorithms", _BUILTIN_ALGORITHMS,
                                     base="benchmark.api:Algorithm")

register_domain = DOMAINS.register
register_algorithm = ALGORITHMS.register


def get_condition(name: str):
    from benchmark.conditions import CONDITIONS, KNOBS, condition_at

    base, at, raw = name.partition("@")
    if at:
        if base not in KNOBS:
            raise UserError(f"condition {name!r}: only {', '.join(KNOBS)} take a strength (name@value)")
        try:
            return condition_at(base, raw)
        except ValueError as e:
            raise UserError(str(e)) from None
    if name not in CONDITIONS:
        raise UserError(f"unknown condition {name!r}: {did_you_mean(name, list(CONDITIONS))}valid conditions are "
                        f"{', '.join(CONDITIONS)}")
    return CONDITIONS[name]


def parse_conditions(spec: str) -> list[str]:
    from benchmark.conditions import CONDITIONS

    names = list(CONDITIONS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        get_condition(n)
    return names

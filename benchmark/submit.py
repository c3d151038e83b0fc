"""``bench submit method.py``: an outsider's method, checked, isolated, run like any other.

1. **Static check** of the file (:func:`check_source`): it parses, imports only
   :data:`ALLOWED_IMPORTS`, and defines one ``Algorithm`` subclass with a ``name``, a ``Config``
   dataclass and ``requires``. Nothing of the file runs in this process, ever.
2. **Description** in the sandbox (:func:`benchmark.sandbox.describe_submission`): the class's
   config fields and defaults, and its requirements, as plain data.
3. A stand-in :class:`~benchmark.api.Algorithm` (:func:`submitted_algorithm`) with that ``Config``
   is registered under the method's name; its ``train`` runs the file in the sandbox
   (:func:`benchmark.sandbox.train_in_sandbox`). The cell's config carries the file's sha256
   (``algo_source``), so another version of the file is another cell and another board entry.
4. **Conformance on the smoke preset** (:func:`conformance`): a smoke cell per chosen domain runs
   (or is n/a with its reason), two runs of one cell agree exactly, and on the first domain where it
   runs the method learns in the direction of its labels (``benchmark.checks``).
5. The chosen grid runs on the local executor (each cell in its own sandbox); the board marks the
   entry ``[submitted, sha256 …]``.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import typing
from pathlib import Path
from typing import Any

from benchmark.api import Algorithm, Policy, RunContext
from benchmark.errors import UserError
from benchmark.sandbox import Limits, describe_submission, train_in_sandbox

ALLOWED_IMPORTS = ("__future__", "abc", "collections", "dataclasses", "enum", "functools", "itertools", "math",
                   "typing", "numpy", "torch", "benchmark.api", "benchmark.objectives", "benchmark.training",
                   "benchmark.steps", "benchmark.policies")
"""Modules a submitted file may import (and their submodules)."""

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


@dataclasses.dataclass(frozen=True)
class Submission:
    path: Path
    sha256: str
    class_name: str


def _allowed(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_IMPORTS)


def _imports(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("__import__", "exec", "eval",
                                                                               "compile", "open"):
            names.append(f"{node.func.id}()")  # type: ignore[attr-defined]
    return names


def _algorithm_class(tree: ast.Module, where: str) -> ast.ClassDef:
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)
               and any(getattr(b, "id", getattr(b, "attr", None)) == "Algorithm" for b in n.bases)]
    if len(classes) != 1:
        raise UserError(f"{where}: define exactly one subclass of benchmark.api.Algorithm (found {len(classes)})")
    cls = classes[0]
    assigned = {t.id for n in cls.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    config = [n for n in cls.body if isinstance(n, ast.ClassDef) and n.name == "Config"]
    missing = [a for a in ("name", "requires") if a not in assigned]
    if missing:
        raise UserError(f"{where}: class {cls.name} must set {' and '.join(missing)} (see the README's example)")
    if not config or not any("dataclass" in ast.unparse(d) for d in config[0].decorator_list):
        raise UserError(f"{where}: class {cls.name} needs a nested `@dataclass class Config` with its "
                        "hyper-parameters")
    return cls


def check_source(path: Path) -> Submission:
    """The static check: parse, imports, one Algorithm subclass with name, Config and requires."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass the path of a .py file with one Algorithm subclass")
    source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise UserError(f"{path}:{e.lineno}: the file does not parse ({e.msg})") from None
    bad = [m for m in _imports(tree) if not _allowed(m)]
    if bad:
        raise UserError(f"{path}: a submitted method may not use {', '.join(sorted(set(bad)))}; it may import "
                        f"{', '.join(ALLOWED_IMPORTS)}")
    cls = _algorithm_class(tree, str(path))
    return Submission(path.resolve(), hashlib.sha256(source).hexdigest(), cls.name)


def _config_class(name: str, fields: list[dict]) -> type:
    specs = []
    for f in fields:
        typ = _TYPES.get(f["type"], Any)
        default = f["default"]
        if isinstance(default, (list, dict)):
            specs.append((f["name"], typ, dataclasses.field(default_factory=lambda d=default: type(d)(d))))
        else:
            specs.append((f["name"], typ, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{name}Config", specs, frozen=True)


def submitted_algorithm(sub: Submission, info: dict, limits: Limits) -> type[Algorithm]:
    """The stand-in Algorithm of a submission: its config and requirements, training in the sandbox."""
    name = info.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(f"{sub.path}: {sub.class_name}.name must be an identifier-like string, got {name!r}")
    unknown = sorted(set(info["requires"]) - set(_requirement_names()))
    if unknown:
        raise UserError(f"{sub.path}: {sub.class_name}.requires names unknown requirements {', '.join(unknown)}; "
                        f"valid ones are {', '.join(_requirement_names())}")

    def train(self: Algorithm, ctx: RunContext, cfg: Any) -> Policy:
        return train_in_sandbox(sub.path, sub.class_name, ctx, dataclasses.asdict(cfg), limits)

    attrs = {"name": name, "Config": _config_class(sub.class_name, info["fields"]),
             "requires": frozenset(info["requires"]), "paper": str(info.get("paper", "")),
             "trains": bool(info.get("trains", True)), "source_sha256": sub.sha256, "source_path": str(sub.path),
             "train": train, "__doc__": f"{name}: submitted from {sub.path} (sha256 {sub.sha256})"}
    return typing.cast(type[Algorithm], type(f"Submitted_{sub.class_name}", (Algorithm,), attrs))


def _requirement_names() -> list[str]:
    from benchmark.api import REQUIREMENTS

    return sorted(REQUIREMENTS)


def load_submission(path: Path, limits: Limits) -> type[Algorithm]:
    """Check the file, describe it in the sandbox and register its stand-in (one-line errors)."""
    from benchmark.errors import CellFailed
    from benchmark.registry import ALGORITHMS

    sub = check_source(path)
    try:
        info = describe_submission(sub.path, sub.class_name, limits)
    except CellFailed as e:
        raise UserError(f"{sub.path}: cannot load the method in the sandbox: {e}") from None
    cls = submitted_algorithm(sub, info, limits)
    ALGORITHMS.add(cls.name, cls)
    return cls


def conformance(cls: type[Algorithm], domains: list[str], *, store: Any, cache: Any, device: str,
                progress: Any, say: Any) -> None:
    """The smoke checks a submission must pass before its grid runs (UserError naming the first
    failure): each domain's smoke cell runs or is n/a (stored, so the board shows it), a second
    run of one cell gives the same metrics, and the method learns in its labels' direction."""
    from benchmark.runner import CellRequest, resolve, run_cell

    first = None
    for domain in domains:
        cell = resolve(CellRequest(cls.name, domain, preset="smoke", seed=0))
        rec = run_cell(cell, store=store, cache=cache, device=device, progress=progress, force=True)
        say(f"check: smoke cell on {domain}: {rec.status}" + (f" ({rec.reason})" if rec.reason else ""))
        if rec.status == "failed":
            raise UserError(f"{cls.name} fails its smoke cell on {domain}: {rec.reason}")
        if rec.status == "done" and first is None:
            first = (cell, rec)
    if first is None:
        raise UserError(f"{cls.name} is n/a on every chosen domain ({', '.join(domains)}); check its requires")
    _check_determinism(*first, store=store, cache=cache, device=device)
    say(f"check: a second run of the smoke {first[0].request.domain} cell gives the same metrics")
    _check_direction(cls, first[0], cache=cache, device=device)
    say(f"check: on {first[0].request.domain}, training on the labels beats training on them reversed")


def _check_determinism(cell: Any, rec: Any, *, store: Any, cache: Any, device: str) -> None:
    from benchmark.runner import execute_cell

    again = execute_cell(cell, cache=cache, device=device, home=store.path.parent)
    if again.status != "done":
        raise UserError(f"{cell.request.algo}: the second smoke run on {cell.request.domain} ended "
                        f"{again.status}: {again.reason}")
    differ = sorted(k for k in set(rec.metrics) | set(again.metrics)
                    if k != "wall_s" and rec.metrics.get(k) != again.metrics.get(k))
    if differ:
        raise UserError(f"{cell.request.algo} is not deterministic: two smoke runs with the same seed differ in "
                        f"{', '.join(differ[:5])}; draw randomness only from ctx.generator")


def _check_direction(cls: type[Algorithm], cell: Any, *, cache: Any, device: str) -> None:
    import torch

    from benchmark.checks import learning_direction
    from benchmark.progress import Progress
    from benchmark.runner import prepare_domain

    domain, _, _ = prepare_domain(cell.domain_cls, cell.domain_cfg, cache, torch.device(device), Progress())
    result = learning_direction(cls, cell.algo_cfg, domain, cell.condition, cell.budget, device=device)
    if cls.trains and not result.learns_forward:
        raise UserError(f"{cls.name} learns backwards on {cell.request.domain}: trained on the labels "
                        f"{result.true}, on the labels reversed {result.flipped} (benchmark.checks)")
    if not cls.trains and result.moved:
        raise UserError(f"{cls.name} declares trains = False but its policy moved")


__all__ = ["ALLOWED_IMPORTS", "Submission", "check_source", "conformance", "load_submission",
           "submitted_algorithm"]

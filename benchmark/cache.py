"""Preparation cache and code versions.

A domain's preparation (reference training, offline pool, reference evaluation) is cached
under ``<cache>/<domain>/<key>.pt`` with ``key = sha256(domain config, source of the domain's
package and of its ``cache_deps``)``: changing a config field or the domain's code rebuilds it.
Writes are atomic (temp file + rename) and guarded by a file lock, so parallel cells of the same
domain build it once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError


def default_home() -> Path:
    """Where runs (store, artifacts) go: ``$PREFBENCH_HOME`` or ``./runs``."""
    return Path(os.environ.get("PREFBENCH_HOME", "runs"))


def default_cache_dir() -> Path:
    """Where prepared domains go: ``$PREFBENCH_CACHE``, else ``$XDG_CACHE_HOME/prefbench``."""
    if "PREFBENCH_CACHE" in os.environ:
        return Path(os.environ["PREFBENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "prefbench"


def json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, (set, frozenset, tuple)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.device):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=json_default, separators=(",", ":"))


def hash_obj(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def _module_files(name: str) -> list[Path]:
    mod = importlib.import_module(name)
    if hasattr(mod, "__path__"):
        files: list[Path] = []
        for p in mod.__path__:
            files += sorted(Path(p).rglob("*.py"))
        return files
    return [Path(mod.__file__)] if mod.__file__ else []


def source_hash(modules: list[str]) -> str:
    h = hashlib.sha256()
    for m in sorted(set(modules)):
        for f in _module_files(m):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@cache
def code_version() -> str:
    """The git commit of the checkout (``+dirty`` with uncommitted changes), else the package
    version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if sha.returncode == 0 and sha.stdout.strip():
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "benchmark", "domains",
                 "baselines", "leaderboard"],
                cwd=root, capture_output=True, text=True, timeout=5,
                env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # never leave index.lock behind if killed
            )
            return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "prefbench-" + version("prefbench")
    except PackageNotFoundError:
        return "unknown"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ["torch", "transformers", "tokenizers", "diffusers", "numpy", "gymnasium", "metaworld",
                 "minari", "mujoco", "pettingzoo", "mpe2", "pandas", "rliable"]:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the cache directory {path}: {e.strerror}; "
                        "set PREFBENCH_CACHE (or --cache) to a writable directory") from None


class PreparationCache:
    """Domain preparations on disk, keyed by config and source hash."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def ensure_writable(self) -> PreparationCache:
        """Create the cache directory now, so that one that cannot be is a user error before any
        cell is claimed (and stored as failed)."""
        _make_dir(self.root)
        return self

    def key(self, domain_name: str, cfg: Any, deps: list[str]) -> str:
        return hash_obj({"domain": domain_name, "config": cfg, "source": source_hash(deps)})

    def path(self, domain_name: str, key: str) -> Path:
        return self.root / domain_name / f"{key}.pt"

    def get_or_build(self, domain_name: str, key: str, build: Callable[[], dict],
                     validate: Callable[[dict], Any] | None = None) -> tuple[dict, bool]:
        """(state, built_now). A cached file that does not load, or that ``validate`` rejects
        (truncated, written by other code), is rebuilt; a cache that cannot be written is warned
        about once and the built state used as it is."""
        path = self.path(domain_name, key)
        _make_dir(path.parent)
        state = self._load(path, validate)
        if state is not None:
            return state, False
        with _locked(path.with_suffix(".lock")):
            state = self._load(path, validate)  # another process built it while we waited
            if state is not None:
                return state, False
            state = build()
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            try:
                torch.save(state, tmp)
                os.replace(tmp, path)
            except OSError as e:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                sys.stderr.write(f"warning: cannot write the preparation cache {path} ({e.strerror or e}); "
                                 "continuing without it (the next run prepares the domain again)\n")
                return state, True
            # prove that it loads the way it will be loaded next time
            return torch.load(path, weights_only=True), True

    @staticmethod
    def _load(path: Path, validate: Callable[[dict], Any] | None) -> dict | None:
        if not path.exists():
            return None
        try:
            state = torch.load(path, weights_only=True)
            if validate is not None:
                validate(state)
            return state
        except Exception:  # truncated, foreign or from other code: rebuilt
            return None

"""One cell: resolve the configs, prepare the domain, train, evaluate, store.

``run_cell`` is the whole life of a cell. Everything that depends on the user's input is
checked in :func:`resolve` before any work starts, so a typo costs nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.api import CAPABILITIES, Algorithm, Budget, DomainInstance, Policy, RunContext
from benchmark.cache import PreparationCache, code_version, default_home, hash_obj, package_versions
from benchmark.checkpoints import CheckpointProbe, PolicyTracker, add_point, peek_metrics, step_hook
from benchmark.conditions import Condition
from benchmark.data import build_offline_data, condition_mismatch, pool_scale, stable_seed
from benchmark.domain import Domain
from benchmark.errors import CellFailed, UserError, did_you_mean
from benchmark.evaluation import Evaluator, non_finite, reference_statistics
from benchmark.feedback import InvertedJudge, RaterChannel, RaterPopulation
from benchmark.presets import DEFAULT_PRESET, check_preset
from benchmark.progress import Progress
from benchmark.registry import ALGORITHMS, DOMAINS, get_condition
from benchmark.seal import CountingJudge, SampleMeter, SealedCall, SealedFeedback, release, seal, training_meter
from benchmark.store import Record, Store, describe_owner

# ---------------------------------------------------------------------------------------------
# Resolving a request
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellRequest:
    """What the user asked for; ``sets`` are ``key=value`` overrides of the algorithm config,
    ``domain_sets`` of the domain config, ``budget_sets`` of the preset's budget."""

    algo: str
    domain: str
    condition: str = "default"
    seed: int = 0
    preset: str = DEFAULT_PRESET
    sets: tuple[str, ...] = ()
    domain_sets: tuple[str, ...] = ()
    budget_sets: tuple[str, ...] = ()


@dataclass
class Cell:
    request: CellRequest
    algo_cls: type[Algorithm]
    algo_cfg: Any
    domain_cls: type[Domain]
    domain_cfg: Any
    condition: Condition
    budget: Any
    config: dict = field(default_factory=dict)
    config_hash: str = ""
    run_id: str = ""

    @property
    def overrides(self) -> str:
        """The request's ``--set``, ``--domain-set`` and ``--budget`` overrides, e.g. `` (k=8, families=short)``."""
        r = self.request
        parts = [*r.sets, *r.domain_sets, *(f"budget {b}" for b in r.budget_sets)]
        return f" ({', '.join(parts)})" if parts else ""

    @property
    def label(self) -> str:
        r = self.request
        return f"{r.algo}{self.overrides} × {r.domain} [{r.condition}, {r.preset}, seed {r.seed}]"


def _coerce(name: str, raw: str, typ: Any, owner: str, flag: str = "--set") -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        typ = next(a for a in args if a is not type(None))
        origin = typing.get_origin(typ)
    example = {bool: "true", int: "3", float: "0.1", str: "text"}
    try:
        if typ is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(raw)
        if typ is float:
            value = float(raw)
            if not math.isfinite(value):
                raise UserError(f"{flag} {name}={raw}: {owner} {name} must be a finite number")
            return value
        if typ is str:
            return raw
        if origin is typing.Literal:
            if raw in [str(a) for a in args]:
                return next(a for a in args if str(a) == raw)
            raise UserError(f"{flag} {name}={raw}: {owner} {name} must be one of {', '.join(map(str, args))}")
        if origin in (list, tuple) or typ in (list, tuple, dict) or origin is dict:
            value = json.loads(raw)
            return tuple(value) if origin is tuple or typ is tuple else value
    except (ValueError, json.JSONDecodeError):
        kind = getattr(typ, "__name__", str(typ))
        ex = example.get(typ, "[1, 2]")
        raise UserError(f"{flag} {name}={raw}: {owner} {name} expects {kind} (e.g. {name}={ex})") from None
    return raw


def apply_sets(cfg_cls: type, base: Any, sets: tuple[str, ...] | list[str], owner: str, flag: str = "--set") -> Any:
    """Apply ``key=value`` strings to a dataclass instance, with types and one-line errors."""
    hints = typing.get_type_hints(cfg_cls)
    fields = [f.name for f in dataclasses.fields(cfg_cls)]
    changes: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise UserError(f"{flag} {item!r}: write key=value, e.g. {flag} {fields[0]}=...")
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in fields:
            raise UserError(f"{flag} {key}: {owner} has no such key; {did_you_mean(key, fields, 0.6)}valid keys are "
                            f"{', '.join(sorted(fields))}")
        changes[key] = _coerce(key, raw.strip(), hints[key], owner, flag)
    try:
        return dataclasses.replace(base, **changes)
    except (ValueError, TypeError) as e:  # a config's own validation (__post_init__)
        raise UserError(f"{flag} {' '.join(sets)}: {owner}: {e}") from None


def resolve(req: CellRequest) -> Cell:
    check_preset(req.preset)
    algo_cls = ALGORITHMS.get(req.algo)
    domain_cls = DOMAINS.get(req.domain)
    condition = get_condition(req.condition)
    if req.seed < 0:
        raise UserError(f"--seed {req.seed}: seeds are non-negative integers")
    algo_cfg = apply_sets(algo_cls.Config, algo_cls.Config(), req.sets, f"algorithm {req.algo}")
    try:
        domain_base = domain_cls.config(req.preset)
    except KeyError as e:
        raise UserError(f"domain {req.domain} has no preset config: {e}") from None
    domain_cfg = apply_sets(domain_cls.Config, domain_base, req.domain_sets, f"domain {req.domain}", "--domain-set")
    if req.preset not in domain_cls.budgets:
        raise UserError(f"domain {req.domain} defines no budget for preset {req.preset!r}")
    preset_budget = domain_cls.budget(req.preset)
    budget = apply_sets(Budget, preset_budget, req.budget_sets, "the budget", "--budget")
    # Each domain's preset budget differs by design; what makes an algorithm's entry on the
    # leaderboard distinct across domains is only what the user changed.
    overrides = {k: v for k, v in dataclasses.asdict(budget).items() if v != getattr(preset_budget, k)}
    config = {
        "algo": req.algo, "algo_config": dataclasses.asdict(algo_cfg),
        "domain": req.domain, "domain_config": dataclasses.asdict(domain_cfg),
        "condition": condition.to_dict(), "preset": req.preset, "budget": dataclasses.asdict(budget),
        "budget_overrides": overrides, "seed": req.seed,
    }
    if getattr(algo_cls, "source_sha256", None):  # a submitted method (bench submit): its file's version
        config["algo_source"] = algo_cls.source_sha256
    config_hash = hash_obj(config)
    run_id = hash_obj({"key": [req.algo, req.domain, req.condition, req.preset, req.seed], "cfg": config_hash}, 12)
    return Cell(req, algo_cls, algo_cfg, domain_cls, domain_cfg, condition, budget, config, config_hash, run_id)


# ---------------------------------------------------------------------------------------------
# Preparing a domain (cached)
# ---------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (MiB): a ``bench run`` cell's own peak; in a grid
    worker, the largest of the cells it ran (``ru_maxrss``; Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_LOADED: dict[tuple[str, str, str], tuple[Domain, dict]] = {}

#: modules whose output the preparation cache holds besides the domain's own code (the reference
#: statistics of the evaluation, the seeds of data.py, the scoring version)
PREPARATION_DEPS = ("benchmark.evaluation", "benchmark.data", "benchmark.metrics", "benchmark.preparation")


def preparation_key(domain: Domain, cache: PreparationCache) -> str:
    """The preparation cache's key of a domain: its build config and the source of its package, of
    ``Domain.cache_deps`` and of :data:`PREPARATION_DEPS` (every module whose output is cached); and
    the device type, for a domain that prepares on its device other than the CPU."""
    cls = type(domain)
    package = cls.__module__.rsplit(".", 1)[0] if "." in cls.__module__ else cls.__module__
    config, device = domain.build_config(), preparation_device(domain)
    if device != "cpu":
        config = {**config, "prepared_on": device}
    return cache.key(cls.name, config, [package, *cls.cache_deps, *PREPARATION_DEPS])


def preparation_device(domain: Domain) -> str:
    """The device type a domain's preparation is built on: its own device for a domain that
    prepares there (``Domain.prepares_on_device``), else ``cpu``."""
    return domain.device.type if type(domain).prepares_on_device else "cpu"


def loaded_domains_limit() -> int:
    """How many prepared domains a process keeps in memory, least recently used out first:
    ``$PREFBENCH_LOADED_DOMAINS``, default 1 (a prepared domain can take gigabytes; the test suite,
    whose smoke domains are small, keeps them all rather than reload one per test)."""
    return max(1, int(os.environ.get("PREFBENCH_LOADED_DOMAINS", "1")))


def prepare_domain(domain_cls: type[Domain], cfg: Any, cache: PreparationCache, device: torch.device,
                   progress: Progress) -> tuple[Domain, dict, bool]:
    """Build (or load from the cache) a domain: (domain, reference statistics, built_now)."""
    domain = domain_cls(cfg, device)
    key = preparation_key(domain, cache)
    memo = (domain_cls.name, key, str(device))
    if memo in _LOADED:
        cached, stats = _LOADED[memo] = _LOADED.pop(memo)  # now the most recently used
        cached.cfg = cfg  # runtime fields (e.g. lr) may differ
        return cached, stats, False

    def build() -> dict:
        seed_everything(stable_seed("prepare", domain_cls.name, cfg.seed))
        state = domain.build(progress)
        domain.load(state)
        return {"domain": state, "reference_eval": reference_statistics(domain, progress),
                "built_with": {"torch_threads": torch.get_num_threads()}}

    def usable(state: dict) -> None:  # loads a cached state; one from other code fails here and is rebuilt
        domain.load(state["domain"])
        if "splits" not in state["reference_eval"]:
            raise KeyError("reference_eval.splits")

    state, built = cache.get_or_build(domain_cls.name, key, build, validate=usable)  # the domain holds state
    domain.built_with = dict(state.get("built_with", {}))  # {} for a file from before this was kept
    while _LOADED and len(_LOADED) >= loaded_domains_limit():  # forget the least recently used
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[memo] = (domain, state["reference_eval"])
    return domain, state["reference_eval"], built


@dataclass
class CellSeals:
    """The runner's side of what a cell's algorithm is handed: the real feedback channel, sample
    meter and judge counter behind the sealed facades, and the vault handles to release."""

    channel: RaterChannel
    meter: SampleMeter
    judge: CountingJudge | None
    handles: list[int]
    policies: PolicyTracker = field(default_factory=PolicyTracker)
    """The policies ``make_policy()`` handed out (the checkpoint probes look at the latest)."""

    def close(self) -> None:
        release(self.handles)


def make_instance(domain: Domain, condition: Condition, budget: Any, seed: int,
                  device: torch.device) -> tuple[DomainInstance, CellSeals, dict[str, float]]:
    """What the algorithm sees — the domain view with the condition's data and feedback, sealed
    (``benchmark.seal``): factories, channel and simulator reach the domain only through handles,
    the reference is the cell's own frozen copy, and every policy's samples are metered — plus the
    runner's side of it and the offline data's statistics (stored with the cell)."""
    population = RaterPopulation.build(domain.oracle.weights, condition.raters)
    offline, data_stats = build_offline_data(domain.pool, domain.oracle.weights, population, condition, domain.name)
    # passes over the offline pairs for a method that draws one batch of pairs per step (DPO's regime: 1-3)
    data_stats["data/offline_epochs"] = budget.steps * budget.batch_size / max(data_stats.get("data/pairs", 0.0), 1.0)
    channel = RaterChannel(
        domain.oracle, population, condition.annotator, pool_scale(domain.pool, domain.oracle.weights, condition),
        budget=round(budget.feedback * condition.feedback_scale), seed=seed, device=device, invert=condition.invert,
    )
    meter = SampleMeter(budget.online_samples)
    handles = [seal(channel), seal(meter)]
    meter_handle = handles[1]
    tracker = PolicyTracker()

    @tracker.wrap
    def new_policy() -> Any:
        policy = domain.make_policy()
        policy.attach_meter(meter_handle)
        return policy

    def sealed(fn: Any, name: str) -> SealedCall:
        handles.append(seal(fn))
        return SealedCall(handles[-1], name)

    reference = domain.reference.frozen_copy()
    reference.attach_meter(meter_handle)
    judge = domain.judge()
    if judge is not None and condition.invert:
        judge = InvertedJudge(judge)
    counting = CountingJudge(judge) if judge is not None else None
    instance = DomainInstance(
        spec=domain.spec, reference=reference, make_policy=sealed(new_policy, "make_policy"),
        make_scorer=sealed(domain.make_scorer, "make_scorer"), train_contexts=domain.train_contexts.clone(),
        offline=offline, feedback=SealedFeedback(handles[0]), judge=counting,
        transitions=sealed(domain.transitions, "transitions"),
    )
    return instance, CellSeals(channel, meter, counting, handles, tracker), data_stats


def fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's parameters and buffers (to check that nothing changed them)."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def missing_requirements(algo_cls: type[Algorithm], instance: DomainInstance, cfg: Any = None) -> str | None:
    """Why an algorithm cannot run on a domain (an "n/a" cell, with the reason stored), or None.
    Every requirement (``Algorithm.requirements(cfg)``; ``requires`` without a config) is checked
    against what the domain declares or the condition provides."""
    off, caps = instance.offline, instance.spec.capabilities
    have = {
        "offline:pairs": len(off.pairs) > 0,
        "offline:singles": len(off.singles) > 0,
        "offline:demos": len(off.demos) > 0,
        "offline:trajectories": off.trajectories is not None,
        "online": "online" in caps,
        "feedback": instance.feedback.budget > 0,
        **{f"capability:{c}": c in caps for c in CAPABILITIES},
    }
    reqs = algo_cls.requires if cfg is None else algo_cls.requirements(cfg)
    missing = [r for r in sorted(reqs) if not have.get(r, False)]
    if missing:
        return f"domain {instance.spec.name} lacks {', '.join(missing)}"
    return None


class _StepReporter:
    def __init__(self, task: Any):
        self.task = task

    def advance(self, n: int = 1) -> None:
        self.task.advance(n)

    def log(self, step: int, metrics: Any) -> None:
        self.task.log(step, metrics)


def environment(device: torch.device) -> dict:
    return {
        "host": platform.node(), "platform": platform.platform(), "device": str(device),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
    }


def new_record(cell: Cell, device: str | torch.device = "cpu", *, status: str = "running",
               reason: str | None = None) -> Record:
    """A cell's record before it runs (``running``), with its key, config and provenance."""
    req = cell.request
    return Record(
        run_id=cell.run_id, algo=req.algo, domain=req.domain, condition=req.condition, preset=req.preset,
        seed=req.seed, config_hash=cell.config_hash, config=cell.config, code_version=code_version(),
        packages=package_versions(), env=environment(torch.device(device)), status=status, reason=reason,
        metrics={}, curves={}, timings={}, artifacts=[], feedback_used=None, online_samples=None,
        train_steps=None, started_at=time.time(), finished_at=None, wall_s=None,
    )


def _finish(rec: Record, status: str, reason: str | None = None) -> Record:
    rec.status, rec.reason = status, reason
    rec.finished_at = time.time()
    rec.wall_s = rec.finished_at - rec.started_at
    return rec


def train_cell(cell: Cell, domain: Domain, instance: DomainInstance, seals: CellSeals, device: torch.device,
               progress: Progress, timings: dict[str, float]) -> tuple[Any, RunContext]:
    """The algorithm's training, checked: the domain's own reference must come out unchanged. The
    policy in training is probed at checkpoints and at the end (``benchmark.checkpoints``; their
    time, part of ``train_s``, goes to ``timings["checkpoints_s"]``)."""
    req = cell.request
    generator = torch.Generator().manual_seed(stable_seed("train", req.seed))
    before = fingerprint(domain.reference)
    meter_handle = seals.handles[1]
    probe = CheckpointProbe(domain, req.seed)
    with progress.task(f"train {req.algo}", cell.budget.steps) as task:
        ctx = RunContext(domain=instance, budget=cell.budget, generator=generator, device=device, seed=req.seed,
                         reporter=_StepReporter(task), meter=meter_handle)
        hook = step_hook(probe, seals.policies, cell.budget.steps,
                         lambda step, point: add_point(ctx.curves, step, point))
        seals.handles.append(seal(hook))  # the hook holds the domain: algorithms get a handle only
        ctx.on_step = SealedCall(seals.handles[-1], "on_step")
        with training_meter(meter_handle):  # samples of policies the algorithm builds itself count too
            policy = cell.algo_cls().train(ctx, cell.algo_cfg)
    if fingerprint(domain.reference) != before:
        raise CellFailed("the evaluator's reference policy changed during training; an algorithm must train "
                         "the policies of make_policy(), never the reference")
    if not isinstance(policy, Policy):
        raise CellFailed(f"{req.algo}.train returned {type(policy).__name__}, not a Policy")
    policy.attach_meter(None)  # evaluation samples are the runner's, not the algorithm's
    add_point(ctx.curves, ctx.steps_done, probe.probe(policy))
    timings["checkpoints_s"] = probe.seconds
    return policy, ctx


def _accounting(seals: CellSeals, ctx: RunContext | None) -> dict[str, float]:
    out = {"feedback_used": float(seals.channel.used), "online_samples_used": float(seals.meter.used),
           "train_steps": float(ctx.steps_done if ctx else 0)}
    if seals.judge is not None:
        out["judge_queries"] = float(seals.judge.queries)
    if ctx is not None:
        out.update({f"train/{k}": v for k, v in ctx.summary.items()})
    return out


def execute_cell(
    cell: Cell, *, cache: PreparationCache | None = None, device: str | torch.device = "cpu",
    progress: Progress | None = None, home: Path | None = None, record: Record | None = None,
) -> Record:
    """Run one cell and return its finished record (``done``, ``failed`` or ``na``) **without
    touching the store**: executors run this wherever the cell runs and hand the record back to
    the driver, which alone writes the store (docs/design.md §6a).

    An exception from the cell is caught and becomes a ``failed`` record with its reason (and a
    traceback file under ``<home>/artifacts/<run_id>/``). ``KeyboardInterrupt`` and ``UserError``
    propagate; ``record`` (filled in place, e.g. its timings) then says how far the cell got.
    """
    progress = progress or Progress()
    device = torch.device(device)
    home = Path(home) if home is not None else default_home()
    rec = record if record is not None else new_record(cell, device)
    req, timings = cell.request, rec.timings
    seals: CellSeals | None = None
    ctx = None
    try:
        t0 = time.perf_counter()
        domain, stats, built = prepare_domain(cell.domain_cls, cell.domain_cfg, cache or PreparationCache(), device,
                                              progress)
        timings["prepare_s"], timings["prepared_now"] = time.perf_counter() - t0, float(built)
        rec.env["preparation_threads"] = domain.built_with.get("torch_threads")
        rec.env["preparation_device"] = preparation_device(domain)
        seed_everything(stable_seed("cell", req.seed))
        mismatch = condition_mismatch(domain.pool, cell.condition, domain.name)
        if mismatch:
            return _finish(rec, "na", mismatch)
        t_data = time.perf_counter()
        instance, seals, data_stats = make_instance(domain, cell.condition, cell.budget, req.seed, device)
        timings["data_s"] = time.perf_counter() - t_data
        why = missing_requirements(cell.algo_cls, instance, cell.algo_cfg)
        if why:
            return _finish(rec, "na", why)
        t1 = time.perf_counter()
        policy, ctx = train_cell(cell, domain, instance, seals, device, progress, timings)
        timings["train_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        metrics = Evaluator(domain, stats).evaluate(policy, req.seed, progress)
        timings["eval_s"] = time.perf_counter() - t2
        bad = non_finite(metrics)
        if bad:
            raise CellFailed(f"non-finite metrics {', '.join(bad)}: training diverged or the score is undefined "
                             "(try a smaller learning rate)")
        metrics.update(data_stats)
        metrics.update(_accounting(seals, ctx))
        metrics.update(peek_metrics(ctx.curves))
        t3 = time.perf_counter()
        rec.artifacts = domain.artifacts(policy, home / "artifacts" / cell.run_id,
                                         torch.Generator().manual_seed(stable_seed("art", req.seed)))
        timings["artifacts_s"] = time.perf_counter() - t3
        timings["total_s"] = metrics["wall_s"] = time.perf_counter() - t0
        timings["peak_rss_mb"] = peak_rss_mb()
        rec.metrics, rec.curves = metrics, ctx.curves
        rec.feedback_used, rec.online_samples, rec.train_steps = seals.channel.used, seals.meter.used, ctx.steps_done
        return _finish(rec, "done")
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as e:
        art_dir = home / "artifacts" / cell.run_id
        art_dir.mkdir(parents=True, exist_ok=True)
        tb = art_dir / "traceback.txt"
        tb.write_text(traceback.format_exc())
        rec.artifacts = [str(tb)]
        rec.feedback_used = seals.channel.used if seals else None
        rec.online_samples = seals.meter.used if seals else None
        rec.train_steps = ctx.steps_done if ctx else None
        return _finish(rec, "failed", f"{type(e).__name__}: {e}")
    finally:
        if seals is not None:
            seals.close()


def run_cell(
    cell: Cell, *, store: Store, cache: PreparationCache | None = None, device: str | torch.device = "cpu",
    progress: Progress | None = None, force: bool = False, home: Path | None = None,
    notify: Callable[[str], None] | None = None,
) -> Record:
    """Run one cell and store it (or return its stored record when done/n/a and not forced).

    The cell is claimed first (one computation per cell): when another live process is running
    it, ``notify`` is told and this one waits and returns that result instead of training again.
    The store gets a ``running`` row, so a process killed mid-cell leaves a cell that is visibly
    not done (its claim dies with it) and is redone next time; the finished record replaces it.
    """
    home = Path(home) if home is not None else store.path.parent
    while True:
        existing = store.get(cell.run_id)
        if existing is not None and existing.status in ("done", "na") and not force:
            return existing
        busy = store.claim([cell.run_id])
        if not busy:
            break
        if notify is not None:
            notify(f"cell {cell.run_id} is being run by another process ({describe_owner(busy[cell.run_id])}); "
                   "waiting for its result instead of training it twice")
        done = store.wait_for(cell.run_id)
        if done is not None and done.status in ("done", "na"):
            return done
        # the other process ended without a result (failed, killed): claim it again and run it here
    try:
        return _run_claimed(cell, store, cache, device, progress, home)
    finally:
        store.release([cell.run_id])


def _run_claimed(cell: Cell, store: Store, cache: PreparationCache | None, device: str | torch.device,
                 progress: Progress | None, home: Path) -> Record:
    rec = new_record(cell, device)
    store.put(rec)
    try:
        rec = execute_cell(cell, cache=cache, device=device, progress=progress, home=home, record=rec)
    except (KeyboardInterrupt, UserError) as e:
        store.put(_finish(rec, "failed", "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)))
        raise
    store.put(rec)
    return store.get(cell.run_id)  # type: ignore[return-value]


def default_device() -> str:
    return os.environ.get("PREFBENCH_DEVICE", "cpu")


__all__ = ["Cell", "CellRequest", "apply_sets", "default_home", "execute_cell", "make_instance", "new_record",
           "prepare_domain", "resolve", "run_cell"]

"""Executors: where the cells of a grid run (docs/design.md §6a).

An :class:`Executor` takes resolved cells and yields each one's finished
:class:`~benchmark.store.Record` as it completes. It never touches the store: the driver
(:func:`run_grid`) alone writes it — a ``running`` row when a cell starts, the finished record
when it comes back — so a grid has one writer, and a driver killed at any point leaves only cells
that are visibly not done (``running``), which the next invocation redoes. Two drivers on one store
never run the same cell: each claims its cells first and waits for those another one holds.

- ``local`` (default): in this process, one cell after another, with the cell's own progress bars.
- ``process``: a ``concurrent.futures.ProcessPoolExecutor``, one cell per task, crash-isolated.
  Each domain is prepared once (one task per domain before any cell; the preparation cache's file
  lock covers the rest). A worker that dies (segfault, out-of-memory kill) breaks the pool for every
  cell in flight; those cells are re-run one at a time in a fresh pool, so only the cell that
  crashes again is marked failed, with the reason, never the others.

- ``ray`` (``benchmark/ray_executor.py``, the ``ray`` extra) and ``slurm``
  (``benchmark/slurm_executor.py``, the ``slurm`` extra, through submitit): the same interface,
  imported only when chosen. Executor-specific options (``--address``, ``--slurm-partition``, …)
  reach the executor's constructor as keyword arguments; an option the chosen executor does not
  take is refused.
"""

from __future__ import annotations

import abc
import faulthandler
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmark.cache import PreparationCache, hash_obj
from benchmark.errors import UserError
from benchmark.progress import LineProgress, Progress
from benchmark.runner import Cell, execute_cell, new_record, prepare_domain
from benchmark.store import Record, Store, describe_owner


@dataclass(frozen=True)
class Settings:
    """What every cell of a grid shares (picklable: it travels to workers)."""

    home: str
    cache_dir: str | None = None
    device: str = "cpu"
    threads: int | None = None
    """torch intra-op threads per worker process (``process``); None: cores ÷ workers."""


StartHook = Callable[[Cell], None]


class Executor(abc.ABC):
    """Runs cells and yields ``(cell, record)`` as each finishes; never writes the store.

    ``on_start(cell)`` is called just before a cell begins (the driver writes its ``running``
    row then). Cells are yielded in completion order. ``KeyboardInterrupt`` and ``UserError``
    propagate; the executor cleans up its workers on the way out.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    """Names of the executor-specific keyword options its constructor takes (``--address``, …)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or 1

    @abc.abstractmethod
    def run(self, cells: Sequence[Cell], settings: Settings, *, on_start: StartHook,
            progress: Progress) -> Iterator[tuple[Cell, Record]]:
        ...


class LocalExecutor(Executor):
    """In-process, one cell after another (the default; the cell's progress bars are shown)."""

    name = "local"

    def run(self, cells: Sequence[Cell], settings: Settings, *, on_start: StartHook,
            progress: Progress) -> Iterator[tuple[Cell, Record]]:
        cache = PreparationCache(settings.cache_dir)
        for cell in cells:
            on_start(cell)
            rec = execute_cell(cell, cache=cache, device=settings.device, progress=progress,
                               home=Path(settings.home))
            yield cell, rec


# ---------------------------------------------------------------------------------------------
# process pool
# ---------------------------------------------------------------------------------------------


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # the driver decides what an interrupt means; a worker ends when the driver stops it
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_in_worker(cell: Cell, settings: Settings, lines: bool = False) -> None:
    """Prepare ``cell``'s domain in a worker; with ``lines``, its progress goes to the shared stdout
    as plain lines (the driver logs lines too, so a long preparation is not silent in a log)."""
    import torch

    progress = LineProgress(stream=sys.stdout) if lines else Progress()
    prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(settings.cache_dir),
                   torch.device(settings.device), progress)


def _crash_file(settings: Settings, run_id: str) -> Path:
    return Path(settings.home) / "artifacts" / run_id / "crash.txt"


def _run_in_worker(cell: Cell, settings: Settings) -> Record:
    """One cell in a worker. A fatal signal (segfault, abort) leaves Python's stack in crash.txt."""
    crash = _crash_file(settings, cell.run_id)
    crash.parent.mkdir(parents=True, exist_ok=True)
    with open(crash, "w") as fh:
        faulthandler.enable(file=fh)
        try:
            return execute_cell(cell, cache=PreparationCache(settings.cache_dir), device=settings.device,
                                home=Path(settings.home))
        finally:
            faulthandler.disable()
            fh.close()
            if crash.stat().st_size == 0:
                crash.unlink()


def _died(cell: Cell, settings: Settings) -> Record:
    crash = _crash_file(settings, cell.run_id)
    rec = new_record(cell, settings.device, status="failed")
    if crash.exists() and crash.stat().st_size > 0:
        rec.reason = f"worker process crashed (fatal signal); Python stack in {crash}"
        rec.artifacts = [str(crash)]
    else:
        rec.reason = "worker process died abruptly (killed by a signal, e.g. out of memory)"
    rec.finished_at = rec.started_at
    rec.wall_s = 0.0
    return rec


PreparationStart = Callable[[Cell], Callable[[], None]]
"""Begins preparing a cell's domain somewhere and returns a function that waits for it (and raises
what the preparation raised)."""


def prepare_domains_once(cells: Sequence[Cell], settings: Settings, on_start: StartHook, progress: Progress,
                         start: PreparationStart) -> Generator[tuple[Cell, Record], None, set[str]]:
    """Prepare each distinct (domain, domain config) of ``cells`` once: ``start`` begins every
    preparation before any is waited for. The cells of a domain whose preparation fails are yielded
    failed with that reason, without running; returns their run ids (``UserError`` propagates)."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.request.domain, hash_obj(c.config["domain_config"])), []).append(c)
    waits = {key: start(group[0]) for key, group in groups.items()}
    failed: set[str] = set()
    with progress.task(f"prepare {len(groups)} domain(s)", len(groups)) as task:
        for key, wait_for in waits.items():
            try:
                wait_for()
            except UserError:
                raise
            except Exception as e:
                for c in groups[key]:
                    on_start(c)
                    rec = new_record(c, settings.device, status="failed",
                                     reason=f"domain preparation failed: {type(e).__name__}: {e}")
                    rec.finished_at, rec.wall_s = rec.started_at, 0.0
                    failed.add(c.run_id)
                    yield c, rec
            task.advance()
    return failed


class ProcessExecutor(Executor):
    """A local process pool: one cell per task, crash-isolated (see the module docstring)."""

    name = "process"

    def __init__(self, workers: int | None = None):
        super().__init__(workers or max(1, os.cpu_count() or 1))

    def _pool(self, workers: int, settings: Settings) -> ProcessPoolExecutor:
        # forkserver: workers fork from a clean server (no inherited threads or locks from the
        # driver's progress display), with the heavy imports preloaded once
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["benchmark.runner"])
        threads = settings.threads or max(1, (os.cpu_count() or 1) // self.workers)
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(threads,))

    @staticmethod
    def _stop(pool: ProcessPoolExecutor) -> None:
        procs = list(getattr(pool, "_processes", {}).values())  # no public handle on the workers
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)

    def run(self, cells: Sequence[Cell], settings: Settings, *, on_start: StartHook,
            progress: Progress) -> Iterator[tuple[Cell, Record]]:
        cells = list(cells)
        if not cells:
            return
        size = min(self.workers, len(cells))
        pool = self._pool(size, settings)
        try:
            failed_prep = yield from self._prepare(pool, cells, settings, on_start, progress)
            pending = deque(c for c in cells if c.run_id not in failed_prep)
            inflight: dict[Future, Cell] = {}
            while pending or inflight:
                while pending and len(inflight) < size:  # one task per worker: `running` rows really run
                    cell = pending.popleft()
                    on_start(cell)
                    inflight[pool.submit(_run_in_worker, cell, settings)] = cell
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                broken = False
                for fut in sorted(done, key=lambda f: inflight[f].run_id):
                    cell = inflight.pop(fut)
                    try:
                        yield cell, fut.result()
                    except BrokenProcessPool:
                        broken = True
                        inflight[fut] = cell  # a suspect, with the others still in flight
                if broken:
                    suspects = sorted(inflight.values(), key=lambda c: c.run_id)
                    inflight.clear()
                    self._stop(pool)
                    yield from self._isolate(suspects, settings, progress)
                    size = min(self.workers, len(pending) or 1)
                    pool = self._pool(size, settings)
        finally:
            self._stop(pool)

    def _prepare(self, pool: ProcessPoolExecutor, cells: list[Cell], settings: Settings, on_start: StartHook,
                 progress: Progress) -> Generator[tuple[Cell, Record], None, set[str]]:
        """Prepare each distinct (domain, domain config) once, in parallel (``prepare_domains_once``)."""
        def start(cell: Cell) -> Callable[[], None]:
            fut = pool.submit(_prepare_in_worker, cell, settings, isinstance(progress, LineProgress))

            def wait_for() -> None:
                try:
                    fut.result()
                except BrokenProcessPool:
                    raise UserError(f"a worker died while preparing domain {cell.request.domain}: run `bench run` "
                                    "on one of its cells to see why") from None
            return wait_for

        return (yield from prepare_domains_once(cells, settings, on_start, progress, start))

    def _isolate(self, suspects: list[Cell], settings: Settings,
                 progress: Progress) -> Iterator[tuple[Cell, Record]]:
        """After a worker died: the only cell in flight is the culprit; otherwise re-run each
        suspect alone, so that only a cell that crashes again is failed."""
        if len(suspects) == 1:
            yield suspects[0], _died(suspects[0], settings)
            return
        progress.note(f"a worker died with {len(suspects)} cells in flight: re-running them one at a time")
        for cell in suspects:
            pool = self._pool(1, settings)
            try:
                yield cell, pool.submit(_run_in_worker, cell, settings).result()
            except BrokenProcessPool:
                yield cell, _died(cell, settings)
            finally:
                self._stop(pool)


EXECUTORS: dict[str, type[Executor] | str] = {
    "local": LocalExecutor,
    "process": ProcessExecutor,
    "ray": "benchmark.ray_executor:RayExecutor",
    "slurm": "benchmark.slurm_executor:SlurmExecutor",
}
"""Executors by name; a ``"module:Class"`` string is imported only when chosen (optional extras)."""
EXTRAS = {"ray": "ray", "slurm": "slurm"}
"""The pip extra each optional executor needs (``pip install -e '.[ray]'``)."""


def executor_class(name: str) -> type[Executor]:
    """The executor class called ``name`` (an optional one is imported here; a missing extra is a
    one-line error naming the install command)."""
    if name not in EXECUTORS:
        raise UserError(f"--executor {name}: unknown executor; valid executors are {', '.join(EXECUTORS)}")
    entry = EXECUTORS[name]
    if isinstance(entry, str):
        import importlib

        module, _, attr = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            raise UserError(f"--executor {name} needs the '{EXTRAS[name]}' extra ({e.name} is not installed): "
                            f"pip install -e '.[{EXTRAS[name]}]'") from None
    return entry  # type: ignore[return-value]


def get_executor(name: str, workers: int | None = None, **options: object) -> Executor:
    """An executor by name. ``options`` are executor-specific (None values are ignored); one the
    executor does not take is refused with the ones it does."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: use a positive number of worker processes")
    cls = executor_class(name)
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(given) - set(cls.options))
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        takes = ", ".join("--" + k.replace("_", "-") for k in cls.options) or "no executor options"
        raise UserError(f"{flags}: not an option of the {name} executor (it takes {takes})")
    return cls(workers, **given)


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------


def plan_grid(cells: Sequence[Cell], store: Store, *, force: bool = False,
              rerun_failed: bool = True) -> tuple[list[Cell], list[Record]]:
    """(cells to run, stored records kept). ``done`` and ``na`` cells are kept unless forced;
    ``running`` ones (a killed run) are redone; ``failed`` ones are redone unless
    ``rerun_failed=False``. Duplicate cells (same run id) are run once."""
    todo: list[Cell] = []
    kept: list[Record] = []
    seen: set[str] = set()
    for cell in cells:
        if cell.run_id in seen:
            continue
        seen.add(cell.run_id)
        rec = store.get(cell.run_id)
        keep = rec is not None and not force and (
            rec.status in ("done", "na") or (rec.status == "failed" and not rerun_failed))
        if keep:
            kept.append(rec)  # type: ignore[arg-type]
        else:
            todo.append(cell)
    return todo, kept


def run_grid(
    cells: Sequence[Cell], store: Store, executor: Executor, settings: Settings, *,
    progress: Progress | None = None, on_start: StartHook | None = None,
    on_result: Callable[[Cell, Record], None] | None = None,
) -> list[Record]:
    """Run ``cells`` on ``executor``; the only writer of ``store``. Returns the new records.

    Cells are claimed first (one computation per cell): those another live process is running are
    left to it, waited for after the rest, and their stored result reported (or run here if that
    process ended without one). On ``KeyboardInterrupt`` or a ``UserError`` the cells in flight are
    marked failed (``interrupted`` / the error) and the exception propagates; finished cells are
    already stored.
    """
    progress = progress or Progress()
    busy = store.claim([c.run_id for c in cells])
    mine = [c for c in cells if c.run_id not in busy]
    if busy:
        progress.note(f"{len(busy)} cell(s) are being run by other processes "
                      f"({', '.join(sorted({describe_owner(o) for o in busy.values()}))}); waiting for them at the end")
    out: list[Record] = []
    try:
        _run_claimed_cells(mine, store, executor, settings, progress, on_start, on_result, out)
        for cell in [c for c in cells if c.run_id in busy]:
            while True:
                rec = store.wait_for(cell.run_id)
                if rec is not None and rec.status in ("done", "na"):
                    out.append(rec)
                    if on_result is not None:
                        on_result(cell, rec)
                    break
                if not store.claim([cell.run_id]):  # it ended without a result: run it here
                    _run_claimed_cells([cell], store, executor, settings, progress, on_start, on_result, out)
                    break
    finally:
        store.release([c.run_id for c in mine])
    return out


def _run_claimed_cells(cells: Sequence[Cell], store: Store, executor: Executor, settings: Settings,
                       progress: Progress, on_start: StartHook | None,
                       on_result: Callable[[Cell, Record], None] | None, out: list[Record]) -> None:
    inflight: dict[str, Cell] = {}

    def started(cell: Cell) -> None:
        store.put(new_record(cell, settings.device))
        inflight[cell.run_id] = cell
        if on_start is not None:
            on_start(cell)

    try:
        for cell, rec in executor.run(cells, settings, on_start=started, progress=progress):
            store.put(rec)
            store.release([cell.run_id])
            inflight.pop(cell.run_id, None)
            out.append(rec)
            if on_result is not None:
                on_result(cell, rec)
    except (KeyboardInterrupt, UserError) as e:
        reason = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        for run_id in inflight:
            store.finish(run_id, status="failed", reason=reason)
        raise


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "Settings",
    "executor_class",
    "get_executor",
    "plan_grid",
    "prepare_domains_once",
    "run_grid",
]

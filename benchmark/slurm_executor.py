"""``--executor slurm``: a grid's cells as a Slurm job array, through submitit (the ``slurm`` extra).

The driver (:func:`benchmark.executors.run_grid`) stays where ``bench grid`` was started and alone
writes the store; each cell runs in its own job, and its finished :class:`~benchmark.store.Record`
comes back through submitit's result pickle. So the store need not be reachable from the compute
nodes, but the repository, the Python environment, the preparation cache (``--cache``), the
artifacts (``<home>/artifacts``) and the logs folder (``--logs-dir``, default ``<home>/slurm``) must
be on a filesystem the nodes share.

- First each distinct (domain, domain config) is prepared once, in one job each, all submitted
  before any is waited for (``prepare_domains_once``; the cache's file lock covers the rest); the
  cells of a domain whose preparation fails are failed with its reason, without running.
- Then the cells go out as **one job array** (``slurm_array_parallelism = --workers`` when given):
  ``--partition``, ``--time-limit`` (minutes), ``--mem-gb``, ``--cpus-per-cell`` (rounded up),
  ``--gpus-per-cell`` (rounded up) per job. A job uses ``--threads`` torch threads, by default
  its CPUs.
- ``--slurm-backend local`` runs the same code on submitit's local executor (no cluster): each job
  is a process on this machine, at most ``--workers`` at a time (default: cores ÷ CPUs per cell),
  since that executor has no array throttle.
- Environment: the jobs see the driver's environment (``PYTHONPATH``, ``OMP_NUM_THREADS``,
  ``PREFBENCH_*``, ...): the local executor inherits it, and submitit's ``sbatch`` submission
  does not restrict Slurm's default ``--export=ALL`` (a site that sets ``SBATCH_EXPORT`` changes
  that).
- ``on_start(cell)`` is called when the cell's job is *submitted*: submitit cannot tell when a
  queued job starts, so a ``running`` row may be a cell still waiting in the queue.
- A job that ends without a result (time limit, preemption, node failure, out-of-memory kill) is a
  failed record with the reason and its log path; a ``UserError`` raised inside a job is raised
  again in the driver. ``KeyboardInterrupt`` (and any other way out) cancels the outstanding jobs
  (``scancel``; locally SIGTERM), then propagates. An ``sbatch`` that refuses the submission (bad
  partition, limits) is a one-line ``UserError``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError, UncompletedJobError

from benchmark.cache import PreparationCache
from benchmark.errors import UserError
from benchmark.executors import Executor, Settings, StartHook, prepare_domains_once
from benchmark.progress import LineProgress, Progress
from benchmark.runner import Cell, execute_cell, new_record, prepare_domain
from benchmark.store import Record

BACKENDS = ("slurm", "local")
POLL_S = 0.5
"""Seconds between polls of the jobs (submitit itself rate-limits its ``sacct`` calls)."""


class SlurmJobError(Exception):
    """A job that ended without a usable result (time limit, preemption, node failure, a kill)."""


@dataclass(frozen=True)
class _JobUserError:
    """A ``UserError`` raised inside a job, carried back as a result so the driver can re-raise it
    (submitit would otherwise hand back only a traceback string)."""

    message: str


# ---------------------------------------------------------------------------------------------
# what runs inside a job
# ---------------------------------------------------------------------------------------------


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _prepare_job(cell: Cell, settings: Settings, threads: int) -> BaseException | _JobUserError | None:
    """Prepare the cell's domain (into the shared cache; its progress as plain lines in the job's
    log). None, or the exception it failed with (re-raised by the driver, so that the reason reads
    as on the other executors)."""
    import torch

    _set_threads(threads)
    try:
        prepare_domain(cell.domain_cls, cell.domain_cfg, PreparationCache(settings.cache_dir),
                       torch.device(settings.device), LineProgress(stream=sys.stdout))
    except UserError as e:
        return _JobUserError(str(e))
    except Exception as e:
        try:
            pickle.dumps(e)
        except Exception:
            return RuntimeError(f"{type(e).__name__}: {e}")
        return e
    return None


def _cell_job(cell: Cell, settings: Settings, threads: int) -> Record | _JobUserError:
    """One cell, in its job: its finished record (``execute_cell`` turns its failures into one)."""
    _set_threads(threads)
    try:
        return execute_cell(cell, cache=PreparationCache(settings.cache_dir), device=settings.device,
                            home=Path(settings.home))
    except UserError as e:
        return _JobUserError(str(e))


# ---------------------------------------------------------------------------------------------
# the driver's side
# ---------------------------------------------------------------------------------------------


def _failed(cell: Cell, settings: Settings, reason: str) -> Record:
    """A failed record for a cell whose job produced none."""
    rec = new_record(cell, settings.device, status="failed", reason=reason)
    rec.finished_at, rec.wall_s = rec.started_at, 0.0
    return rec


def _job_failure(job: Any, err: BaseException | None) -> str:
    """One line: why a finished job has no usable result (``err``: submitit's exception, if any)."""
    logs = f"logs: {job.paths.stderr}"
    if err is None or (isinstance(err, UncompletedJobError) and not isinstance(err, FailedJobError)):
        state = job.state
        state = f" (state {state})" if state not in ("FINISHED", "UNKNOWN") else ""
        return (f"slurm job {job.job_id} ended without a result{state}: time limit, preemption, node failure "
                f"or a kill (e.g. out of memory); {logs}")
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith("-----")]
    last = next((ln for ln in reversed(lines) if not ln.startswith(("You can check", "or at paths", "- /"))),
                type(err).__name__)
    return f"slurm job {job.job_id} failed: {last}; {logs}"


class SlurmExecutor(Executor):
    """Cells as Slurm jobs through submitit (see the module docstring)."""

    name = "slurm"
    options = ("cpus_per_cell", "gpus_per_cell", "partition", "time_limit", "mem_gb", "slurm_backend", "logs_dir")

    def __init__(self, workers: int | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0,
                 partition: str | None = None, time_limit: int = 60, mem_gb: float = 8.0,
                 slurm_backend: str = "slurm", logs_dir: str | None = None):
        if slurm_backend not in BACKENDS:
            raise UserError(f"--slurm-backend {slurm_backend}: use slurm (sbatch) or local (submitit's local "
                            "executor, no cluster)")
        missing = [c for c in ("sbatch", "srun") if slurm_backend == "slurm" and shutil.which(c) is None]
        if missing:
            raise UserError(f"--executor slurm: no {' or '.join(missing)} on PATH (not on a Slurm login node?); "
                            "run on one, or use --slurm-backend local to try without a cluster")
        for flag, value in (("--cpus-per-cell", cpus_per_cell), ("--gpus-per-cell", gpus_per_cell),
                            ("--time-limit", time_limit), ("--mem-gb", mem_gb)):
            if not (value >= 0 and math.isfinite(value)) or (value == 0 and flag != "--gpus-per-cell"):
                raise UserError(f"{flag} {value}: use a positive number")
        self.cpus = max(1, math.ceil(cpus_per_cell))
        self.gpus = math.ceil(gpus_per_cell)
        self.partition, self.time_limit, self.mem_gb = partition, int(time_limit), float(mem_gb)
        self.backend, self.logs_dir = slurm_backend, logs_dir
        self.parallelism = workers
        default = max(1, (os.cpu_count() or 1) // self.cpus) if slurm_backend == "local" else 256
        super().__init__(workers or default)

    def _submitit(self, settings: Settings) -> Any:
        """The submitit executor, its logs under ``logs_dir`` (default ``<home>/slurm``)."""
        folder = Path(self.logs_dir) if self.logs_dir else Path(settings.home) / "slurm"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the slurm logs folder {folder}: {e.strerror}; pass --logs-dir "
                            "DIR") from None
        try:
            ex = submitit.AutoExecutor(folder=folder / "%j", cluster=self.backend)
        except RuntimeError as e:  # e.g. "Could not detect srun"
            raise UserError(f"--executor slurm: {e}; use --slurm-backend local to try without a cluster") from None
        params: dict[str, Any] = dict(name="prefbench", timeout_min=self.time_limit, mem_gb=self.mem_gb,
                                      cpus_per_task=self.cpus)
        if self.gpus:  # no --gpus-per-node=0: a cluster without GPU resources may refuse it
            params["gpus_per_node"] = self.gpus
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.parallelism:
            params["slurm_array_parallelism"] = self.parallelism
        ex.update_parameters(**params)
        return ex

    def _submit(self, ex: Any, fn: Any, cells: Sequence[Cell], settings: Settings, threads: int) -> list[Any]:
        """One batch of jobs (on Slurm: one job array). Local jobs start with SIGINT ignored: a Ctrl-C
        is the driver's to handle (it cancels them), not theirs to die of with a traceback each."""
        quiet = self.backend == "local" and threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if quiet else None
        try:
            with contextlib.redirect_stderr(io.StringIO()), ex.batch():  # sbatch's errors: in the exception
                jobs = [ex.submit(fn, c, settings, threads) for c in cells]
        except (FailedJobError, FailedSubmissionError, OSError) as e:  # sbatch refused (bad partition, ...)
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise UserError(f"submitting {len(cells)} job(s) with {self.backend} failed: {first}; check "
                            f"--partition, --time-limit, --mem-gb, --cpus-per-cell and --gpus-per-cell") from None
        finally:
            if quiet:
                signal.signal(signal.SIGINT, old)
        return jobs

    def _cancel(self, jobs: Sequence[Any]) -> None:
        """Cancel the jobs not yet finished (one ``scancel`` for all of them on Slurm)."""
        alive = [j for j in jobs if not j.done()]
        if not alive:
            return
        if self.backend == "slurm":
            subprocess.call(["scancel", *[j.job_id for j in alive]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
            return
        for j in alive:  # SIGTERM, which the local controller forwards to its task (it ignores SIGINT,
            proc = getattr(j, "_process", None)  # job.cancel's signal; no public handle on the process)
            if proc is not None:
                proc.terminate()
            else:
                j.cancel(check=False)

    def run(self, cells: Sequence[Cell], settings: Settings, *, on_start: StartHook,
            progress: Progress) -> Iterator[tuple[Cell, Record]]:
        cells = list(cells)
        if not cells:
            return
        ex = self._submitit(settings)
        threads = settings.threads or self.cpus
        jobs: list[Any] = []
        try:
            failed = yield from self._prepare(ex, cells, settings, threads, on_start, progress, jobs)
            yield from self._run_cells(ex, [c for c in cells if c.run_id not in failed], settings, threads,
                                       on_start, jobs)
        finally:
            self._cancel(jobs)

    def _prepare(self, ex: Any, cells: list[Cell], settings: Settings, threads: int, on_start: StartHook,
                 progress: Progress, jobs: list[Any]) -> Generator[tuple[Cell, Record], None, set[str]]:
        """One job per distinct (domain, domain config), all submitted before any is waited for
        (``prepare_domains_once``); returns the run ids of the cells failed by a failed preparation."""
        def start(cell: Cell) -> Callable[[], None]:
            [job] = self._submit(ex, _prepare_job, [cell], settings, threads)
            jobs.append(job)

            def wait_for() -> None:
                while not job.done():
                    time.sleep(POLL_S)
                out = self._outcome(job)
                if isinstance(out, str):
                    raise SlurmJobError(out)
                if isinstance(out, BaseException):
                    raise out

            return wait_for

        return (yield from prepare_domains_once(cells, settings, on_start, progress, start))

    def _outcome(self, job: Any) -> Any:
        """A finished job's result; a ``UserError`` from inside it is raised here, and a job that
        ended without a result gives the reason (a string)."""
        if self.backend == "local" and not job.paths.result_pickle.exists():
            return _job_failure(job, None)  # a local job writes its result before it ends: no file lag to wait out
        err = job.exception()
        if err is not None:
            return _job_failure(job, err)
        result = job.result()
        if isinstance(result, _JobUserError):
            raise UserError(result.message)
        return result

    def _run_cells(self, ex: Any, cells: list[Cell], settings: Settings, threads: int, on_start: StartHook,
                   jobs: list[Any]) -> Iterator[tuple[Cell, Record]]:
        """Submit the cells (all at once on Slurm; ``workers`` at a time locally) and yield each
        finished one, in completion order."""
        pending = deque(cells)
        limit = len(cells) if self.backend == "slurm" else self.workers
        inflight: dict[str, tuple[Cell, Any]] = {}
        while pending or inflight:
            batch = [pending.popleft() for _ in range(min(len(pending), limit - len(inflight)))]
            if batch:
                for cell, job in zip(batch, self._submit(ex, _cell_job, batch, settings, threads)):
                    on_start(cell)
                    inflight[cell.run_id] = (cell, job)
                    jobs.append(job)
            finished = sorted(r for r, (_, job) in inflight.items() if job.done())
            if not finished:
                time.sleep(POLL_S)
            for run_id in finished:
                cell, job = inflight.pop(run_id)
                out = self._outcome(job)
                yield cell, out if isinstance(out, Record) else _failed(cell, settings, out)


__all__ = ["SlurmExecutor"]

"""``--executor ray``: each cell a Ray task (the ``ray`` extra; docs/design.md §6a).

``--address host:port`` (or ``auto``, or ``ray://host:port``) joins a running cluster; without it
the executor starts a local one (``--workers`` CPUs, default all cores; no dashboard) and always
shuts it down when the grid ends, is interrupted or fails. ``RAY_ADDRESS`` alone is not followed:
pass ``--address auto`` for that.

- **Resources**: a cell reserves ``--cpus-per-cell`` CPUs (default 1) and ``--gpus-per-cell`` GPUs
  (default 0; ``--device cuda`` needs some, since Ray does not hide GPUs from tasks that reserve
  none). At most ``--workers`` cells are in flight, and never more than the cluster's nodes fit
  when the grid starts, so a ``running`` row in the store is a cell that really runs (nodes an
  autoscaler adds later are not used for more cells at once). Each worker uses ``--threads`` torch
  threads, default the cell's CPUs.
- **Preparation**: each distinct (domain, domain config) is prepared once, as a Ray task, before
  any cell runs. The preparation cache (``--cache``, a file-locked directory) is shared by every
  worker of a node; on a multi-node cluster each node builds it once (in a cell's first task there)
  unless the cache directory is on a file system the nodes share.
- **The driver alone writes the store**: a task runs ``execute_cell`` and returns the record.
  Workers import this copy of the project: its root goes first on their ``PYTHONPATH`` (nothing is
  uploaded; on other nodes that path, or an installed ``prefbench``, must hold the same code), and
  they get the driver's ``OMP_NUM_THREADS`` and ``PREFBENCH_*`` variables. Each record's
  ``timings["queue_s"]`` is the time from submission to the task's start in its worker (Ray's
  scheduling, plus a worker's start-up on its first task; clocks of other nodes may differ).
- **Faults**: an exception in a cell is a failed record (``execute_cell``). A worker that dies
  (segfault, out-of-memory kill, lost node) is retried once by Ray; if it dies again the cell is
  failed with the reason (a fatal signal leaves Python's stack in ``artifacts/<run_id>/crash.txt``
  on that node). Ctrl-C cancels the tasks in flight (their workers are killed) and the driver marks
  those cells failed ("interrupted"). Worker logs: the Ray session's ``logs/`` directory
  (``/tmp/ray/session_latest/logs`` for a local cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path

import ray
from ray.exceptions import RayError, RayTaskError

import benchmark
from benchmark.errors import UserError
from benchmark.executors import (
    Executor,
    PreparationStart,
    Settings,
    StartHook,
    _died,
    _prepare_in_worker,
    _run_in_worker,
    prepare_domains_once,
)
from benchmark.progress import LineProgress, Progress
from benchmark.runner import Cell, new_record
from benchmark.store import Record

PROJECT_ROOT = Path(benchmark.__file__).resolve().parent.parent
"""The root of the copy of the project the driver runs (workers import the same one)."""
RETRIES = 1
"""How many times Ray reruns a task whose worker died."""
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
"""Object store of a local cluster: only cells and records travel through it."""
CONNECT_TIMEOUT_S = 5.0


# ---------------------------------------------------------------------------------------------
# in the Ray workers
# ---------------------------------------------------------------------------------------------


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _cell_task(cell: Cell, settings: Settings, threads: int, submitted_at: float) -> Record:
    """One cell in a Ray worker (as in the process pool: a fatal signal leaves crash.txt)."""
    begun = time.time()
    _set_threads(threads)
    rec = _run_in_worker(cell, settings)
    rec.timings["queue_s"] = max(0.0, begun - submitted_at)
    return rec


def _prepare_task(cell: Cell, settings: Settings, threads: int, lines: bool) -> None:
    _set_threads(threads)
    _prepare_in_worker(cell, settings, lines)  # Ray forwards a task's stdout to the driver


# ---------------------------------------------------------------------------------------------
# in the driver
# ---------------------------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    """Environment variables of the workers: this project first on ``PYTHONPATH``, then the
    driver's own ``PYTHONPATH``, ``OMP_NUM_THREADS`` and ``PREFBENCH_*``."""
    env = {k: v for k, v in os.environ.items() if k == "OMP_NUM_THREADS" or k.startswith("PREFBENCH_")}
    paths = [str(PROJECT_ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    return env


def check_reachable(address: str) -> None:
    """A one-line error now for an address where nothing listens (``ray.init`` would retry for
    minutes, logging every few seconds)."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--address {address}: give the cluster's head as host:port (e.g. 10.0.0.5:6379), "
                        "ray://host:port, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                        f"`ray start --head --port {port}` on {host}, or leave out --address to start a local "
                        "one") from None


@contextlib.contextmanager
def _in_project_root() -> Iterator[None]:
    """Run ``ray.init`` from the project root: Ray puts the driver's working directory first on
    its workers' ``sys.path`` (ahead of ``PYTHONPATH``), so a driver started elsewhere — e.g. in
    another checkout, running a frozen copy through ``PYTHONPATH`` — would have its workers import
    that directory's code instead of its own. (The driver is single-threaded at this point.)"""
    before = os.getcwd()
    os.chdir(PROJECT_ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def _cause(error: RayTaskError) -> BaseException:
    return error.cause if error.cause is not None else error


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _lost_worker(cell: Cell, settings: Settings, error: RayError) -> Record:
    """The record of a cell whose worker died on every try."""
    rec = _died(cell, settings)
    rec.reason = (f"{rec.reason}, on each of {RETRIES + 1} tries (Ray {type(error).__name__}: "
                  f"{_first_line(error)})")
    return rec


def _result(ref: ray.ObjectRef, cell: Cell, settings: Settings) -> Record:
    """The record a cell's task returned, or a failed one saying why there is none."""
    try:
        return ray.get(ref)
    except RayTaskError as e:  # raised by the task itself, outside execute_cell's own handling
        cause = _cause(e)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        rec = new_record(cell, settings.device, status="failed", reason=f"{type(cause).__name__}: {cause}")
        rec.finished_at, rec.wall_s = rec.started_at, 0.0
        return rec
    except RayError as e:  # the worker (or its node) died
        return _lost_worker(cell, settings, e)


def _wait_for_preparation(ref: ray.ObjectRef, cell: Cell) -> None:
    """Wait for a domain's preparation; raise what it raised (a lost worker: a UserError)."""
    try:
        ray.get(ref)
    except RayTaskError as e:
        cause = _cause(e)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise cause from None
    except RayError as e:
        raise UserError(f"a Ray worker died while preparing domain {cell.request.domain} "
                        f"({type(e).__name__}): run `bench run` on one of its cells to see why") from None


class RayExecutor(Executor):
    """Cells as Ray tasks, on a cluster it joins or a local one it starts (see the module docstring)."""

    name = "ray"
    options = ("address", "cpus_per_cell", "gpus_per_cell")

    def __init__(self, workers: int | None = None, address: str | None = None, cpus_per_cell: float = 1.0,
                 gpus_per_cell: float = 0.0):
        if not cpus_per_cell > 0:
            raise UserError(f"--cpus-per-cell {cpus_per_cell}: use a positive number of CPUs (a fraction is fine)")
        if not gpus_per_cell >= 0 or (gpus_per_cell > 1 and gpus_per_cell != int(gpus_per_cell)):
            raise UserError(f"--gpus-per-cell {gpus_per_cell}: use 0, a fraction below 1 (cells share a GPU) or "
                            "a whole number of GPUs")
        self.requested = workers
        self.address = None if address == "local" else address
        self.cpus_per_cell, self.gpus_per_cell = float(cpus_per_cell), float(gpus_per_cell)
        super().__init__(workers or max(1, int((os.cpu_count() or 1) // self.cpus_per_cell)))
        self._inflight: set[ray.ObjectRef] = set()

    # -- the cluster ------------------------------------------------------------------------------

    def _connect(self) -> None:
        """Join ``--address`` or start a local cluster (unless this process is connected already)."""
        if ray.is_initialized():
            return
        common = {"runtime_env": {"env_vars": worker_env()}, "logging_level": logging.ERROR}
        if self.address is None:
            cpus = math.ceil(self.requested * self.cpus_per_cell) if self.requested else os.cpu_count()
            with _in_project_root():
                ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
            return
        if self.address != "auto":
            check_reachable(self.address)
        try:
            with _in_project_root():
                ray.init(address=self.address, **common)
        except (ConnectionError, ValueError, RuntimeError, RayError) as e:
            auth = "" if os.environ.get("RAY_AUTH_MODE") else (
                "; a cluster with token authentication also needs RAY_AUTH_MODE=token here")
            raise UserError(f"--address {self.address}: cannot join the Ray cluster ({_first_line(e)}); check "
                            f"the address (`ray status` on the head node prints it){auth}, or leave out --address "
                            "to start a local one") from None

    def _cells_that_fit(self) -> int:
        """How many cells the cluster's live nodes run at once (a UserError if not even one)."""
        fits, cpus, gpus = 0, 0.0, 0.0
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            have = node.get("Resources", {})
            cpus, gpus = cpus + have.get("CPU", 0.0), gpus + have.get("GPU", 0.0)
            n = int(have.get("CPU", 0.0) // self.cpus_per_cell)
            if self.gpus_per_cell:
                n = min(n, int(have.get("GPU", 0.0) // self.gpus_per_cell))
            fits += n
        if fits < 1:
            raise UserError(f"--cpus-per-cell {self.cpus_per_cell:g} --gpus-per-cell {self.gpus_per_cell:g}: no "
                            f"node of the Ray cluster has that much (it has {cpus:g} CPUs, {gpus:g} GPUs in all); "
                            "ask for less per cell")
        return fits

    # -- running ----------------------------------------------------------------------------------

    def run(self, cells: Sequence[Cell], settings: Settings, *, on_start: StartHook,
            progress: Progress) -> Iterator[tuple[Cell, Record]]:
        cells = list(cells)
        if not cells:
            return
        if settings.device.startswith("cuda") and not self.gpus_per_cell:
            raise UserError(f"--device {settings.device} on Ray: reserve GPUs with --gpus-per-cell (1, or a "
                            "fraction such as 0.25 to share one); Ray does not hide GPUs from cells that reserve "
                            "none, so they would all crowd one device")
        settings = dataclasses.replace(  # workers may start elsewhere than the driver's working directory
            settings, home=os.path.abspath(settings.home),
            cache_dir=os.path.abspath(settings.cache_dir) if settings.cache_dir else None)
        was_connected = ray.is_initialized()  # by the caller: then it stays so
        self._inflight = set()
        try:
            self._connect()
            fits = self._cells_that_fit()
            slots = self.workers = min(self.requested, fits) if self.requested else fits
            if self.address:
                progress.note(f"Ray cluster {self.address}: {slots} cell(s) at a time")
            threads = settings.threads or max(1, int(self.cpus_per_cell))
            start = self._preparation_start(settings, threads, isinstance(progress, LineProgress))
            failed = yield from prepare_domains_once(cells, settings, on_start, progress, start)
            todo = [c for c in cells if c.run_id not in failed]
            yield from self._run_cells(todo, settings, on_start, slots, threads)
        finally:
            self._cancel_unfinished()
            if not was_connected and ray.is_initialized():
                ray.shutdown()  # stops a local cluster; leaves a joined one (its workers of this grid end)

    def _options(self) -> dict:
        return {"num_cpus": self.cpus_per_cell, "num_gpus": self.gpus_per_cell, "max_retries": RETRIES}

    def _preparation_start(self, settings: Settings, threads: int, lines: bool) -> PreparationStart:
        """Starts a domain's preparation as a Ray task; with ``lines`` it prints its progress."""
        task = ray.remote(_prepare_task).options(**self._options())

        def start(cell: Cell) -> Callable[[], None]:
            ref = task.remote(cell, settings, threads, lines)
            self._inflight.add(ref)

            def wait_for() -> None:
                _wait_for_preparation(ref, cell)
                self._inflight.discard(ref)
            return wait_for

        return start

    def _run_cells(self, cells: list[Cell], settings: Settings, on_start: StartHook, slots: int,
                   threads: int) -> Generator[tuple[Cell, Record], None, None]:
        """At most ``slots`` tasks in flight; ``on_start`` just before each is submitted."""
        task = ray.remote(_cell_task).options(**self._options())
        pending = deque(cells)
        inflight: dict[ray.ObjectRef, Cell] = {}
        while pending or inflight:
            while pending and len(inflight) < slots:
                cell = pending.popleft()
                on_start(cell)
                ref = task.remote(cell, settings, threads, time.time())
                self._inflight.add(ref)
                inflight[ref] = cell
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                cell = inflight.pop(ref)
                rec = _result(ref, cell, settings)
                self._inflight.discard(ref)
                yield cell, rec

    def _cancel_unfinished(self) -> None:
        """Kill the workers of tasks not waited for (Ctrl-C, an error, the driver closing the grid)."""
        unfinished, self._inflight = self._inflight, set()
        for ref in unfinished if ray.is_initialized() else ():
            with contextlib.suppress(Exception):  # it finished or is gone meanwhile: nothing to stop
                ray.cancel(ref, force=True)

"""Progress reporting: one small protocol; bars on a terminal, plain lines elsewhere, or silence.

``make_progress`` picks: rich bars when the output is a terminal; when it is not (nohup, Slurm logs,
CI) a plain line per task at every ~10% of its work, so a long preparation is never silent for
minutes; nothing with ``quiet``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any


class Task:
    """A unit of tracked work with a known total."""

    def __init__(self, progress: Progress, task_id: Any = None):
        self._progress = progress
        self._id = task_id

    def advance(self, n: int = 1) -> None:
        self._progress._advance(self._id, n)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self._progress._log(self._id, step, metrics)


class Progress:
    """Silent progress (tests, library use). ``RichProgress`` draws bars."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        yield Task(self, None)

    def _advance(self, task_id: Any, n: int) -> None:
        pass

    def _log(self, task_id: Any, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RichProgress(Progress):
    """Progress bars on the terminal, via rich (one bar per running task)."""

    def __init__(self, console: Any = None, transient: bool = False, remove_finished: bool = False):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as _RP

        self._rp = _RP(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=transient,
        )
        self._console = self._rp.console
        self._remove_finished = remove_finished  # drop a task's bar when it ends (long grids)

    def __enter__(self) -> RichProgress:
        self._rp.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._rp.__exit__(*exc)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        from rich.markup import escape

        task_id = self._rp.add_task(escape(description), total=total, info="")
        try:
            yield Task(self, task_id)
        finally:
            t = self._rp.tasks[[x.id for x in self._rp.tasks].index(task_id)]
            if t.total is not None:
                self._rp.update(task_id, completed=t.total)
            self._rp.stop_task(task_id)
            if self._remove_finished:
                self._rp.remove_task(task_id)

    def _advance(self, task_id: Any, n: int) -> None:
        self._rp.advance(task_id, n)

    def _log(self, task_id: Any, step: int, metrics: Mapping[str, float]) -> None:
        info = "  ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:2])
        info = info if len(info) <= 36 else info[:35] + "…"
        self._rp.update(task_id, info=info)

    def note(self, message: str) -> None:
        self._console.print(message)


class LineProgress(Progress):
    """One plain line per task at each tenth of its work (and at its end), for logs."""

    def __init__(self, stream: Any = None, every: float = 0.1):
        self._stream = stream
        self._every = every
        self._tasks: dict[int, dict] = {}
        self._next_id = 0

    def _print(self, line: str) -> None:
        stream = self._stream or sys.stdout
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=stream, flush=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        task_id = self._next_id
        self._next_id += 1
        self._tasks[task_id] = {"desc": description, "total": total, "done": 0, "mark": 0, "t0": time.perf_counter()}
        try:
            yield Task(self, task_id)
        finally:
            t = self._tasks.pop(task_id)
            self._print(f"{t['desc']}: done ({t['done']}/{t['total'] or '?'}) in {time.perf_counter() - t['t0']:.1f}s")

    def _advance(self, task_id: Any, n: int) -> None:
        t = self._tasks.get(task_id)
        if t is None:
            return
        t["done"] += n
        if not t["total"]:
            return
        mark = int(t["done"] / t["total"] / self._every)
        if mark > t["mark"] and t["done"] < t["total"]:
            t["mark"] = mark
            elapsed = time.perf_counter() - t["t0"]
            eta = elapsed * (t["total"] - t["done"]) / max(t["done"], 1)
            self._print(f"{t['desc']}: {t['done']}/{t['total']} ({100 * t['done'] / t['total']:.0f}%) "
                        f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")

    def note(self, message: str) -> None:
        self._print(message)


def make_progress(console: Any = None, quiet: bool = False, **rich_options: Any) -> Progress:
    """Rich bars on a terminal, plain lines otherwise, nothing when ``quiet``."""
    if quiet:
        return Progress()
    if console is not None and console.is_terminal:
        return RichProgress(console=console, **rich_options)
    return LineProgress(stream=getattr(console, "file", None))


def live(progress: Progress) -> contextlib.AbstractContextManager:
    """The context that shows ``progress`` (rich bars need one; the others do not)."""
    return progress if isinstance(progress, RichProgress) else contextlib.nullcontext()

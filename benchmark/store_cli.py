"""``bench store ...``: operations on whole stores (``bench store merge``).

A sub-app of :mod:`benchmark.cli`; user mistakes end in one line with exit status 2, as there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmark.errors import UserError

store_app = typer.Typer(
    name="store",
    help="Whole stores: merge the stores of machines that each ran part of a grid.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    """One line on stderr, then exit (as ``benchmark.cli.fail``)."""
    _err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@store_app.command("merge")
def merge_cmd(
    sources: Annotated[list[Path], typer.Argument(help="Stores to merge (prefbench .sqlite files).")],
    into: Annotated[Path | None, typer.Option("--into", help="The store to merge into (created if missing; "
                                              "default: $PREFBENCH_HOME/prefbench.sqlite).")] = None,
    prefer: Annotated[Path | None, typer.Option("--prefer", help="When a cell is done in two stores with "
                                                "different metrics, keep this store's record (one of the "
                                                "sources, or the --into store); by default such a merge is "
                                                "refused.")] = None,
) -> None:
    """Merge stores into one, all or nothing.

    A finished cell beats a failed or running one; the same result twice is kept once; two
    different finished results of one cell refuse the merge unless --prefer says whose to keep.
    """
    from benchmark.store import merge_stores

    try:
        report = merge_stores(into, sources, prefer=prefer)
    except UserError as e:
        _fail(str(e))
        return
    out = Console(highlight=False, soft_wrap=True)

    def say(line: str) -> None:
        out.print(line, markup=False)

    say(f"merged {len(report.sources)} store(s) into {report.target}: {report.changed} cell(s) written")
    for s in report.sources:
        say(f"  {s.path} (sha256 {s.fingerprint}, {s.cells} cells): {s.added} added, {s.replaced} replaced, "
            f"{s.same} already there, {s.kept} kept the target's")
    say(f"`bench runs --store {report.target}` lists them; `bench leaderboard --store {report.target}` tabulates "
        "them")

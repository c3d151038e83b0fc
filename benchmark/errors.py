"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for. The CLI prints it as one line and exits 2."""

    exit_code = 2


class CellFailed(Exception):
    """A cell ran and failed (crash, NaN, budget); the store has its reason."""


def did_you_mean(name: str, valid: list[str] | tuple[str, ...], cutoff: float = 0.5) -> str:
    """``"did you mean 'x'? "`` for the closest valid name, or ``""`` (the one helper every
    unknown-name message uses)."""
    import difflib

    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}? " if close else ""

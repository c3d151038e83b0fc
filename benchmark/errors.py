"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for. The CLI prints it as one line and exits 2."""

    exit_code = 2


class CellFailed(Exception):
    """A cell ran and failed (crash, NaN, budget); the store has its reason."""

"""Presets: how big a cell is. Each domain maps a preset to its config and budgets."""

from __future__ import annotations

from benchmark.errors import UserError

PRESETS: dict[str, str] = {
    "smoke": "tests: tiny models, seconds per cell",
    "quick": "the CLI default: about a minute per cell on two CPU cores",
    "standard": "the published leaderboard: larger models and budgets (minutes per cell; GPU helps)",
    "full": "GPU scale",
}
DEFAULT_PRESET = "quick"


def check_preset(name: str) -> str:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: valid presets are {', '.join(PRESETS)}")
    return name

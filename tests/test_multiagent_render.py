"""The MPE episode renderer: an animated GIF of top-down arenas (rows = scenarios, columns = policies)
from entity positions, checked by opening the GIF with Pillow and comparing its frames."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from domains.multiagent import render
from domains.multiagent.render import CAPTION_IN, DPI, OBSTACLE_RGB, ROW_TITLE_IN, TITLE_IN, Panel, animate_episodes

RENDER_PY = Path(render.__file__)

T = 10
"""Steps per synthetic episode: T + 1 frames."""
FPS = 8
SIZE = 1.6
BLUE, GREY, RED, GREEN = (0.35, 0.35, 0.85), (0.25, 0.25, 0.25), (0.85, 0.35, 0.35), (0.35, 0.85, 0.35)


def spread(title: str, steps: int = T, seed: int = 0) -> Panel:
    """3 agents moving on straight lines from random starts onto 3 landmarks, over ``steps`` steps."""
    rng = np.random.default_rng(seed)
    start, goal = rng.uniform(-1, 1, (3, 2)), rng.uniform(-0.8, 0.8, (3, 2))
    s = np.linspace(0, 1, steps + 1)[:, None, None]
    agents = start + s * (goal - start)
    pos = np.concatenate([agents, np.broadcast_to(goal, (steps + 1, 3, 2))], axis=1)
    return Panel(title, pos, ("agent",) * 3 + ("landmark",) * 3, (0.15,) * 3 + (0.05,) * 3,
                 (BLUE,) * 3 + (GREY,) * 3, caption=f"team return {-5 - seed:.1f} (normalized {90 + seed})")


def tag(title: str, steps: int = T, chase: float = 0.3) -> Panel:
    """3 agents closing in on a prey running on a circle, around 2 still obstacles."""
    angle = np.linspace(0, np.pi, steps + 1)
    prey = 0.6 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    pos = np.zeros((steps + 1, 6, 2))
    pos[0, :3] = [(-1.0, -1.0), (1.0, -1.0), (0.0, 1.1)]
    for t in range(1, steps + 1):
        pos[t, :3] = pos[t - 1, :3] + chase * (prey[t - 1] - pos[t - 1, :3])
    pos[:, 3] = prey
    pos[:, 4:] = [(-0.4, 0.1), (0.45, -0.35)]
    return Panel(title, pos, ("agent",) * 3 + ("prey", "obstacle", "obstacle"), (0.075,) * 3 + (0.05, 0.2, 0.2),
                 (RED,) * 3 + (GREEN, GREY, GREY), caption="team return 20.0 (normalized 75): 2 catches")


def frames_of(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a GIF as an RGB array, with its duration (ms)."""
    with Image.open(path) as im:
        assert im.format == "GIF"
        out = [(np.asarray(f.convert("RGB")), f.info.get("duration", 0)) for f in ImageSequence.Iterator(im)]
    return [a for a, _ in out], [d for _, d in out]


def cell_box(row: int, col: int) -> tuple[slice, slice]:
    """The pixels (inside a 3 px margin) of one cell of the grid, from the renderer's layout."""
    top = round((TITLE_IN + row * (SIZE + CAPTION_IN)) * DPI)
    left = round((ROW_TITLE_IN + col * SIZE) * DPI)
    side = round(SIZE * DPI)
    return slice(top + 3, top + side - 3), slice(left + 3, left + side - 3)


def near(frame: np.ndarray, rgb: tuple[float, float, float], tol: int = 12) -> int:
    """How many pixels of ``frame`` are within ``tol`` (per channel, 0..255) of ``rgb``."""
    return int((np.abs(frame.astype(int) - np.round(np.array(rgb) * 255)) <= tol).all(axis=-1).sum())


def test_a_two_by_two_grid_gives_an_animated_gif_whose_frames_all_differ(tmp_path: Path) -> None:
    pyplot_before = "matplotlib.pyplot" in sys.modules
    rows = [("spread", [spread("reference"), spread("trained", seed=1)]),
            ("tag", [tag("reference"), tag("trained", chase=0.5)])]
    out = animate_episodes(rows, tmp_path / "sub" / "ma.gif", fps=FPS, size=SIZE)
    assert out == tmp_path / "sub" / "ma.gif"
    assert out.read_bytes()[:6] == b"GIF89a"
    with Image.open(out) as im:
        assert im.is_animated and im.n_frames == T + 1
        assert im.size == (round((ROW_TITLE_IN + 2 * SIZE) * DPI), round((TITLE_IN + 2 * (SIZE + CAPTION_IN)) * DPI))
    frames, durations = frames_of(out)
    assert set(durations) == {120, 130} and abs(sum(durations) - (T + 1) * 1000 / FPS) <= 5
    assert (frames[0] != frames[-1]).any()
    for a, b in itertools.pairwise(frames):
        for r, c in itertools.product(range(2), range(2)):
            assert (a[cell_box(r, c)] != b[cell_box(r, c)]).any(), f"cell {r},{c} did not change"
    # spread's agents are blue, tag's obstacles dark grey: each drawn in its own row only
    last = frames[-1]
    assert near(last[cell_box(0, 0)], BLUE) > 100 and near(last[cell_box(1, 0)], BLUE) == 0
    assert near(last[cell_box(1, 1)], OBSTACLE_RGB, 3) > 300 > 10 * near(last[cell_box(0, 1)], OBSTACLE_RGB, 3)
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_before, "the renderer imported pyplot"


def test_a_shorter_episode_holds_its_last_frame(tmp_path: Path) -> None:
    short = 4
    rows = [("spread", [spread("reference"), spread("trained", steps=short, seed=2)])]
    frames, durations = frames_of(animate_episodes(rows, tmp_path / "m.gif", fps=FPS, size=SIZE))
    assert len(frames) == T + 1 and abs(sum(durations) - (T + 1) * 1000 / FPS) <= 5
    ref, pol = cell_box(0, 0), cell_box(0, 1)
    for t in range(1, T + 1):
        assert (frames[t][ref] != frames[t - 1][ref]).any()
        assert ((frames[t][pol] != frames[t - 1][pol]).any()) == (t <= short), t


def test_the_module_imports_without_matplotlib() -> None:
    # the module file alone (not its package, whose imports are not the renderer's business)
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("ma_render", {str(RENDER_PY)!r})
        module = sys.modules["ma_render"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(module.animate_episodes)
        assert "matplotlib" not in sys.modules, "importing the renderer imported matplotlib"
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def _bad(name: str) -> list:
    """Rows with one defect each, by name."""
    ok = spread("reference")
    if name == "kinds":
        return [("spread", [ok, dataclasses.replace(ok, kinds=ok.kinds[:5])])]
    if name == "panel counts":
        return [("spread", [ok, ok]), ("tag", [tag("reference")])]
    if name == "shape":
        return [("spread", [ok, dataclasses.replace(ok, positions=ok.positions[..., :1])])]
    if name == "flat":
        return [("spread", [dataclasses.replace(ok, positions=ok.positions[0])])]
    if name == "kind name":
        return [("spread", [dataclasses.replace(ok, kinds=("agent",) * 3 + ("goal",) * 3)])]
    if name == "nan":
        return [("spread", [dataclasses.replace(ok, positions=np.full_like(ok.positions, np.nan))])]
    if name == "no panels":
        return [("spread", [])]
    return []


@pytest.mark.parametrize(("name", "match"), [
    ("kinds", r"5 kinds for 6 entities"),
    ("panel counts", r"row 'tag' has 1 panels, the first row 2"),
    ("shape", r"positions of shape \(11, 6, 1\), expected \[T\+1, E, 2\]"),
    ("flat", r"positions of shape \(6, 2\), expected \[T\+1, E, 2\]"),
    ("kind name", r"unknown kinds \['goal'\]"),
    ("nan", "not all finite"),
    ("no panels", "has no panels"),
    ("no rows", "no rows"),
])
def test_bad_inputs_are_refused(tmp_path: Path, name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        animate_episodes(_bad(name), tmp_path / "x.gif", size=SIZE)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.gif").exists()

"""Animated GIFs of skeleton motions: a grid of stick figures, one row per prompt, one column per source.

:func:`animate` draws, for each row, the prompt as the row's title and one stick figure per column
(by default the reference motion and the trained policy's motion for the same prompt and the same
initial noise), all frames of all cells in step. How to read the GIF:

- the view is a fixed oblique orthographic projection, y up, looking from 45° between +z (in front of
  a figure facing +z) and +x, 20° above the ground, the same in every cell and every frame; the axis
  limits are fixed for the whole figure from all motions, so sizes and distances compare across cells
  and nothing jumps between frames;
- bones are lines from each joint to its parent; with ``left`` given, left limbs are blue, right
  limbs red and centre joints (``None``) dark grey, else every bone is dark grey;
- the light grey grid is the ground plane (y = 0, lines every 0.25 to 5 m, whatever gives at most ten
  lines per direction); a figure standing on the ground has its feet on it;
- the orange line on the ground is a fading trail of the root's path over the last 16 frames:
  locomotion shows as a trail, a figure in place leaves none;
- a motion shorter than the longest one holds its last pose. Identical consecutive frames (every
  cell still) are merged by the GIF writer into one longer frame, so the total duration is always
  ``frames / fps`` seconds.

Matplotlib is used without pyplot (a bare ``Figure`` on the Agg canvas: no GUI, nothing registered
that would need closing); artists are made once and only their data change per frame, and only the
moving ones are redrawn (the titles, prompts, axes and ground once: ``benchmark.animation``).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.animation import blit_frames, save_gif

AZIMUTH_DEG = 45.0
"""Rotation of the view about the vertical axis (0: from +z, facing a figure that faces +z; 90: from +x)."""
ELEVATION_DEG = 20.0
"""How far above the ground the view looks down from."""
TRAIL_FRAMES = 16
DPI = 80
COLORS = {True: "#1f5fbf", False: "#c8302c", None: "#333333"}
"""Bone colour by side of the child joint: left, right, centre (or no ``left`` given)."""
TRAIL_RGB = (0.95, 0.55, 0.1)
GROUND_COLOR = "#cfcfcf"
TITLE_IN, PROMPT_IN = 0.28, 0.36
"""Heights (inches) of the column-title band at the top and of the prompt band above each row."""
PROMPT_PT = 7.5


@dataclass
class _Cell:
    """One stick figure: its projected joints ``[F, J, 2]``, root trail ``[F, 2]`` and artists."""

    joints: np.ndarray
    trail: np.ndarray
    bones_art: Any = None
    joints_art: Any = None
    trail_art: Any = None


def project(points: np.ndarray) -> np.ndarray:
    """Points ``[..., 3]`` (x, y up, z) to the screen ``[..., 2]`` of the fixed oblique view."""
    az, el = np.radians(AZIMUTH_DEG), np.radians(ELEVATION_DEG)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    u = x * np.cos(az) + z * np.sin(az)
    depth = -x * np.sin(az) + z * np.cos(az)
    v = y * np.cos(el) - depth * np.sin(el)
    return np.stack([u, v], axis=-1)


def _check(rows: list[tuple[str, list[np.ndarray]]], parents: Sequence[int], column_titles: Sequence[str],
           left: Sequence[bool | None] | None) -> list[list[np.ndarray]]:
    """The motions as float arrays ``[F, J, 3]``, after checking every shape; ValueError if one is off."""
    if not rows:
        raise ValueError("animate: no rows to draw")
    n_joints = len(parents)
    if any(not -1 <= p < n_joints for p in parents):
        raise ValueError(f"animate: parents {list(parents)} must each be -1 (a root) or a joint index < {n_joints}")
    if left is not None and len(left) != n_joints:
        raise ValueError(f"animate: left has {len(left)} entries for {n_joints} joints")
    motions = []
    for prompt, cols in rows:
        if len(cols) != len(column_titles):
            raise ValueError(f"animate: row {prompt!r} has {len(cols)} motions for {len(column_titles)} columns")
        arrs = [np.asarray(m, dtype=float) for m in cols]
        for m in arrs:
            if m.ndim != 3 or m.shape[1:] != (n_joints, 3) or m.shape[0] < 1:
                raise ValueError(f"animate: row {prompt!r}: positions of shape {m.shape}, expected [F, {n_joints}, 3]")
            if not np.isfinite(m).all():
                raise ValueError(f"animate: row {prompt!r}: positions are not all finite")
        motions.append(arrs)
    return motions


def _ground_segments(motions: list[list[np.ndarray]]) -> np.ndarray:
    """Projected ground-grid lines ``[L, 2, 2]`` covering every motion's footprint (with a margin)."""
    xz = np.concatenate([m[..., [0, 2]].reshape(-1, 2) for row in motions for m in row])
    lo, hi = xz.min(axis=0) - 0.3, xz.max(axis=0) + 0.3
    step = next((s for s in (0.25, 0.5, 1.0, 2.0, 5.0) if ((hi - lo) / s).max() <= 10), 10.0)
    lo, hi = np.floor(lo / step) * step, np.ceil(hi / step) * step
    segs = [[(x, 0.0, lo[1]), (x, 0.0, hi[1])] for x in np.arange(lo[0], hi[0] + step / 2, step)]
    segs += [[(lo[0], 0.0, z), (hi[0], 0.0, z)] for z in np.arange(lo[1], hi[1] + step / 2, step)]
    return project(np.asarray(segs))


def _limits(cells: list[_Cell], ground: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Square (equal-aspect) x and y limits holding every joint of every frame and the ground grid."""
    pts = np.concatenate([c.joints.reshape(-1, 2) for c in cells] + [ground.reshape(-1, 2)])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.05, 0.5)
    return (centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half)


@functools.cache
def _palette():
    """A fixed GIF palette: white, and ramps from white to every colour drawn (antialiased edges fall
    on the ramps). One palette for every frame: still parts of a figure stay pixel-identical."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    drawn = [*COLORS.values(), TRAIL_RGB, GROUND_COLOR, "#dddddd", "#000000"]
    steps = (256 - 1) // len(drawn)
    colors = [np.ones(3)] + [np.ones(3) + (np.array(to_rgb(c)) - 1) * s
                             for c in drawn for s in np.linspace(0, 1, steps + 1)[1:]]
    flat = np.round(np.array(colors) * 255).astype(np.uint8).ravel().tolist()
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + [255] * (768 - len(flat)))
    return palette


def _figure(prompts: list[str], column_titles: Sequence[str], size: float):
    """The figure and its grid of empty square axes (rows × columns), with prompts and column titles."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(prompts), len(column_titles)
    width, height = n_cols * size, TITLE_IN + n_rows * (PROMPT_IN + size)
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    for j, title in enumerate(column_titles):
        fig.text((j + 0.5) / n_cols, 1 - TITLE_IN / 2 / height, title, ha="center", va="center",
                 fontsize=9, fontweight="bold")
    chars = max(int(width * 72 / (PROMPT_PT * 0.55)), 10)
    axes = []
    for i, prompt in enumerate(prompts):
        top = height - TITLE_IN - i * (PROMPT_IN + size)
        lines = textwrap.wrap(prompt, chars, max_lines=2, placeholder=" …") or [""]
        fig.text(0.5, (top - PROMPT_IN / 2) / height, "\n".join(lines), ha="center", va="center",
                 fontsize=PROMPT_PT, color="#222222", linespacing=1.1)
        row = []
        for j in range(n_cols):
            ax = fig.add_axes((j / n_cols, (top - PROMPT_IN - size) / height, 1 / n_cols, size / height))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("#dddddd")
            row.append(ax)
        axes.append(row)
    return fig, axes


def _draw_cell(ax, cell: _Cell, ground: np.ndarray, bone_colors: list[str], limits) -> None:
    """Add the cell's artists (ground, trail, bones, joints) to ``ax``; their data are set per frame."""
    from matplotlib.collections import LineCollection

    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal", adjustable="box")
    ax.add_collection(LineCollection(ground, colors=GROUND_COLOR, linewidths=0.6, zorder=1))
    cell.trail_art = LineCollection([], linewidths=2.0, zorder=2, capstyle="round")
    ax.add_collection(cell.trail_art)
    cell.bones_art = LineCollection([], colors=bone_colors, linewidths=2.2, zorder=3, capstyle="round")
    ax.add_collection(cell.bones_art)
    (cell.joints_art,) = ax.plot([], [], "o", ms=2.2, color="#333333", zorder=4)


def _update(cells: list[_Cell], children: np.ndarray, parent_of: np.ndarray, frame: int) -> None:
    """Move every cell's artists to ``frame`` (a motion that has ended holds its last pose)."""
    for cell in cells:
        t = min(frame, len(cell.joints) - 1)
        pose = cell.joints[t]
        cell.bones_art.set_segments(np.stack([pose[children], pose[parent_of]], axis=1))
        cell.joints_art.set_data(pose[:, 0], pose[:, 1])
        first = max(0, t - TRAIL_FRAMES)
        trail = cell.trail[first : t + 1]
        segs = np.stack([trail[:-1], trail[1:]], axis=1)
        ages = np.arange(len(segs))[::-1]  # 0 for the newest segment
        cell.trail_art.set_segments(segs)
        cell.trail_art.set_color([(*TRAIL_RGB, 0.9 * (1 - a / TRAIL_FRAMES)) for a in ages])


def animate(rows: list[tuple[str, list[np.ndarray]]], parents: Sequence[int], path: Path, *,
            column_titles: Sequence[str] = ("reference", "trained policy"), fps: int = 20, size: float = 2.0,
            left: Sequence[bool | None] | None = None) -> Path:
    """Write an animated GIF of stick figures to ``path`` and return ``path``.

    ``rows``: ``(prompt, [positions per column])``, positions ``[F, J, 3]`` in metres (y up, ground at
    y = 0); ``parents[j]`` is joint j's parent (-1 for the root); ``left[j]``: True for a left joint,
    False for a right one, None for a centre one (colours the bone to its parent); ``size``: inches
    per cell. The GIF has as many frames as the longest motion, at ``fps``.
    """
    from PIL import Image

    motions = _check(rows, parents, column_titles, left)
    parent_arr = np.asarray(parents, dtype=int)
    children = np.flatnonzero(parent_arr >= 0)
    root = int(np.flatnonzero(parent_arr < 0)[0]) if (parent_arr < 0).any() else 0
    side = [None] * len(parent_arr) if left is None else list(left)
    bone_colors = [COLORS[None if side[c] is None else bool(side[c])] for c in children]
    ground = _ground_segments(motions)
    cells = [_Cell(project(m), project(m[:, root] * np.array([1.0, 0.0, 1.0]))) for row in motions for m in row]
    limits = _limits(cells, ground)
    fig, axes = _figure([prompt for prompt, _ in rows], column_titles, size)
    for ax, cell in zip([ax for row in axes for ax in row], cells):
        _draw_cell(ax, cell, ground, bone_colors, limits)
    moving = [a for c in cells for a in (c.trail_art, c.bones_art, c.joints_art)]
    try:
        rgbs = blit_frames(fig, moving, max(len(c.joints) for c in cells),
                           lambda f: _update(cells, children, parent_arr[children], f))
        frames = [Image.fromarray(rgb).quantize(palette=_palette(), dither=Image.Dither.NONE) for rgb in rgbs]
    finally:
        fig.clear()  # a bare Figure is not registered with pyplot: clearing it frees its artists
    return save_gif(frames, path, fps)

"""Animated GIFs of MPE episodes: a grid of top-down arenas, one row per scenario, one column per policy.

:func:`animate_episodes` draws, for each row, the scenario's name as the row title (on the left) and
one arena per column (typically the reference policy and the trained policy from the same start
state), all frames of all cells in step. How to read the GIF:

- the view is MPE's world from above, x to the right and y up, the same in every cell and every
  frame; the axis limits are fixed for the whole figure from every position in every panel (at least
  [-1.2, 1.2] on both axes, equal aspect), so distances compare across cells and nothing jumps
  between frames. The light grey square is the arena at ±1 (MPE starts entities inside it; nothing
  stops them leaving it);
- every entity is a filled circle of its true radius in world units, in MPE's own colour: agents
  (the learners, numbered 0, 1, 2 in order by a small label at their upper right) and the prey have
  a thin dark edge; landmarks are the small circles without an edge; obstacles are the large dark
  grey circles;
- each agent and the prey leaves a fading trail in its own colour: a line through its last
  8 positions, fainter the older. A long trail is a fast entity, none a still one;
- the caption under each cell says how the episode went (e.g. its team return); an episode shorter
  than the longest one holds its last frame. Identical consecutive frames (every cell still) are
  merged by the GIF writer into one longer frame, so the total duration is always ``frames / fps``
  seconds.

Matplotlib is used without pyplot (a bare ``Figure`` on the Agg canvas: no GUI, nothing registered
that would need closing) and imported only when drawing; artists are made once and only their data
change per frame, and only the moving ones are redrawn (titles, captions and arenas once:
``benchmark.animation``). Frames are mapped onto one fixed palette (white, and ramps from white to every
colour drawn), so still parts of a cell stay pixel-identical between frames.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.animation import blit_frames, save_gif

KINDS = ("agent", "landmark", "prey", "obstacle")
TRAILING = ("agent", "prey")
"""Kinds that leave a trail (and have a dark edge)."""
TRAIL_FRAMES = 8
"""Positions in a trail: the current one and the 7 before it."""
DPI = 80
LIMIT_MIN, MARGIN = 1.2, 0.1
"""The axes show at least [-LIMIT_MIN, LIMIT_MIN]; entities' edges keep MARGIN from the axes' edge."""
ARENA_RGB = (0.8, 0.8, 0.8)
EDGE_RGB = (0.15, 0.15, 0.15)
OBSTACLE_RGB = (0.3, 0.3, 0.3)
TEXT_RGB = (0.0, 0.0, 0.0)
TITLE_IN, ROW_TITLE_IN, CAPTION_IN = 0.28, 0.3, 0.32
"""Inches of the column-title band at the top, the row-title band on the left and the caption band
under each row."""
CAPTION_PT, LABEL_PT = 7.0, 6.0


@dataclass(frozen=True)
class Panel:
    """One episode of one policy: every entity's positions per frame and how to draw it."""

    title: str
    """Column title, e.g. "reference" or "trained" (taken from the first row's panels)."""
    positions: np.ndarray
    """``[T+1, E, 2]`` float: every entity's 2-D position at each frame."""
    kinds: tuple[str, ...]
    """Per entity: "agent", "landmark", "prey" or "obstacle"."""
    sizes: tuple[float, ...]
    """Per entity: radius in world units."""
    colors: tuple[tuple[float, float, float], ...]
    """Per entity: RGB in [0, 1] (obstacles are drawn dark grey whatever their colour)."""
    caption: str = ""
    """Drawn under the panel, e.g. "team return -7.9 (normalized 96)"."""


@dataclass
class _Cell:
    """One panel being drawn: its positions ``[F, E, 2]``, the trailing entities and the artists."""

    panel: Panel
    positions: np.ndarray
    trailing: list[int] = field(default_factory=list)
    circles: list[Any] = field(default_factory=list)
    labels: list[tuple[int, Any]] = field(default_factory=list)
    trail_art: Any = None


def _check_panel(panel: Panel, where: str) -> np.ndarray:
    """The panel's positions as a float array ``[F, E, 2]``, after checking them against its entity
    tuples; ValueError with a one-line message if anything is off."""
    try:
        pos = np.asarray(panel.positions, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"animate_episodes: {where}: positions are not a numeric array ({e})") from None
    if pos.ndim != 3 or pos.shape[2] != 2 or pos.shape[0] < 1 or pos.shape[1] < 1:
        raise ValueError(f"animate_episodes: {where}: positions of shape {pos.shape}, expected [T+1, E, 2]")
    if not np.isfinite(pos).all():
        raise ValueError(f"animate_episodes: {where}: positions are not all finite")
    n = pos.shape[1]
    for name in ("kinds", "sizes", "colors"):
        if len(getattr(panel, name)) != n:
            raise ValueError(f"animate_episodes: {where}: {len(getattr(panel, name))} {name} for {n} entities")
    if bad := sorted({k for k in panel.kinds if k not in KINDS}):
        raise ValueError(f"animate_episodes: {where}: unknown kinds {bad}, expected some of {list(KINDS)}")
    if not all(np.isfinite(s) and s > 0 for s in panel.sizes):
        raise ValueError(f"animate_episodes: {where}: sizes {list(panel.sizes)} must be positive radii")
    colors = np.asarray(panel.colors, dtype=float)
    if colors.shape != (n, 3) or not ((colors >= 0) & (colors <= 1)).all():
        raise ValueError(f"animate_episodes: {where}: colors must be {n} RGB triples in [0, 1]")
    return pos


def _check(rows: list[tuple[str, list[Panel]]], fps: int, size: float) -> list[list[np.ndarray]]:
    """Every panel's positions ``[F, E, 2]`` by row, after checking the grid; ValueError if off."""
    if not rows:
        raise ValueError("animate_episodes: no rows to draw")
    if not fps >= 1 or not size > 0:
        raise ValueError(f"animate_episodes: fps {fps} must be ≥ 1 and size {size} > 0")
    n_cols = len(rows[0][1])
    out = []
    for title, panels in rows:
        if not panels:
            raise ValueError(f"animate_episodes: row {title!r} has no panels")
        if len(panels) != n_cols:
            raise ValueError(f"animate_episodes: row {title!r} has {len(panels)} panels, the first row {n_cols}")
        out.append([_check_panel(p, f"row {title!r}, panel {j} ({p.title!r})") for j, p in enumerate(panels)])
    return out


def _limits(rows: list[tuple[str, list[Panel]]], positions: list[list[np.ndarray]]) -> tuple[float, float, float]:
    """``(x centre, y centre, half side)`` of the square view holding every entity of every frame of
    every panel (with its radius and a margin) and at least [-LIMIT_MIN, LIMIT_MIN]²."""
    lo, hi = np.full(2, -LIMIT_MIN), np.full(2, LIMIT_MIN)
    for (_, panels), row in zip(rows, positions):
        for panel, pos in zip(panels, row):
            radii = np.asarray(panel.sizes, dtype=float)[None, :, None] + MARGIN
            lo = np.minimum(lo, (pos - radii).min(axis=(0, 1)))
            hi = np.maximum(hi, (pos + radii).max(axis=(0, 1)))
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1]), float((hi - lo).max() / 2)


def _palette(colors: list[tuple[float, float, float]]) -> np.ndarray:
    """The GIF palette ``[K ≤ 256, 3]`` uint8: white, and ramps from white to every colour drawn
    (antialiased edges and faded trails fall on the ramps). One palette for every frame, so nothing
    flickers and still parts of a cell stay pixel-identical."""
    drawn = list(dict.fromkeys(tuple(round(float(c), 3) for c in rgb) for rgb in colors))
    steps = max((256 - 1) // len(drawn), 2)
    ramps = [np.ones(3) + (np.array(c) - 1) * s for c in drawn for s in np.linspace(0, 1, steps + 1)[1:]]
    palette = np.round(np.array([np.ones(3), *ramps]) * 255).astype(np.uint8)
    return np.unique(palette, axis=0)[::-1][:256]  # white first


def _figure(row_titles: list[str], col_titles: list[str], size: float):
    """The figure on an Agg canvas and its grid of empty square axes (rows × columns), with the row
    titles on the left and the column titles on top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(row_titles), len(col_titles)
    width, height = ROW_TITLE_IN + n_cols * size, TITLE_IN + n_rows * (size + CAPTION_IN)
    width, height = round(width * DPI) / DPI, round(height * DPI) / DPI  # whole pixels: the layout is exact
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    for j, title in enumerate(col_titles):
        fig.text((ROW_TITLE_IN + (j + 0.5) * size) / width, 1 - TITLE_IN / 2 / height, title, ha="center",
                 va="center", fontsize=9, fontweight="bold", color=TEXT_RGB)
    axes = []
    for i, title in enumerate(row_titles):
        bottom = height - TITLE_IN - i * (size + CAPTION_IN) - size
        short = textwrap.shorten(title, max(int(size * 72 / (9 * 0.6)), 8), placeholder=" …")
        fig.text(ROW_TITLE_IN / 2 / width, (bottom + size / 2) / height, short, ha="center", va="center",
                 rotation=90, fontsize=9, fontweight="bold", color=TEXT_RGB)
        axes.append([fig.add_axes(((ROW_TITLE_IN + j * size) / width, bottom / height, size / width,
                                   size / height)) for j in range(n_cols)])
    return fig, axes


def _caption(fig, ax, text: str, size: float) -> None:
    """Write ``text`` (at most two lines) centred under ``ax``, in the caption band."""
    chars = max(int(size * 72 / (CAPTION_PT * 0.55)), 10)
    lines = textwrap.wrap(text, chars, max_lines=2, placeholder=" …") or [""]
    box = ax.get_position()
    height_in = fig.get_figheight()
    fig.text((box.x0 + box.x1) / 2, box.y0 - 0.05 / height_in, "\n".join(lines), ha="center", va="top",
             fontsize=CAPTION_PT, color=TEXT_RGB, linespacing=1.1)


def _draw_cell(ax, panel: Panel, positions: np.ndarray, view: tuple[float, float, float]) -> _Cell:
    """Add the arena frame and the panel's artists (circles, trails, agent numbers) to ``ax``; their
    positions are set per frame by :func:`_update`."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle, Rectangle

    cx, cy, half = view
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.add_patch(Rectangle((-1, -1), 2, 2, fill=False, edgecolor=ARENA_RGB, linewidth=1.0, zorder=0))
    cell = _Cell(panel, positions, [e for e, k in enumerate(panel.kinds) if k in TRAILING])
    cell.trail_art = LineCollection([], linewidths=2.2, zorder=3, capstyle="round")
    ax.add_collection(cell.trail_art)
    zorder = {"obstacle": 1, "landmark": 2, "prey": 4, "agent": 5}
    for kind, radius, rgb in zip(panel.kinds, panel.sizes, panel.colors):
        edged = kind in TRAILING
        circle = Circle((0.0, 0.0), radius, facecolor=OBSTACLE_RGB if kind == "obstacle" else tuple(rgb),
                        edgecolor=EDGE_RGB if edged else "none", linewidth=0.7 if edged else 0, zorder=zorder[kind])
        cell.circles.append(ax.add_patch(circle))
    agents = [e for e, k in enumerate(panel.kinds) if k == "agent"]
    cell.labels = [(e, ax.text(0.0, 0.0, str(n), fontsize=LABEL_PT, color=TEXT_RGB, ha="left", va="bottom",
                               zorder=6, clip_on=True)) for n, e in enumerate(agents)]
    return cell


def _update(cell: _Cell, frame: int) -> None:
    """Move the cell's artists to ``frame`` (an episode that has ended holds its last frame)."""
    t = min(frame, len(cell.positions) - 1)
    now = cell.positions[t]
    for circle, xy in zip(cell.circles, now):
        circle.set_center((float(xy[0]), float(xy[1])))
    for e, label in cell.labels:
        offset = cell.panel.sizes[e] * 0.75
        label.set_position((float(now[e, 0] + offset), float(now[e, 1] + offset)))
    past = cell.positions[max(0, t - TRAIL_FRAMES + 1) : t + 1]
    segs, colors = [], []
    for e in cell.trailing:
        for age, (a, b) in enumerate(zip(past[::-1][1:, e], past[::-1][:-1, e])):  # age 0: the newest
            segs.append([a, b])
            colors.append((*cell.panel.colors[e], 0.85 * (1 - age / (TRAIL_FRAMES - 1))))
    cell.trail_art.set_segments(segs)
    cell.trail_art.set_color(colors or "none")


def _to_palette(rgb: np.ndarray, palette: np.ndarray):
    """An RGB frame as a palette image, every pixel mapped to its nearest palette colour (exactly,
    and without dithering; Pillow's own mapping is coarser)."""
    from PIL import Image

    rgb = rgb.astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    uniq, inverse = np.unique(packed, return_inverse=True)
    cols = np.stack([uniq >> 16, (uniq >> 8) & 255, uniq & 255], axis=1)
    nearest = ((cols[:, None, :] - palette[None].astype(np.int32)) ** 2).sum(axis=-1).argmin(axis=1)
    index = nearest[inverse.ravel()].reshape(packed.shape).astype(np.uint8)
    image = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    image.putpalette(palette.ravel().tolist())
    return image


def animate_episodes(rows: list[tuple[str, list[Panel]]], path: Path, *, fps: int = 8, size: float = 2.6) -> Path:
    """Write an animated GIF of MPE episodes to ``path`` and return ``path``.

    ``rows``: ``(scenario name, [panel per column])``, every row with as many panels; the column
    titles are the first row's panel titles. ``size``: inches per cell. The GIF has as many frames as
    the longest episode (``T+1`` positions), at ``fps``. ValueError if any input is malformed.
    """
    positions = _check(rows, fps, size)
    view = _limits(rows, positions)
    fig, axes = _figure([title for title, _ in rows], [p.title for p in rows[0][1]], size)
    try:
        cells = []
        for (_, panels), pos_row, ax_row in zip(rows, positions, axes):
            for panel, pos, ax in zip(panels, pos_row, ax_row):
                cells.append(_draw_cell(ax, panel, pos, view))
                _caption(fig, ax, panel.caption, size)
        palette = _palette([ARENA_RGB, EDGE_RGB, OBSTACLE_RGB, TEXT_RGB,
                            *(rgb for c in cells for rgb in c.panel.colors)])
        moving = [a for c in cells for a in (c.trail_art, *c.circles, *(label for _, label in c.labels))]
        frames = [_to_palette(rgb, palette) for rgb in blit_frames(
            fig, moving, max(len(c.positions) for c in cells), lambda f: [_update(c, f) for c in cells])]
    finally:
        fig.clear()  # a bare Figure is not registered with pyplot: clearing it frees its artists
    return save_gif(frames, path, fps)

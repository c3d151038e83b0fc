"""Animated GIFs of matplotlib figures whose still parts are drawn once (the domains' pictures).

A frame of an episode or a motion changes a few artists (bodies, trails, labels) on a figure whose
titles, captions, axes and grounds stay put; redrawing all of it per frame spent most of a smoke
cell's time in text layout. :func:`blit_frames` draws the still figure once and, per frame, only
the moving artists over a copy of it (matplotlib's blitting). Moving artists are drawn above every
still one, in z-order: give still artists that should cover moving ones (none today) a place in
``moving``. Matplotlib and Pillow are imported by the callers, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def blit_frames(fig: Any, moving: Sequence[Any], n_frames: int, update: Callable[[int], None]) -> Iterator[np.ndarray]:
    """RGB frames ``[H, W, 3]`` (uint8) of ``fig`` on an Agg canvas: ``update(f)`` moves the artists
    for frame ``f``, then only ``moving`` is drawn, in z-order, over the still figure drawn once."""
    canvas = fig.canvas
    for artist in moving:
        artist.set_animated(True)  # left out of the full draw
    try:
        canvas.draw()
        still = canvas.copy_from_bbox(fig.bbox)
        order = sorted(moving, key=lambda a: a.get_zorder())  # stable: ties keep their given order
        for frame in range(n_frames):
            update(frame)
            canvas.restore_region(still)
            for artist in order:
                fig.draw_artist(artist)
            yield np.asarray(canvas.buffer_rgba())[..., :3].copy()
    finally:
        for artist in moving:
            artist.set_animated(False)


def gif_durations(n: int, fps: int) -> list[int]:
    """Per-frame durations (ms) for ``n`` frames at ``fps``: GIFs count in 10 ms, so the frames get
    multiples of 10 whose running total stays within 5 ms of ``frames / fps`` (at 8 fps: 130, 120, …)."""
    ends = [int((i + 1) * 100 / fps + 0.5) * 10 for i in range(n)]
    return [b - a for a, b in zip([0, *ends[:-1]], ends)]


def save_gif(frames: Sequence[Any], path: Path, fps: int) -> Path:
    """Write Pillow palette images ``frames`` as a looping GIF at ``fps``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=list(frames[1:]),
                   duration=gif_durations(len(frames), fps), loop=0)
    return path

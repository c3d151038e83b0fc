"""``benchmark.animation``: blitted frames are the full redraws, pixel for pixel; GIF timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from benchmark.animation import blit_frames, gif_durations, save_gif


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5), dpi=60, facecolor="white")
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.95, "a still title", ha="center", va="top")
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.7))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.plot([0, 1], [0.5, 0.5], color="#cccccc", zorder=1)  # still, below the moving artists
    (line,) = ax.plot([], [], color="red", lw=2, zorder=3)
    dot = ax.scatter([0.0], [0.0], s=40, zorder=4)
    return fig, [dot, line]


def test_blitted_frames_equal_full_redraws() -> None:
    fig, moving = _figure()
    xs = np.linspace(0, 1, 6)

    def update(f: int) -> None:
        moving[1].set_data(xs[: f + 1], xs[: f + 1] ** 2)
        moving[0].set_offsets([[xs[f], 1 - xs[f]]])

    blitted = list(blit_frames(fig, moving, len(xs), update))
    assert not any(a.get_animated() for a in moving)  # restored for later full draws
    for f, frame in enumerate(blitted):
        update(f)
        fig.canvas.draw()
        full = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        np.testing.assert_array_equal(frame, full)
    assert not np.array_equal(blitted[0], blitted[-1])


def test_gif_durations_keep_the_running_total_and_the_file_has_every_frame(tmp_path: Path) -> None:
    assert gif_durations(3, 8) == [130, 120, 130] and gif_durations(4, 20) == [50] * 4
    assert all(abs(sum(gif_durations(n, 8)) - 1000 * n / 8) <= 5 for n in range(1, 40))
    frames = [Image.new("RGB", (4, 4), (100 * i, 0, 0)).quantize(colors=4) for i in range(3)]
    path = save_gif(frames, tmp_path / "sub" / "a.gif", fps=8)
    with Image.open(path) as gif:
        assert [f.info["duration"] for f in ImageSequence.Iterator(gif)] == [130, 120, 130]

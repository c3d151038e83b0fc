"""The motion renderer: an animated GIF of stick figures (rows = prompts, columns = sources) from
joint positions, checked by opening the GIF with Pillow and comparing its frames."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from domains.motion.render import DPI, PROMPT_IN, TITLE_IN, animate

PARENTS = [-1, 0, 1, 0, 3, 0, 5]
"""pelvis (root), chest, head, left knee, left foot, right knee, right foot"""
LEFT = [None, None, None, True, True, False, False]
FPS = 20
SIZE = 1.5


def walk(frames: int, speed: float = 1.0, swing: float = 0.5) -> np.ndarray:
    """``[F, 7, 3]``: the toy skeleton walking along +z at ``speed`` m/s, legs swinging ``swing`` rad."""
    t = np.arange(frames) / FPS
    phase = swing * np.sin(2 * np.pi * 1.5 * t)
    pos = np.zeros((frames, len(PARENTS), 3))
    pos[:, 0] = [0.0, 0.95, 0.0]
    pos[:, 1] = [0.0, 1.4, 0.0]
    pos[:, 2] = [0.0, 1.65, 0.0]
    for knee, foot, x, sign in ((3, 4, 0.12, 1.0), (5, 6, -0.12, -1.0)):
        angle = sign * phase
        pos[:, knee] = np.stack([np.full_like(t, x), 0.95 - 0.47 * np.cos(angle), 0.47 * np.sin(angle)], axis=1)
        pos[:, foot] = pos[:, knee] + np.stack([np.zeros_like(t), -0.45 * np.cos(angle), 0.45 * np.sin(angle)], axis=1)
    pos[:, :, 1] -= pos[:, [4, 6], 1].min(axis=1, keepdims=True) - 0.02  # the lower foot on the ground
    pos[:, :, 2] += (speed * t)[:, None]
    return pos


def frames_of(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a GIF as an RGB array, with its duration (ms)."""
    with Image.open(path) as im:
        assert im.format == "GIF"
        out = [(np.asarray(f.convert("RGB")), f.info.get("duration", 0)) for f in ImageSequence.Iterator(im)]
    return [a for a, _ in out], [d for _, d in out]


def cell_box(row: int, col: int) -> tuple[slice, slice]:
    """The pixels (inside a 3 px margin) of one cell of the grid, from the renderer's layout."""
    top = round((TITLE_IN + row * (PROMPT_IN + SIZE) + PROMPT_IN) * DPI)
    left = round(col * SIZE * DPI)
    side = round(SIZE * DPI)
    return slice(top + 3, top + side - 3), slice(left + 3, left + side - 3)


def test_a_moving_motion_gives_an_animated_gif_whose_frames_all_differ(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    figures_before = plt.get_fignums()
    n = 24
    rows = [("a person walks forward", [walk(n), walk(n, speed=0.5, swing=0.3)]),
            ("a person walks forward slowly", [walk(n, speed=0.4), walk(n, speed=0.8)])]
    out = animate(rows, PARENTS, tmp_path / "sub" / "motion.gif", fps=FPS, size=SIZE, left=LEFT)
    assert out == tmp_path / "sub" / "motion.gif"
    assert out.read_bytes()[:6] == b"GIF89a"
    with Image.open(out) as im:
        assert im.is_animated and im.n_frames == n
        assert im.size == (round(2 * SIZE * DPI), round((TITLE_IN + 2 * (PROMPT_IN + SIZE)) * DPI))
    frames, durations = frames_of(out)
    assert durations == [1000 // FPS] * n
    for a, b in itertools.pairwise(frames):
        assert (a != b).any(), "consecutive frames are identical: the figures do not move"
        for r in range(2):
            for c in range(2):
                assert (a[cell_box(r, c)] != b[cell_box(r, c)]).any(), f"cell {r},{c} did not move"
    # left limbs blue, right limbs red: both colours are drawn
    px = frames[0].reshape(-1, 3).astype(int)
    blue = (px[:, 2] > 150) & (px[:, 0] < 80)
    red = (px[:, 0] > 150) & (px[:, 2] < 80) & (px[:, 1] < 80)
    assert blue.sum() > 20 and red.sum() > 20
    assert plt.get_fignums() == figures_before, "the renderer left a pyplot figure open"


def test_a_shorter_motion_holds_its_last_pose(tmp_path: Path) -> None:
    rows = [("walks, then the policy stops early", [walk(20), walk(8)])]
    frames, durations = frames_of(animate(rows, PARENTS, tmp_path / "m.gif", fps=FPS, size=SIZE))
    assert len(frames) == 20 and sum(durations) == 20 * (1000 // FPS)
    ref, pol = cell_box(0, 0), cell_box(0, 1)
    for t in range(1, 20):
        assert (frames[t][ref] != frames[t - 1][ref]).any()
        assert ((frames[t][pol] != frames[t - 1][pol]).any()) == (t < 8), t
    # without ``left`` every bone has one colour: no red or blue pixels
    px = frames[0].reshape(-1, 3).astype(int)
    assert not ((px[:, 2] > 150) & (px[:, 0] < 80)).any()


def test_a_still_motion_gives_identical_frames(tmp_path: Path) -> None:
    still = np.repeat(walk(1), 12, axis=0)
    frames, durations = frames_of(animate([("stands still", [still, still])], PARENTS, tmp_path / "still.gif",
                                          fps=FPS, size=SIZE))
    # Pillow merges identical consecutive frames into one longer frame: the duration is kept
    assert all((f == frames[0]).all() for f in frames)
    assert sum(durations) == 12 * (1000 // FPS)


@pytest.mark.parametrize(("rows", "parents", "match"), [
    ([], PARENTS, "no rows"),
    ([("one column", [walk(4)])], PARENTS, "1 motions for 2 columns"),
    ([("wrong joints", [walk(4), walk(4)[:, :5]])], PARENTS, r"expected \[F, 7, 3\]"),
    ([("nan", [walk(4), np.full((4, 7, 3), np.nan)])], PARENTS, "not all finite"),
    ([("bad parents", [walk(4), walk(4)])], [-1, 0, 1, 0, 3, 0, 7], "must each be -1"),
])
def test_bad_inputs_are_refused(tmp_path: Path, rows, parents, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        animate(rows, parents, tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()


def test_example_for_a_person_to_look_at(tmp_path: Path) -> None:
    """Writes the example GIF and its first frame where ``PREFBENCH_MOTION_EXAMPLE`` (a path
    without suffix) says; without it, only that the example renders."""
    n = 48
    rows = [("a person walks forward", [walk(n), walk(n, speed=0.6, swing=0.25)]),
            ("a person walks forward quickly, taking long strides", [walk(n, speed=1.4, swing=0.7), walk(30)])]
    base = os.environ.get("PREFBENCH_MOTION_EXAMPLE")
    gif = Path(base + ".gif") if base else tmp_path / "example.gif"
    animate(rows, PARENTS, gif, left=LEFT)
    with Image.open(gif) as im:
        assert im.n_frames == n
        if base:
            im.convert("RGB").save(base + "_frame0.png")

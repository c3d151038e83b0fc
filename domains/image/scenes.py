"""Compositional scenes: the prompt grammar, the renderer, the behaviour sources and the oracle.

A prompt is four words — count, colour, shape, position — e.g. ``two red circle left``:
2 counts × 4 colours × 3 shapes × 4 positions = 96 scenes. The renderer draws the scene on a
dark background (objects 5/16 of the image wide, centres jittered by ±1/16), with hard edges.

**The hidden gold oracle** reads pixels only (no access to how an image was made):

1. each pixel is *background* (max channel < 0.3) or *foreground*, and a foreground pixel takes
   the nearest palette colour (it is *pure* when within 0.2 of it);
2. the target mask = foreground pixels of the prompt's colour; its 4-connected components of at
   least 6/256 of the image are the *objects*;
3. components (each in [0, 1]):

   - ``colour``: share of the foreground that has the prompt's colour (0 with no object);
   - ``shape``: share of objects of the prompt's shape by moments: square if the object fills
     ≥ 0.88 of its bounding box, triangle if its mass sits low (an apex on top), else circle;
   - ``position``: how far the objects' centroid lies in the named half, 1 from 1.5/16 of the
     image past the centre line (0 with no object);
   - ``count``: 1 − |objects − count| / count, floored at 0;
   - ``aesthetic``: ½·clean background (1 − mean deviation of background pixels from the
     background colour / 0.15) + ½·sharp edges (share of foreground pixels that are pure).

Gold = 1·colour + 0.5·shape + 1·position + 1·count + 1·aesthetic (at most 4.5; a clean
rendering of the prompt scores 4.5). Shape weighs half: at 16 px it is the least reliable cue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

COUNTS = ("one", "two")
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("square", "circle", "triangle")
POSITIONS = ("left", "right", "top", "bottom")
ATTRIBUTES = ("count", "colour", "shape", "position")
VALUES = (COUNTS, COLOURS, SHAPES, POSITIONS)
VOCAB = ("<null>", *COUNTS, *COLOURS, *SHAPES, *POSITIONS)
NULL = 0

PALETTE = np.array([[0.9, 0.15, 0.15], [0.15, 0.8, 0.2], [0.2, 0.3, 0.95], [0.95, 0.85, 0.15]], dtype=np.float32)
BACKGROUND = np.array([0.05, 0.05, 0.05], dtype=np.float32)

COMPONENTS = ("colour", "shape", "position", "count", "aesthetic")
GOLD_WEIGHTS = (1.0, 0.5, 1.0, 1.0, 1.0)
MAX_GOLD = sum(GOLD_WEIGHTS)

FG_THRESHOLD = 0.3
PURE_DISTANCE = 0.2
SQUARE_FILL, TRIANGLE_SKEW = 0.88, 0.25

# object centres on a 16×16 grid, per (position, count)
_LAYOUT = {
    ("left", 1): [(4, 8)], ("left", 2): [(4, 4), (4, 12)],
    ("right", 1): [(12, 8)], ("right", 2): [(12, 4), (12, 12)],
    ("top", 1): [(8, 4)], ("top", 2): [(4, 4), (12, 4)],
    ("bottom", 1): [(8, 12)], ("bottom", 2): [(4, 12), (12, 12)],
}


@dataclass(frozen=True)
class Scene:
    count: int  # 1 or 2
    colour: str
    shape: str
    position: str

    @property
    def words(self) -> list[str]:
        return [COUNTS[self.count - 1], self.colour, self.shape, self.position]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def labels(self) -> tuple[int, int, int, int]:
        """Class indices (count, colour, shape, position) for the alignment classifier."""
        return (self.count - 1, COLOURS.index(self.colour), SHAPES.index(self.shape),
                POSITIONS.index(self.position))

    def token_ids(self) -> list[int]:
        return [VOCAB.index(w) for w in self.words]

    @staticmethod
    def from_ids(ids: list[int]) -> Scene:
        words = [VOCAB[i] for i in ids]
        return Scene(COUNTS.index(words[0]) + 1, words[1], words[2], words[3])


def all_scenes() -> list[Scene]:
    return [Scene(n, c, s, p) for n in (1, 2) for c in COLOURS for s in SHAPES for p in POSITIONS]


def is_heldout(scene: Scene) -> bool:
    """The held-out quarter of the 96 scenes, a compositional split: (count + colour + shape +
    position index) mod 4 = 0. Every single attribute value, and every pair of values, still
    occurs in the training scenes; only these 24 combinations never do."""
    n, c, sh, p = scene.labels
    return (n + c + sh + p) % 4 == 0


SPLITS = ("train", "heldout", "any")


def random_scene(rng: random.Random, split: str = "train") -> Scene:
    """A scene drawn uniformly from a split: ``train`` (the 72 training scenes), ``heldout`` (the 24
    held-out ones) or ``any`` (all 96)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    while True:
        scene = Scene(rng.choice((1, 2)), rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(POSITIONS))
        if split == "any" or is_heldout(scene) == (split == "heldout"):
            return scene


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def _shape_mask(shape: str, size: int, cx: float, cy: float, half: float) -> np.ndarray:
    """Pixels at least half covered by the shape (4×4 supersampling): hard edges, fair shapes."""
    sub = 4
    ys, xs = np.mgrid[0 : size * sub, 0 : size * sub].astype(np.float32)
    dx, dy = (xs + 0.5) / sub - cx, (ys + 0.5) / sub - cy
    if shape == "square":
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "circle":
        inside = dx * dx + dy * dy <= half * half
    else:  # triangle pointing up: apex at the top, base at the bottom
        inside = (dy >= -half) & (dy <= half) & (np.abs(dx) <= half * (dy + half) / (2 * half))
    return inside.reshape(size, sub, size, sub).mean(axis=(1, 3)) >= 0.5


def render(scene: Scene, size: int, rng: random.Random, jitter: bool = True) -> np.ndarray:
    """A clean rendering ``[3, size, size]`` in [0, 1]."""
    u = size / 16
    img = np.broadcast_to(BACKGROUND[:, None, None], (3, size, size)).copy()
    colour = PALETTE[COLOURS.index(scene.colour)]
    dx, dy = (rng.randint(-1, 1), rng.randint(-1, 1)) if jitter else (0, 0)
    for gx, gy in _LAYOUT[(scene.position, scene.count)]:
        m = _shape_mask(scene.shape, size, (gx + dx) * u + 0.5, (gy + dy) * u + 0.5, 2.6 * u)
        img[:, m] = colour[:, None]
    return img


def wrong_scene(scene: Scene, rng: random.Random) -> Scene:
    """The scene with one attribute (colour, shape, position or count) changed."""
    attr = rng.choice(ATTRIBUTES)
    if attr == "count":
        return Scene(3 - scene.count, scene.colour, scene.shape, scene.position)
    if attr == "colour":
        return Scene(scene.count, rng.choice([c for c in COLOURS if c != scene.colour]), scene.shape, scene.position)
    if attr == "shape":
        return Scene(scene.count, scene.colour, rng.choice([s for s in SHAPES if s != scene.shape]), scene.position)
    return Scene(scene.count, scene.colour, scene.shape, rng.choice([p for p in POSITIONS if p != scene.position]))


def uglify(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """Noise, blur or a dirty background (one of them)."""
    size = img.shape[-1]
    nprng = np.random.default_rng(rng.getrandbits(32))
    kind = rng.choice(("noise", "blur", "dirty"))
    if kind == "noise":
        out = img + nprng.normal(0, rng.uniform(0.1, 0.2), img.shape).astype(np.float32)
    elif kind == "blur":
        out = ndimage.gaussian_filter(img, sigma=(0, 0.8 * size / 16, 0.8 * size / 16))
    else:
        bg = (img.max(axis=0) < FG_THRESHOLD)[None]
        tint = nprng.uniform(0.1, 0.25, (3, 1, 1)).astype(np.float32)
        blotch = ndimage.gaussian_filter(nprng.normal(0, 0.15, img.shape), sigma=(0, 1.5, 1.5)).astype(np.float32)
        out = np.where(bg, tint + blotch, img)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


SOURCES = ("clean", "wrong", "ugly", "ugly_wrong")


def behaviour(source: str, scene: Scene, size: int, rng: random.Random) -> np.ndarray:
    """A rendering of ``scene`` by a behaviour source: clean, partly wrong, ugly, or both."""
    target = wrong_scene(scene, rng) if source in ("wrong", "ugly_wrong") else scene
    img = render(target, size, rng)
    return uglify(img, rng) if source.startswith("ugly") else img


# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------


def classify_shape(ys: np.ndarray, xs: np.ndarray) -> str:
    """Square if it fills its bounding box (≥ 0.88), triangle if its mass sits low (apex up:
    (lower − upper half) / area ≥ 0.25), else circle."""
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if len(ys) / (h * w) >= SQUARE_FILL:
        return "square"
    mid = (ys.max() + ys.min()) / 2
    skew = (float((ys > mid).sum()) - float((ys < mid).sum())) / len(ys)
    return "triangle" if skew >= TRIANGLE_SKEW else "circle"


def score(scene: Scene, img: np.ndarray) -> tuple[float, ...]:
    """Oracle components (see the module docstring) of one image ``[3, S, S]`` in [0, 1]."""
    size = img.shape[-1]
    pix = np.moveaxis(img, 0, -1)
    fg = pix.max(-1) >= FG_THRESHOLD
    dist = np.linalg.norm(pix[:, :, None, :] - PALETTE[None, None], axis=-1)  # [S, S, 4]
    nearest, nd = dist.argmin(-1), dist.min(-1)
    target = fg & (nearest == COLOURS.index(scene.colour))
    n_fg = int(fg.sum())

    labels, n = ndimage.label(target)  # 4-connectivity
    min_area = 6 * (size / 16) ** 2
    objects = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        if len(ys) >= min_area:
            objects.append((ys, xs))
    if objects:
        colour = float(target.sum()) / max(n_fg, 1)
        shape = float(np.mean([classify_shape(ys, xs) == scene.shape for ys, xs in objects]))
        cy = float(np.concatenate([ys for ys, _ in objects]).mean()) + 0.5
        cx = float(np.concatenate([xs for _, xs in objects]).mean()) + 0.5
        offset = {"left": size / 2 - cx, "right": cx - size / 2, "top": size / 2 - cy, "bottom": cy - size / 2}
        position = float(np.clip(offset[scene.position] / (1.5 * size / 16), 0.0, 1.0))
    else:
        colour = shape = position = 0.0
    count = max(0.0, 1.0 - abs(len(objects) - scene.count) / scene.count)
    bg = ~fg
    dev = float(np.abs(pix[bg] - BACKGROUND).mean()) if bg.any() else 1.0
    clean = float(np.clip(1.0 - dev / 0.15, 0.0, 1.0))
    sharp = float((nd[fg] < PURE_DISTANCE).mean()) if n_fg else 0.0
    return (colour, shape, position, count, 0.5 * clean + 0.5 * sharp)


def gold(components: tuple[float, ...]) -> float:
    return float(np.dot(components, GOLD_WEIGHTS))

"""Text-to-motion meanings, their phrasings, a procedural motion generator, behaviour sources and
the hidden oracle (pure numpy; joint positions as in :mod:`domains.motion.skeleton`: metres, y up,
20 fps, the body's left is +x when it faces +z).

**Meanings.** An action and the attributes it takes; an attribute that does not apply is "none"
(``reps`` 0). Directions are forward, backward, left, right (a turn: left, right); speed slow, fast;
side left, right; repetitions 1, 2 — 40 meanings:

========  ==============================  ========
action    attributes                      meanings
========  ==============================  ========
walk      direction × speed               8
run       direction × speed               8
jump      direction × reps                8
wave      side × reps                     4
kick      side × reps                     4
sit_down  speed                           2
turn      direction (left/right) × speed  4
crouch    reps                            2
========  ==============================  ========

``Meaning.ids()`` is the value index per attribute in ``VALUES`` (0 = "none"). Held out of training:
``(Σ ids + action id) mod 4 = 0`` (9 meanings); every action and every value of every attribute of
every action still occurs in training.

**Text.** 3–4 templates per action ("a person walks forward slowly", "someone slowly walks ahead",
"a figure takes slow steps forward", "the man walks ahead at a slow pace"). ``VOCAB`` is "<pad>"
followed by the sorted words of every phrasing; ``tokenize`` lower-cases, splits on whitespace and
pads with ``PAD`` = 0 (also the null condition of classifier-free guidance) to ``MAX_WORDS``.

**Generator.** Per-frame controls (pelvis position, heading, torso lean, arm angles, ankle targets,
foot yaw) → forward kinematics, the legs by two-bone IK, so every bone keeps its rest length
exactly and planted feet do not move. Locomotion is in absolute time (speeds in m/s); the other
actions' timelines are relative to the clip (u = f / (F − 1)), so they fit any length (40–60 frames).

- walk / run: constant velocity, walk slow 0.6–0.8, fast 1.2–1.5, run slow 2.0–2.4, fast 3.0–3.4
  m/s; an alternating gait (duty factor 0.6 walking, 0.3–0.38 running, so runs have flight), arm
  swing against the legs, the pelvis as high as the planted legs allow. The facing stays fixed:
  **left/right are side-steps** (the feet cross over), backward is walking backwards;
- jump: 1 or 2 jumps of 0.3–0.5 m in the direction: crouch, push, fly (pelvis +0.2–0.3 m), land;
- wave: 1 or 2 times raise the arm sideways above the shoulder, swing the forearm side to side
  2–3 times, lower it;
- kick: 1 or 2 times the leg draws back, extends 0.45–0.6 m forward and 0.35–0.5 m up, returns;
- sit_down: the pelvis lowers to 0.48–0.55 m and moves back onto an imaginary seat within 0.5–0.62
  of the clip (slow) or 0.18–0.26 (fast), and stays seated;
- turn: the heading turns 75–105° (left = counter-clockwise seen from above) within 0.5–0.62 of the
  clip (slow) or 0.18–0.26 (fast), the feet stepping round;
- crouch: 1 or 2 times the knees bend until the pelvis is 0.3–0.4 m lower, hold, stand up.

Each sample varies speed, cadence, amplitudes, timing, gait phase, lean and arm carriage, and
starts at a uniform random heading and a random position in [−2, 2]² m.

**Behaviour sources** (``SOURCES``, decreasing quality; :func:`behaviour`): clean; jittered
(Gaussian noise σ 2–6 mm); foot_skating (whole-body sway, the planted feet slide); wrong_direction
(another direction or side — or speed/reps for an action with neither); truncated (the pose held
from 35–60% of the clip); wrong_action; frozen (one pose rocking 3–6°). Mean gold measured over 300
draws of 48 frames: 8.25, 7.82, 7.60, 7.24, 6.04, 2.17, 2.03.

**The hidden oracle** reads joint positions ``[B, F, J, 3]`` only. Statistics (θ the heading of
:func:`~domains.motion.skeleton.facing_angles`, unwrapped; "ends" = the mean over the first / last
k = min(3, F // 8) frames; H = 0.95 m the standing pelvis height; ``ramp(x, lo, hi)`` is 0 below lo,
1 above hi, linear between):

- travel: the root's net horizontal displacement between the ends, in the initial facing frame:
  distance, speed = distance / ((F − k) / 20 s), bearing (0 forward, +90° left, ±180° backward);
- heading change Δθ between the ends; turn duration: the share of the clip from 10% to 90% of Δθ;
- pelvis height y: rise = max y − H, height range, start / end drop = H − y at the ends, min drop
  = H − min y; descent duration: the share of the clip from 10% to 90% of the way between the ends;
- per side: wrist raise = max (wrist y − shoulder y), wrist range = max − min wrist y, ankle lift =
  max (ankle y − its minimum);
- episodes (counted with hysteresis, enter / leave): jumps y − H (0.07 / 0.03 m), waves the higher
  wrist raise (0 / −0.25 m), kicks the higher ankle lift (0.2 / 0.06 m), crouches H − y (0.18 /
  0.07 m).

Action evidence: turn ``ramp(|Δθ|, 0.6, 1.0 rad)``; jump ``ramp(rise, 0.06, 0.12)·ramp(height
range, 0.12, 0.2)``; locomotion ``ramp(speed, 0.25, 0.45 m/s)``; sit_down ``ramp(end − start drop,
0.15, 0.3)``; crouch ``ramp(min drop − max(start, end drop), 0.12, 0.2)``; kick ``ramp(|lift_L −
lift_R|, 0.12, 0.24)``; wave, the larger over sides of ``ramp(raise, −0.05, 0.05)·ramp(wrist range,
0.3, 0.5)``. A soft decision list in that order, ``P(a) = e_a·Π_{b before a} (1 − e_b)``;
locomotion splits into run (share ``ramp(speed, 1.6, 1.9)``) and walk; the remainder is "none".
:func:`decode` takes the most probable and reads that action's attributes.

Components, each in [0, 1] (:func:`score`):

- ``action``: P(the requested action);
- ``direction``, ``speed``, ``side``, ``reps``: ``action ×`` the attribute's match (1 where it does
  not apply), so no attribute earns credit without the action. Direction: travel ``ramp(cos(bearing
  − target), cos 50°, cos 30°)·ramp(distance, 0.05, 0.15 m)``, turn ``ramp(±Δθ, 0.3, 0.6 rad)``.
  Speed, fast = walk ``ramp(speed, 0.9, 1.1)``, run ``ramp(speed, 2.55, 2.85)`` m/s, turn / sit_down
  ``ramp(−duration, −0.25, −0.2)``, slow = 1 − fast. Side: ``ramp(±(left − right), 0.1, 0.3)`` of
  the wrist raise (wave) or ``(0.05, 0.15)`` of the ankle lift (kick). Reps: 1 if the episodes
  counted equal the request, else 0;
- ``bone_length``: ``1 − mean_f(Σ|ℓ − L| / ΣL) / 0.1`` over the 17 bones;
- ``skating``: ``1 − mean_{f, foot joint}([low at f and f+1]·max(0, horizontal step − 5 mm)) / 1 cm``,
  a foot joint low within 3 cm of its rest height;
- ``ground``: ``1 − mean_f max(0, −min_j y) / 3 cm − ramp(longest airborne spell, 0.9, 1.5 s)``,
  airborne when every joint is above 5 cm;
- ``jerk``: ``1 − log2(mean|Δ³p| / ref) / 3`` (1 up to ref, 0 at 8·ref), relative to what clean
  motions of the prompt have: ``ref = max(JERK_REFERENCE[(action, speed, reps)]·c, 5 mm/frame³)``,
  c = (48/F)² for the clip-timed actions, 1 for walk and run.

Gold = components · ``GOLD_WEIGHTS`` = 2·action + direction + speed + side + reps + 0.5·bone_length
+ 0.75·skating + 0.5·ground + 0.5·jerk, at most ``MAX_GOLD`` = 8.25; a clean motion scores it. Text
match weighs 6 of 8.25: the prompt is the task — a plausible motion of the wrong thing fails it,
while physical flaws only spoil a motion that does it (so wrong_action and frozen rank last, below
any plausibility defect). Skating weighs most among the plausibility terms: it is the artefact of
learned motion models the field measures first, and the one a viewer notices first.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from domains.motion import skeleton as K

# =============================================================================================
# meanings
# =============================================================================================

NONE = "none"
ACTIONS = ("walk", "run", "jump", "wave", "kick", "sit_down", "turn", "crouch")
DIRECTIONS = ("forward", "backward", "left", "right")
TURN_DIRECTIONS = ("left", "right")
SPEEDS = ("slow", "fast")
SIDES = ("left", "right")
REPS = (1, 2)
ATTRIBUTES = ("action", "direction", "speed", "side", "reps")
VALUES = {
    "action": (NONE, *ACTIONS),
    "direction": (NONE, *DIRECTIONS),
    "speed": (NONE, *SPEEDS),
    "side": (NONE, *SIDES),
    "reps": (0, *REPS),
}
"""Per attribute, its values in id order; id 0 is "none" (for ``reps``: 0)."""

ACTION_ATTRIBUTES = {
    "walk": ("direction", "speed"),
    "run": ("direction", "speed"),
    "jump": ("direction", "reps"),
    "wave": ("side", "reps"),
    "kick": ("side", "reps"),
    "sit_down": ("speed",),
    "turn": ("direction", "speed"),
    "crouch": ("reps",),
}
"""The attributes each action takes; every other attribute is "none" (``reps`` 0)."""

LOCOMOTION = ("walk", "run", "jump")


def attribute_options(action: str, attribute: str) -> tuple:
    """The values ``attribute`` may take with ``action``: ("none",) (or (0,)) when it does not apply;
    directions of a turn are left/right only."""
    if attribute not in ACTION_ATTRIBUTES[action]:
        return (VALUES[attribute][0],)
    if attribute == "direction" and action == "turn":
        return TURN_DIRECTIONS
    return VALUES[attribute][1:]


@dataclass(frozen=True)
class Meaning:
    """What a prompt asks for: an action and the attributes that apply to it (others "none", reps 0)."""

    action: str
    direction: str = NONE
    speed: str = NONE
    side: str = NONE
    reps: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; use one of {ACTIONS}")
        for attr in ATTRIBUTES[1:]:
            if getattr(self, attr) not in attribute_options(self.action, attr):
                raise ValueError(f"{attr}={getattr(self, attr)!r} is not valid for {self.action!r}; "
                                 f"use one of {attribute_options(self.action, attr)}")

    def ids(self) -> list[int]:
        """Five value indices (action, direction, speed, side, reps), 0 = "none": ``VALUES[attr].index(value)``."""
        return [VALUES[attr].index(getattr(self, attr)) for attr in ATTRIBUTES]

    @staticmethod
    def from_ids(ids: list[int] | tuple[int, ...]) -> Meaning:
        """The inverse of :meth:`ids` (ValueError for an invalid combination)."""
        if len(ids) != len(ATTRIBUTES):
            raise ValueError(f"a meaning has {len(ATTRIBUTES)} ids, not {len(ids)}")
        if any(not 0 <= int(i) < len(VALUES[attr]) for attr, i in zip(ATTRIBUTES, ids)):
            raise ValueError(f"meaning ids {list(ids)} out of range")
        values = [VALUES[attr][int(i)] for attr, i in zip(ATTRIBUTES, ids)]
        return Meaning(*values)

    def replace(self, **changes: object) -> Meaning:
        """A copy with some attributes changed (validated like any meaning)."""
        return Meaning(**{**{a: getattr(self, a) for a in ATTRIBUTES}, **changes})


def all_meanings() -> list[Meaning]:
    """Every valid meaning (40), in a fixed order."""
    out = []
    for action in ACTIONS:
        for direction in attribute_options(action, "direction"):
            for speed in attribute_options(action, "speed"):
                for side in attribute_options(action, "side"):
                    for reps in attribute_options(action, "reps"):
                        out.append(Meaning(action, direction, speed, side, reps))
    return out


def is_heldout(m: Meaning) -> bool:
    """The held-out meanings, a compositional split: ``(Σ ids + action id) mod 4 = 0`` (9 of the 40, of
    walk, run, jump, wave, kick and turn). Every action keeps training meanings and every value of
    every attribute of every action occurs in training; only these combinations never do."""
    ids = m.ids()
    return (sum(ids) + ids[0]) % 4 == 0


SPLITS = ("train", "heldout", "any")


def random_meaning(rng: random.Random, split: str = "train") -> Meaning:
    """A meaning drawn uniformly from a split: ``train``, ``heldout`` or ``any``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    pool = [m for m in _ALL if split == "any" or is_heldout(m) == (split == "heldout")]
    return rng.choice(pool)


_ALL = all_meanings()

# =============================================================================================
# text
# =============================================================================================

_DIR = {"forward": ("forward", "ahead"), "backward": ("backward", "backwards"),
        "left": ("to the left", "leftward"), "right": ("to the right", "rightward")}
_ADV = {"slow": "slowly", "fast": "quickly"}
_ADJ = {"slow": "slow", "fast": "quick"}
_TIMES = {1: ("once", "one time"), 2: ("twice", "two times")}

_TEMPLATES = {
    "walk": ("a person walks {d0} {adv}", "someone {adv} walks {d1}", "a figure takes {adj} steps {d0}",
             "the man walks {d1} at a {adj} pace"),
    "run": ("a person runs {d0} {adv}", "someone {adv} runs {d1}", "a figure {runs} {d0}",
            "the man runs {d1} at a {adj} pace"),
    "jump": ("a person jumps {d0} {t0}", "someone hops {d1} {t1}", "a figure does {n} {jumps} {d0}"),
    "wave": ("a person waves the {side} hand {t0}", "someone raises the {side} arm and waves {t1}",
             "a figure waves {t1} with the {side} hand"),
    "kick": ("a person kicks with the {side} leg {t0}", "someone kicks {t1} with the {side} foot",
             "a figure does {n} {kicks} with the {side} leg"),
    "sit_down": ("a person sits down {adv}", "someone {adv} sits down on a chair", "a figure {adv} lowers onto a seat"),
    "turn": ("a person turns {dir} {adv}", "someone {adv} turns to the {dir}", "a figure pivots {adv} to the {dir}",
             "the man makes a {adj} turn to the {dir}"),
    "crouch": ("a person crouches down {t0}", "someone squats {t1}", "a figure does {n} {squats}"),
}


def phrasings(m: Meaning) -> list[str]:
    """The template phrasings of a meaning (3 or 4, all distinct)."""
    d0, d1 = _DIR.get(m.direction, ("", ""))
    t0, t1 = _TIMES.get(m.reps, ("", ""))
    fill = {
        "d0": d0, "d1": d1, "dir": m.direction, "adv": _ADV.get(m.speed, ""), "adj": _ADJ.get(m.speed, ""),
        "side": m.side, "t0": t0, "t1": t1, "n": "one" if m.reps == 1 else "two",
        "runs": "jogs" if m.speed == "slow" else "sprints",
        **{f"{w}s": w if m.reps == 1 else f"{w}s" for w in ("jump", "kick", "squat")},
    }
    return [" ".join(t.format(**fill).split()) for t in _TEMPLATES[m.action]]


PAD = 0
VOCAB = ("<pad>", *sorted({w for m in _ALL for text in phrasings(m) for w in text.split()}))
"""The words of every phrasing, sorted; index 0 is ``<pad>`` (padding, and the null condition of
classifier-free guidance)."""
_WORD_ID = {w: i for i, w in enumerate(VOCAB)}
MAX_WORDS = max(len(text.split()) for m in _ALL for text in phrasings(m))


def tokenize(text: str, length: int = MAX_WORDS) -> list[int]:
    """Word ids of a lower-cased, whitespace-split text, truncated or padded with ``PAD`` to ``length``;
    ValueError naming an unknown word."""
    ids = []
    for word in text.lower().split():
        if word not in _WORD_ID or word == VOCAB[PAD]:
            raise ValueError(f"unknown word {word!r} in {text!r}")
        ids.append(_WORD_ID[word])
    return (ids + [PAD] * length)[:length]


def detokenize(ids: list[int]) -> str:
    """The text of word ids (padding dropped)."""
    return " ".join(VOCAB[i] for i in ids if i != PAD)


# =============================================================================================
# the procedural generator
# =============================================================================================

STAND_HEIGHT = float(K.REST_OFFSETS[0, 1])
ANKLE_HEIGHT = float(K.REST_POSE[K.JOINT["l_ankle"], 1])
_THIGH, _SHIN = float(K.BONE_LENGTHS[K.JOINT["l_knee"]]), float(K.BONE_LENGTHS[K.JOINT["l_ankle"]])
_UPPER_ARM, _FOREARM = float(K.BONE_LENGTHS[K.JOINT["l_elbow"]]), float(K.BONE_LENGTHS[K.JOINT["l_wrist"]])
_SIDE_SIGN = np.array([1.0, -1.0])  # left is +x in the body frame
_LATERAL = np.abs(float(K.REST_OFFSETS[K.JOINT["l_hip"], 0])) * _SIDE_SIGN  # x of each foot's track
_HIP_DROP = -float(K.REST_OFFSETS[K.JOINT["l_hip"], 1])
_SWING_MARGIN = 0.12
_TRAVEL = {"forward": (0.0, 1.0), "backward": (0.0, -1.0), "left": (1.0, 0.0), "right": (-1.0, 0.0)}

# gait per (action, speed): speed m/s, stride period s, duty factor, swing lift m, arm swing rad,
# elbow bend rad, torso lean rad, nominal pelvis height m (ranges are uniform draws)
_GAITS = {
    ("walk", "slow"): dict(speed=(0.6, 0.8), period=(1.0, 1.15), duty=(0.6, 0.64), lift=(0.07, 0.1),
                           swing=(0.2, 0.35), elbow=(0.15, 0.35), lean=(0.02, 0.06), height=0.935),
    ("walk", "fast"): dict(speed=(1.2, 1.5), period=(0.78, 0.85), duty=(0.55, 0.58), lift=(0.08, 0.12),
                           swing=(0.35, 0.5), elbow=(0.25, 0.45), lean=(0.04, 0.08), height=0.93),
    ("run", "slow"): dict(speed=(2.0, 2.4), period=(0.7, 0.78), duty=(0.34, 0.38), lift=(0.18, 0.24),
                          swing=(0.5, 0.7), elbow=(1.2, 1.5), lean=(0.1, 0.15), height=0.94),
    ("run", "fast"): dict(speed=(3.0, 3.4), period=(0.6, 0.66), duty=(0.3, 0.33), lift=(0.22, 0.28),
                          swing=(0.6, 0.8), elbow=(1.3, 1.6), lean=(0.15, 0.22), height=0.94),
}


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, linear between."""
    return np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _quintic(x: np.ndarray) -> np.ndarray:
    """Minimum-jerk 10x³ − 15x⁴ + 6x⁵ on x clipped to [0, 1] (zero velocity and acceleration at the ends)."""
    x = np.clip(x, 0.0, 1.0)
    return x**3 * (10.0 + x * (-15.0 + 6.0 * x))


def _uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    """A uniform draw from ``rng`` in ``bounds``."""
    return rng.uniform(*bounds)


@dataclass
class _Controls:
    """Per-frame controls of a motion in its own frame (facing +z at the origin at the start)."""

    root: np.ndarray  # [F, 3] pelvis position
    heading: np.ndarray  # [F] body yaw θ (the pelvis and the torso)
    lean: np.ndarray  # [F] forward pitch of the torso, rad
    arms: np.ndarray  # [F, 2, 4] per arm (left, right): upper abduction, upper flexion, fore abduction, fore flexion
    ankles: np.ndarray  # [F, 2, 3] ankle targets (left, right)
    foot_yaw: np.ndarray  # [F, 2] yaw of each foot


def _standing(frames: int, rng: random.Random) -> _Controls:
    """Standing upright (straight legs, pelvis at 0.95 m), the arms hanging with a little abduction
    and elbow bend, a slight lean: the base every action modifies."""
    arms = np.zeros((frames, 2, 4))
    arms[..., 0] = arms[..., 2] = rng.uniform(0.05, 0.15)
    arms[..., 3] = rng.uniform(0.05, 0.25)
    ankles = np.zeros((frames, 2, 3))
    ankles[..., 0], ankles[..., 1] = _LATERAL, ANKLE_HEIGHT
    return _Controls(root=np.tile([0.0, STAND_HEIGHT, 0.0], (frames, 1)), heading=np.zeros(frames),
                     lean=np.full(frames, rng.uniform(0.0, 0.05)), arms=arms, ankles=ankles,
                     foot_yaw=np.zeros((frames, 2)))


def _limb_direction(sign: np.ndarray, abduction: np.ndarray, flexion: np.ndarray) -> np.ndarray:
    """Unit direction of an arm bone in the body frame from hanging straight down:
    ``(s·sin a, −cos a·cos φ, cos a·sin φ)`` for abduction a (sideways, s = +1 left) and flexion φ
    (forward)."""
    return np.stack([sign * np.sin(abduction), -np.cos(abduction) * np.cos(flexion),
                     np.cos(abduction) * np.sin(flexion)], axis=-1)


def _pitch(offset: np.ndarray, lean: np.ndarray) -> np.ndarray:
    """A rest offset ``[3]`` pitched forward by ``lean`` ``[F]`` about the x axis: y → (cos λ, sin λ)."""
    c, s = np.cos(lean), np.sin(lean)
    x, y, z = offset
    return np.stack([np.full_like(lean, x), y * c - z * s, y * s + z * c], axis=-1)


def _two_bone_ik(hip: np.ndarray, target: np.ndarray, pole: np.ndarray, upper: float,
                 lower: float) -> tuple[np.ndarray, np.ndarray]:
    """Knee and ankle ``[F, 3]`` of a two-bone leg reaching for ``target``, bending towards ``pole``:
    the reach ``r`` is |target − hip| clipped to [|u − l|, u + l], the knee at angle
    ``acos((r² + u² − l²) / (2 r u))`` off the hip→target line (so both bones keep their lengths)."""
    delta = target - hip
    dist = np.linalg.norm(delta, axis=-1, keepdims=True)
    unit = delta / np.maximum(dist, 1e-9)
    reach = np.clip(dist, abs(upper - lower) + 1e-6, upper + lower)
    cos_a = np.clip((reach**2 + upper**2 - lower**2) / (2 * reach * upper), -1.0, 1.0)
    normal = pole - np.sum(pole * unit, axis=-1, keepdims=True) * unit
    normal = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
    knee = hip + upper * (cos_a * unit + np.sqrt(1.0 - cos_a**2) * normal)
    return knee, hip + reach * unit


def _assemble(c: _Controls) -> np.ndarray:
    """Joint positions ``[F, J, 3]`` by forward kinematics: the torso chain pitched by the lean and
    turned by the heading, the arms from their bone directions, the legs by two-bone IK towards the
    ankle targets, the toes turned by the foot yaw. Every bone keeps its rest length."""
    frames = len(c.root)
    pos = np.zeros((frames, K.NUM_JOINTS, 3))
    pos[:, 0] = c.root
    for j in (1, 2, 3, K.JOINT["l_shoulder"], K.JOINT["r_shoulder"]):
        pos[:, j] = pos[:, K.PARENTS[j]] + K.rotate_y(_pitch(K.REST_OFFSETS[j].astype(np.float64), c.lean), c.heading)
    for k, name in enumerate(("l", "r")):
        sh, el, wr = (K.JOINT[f"{name}_{part}"] for part in ("shoulder", "elbow", "wrist"))
        a = c.arms[:, k]
        pos[:, el] = pos[:, sh] + _UPPER_ARM * K.rotate_y(_limb_direction(_SIDE_SIGN[k], a[:, 0], a[:, 1]), c.heading)
        pos[:, wr] = pos[:, el] + _FOREARM * K.rotate_y(_limb_direction(_SIDE_SIGN[k], a[:, 2], a[:, 3]), c.heading)
        hip, knee, ankle, toe = (K.JOINT[f"{name}_{part}"] for part in ("hip", "knee", "ankle", "foot"))
        pos[:, hip] = c.root + K.rotate_y(K.REST_OFFSETS[hip].astype(np.float64), c.heading)
        yaw = np.arctan2(np.sin(c.heading) + np.sin(c.foot_yaw[:, k]), np.cos(c.heading) + np.cos(c.foot_yaw[:, k]))
        pole = np.stack([np.sin(yaw), np.zeros(frames), np.cos(yaw)], axis=-1)
        pos[:, knee], pos[:, ankle] = _two_bone_ik(pos[:, hip], c.ankles[:, k], pole, _THIGH, _SHIN)
        pos[:, toe] = pos[:, ankle] + K.rotate_y(K.REST_OFFSETS[toe].astype(np.float64), c.foot_yaw[:, k])
    return pos


def _place(pos: np.ndarray, rng: random.Random) -> np.ndarray:
    """The motion turned to a random initial heading in [−π, π) and moved to a random (x, z) in [−2, 2]² m."""
    heading = rng.uniform(-math.pi, math.pi)
    offset = np.array([rng.uniform(-2.0, 2.0), 0.0, rng.uniform(-2.0, 2.0)])
    return K.rotate_y(pos, heading) + offset


def _clip_time(frames: int) -> np.ndarray:
    """Clip-relative time u = f / (F − 1) in [0, 1]: the timeline of the non-locomotion actions."""
    return np.arange(frames) / max(frames - 1, 1)


def _rep_phases(u: np.ndarray, reps: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Phase p ∈ [0, 1] within the active repetition and the repetition's index, per frame, for
    ``reps`` repetitions starting at u ∈ [0.04, 0.12], each lasting 0.6–0.72 of the clip (one) or
    0.4–0.43 (two, back to back); p is 0 before and 1 after."""
    start = rng.uniform(0.04, 0.12)
    span = rng.uniform(0.6, 0.72) if reps == 1 else rng.uniform(0.4, 0.43)
    x = (u - start) / span
    index = np.clip(np.floor(x), 0, reps - 1)
    return np.clip(x - index, 0.0, 1.0), index


def _keyframes(p: np.ndarray, times: tuple[float, ...], values: tuple[float, ...]) -> np.ndarray:
    """A curve through (time, value) keyframes with minimum-jerk segments (held before the first and
    after the last)."""
    out = np.full_like(p, values[0], dtype=np.float64)
    for t0, t1, v0, v1 in zip(times[:-1], times[1:], values[:-1], values[1:]):
        inside = (p >= t0) & (p <= t1)
        out = np.where(inside, v0 + (v1 - v0) * _quintic((p - t0) / (t1 - t0)), out)
    return np.where(p > times[-1], values[-1], out)


def _gait_ankle(times: np.ndarray, velocity: np.ndarray, period: float, duty: float, phase: float,
                lift: float, lateral: float) -> np.ndarray:
    """Ankle target ``[F, 3]`` of one foot in a periodic gait travelling at ``velocity`` (x, z): in
    cycle k (cycle = t/T + phase) the foot is planted for the first ``duty`` of the cycle at the
    root's position at mid-stance, ``v·(k − phase + duty/2)·T`` (+ its lateral track), then swings
    (s ∈ [0, 1]) to the next footprint: lifted by ``lift·sin(πs)`` and carried by the minimum-jerk
    curve over the middle of the swing, ``s ∈ [0.12, 0.88]``, so a foot near the ground never slides."""
    cycle = times / period + phase
    k = np.floor(cycle)
    q = cycle - k
    t_mid = (k - phase + duty / 2) * period
    here, there = velocity * t_mid[:, None], velocity * (t_mid + period)[:, None]
    s = np.clip((q - duty) / (1.0 - duty), 0.0, 1.0)
    stance = q < duty
    carry = _quintic((s - _SWING_MARGIN) / (1.0 - 2 * _SWING_MARGIN))
    xz = np.where(stance[:, None], here, here + (there - here) * carry[:, None])
    y = ANKLE_HEIGHT + np.where(stance, 0.0, lift * np.sin(np.pi * s))
    return np.stack([xz[:, 0] + lateral, y, xz[:, 1]], axis=-1)


def _reachable_height(root_xz: np.ndarray, ankles: np.ndarray, nominal: float) -> np.ndarray:
    """Pelvis height ``[F]``: the hard minimum ``c`` of the nominal height and, per foot, the highest
    pelvis whose hip still reaches the ankle target with 99.8% of the leg, ``ankle_y + hip drop +
    sqrt((0.998·(thigh + shin))² − r²)`` (r the horizontal hip–ankle distance), then smoothed without
    ever exceeding it: a running minimum over ±3 frames followed by a ±3-frame Hann average (each
    averaged term is ≤ c at the centre). Planted feet therefore never slide, and the pelvis bobs as in
    a real gait."""
    limits = [np.full(len(root_xz), nominal)]
    for k in range(2):
        r = np.linalg.norm(ankles[:, k, [0, 2]] - (root_xz + np.array([_LATERAL[k], 0.0])), axis=-1)
        limits.append(ankles[:, k, 1] + _HIP_DROP + np.sqrt(np.maximum((0.998 * (_THIGH + _SHIN)) ** 2 - r**2, 0.0)))
    c = np.min(limits, axis=0)
    radius = 3
    padded = np.pad(c, 2 * radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    eroded = windows.min(-1)  # length F + 2·radius
    kernel = np.hanning(2 * radius + 3)[1:-1]
    return np.convolve(eroded, kernel / kernel.sum(), mode="valid")


def _locomotion(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Walk or run: the root travels at constant velocity in the named direction relative to the facing,
    which stays fixed (left/right are side-steps: the feet cross over); an alternating gait
    (:func:`_gait_ankle`, the right foot half a cycle after the left) with arm swing opposite to the
    legs, the elbows bent (more when running) and the torso leaning into forward travel."""
    g = _GAITS[(m.action, m.speed)]
    c = _standing(frames, rng)
    t = np.arange(frames) / K.FPS
    speed, period, duty = _uniform(rng, g["speed"]), _uniform(rng, g["period"]), _uniform(rng, g["duty"])
    lift, phase = _uniform(rng, g["lift"]), rng.random()
    velocity = speed * np.array(_TRAVEL[m.direction])
    for k in range(2):
        c.ankles[:, k] = _gait_ankle(t, velocity, period, duty, phase + 0.5 * k, lift, _LATERAL[k])
    root_xz = velocity * t[:, None]
    height = _reachable_height(root_xz, c.ankles, g["height"])
    c.root = np.stack([root_xz[:, 0], height, root_xz[:, 1]], axis=-1)
    ahead = c.ankles[:, :, 2] - root_xz[:, 1:2]  # how far each foot is in front of the pelvis
    swing = _uniform(rng, g["swing"]) * np.clip((ahead[:, 1] - ahead[:, 0]) / (0.5 * speed * period), -1.0, 1.0)
    elbow = _uniform(rng, g["elbow"])
    c.arms[:, 0, 1], c.arms[:, 1, 1] = swing, -swing
    c.arms[:, :, 3] = c.arms[:, :, 1] + elbow
    c.lean[:] += _uniform(rng, g["lean"]) * {"forward": 1.0, "backward": -0.3}.get(m.direction, 0.3)
    return c


def _jump(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Jump ``reps`` times, each 0.3–0.5 m in the named direction (the facing fixed): per repetition
    (phase p) crouch by 0.1–0.15 m (p < 0.3), push up (to 0.4), fly (to 0.7: the pelvis rises by
    0.2–0.3 m on a parabola 4s(1−s) while it and the tucked feet move to the next spot), land into a
    crouch (to 0.8) and stand up; the arms swing back in the crouch and forward in flight."""
    c = _standing(frames, rng)
    p, index = _rep_phases(_clip_time(frames), m.reps, rng)
    dist, rise, depth, tuck = (rng.uniform(0.3, 0.5), rng.uniform(0.2, 0.3), rng.uniform(0.1, 0.15),
                               rng.uniform(0.05, 0.12))
    drop = depth * _keyframes(p, (0.0, 0.3, 0.4, 0.7, 0.8, 1.0), (0.0, 1.0, 0.0, 0.0, 1.0, 0.0))
    s = np.clip((p - 0.4) / 0.3, 0.0, 1.0)
    flight = rise * 4 * s * (1 - s)
    travel = (index + _quintic(s))[:, None] * dist * np.array(_TRAVEL[m.direction])  # [F, 2]
    c.root = np.stack([travel[:, 0], STAND_HEIGHT - drop + flight, travel[:, 1]], axis=-1)
    c.ankles[:, :, 0] = travel[:, None, 0] + _LATERAL
    c.ankles[:, :, 2] = travel[:, None, 1]
    c.ankles[:, :, 1] = ANKLE_HEIGHT + (flight + tuck * np.sin(np.pi * s))[:, None]
    c.lean[:] += 0.35 * drop / depth
    c.arms[:, :, 1] = (1.0 * np.sin(np.pi * s) - 0.6 * drop / depth * (p < 0.4))[:, None]
    c.arms[:, :, 3] = c.arms[:, :, 1] + 0.3
    return c


def _wave(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Wave ``reps`` times with the named hand: per repetition (phase p) raise the arm sideways to
    100–115° with the forearm turning upright (p < 0.25), swing the forearm side to side by ±20–35°
    for 2 or 3 cycles (to 0.75), lower it (to 1); the other arm hangs."""
    c = _standing(frames, rng)
    p, _ = _rep_phases(_clip_time(frames), m.reps, rng)
    k = SIDES.index(m.side)
    up, amplitude, cycles = rng.uniform(1.75, 2.0), rng.uniform(0.35, 0.6), rng.choice((2, 3))
    raised = _keyframes(p, (0.0, 0.25, 0.75, 1.0), (0.0, 1.0, 1.0, 0.0))
    osc = amplitude * np.sin(2 * np.pi * cycles * np.clip((p - 0.25) / 0.5, 0.0, 1.0))
    rest_abduction = c.arms[:, k, 0].copy()
    c.arms[:, k, 0] = rest_abduction + raised * (up - rest_abduction)
    c.arms[:, k, 2] = (1 - raised) * c.arms[:, k, 0] + raised * (np.pi + osc)
    c.arms[:, k, 1] = c.arms[:, k, 3] = 0.0
    return c


def _kick(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Kick ``reps`` times with the named leg: per repetition (phase p) the ankle lifts 8 cm (p = 0.12),
    draws back and up (−0.12, +0.2 m at 0.3), extends forward and up (0.45–0.6 m ahead, 0.35–0.5 m
    high at 0.55), returns above its footprint (0.88) and sets down (1); the other foot stays planted,
    the pelvis dips 3 cm, the torso leans back and the arms counter-swing."""
    c = _standing(frames, rng)
    p, _ = _rep_phases(_clip_time(frames), m.reps, rng)
    k = SIDES.index(m.side)
    reach, height = rng.uniform(0.45, 0.6), rng.uniform(0.35, 0.5)
    times = (0.0, 0.12, 0.3, 0.55, 0.88, 1.0)
    ahead = _keyframes(p, times, (0.0, 0.0, -0.12, reach, 0.0, 0.0))
    up = _keyframes(p, times, (0.0, 0.08, 0.2, height, 0.08, 0.0))
    effort = up / height
    c.ankles[:, k, 2] += ahead
    c.ankles[:, k, 1] += up
    c.root[:, 1] -= 0.03 * effort
    c.lean[:] -= 0.1 * effort
    c.arms[:, 1 - k, 1] += 0.4 * effort
    c.arms[:, k, 1] -= 0.3 * effort
    c.arms[:, :, 3] += c.arms[:, :, 1]
    return c


def _sit_down(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Sit down onto an imaginary seat: from u ∈ [0.08, 0.2] of the clip, over 0.5–0.62 of it (slow)
    or 0.18–0.26 (fast), the pelvis lowers (minimum-jerk) to 0.48–0.55 m and moves back 0.14–0.2 m, the
    torso leans forward on the way down (0.5·sin πp) and stays a little forward, the hands reach
    forward and come to rest on the thighs; the feet stay planted and the motion ends seated."""
    c = _standing(frames, rng)
    start = rng.uniform(0.08, 0.2)
    duration = rng.uniform(0.5, 0.62) if m.speed == "slow" else rng.uniform(0.18, 0.26)
    p = _quintic((_clip_time(frames) - start) / duration)
    seat, back = rng.uniform(0.48, 0.55), rng.uniform(0.14, 0.2)
    c.root[:, 1] = STAND_HEIGHT + (seat - STAND_HEIGHT) * p
    c.root[:, 2] = -back * p
    c.lean[:] += 0.5 * np.sin(np.pi * p) + 0.15 * p
    c.arms[:, :, 1] += (0.6 * np.sin(np.pi * p) + 0.5 * p)[:, None]
    c.arms[:, :, 3] += c.arms[:, :, 1] + 0.5 * p[:, None]
    return c


def _turn(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Turn in place by 75–105° to the named side (left = heading increasing): from u ∈ [0.08, 0.2] of
    the clip over 0.5–0.62 of it (slow, 4 steps) or 0.18–0.26 (fast, 2 steps) the heading follows a
    minimum-jerk curve; the feet step alternately (the leading foot on the turning side first), each step
    turning the foot about the pelvis to the heading at the step's end with a 5–8 cm lift, and a
    closing step brings the first foot to the final heading; the pelvis dips 2 cm."""
    c = _standing(frames, rng)
    u = _clip_time(frames)
    sign = 1.0 if m.direction == "left" else -1.0
    angle, start = sign * rng.uniform(1.3, 1.83), rng.uniform(0.08, 0.2)
    duration, steps = (rng.uniform(0.5, 0.62), 4) if m.speed == "slow" else (rng.uniform(0.18, 0.26), 2)
    lift = rng.uniform(0.05, 0.08)
    c.heading = angle * _quintic((u - start) / duration)
    c.root[:, 1] -= 0.02 * np.sin(np.pi * np.clip((u - start) / duration, 0.0, 1.0))
    yaw_now, first = [0.0, 0.0], 0 if sign > 0 else 1
    for j in range(steps + 1):
        k = (first + j) % 2
        a = start + j * duration / steps
        b = a + duration / steps
        new = float(angle * _quintic(np.array((b - start) / duration)))
        s = np.clip((u - a) / (b - a), 0.0, 1.0)
        c.foot_yaw[:, k] = np.where(u >= a, yaw_now[k] + (new - yaw_now[k]) * _quintic(s), c.foot_yaw[:, k])
        c.ankles[:, k, 1] += lift * np.sin(np.pi * s) ** 2
        yaw_now[k] = new
    c.ankles[:, :, 0] = _LATERAL * np.cos(c.foot_yaw)
    c.ankles[:, :, 2] = -_LATERAL * np.sin(c.foot_yaw)
    return c


def _crouch(m: Meaning, rng: random.Random, frames: int) -> _Controls:
    """Crouch ``reps`` times: per repetition (phase p) bend the knees (p < 0.35) until the
    pelvis is 0.3–0.4 m lower and 4–8 cm back, hold (to 0.55), stand up (to 0.9) and rest; the torso
    leans forward and the arms reach forward for balance."""
    c = _standing(frames, rng)
    p, _ = _rep_phases(_clip_time(frames), m.reps, rng)
    depth, back = rng.uniform(0.3, 0.4), rng.uniform(0.04, 0.08)
    down = _keyframes(p, (0.0, 0.35, 0.55, 0.9), (0.0, 1.0, 1.0, 0.0))
    c.root[:, 1] -= depth * down
    c.root[:, 2] -= back * down
    c.lean[:] += 0.4 * down
    c.arms[:, :, 1] += 0.9 * down[:, None]
    c.arms[:, :, 3] += c.arms[:, :, 1] + 0.2 * down[:, None]
    return c


_CONTROLS = {"walk": _locomotion, "run": _locomotion, "jump": _jump, "wave": _wave, "kick": _kick,
             "sit_down": _sit_down, "turn": _turn, "crouch": _crouch}


def generate(m: Meaning, rng: random.Random, frames: int = 48) -> np.ndarray:
    """Joint positions ``[frames, J, 3]`` (float32, world frame, y up) of a clean motion realising ``m``:
    the action's procedural controls (per-sample variation drawn from ``rng``), forward kinematics
    (:func:`_assemble`: exact bone lengths, planted feet fixed), then a random initial heading and
    position (:func:`_place`)."""
    if frames < 2:
        raise ValueError(f"a motion needs at least 2 frames, not {frames}")
    return _place(_assemble(_CONTROLS[m.action](m, rng, frames)), rng).astype(np.float32)


# =============================================================================================
# behaviour sources
# =============================================================================================

SOURCES = ("clean", "jittered", "foot_skating", "wrong_direction", "truncated", "wrong_action", "frozen")
"""Behaviour sources, in decreasing quality (see the module docstring)."""


def wrong_attribute(m: Meaning, rng: random.Random) -> Meaning:
    """``m`` with a different direction (or, lacking one, side; lacking both, speed; else reps)."""
    for attr in ("direction", "side", "speed", "reps"):
        if attr in ACTION_ATTRIBUTES[m.action]:
            others = [v for v in attribute_options(m.action, attr) if v != getattr(m, attr)]
            return m.replace(**{attr: rng.choice(others)})
    raise AssertionError(m)


def wrong_action(m: Meaning, rng: random.Random) -> Meaning:
    """A meaning of a different action, uniform over all meanings of the other actions."""
    return rng.choice([o for o in _ALL if o.action != m.action])


def _travel_direction(positions: np.ndarray, rng: random.Random) -> np.ndarray:
    """Unit horizontal direction ``[3]`` of the root's net travel, or a random one when it moves < 0.1 m."""
    travel = positions[-1, 0] - positions[0, 0]
    travel[1] = 0.0
    if np.linalg.norm(travel) < 0.1:
        angle = rng.uniform(-math.pi, math.pi)
        travel = np.array([math.sin(angle), 0.0, math.cos(angle)])
    return travel / np.linalg.norm(travel)


def _sway(frames: int, amplitude: float, period_s: float, direction: np.ndarray, rng: random.Random) -> np.ndarray:
    """A whole-body horizontal offset ``[F, 1, 3]``: ``A·(sin(2πt/P + φ) − sin φ)·direction``, 0 at the start."""
    t = np.arange(frames) / K.FPS
    phi = rng.uniform(0.0, 2 * math.pi)
    wave = amplitude * (np.sin(2 * math.pi * t / period_s + phi) - math.sin(phi))
    return (wave[:, None] * direction)[:, None, :]


def _rock(pose: np.ndarray, frames: int, rng: random.Random) -> np.ndarray:
    """A pose ``[J, 3]`` held for ``frames`` and rocking rigidly about a random horizontal axis through
    the pelvis by ``α(t) = A·(sin(2πt/P + φ) − sin φ)``, A ∈ [3°, 6°], P ∈ [1.5, 3] s (Rodrigues'
    rotation): the feet slide and dip a little, as a statue's would."""
    t = np.arange(frames) / K.FPS
    phi, beta = rng.uniform(0.0, 2 * math.pi), rng.uniform(0.0, 2 * math.pi)
    amplitude, period_s = math.radians(rng.uniform(3.0, 6.0)), rng.uniform(1.5, 3.0)
    alpha = amplitude * (np.sin(2 * math.pi * t / period_s + phi) - math.sin(phi))
    axis = np.array([math.cos(beta), 0.0, math.sin(beta)])
    v = pose - pose[K.ROOT]  # [J, 3]
    cos, sin = np.cos(alpha)[:, None, None], np.sin(alpha)[:, None, None]
    rotated = v * cos + np.cross(axis, v) * sin + axis * (v @ axis)[:, None] * (1.0 - cos)
    return pose[K.ROOT] + rotated


def _frozen(m: Meaning, rng: random.Random, frames: int) -> np.ndarray:
    """One pose held for the whole clip (the rest pose, or a random frame of a clean motion of ``m``,
    each half of the time), placed at random and rocking slightly (:func:`_rock`)."""
    if rng.random() < 0.5:
        pose = _place(K.REST_POSE[None].astype(np.float64), rng)[0]
    else:
        pose = generate(m, rng, frames)[rng.randrange(frames)].astype(np.float64)
    return _rock(pose, frames, rng)


def behaviour(source: str, m: Meaning, rng: random.Random, frames: int = 48) -> np.ndarray:
    """Joint positions ``[frames, J, 3]`` (float32) of a motion for ``m`` by a behaviour source:

    - ``clean``: :func:`generate`;
    - ``jittered``: clean + i.i.d. Gaussian noise of σ ∈ [2, 6] mm on every coordinate;
    - ``foot_skating``: clean + a whole-body sway along the travel direction (random for an in-place
      motion) of 8–15 cm amplitude and 0.8–1.4 s period, so planted feet slide;
    - ``wrong_direction``: clean motion of :func:`wrong_attribute` (another direction or side; an
      action with neither gets another speed or repetition count);
    - ``truncated``: clean, but from a random 35–60% of the clip on, the pose is held;
    - ``wrong_action``: clean motion of :func:`wrong_action`;
    - ``frozen``: one pose held, rocking slightly (:func:`_frozen`)."""
    if source not in SOURCES:
        raise ValueError(f"unknown behaviour source {source!r}; use one of {SOURCES}")
    if source == "wrong_direction":
        return generate(wrong_attribute(m, rng), rng, frames)
    if source == "wrong_action":
        return generate(wrong_action(m, rng), rng, frames)
    if source == "frozen":
        return _frozen(m, rng, frames).astype(np.float32)
    pos = generate(m, rng, frames).astype(np.float64)
    if source == "jittered":
        noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, rng.uniform(0.002, 0.006), pos.shape)
        pos = pos + noise
    elif source == "foot_skating":
        pos = pos + _sway(frames, rng.uniform(0.08, 0.15), rng.uniform(0.8, 1.4), _travel_direction(pos, rng), rng)
    elif source == "truncated":
        stop = round(rng.uniform(0.35, 0.6) * (frames - 1))
        pos[stop:] = pos[stop]
    return pos.astype(np.float32)


# =============================================================================================
# the hidden oracle
# =============================================================================================

COMPONENTS = ("action", "direction", "speed", "side", "reps", "bone_length", "skating", "ground", "jerk")
GOLD_WEIGHTS = (2.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.75, 0.5, 0.5)
MAX_GOLD = sum(GOLD_WEIGHTS)

_J = K.JOINT
_WRISTS, _SHOULDERS, _ANKLES = ([_J["l_wrist"], _J["r_wrist"]], [_J["l_shoulder"], _J["r_shoulder"]],
                                [_J["l_ankle"], _J["r_ankle"]])
_BEARING = {"forward": 0.0, "left": math.pi / 2, "backward": math.pi, "right": -math.pi / 2}
_FOOT_REST_Y = K.REST_POSE[list(K.FOOT_JOINTS), 1].astype(np.float64)
_PARENT_INDEX = np.array(K.PARENTS[1:])
_BONES = K.BONE_LENGTHS[1:].astype(np.float64)

BONE_TOLERANCE = 0.1
"""Mean relative bone-length deviation (Σ|ℓ − L| / ΣL) that scores 0."""
CONTACT_MARGIN, SKATE_TOLERANCE, SKATE_SCALE = 0.03, 0.005, 0.01
"""A foot joint is low within 3 cm of its rest height; slides up to 5 mm/frame are tolerated; a mean
excess slide of 1 cm/frame (over all frames and foot joints) scores 0."""
PENETRATION_SCALE, AIRBORNE_FREE_S, AIRBORNE_ZERO_S = 0.03, 0.9, 1.5
JERK_REFERENCE = {
    ("walk", "slow", 0): 0.0197, ("walk", "fast", 0): 0.0359, ("run", "slow", 0): 0.044, ("run", "fast", 0): 0.0733,
    ("jump", "none", 1): 0.0293, ("jump", "none", 2): 0.0783, ("wave", "none", 1): 0.00824,
    ("wave", "none", 2): 0.0249, ("kick", "none", 1): 0.00532, ("kick", "none", 2): 0.0183,
    ("sit_down", "slow", 0): 0.00125, ("sit_down", "fast", 0): 0.00825, ("turn", "slow", 0): 0.00598,
    ("turn", "fast", 0): 0.00813, ("crouch", "none", 1): 0.00437, ("crouch", "none", 2): 0.0179,
}
"""Per (action, speed, reps): 1.15 × the largest mean |Δ³p| (m/frame³) of 400 clean 48-frame motions."""
JERK_FLOOR, JERK_OCTAVES = 0.005, 3.0
"""The reference is at least 5 mm/frame³; the jerk score loses 1/3 per doubling beyond it (0 at 8×)."""


def _finite(positions: np.ndarray) -> np.ndarray:
    """Positions as float64 ``[B, F, J, 3]``, NaN → 0, ±inf and beyond ±100 m clipped."""
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 4 or p.shape[-2:] != (K.NUM_JOINTS, 3) or p.shape[1] < 2:
        raise ValueError(f"positions must be [B, F ≥ 2, {K.NUM_JOINTS}, 3], not {p.shape}")
    return np.clip(np.nan_to_num(p, nan=0.0, posinf=100.0, neginf=-100.0), -100.0, 100.0)


def _count_episodes(signal: np.ndarray, enter: float, leave: float) -> np.ndarray:
    """Episodes ``[B]`` of a signal ``[B, F]`` with hysteresis: one starts when it rises above ``enter``
    (or is above it at the first frame) and ends when it falls below ``leave``."""
    active = np.zeros(len(signal), dtype=bool)
    count = np.zeros(len(signal), dtype=np.int64)
    for f in range(signal.shape[1]):
        start = ~active & (signal[:, f] > enter)
        count += start
        active = (active | start) & ~(signal[:, f] < leave)
    return count


def _transition_duration(signal: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Share of the clip ``[B]`` between the first frames at which a signal ``[B, F]`` has gone 10% and 90%
    of the way from ``start`` to ``end`` (a frame never reached counts as the last)."""
    frames = signal.shape[1]
    span = end - start
    span = np.where(np.abs(span) < 1e-6, 1e-6, span)
    progress = (signal - start[:, None]) / span[:, None]

    def first(level: float) -> np.ndarray:
        hit = progress >= level
        return np.where(hit.any(1), hit.argmax(1), frames - 1)

    return np.clip(first(0.9) - first(0.1), 0, None) / (frames - 1)


def _statistics(p: np.ndarray) -> dict[str, np.ndarray]:
    """The trajectory statistics the rules read (see the module docstring), per motion."""
    frames = p.shape[1]
    k = max(1, min(3, frames // 8))
    theta = np.unwrap(K.facing_angles(p), axis=1)
    theta0, theta1 = theta[:, :k].mean(1), theta[:, -k:].mean(1)
    root = p[:, :, K.ROOT]
    y = root[..., 1]
    disp = K.rotate_xz(root[:, -k:][..., [0, 2]].mean(1) - root[:, :k][..., [0, 2]].mean(1), -theta0)
    raise_ = p[:, :, _WRISTS, 1] - p[:, :, _SHOULDERS, 1]  # [B, F, 2]
    wrist_y, ankle_y = p[:, :, _WRISTS, 1], p[:, :, _ANKLES, 1]
    lift_curve = ankle_y - ankle_y.min(1, keepdims=True)
    y0, y1 = y[:, :k].mean(1), y[:, -k:].mean(1)
    return {
        "distance": np.linalg.norm(disp, axis=-1),
        "travel_speed": np.linalg.norm(disp, axis=-1) * K.FPS / max(frames - k, 1),
        "bearing": np.arctan2(disp[:, 0], disp[:, 1]),
        "heading_change": theta1 - theta0,
        "turn_duration": _transition_duration(theta, theta0, theta1),
        "rise": y.max(1) - STAND_HEIGHT,
        "height_range": y.max(1) - y.min(1),
        "start_drop": STAND_HEIGHT - y0,
        "end_drop": STAND_HEIGHT - y1,
        "min_drop": STAND_HEIGHT - y.min(1),
        "descent_duration": _transition_duration(y, y0, y1),
        "wrist_raise": raise_.max(1),
        "wrist_range": wrist_y.max(1) - wrist_y.min(1),
        "ankle_lift": lift_curve.max(1),
        "jumps": _count_episodes(y - STAND_HEIGHT, 0.07, 0.03),
        "waves": _count_episodes(raise_.max(-1), 0.0, -0.25),
        "kicks": _count_episodes(lift_curve.max(-1), 0.2, 0.06),
        "crouches": _count_episodes(STAND_HEIGHT - y, 0.18, 0.07),
    }


def _evidence(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per action, evidence in [0, 1] from its key statistic (margin ramps; see the module docstring)."""
    lift, wave_side = s["ankle_lift"], _ramp(s["wrist_raise"], -0.05, 0.05) * _ramp(s["wrist_range"], 0.3, 0.5)
    return {
        "turn": _ramp(np.abs(s["heading_change"]), 0.6, 1.0),
        "jump": _ramp(s["rise"], 0.06, 0.12) * _ramp(s["height_range"], 0.12, 0.2),
        "locomotion": _ramp(s["travel_speed"], 0.25, 0.45),
        "sit_down": _ramp(s["end_drop"] - s["start_drop"], 0.15, 0.3),
        "crouch": _ramp(s["min_drop"] - np.maximum(s["start_drop"], s["end_drop"]), 0.12, 0.2),
        "kick": _ramp(np.abs(lift[:, 0] - lift[:, 1]), 0.12, 0.24),
        "wave": wave_side.max(-1),
    }


def _action_probabilities(s: dict[str, np.ndarray]) -> np.ndarray:
    """``[B, len(ACTIONS) + 1]`` (the last column: no action) by a soft decision list: the actions are
    tried in the order turn, jump, locomotion (run share ``ramp(speed, 1.6, 1.9)`` m/s, the rest walk),
    sit_down, crouch, kick, wave, and ``P(a) = e_a · Π_{b before a} (1 − e_b)``."""
    e = _evidence(s)
    probs = {}
    remaining = np.ones_like(e["turn"])
    for name in ("turn", "jump", "locomotion", "sit_down", "crouch", "kick", "wave"):
        probs[name] = remaining * e[name]
        remaining = remaining * (1.0 - e[name])
    run_share = _ramp(s["travel_speed"], 1.6, 1.9)
    probs["run"], probs["walk"] = probs["locomotion"] * run_share, probs["locomotion"] * (1.0 - run_share)
    return np.stack([probs[a] for a in ACTIONS] + [remaining], axis=-1)


_COUNT_KEY = {"jump": "jumps", "wave": "waves", "kick": "kicks", "crouch": "crouches"}
_COS_FULL, _COS_ZERO = math.cos(math.radians(30)), math.cos(math.radians(50))


def _direction_score(s: dict[str, np.ndarray], action: str, direction: str) -> np.ndarray:
    """Turn: ``ramp(±heading change, 0.3, 0.6)`` rad (+ for left). Travel: ``ramp(cos(bearing − target),
    cos 50°, cos 30°) · ramp(distance, 0.05, 0.15 m)``, the bearing of the net root displacement in the
    initial facing frame (forward 0, left +90°, backward 180°, right −90°)."""
    if action == "turn":
        return _ramp((1.0 if direction == "left" else -1.0) * s["heading_change"], 0.3, 0.6)
    cos = np.cos(s["bearing"] - _BEARING[direction])
    return _ramp(cos, _COS_ZERO, _COS_FULL) * _ramp(s["distance"], 0.05, 0.15)


def _fast_score(s: dict[str, np.ndarray], action: str) -> np.ndarray:
    """How fast, in [0, 1]: walk ``ramp(speed, 0.9, 1.1)``, run ``ramp(speed, 2.55, 2.85)`` (m/s); turn and
    sit_down: the 10–90% transition of the heading (of the pelvis height) takes ≤ 0.2 of the clip → 1,
    ≥ 0.25 → 0."""
    if action == "walk":
        return _ramp(s["travel_speed"], 0.9, 1.1)
    if action == "run":
        return _ramp(s["travel_speed"], 2.55, 2.85)
    duration = s["turn_duration"] if action == "turn" else s["descent_duration"]
    return _ramp(-duration, -0.25, -0.2)


def _side_difference(s: dict[str, np.ndarray], action: str) -> np.ndarray:
    """Left minus right: the wrists' highest rise above the shoulders (wave), the ankles' lift (kick), m."""
    key = "wrist_raise" if action == "wave" else "ankle_lift"
    return s[key][:, 0] - s[key][:, 1]


def _attribute_matches(s: dict[str, np.ndarray], m: Meaning) -> np.ndarray:
    """``[B, 4]`` (direction, speed, side, reps) matches of ``m``'s attributes in [0, 1]; 1 where an
    attribute does not apply. Side: ``ramp(±difference, 0.1, 0.3)`` (wave) or ``(0.05, 0.15)`` (kick);
    reps: 1 when the counted episodes equal the requested repetitions, else 0."""
    out = np.ones((len(s["rise"]), 4))
    if m.direction != NONE:
        out[:, 0] = _direction_score(s, m.action, m.direction)
    if m.speed != NONE:
        fast = _fast_score(s, m.action)
        out[:, 1] = fast if m.speed == "fast" else 1.0 - fast
    if m.side != NONE:
        lo, hi = (0.1, 0.3) if m.action == "wave" else (0.05, 0.15)
        out[:, 2] = _ramp((1.0 if m.side == "left" else -1.0) * _side_difference(s, m.action), lo, hi)
    if m.reps:
        out[:, 3] = s[_COUNT_KEY[m.action]] == m.reps
    return out


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Length ``[B]`` of the longest run of True along the frames of ``mask`` ``[B, F]``."""
    run = np.zeros(len(mask), dtype=np.int64)
    best = run.copy()
    for f in range(mask.shape[1]):
        run = np.where(mask[:, f], run + 1, 0)
        best = np.maximum(best, run)
    return best


def _plausibility(p: np.ndarray) -> np.ndarray:
    """``[B, 4]`` (bone_length, skating, ground, jerk) in [0, 1]; the rules are the module docstring's."""
    lengths = np.linalg.norm(p[:, :, 1:] - p[:, :, _PARENT_INDEX], axis=-1)
    bone = 1.0 - (np.abs(lengths - _BONES).sum(-1) / _BONES.sum()).mean(1) / BONE_TOLERANCE
    feet = p[:, :, list(K.FOOT_JOINTS)]
    low = feet[..., 1] < _FOOT_REST_Y + CONTACT_MARGIN
    slide = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=1), axis=-1)
    skate = ((low[:, 1:] & low[:, :-1]) * np.maximum(slide - SKATE_TOLERANCE, 0.0)).mean((1, 2))
    lowest = p[..., 1].min(-1)
    airborne = _longest_run(lowest > 0.05) / K.FPS
    ground = (1.0 - np.maximum(-lowest, 0.0).mean(1) / PENETRATION_SCALE
              - _ramp(airborne, AIRBORNE_FREE_S, AIRBORNE_ZERO_S))
    return np.clip(np.stack([bone, 1.0 - skate / SKATE_SCALE, ground], -1), 0.0, 1.0)


def mean_jerk(p: np.ndarray) -> np.ndarray:
    """Mean third-difference magnitude ``[B]`` of all joints, ``mean |p[f+3] − 3p[f+2] + 3p[f+1] − p[f]|``
    (m/frame³; 0 for fewer than 4 frames)."""
    if p.shape[1] < 4:
        return np.zeros(len(p))
    return np.linalg.norm(np.diff(p, 3, axis=1), axis=-1).mean((1, 2))


def jerk_reference(m: Meaning, frames: int) -> float:
    """The jerk up to which a motion for ``m`` scores 1: ``JERK_REFERENCE[(action, speed, reps)]``, measured on
    48-frame clips, times (48 / F)² for the actions whose timeline is relative to the clip (all but
    walk and run; their jerk is dominated by the keyframes' acceleration changes, which scale so)."""
    ref = JERK_REFERENCE[(m.action, m.speed, m.reps)]
    return ref if m.action in ("walk", "run") else ref * (48.0 / frames) ** 2


def score(meanings: list[Meaning], positions: np.ndarray) -> np.ndarray:
    """Oracle components ``[B, len(COMPONENTS)]`` in [0, 1] (float32) of joint positions ``[B, F, J, 3]``
    for their meanings: the action's probability, each attribute's match times it, and the
    plausibility terms (see the module docstring)."""
    p = _finite(positions)
    if len(meanings) != len(p):
        raise ValueError(f"{len(meanings)} meanings for {len(p)} motions")
    s = _statistics(p)
    probs = _action_probabilities(s)
    out = np.zeros((len(p), len(COMPONENTS)))
    out[:, 5:8] = _plausibility(p)
    jerk = mean_jerk(p)
    groups: dict[Meaning, list[int]] = {}
    for i, m in enumerate(meanings):
        groups.setdefault(m, []).append(i)
    for m, rows in groups.items():
        idx = np.asarray(rows)
        action = probs[idx, ACTIONS.index(m.action)]
        out[idx, 0] = action
        out[idx, 1:5] = action[:, None] * _attribute_matches({k: v[idx] for k, v in s.items()}, m)
        ref = max(jerk_reference(m, p.shape[1]), JERK_FLOOR)
        out[idx, 8] = 1.0 - np.log2(np.maximum(jerk[idx], 1e-12) / ref) / JERK_OCTAVES
    return np.clip(np.nan_to_num(out), 0.0, 1.0).astype(np.float32)


def gold(components: np.ndarray) -> np.ndarray:
    """Gold reward ``components @ GOLD_WEIGHTS`` (``[..., K]`` → ``[...]``), at most ``MAX_GOLD``."""
    return np.asarray(components, dtype=np.float64) @ np.asarray(GOLD_WEIGHTS)


def decode(positions: np.ndarray) -> dict[str, np.ndarray]:
    """What the rules read from joint positions ``[B, F, J, 3]``: ``action`` (str ``[B]``, the most
    probable of :func:`_action_probabilities`, "none" included), the ``direction``, ``speed`` and
    ``side`` of that action ("none" where they do not apply), ``reps`` (its counted episodes, 0 where
    they do not apply), ``action_probability`` ``[B, len(ACTIONS) + 1]`` and the statistics."""
    p = _finite(positions)
    s = _statistics(p)
    probs = _action_probabilities(s)
    action = np.array([*ACTIONS, NONE])[probs.argmax(-1)]
    out = {attr: np.full(len(p), NONE, dtype="<U8") for attr in ("direction", "speed", "side")}
    out["reps"] = np.zeros(len(p), dtype=np.int64)
    for a in ACTIONS:
        rows = np.flatnonzero(action == a)
        sub = {k: v[rows] for k, v in s.items()}
        if a == "turn":
            out["direction"][rows] = np.where(sub["heading_change"] > 0, "left", "right")
        elif "direction" in ACTION_ATTRIBUTES[a]:
            cos = np.cos(sub["bearing"][:, None] - np.array([_BEARING[d] for d in DIRECTIONS]))
            out["direction"][rows] = np.array(DIRECTIONS)[cos.argmax(-1)]
        if "speed" in ACTION_ATTRIBUTES[a]:
            out["speed"][rows] = np.where(_fast_score(sub, a) >= 0.5, "fast", "slow")
        if "side" in ACTION_ATTRIBUTES[a]:
            out["side"][rows] = np.where(_side_difference(sub, a) > 0, "left", "right")
        if "reps" in ACTION_ATTRIBUTES[a]:
            out["reps"][rows] = sub[_COUNT_KEY[a]]
    return {"action": action.astype("<U8"), **out, "action_probability": probs, **s}

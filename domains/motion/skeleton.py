"""The kinematic skeleton of the motion domain and its HumanML3D-style features.

**Skeleton.** 18 joints in a tree (``PARENTS``, −1 for the root), metres, y up, the body facing +z
in the rest pose, so the body's *left* is +x. The rest pose stands a human of about 1.7 m upright
with the arms hanging: pelvis 0.95 m above the ground, ankles at 0.08 m, toes (``*_foot``) at 0 m.
A bone joins a joint to its parent; ``BONE_LENGTHS[j]`` is the length of the bone ending at joint
``j`` (0 for the root)::

    pelvis ─ spine ─ neck ─ head
      │               ├─ l_shoulder ─ l_elbow ─ l_wrist
      │               └─ r_shoulder ─ r_elbow ─ r_wrist
      ├─ l_hip ─ l_knee ─ l_ankle ─ l_foot
      └─ r_hip ─ r_knee ─ r_ankle ─ r_foot

**Facing.** The heading θ of a frame is the angle about +y of the forward vector
``up × across`` with ``across = (r_hip − l_hip) + (r_shoulder − l_shoulder)`` (as HumanML3D), i.e.
``θ = atan2(across_z, −across_x)``: θ = 0 faces +z, θ = +π/2 faces +x (a left turn is θ
increasing). ``R(θ)`` rotates about +y: ``(x, z) ↦ (x cos θ + z sin θ, −x sin θ + z cos θ)``,
taking +z to the forward vector; a vector *in the facing frame* is ``R(−θ)`` of the world vector.

**Features** (Guo et al. 2022, HumanML3D-style), per frame ``f`` of ``F``, ``D = 4 + 3(J−1) + 4 = 59``:

============  ======================  ==============================================================
slice         name                    content
============  ======================  ==============================================================
``[0]``       root_angular_velocity   ``wrap(θ[f+1] − θ[f])`` to (−π, π], rad/frame
``[1:3]``     root_linear_velocity    ``R(−θ[f]) (root[f+1] − root[f])``, its (x, z), m/frame
``[3]``       root_height             ``root[f].y``, m
``[4:55]``    joint_positions         ``R(−θ[f]) (p_j[f] − root[f])`` for joints 1…J−1, (x, y, z) each, m
``[55:59]``   foot_contacts           1 when a foot joint (l_ankle, l_foot, r_ankle, r_foot) moves less
                                      than ``CONTACT_SPEED`` = 0.01 m/frame from f to f+1 (3-D) and
                                      is below ``CONTACT_HEIGHTS`` (ankle 0.12 m, toe 0.04 m), else 0
============  ======================  ==============================================================

Velocities (and contact speeds) at the last frame repeat the previous frame's (0 for a
one-frame motion). The features are invariant to the global heading and horizontal position.
``from_features`` integrates them back: θ[0] = 0, θ[f+1] = θ[f] + ω[f], root (x, z)[0] = (0, 0),
root[f+1] = root[f] + R(θ[f]) v[f], then ``p_j = root + R(θ) rel_j``; the contacts are not read.
``from_features(to_features(p)) = canonicalize(p)``: the motion translated so that its first root is at
x = z = 0 and rotated to face +z. Everything is vectorised over leading batch dimensions.
"""

from __future__ import annotations

import numpy as np

JOINTS = (
    "pelvis", "spine", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "l_knee", "l_ankle", "l_foot", "r_hip", "r_knee", "r_ankle", "r_foot",
)
NUM_JOINTS = len(JOINTS)
PARENTS = (-1, 0, 1, 2, 2, 4, 5, 2, 7, 8, 0, 10, 11, 12, 0, 14, 15, 16)
JOINT = {name: j for j, name in enumerate(JOINTS)}

REST_OFFSETS = np.array([
    [0.0, 0.95, 0.0],  # pelvis: its rest position (the root's offset from the ground origin)
    [0.0, 0.20, 0.0],  # spine
    [0.0, 0.30, 0.0],  # neck
    [0.0, 0.15, 0.0],  # head
    [0.18, -0.03, 0.0], [0.0, -0.28, 0.0], [0.0, -0.26, 0.0],  # left shoulder, elbow, wrist
    [-0.18, -0.03, 0.0], [0.0, -0.28, 0.0], [0.0, -0.26, 0.0],  # right shoulder, elbow, wrist
    [0.09, -0.05, 0.0], [0.0, -0.42, 0.0], [0.0, -0.40, 0.0], [0.0, -0.08, 0.14],  # left hip … toe
    [-0.09, -0.05, 0.0], [0.0, -0.42, 0.0], [0.0, -0.40, 0.0], [0.0, -0.08, 0.14],  # right hip … toe
], dtype=np.float32)
"""Offset of each joint from its parent in the rest pose ``[J, 3]`` (the root's: from the origin)."""

BONE_LENGTHS = np.concatenate([[0.0], np.linalg.norm(REST_OFFSETS[1:], axis=-1)]).astype(np.float32)
"""Length of the bone ending at each joint ``[J]``, ``|REST_OFFSETS[j]|`` (0 for the root)."""

FPS = 20
ROOT = 0
FOOT_JOINTS = (JOINT["l_ankle"], JOINT["l_foot"], JOINT["r_ankle"], JOINT["r_foot"])
CONTACT_SPEED = 0.01
"""A foot joint moving less than this (m/frame, 0.2 m/s) may be in contact."""
CONTACT_HEIGHTS = np.array([0.12, 0.04, 0.12, 0.04], dtype=np.float32)
"""Height below which each foot joint (l_ankle, l_foot, r_ankle, r_foot) may be in contact, m."""


def rest_pose() -> np.ndarray:
    """Joint positions of the rest pose ``[J, 3]``: ``p_j = p_parent(j) + REST_OFFSETS[j]``."""
    pos = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    for j, parent in enumerate(PARENTS):
        pos[j] = REST_OFFSETS[j] + (pos[parent] if parent >= 0 else 0.0)
    return pos


REST_POSE = rest_pose()


def feature_dim(joints: int = NUM_JOINTS) -> int:
    """D = 4 + 3·(J − 1) + 4."""
    return 4 + 3 * (joints - 1) + 4


FEATURE_DIM = feature_dim()
FEATURE_SLICES = {
    "root_angular_velocity": slice(0, 1),
    "root_linear_velocity": slice(1, 3),
    "root_height": slice(3, 4),
    "joint_positions": slice(4, 4 + 3 * (NUM_JOINTS - 1)),
    "foot_contacts": slice(FEATURE_DIM - 4, FEATURE_DIM),
}


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """The angle wrapped to (−π, π]: ``π − (π − a) mod 2π``."""
    return np.pi - np.mod(np.pi - angle, 2 * np.pi)


def facing_angles(positions: np.ndarray) -> np.ndarray:
    """Heading θ ``[...]`` of joint positions ``[..., J, 3]``: ``atan2(across_z, −across_x)`` with
    ``across = (r_hip − l_hip) + (r_shoulder − l_shoulder)`` (0 for a degenerate across-vector)."""
    across = (positions[..., JOINT["r_hip"], :] - positions[..., JOINT["l_hip"], :]
              + positions[..., JOINT["r_shoulder"], :] - positions[..., JOINT["l_shoulder"], :])
    return np.arctan2(across[..., 2], -across[..., 0])


def rotate_y(vectors: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``R(θ) v`` for vectors ``[..., 3]`` and angles broadcastable to ``[...]``:
    ``(x cos θ + z sin θ, y, −x sin θ + z cos θ)``."""
    c, s = np.cos(theta), np.sin(theta)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([x * c + z * s, np.broadcast_to(y, (x * c).shape), -x * s + z * c], axis=-1)


def rotate_xz(vectors: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``R(θ)`` on horizontal vectors ``[..., 2]`` given as (x, z)."""
    c, s = np.cos(theta), np.sin(theta)
    x, z = vectors[..., 0], vectors[..., 1]
    return np.stack([x * c + z * s, -x * s + z * c], axis=-1)


def _forward_difference(values: np.ndarray, axis: int) -> np.ndarray:
    """``v[f+1] − v[f]`` along ``axis`` (the frame axis), the last frame repeating the previous one
    (zeros for a single frame)."""
    values = np.moveaxis(values, axis, 0)
    if len(values) < 2:
        return np.moveaxis(np.zeros_like(values), 0, axis)
    diff = values[1:] - values[:-1]
    return np.moveaxis(np.concatenate([diff, diff[-1:]], axis=0), 0, axis)


def foot_contacts(positions: np.ndarray) -> np.ndarray:
    """Contacts ``[..., F, 4]`` in {0, 1} of the foot joints of positions ``[..., F, J, 3]``:
    ``|p[f+1] − p[f]| < CONTACT_SPEED`` and ``p[f].y < CONTACT_HEIGHTS``."""
    feet = positions[..., list(FOOT_JOINTS), :]
    speed = np.linalg.norm(_forward_difference(feet, axis=-3), axis=-1)
    return ((speed < CONTACT_SPEED) & (feet[..., 1] < CONTACT_HEIGHTS)).astype(np.float32)


def to_features(positions: np.ndarray) -> np.ndarray:
    """Joint positions ``[..., F, J, 3]`` → features ``[..., F, D]`` (float32; the layout is the
    module docstring's table)."""
    p = np.asarray(positions, dtype=np.float64)
    theta = facing_angles(p)  # [..., F]
    root = p[..., ROOT, :]  # [..., F, 3]
    omega = wrap_angle(_forward_difference(theta, axis=-1))
    velocity = rotate_xz(_forward_difference(root[..., [0, 2]], axis=-2), -theta)
    relative = rotate_y(p[..., 1:, :] - root[..., None, :], -theta[..., None])  # [..., F, J-1, 3]
    parts = [omega[..., None], velocity, root[..., 1:2],
             relative.reshape(*relative.shape[:-2], -1), foot_contacts(p)]
    return np.concatenate(parts, axis=-1).astype(np.float32)


def from_features(features: np.ndarray) -> np.ndarray:
    """Features ``[..., F, D]`` → joint positions ``[..., F, J, 3]`` (float32), integrating the root
    from the origin facing +z: ``θ = [0, cumsum(ω)[:-1]]``, ``root_xz = [0, cumsum(R(θ) v)[:-1]]``."""
    x = np.asarray(features, dtype=np.float64)
    joints = (x.shape[-1] - 8) // 3 + 1
    if feature_dim(joints) != x.shape[-1]:
        raise ValueError(f"features have {x.shape[-1]} channels, not 4 + 3·(J−1) + 4")
    omega, velocity, height = x[..., 0], x[..., 1:3], x[..., 3]
    theta = np.cumsum(omega, axis=-1) - omega  # θ[f] = Σ_{g<f} ω[g]
    step = rotate_xz(velocity, theta)
    root_xz = np.cumsum(step, axis=-2) - step
    root = np.stack([root_xz[..., 0], height, root_xz[..., 1]], axis=-1)  # [..., F, 3]
    relative = x[..., 4 : 4 + 3 * (joints - 1)].reshape(*x.shape[:-1], joints - 1, 3)
    others = rotate_y(relative, theta[..., None]) + root[..., None, :]
    return np.concatenate([root[..., None, :], others], axis=-2).astype(np.float32)


def canonicalize(positions: np.ndarray) -> np.ndarray:
    """Positions ``[..., F, J, 3]`` translated so that the first frame's root is at x = z = 0 and
    rotated about y so that its heading is 0 (facing +z): ``R(−θ[0]) (p − (root[0].x, 0, root[0].z))``."""
    p = np.asarray(positions, dtype=np.float64)
    theta0 = facing_angles(p[..., 0, :, :])  # [...]
    origin = p[..., 0, ROOT, :].copy()
    origin[..., 1] = 0.0
    shifted = p - origin[..., None, None, :]
    return rotate_y(shifted, -theta0[..., None, None]).astype(np.float32)

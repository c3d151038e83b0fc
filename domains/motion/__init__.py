"""The motion domain: text-to-motion diffusion on procedural human motions with a hidden kinematic oracle."""

from domains.motion.domain import MotionDomain

__all__ = ["MotionDomain"]

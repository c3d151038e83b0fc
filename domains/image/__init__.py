"""The image domain: text-to-image diffusion on compositional scenes with a hidden scene oracle."""

from domains.image.domain import ImageDomain

__all__ = ["ImageDomain"]

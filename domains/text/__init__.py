"""Text domain: a small causal LM on procedural instructions, with a programmatic oracle."""

from domains.text.domain import TextConfig, TextDomain

__all__ = ["TextConfig", "TextDomain"]

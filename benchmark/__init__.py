"""prefbench: one preference-optimisation interface, every algorithm on every domain."""

__version__ = "0.1.0"

"""Domains: each a package that implements :class:`benchmark.domain.Domain`."""

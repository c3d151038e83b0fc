"""Algorithms: one file each, importing only :mod:`benchmark`."""

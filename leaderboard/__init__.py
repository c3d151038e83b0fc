"""Leaderboards: aggregate stored cells into tables, plots and a static page."""

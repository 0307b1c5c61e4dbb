"""Shared task bases, objectives and metrics: what several problem families use."""

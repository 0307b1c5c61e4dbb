"""Diffusion Probabilistic Fields: the field task, its sources and its feature network."""

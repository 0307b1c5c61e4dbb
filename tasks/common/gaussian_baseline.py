"""The generative baseline of the DPF and GAUDI tables: draws from a Gaussian fitted to the data.

A model that cannot beat N(mean, covariance) of its training set has learned nothing beyond
second moments; both the field and the latent-prior reproductions score it beside their model.
"""
from __future__ import annotations

import numpy as np


def fitted_gaussian_draws(data: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` draws from N(mean, sample covariance) of the rows of `data` (n, d), float64.

    mean + z (X - mean) / sqrt(n - 1) with z ~ N(0, I_n) has exactly the sample covariance,
    without forming the d x d matrix (d is 4,096 voxels for 16^3 occupancy)."""
    flat = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    mean = flat.mean(0)
    return mean + rng.standard_normal((count, len(flat))) @ (flat - mean) / np.sqrt(len(flat) - 1)

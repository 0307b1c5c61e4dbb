"""Intrinsic coordinates of a sampled manifold (MDF, Elhag et al. 2023): the lowest eigenvectors
of a k-nearest-neighbour graph Laplacian, made comparable across samplings of the manifold.

Eigenvectors are defined only up to sign, and up to a rotation inside each group of equal
eigenvalues; `align_basis` fixes both by an orthogonal Procrustes fit to a reference sampling.
"""
from __future__ import annotations

import numpy as np


def knn_laplacian(points: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """L = D - W for a symmetric kNN graph with heat-kernel weights exp(-d^2 / sigma^2),
    sigma^2 = the mean squared neighbour distance (dense; fine for a few thousand points)."""
    points = np.asarray(points, dtype=np.float64)
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(squared, axis=1)[:, 1:neighbours + 1]
    rows = np.repeat(np.arange(len(points)), neighbours)
    distances = squared[rows, nearest.ravel()]
    weights = np.zeros_like(squared)
    weights[rows, nearest.ravel()] = np.exp(-distances / distances.mean())
    weights = np.maximum(weights, weights.T)
    return np.diag(weights.sum(1)) - weights


def laplacian_eigenvectors(points: np.ndarray, count: int, neighbours: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The `count` smallest eigenvalues and their eigenvectors scaled to unit RMS (N, count),
    so their values do not shrink as the sampling gets denser."""
    values, vectors = np.linalg.eigh(knn_laplacian(points, neighbours))
    return values[:count], vectors[:, :count] * np.sqrt(len(points))


def nearest_indices(points: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For every point, the index of the nearest reference point."""
    out = [np.argmin(((points[i:i + chunk, None] - reference[None]) ** 2).sum(-1), axis=1)
           for i in range(0, len(points), chunk)]
    return np.concatenate(out)


def align_basis(vectors: np.ndarray, points: np.ndarray, reference_vectors: np.ndarray,
                reference_points: np.ndarray) -> np.ndarray:
    """Rotate `vectors` (N, k) by the orthogonal R minimising |vectors R - ref(points)|, where
    ref(points) reads the reference eigenvectors at each point's nearest reference point.
    This fixes signs and the basis inside degenerate eigenvalue groups."""
    target = reference_vectors[nearest_indices(points, reference_points)]
    u, _, vt = np.linalg.svd(vectors.T @ target)
    return vectors @ (u @ vt)

"""Sample-quality metrics for generative models that need no Inception network: KID and k-NN
precision/recall in any feature space, coverage and MMD under the Chamfer distance for point
sets, and the nearest-training-sample distance that exposes memorisation.

All take numpy arrays and return floats; the feature space is the caller's choice.
"""
from __future__ import annotations

import numpy as np
import torch


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et
    al. 2018); 0 in expectation when both sets come from one law."""
    x, y = _tensor(real), _tensor(fake)
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    m, n = len(x), len(y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    distances = torch.cdist(x, x)
    return distances.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al. (2019): precision = share of fake points inside some real point's
    k-NN ball; recall = share of real points inside some fake point's k-NN ball."""
    x, y = _tensor(real), _tensor(fake)
    real_radius, fake_radius = _kth_neighbour_radius(x, k), _kth_neighbour_radius(y, k)
    cross = torch.cdist(y, x)  # (fake, real)
    precision = (cross <= real_radius[None, :]).any(dim=1).double().mean()
    recall = (cross.T <= fake_radius[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


def chamfer_distances(first: list[np.ndarray], second: list[np.ndarray], *, empty: float = 8.0) -> np.ndarray:
    """(len(first), len(second)) Chamfer distances: mean squared distance from each point to the
    other set, summed over both directions. Pairs involving an empty set get `empty`, more than
    any two sets inside the unit cube can be apart (2 * 12)."""
    out = np.full((len(first), len(second)), empty, dtype=np.float64)
    second_t = [_tensor(b) for b in second]
    for i, a in enumerate(first):
        if len(a) == 0:
            continue
        a_t = _tensor(a)
        for j, b_t in enumerate(second_t):
            if len(b_t) == 0:
                continue
            squared = torch.cdist(a_t, b_t) ** 2
            out[i, j] = float(squared.min(dim=1).values.mean() + squared.min(dim=0).values.mean())
    return out


def coverage_and_mmd(generated: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float]:
    """COV: share of reference sets that are the nearest reference of some generated set;
    MMD: mean over reference sets of the distance to their nearest generated set (Achlioptas et al.)."""
    distances = chamfer_distances(generated, reference)
    covered = np.unique(distances.argmin(axis=1))
    return len(covered) / len(reference), float(distances.min(axis=0).mean())


def subsample_points(sets: list[np.ndarray], most: int, seed: int = 0) -> list[np.ndarray]:
    """At most `most` points of each set, chosen by a fixed generator (Chamfer costs grow as n^2)."""
    rng = np.random.default_rng(seed)
    return [s if len(s) <= most else s[rng.choice(len(s), most, replace=False)] for s in sets]


def nearest_distance(queries: np.ndarray, pool: np.ndarray, chunk: int = 256) -> np.ndarray:
    """For each query (n, ...) the RMS distance to its nearest neighbour in `pool` (m, ...)."""
    q = _tensor(queries).reshape(len(queries), -1)
    p = _tensor(pool).reshape(len(pool), -1)
    best = [torch.cdist(q[i:i + chunk], p).min(dim=1).values for i in range(0, len(q), chunk)]
    return (torch.cat(best) / np.sqrt(q.shape[1])).numpy()


def class_histogram_distance(predicted: np.ndarray, reference: np.ndarray, num_classes: int) -> float:
    """Total-variation distance between the class histograms of two label arrays (0 = same mix)."""
    a = np.bincount(predicted, minlength=num_classes) / max(len(predicted), 1)
    b = np.bincount(reference, minlength=num_classes) / max(len(reference), 1)
    return float(0.5 * np.abs(a - b).sum())

"""A heat map of ACT ponder steps over the positions of a few examples, for TensorBoard.

It shows where an adaptive model spends its computation: one row per example, one cell per
position, coloured by the number of updates, annotated with the token and framed where the
task marks a position as important (the C-PVR pointer chain). Rendered to pixels with Agg, so
the task returns a plain `summaries.Image` on any rank.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from engine import summaries


def ponder_heatmap(steps: np.ndarray, tokens: np.ndarray, row_labels: Sequence[str],
                   highlights: Sequence[Sequence[int]] = (), max_steps: float | None = None) -> summaries.Image:
    """steps (n, P) updates per position; tokens (n, T) with T = P or P - 1 (a leading CLS column).

    `highlights[i]` are token indices (0-based, without CLS) to frame in row i.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Rectangle

    steps = np.asarray(steps, dtype=np.float32)
    tokens = np.asarray(tokens)
    n, width = steps.shape
    offset = width - tokens.shape[1]  # 1 when the model prepends a CLS token
    figure, axis = plt.subplots(figsize=(0.32 * width + 1.8, 0.42 * n + 1.0), dpi=90)
    image = axis.imshow(steps, cmap="viridis", vmin=0, vmax=max_steps or max(float(steps.max()), 1.0),
                        aspect="auto")
    for row in range(n):
        for col in range(width):
            text = "C" if col < offset else str(int(tokens[row, col - offset]))
            axis.text(col, row, text, ha="center", va="center", fontsize=6,
                      color="white" if steps[row, col] < 0.6 * (max_steps or steps.max()) else "black")
        for position in (highlights[row] if row < len(highlights) else ()):
            axis.add_patch(Rectangle((position + offset - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
    axis.set_yticks(range(n), list(row_labels), fontsize=7)
    axis.set_xticks(range(width), (["CLS"] if offset else []) + [str(i) for i in range(width - offset)], fontsize=6)
    axis.set_xlabel("position (red: pointer chain)" if highlights else "position", fontsize=7)
    figure.colorbar(image, ax=axis, label="ponder steps")
    figure.tight_layout()
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return summaries.Image(pixels)

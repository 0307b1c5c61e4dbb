"""The Pathfinder generator: dashed curves ("snakes" of short paddles) with two circle markers.

A port of the growth rules of Linsley et al.'s `snakes2.py`, the generator of LRA's data: two
target curves start `seed_distance` apart and grow paddle by paddle, each new paddle
`length + margin` beyond the last, its direction drawn on a circle with weight
max(cos(min(|turn| * continuity, pi / 2)), 0)^2 times the free room there; short distractor
curves follow. One marker sits at the start of a target curve, the other at the end of the
same curve (label 1) or of the other one (label 0). Drawn supersampled, saved as uint8.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from engine.errors import ConfigError

#: Bump when the drawing changes, so cached datasets are regenerated.
VERSION = 2
#: snakes2 rejects a paddle where its claimed room and the room already taken sum to this.
OVERLAP = 1.8


@dataclasses.dataclass(frozen=True)
class CurveStyle:
    """Generator parameters, in pixels of the final image (names follow snakes2's arguments)."""

    size: int
    contour_length: int            # paddles per target curve (the difficulty)
    distractor_length: int         # paddles per distractor curve
    num_distractors: int
    paddle_length: int
    paddle_thickness: float
    paddle_margins: tuple[int, ...]
    marker_radius: float
    seed_distance: int
    continuity: float
    snake_contrast: float          # distractors are drawn at this contrast ...
    paddle_contrast: float         # ... target curves at snake_contrast * paddle_contrast
    padding: int = 1
    antialias: int = 2
    max_paddle_retrial: int = 2
    max_distractor_retrial: int = 4
    max_backtracks: int = 40       # ours: paddles a target curve may take back at a dead end


#: Per resolution: paddle_length, thickness, margins, marker_radius, seed_distance, continuity,
#: snake_contrast, paddle_contrast, distractor budget (LRA's TFDS docstrings). 16 px is ours, a
#: CPU-sized Pathfinder (256 tokens) where all curves share one contrast so the markers stand out.
_RESOLUTIONS = {
    16: (2, 0.5, (1,), 1.0, 3, 1.0, 1.0, 1.0, 6),
    32: (2, 0.5, (1,), 1.5, 7, 1.0, 2.0, 0.75, 20),
    64: (5, 1.0, (1,), 2.5, 12, 1.8, 0.8, 1.0, 22),
    128: (5, 1.5, (2, 3), 3.0, 20, 1.8, 0.9, 1.0, 35),
    256: (5, 2.0, (3,), 5.0, 20, 1.8, 1.0, 1.0, 30),
}
#: Paddles per target curve: curv_baseline, curv_contour_length_9, curv_contour_length_14.
#: At 16 px the curves are shortened so that two of them and their distractors still fit.
DIFFICULTIES = {"easy": 6, "intermediate": 9, "hard": 14}
_DIFFICULTIES_16 = {"easy": 3, "intermediate": 4, "hard": 5}


def curve_style(size: int, difficulty: str = "hard") -> CurveStyle:
    """The generator settings of one resolution and difficulty. Distractor curves have
    `contour_length // 3` paddles and there are `budget // distractor_length` of them
    (snakes2's wrapper; its fractional 35 / (14 / 3) = 7.5 for Path-X becomes 7 here)."""
    if size not in _RESOLUTIONS:
        raise ConfigError(f"Pathfinder image_size must be one of {sorted(_RESOLUTIONS)}, got {size}")
    levels = _DIFFICULTIES_16 if size == 16 else DIFFICULTIES
    if difficulty not in levels:
        raise ConfigError(f"Pathfinder difficulty must be one of {sorted(levels)}, got {difficulty!r}")
    length, thickness, margins, radius, seed_distance, continuity, snake_c, paddle_c, budget = _RESOLUTIONS[size]
    contour = levels[difficulty]
    distractor = max(contour // 3, 1)
    return CurveStyle(size=size, contour_length=contour, distractor_length=distractor,
                      num_distractors=budget // distractor, paddle_length=length, paddle_thickness=thickness,
                      paddle_margins=margins, marker_radius=radius, seed_distance=seed_distance,
                      continuity=continuity, snake_contrast=snake_c, paddle_contrast=paddle_c)


@dataclasses.dataclass
class Sample:
    """One image, with what the tests check: the markers and each target curve's own ink."""

    image: np.ndarray          # (size, size) uint8
    label: int                 # 1: both markers on one curve
    markers: np.ndarray        # (2, 2) integer (row, col) of the two marker centres
    target_ink: np.ndarray     # (2, size, size) coverage of target curve 0 and 1


def _unit(angle: float) -> np.ndarray:
    return np.array([math.sin(angle), math.cos(angle)])


@functools.lru_cache(maxsize=None)
def _circle(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Bearings one pixel of arc apart on a circle of `radius` (snakes2 `get_coords_cmf`)."""
    bearings = np.arange(0, 360, 360 / (2 * math.pi * radius)) * math.pi / 180
    return np.sin(bearings), np.cos(bearings)


def _segment_distance(rows: np.ndarray, cols: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of the points (rows, cols) to the segment start-end."""
    direction = end - start
    span = float(direction @ direction) or 1.0
    t = np.clip(((rows - start[0]) * direction[0] + (cols - start[1]) * direction[1]) / span, 0.0, 1.0)
    return np.hypot(rows - start[0] - t * direction[0], cols - start[1] - t * direction[1])


@dataclasses.dataclass
class _Paddle:
    tail: np.ndarray
    head: np.ndarray
    window: tuple[slice, slice]
    claim: np.ndarray          # soft room it takes (1 inside margin + thickness / 2, fading over a pixel)
    committed: bool = False


@dataclasses.dataclass
class _Curve:
    owner: int                 # 0, 1: target curves; 2: distractors
    contrast: float
    paddles: list = dataclasses.field(default_factory=list)
    pivots: list = dataclasses.field(default_factory=list)   # where the next paddle is measured from
    angles: list = dataclasses.field(default_factory=list)


class _Canvas:
    """The room taken so far and the curves of one image under construction.

    As in snakes2, a curve's newest paddle is not yet counted as taken room, since the next
    paddle of the same curve starts right beside it; it is committed when that next one lands.
    """

    def __init__(self, style: CurveStyle, margin: int, rng: np.random.Generator) -> None:
        self.style, self.margin, self.rng = style, margin, rng
        size, pad = style.size, style.padding
        self.border = np.zeros((size, size))
        self.border[:pad], self.border[-pad:], self.border[:, :pad], self.border[:, -pad:] = 1.0, 1.0, 1.0, 1.0
        self.occupied = self.border.copy()
        self.curves: list[_Curve] = []
        offsets = np.arange(-margin, margin + 1)
        y, x = np.meshgrid(offsets, offsets, indexing="ij")
        keep = y ** 2 + x ** 2 <= margin ** 2
        self.disk = np.stack([y[keep], x[keep]], 1)  # the neighbourhood a paddle head must keep free

    # --- room -----------------------------------------------------------------------------
    def paddle(self, tail: np.ndarray, head: np.ndarray) -> _Paddle:
        reach = self.margin + self.style.paddle_thickness / 2
        size = self.style.size
        r0 = max(int(math.floor(min(tail[0], head[0]) - reach - 1)), 0)
        c0 = max(int(math.floor(min(tail[1], head[1]) - reach - 1)), 0)
        r1 = min(int(math.ceil(max(tail[0], head[0]) + reach + 2)), size)
        c1 = min(int(math.ceil(max(tail[1], head[1]) + reach + 2)), size)
        rows, cols = np.ogrid[r0:r1, c0:c1]
        claim = np.clip(reach + 0.5 - _segment_distance(rows, cols, tail, head), 0.0, 1.0)
        return _Paddle(tail, head, (slice(r0, r1), slice(c0, c1)), claim)

    def view(self, growing: _Curve | None) -> np.ndarray:
        """Taken room as seen by `growing`: everything but its own newest paddle."""
        view = self.occupied.copy()
        for curve in self.curves:
            last = curve.paddles[-1] if curve.paddles else None
            if curve is not growing and last is not None and not last.committed:
                np.maximum(view[last.window], last.claim, out=view[last.window])
        return view

    def commit(self, paddle: _Paddle) -> None:
        if not paddle.committed:
            paddle.committed = True
            np.maximum(self.occupied[paddle.window], paddle.claim, out=self.occupied[paddle.window])

    def fits(self, paddle: _Paddle, view: np.ndarray) -> bool:
        return bool((view[paddle.window] + paddle.claim).max() < OVERLAP)

    def recount(self) -> None:
        self.occupied = self.border.copy()
        for curve in self.curves:
            for paddle in curve.paddles:
                if paddle.committed:
                    np.maximum(self.occupied[paddle.window], paddle.claim, out=self.occupied[paddle.window])

    def inside(self, point: np.ndarray) -> bool:
        return 0 <= point[0] <= self.style.size - 1 and 0 <= point[1] <= self.style.size - 1

    # --- growth ---------------------------------------------------------------------------
    def seed(self, curve: _Curve, band: int, near: np.ndarray | None = None) -> bool:
        """The first paddle: its tail on a free pixel at least `band` from the borders, or
        `seed_distance` from `near` in a random bearing (the second target curve)."""
        style, rng, view = self.style, self.rng, self.view(None)
        allowed = view < 0.3  # snakes2 counts a pixel as taken from 0.3 of its room
        if band > 0:
            allowed[:band], allowed[-band:], allowed[:, :band], allowed[:, -band:] = False, False, False, False
        candidates = np.argwhere(allowed)
        if near is None and (len(candidates) == 0 or allowed.mean() < 0.01):
            return False
        for _ in range(style.max_paddle_retrial + 1):
            if near is None:
                tail = candidates[rng.integers(len(candidates))].astype(float)
            else:
                tail = np.round(near + style.seed_distance * _unit(int(rng.integers(0, 360)) * math.pi / 180))
            angle = int(rng.integers(-180, 180)) * math.pi / 180
            head = tail + style.paddle_length * _unit(angle)
            pivot = tail - self.margin * _unit(angle)
            if not (self.inside(tail) and self.inside(head) and self.inside(pivot)):
                continue
            paddle = self.paddle(tail, head)
            if self.fits(paddle, view):
                curve.paddles.append(paddle)
                curve.pivots.append(pivot)
                curve.angles.append(angle)
                self.curves.append(curve)
                return True
        return False

    def extend(self, curve: _Curve) -> bool:
        """The next paddle of `curve` (snakes2 `extend_snake`); False at a dead end."""
        style, rng, margin, size = self.style, self.rng, self.margin, self.style.size
        length, angle = style.paddle_length, curve.angles[-1]
        radius = length + margin
        centre = curve.pivots[-1] + (length + 2 * margin) * _unit(angle)
        sines, cosines = _circle(radius)
        rows, cols = centre[0] + radius * sines, centre[1] + radius * cosines
        keep = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        if not keep.any():
            return False
        codes = np.unique(rows[keep].astype(int) * size + cols[keep].astype(int))
        head_rows, head_cols = codes // size, codes % size
        directions = np.arctan2(head_rows - centre[0], head_cols - centre[1])
        turn = np.abs(directions - angle)
        turn = np.minimum(np.minimum(turn, 2 * math.pi - turn) * style.continuity, math.pi / 2)
        view = self.view(curve)
        near_rows = (head_rows[:, None] + self.disk[None, :, 0]).clip(0, size - 1)
        near_cols = (head_cols[:, None] + self.disk[None, :, 1]).clip(0, size - 1)
        free = np.maximum(1.0 - view[near_rows, near_cols].max(axis=1), 0.0)
        cumulative = np.cumsum(np.maximum(np.cos(turn), 0) ** 2 * free)
        if cumulative[-1] < 1e-4:
            return False
        for _ in range(style.max_paddle_retrial + 1):
            pick = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")),
                       len(codes) - 1)
            head = np.array([float(head_rows[pick]), float(head_cols[pick])])
            paddle = self.paddle(head - length * _unit(float(directions[pick])), head)
            if self.fits(paddle, view):
                self.commit(curve.paddles[-1])
                curve.paddles.append(paddle)
                curve.pivots.append(centre)
                curve.angles.append(float(directions[pick]))
                return True
        return False

    def retract(self, curve: _Curve) -> None:
        """Take back the newest paddle of `curve`; the one before becomes its newest again."""
        for history in (curve.paddles, curve.pivots, curve.angles):
            history.pop()
        curve.paddles[-1].committed = False
        self.recount()

    def remove(self, curve: _Curve) -> None:
        if curve in self.curves:
            self.curves.remove(curve)
            self.recount()

    def finish(self, curve: _Curve) -> None:
        self.commit(curve.paddles[-1])


def _two_targets(canvas: _Canvas) -> list[_Curve] | None:
    """Two curves of `contour_length` paddles starting `seed_distance` apart, grown in turns
    (snakes2 `two_snakes`). Where snakes2 restarts the image at any dead end, a curve here may
    first take back up to `max_backtracks` paddles and try again; None means start again."""
    style = canvas.style
    contrast = style.snake_contrast * style.paddle_contrast
    curves = [_Curve(0, contrast), _Curve(1, contrast)]
    if not canvas.seed(curves[0], 2 * style.seed_distance):
        return None
    if not canvas.seed(curves[1], 0, near=curves[0].paddles[0].tail):
        return None
    backtracks = 0
    while any(len(c.paddles) < style.contour_length for c in curves):
        for curve in curves:
            if len(curve.paddles) < style.contour_length and not canvas.extend(curve):
                if len(curve.paddles) < 2 or backtracks >= style.max_backtracks:
                    return None
                canvas.retract(curve)
                backtracks += 1
    for curve in curves:
        canvas.finish(curve)
    return curves


def _distractor(canvas: _Canvas) -> bool:
    """A short distractor curve (snakes2 `make_snake`); on failure nothing of it is kept."""
    style = canvas.style
    curve = _Curve(2, style.snake_contrast)
    if not canvas.seed(curve, style.padding):
        return False
    for _ in range(style.distractor_length - 1):
        if not canvas.extend(curve):
            canvas.remove(curve)
            return False
    canvas.finish(curve)
    return True


def _render(style: CurveStyle, curves: list[_Curve], markers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled drawing: (image in [0, 1] before rescaling, (2, H, W) ink of each target curve).

    Coverage is measured on a grid `2 * antialias` times finer than the image (snakes2 draws
    at `antialias` and resizes with a Lanczos filter), so a 0.5-pixel paddle covers half a pixel.
    """
    scale, size = 2 * style.antialias, style.size
    fine = size * scale
    ink = np.zeros((3, fine, fine))  # target curve 0, target curve 1, distractors
    half_width = style.paddle_thickness / 2

    def window(start: np.ndarray, end: np.ndarray, reach: float):
        lo = np.floor((np.minimum(start, end) - reach + 0.5) * scale).astype(int).clip(0, fine)
        hi = np.ceil((np.maximum(start, end) + reach + 0.5) * scale).astype(int).clip(0, fine)
        rows, cols = np.ogrid[lo[0]:hi[0], lo[1]:hi[1]]
        # Sub-pixel centres in image coordinates (pixel centres sit on integers).
        return (slice(lo[0], hi[0]), slice(lo[1], hi[1])), (rows + 0.5) / scale - 0.5, (cols + 0.5) / scale - 0.5

    for curve in curves:
        for paddle in curve.paddles:
            where, rows, cols = window(paddle.tail, paddle.head, half_width)
            inside = _segment_distance(rows, cols, paddle.tail, paddle.head) < half_width
            layer = ink[min(curve.owner, 2)][where]
            np.maximum(layer, inside * curve.contrast, out=layer)
    marks = np.zeros((fine, fine))
    for centre in markers.astype(float):
        where, rows, cols = window(centre, centre, style.marker_radius)
        np.maximum(marks[where], np.hypot(rows - centre[0], cols - centre[1]) <= style.marker_radius,
                   out=marks[where])

    def coarse(a: np.ndarray) -> np.ndarray:
        return a.reshape(*a.shape[:-2], size, scale, size, scale).mean(axis=(-3, -1))

    ink = coarse(ink)
    return np.maximum(ink.max(axis=0), coarse(marks)), ink[:2]


def sample(style: CurveStyle, rng: np.random.Generator, label: int | None = None) -> Sample:
    """One Pathfinder image; the label is a fair coin (as in snakes2) unless given."""
    label = int(rng.integers(0, 2)) if label is None else int(label)
    margin = int(style.paddle_margins[rng.integers(len(style.paddle_margins))])
    for _ in range(10_000):
        canvas = _Canvas(style, margin, rng)
        targets = _two_targets(canvas)
        if targets is not None:
            break
    else:  # pragma: no cover - every style above succeeds within a few tries
        raise RuntimeError(f"could not place two target curves with {style}")
    for _ in range(style.num_distractors):
        for _ in range(style.max_distractor_retrial + 1):
            if _distractor(canvas):
                break
    first = int(rng.integers(0, 2))
    second = first if label == 1 else 1 - first
    markers = np.stack([targets[first].paddles[0].tail, targets[second].paddles[-1].head]).astype(int)
    image, target_ink = _render(style, canvas.curves, markers)
    pixels = np.round(255 * image / max(image.max(), 1e-6)).astype(np.uint8)  # snakes2 saves rescaled to 0..255
    return Sample(image=pixels, label=label, markers=markers, target_ink=target_ink)


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index`: images are independent, so any worker can draw any one."""
    return np.random.default_rng([seed, 0x9A7F, index])


def generate(style: CurveStyle, seed: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Images `start .. start + count - 1` of stream `seed`: (uint8 (count, size, size), labels)."""
    images = np.zeros((count, style.size, style.size), dtype=np.uint8)
    labels = np.zeros(count, dtype=np.int64)
    for offset in range(count):
        drawn = sample(style, image_rng(seed, start + offset))
        images[offset], labels[offset] = drawn.image, drawn.label
    return images, labels

"""Map Video-Depth-Anything's relative output to metric depth: the scale/shift fits, as pure functions.

Video-Depth-Anything (VDA) returns a temporally stable *relative* quantity ``r`` that behaves like
inverse depth up to an unknown scale and shift. Depth-Anything-V2 metric (DA-V2) returns metric depth
``m`` in metres per frame, without temporal stability. Both fits below map ``r`` into metric *inverse*
depth (1/metres) with an affine function and invert it:

* :class:`RollingFit` -- the original tool's rolling average, implemented exactly. For frame ``i``::

      s_i = std(1/m_i) / std(r_i)        a_i = mean(1/m_i)        b_i = mean(r_i)
      history.append((s_i, a_i, b_i))
      (s, a, b) = history[0]             if len(history) < 10
                = mean over the history  otherwise
      inverse_i = (r_i - b) * s + a      depth_i = 1 / inverse_i
      if len(history) > 100: drop the oldest entry          (after the frame was fitted)

  ``std`` is the population standard deviation (numpy's default, ``ddof=0``), means are over all
  pixels. Because the oldest entry is dropped only after fitting, the means run over up to 101
  entries. Only the scalars ``(mean, std)`` of each map are needed, so DA-V2 can run as frames are
  decoded while VDA emits its frames later (:func:`inverse_depth_stats`, :func:`relative_stats`).

* :func:`robust_scale_shift` -- one trimmed least-squares fit ``inverse = scale * r + shift`` over
  pixels sampled from frames across the whole clip, applied to every frame (``--fit global``).

:func:`inverse_to_depth` turns fitted inverse depth into metres and clamps what the packed depth
format cannot hold: non-positive, non-finite or tiny inverse depth (the original tool wrote inf or
negative metres there) becomes the far limit ``max_depth``, depth below ``min_depth`` becomes
``min_depth``; all such pixels are counted.

Units: ``r`` is unitless (VDA output), ``m`` metres, inverse depth 1/metres. Functions accept numpy
arrays or torch tensors (any device) of any shape, usually ``(H, W)``; statistics are returned as
Python floats computed in float64 (float32 on Apple MPS, which has no float64).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

__all__ = [
    "MapStats",
    "FitEntry",
    "RollingParams",
    "AffineFit",
    "ClampCounts",
    "ROLLING_MIN_HISTORY",
    "ROLLING_MAX_HISTORY",
    "MIN_METRIC_DEPTH",
    "map_stats",
    "inverse_depth_stats",
    "relative_stats",
    "fit_entry",
    "RollingFit",
    "apply_rolling",
    "apply_affine",
    "inverse_to_depth",
    "robust_scale_shift",
    "sample_grid",
]

Array = Union[np.ndarray, torch.Tensor]

#: The rolling fit uses the first entry until the history holds this many entries.
ROLLING_MIN_HISTORY: int = 10
#: The rolling fit drops its oldest entry (after fitting) when the history holds more than this.
ROLLING_MAX_HISTORY: int = 100
#: Metric depth below this (metres) is treated as this before taking ``1/m`` (DA-V2's sigmoid can
#: underflow to exactly 0 under fp16/bf16 autocast, which would make ``1/m`` infinite).
MIN_METRIC_DEPTH: float = 1e-6


@dataclass(frozen=True)
class MapStats:
    """Mean and population standard deviation (``ddof=0``) of one map, as Python floats."""

    mean: float
    std: float


@dataclass(frozen=True)
class FitEntry:
    """One history entry of the rolling fit.

    ``s`` = std(1/m) / std(r) (1/metres per unit of r), ``a`` = mean(1/m) (1/metres),
    ``b`` = mean(r) (unitless).
    """

    s: float
    a: float
    b: float


@dataclass(frozen=True)
class RollingParams:
    """Parameters applied to a frame by the rolling fit: ``inverse = (r - b) * s + a``."""

    s: float
    a: float
    b: float


@dataclass(frozen=True)
class AffineFit:
    """``inverse = scale * r + shift`` (1/metres), the form of the global fit."""

    scale: float
    shift: float


@dataclass
class ClampCounts:
    """Pixels changed by :func:`inverse_to_depth`.

    ``far``: set to ``max_depth`` (inverse depth non-positive, non-finite, or below ``1/max_depth``);
    ``nonpositive``: the part of ``far`` whose inverse depth was non-positive or non-finite
    (where the original tool wrote inf or negative metres); ``near``: raised to ``min_depth``.
    """

    far: int = 0
    nonpositive: int = 0
    near: int = 0

    def __iadd__(self, other: "ClampCounts") -> "ClampCounts":
        self.far += other.far
        self.nonpositive += other.nonpositive
        self.near += other.near
        return self


# ---------------------------------------------------------------------------------------------------
# statistics


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.device.type == "mps" else torch.float64


def map_stats(x: Array) -> MapStats:
    """Mean and population std of all elements of ``x`` (any shape), in float64.

    Example:
        >>> map_stats(np.array([1.0, 2.0, 3.0, 4.0]))
        MapStats(mean=2.5, std=1.118033988749895)
    """
    if isinstance(x, torch.Tensor):
        if x.numel() == 0:
            raise ValueError("cannot take statistics of an empty map")
        t = x.detach().to(_stat_dtype(x))
        std, mean = torch.std_mean(t, correction=0)
        return MapStats(float(mean), float(std))
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        raise ValueError("cannot take statistics of an empty map")
    return MapStats(float(a.mean()), float(a.std()))


def inverse_depth_stats(depth_m: Array, min_depth: float = MIN_METRIC_DEPTH) -> MapStats:
    """Mean and population std of ``1 / depth_m``.

    Args:
        depth_m: metric depth in metres, any shape (usually ``(H, W)``). Values below ``min_depth``
            (including 0) are raised to ``min_depth`` first so the inverse stays finite.
        min_depth: smallest depth in metres taken at face value.

    Returns:
        Statistics of the inverse depth in 1/metres.
    """
    if isinstance(depth_m, torch.Tensor):
        # One private copy, then in place: the same values as ``1.0 / t.clamp_min(min_depth)`` (torch
        # computes ``1.0 / t`` as ``t.reciprocal() * 1.0``).
        t = depth_m.detach().to(_stat_dtype(depth_m), copy=True)
        return map_stats(t.clamp_min_(min_depth).reciprocal_())
    a = np.asarray(depth_m, dtype=np.float64)
    return map_stats(1.0 / np.maximum(a, min_depth))


def relative_stats(r: Array) -> MapStats:
    """Mean and population std of a VDA output map ``r`` (any shape, unitless)."""
    return map_stats(r)


def fit_entry(metric: MapStats, relative: MapStats) -> FitEntry | None:
    """The rolling fit's history entry ``(s_i, a_i, b_i)`` of one frame.

    Args:
        metric: :func:`inverse_depth_stats` of the frame's DA-V2 depth (1/metres).
        relative: :func:`relative_stats` of the frame's VDA output.

    Returns:
        ``FitEntry(s=metric.std / relative.std, a=metric.mean, b=relative.mean)``, or ``None`` when
        the VDA output is constant (std 0) or any statistic is not finite: such a frame carries no
        information about the scale and must not enter the history.
    """
    values = (metric.mean, metric.std, relative.mean, relative.std)
    if not all(math.isfinite(v) for v in values) or relative.std <= 0.0:
        return None
    return FitEntry(s=metric.std / relative.std, a=metric.mean, b=relative.mean)


class RollingFit:
    """The original tool's rolling-average fit (see the module docstring for the exact rule).

    Use :meth:`update` for a frame with a DA-V2 result; it appends the entry, returns the parameters
    for that frame and then trims the history. Frames without a DA-V2 result (``--metric_every N``,
    or a frame with constant VDA output) use :attr:`params`: the parameters returned by the most
    recent :meth:`update`, unchanged.

    Example (hand-checkable): the first 9 updates return the first entry's values, the 10th the
    mean of 10 entries.

        >>> fit = RollingFit()
        >>> [fit.update(FitEntry(s=float(i), a=1.0, b=0.0)).s for i in range(1, 11)][-2:]
        [1.0, 5.5]
    """

    def __init__(self, min_history: int = ROLLING_MIN_HISTORY, max_history: int = ROLLING_MAX_HISTORY) -> None:
        if min_history < 1 or max_history < 1:
            raise ValueError("min_history and max_history must be >= 1")
        self.min_history = int(min_history)
        self.max_history = int(max_history)
        self.history: deque[FitEntry] = deque()
        self._params: RollingParams | None = None

    @property
    def params(self) -> RollingParams | None:
        """Parameters of the most recent :meth:`update` (``None`` before the first)."""
        return self._params

    def update(self, entry: FitEntry) -> RollingParams:
        """Append ``entry``, return the parameters for its frame, then drop the oldest entry if the
        history holds more than ``max_history`` entries."""
        self.history.append(entry)
        if len(self.history) < self.min_history:
            first = self.history[0]
            params = RollingParams(first.s, first.a, first.b)
        else:
            n = len(self.history)
            params = RollingParams(
                s=math.fsum(e.s for e in self.history) / n,
                a=math.fsum(e.a for e in self.history) / n,
                b=math.fsum(e.b for e in self.history) / n,
            )
        if len(self.history) > self.max_history:
            self.history.popleft()
        self._params = params
        return params

    def fit_frame(self, metric: MapStats | None, relative: MapStats) -> RollingParams:
        """Parameters for one frame, given what is known about it.

        * ``metric`` given and :func:`fit_entry` valid: :meth:`update` with that entry.
        * otherwise (no DA-V2 result for this frame, or a constant VDA map): the current
          :attr:`params`, unchanged. If there are none yet (the very first frame is degenerate),
          ``RollingParams(s=0, a=metric.mean, b=relative.mean)``: a flat depth of ``1/mean(1/m)``.

        Raises:
            ValueError: no parameters yet and no ``metric`` statistics to start from.
        """
        entry = fit_entry(metric, relative) if metric is not None else None
        if entry is not None:
            return self.update(entry)
        if self._params is not None:
            return self._params
        if metric is None or not (math.isfinite(metric.mean) and math.isfinite(relative.mean)):
            raise ValueError("the rolling fit needs DA-V2 statistics on its first frame")
        return RollingParams(s=0.0, a=metric.mean, b=relative.mean)


# ---------------------------------------------------------------------------------------------------
# applying a fit


def apply_rolling(r: Array, params: RollingParams) -> Array:
    """Inverse depth (1/metres) ``(r - b) * s + a`` of a VDA output map ``r`` (any shape)."""
    if isinstance(r, torch.Tensor):  # one new tensor, the same arithmetic
        return r.sub(params.b).mul_(params.s).add_(params.a)
    return (r - params.b) * params.s + params.a


def apply_affine(r: Array, fit: AffineFit) -> Array:
    """Inverse depth (1/metres) ``scale * r + shift`` of a VDA output map ``r`` (any shape)."""
    if isinstance(r, torch.Tensor):  # one new tensor, the same arithmetic
        return r.mul(fit.scale).add_(fit.shift)
    return r * fit.scale + fit.shift


def inverse_to_depth(inverse: Array, max_depth: float, min_depth: float) -> tuple[Array, ClampCounts]:
    """Metric depth ``1 / inverse`` clamped to ``[min_depth, max_depth]``, with counts.

    Args:
        inverse: fitted inverse depth in 1/metres, any shape, numpy or torch (float32 or float64).
        max_depth: far limit in metres (> 0): non-finite, non-positive or tiny inverse depth
            (``inverse < 1 / max_depth``) maps to it.
        min_depth: near limit in metres (``0 < min_depth < max_depth``): depth below it maps to it,
            so that every written pixel is strictly positive.

    Returns:
        ``(depth, counts)``: depth in metres, same type, shape and device as ``inverse`` (float32
        for float16/bfloat16 input), and the :class:`ClampCounts`.

    Example:
        >>> d, c = inverse_to_depth(np.array([-1.0, 0.0, 0.1, 0.5, 1e9]), max_depth=6.0, min_depth=0.01)
        >>> d.tolist(), (c.far, c.nonpositive, c.near)
        ([6.0, 6.0, 6.0, 2.0, 0.01], (3, 2, 1))
    """
    if not (0 < min_depth < max_depth):
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    if isinstance(inverse, torch.Tensor):
        inv = inverse if inverse.dtype in (torch.float32, torch.float64) else inverse.float()
        # Masks and one depth tensor updated in place, the same values as
        # ``depth = 1.0 / where(far, 1, inv)`` (torch divides a number by a tensor as ``reciprocal() * 1.0``)
        # then ``where(far, max_depth, ...)``, ``where(near, min_depth, ...)``: the far pixels' reciprocals
        # are never used (``near`` excludes them, and they are overwritten with ``max_depth``), and on the
        # others (finite, positive) ``where(depth < min_depth, min_depth, depth)`` is ``clamp_min``.
        nonpos = torch.isfinite(inv).logical_not_().logical_or_(inv <= 0)
        far = (inv < 1.0 / max_depth).logical_or_(nonpos)
        depth = inv.reciprocal()
        near = (depth < min_depth).logical_and_(far.logical_not())
        depth.clamp_min_(min_depth).masked_fill_(far, max_depth)
        counts = torch.stack([torch.count_nonzero(m) for m in (far, nonpos, near)]).tolist()
        return depth, ClampCounts(far=int(counts[0]), nonpositive=int(counts[1]), near=int(counts[2]))
    inv = np.asarray(inverse)
    if inv.dtype not in (np.float32, np.float64):
        inv = inv.astype(np.float32)
    with np.errstate(invalid="ignore"):
        nonpos = ~np.isfinite(inv) | (inv <= 0)
        far = nonpos | (inv < 1.0 / max_depth)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth = 1.0 / np.where(far, np.ones_like(inv), inv)
    near = ~far & (depth < min_depth)
    depth = np.where(far, inv.dtype.type(max_depth), depth)
    depth = np.where(near, inv.dtype.type(min_depth), depth)
    return depth, ClampCounts(far=int(far.sum()), nonpositive=int(nonpos.sum()), near=int(near.sum()))


# ---------------------------------------------------------------------------------------------------
# global fit


def sample_grid(height: int, width: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of an evenly spaced grid of at most ``max_points`` pixels.

    The grid keeps the aspect ratio: a stride ``k = ceil(sqrt(H * W / max_points))`` in both
    directions, offset by ``k // 2`` so the samples sit in the middle of their cells.

    Returns:
        ``(rows, cols)``: int64 arrays of equal length ``<= max_points`` (flattened ``(H', W')`` grid).
    """
    if height <= 0 or width <= 0 or max_points <= 0:
        raise ValueError("height, width and max_points must be positive")
    k = max(1, math.ceil(math.sqrt(height * width / max_points)))
    while math.ceil(height / k) * math.ceil(width / k) > max_points:
        k += 1
    ys = np.arange(k // 2, height, k) if k // 2 < height else np.array([0])
    xs = np.arange(k // 2, width, k) if k // 2 < width else np.array([0])
    rows, cols = np.meshgrid(ys, xs, indexing="ij")
    return rows.reshape(-1).astype(np.int64), cols.reshape(-1).astype(np.int64)


def _lstsq_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Ordinary least squares ``y ~ scale * x + shift`` in float64 on centred data; None if singular."""
    mx, my = x.mean(), y.mean()
    dx = x - mx
    var = float(np.dot(dx, dx))
    if not var > 0 or not math.isfinite(var):
        return None
    scale = float(np.dot(dx, y - my)) / var
    return scale, float(my - scale * mx)


def robust_scale_shift(
    relative: np.ndarray,
    inverse_depth: np.ndarray,
    keep: float = 0.8,
    iterations: int = 10,
) -> tuple[AffineFit, np.ndarray]:
    """Trimmed least-squares fit ``inverse_depth ~ scale * relative + shift``.

    Fits ordinary least squares on all samples, then repeatedly refits on the ``keep`` fraction of
    samples with the smallest absolute residuals under the current fit, until that set stops changing
    or ``iterations`` refits were done. Outliers (sky, wrong DA-V2 pixels, VDA zeros) therefore do not
    pull the fit as long as they are fewer than ``1 - keep`` of the samples.

    Args:
        relative: ``(P,)`` VDA output at the sampled pixels (any shape, flattened; unitless).
        inverse_depth: ``(P,)`` metric inverse depth (1/metres) at the same pixels.
        keep: fraction of samples kept by the trimming, in ``(0, 1]``.
        iterations: maximum number of trimmed refits.

    Returns:
        ``(fit, inliers)``: the :class:`AffineFit` and a boolean ``(P,)`` mask of the samples used by
        the final fit. Non-finite samples are never inliers.

    Raises:
        ValueError: fewer than 2 finite samples, or a constant ``relative`` (scale undefined).
    """
    x = np.asarray(relative, dtype=np.float64).reshape(-1)
    y = np.asarray(inverse_depth, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"relative {x.shape} and inverse_depth {y.shape} differ in size")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    valid = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(valid)
    if idx.size < 2:
        raise ValueError("the global fit needs at least 2 finite samples")
    line = _lstsq_line(x[idx], y[idx])
    if line is None:
        raise ValueError("the relative depth is constant over all sampled pixels; the scale is undefined")
    n_keep = max(2, int(math.ceil(keep * idx.size)))
    chosen = idx
    for _ in range(max(0, int(iterations))):
        if n_keep >= idx.size:
            break
        residual = np.abs(line[0] * x[idx] + line[1] - y[idx])
        best = np.sort(idx[np.argpartition(residual, n_keep - 1)[:n_keep]])
        if best.size == chosen.size and np.array_equal(best, chosen):
            break
        refit = _lstsq_line(x[best], y[best])
        if refit is None:
            break
        line, chosen = refit, best
    inliers = np.zeros(x.shape, dtype=bool)
    inliers[chosen] = True
    return AffineFit(scale=line[0], shift=line[1]), inliers

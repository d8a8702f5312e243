"""Smoothing the filled holes of a synthesised view so that they do not streak.

The stereo warp (:mod:`mvda.ops.stereo_warp`) fills each run of hole pixels on a row with the
background pixel next to the run. Neighbouring rows copy different pixels, so a tall disocclusion
(the strip beside a foreground edge, the strip at the frame edge) turns into horizontal streaks.
:func:`smooth_vertical_runs` averages the filled colours along each column of the hole over a window
that grows with the distance from the background edge: next to the background the fill keeps the
edge's colour (it continues the picture), deep in the hole it is a vertical average of many rows'
background (a smooth surface, like a diffusion from the background side). Only filled pixels take
part, so the foreground on the other side of a hole never bleeds into it. The work is proportional
to the number of filled pixels (a sort and a prefix sum), not to the frame size.
"""

from __future__ import annotations

import torch

__all__ = ["CONE_SLOPE", "CONE_MAX_RADIUS", "smooth_vertical_runs", "cone_radius"]

#: Rows averaged above and below a filled pixel per pixel of distance from the background edge.
CONE_SLOPE = 2.0
#: Upper limit of that half-window (rows).
CONE_MAX_RADIUS = 16


def cone_radius(distance: torch.Tensor, slope: float = CONE_SLOPE, max_radius: int = CONE_MAX_RADIUS
                ) -> torch.Tensor:
    """Half-window (rows, int64) of :func:`smooth_vertical_runs` for filled pixels ``distance`` pixels
    (>= 1) from the background pixel they were filled from: ``min(max_radius, round(slope * (distance - 1)))``,
    so the pixel next to the background keeps its own colour."""
    r = torch.round((distance.to(torch.float32) - 1.0).clamp_(min=0.0) * float(slope))
    return r.clamp_(0, int(max_radius)).to(torch.int64)


def smooth_vertical_runs(values: torch.Tensor, keys: torch.Tensor, height: int, radius: torch.Tensor
                         ) -> torch.Tensor:
    """Average each filled pixel with the filled pixels above and below it in the same vertical run.

    Args:
        values: (K, C) float colours of the filled pixels.
        keys: (K,) int64 ``column_id * height + row`` of each pixel (distinct): pixels whose keys
            differ by one (and whose lower row is not 0) are vertical neighbours. ``column_id``
            numbers the columns of all the images involved.
        height: rows per column (> 0).
        radius: (K,) int64 half-window in rows of each pixel (>= 0).

    Returns:
        (K, C) float32: for each pixel, the mean of the values of the pixels of its vertical run
        (consecutive filled rows of its column) within ``radius`` rows of it.
    """
    k = keys.numel()
    if k == 0:
        return values.to(torch.float32)
    order = torch.argsort(keys)
    key = keys.index_select(0, order)
    wide = torch.float64 if keys.device.type != "mps" else torch.float32  # MPS has no float64
    val = values.index_select(0, order).to(wide)
    rad = radius.index_select(0, order)
    pos = torch.arange(k, device=keys.device)
    start = torch.ones(k, dtype=torch.bool, device=keys.device)
    start[1:] = key[1:] != key[:-1] + 1
    start |= key % int(height) == 0
    end = torch.ones_like(start)
    end[:-1] = start[1:]
    run_start = torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), dim=0).values
    run_end = torch.cummin(torch.where(end, pos, torch.full_like(pos, k - 1)).flip(0), dim=0).values.flip(0)
    lo = torch.maximum(pos - rad, run_start)
    hi = torch.minimum(pos + rad, run_end)
    csum = torch.zeros((k + 1, val.shape[1]), dtype=wide, device=val.device)
    torch.cumsum(val, dim=0, out=csum[1:])
    mean = (csum.index_select(0, hi + 1) - csum.index_select(0, lo)) / (hi - lo + 1).to(wide)[:, None]
    out = torch.empty_like(mean, dtype=torch.float32)
    out.index_copy_(0, order, mean.to(torch.float32))
    return out

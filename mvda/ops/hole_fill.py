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

:func:`background_sums`, :func:`background_field` and :func:`sample_field` give a second, coarse
estimate: the colour of the farthest surface around a place of the camera image (blocks of a few
pixels, foreground left out, blurred). The fill and this field err differently, so the warper blends
them (see ``FIELD_SHARE`` in :mod:`mvda.ops.stereo_warp`); the field costs one strided pass over the
frame and work on the coarse grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["CONE_SLOPE", "CONE_MAX_RADIUS", "smooth_vertical_runs", "cone_radius", "background_sums",
           "background_field", "sample_field"]

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


def background_sums(colour: torch.Tensor, disparity: torch.Tensor, factor: int, window: int,
                    tolerance: float, stride: int | tuple[int, int] = 1) -> torch.Tensor:
    """Per block of the camera image, the colour sum and the number of its background pixels.

    The image is cut into ``factor`` x ``factor`` blocks. A pixel counts as background when its
    disparity is at most ``tolerance`` px above the smallest disparity (the farthest surface) within
    ``window`` x ``window`` blocks around its block, so that next to a depth edge, where
    disocclusions open, the foreground's colours are left out. Only every ``stride``-th pixel of
    every ``stride``-th row takes part (``factor`` a multiple of ``stride``): a coarse estimate
    does not need them all, and this keeps the cost to a fraction of a pass over the frame.

    Args:
        colour: (C, H, W) float colours of the camera image.
        disparity: (H, W) float disparity (px, larger = nearer) of the camera image.
        factor: block size (px); window: odd number of blocks; tolerance: px (>= 0); stride: px.

    Returns:
        (C + 2, ceil(H / factor), ceil(W / factor)) float32: the sums, the counts, and the disparity
        of the farthest surface around each block.
    """
    ch = colour.shape[0]
    # One pass over the frame: the samples, contiguous (every stride-th pixel, rows and columns).
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    c = colour[:, ::sy, ::sx].to(torch.float32, copy=True, memory_format=torch.contiguous_format)
    d = disparity[::sy, ::sx].to(torch.float32, copy=True, memory_format=torch.contiguous_format)
    fy, fx = factor // sy, factor // sx            # samples per block, down and across
    h, w = d.shape
    ph, pw = (-h) % fy, (-w) % fx
    if ph or pw:                                   # repeat the last row / column up to whole blocks
        c = F.pad(c[None], (0, pw, 0, ph), mode="replicate")[0]
        d = F.pad(d[None, None], (0, pw, 0, ph), mode="replicate")[0, 0]
    offsets = [(i, j) for i in range(fy) for j in range(fx)]
    ds = [d[i::fy, j::fx] for i, j in offsets]     # one (Hc, Wc) view per sample of the block
    far = ds[0].clone()
    for x in ds[1:]:
        torch.minimum(far, x, out=far)
    hc, wc = far.shape
    far = _window_min(_window_min(far, window // 2, 1), window // 2, 0)
    sums = torch.zeros((ch + 2, hc, wc), dtype=torch.float32, device=colour.device)
    sums[ch + 1] = far
    far = far + float(tolerance)
    for (i, j), x in zip(offsets, ds):
        valid = (x <= far).to(torch.float32)
        sums[:ch].addcmul_(c[:, i::fy, j::fx], valid)
        sums[ch].add_(valid)
    return sums


def background_field(sums: torch.Tensor, sigma: float, tolerance: float, reach: int) -> torch.Tensor:
    """The smooth background colour from :func:`background_sums`.

    Blocks whose farthest surface is more than ``tolerance`` px nearer than the farthest one within
    ``reach`` + the blur's radius blocks are left out (inside a wide foreground object the nearby
    farthest surface is the object itself; the blur must not carry it to the background next to it).

    Args:
        sums: (C + 2, Hc, Wc) from :func:`background_sums`.
        sigma: Gaussian blur (blocks, > 0) of the sums and counts before their ratio.
        tolerance: px (>= 0); reach: blocks (>= 0), the half-window of :func:`background_sums`.

    Returns:
        (C, Hc, Wc) float32, NaN where no background pixel is near: block (i, j) of size ``s`` px is
        centred on pixel ((i + 0.5) * s - 0.5, (j + 0.5) * s - 0.5).
    """
    n = sums.shape[0] - 1
    far = sums[n]
    r = max(1, int(math.ceil(2.0 * sigma)))
    around = _window_min(_window_min(far, r + reach, 1), r + reach, 0)
    x = sums[:n] * (far <= around + float(tolerance)).to(torch.float32)
    taps = [math.exp(-0.5 * (k / float(sigma)) ** 2) for k in range(-r, r + 1)]
    x = _blur_1d(_blur_1d(x, taps, 2), taps, 1)
    count = x[n - 1:]
    out = x[:n - 1] / count.clamp(min=1e-6)
    return out.masked_fill_((count < 1e-3).expand_as(out), float("nan"))


def _window_min(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Minimum over ``2 * radius + 1`` neighbours along ``dim`` of a 2D tensor (the edges repeated)."""
    n = x.shape[dim]
    out = x.clone()
    for k in range(1, radius + 1):
        if k >= n:
            break
        torch.minimum(out.narrow(dim, k, n - k), x.narrow(dim, 0, n - k), out=out.narrow(dim, k, n - k))
        torch.minimum(out.narrow(dim, 0, n - k), x.narrow(dim, k, n - k), out=out.narrow(dim, 0, n - k))
    return out


def _blur_1d(x: torch.Tensor, taps: list[float], dim: int) -> torch.Tensor:
    """Normalised convolution of ``x`` along ``dim`` with odd ``taps``, the edge values repeated."""
    r = len(taps) // 2
    n = x.shape[dim]
    idx = torch.arange(-r, n + r, device=x.device).clamp_(0, n - 1)
    padded = x.index_select(dim, idx)
    total = sum(taps)
    out = padded.narrow(dim, 0, n) * (taps[0] / total)
    for k in range(1, len(taps)):
        out.add_(padded.narrow(dim, k, n), alpha=taps[k] / total)
    return out


def sample_field(field: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear samples of a :func:`background_field` at image positions.

    Args:
        field: (C, Hc, Wc) from :func:`background_field`; ``factor``: its block size (px).
        rows, cols: (K,) float or integer pixel positions in the image (any values: positions
            outside the field take its nearest edge).

    Returns:
        (K, C) float32.
    """
    _, hc, wc = field.shape
    # grid_sample's normalised coordinates (align_corners=False: -1 and 1 are the outer edges of
    # the blocks, which are the image's edges); positions beyond take the edge blocks.
    gx = (cols.to(torch.float32) + 0.5).mul_(2.0 / (factor * wc)).sub_(1.0)
    gy = (rows.to(torch.float32) + 0.5).mul_(2.0 / (factor * hc)).sub_(1.0)
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2)
    out = F.grid_sample(field[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].t().contiguous()

"""Viewing comfort of the stereo warp: screen plane, depth budget and soft depth edges.

Conventions (as :mod:`mvda.ops.stereo_warp`): per-eye disparity ``d`` in pixels; a pixel at column
``u`` appears at ``u + d`` in the left eye and ``u - d`` in the right eye, so the eye-to-eye offset
(screen parallax) of a point is ``x_right - x_left = -2 d``: negative (crossed, in front of the
screen) for ``d > 0``, positive (uncrossed, behind the screen) for ``d < 0``. Larger ``d`` is nearer.

* Screen plane (:func:`mvda.ops.stereo_warp.disparity_from_depth` with ``convergence_m``): the depth
  that has zero parallax; ``d = fx * (IPD / 2) * (1 / Z - 1 / C)``.
* Depth budget (:func:`limit_parallax`): crossed parallax compressed smoothly so that it never exceeds
  a limit, keeping the depth order.
* Soft edges: :func:`sharpen_depth_edges` snaps the in-between depths a network puts at an edge to
  the nearer of the two sides (the edge goes back to the middle of the ramp), then
  :func:`dilate_depth_edges` grows the near side a few pixels into the far side, so that the edge's
  mixed-colour pixels move with the foreground instead of tearing thin objects apart.
* Frame edges (:func:`edge_strip_width`, :func:`crop_zoom`): an optional small zoom that crops the
  strips at the left and right frame edges that an eye did not see (the default keeps the geometry
  exact and fills them like any hole).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mvda.ops.stereo_warp import disparity_from_depth

__all__ = ["DEFAULT_EDGE_DILATION", "DEFAULT_EDGE_SHARPEN", "EDGE_THRESHOLD_PX", "comfort_disparity", "crop_zoom",
           "dilate_depth_edges", "edge_strip_width", "limit_parallax", "sharpen_depth_edges", "zoom_margin"]

#: Defaults of ``--edge_dilation`` and ``--edge_sharpen`` (pixels), chosen with
#: benchmarks/bench_stereo_quality.py (see benchmarks/RESULTS.md).
DEFAULT_EDGE_DILATION = 2
DEFAULT_EDGE_SHARPEN = 2

#: A disparity step (pixels, per eye) above which neighbouring pixels within the dilation window are
#: a depth edge; smaller variations (slanted surfaces, noise) are left alone.
EDGE_THRESHOLD_PX = 0.5


def limit_parallax(disparity: torch.Tensor, max_parallax_px: float) -> torch.Tensor:
    """Compress crossed (in front of the screen) parallax smoothly so that it stays below a limit.

    With ``L = max_parallax_px / 2`` (the per-eye limit) and the knee ``k = L / 2``, per-eye disparity
    ``d <= k`` is unchanged and larger values become ``k + (L - k) * tanh((d - k) / (L - k))``: strictly
    increasing (the depth order is kept), continuous with a continuous slope at the knee, and below
    ``L`` everywhere. Disparity behind the screen (``d <= 0``) is never changed.

    Args:
        disparity: (..., H, W) per-eye disparity in pixels.
        max_parallax_px: the largest eye-to-eye offset allowed in front of the screen, in pixels (> 0).

    Returns:
        (..., H, W) float32 per-eye disparity with ``2 * d < max_parallax_px``.
    """
    if not max_parallax_px > 0:
        raise ValueError(f"max_parallax_px must be > 0, got {max_parallax_px}")
    d = torch.as_tensor(disparity).to(torch.float32)
    limit = float(max_parallax_px) / 2.0
    knee = limit / 2.0
    span = limit - knee
    compressed = torch.tanh((d - knee) / span).mul_(span).add_(knee)
    return torch.where(d > knee, compressed, d)


def _window_extremes(d: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(max, min) of the (2 radius + 1)-pixel window of each pixel of its row, (H, W) each."""
    k = 2 * radius + 1
    high = F.max_pool1d(d[:, None], kernel_size=k, stride=1, padding=radius)[:, 0]
    low = F.max_pool1d(torch.neg(d)[:, None], kernel_size=k, stride=1, padding=radius)[:, 0].neg_()
    return high, low


def _check_rows(d: torch.Tensor, radius: int) -> None:
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if d.ndim != 2:
        raise ValueError(f"disparity must be (H, W), got shape {tuple(d.shape)}")


def sharpen_depth_edges(disparity: torch.Tensor, radius: int, threshold_px: float = EDGE_THRESHOLD_PX
                        ) -> torch.Tensor:
    """Snap the in-between disparities of soft depth edges to the nearer side of the edge.

    At a pixel whose row window of ``radius`` pixels each side spans more than ``threshold_px`` of
    disparity (a depth edge), the disparity becomes the window's largest or smallest value, whichever
    is closer (a morphological toggle filter along the row). A ramp of in-between depths (a network's
    soft edge) becomes a step in its middle, where the true edge most likely is; a thin object whose
    depth was smeared keeps its pixels together at one depth. Flat and slanted surfaces (window spans
    below the threshold) are unchanged.

    Args:
        disparity: (H, W) per-eye disparity in pixels (larger = nearer).
        radius: pixels (>= 0); 0 returns the input.
        threshold_px: disparity span (pixels) that makes an edge (>= 0).

    Returns:
        (H, W) float32 disparity; every value is one of the input values of its row window.
    """
    d = torch.as_tensor(disparity).to(torch.float32)
    _check_rows(d, radius)
    if radius == 0:
        return d
    high, low = _window_extremes(d, radius)
    # Arithmetic blends with 0/1 float masks, in place: torch.where with a pixel-varying mask is
    # several times slower on the CPU, and fresh frame-sized buffers cost page faults.
    # ``up``: closer to the high side (2 d > high + low; a tie goes low).
    up = torch.mul(d, 2.0).sub_(high).sub_(low)
    torch.gt(up, 0.0, out=up)
    span = high.sub_(low)
    snapped = up.mul_(span).add_(low)
    edge = torch.gt(span, float(threshold_px), out=span)
    return snapped.sub_(d).mul_(edge).add_(d)


def dilate_depth_edges(disparity: torch.Tensor, radius: int, threshold_px: float = EDGE_THRESHOLD_PX
                       ) -> torch.Tensor:
    """Grow the near side of every horizontal depth edge ``radius`` pixels into the far side.

    A pixel whose row has, within ``radius`` pixels, a disparity larger than its own by more than
    ``threshold_px`` takes the largest disparity of that window (a grey dilation of the disparity,
    i.e. a min-filter of depth, applied only at edges): the in-between depths of a soft edge and the
    first background pixels then move with the foreground, so thin objects stay whole and the seam
    between foreground and background (and the filled hole) moves into the background. Elsewhere
    (flat or slanted surfaces) the disparity is unchanged. Only rows matter: the warp is horizontal.

    Args:
        disparity: (H, W) per-eye disparity in pixels (larger = nearer).
        radius: pixels (>= 0); 0 returns the input.
        threshold_px: disparity step (pixels) that makes an edge (>= 0).

    Returns:
        (H, W) float32 disparity, >= the input everywhere.
    """
    d = torch.as_tensor(disparity).to(torch.float32)
    _check_rows(d, radius)
    if radius == 0:
        return d
    k = 2 * radius + 1
    gain = F.max_pool1d(d[:, None], kernel_size=k, stride=1, padding=radius)[:, 0].sub_(d)   # >= 0
    edge = torch.gt(gain, float(threshold_px), out=torch.empty_like(d))
    return gain.mul_(edge).add_(d)


def comfort_disparity(depth_m: torch.Tensor, focal_px: float, ipd_m: float, far_m: float,
                      convergence_m: float | None = None, max_parallax_px: float | None = None,
                      edge_sharpen: int = 0, edge_dilation: int = 0) -> torch.Tensor:
    """Per-eye disparity for the stereo warp with the comfort settings applied, in this order:
    :func:`~mvda.ops.stereo_warp.disparity_from_depth` (screen plane at ``convergence_m``),
    :func:`sharpen_depth_edges` (``edge_sharpen`` pixels), :func:`dilate_depth_edges`
    (``edge_dilation`` pixels) and :func:`limit_parallax` (``max_parallax_px``; None: no limit).
    The default arguments give plain :func:`~mvda.ops.stereo_warp.disparity_from_depth`.

    Args:
        depth_m: (H, W) depth in metres (unknown: 0, NaN, inf -> ``far_m``).
        focal_px, ipd_m, far_m, convergence_m: see :func:`~mvda.ops.stereo_warp.disparity_from_depth`.
        max_parallax_px: largest eye-to-eye offset in front of the screen, pixels, or None.
        edge_sharpen, edge_dilation: pixels (>= 0).

    Returns:
        (H, W) float32 per-eye disparity in pixels.
    """
    d = disparity_from_depth(depth_m, focal_px, ipd_m, far_m, convergence_m=convergence_m)
    if edge_sharpen:
        d = sharpen_depth_edges(d, edge_sharpen)
    if edge_dilation:
        d = dilate_depth_edges(d, edge_dilation)
    if max_parallax_px is not None:
        d = limit_parallax(d, max_parallax_px)
    return d


# ------------------------------------------------------------------------------------------------
# frame-edge strips
# ------------------------------------------------------------------------------------------------
def edge_strip_width(filled: torch.Tensor) -> int:
    """Widest strip at the left or right frame edge that an eye did not see, in pixels.

    Args:
        filled: (..., H, W) bool, True where a pixel was filled in (see
            :class:`~mvda.ops.stereo_warp.StereoViews`), e.g. both eyes stacked as (2, H, W).

    Returns:
        The longest run of filled pixels that starts at column 0 or ends at column W - 1, over all rows.
    """
    f = torch.as_tensor(filled).to(torch.int32)
    if f.numel() == 0:
        return 0
    lead = torch.cumprod(f, dim=-1).sum(dim=-1)
    trail = torch.cumprod(f.flip(-1), dim=-1).sum(dim=-1)
    return int(torch.maximum(lead, trail).max())


def zoom_margin(strip_px: int, width: int) -> int:
    """Columns to crop from each side so that a strip of ``strip_px`` pixels is hidden: the strip plus
    a tenth (later frames may reach a little further) plus one pixel, at most a quarter of ``width``."""
    if strip_px <= 0:
        return 0
    return min(width // 4, int(strip_px * 1.1) + 1)


def crop_zoom(image: torch.Tensor, margin_px: int) -> torch.Tensor:
    """Crop ``margin_px`` columns from each side (and rows in proportion, keeping the aspect ratio)
    and scale the rest back to the full size (bilinear).

    Both eyes cropped alike stay a consistent stereo pair (as from a camera with a longer focal
    length): the strips at the frame edges that one eye did not see are cut off instead of filled.

    Args:
        image: (H, W, C) image (uint8 or float) or (H, W) mask (bool: nearest instead of bilinear).
        margin_px: columns cropped on each side (0 <= margin_px < W / 2).

    Returns:
        A tensor of the same shape and dtype.
    """
    img = torch.as_tensor(image)
    h, w = img.shape[:2]
    if margin_px <= 0:
        return img
    if 2 * margin_px >= w:
        raise ValueError(f"margin_px must be below half the width {w}, got {margin_px}")
    rows = int(round(margin_px * h / w))
    inner = img[rows:h - rows, margin_px:w - margin_px]
    if img.dtype == torch.bool:
        x = inner.to(torch.uint8)[None, None]
        return F.interpolate(x, size=(h, w), mode="nearest-exact")[0, 0].to(torch.bool)
    x = inner.permute(2, 0, 1)[None].to(torch.float32)
    out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    if not img.is_floating_point():
        out = out.round_().clamp_(0, 255)
    return out.to(img.dtype).contiguous()

"""Stereo views from one colour frame and its metric depth: forward warp, hole filling, packing.

Geometry (same as the original tool)
------------------------------------
A pinhole camera with focal length ``fx`` (pixels) sees the scene. The left and right eyes are the
same camera moved by ``-IPD/2`` and ``+IPD/2`` along x. A surface point at depth ``Z`` (metres) seen
at column ``u`` appears at column ``u + d`` in the left-eye view and ``u - d`` in the right-eye view,
with the per-eye disparity

    d = fx * (IPD / 2) / Z          (pixels)

which puts infinity on the screen plane (everything in front of it). With a convergence distance
``C`` (the depth on the screen plane) every disparity is lowered by ``fx * (IPD / 2) / C``: nearer
points keep ``d > 0`` (in front of the screen), farther ones get ``d < 0`` (behind it). The warp
works with any sign: the visibility order below only needs "larger d is nearer".

Rows do not change (the baseline is horizontal), so each row is an independent 1D problem.

Rendering model
---------------
Integer pixel coordinates are pixel centres. Each row of the source frame is a piecewise-linear
surface: neighbouring pixels ``i`` and ``i + 1`` are joined by a segment whose colour and disparity
are interpolated linearly, *unless* the segment is a depth edge. In an eye's view the segment spans
the target interval ``[a_i, a_{i+1})`` with ``a_i = i ± d_i``; its length is ``L_i = 1 ± (d_{i+1} - d_i)``.
It is drawn when ``0 < L_i <= 1 + max_stretch``: a longer one is a disocclusion (the two pixels
belong to different surfaces and the gap between them shows something the camera never saw) and a
non-positive one faces away from the eye. Where a segment is not drawn, each of its end pixels keeps
a half-pixel footprint (``[a_i, a_i + 1/2)`` on its right, ``[a_i - 1/2, a_i)`` on its left), so
thin objects and silhouettes keep their width and no source pixel vanishes.

Target pixels are rasterised exactly: pixel ``x`` is covered by a segment when ``a_i <= x < a_{i+1}``,
and then takes the colour at the sub-pixel source position ``s = i + (x - a_i) / L_i``.

Visibility without a depth buffer of floats: when two surface points ``s1 < s2`` of a row land on
the same target column of the *left* view, ``s1 + d(s1) = s2 + d(s2)`` implies ``d(s1) > d(s2)``, so
the one further left in the source is the nearer (McMillan's occlusion-compatible order); in the
right view the one further right is nearer. The z-test is therefore a min (left) or max (right) of
an integer key that orders source positions, done with one ``scatter_reduce('amin')`` per candidate
slot; this is exact for the model above and needs no per-pixel Python.

Holes (disocclusions, and the strip at the image border that the camera did not see) are filled
from the *background* side: each run of hole pixels copies the rendered pixel next to it on its
row, choosing between the left and right neighbours the one with the smaller disparity (the
farther surface), so the foreground edge is never smeared into the revealed background. Soft depth
edges (real depth maps ramp over a few pixels) put isolated in-between pixels into a disocclusion;
rendered fragments of at most ``drop_fragments`` pixels with holes on both sides are therefore
filled as well. By default ("smooth" fill) each filled pixel then takes the mean of a few background
pixels on its row (from the neighbour outwards, more of them deeper in the hole and at the frame
edge), and these colours are averaged vertically within each hole over a window that grows with the
distance from the background (:mod:`mvda.ops.hole_fill`), so that tall holes do not show one streak
per row. The filled pixels are reported as a mask so that they can be inpainted with other tools.

Invalid depth (0, negative, NaN or inf: the depth codec writes unknown depth as 0) is treated as the
far plane ``far_m`` (``max_depth`` for depth videos): such pixels keep their colour and move like the
farthest known surface, which avoids both division by zero and holes.

Everything is vectorised torch code; it runs on whatever device the tensors live on (CPU, CUDA,
MPS). Numpy arrays are accepted too and give numpy results.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mvda.ops.hole_fill import cone_radius, smooth_vertical_runs

__all__ = [
    "FILLS",
    "FORMATS",
    "StereoViews",
    "disparity_from_depth",
    "StereoWarper",
    "render_stereo",
    "render_eye",
    "pack_stereo",
    "packed_size",
    "resize_depth",
]

#: Hole fills of :class:`StereoWarper`: the background next to each hole, smoothed vertically (see
#: :mod:`mvda.ops.hole_fill`), the background pixel next to each hole copied along its row, or black.
FILLS = ("smooth", "row", "none")

#: Output layouts of :func:`pack_stereo`.
FORMATS = ("sbs", "half-sbs", "tb", "half-tb", "anaglyph")

Eye = Literal["left", "right"]


# ------------------------------------------------------------------------------------------------
# depth -> disparity
# ------------------------------------------------------------------------------------------------
def disparity_from_depth(depth_m: torch.Tensor, focal_px: float, ipd_m: float, far_m: float,
                         convergence_m: float | None = None) -> torch.Tensor:
    """Per-eye horizontal shift of each pixel.

    Args:
        depth_m: (..., H, W) depth along the optical axis in metres. Values that are not finite or
            not > 0 are unknown and are placed at ``far_m``.
        focal_px: horizontal focal length ``fx`` in pixels (> 0).
        ipd_m: distance between the eyes (pupillary distance) in metres (>= 0); each eye is
            ``ipd_m / 2`` from the camera.
        far_m: depth in metres used for unknown pixels (> 0), e.g. the depth video's ``max_depth``.
        convergence_m: the depth ``C`` in metres (> 0) that lands on the screen plane (zero
            disparity), or None for infinity (the original geometry: everything in front of the screen).

    Returns:
        (..., H, W) float32 disparity ``fx * (ipd_m / 2) * (1 / Z - 1 / C)`` in pixels: the left-eye
        view shows the pixel that many pixels to the right, the right-eye view to the left. Positive
        (nearer than ``C``: in front of the screen, crossed) or negative (farther: behind it); the
        eye-to-eye offset ``x_right - x_left`` of a point is ``-2 d = fx * ipd_m * (1 / C - 1 / Z)``.
    """
    if not focal_px > 0:
        raise ValueError(f"focal_px must be > 0, got {focal_px}")
    if not ipd_m >= 0:
        raise ValueError(f"ipd_m must be >= 0, got {ipd_m}")
    if not far_m > 0:
        raise ValueError(f"far_m must be > 0, got {far_m}")
    if convergence_m is not None and not convergence_m > 0:
        raise ValueError(f"convergence_m must be > 0, got {convergence_m}")
    z = torch.as_tensor(depth_m).to(torch.float32)
    z = torch.where(torch.isfinite(z) & (z > 0), z, torch.full_like(z, float(far_m)))
    half_base = float(focal_px) * float(ipd_m) / 2.0
    d = half_base / z
    if convergence_m is not None:
        d.sub_(half_base / float(convergence_m))
    return d


def resize_depth(depth: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize an (H, W) depth map to (height, width) with nearest-neighbour sampling.

    Nearest keeps every output depth equal to some input depth, so depth edges stay sharp and no
    'flying pixels' with an in-between depth are invented (bilinear would join foreground and
    background with a ramp that the warp would render as a stretched smear).
    """
    if tuple(depth.shape[-2:]) == (height, width):
        return depth
    out = F.interpolate(depth[None, None].to(torch.float32), size=(height, width), mode="nearest-exact")
    return out[0, 0]


# ------------------------------------------------------------------------------------------------
# the warp
# ------------------------------------------------------------------------------------------------
@dataclass
class StereoViews:
    """The two rendered eyes.

    ``left`` / ``right``: (H, W, C) images (uint8 like the input colour); ``left_filled`` /
    ``right_filled``: (H, W) bool, True where a pixel was filled in because no source pixel reached
    it; ``left_disparity`` / ``right_disparity``: (H, W) float32 disparity (pixels) of the surface
    seen at each pixel (for filled pixels: of the pixel they were filled from), or None when not
    requested. Tensors, or numpy arrays when the input colour was a numpy array.
    """

    left: torch.Tensor
    right: torch.Tensor
    left_filled: torch.Tensor
    right_filled: torch.Tensor
    left_disparity: torch.Tensor | None = None
    right_disparity: torch.Tensor | None = None


@dataclass(frozen=True)
class _ChunkTables:
    """Constant index tables for a chunk of ``n`` source rows = 2n output rows (n left, n right)."""

    key_seg: torch.Tensor       # (2n, W) int32 scatter key of segment i / right cap of pixel i
    key_lcap: torch.Tensor      # (2n, W) int32 scatter key of the left cap of pixel i+1 (W-1: pixel 0)
    key_diff: torch.Tensor      # (2n, W) int32 key_seg - key_lcap
    row_off: torch.Tensor       # (2n, 1) float32 offset of column 0 of each row in the scatter buffer
    dummy: torch.Tensor         # (2n, 1) float32 a dummy column of each row (candidates beyond the frame)
    spare: torch.Tensor         # (2n, W) float32 a distinct spare slot of each candidate (invalid ones)
    flat_base: torch.Tensor     # (2n, 1) int32 offset of each row in a (2n, W) tensor
    cols: torch.Tensor          # (W,) float32 column index


# Scatter rows have _PAD dummy columns on each side, so candidates one or two pixels outside the
# frame need no clamping (see _warp_chunk).
_PAD = 3


class StereoWarper:
    """Reusable stereo renderer for frames of one size (keeps index tables and working buffers
    between frames, so one instance renders one frame at a time; the views it returns are new).

    >>> warper = StereoWarper(720, 1280, device="cpu")            # doctest: +SKIP
    >>> views = warper.render(colour_hw3_uint8, disparity_hw_px)    # doctest: +SKIP

    Args:
        height, width: frame size in pixels.
        device: torch device for the computation.
        max_stretch: a segment between neighbouring pixels that an eye's view stretches by more
            than this many pixels is a depth edge (a disocclusion) and is left open, then filled.
        fill: how holes are filled, one of :data:`FILLS` (True: "smooth", False: "none"): "row"
            copies the background pixel next to each run of holes along its row; "smooth" starts
            from a short mean of the background along the row and averages the filled colours
            vertically over a window that grows with the distance from the background
            (:func:`mvda.ops.hole_fill.smooth_vertical_runs`), so tall holes get no streaks; "none"
            leaves them black.
        drop_fragments: when filling, rendered fragments of at most this many pixels with holes on
            both sides (the 'flying pixels' a soft depth edge spreads over a disocclusion) are
            filled too, so the revealed background is not streaked with edge colours; 0 keeps them.
        chunk_rows: source rows processed together; the default keeps a chunk's working set in the
            CPU caches (about 64k pixels per eye); on a GPU the whole frame is one chunk.
        workers: CPU threads working on different chunks at once (default: torch's intra-op thread
            count). While they run, torch's own intra-op threads are set to 1 and restored after.
    """

    def __init__(self, height: int, width: int, device: torch.device | str = "cpu", max_stretch: float = 1.0,
                 fill: bool | str = "smooth", drop_fragments: int = 2, chunk_rows: int | None = None,
                 workers: int | None = None) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if not max_stretch > 0:
            raise ValueError(f"max_stretch must be > 0, got {max_stretch}")
        self.height, self.width = int(height), int(width)
        self.device = torch.device(device)
        self.max_stretch = float(max_stretch)
        method = ("smooth" if fill else "none") if isinstance(fill, bool) else fill
        if method not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
        self.fill_method = method
        self.fill = method != "none"
        if drop_fragments < 0:
            raise ValueError(f"drop_fragments must be >= 0, got {drop_fragments}")
        self.drop_fragments = int(drop_fragments)
        if chunk_rows is None:
            chunk_rows = self.height if self.device.type != "cpu" else max(1, (1 << 16) // self.width)
        if workers is None:
            workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        self.workers = max(1, int(workers))
        # Scatter positions are computed in float32, exact below 2**24.
        limit = max(1, ((1 << 24) - 1) // (2 * (2 * self.width + 2 * _PAD)))
        self.chunk_rows = max(1, min(int(chunk_rows), self.height, limit))
        self._extra_slots = int(math.ceil(1.0 + self.max_stretch)) - 2  # pixels beyond 2 per segment
        self._tables: dict[int, _ChunkTables] = {}
        self._scratch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _tables_for(self, n: int) -> _ChunkTables:
        if n in self._tables:
            return self._tables[n]
        w, dev = self.width, self.device
        i = torch.arange(w, device=dev, dtype=torch.int32)
        # Keys order source positions along a row so that the smallest key is the visible surface:
        # in the left eye the leftmost source position wins, in the right eye the rightmost (see the
        # module docstring). Unit i covers source positions [i, i + 1]: key 2i+1 for segment i or
        # the right cap of pixel i (never both), key 2i+2 for the left cap of pixel i+1.
        seg_left = 2 * i + 1
        lcap_left = torch.remainder(2 * i + 2, 2 * w)
        key_seg = torch.cat([seg_left.expand(n, w), (2 * w - seg_left).expand(n, w)]).contiguous()
        key_lcap = torch.cat([lcap_left.expand(n, w), (2 * w - lcap_left).expand(n, w)]).contiguous()
        r = torch.arange(2 * n, device=dev)
        row_off = (r * (w + 2 * _PAD) + _PAD).to(torch.float32)[:, None]
        tables = _ChunkTables(
            key_seg=key_seg,
            key_lcap=key_lcap,
            key_diff=key_seg - key_lcap,
            row_off=row_off,
            dummy=row_off + float(w),
            spare=(2 * n * (w + 2 * _PAD) + torch.arange(2 * n * w, device=dev, dtype=torch.float32)).view(2 * n, w),
            flat_base=(r * w).to(torch.int32)[:, None],
            cols=i.to(torch.float32),
        )
        self._tables[n] = tables
        return tables

    def _scratch_for(self, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame working buffers, kept between frames (large fresh allocations page-fault)."""
        if self._scratch is None or self._scratch[0].shape[0] != channels:
            h, w, dev = self.height, self.width, self.device
            self._scratch = (torch.empty((channels, h * w + 1), dtype=torch.float32, device=dev),
                             torch.empty((2, h, w), dtype=torch.int32, device=dev),
                             torch.empty((2, h, w), dtype=torch.float32, device=dev))
        return self._scratch

    def render(self, colour, disparity, return_disparity: bool = False) -> StereoViews:
        """Render both eyes.

        Args:
            colour: (H, W, C) uint8 (or float) image, tensor or numpy array.
            disparity: (H, W) per-eye disparity in pixels, see :func:`disparity_from_depth`: positive
                in front of the screen plane, negative behind it; NaN and infinite values are taken as 0.
            return_disparity: also return the disparity seen at each output pixel.

        Returns:
            :class:`StereoViews` of tensors on :attr:`device` (numpy arrays if ``colour`` was numpy).
        """
        as_numpy = isinstance(colour, np.ndarray)
        c = _as_tensor(colour, self.device)
        d = _as_tensor(disparity, self.device).to(torch.float32)
        h, w = self.height, self.width
        if c.ndim != 3 or tuple(c.shape[:2]) != (h, w):
            raise ValueError(f"colour must be ({h}, {w}, C), got shape {tuple(c.shape)}")
        if tuple(d.shape) != (h, w):
            raise ValueError(f"disparity must be ({h}, {w}), got {tuple(d.shape)}; resize it first")
        # Any finite disparity works (negative: behind the screen plane, see disparity_from_depth): the
        # visibility order only needs larger = nearer. NaN and infinite values are taken as 0.
        d = torch.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
        ch = c.shape[2]
        integer = not c.is_floating_point()
        # Planar float source with one padding pixel; +0.5 so that truncation rounds to nearest.
        src, p0, t = self._scratch_for(ch)
        if integer:
            torch.add(c.permute(2, 0, 1), 0.5, out=src[:, :-1].view(ch, h, w))
        else:
            src[:, :-1].view(ch, h, w).copy_(c.permute(2, 0, 1))
        src[:, -1] = 0.0
        starts = range(0, h, self.chunk_rows)
        for r0 in starts:  # build the index tables before any worker thread needs them
            self._tables_for(min(h, r0 + self.chunk_rows) - r0)
        # Per output pixel (eye, row, column): the source pixel p0 of the surface seen and the
        # sub-pixel position t towards p0 + 1; 1 in ``hole`` where no surface lands.
        hole = torch.empty((2, h, w), dtype=torch.uint8, device=self.device)
        images = torch.empty((2, ch, h, w), dtype=c.dtype, device=self.device)

        def warp(r0: int) -> None:
            r1 = min(h, r0 + self.chunk_rows)
            self._warp_chunk(d[r0:r1], p0[:, r0:r1], t[:, r0:r1], hole[:, r0:r1])

        def paint(r0: int) -> None:
            r1 = min(h, r0 + self.chunk_rows)
            _paint_chunk(src, r0, p0[:, r0:r1], t[:, r0:r1], images[:, :, r0:r1],
                         hole[:, r0:r1] if not self.fill else None)

        d_flat = d.reshape(-1)

        def disparity_at(idx: torch.Tensor) -> torch.Tensor:
            """d(p0) + t * (d(p0 + 1) - d(p0)) at flat indices of (2, H, W) (the eye's surface)."""
            pix = idx % (h * w)
            row = pix - pix % w
            p = p0.view(-1).index_select(0, idx)
            d0 = d_flat.index_select(0, row + p)
            d1 = d_flat.index_select(0, row + (p + 1).clamp_(max=w - 1))
            return torch.lerp(d0, d1, t.view(-1).index_select(0, idx))

        workers = min(self.workers, len(starts))
        # Chunks are independent and write disjoint rows; torch releases the GIL inside its ops, so
        # plain threads run them in parallel (one op thread each: no OpenMP barriers).
        with contextlib.ExitStack() as stack:
            pool = None
            if workers > 1:
                stack.enter_context(_one_op_thread())
                pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers))
            _for_each(pool, warp, starts)
            orphans = sources = None
            if self.fill:  # one pass over the whole frame: few, small arrays
                orphans, sources = _fill_from_background(hole.view(2 * h, w), disparity_at, (p0, t),
                                                         self.drop_fragments, return_sources=True)
            _for_each(pool, paint, starts)
        if self.fill_method == "smooth" and sources is not None:
            _smooth_filled(images, hole, disparity_at, *sources)
        if orphans is not None:                             # rows with nothing to fill from: black
            eye, pix = orphans // (h * w), orphans % (h * w)
            images.view(2, ch, h * w)[eye, :, pix] = 0
        disps = None
        if return_disparity:
            disps = disparity_at(torch.arange(2 * h * w, device=self.device)).view(2, h, w)
            blank = hole.view(torch.bool) if not self.fill else None
            if blank is not None:
                disps[blank] = 0.0
            elif orphans is not None:
                disps.view(-1)[orphans] = 0.0
        holes = hole.view(torch.bool)                      # 0/1 bytes
        left, right = images[0].permute(1, 2, 0), images[1].permute(1, 2, 0)
        views = StereoViews(left, right, holes[0], holes[1],
                            None if disps is None else disps[0], None if disps is None else disps[1])
        if as_numpy:
            views = StereoViews(*(None if v is None else np.ascontiguousarray(v.cpu().numpy()) for v in (
                views.left, views.right, views.left_filled, views.right_filled, views.left_disparity,
                views.right_disparity)))
        return views

    def _warp_chunk(self, disp: torch.Tensor, out_p0: torch.Tensor, out_t: torch.Tensor,
                    out_hole: torch.Tensor) -> None:
        """The visible surface at every pixel of both eyes for ``n`` source rows.

        ``disp``: (n, W) disparity; writes ``out_p0`` (2, n, W) int32 source pixel, ``out_t``
        (2, n, W) float32 sub-pixel position, ``out_hole`` (2, n, W) uint8 (1: nothing landed).

        Masks are 0/1 float32 or int32 tensors combined with arithmetic: on the CPU, ``torch.where``
        and boolean tensors are many times slower than plain arithmetic when the mask changes from
        pixel to pixel (no vectorised blend), and the result is the same on every device.
        """
        n, w = disp.shape
        rows = 2 * n
        tb = self._tables_for(n)
        i32 = torch.int32

        sd = torch.cat([disp, -disp])                       # signed shift: + left eye, - right eye
        a = sd + tb.cols                                    # target column of each pixel centre
        # Neighbour differences on the flat (contiguous) arrays; the last column of each row, which
        # would pair it with the next row, is fixed afterwards.
        a_flat = a.view(-1)
        seg = torch.empty_like(a)                           # target length of segment i .. i+1
        torch.sub(a_flat[1:], a_flat[:-1], out=seg.view(-1)[:-1])
        seg[:, -1] = 0.0                                    # the last pixel has no segment
        conn = torch.gt(seg, 0.0, out=torch.empty_like(a))  # 1 where segment i is drawn
        conn.mul_(torch.le(seg, 1.0 + self.max_stretch, out=torch.empty_like(a)))
        seg_m = seg * conn                                  # drawn lengths, 0 elsewhere
        inv_seg = conn.div(seg.clamp_(min=1e-6))            # 1 / length where drawn, 0 elsewhere
        x0 = torch.ceil(a)                                  # first target pixel at or after a_i
        frac = x0 - a                                       # in [0, 1)
        # Scatter positions (float, exact) relative to the candidate's spare slot. Columns are clamped
        # to [-2, W+1] so that +-1 stays inside the row's dummy columns [-3, -1] and [W, W+2].
        # Invalid candidates go to their own spare slot after the rows: a shared dummy address would
        # serialise the scatter's read-modify-write (several times slower).
        xd = x0.clamp(-2.0, float(w + 1)).add_(tb.row_off).sub_(tb.spare)

        sentinel = 2 * w + 1
        best = torch.full((rows * (w + 2 * _PAD) + rows * w,), sentinel, dtype=i32, device=self.device)

        def splat(pos: torch.Tensor, key: torch.Tensor) -> None:
            # ``pos`` is the scatter position minus the spare slot (0 for invalid candidates).
            idx = pos.add_(tb.spare).to(i32).to(torch.int64)
            best.scatter_reduce_(0, idx.view(-1), key.view(-1), reduce="amin")

        # Slot A: the first pixel of segment i, or the right cap [a_i, a_i + 1/2) of pixel i.
        lim_a = torch.add(seg_m, conn, alpha=-0.5).add_(0.5)   # seg where drawn, else 1/2
        valid_a = torch.lt(frac, lim_a, out=lim_a)
        splat(valid_a.mul_(xd), tb.key_seg)
        # Slot B: the second pixel of segment i, or the left cap [a_{i+1} - 1/2, a_{i+1}) of pixel
        # i+1, which exists exactly when segment i is not drawn (column W-1: the left cap of pixel 0).
        # A left cap covers pixel ceil(a) - 1 iff frac >= 1/2; the two cases exclude each other.
        pos_b = torch.lt(frac, seg_m - 1.0, out=torch.empty_like(a)).mul_(xd + 1.0)
        cap = torch.empty_like(a)
        torch.ge(frac.view(-1)[1:], 0.5, out=cap.view(-1)[:-1])
        torch.ge(frac[:, :1], 0.5, out=cap[:, -1:])
        cap.addcmul_(cap, conn, value=-1.0)                 # only where segment i is not drawn
        # The cap's position (x0 of the next pixel) - 1 relative to this column's spare slot: spare
        # slots step by 1 along a row, so it is xd of the next column (of column 0 minus W for W-1).
        cap_pos = torch.empty_like(a)
        cap_pos.view(-1)[:-1] = xd.view(-1)[1:]
        torch.sub(xd[:, :1], float(w), out=cap_pos[:, -1:])
        pos_b.addcmul_(cap, cap_pos)
        splat(pos_b, torch.addcmul(tb.key_lcap, conn.to(i32), tb.key_diff))
        for k in range(2, 2 + self._extra_slots):          # only when max_stretch > 1
            pos_k = torch.minimum((x0 + float(k)).clamp_(min=-1.0).add_(tb.row_off), tb.dummy).sub_(tb.spare)
            splat(pos_k.mul_(torch.lt(frac, seg_m - float(k), out=torch.empty_like(a))), tb.key_seg)

        # Decode the winners: key -> owning pixel p0 and the sub-pixel position t within its segment:
        # t = (x - a0) / length, clamped to [0, 1]; caps give 0 (a right cap has 1 / length = 0, a
        # left cap covers only x < a0).
        best = best[:rows * (w + 2 * _PAD)].view(rows, w + 2 * _PAD)[:, _PAD:_PAD + w]
        key = torch.empty((rows, w), dtype=i32, device=self.device)
        key[:n] = best[:n]
        torch.neg(best[n:], out=key[n:]).add_(2 * w)       # right eye: back to source order
        p0 = (key >> 1).clamp_(0, w - 1)
        flat = (p0 + tb.flat_base).view(-1)
        a0 = a_flat.index_select(0, flat).view(rows, w)
        t = (tb.cols - a0).mul_(inv_seg.view(-1).index_select(0, flat).view(rows, w)).clamp_(0.0, 1.0)
        out_p0.copy_(p0.view(2, n, w))
        out_t.copy_(t.view(2, n, w))
        torch.eq(best.view(2, n, w), sentinel, out=out_hole)


def _for_each(pool: ThreadPoolExecutor | None, fn, items) -> None:
    """``fn(item)`` for every item, on the pool's threads when there is one (errors re-raised)."""
    if pool is None:
        for item in items:
            fn(item)
    else:
        list(pool.map(fn, items))


def _paint_chunk(src: torch.Tensor, r0: int, p0: torch.Tensor, t: torch.Tensor, out_img: torch.Tensor,
                 blank: torch.Tensor | None) -> None:
    """Colour c(p0) + t * (c(p0 + 1) - c(p0)) of ``n`` rows of both eyes.

    ``src``: (C, H*W + 1) planar float colour of the frame (a padding pixel at the end);
    ``p0``, ``t``: (2, n, W) views; ``out_img``: (2, C, n, W) view; ``blank``: (2, n, W) uint8
    pixels to paint black, or None.
    """
    _, n, w = p0.shape
    ch = src.shape[0]
    base = (torch.arange(n, device=p0.device, dtype=torch.int32) * w + r0 * w)[None, :, None]
    i0 = (p0 + base).reshape(-1)
    c0 = src.index_select(1, i0)
    c1 = src.index_select(1, i0 + 1)
    colour = torch.lerp(c0, c1, t.reshape(1, -1)).view(ch, 2, n, w)
    if blank is not None:
        colour.masked_fill_(blank.view(torch.bool)[None], 0.0)
    _cast_into(out_img, colour.permute(1, 0, 2, 3))


@contextlib.contextmanager
def _one_op_thread():
    """Run torch ops single-threaded inside the block (restores the previous setting)."""
    previous = torch.get_num_threads()
    if previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous > 1:
            torch.set_num_threads(previous)


def _cast_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst[...] = src`` with float -> integer truncation (numpy's vectorised cast on the CPU)."""
    if dst.device.type == "cpu" and not dst.is_floating_point():
        np.copyto(dst.numpy(), src.numpy(), casting="unsafe")
    else:
        dst.copy_(src)


#: Background pixels averaged along the row (from the one next to the hole outwards) for a filled
#: pixel: one more per two pixels of distance into the hole, up to this many; disocclusions and
#: frame-edge strips (measured with benchmarks/bench_stereo_quality.py).
ROW_MEAN_MAX = 2
ROW_MEAN_MAX_BORDER = 8
#: Rendered rows just above and below a hole that join its vertical averages, when their disparity
#: is at most this many pixels above that of the background the hole was filled from.
VERTICAL_CONTEXT = 2
BACKGROUND_TOLERANCE_PX = 2.0


def _smooth_filled(images: torch.Tensor, hole: torch.Tensor, disparity_at, targets: torch.Tensor,
                   run_of: torch.Tensor, run_source: torch.Tensor, outward: torch.Tensor, border: torch.Tensor
                   ) -> None:
    """Give the filled pixels of both eyes a smooth background colour, in place.

    Each filled pixel first takes the mean of the rendered background pixels on its row from the one
    it was filled from outwards (one more per two pixels of depth into the hole, up to
    :data:`ROW_MEAN_MAX`, or :data:`ROW_MEAN_MAX_BORDER` at the frame edge: an estimate of the
    background's colour rather than one pixel's), then these are averaged vertically within the
    hole (:func:`smooth_vertical_runs`, a window growing with the distance from the background),
    together with the rendered background just above and below the hole (:data:`VERTICAL_CONTEXT`
    rows; foreground pixels there, nearer than the hole's background by more than
    :data:`BACKGROUND_TOLERANCE_PX`, are left out).

    ``images``: (2, C, H, W); ``hole``: (2, H, W) uint8, 1 at filled pixels; ``disparity_at``: flat
    (2 * H, W) indices of rendered pixels -> their disparity; ``targets``: flat
    indices in (2 * H, W) of the filled pixels, ``run_of`` their runs; per run: ``run_source`` the
    flat index of the pixel it was filled from, ``outward`` -1 or +1, ``border`` (bool) whether it
    reaches the frame edge.
    """
    _, ch, h, w = images.shape
    if targets.numel() == 0:
        return
    dev = targets.device
    flat = images.view(-1)
    plane = torch.arange(ch, device=dev) * (h * w)

    def index_of(at: torch.Tensor) -> torch.Tensor:
        """(K, C) flat indices into ``images`` of the pixels at flat (2 * H, W) indices ``at``."""
        eye = at // (h * w)
        return (eye * ((ch - 1) * h * w) + at)[:, None] + plane

    # Per run, the running sums of the background pixels outwards from its source: sums[:, k] over the
    # first k + 1 (the source always counts; a pixel outside the row, beyond the run's limit or
    # filled itself does not). One (runs, deepest) gather: cheaper than a loop of small ops.
    most = torch.where(border, ROW_MEAN_MAX_BORDER, ROW_MEAN_MAX)
    deepest = int(most.max())
    steps = torch.arange(deepest, device=dev)
    col = (run_source % w)[:, None] + outward[:, None] * steps             # (R, deepest)
    use = (col >= 0) & (col < w) & (steps < most[:, None])
    at = torch.where(use, run_source[:, None] + outward[:, None] * steps, run_source[:, None]).view(-1)
    use &= hole.view(-1).index_select(0, at).view_as(use) == 0
    use[:, 0] = True
    colour = flat.index_select(0, index_of(at).view(-1)).view(-1, deepest, ch).to(torch.float32)
    sums = torch.cumsum(colour * use[..., None], dim=1)
    counts = torch.cumsum(use.to(torch.float32), dim=1)
    distance = (targets - run_source.index_select(0, run_of)).abs_()
    depth = torch.minimum(torch.clamp(1 + (distance - 1) // 2, min=1), most.index_select(0, run_of)) - 1
    slot = run_of * deepest + depth
    values = sums.view(-1, ch).index_select(0, slot) / counts.view(-1).index_select(0, slot)[:, None]
    eye = targets // (h * w)
    pix = targets - eye * (h * w)
    row = pix // w
    keys = (eye * w + (pix - row * w)) * h + row              # column-major: vertical neighbours differ by 1
    # The background above and below: rows 1..VERTICAL_CONTEXT away (each only if the rows between
    # are rendered too, so that it adjoins the hole's vertical run). They keep their own colour.
    hole_flat = hole.view(-1)
    far = disparity_at(run_source.index_select(0, run_of)) + BACKGROUND_TOLERANCE_PX
    near, limit = [], []
    for sign in (-1, 1):
        reach = torch.ones_like(row, dtype=torch.bool)
        for j in range(1, VERTICAL_CONTEXT + 1):
            reach = reach & (row + sign * j >= 0) & (row + sign * j < h)
            at = torch.where(reach, targets + sign * j * w, targets)
            reach = reach & (hole_flat.index_select(0, at) == 0)
            near.append(at[reach])
            limit.append(far[reach])
    near = torch.cat(near)
    context = torch.unique(near[disparity_at(near) <= torch.cat(limit)])
    c_eye = context // (h * w)
    c_pix = context - c_eye * (h * w)
    c_row = c_pix // w
    keys = torch.cat([keys, (c_eye * w + (c_pix - c_row * w)) * h + c_row])
    values = torch.cat([values, flat.index_select(0, index_of(context).view(-1)).view(-1, ch).to(torch.float32)])
    radius = torch.cat([cone_radius(distance), torch.zeros_like(context)])
    smooth = smooth_vertical_runs(values, keys, h, radius)[:targets.numel()]
    if not images.is_floating_point():
        smooth = smooth.add_(0.5).clamp_(0, 255)             # round to nearest on the cast
    flat.index_copy_(0, index_of(targets).view(-1), smooth.view(-1).to(images.dtype))


def _fill_from_background(hole: torch.Tensor, disparity_at, fields: tuple[torch.Tensor, ...],
                          drop_fragments: int = 0, return_sources: bool = False):
    """Fill holes along rows from the background side, in place.

    Each run of hole pixels takes ``fields`` (e.g. the source pixel and sub-pixel position that
    decide the colour) from the farther (smaller disparity) of the rendered pixels just left and
    right of the run, or from the only one that exists.

    Rendered fragments of at most ``drop_fragments`` pixels with holes on both sides are made holes
    first (``hole`` is updated): they are the 'flying pixels' of a soft depth edge, spread over the
    disocclusion, whose in-between colours would otherwise be smeared over the revealed background.

    Args:
        hole: (R, W) integer tensor, 1 where nothing was rendered (updated for dropped fragments).
        disparity_at: callable, flat indices (K,) int64 -> disparity (K,) of those rendered pixels
            (only called for the pixels next to holes).
        fields: contiguous (R, W) tensors updated at the holes.
        drop_fragments: longest fragment (pixels) to drop; 0 keeps everything.

    Returns:
        Flat indices of the hole pixels whose row has no rendered pixel at all (left as they
        are, for the caller to blank), or None when there are none. With ``return_sources``, a pair:
        those and ``(targets, run_of, run_source, outward, border)``: the flat indices of the filled
        pixels and the run each belongs to; per run, the flat index of the rendered pixel it was
        filled from, the step (-1 or +1) from that pixel away from the run, and whether the run
        reaches the frame edge (the strip the camera never saw). None when nothing was filled.
    """
    width = hole.shape[1]
    holes = torch.nonzero(hole.view(-1)).squeeze(1)        # sorted flat indices; typically a few %
    if holes.numel() == 0:
        return (None, None) if return_sources else None
    start, end = _hole_runs(holes, width)
    fragment_ends = None
    if drop_fragments > 0 and holes.numel() > 1:
        # A short rendered gap between a run's end and the next run's start in the same row joins
        # the two runs into one (the gap's pixels are added below).
        e, s = holes[:-1], holes[1:]
        gap = s - e - 1
        short = end[:-1] & (gap <= drop_fragments) & (e // width == s // width)
        if bool(short.any()):
            start[1:] &= ~short
            end[:-1] &= ~short
            fragment_ends = short.nonzero().squeeze(1)    # positions in ``holes`` of the runs' ends
    # Per run: the rendered pixels just left and right of it, and which one is farther.
    first, last = holes[start], holes[end]
    has_left = first % width != 0
    has_right = last % width != width - 1
    left = (first - 1).clamp_(min=0)
    right = (last + 1).clamp_(max=hole.numel() - 1)
    take_left = has_left & (~has_right | (disparity_at(left) <= disparity_at(right)))
    run_source = torch.where(take_left, left, right)
    run_orphan = ~(has_left | has_right)                    # rare: a row with nothing rendered
    run_id = torch.cumsum(start, dim=0) - 1
    targets, run_of = holes, run_id
    if fragment_ends is not None:
        e = holes[fragment_ends]
        gap = holes[fragment_ends + 1] - e - 1
        runs = run_id[fragment_ends]
        pieces = [((e + k)[gap >= k], runs[gap >= k]) for k in range(1, drop_fragments + 1)]
        fragments = torch.cat([p[0] for p in pieces])
        hole.view(-1).index_fill_(0, fragments, 1)
        targets = torch.cat([holes, fragments])
        run_of = torch.cat([run_id] + [p[1] for p in pieces])
    orphans = None
    if bool(run_orphan.any()):
        orphan = run_orphan[run_of]
        orphans = targets[orphan]
        targets, run_of = targets[~orphan], run_of[~orphan]
    source = run_source[run_of]
    values = [f.view(-1).index_select(0, source) for f in fields]  # read all before writing any
    for f, v in zip(fields, values):
        f.view(-1).index_copy_(0, targets, v)
    if return_sources:
        border = ~(has_left & has_right)                    # runs that reach the frame edge
        outward = torch.where(take_left, -1, 1)             # from the source away from the run
        return orphans, (targets, run_of, run_source, outward, border)
    return orphans


def _hole_runs(holes: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start / end flags (bool (K,)) of the runs of consecutive holes within a row.

    ``holes``: sorted flat indices. A run starts where the previous hole is not the pixel just
    before (or at column 0) and ends where the next run starts.
    """
    start = torch.ones(holes.numel(), dtype=torch.bool, device=holes.device)
    start[1:] = holes[1:] != holes[:-1] + 1
    start |= holes % width == 0
    end = torch.ones_like(start)
    end[:-1] = start[1:]
    return start, end


def render_stereo(colour, disparity, max_stretch: float = 1.0, fill: bool | str = "smooth", drop_fragments: int = 2,
                  device: torch.device | str | None = None, return_disparity: bool = False) -> StereoViews:
    """Render both eyes of one frame (see :class:`StereoWarper` for repeated frames of one size).

    Args:
        colour: (H, W, C) image (uint8 or float), tensor or numpy array, in the camera's view.
        disparity: (H, W) per-eye disparity in pixels (negative: behind the screen plane), e.g. from
            :func:`disparity_from_depth`.
        max_stretch, drop_fragments: see :class:`StereoWarper`.
        fill: how holes are filled (see :class:`StereoWarper`): "smooth", "row" or "none".
        return_disparity: also return the disparity seen at each output pixel.
        device: where to compute (``None``: where ``colour`` is). Results are numpy arrays on the
            CPU when ``colour`` was a numpy array, else tensors on ``device``.

    Returns:
        :class:`StereoViews` (left eye, right eye, filled-pixel masks, disparities).
    """
    shape = tuple(colour.shape)
    if len(shape) != 3:
        raise ValueError(f"colour must be (H, W, C), got shape {shape}")
    if device is None:
        device = colour.device if isinstance(colour, torch.Tensor) else "cpu"
    warper = StereoWarper(shape[0], shape[1], device=device, max_stretch=max_stretch, fill=fill,
                          drop_fragments=drop_fragments)
    return warper.render(colour, disparity, return_disparity=return_disparity)


def _as_tensor(x, device: torch.device | str | None) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    return t.to(device) if device is not None else t


def render_eye(colour, disparity, eye: Eye, max_stretch: float = 1.0, fill: bool | str = "smooth",
               drop_fragments: int = 2, device: torch.device | str | None = None):
    """One eye of :func:`render_stereo`: ``(image (H, W, C), filled (H, W) bool, disparity (H, W))``.

    ``eye`` is ``"left"`` (content shifts right) or ``"right"`` (content shifts left).
    """
    if eye not in ("left", "right"):
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    v = render_stereo(colour, disparity, max_stretch=max_stretch, fill=fill, drop_fragments=drop_fragments,
                      device=device, return_disparity=True)
    if eye == "left":
        return v.left, v.left_filled, v.left_disparity
    return v.right, v.right_filled, v.right_disparity


# ------------------------------------------------------------------------------------------------
# output layouts
# ------------------------------------------------------------------------------------------------
def packed_size(height: int, width: int, fmt: str) -> tuple[int, int]:
    """(height, width) in pixels of a frame packed by :func:`pack_stereo` from two (height, width) eyes."""
    if fmt == "sbs":
        return height, 2 * width
    if fmt == "half-sbs":
        return height, 2 * max(1, width // 2)
    if fmt == "tb":
        return 2 * height, width
    if fmt == "half-tb":
        return 2 * max(1, height // 2), width
    if fmt == "anaglyph":
        return height, width
    raise ValueError(f"unknown stereo format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _squeeze(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-resample an (H, W, C) image to (height, width) (averaging, so no aliasing)."""
    if tuple(img.shape[:2]) == (height, width):
        return img
    x = img.permute(2, 0, 1)[None].to(torch.float32)
    y = F.interpolate(x, size=(height, width), mode="area")[0].permute(1, 2, 0)
    if not img.is_floating_point():
        y = y.round_().clamp_(0, 255).to(img.dtype)
    return y


def pack_stereo(left, right, fmt: str = "sbs"):
    """Pack two (H, W, C) eye images into one frame.

    Formats (output shape): ``sbs`` ((H, 2W, C), left eye on the left), ``half-sbs`` ((H, W, C),
    each eye squeezed to W/2 columns), ``tb`` ((2H, W, C), left eye on top), ``half-tb`` ((H, W, C),
    each eye squeezed to H/2 rows), ``anaglyph`` ((H, W, C), red-cyan: red channel from the left eye,
    green and blue from the right; needs C >= 3). :func:`packed_size` gives the (height, width).
    Half formats average pixel pairs (area resampling); odd sizes round down.
    Numpy in, numpy out; tensors in, tensors out.
    """
    as_numpy = isinstance(left, np.ndarray)
    lt, rt = _as_tensor(left, None), _as_tensor(right, None)
    if lt.shape != rt.shape:
        raise ValueError(f"eye images differ in shape: {tuple(lt.shape)} vs {tuple(rt.shape)}")
    h, w = lt.shape[:2]
    if fmt == "sbs":
        out = torch.cat([lt, rt], dim=1)
    elif fmt == "tb":
        out = torch.cat([lt, rt], dim=0)
    elif fmt == "half-sbs":
        hw = max(1, w // 2)
        out = torch.cat([_squeeze(lt, h, hw), _squeeze(rt, h, hw)], dim=1)
    elif fmt == "half-tb":
        hh = max(1, h // 2)
        out = torch.cat([_squeeze(lt, hh, w), _squeeze(rt, hh, w)], dim=0)
    elif fmt == "anaglyph":
        if lt.ndim != 3 or lt.shape[2] < 3:
            raise ValueError("anaglyph needs colour images (H, W, 3)")
        out = rt.clone()
        out[..., 0] = lt[..., 0]
    else:
        raise ValueError(f"unknown stereo format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return out.cpu().numpy() if as_numpy else out

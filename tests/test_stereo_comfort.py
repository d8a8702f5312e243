"""Viewing comfort of the stereo warp: screen plane (convergence), parallax limit, edge dilation,
smooth hole fill. Hand-computed values and analytic scenes.

Conventions (see mvda/ops/stereo_warp.py): per-eye disparity d; a source pixel at column u appears at
u + d in the left eye and u - d in the right eye; the eye-to-eye offset is x_right - x_left = -2 d.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mvda.ops.hole_fill import cone_radius, smooth_vertical_runs
from mvda.ops.stereo_comfort import (DEFAULT_EDGE_DILATION, DEFAULT_EDGE_SHARPEN, comfort_disparity, dilate_depth_edges,
                                     limit_parallax, sharpen_depth_edges)
from mvda.ops.stereo_warp import StereoWarper, disparity_from_depth, render_stereo


def ramp_image(h: int, w: int, step: float = 2.0, dtype=np.uint8) -> np.ndarray:
    """(H, W, 3) image whose value is ``step * column`` (a linear ramp: with float32, sub-pixel
    shifts are exact)."""
    return np.broadcast_to((np.arange(w) * step).astype(dtype)[None, :, None], (h, w, 3)).copy()


def eye_offset(view_left: np.ndarray, view_right: np.ndarray, step: float, cols: slice) -> np.ndarray:
    """x_right - x_left of the source points seen in ``cols`` of a ramp image: in an eye, column x shows
    the source column value / step, so a source point u sits at x - (value / step - u)."""
    x = np.arange(view_left.shape[1])[cols]
    source_left = view_left[0, cols, 0] / step      # the source column seen at x in the left eye
    source_right = view_right[0, cols, 0] / step
    # Left eye: source s is at x where s = x - d_l  ->  position of source u: u + (x - s).
    return (x - source_right) - (x - source_left)


# ------------------------------------------------------------------------------------------------
# screen plane
# ------------------------------------------------------------------------------------------------
def test_plane_at_the_convergence_distance_has_zero_offset():
    fx, ipd = 500.0, 0.064
    d = disparity_from_depth(torch.full((4, 40), 2.5), fx, ipd, far_m=10.0, convergence_m=2.5)
    np.testing.assert_allclose(d.numpy(), 0.0, atol=1e-6)
    img = ramp_image(4, 40)
    views = render_stereo(img, d.numpy())
    np.testing.assert_array_equal(views.left, img)                # both eyes see the camera's image
    np.testing.assert_array_equal(views.right, img)
    assert not views.left_filled.any() and not views.right_filled.any()


@pytest.mark.parametrize("plane_m, expected_px", [(4.0, 1.6), (1.0, -3.2)])
def test_offset_between_the_eyes_by_hand(plane_m, expected_px):
    # fx = 100 px, IPD = 64 mm, convergence D1 = 2 m: offset x_right - x_left = fx * IPD * (1/D1 - 1/D2)
    # = 6.4 * (0.5 - 0.25) = +1.6 px for D2 = 4 m (uncrossed: behind the screen) and
    # 6.4 * (0.5 - 1.0) = -3.2 px for D2 = 1 m (crossed: in front of it).
    fx, ipd, w = 100.0, 0.064, 40
    d = disparity_from_depth(torch.full((1, w), plane_m), fx, ipd, far_m=10.0, convergence_m=2.0)
    np.testing.assert_allclose(d.numpy(), -expected_px / 2, rtol=1e-6)
    views = render_stereo(ramp_image(1, w, dtype=np.float32), d.numpy())
    offset = eye_offset(views.left, views.right, 2.0, slice(8, w - 8))   # away from the border strips
    np.testing.assert_allclose(offset, expected_px, atol=1e-4)


def test_default_geometry_is_unchanged_by_the_new_arguments():
    z = torch.tensor([[1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(disparity_from_depth(z, 1000.0, 0.064, 8.0).numpy(),
                                  comfort_disparity(z, 1000.0, 0.064, 8.0).numpy())
    np.testing.assert_allclose(disparity_from_depth(z, 1000.0, 0.064, 8.0).numpy(), [[32.0, 16.0, 4.0]])
    with pytest.raises(ValueError):
        disparity_from_depth(z, 1000.0, 0.064, 8.0, convergence_m=0.0)


def test_negative_disparity_keeps_the_occlusion_order():
    # Objects behind the screen (all d < 0) must occlude exactly as the same scene shifted to d >= 0:
    # adding a constant c to d moves the left eye by c and the right eye by -c, nothing else.
    rng = np.random.default_rng(3)
    h, w, c = 9, 96, 6
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    d = np.full((h, w), -5.5, np.float32)                  # far wall
    d[:, 30:60] = rng.choice([-4.0, -1.25], size=(h, 30))  # a rough surface in front of it
    d[:, 40:46] = -0.5                                     # a near object: must win over what it covers
    d[:, 52:53] = 0.25                                     # a thin pole in front of the screen
    behind = render_stereo(img, d, fill="row")
    shifted = render_stereo(img, d + c, fill="row")
    inner = slice(c + 16, w - c - 16)
    shifted_cols = slice(inner.start + c, inner.stop + c)
    np.testing.assert_array_equal(behind.left[:, inner], shifted.left[:, shifted_cols])
    np.testing.assert_array_equal(behind.right[:, shifted_cols], shifted.right[:, inner])
    np.testing.assert_array_equal(behind.left_filled[:, inner], shifted.left_filled[:, shifted_cols])


# ------------------------------------------------------------------------------------------------
# parallax limit
# ------------------------------------------------------------------------------------------------
def test_limit_parallax_by_hand():
    # max parallax 20 px -> per-eye limit 10, knee 5: d <= 5 unchanged; d = 5 + 5 * atanh(0.5) -> 7.5.
    d = torch.tensor([-30.0, 0.0, 3.0, 5.0, 5.0 + 5.0 * float(np.arctanh(0.5)), 1e6])
    out = limit_parallax(d, 20.0).numpy()
    np.testing.assert_allclose(out[:4], [-30.0, 0.0, 3.0, 5.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[4], 7.5, rtol=1e-5)
    assert out[5] <= 10.0 and out[5] > 9.99
    with pytest.raises(ValueError):
        limit_parallax(d, 0.0)


def test_limit_parallax_caps_and_keeps_the_order():
    d = torch.linspace(-20.0, 200.0, 20001)
    out = limit_parallax(d, 24.0)
    assert float((2 * out).max()) <= 24.0                     # no crossed parallax beyond the limit
    assert bool((out[1:] >= out[:-1]).all())                  # depth order kept (float32 tanh saturates far out)
    below = d < 36.0                                          # up to 3x the limit: strictly increasing
    assert bool((out[below][1:] > out[below][:-1]).all())
    slope = torch.diff(out) / torch.diff(d)
    assert float((slope[1:] - slope[:-1]).abs().max()) < 1e-2  # smooth: no kink at the knee


def test_max_parallax_through_comfort_disparity():
    # A plane at 0.2 m with fx 1000, IPD 64 mm: 160 px per eye; limited to 3 % of 640 px = 19.2 px.
    # The knee is at a quarter of the limit (4.8 px per eye): 10 m (3.2 px) is unchanged.
    z = torch.tensor([[0.2, 1.0, 10.0]])
    d = comfort_disparity(z, 1000.0, 0.064, 10.0, max_parallax_px=0.03 * 640)
    assert float(2 * d[0, 0]) <= 19.2 + 1e-5 and float(d[0, 0]) > float(d[0, 1]) > float(d[0, 2])
    np.testing.assert_allclose(float(d[0, 2]), 3.2, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# edge dilation
# ------------------------------------------------------------------------------------------------
def test_edge_dilation_by_hand():
    d = torch.tensor([[1.0, 1.0, 1.0, 5.0, 5.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(dilate_depth_edges(d, 1).numpy(), [[1, 1, 5, 5, 5, 5, 1, 1]])
    np.testing.assert_array_equal(dilate_depth_edges(d, 2).numpy(), [[1, 5, 5, 5, 5, 5, 5, 1]])
    np.testing.assert_array_equal(dilate_depth_edges(d, 0).numpy(), d.numpy())
    # A slanted surface (0.1 px per pixel) is not an edge: unchanged.
    slope = torch.arange(20, dtype=torch.float32)[None] * 0.1
    np.testing.assert_array_equal(dilate_depth_edges(slope, 2).numpy(), slope.numpy())
    with pytest.raises(ValueError):
        dilate_depth_edges(d, -1)


def test_edge_sharpen_by_hand():
    # A soft edge 1 -> 9 over three pixels (3, 5, 7): with radius 2 each snaps to the closer of the
    # window's extremes; 5 is a tie (4 each side) and goes to the far side.
    d = torch.tensor([[1.0, 1.0, 1.0, 3.0, 5.0, 7.0, 9.0, 9.0, 9.0]])
    np.testing.assert_array_equal(sharpen_depth_edges(d, 2).numpy(), [[1, 1, 1, 1, 1, 9, 9, 9, 9]])
    np.testing.assert_array_equal(sharpen_depth_edges(d, 0).numpy(), d.numpy())
    slope = torch.arange(20, dtype=torch.float32)[None] * 0.1
    np.testing.assert_array_equal(sharpen_depth_edges(slope, 2).numpy(), slope.numpy())


def pole_scene(h: int = 48, w: int = 160):
    """A 2-px-wide red pole at 1 m, slanted (a quarter pixel per row), in front of a textured wall at 4 m."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    x0 = 70 + 0.25 * v
    pole = (u >= x0) & (u < x0 + 2)
    depth = np.where(pole, 1.0, 4.0).astype(np.float32)
    colour = np.stack([np.full((h, w), 60.0), 100 + 40 * np.sin(u / 3) * np.cos(v / 4), np.full((h, w), 90.0)], -1)
    colour[pole] = [250, 30, 30]
    return colour.astype(np.uint8), depth


def whole_rows(img: np.ndarray) -> float:
    """Fraction of rows where the pole's pixels (red: R - G > 60) form one run of at least 2 pixels."""
    red = (img[..., 0].astype(int) - img[..., 1].astype(int)) > 60
    whole = 0
    for row in red:
        cols = np.nonzero(row)[0]
        whole += len(cols) >= 2 and cols[-1] - cols[0] + 1 == len(cols)
    return whole / len(red)


def test_edge_dilation_keeps_a_thin_slanted_pole_whole(capsys):
    # Soft depth (Gaussian, sigma 1 px: about 2 px of blur, as a network's edges) gives the pole's two
    # pixels different in-between depths; each eye then tears the pole into pieces with wall between
    # them (checked: without dilation most rows). Dilation moves the ramp into the wall: whole again.
    colour, depth = pole_scene()
    soft = torch.from_numpy(gaussian_filter(depth, 1.0))
    fx = 1300.0                                              # pole 41 px per eye, wall 10 px
    result = {}
    for sharpen, dilation in ((0, 0), (0, DEFAULT_EDGE_DILATION), (DEFAULT_EDGE_SHARPEN, DEFAULT_EDGE_DILATION)):
        d = comfort_disparity(soft, fx, 0.063, 6.0, edge_sharpen=sharpen, edge_dilation=dilation)
        views = render_stereo(colour, d.numpy())
        result[sharpen, dilation] = (round(whole_rows(views.left), 3), round(whole_rows(views.right), 3))
    sharp = render_stereo(colour, comfort_disparity(torch.from_numpy(depth), fx, 0.063, 6.0).numpy())
    assert whole_rows(sharp.left) == whole_rows(sharp.right) == 1.0   # the measure itself
    assert max(result[0, 0]) < 0.5, result                              # torn without edge handling
    assert min(result[0, DEFAULT_EDGE_DILATION]) >= 0.95, result        # whole with dilation alone
    assert min(result[DEFAULT_EDGE_SHARPEN, DEFAULT_EDGE_DILATION]) >= 0.95, result   # and with the defaults
    with capsys.disabled():
        print(f"\nslanted pole, soft depth: whole rows (left, right) for (edge_sharpen, edge_dilation): {result}")


# ------------------------------------------------------------------------------------------------
# smooth fill
# ------------------------------------------------------------------------------------------------
def test_smooth_vertical_runs_by_hand():
    # Column 0 (keys 0..4 with height 5): rows 1, 2, 3 filled; column 1: rows 0 and 4 (two runs).
    keys = torch.tensor([2, 1, 3, 5, 9])
    values = torch.tensor([[20.0], [10.0], [30.0], [50.0], [90.0]])
    radius = torch.tensor([1, 0, 5, 3, 3])
    out = smooth_vertical_runs(values, keys, 5, radius).numpy()[:, 0]
    # key 2 (row 2): rows 1..3 -> 20; key 1: itself; key 3: rows 1..3 -> 20; keys 5 and 9 are separate
    # runs of one pixel each (rows 0 and 4 of column 1), and key 4 is not filled.
    np.testing.assert_allclose(out, [20.0, 10.0, 20.0, 50.0, 90.0])
    # Row 0 of column 1 (key 5) must not join row 4 of column 0 (key 4) even when both are filled.
    out = smooth_vertical_runs(torch.tensor([[0.0], [100.0]]), torch.tensor([4, 5]), 5, torch.tensor([3, 3]))
    np.testing.assert_allclose(out.numpy()[:, 0], [0.0, 100.0])
    np.testing.assert_array_equal(cone_radius(torch.tensor([1, 2, 3, 100]), slope=2.0, max_radius=16).numpy(),
                                  [0, 2, 4, 16])


def test_smooth_fill_row_mean_by_hand():
    # d = 4 on a ramp 10, 20, ..., 120: the left eye did not see columns 0-3 (a frame-edge strip
    # filled from column 4, which shows 10). A filled pixel at distance k from it takes the mean of
    # 1 + (k - 1) // 2 background pixels outwards: k = 1, 2 -> 10; k = 3, 4 -> (10 + 20) / 2 = 15.
    img = (np.arange(12, dtype=np.uint8)[None, :, None] * 10 + 10).repeat(3, axis=2)
    views = render_stereo(img, np.full((1, 12), 4.0, np.float32))
    np.testing.assert_array_equal(views.left[0, :, 0], [15, 15, 10, 10, 10, 20, 30, 40, 50, 60, 70, 80])
    # Right eye: columns 8-11 filled from column 7 (120) outwards to the left (110, ...).
    np.testing.assert_array_equal(views.right[0, :, 0], [50, 60, 70, 80, 90, 100, 110, 120, 120, 120, 115, 115])
    np.testing.assert_array_equal(render_stereo(img, np.full((1, 12), 4.0, np.float32), fill="row").left[0, :4, 0],
                                  [10, 10, 10, 10])


def test_smooth_fill_removes_row_streaks():
    # A wide near box on a wall with a vertical gradient plus per-row noise: the row fill copies one
    # noisy pixel per row into the disocclusion (streaks: large row-to-row jumps inside the hole);
    # the smooth fill averages them vertically, and stays wall-coloured (no box colour).
    rng = np.random.default_rng(4)
    h, w = 60, 80
    wall = (100 + np.arange(h)[:, None] + rng.normal(0, 25, (h, w))).clip(0, 255)
    img = np.stack([wall, wall, wall], -1).astype(np.uint8)
    img[:, 30:50] = [250, 0, 0]
    d = np.full((h, w), 2.0, np.float32)
    d[:, 30:50] = 12.0
    row_views = render_stereo(img, d, fill="row")
    smooth_views = render_stereo(img, d, fill="smooth")
    hole = row_views.left_filled & (np.arange(w) > 10)[None]
    np.testing.assert_array_equal(hole, smooth_views.left_filled & (np.arange(w) > 10)[None])
    assert hole.sum() > 300

    def streakiness(view):
        g = view[..., 1].astype(float)
        both = hole[1:] & hole[:-1]
        return np.abs(g[1:] - g[:-1])[both].mean()

    assert streakiness(smooth_views.left) < 0.5 * streakiness(row_views.left)
    assert (smooth_views.left[hole][:, 0] == smooth_views.left[hole][:, 1]).all()   # grey: no box red
    # Outside the holes nothing changes.
    np.testing.assert_array_equal(smooth_views.left[~smooth_views.left_filled], row_views.left[~row_views.left_filled])


def test_fill_names_and_bools():
    img = ramp_image(2, 12)
    d = np.full((2, 12), 2.0, np.float32)
    np.testing.assert_array_equal(render_stereo(img, d, fill=True).left, render_stereo(img, d, fill="smooth").left)
    np.testing.assert_array_equal(render_stereo(img, d, fill=False).left, render_stereo(img, d, fill="none").left)
    with pytest.raises(ValueError, match="fill"):
        StereoWarper(2, 12, fill="blur")


def test_smooth_fill_uses_the_background_above_and_below_by_hand():
    # One eye (the second is empty), 4 x 4, one channel: row 0 rendered (100), rows 1-3 holes at
    # columns 0-1, filled from column 2 (50, 60, 70) outwards to the right; the runs reach the frame
    # edge. Column 0 lies 2 px from its source: row mean of 1 pixel, vertical half-window 2 rows,
    # joined by row 0 above (background: same disparity). Column 1 (1 px away) keeps its source.
    from mvda.ops.stereo_warp import _smooth_filled

    def run(top_disparity: float) -> np.ndarray:
        images = torch.zeros(2, 1, 4, 4)
        images[0, 0, 0] = 100.0
        images[0, 0, 1:, 2:] = torch.tensor([[50.0], [60.0], [70.0]])
        hole = torch.zeros(2, 4, 4, dtype=torch.uint8)
        hole[0, 1:, :2] = 1
        disp = torch.full((2, 4, 4), 1.0)
        disp[0, 0] = top_disparity
        targets = torch.tensor([4, 5, 8, 9, 12, 13])
        run_of = torch.tensor([0, 0, 1, 1, 2, 2])
        run_source = torch.tensor([6, 10, 14])
        _smooth_filled(images, hole, lambda idx: disp.view(-1)[idx], targets, run_of, run_source,
                       torch.tensor([1, 1, 1]), torch.tensor([True, True, True]))
        return images[0, 0].numpy()

    out = run(1.0)
    # Column 0: row 1 -> rows 0-3 (100, 50, 60, 70) = 70; row 2 -> rows 0-3 = 70; row 3 -> rows 1-3 = 60.
    np.testing.assert_allclose(out[1:, 0], [70.0, 70.0, 60.0])
    np.testing.assert_allclose(out[1:, 1], [50.0, 60.0, 70.0])
    # A foreground row above (disparity 5 > 1 + 2) is left out: column 0 averages the hole only.
    np.testing.assert_allclose(run(5.0)[1:, 0], [60.0, 60.0, 60.0])

"""stereo_warp: hand-computed rows, analytic scenes with known left/right views, packing formats.

Conventions used below: pixel centres at integer columns; a pixel at column u with per-eye disparity
d appears at u + d in the left eye and u - d in the right eye.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.stereo_warp import (
    FORMATS,
    _fill_from_background,
    StereoWarper,
    disparity_from_depth,
    pack_stereo,
    packed_size,
    render_eye,
    render_stereo,
    resize_depth,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ramp_row(width: int, step: int = 10) -> np.ndarray:
    """(1, W, 3) uint8 row whose colour is ``step * column`` in every channel."""
    return (np.arange(width, dtype=np.uint8)[None, :, None] * step).repeat(3, axis=2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ------------------------------------------------------------------------------------------------
# hand-computed rows
# ------------------------------------------------------------------------------------------------
def test_integer_shift_by_hand():
    # d = 2: left eye shows source column x - 2 at x; right eye shows x + 2. Columns that no
    # source pixel reaches (left: 0, 1; right: 6, 7) are filled from the only neighbour.
    v = render_stereo(ramp_row(8), np.full((1, 8), 2.0, np.float32))
    np.testing.assert_array_equal(v.left[0, :, 0], [0, 0, 0, 10, 20, 30, 40, 50])
    np.testing.assert_array_equal(v.left_filled[0], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(v.right[0, :, 0], [20, 30, 40, 50, 60, 70, 70, 70])
    np.testing.assert_array_equal(v.right_filled[0], [0, 0, 0, 0, 0, 0, 1, 1])
    assert v.left.shape == (1, 8, 3) and v.left.dtype == np.uint8
    np.testing.assert_array_equal(v.left[..., 0], v.left[..., 2])


def test_subpixel_shift_interpolates_by_hand():
    # d = 1.5: left x shows source x - 1.5 -> 10 * (x - 1.5) (linear between the two pixels).
    # Column 1 = source -0.5 is inside the half-pixel footprint of pixel 0 (the left cap
    # [a_0 - 1/2, a_0) = [1, 1.5)), so it is rendered, not filled. Right: x shows x + 1.5;
    # column 5 shows 65; column 6 (source 7.5) is past pixel 7's footprint [5.5, 6) -> filled.
    v = render_stereo(ramp_row(8), np.full((1, 8), 1.5, np.float32), return_disparity=True)
    np.testing.assert_array_equal(v.left[0, :, 0], [0, 0, 5, 15, 25, 35, 45, 55])
    np.testing.assert_array_equal(v.left_filled[0], [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(v.right[0, :, 0], [15, 25, 35, 45, 55, 65, 65, 65])
    np.testing.assert_array_equal(v.right_filled[0], [0, 0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(v.left_disparity, 1.5)


def test_zero_disparity_is_identity():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 9, 3), dtype=np.uint8)
    v = render_stereo(img, np.zeros((5, 9), np.float32))
    np.testing.assert_array_equal(v.left, img)
    np.testing.assert_array_equal(v.right, img)
    assert not v.left_filled.any() and not v.right_filled.any()


def test_occlusion_and_background_fill_by_hand():
    # Background d = 1, a 2-pixel object at columns 3, 4 with d = 4 (colours 30, 40).
    # Left targets a = [1, 2, 3, 7, 8, 6, 7, 8]: the object lands on 7 (8 is outside), where it
    # hides background pixel 6 (7 -> 70 loses: nearer wins). Columns 4, 5 are disoccluded; both
    # neighbours (3: pixel 2, 6: pixel 5) are background at d = 1, so the left one (20) is used.
    d = np.array([[1, 1, 1, 4, 4, 1, 1, 1]], np.float32)
    v = render_stereo(ramp_row(8), d, return_disparity=True)
    np.testing.assert_array_equal(v.left[0, :, 0], [0, 0, 10, 20, 20, 20, 50, 30])
    np.testing.assert_array_equal(v.left_filled[0], [1, 0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_allclose(v.left_disparity[0], [1, 1, 1, 1, 1, 1, 1, 4])
    # Right targets a = [-1, 0, 1, -1, 0, 4, 5, 6]: at 0 the object (pixel 4) hides pixel 1.
    np.testing.assert_array_equal(v.right[0, :, 0], [40, 20, 20, 20, 50, 60, 70, 70])
    np.testing.assert_array_equal(v.right_filled[0], [0, 0, 1, 1, 0, 0, 0, 1])


def test_fill_takes_the_farther_neighbour_not_the_foreground():
    # Wide foreground (d = 5, colour 200) on a far background (d = 1, colour 10 * column).
    # Left eye: the hole opens between background (left, d = 1) and foreground (right, d = 5) ->
    # background colour. Right eye: mirror image, background from the right.
    w = 24
    img = ramp_row(w, step=5)
    img[:, 8:16] = 200
    d = np.ones((1, w), np.float32)
    d[:, 8:16] = 5.0
    v = render_stereo(img, d, fill="row")   # the side choice, by hand ("smooth" then averages background)
    # Left: background pixel 7 lands on 8 (its right cap covers nothing more: [8, 8.5) -> 8),
    # the object starts at 8 + 5 = 13 (left cap [12.5, 13) covers no pixel centre).
    # Holes 9..12 copy pixel 7's colour 35.
    np.testing.assert_array_equal(v.left_filled[0, 9:13], 1)
    np.testing.assert_array_equal(v.left[0, 9:13, 0], 35)
    np.testing.assert_array_equal(v.left[0, 13:21, 0], 200)
    # Right: object at 3..10, background pixel 16 at 15; holes 11..14 copy 16 * 5 = 80.
    np.testing.assert_array_equal(v.right[0, 3:11, 0], 200)
    np.testing.assert_array_equal(v.right_filled[0, 11:15], 1)
    np.testing.assert_array_equal(v.right[0, 11:15, 0], 80)


def test_fill_runs_by_hand():
    # Row 0: holes at 1-2 between disparities 5 (left) and 2 (right) -> the right (farther) side;
    #        holes at 5 (end of the row) -> only a left neighbour.
    # Row 1: holes at 0-1 (start of the row, right after row 0's last hole in flat order) -> only
    #        a right neighbour; holes at 3-4 between disparities 1 and 1 (a tie) -> the left side.
    # Row 2: all holes -> reported as orphans, untouched.
    hole = torch.tensor([[0, 1, 1, 0, 0, 1], [1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.int32)
    disp = torch.tensor([[5.0, 0, 0, 2, 7, 0], [0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    ids = torch.arange(18, dtype=torch.int32).view(3, 6) * 10
    orphans = _fill_from_background(hole, lambda idx: disp.view(-1)[idx], (ids,))
    np.testing.assert_array_equal(ids.numpy(), [[0, 30, 30, 30, 40, 40],
                                                [80, 80, 80, 80, 80, 110],
                                                [120, 130, 140, 150, 160, 170]])
    np.testing.assert_array_equal(orphans.numpy(), np.arange(12, 18))
    assert _fill_from_background(torch.zeros(2, 3, dtype=torch.int32), lambda idx: idx, (ids,)) is None


def test_fragments_between_holes_are_dropped_by_hand():
    # Row: holes at 1, 3-4, 7; rendered fragments 2 (1 px) and 5-6 (2 px) lie between holes.
    # drop_fragments=1 drops pixel 2 only: run 1-4 between pixel 0 (d 9) and 5 (d 1) -> right (50);
    # run 7 between 6 (d 1) and 8 (d 1) -> left (60).
    hole = torch.tensor([[0, 1, 0, 1, 1, 0, 0, 1, 0]], dtype=torch.int32)
    disp = torch.tensor([[9.0, 0, 5, 0, 0, 1, 1, 0, 1]])
    ids = torch.arange(9).view(1, 9) * 10
    _fill_from_background(hole, lambda idx: disp.view(-1)[idx], (ids,), drop_fragments=1)
    np.testing.assert_array_equal(ids[0].numpy(), [0, 50, 50, 50, 50, 50, 60, 60, 80])
    np.testing.assert_array_equal(hole[0].numpy(), [0, 1, 1, 1, 1, 0, 0, 1, 0])
    # drop_fragments=2 also drops 5-6: run 1-7 between pixel 0 (d 9) and 8 (d 1) -> right (80).
    hole = torch.tensor([[0, 1, 0, 1, 1, 0, 0, 1, 0]], dtype=torch.int32)
    ids = torch.arange(9).view(1, 9) * 10
    _fill_from_background(hole, lambda idx: disp.view(-1)[idx], (ids,), drop_fragments=2)
    np.testing.assert_array_equal(ids[0].numpy(), [0, 80, 80, 80, 80, 80, 80, 80, 80])
    np.testing.assert_array_equal(hole[0].numpy(), [0, 1, 1, 1, 1, 1, 1, 1, 0])


def test_thin_object_keeps_its_width():
    # A 1-pixel object (d = 5) on background (d = 1): no neighbour joins it, its half-pixel caps
    # [a - 1/2, a + 1/2) still cover exactly one column in each eye.
    w = 20
    img = np.full((1, w, 3), 50, np.uint8)
    img[0, 8] = 250
    d = np.ones((1, w), np.float32)
    d[0, 8] = 5.0
    v = render_stereo(img, d)
    assert (v.left[0, :, 0] == 250).sum() == 1 and v.left[0, 13, 0] == 250
    assert (v.right[0, :, 0] == 250).sum() == 1 and v.right[0, 3, 0] == 250


def test_slanted_row_has_no_cracks():
    # Disparity growing by 0.8 px per pixel: every segment is stretched to 1.8 px in the left view
    # (two target pixels each) and must be drawn without holes between the first and last pixel.
    w = 16
    d = (np.arange(w, dtype=np.float32) * 0.8)[None]
    v = render_stereo(ramp_row(w, step=15), d)
    first, last = 0, (w - 1) + d[0, -1]          # targets of the first and last pixel centres
    inside = np.arange(w)[(np.arange(w) >= first) & (np.arange(w) <= last)]
    assert not v.left_filled[0, inside].any()
    # Colour at x: the source position s solves s + 0.8 s = x -> s = x / 1.8, colour 15 s.
    np.testing.assert_allclose(v.left[0, inside, 0], np.floor(15 * inside / 1.8 + 0.5), atol=1)


def test_max_stretch_controls_what_is_an_edge():
    # Segment lengths 1 + 1.5 = 2.5 px: an edge for max_stretch = 1 (holes), drawn for 2.
    d = (np.arange(8, dtype=np.float32) * 1.5)[None]
    holes_default = render_stereo(ramp_row(8), d).left_filled
    stretched = render_stereo(ramp_row(8), d, max_stretch=2.0)
    assert holes_default[0, 1:8].sum() >= 4
    assert not stretched.left_filled[0, 0:8].any()
    # x = 2.5 s -> s = x / 2.5, colour 10 s, rounded.
    np.testing.assert_allclose(stretched.left[0, :8, 0], np.floor(10 * np.arange(8) / 2.5 + 0.5), atol=1)


def test_no_fill_leaves_black_holes():
    v = render_stereo(ramp_row(8) + 5, np.full((1, 8), 2.0, np.float32), fill=False)
    np.testing.assert_array_equal(v.left[0, :, 0], [0, 0, 5, 15, 25, 35, 45, 55])


def test_everything_outside_the_frame_gives_black_filled_rows():
    v = render_stereo(ramp_row(6) + 1, np.full((1, 6), 50.0, np.float32))
    assert v.left_filled.all() and v.right_filled.all()
    assert (v.left == 0).all() and (v.right == 0).all()


def test_render_eye_matches_render_stereo():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (6, 20, 3), dtype=np.uint8)
    d = rng.uniform(0, 4, (6, 20)).astype(np.float32)
    both = render_stereo(img, d)
    left, filled, _ = render_eye(img, d, "left")
    np.testing.assert_array_equal(left, both.left)
    np.testing.assert_array_equal(filled, both.left_filled)
    with pytest.raises(ValueError):
        render_eye(img, d, "middle")


@pytest.mark.parametrize("device", DEVICES)
def test_chunks_workers_and_tensors_agree(device):
    # Random depth with many edges: the chunking (1 row vs 7 rows), the worker threads and the
    # tensor/numpy front ends must not change a single pixel.
    rng = np.random.default_rng(2)
    h, w = 23, 57
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = rng.choice([0.7, 1.5, 4.0], size=(h, w)) * rng.uniform(0.95, 1.05, (h, w))
    disp = disparity_from_depth(torch.from_numpy(depth), 40.0, 0.1, 6.0)
    ref = StereoWarper(h, w, chunk_rows=1, workers=1).render(img, disp.numpy(), return_disparity=True)
    for chunk_rows, workers in [(7, 2), (h, 1), (5, 3)]:
        warper = StereoWarper(h, w, device=device, chunk_rows=chunk_rows, workers=workers)
        out = warper.render(torch.from_numpy(img).to(device), disp.to(device), return_disparity=True)
        np.testing.assert_array_equal(out.left.cpu().numpy(), ref.left)
        np.testing.assert_array_equal(out.right.cpu().numpy(), ref.right)
        np.testing.assert_array_equal(out.left_filled.cpu().numpy(), ref.left_filled)
        np.testing.assert_array_equal(out.right_filled.cpu().numpy(), ref.right_filled)
        np.testing.assert_allclose(out.right_disparity.cpu().numpy(), ref.right_disparity, rtol=0, atol=1e-5)


def test_non_finite_disparity_is_zero():
    d = np.array([[2.0, np.nan, np.inf, -np.inf, 2.0, 2.0]], np.float32)
    v = render_stereo(ramp_row(6), d, return_disparity=True)
    ref = render_stereo(ramp_row(6), np.nan_to_num(d, nan=0, posinf=0, neginf=0), return_disparity=True)
    np.testing.assert_array_equal(v.left, ref.left)
    np.testing.assert_array_equal(v.right, ref.right)
    assert np.isfinite(v.left_disparity).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="resize"):
        render_stereo(ramp_row(8), np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError):
        StereoWarper(4, 4, max_stretch=0)
    with pytest.raises(ValueError):
        disparity_from_depth(torch.ones(2, 2), 0.0, 0.063, 6.0)


# ------------------------------------------------------------------------------------------------
# depth -> disparity, resize
# ------------------------------------------------------------------------------------------------
def test_disparity_from_depth_by_hand():
    # fx = 1000 px, IPD = 64 mm -> each eye 32 mm away: d = 1000 * 0.032 / Z.
    z = torch.tensor([[1.0, 2.0, 0.0], [float("nan"), -1.0, 8.0]])
    d = disparity_from_depth(z, 1000.0, 0.064, far_m=8.0)
    np.testing.assert_allclose(d.numpy(), [[32.0, 16.0, 4.0], [4.0, 4.0, 4.0]], rtol=1e-6)
    assert d.dtype == torch.float32


def test_resize_depth_nearest_keeps_values():
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = resize_depth(z, 4, 6)
    np.testing.assert_array_equal(out.numpy(), np.repeat(np.repeat(z.numpy(), 2, 0), 3, 1))
    assert resize_depth(z, 2, 2) is z


# ------------------------------------------------------------------------------------------------
# packing
# ------------------------------------------------------------------------------------------------
def test_pack_formats_by_hand():
    left = np.zeros((2, 4, 3), np.uint8)
    right = np.zeros((2, 4, 3), np.uint8)
    left[..., 0] = [[10, 20, 30, 40], [50, 60, 70, 80]]
    left[..., 1] = 1
    right[..., 0] = 100
    right[..., 1] = [[2, 4, 6, 8], [10, 12, 14, 16]]
    right[..., 2] = 9
    sbs = pack_stereo(left, right, "sbs")
    assert sbs.shape == (2, 8, 3)
    np.testing.assert_array_equal(sbs[:, :4], left)
    np.testing.assert_array_equal(sbs[:, 4:], right)
    tb = pack_stereo(left, right, "tb")
    assert tb.shape == (4, 4, 3)
    np.testing.assert_array_equal(tb[:2], left)
    np.testing.assert_array_equal(tb[2:], right)
    half = pack_stereo(left, right, "half-sbs")
    assert half.shape == (2, 4, 3)
    # Pairs of columns are averaged: (10 + 20) / 2 = 15, (30 + 40) / 2 = 35, ...
    np.testing.assert_array_equal(half[:, :2, 0], [[15, 35], [55, 75]])
    np.testing.assert_array_equal(half[:, 2:, 1], [[3, 7], [11, 15]])
    half_tb = pack_stereo(left, right, "half-tb")
    assert half_tb.shape == (2, 4, 3)
    np.testing.assert_array_equal(half_tb[0, :, 0], [30, 40, 50, 60])  # rows averaged
    np.testing.assert_array_equal(half_tb[1, :, 1], [6, 8, 10, 12])
    ana = pack_stereo(left, right, "anaglyph")
    np.testing.assert_array_equal(ana[..., 0], left[..., 0])   # red from the left eye
    np.testing.assert_array_equal(ana[..., 1:], right[..., 1:])  # green, blue from the right eye
    for fmt in FORMATS:
        h, w = pack_stereo(left, right, fmt).shape[:2]
        assert packed_size(2, 4, fmt) == (h, w)
    with pytest.raises(ValueError):
        pack_stereo(left, right, "over-under")


def test_pack_tensors_stay_tensors():
    left = torch.zeros(3, 5, 3, dtype=torch.uint8)
    out = pack_stereo(left, left + 1, "half-sbs")
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (3, 4, 3)
    assert packed_size(3, 5, "half-tb") == (2, 5)


# ------------------------------------------------------------------------------------------------
# analytic scenes: exact left / right views by ray casting
# ------------------------------------------------------------------------------------------------
H, W = 60, 120
INTR = intrinsics_from_fov(H, W, xfov=60.0)
IPD = 0.30  # a wide baseline so that the tiny test images get shifts of several pixels


def rays(intr) -> np.ndarray:
    """(H, W, 3) float64 ray directions with z = 1 through the pixel centres."""
    u, v = np.meshgrid(np.arange(intr.width, dtype=np.float64), np.arange(intr.height, dtype=np.float64))
    return np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], axis=-1)


def eye_origin(eye: str) -> np.ndarray:
    """Camera centre of an eye in the source camera's frame: the left eye is at -IPD/2 on x."""
    return np.array([-IPD / 2 if eye == "left" else IPD / 2, 0.0, 0.0]) if eye else np.zeros(3)


def plane_hits(origin: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """(H, W, 3) points where the rays of a camera at ``origin`` meet the plane n . P = offset."""
    dirs = rays(INTR)
    t = (offset - normal @ origin) / (dirs @ normal)
    return origin + t[..., None] * dirs


def wall_texture(p: np.ndarray) -> np.ndarray:
    """Smooth bluish texture on the world point p (periods of >= 12 pixels at the tested depths)."""
    x, y = p[..., 0], p[..., 1]
    r = 40 + 20 * np.sin(2 * np.pi * x / 0.9)
    g = 120 + 50 * np.sin(2 * np.pi * (0.6 * x + y) / 0.8)
    b = 170 + 40 * np.cos(2 * np.pi * (x - 0.7 * y) / 1.0)
    return np.stack([r, g, b], axis=-1)


def box_texture(p: np.ndarray) -> np.ndarray:
    """Smooth reddish texture (R > G everywhere, unlike the wall)."""
    x, y = p[..., 0], p[..., 1]
    r = 200 + 40 * np.sin(2 * np.pi * (x + y) / 0.25)
    g = 60 + 30 * np.cos(2 * np.pi * x / 0.3)
    b = 50 + 20 * np.sin(2 * np.pi * y / 0.2)
    return np.stack([r, g, b], axis=-1)


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)


def fx_disparity(depth: np.ndarray) -> np.ndarray:
    return disparity_from_depth(torch.from_numpy(depth), INTR.fx, IPD, far_m=100.0).numpy()


def test_fronto_parallel_plane_is_a_pure_shift():
    z0 = 2.5
    normal, offset = np.array([0.0, 0.0, 1.0]), z0
    src_pts = plane_hits(np.zeros(3), normal, offset)
    colour = to_u8(wall_texture(src_pts))
    depth = src_pts[..., 2].astype(np.float32)
    d = INTR.fx * IPD / 2 / z0
    assert 5 < d < 7 and abs(d - round(d)) > 0.2  # a sub-pixel shift of a few pixels
    views = render_stereo(colour, fx_disparity(depth))
    margin = int(math.ceil(d)) + 2
    for eye, img in (("left", views.left), ("right", views.right)):
        truth = to_u8(wall_texture(plane_hits(eye_origin(eye), normal, offset)))
        value = psnr(img[:, margin:-margin], truth[:, margin:-margin])
        assert value >= 40.0, (eye, value)
        filled = views.left_filled if eye == "left" else views.right_filled
        assert not filled[:, margin:-margin].any()


def test_slanted_plane_has_no_holes_and_matches_ray_casting():
    # Plane turned 50 degrees about the vertical axis: depth from ~1.4 m to ~6 m across the image.
    theta = math.radians(50.0)
    normal = np.array([math.sin(theta), 0.0, math.cos(theta)])
    offset = 2.2
    src_pts = plane_hits(np.zeros(3), normal, offset)
    depth = src_pts[..., 2]
    assert depth.min() > 1.0 and depth.max() / depth.min() > 3.0
    e1 = np.array([math.cos(theta), 0.0, -math.sin(theta)])   # in-plane axes for the texture

    def texture(p):
        q = np.stack([p @ e1, p[..., 1]], axis=-1) * 0.7
        return wall_texture(np.concatenate([q, np.zeros_like(q[..., :1])], axis=-1))

    colour = to_u8(texture(src_pts))
    views = render_stereo(colour, fx_disparity(depth.astype(np.float32)))
    for eye, img, filled in (("left", views.left, views.left_filled), ("right", views.right, views.right_filled)):
        pts = plane_hits(eye_origin(eye), normal, offset)
        truth = to_u8(texture(pts))
        # Compare where the eye sees a part of the plane that the camera saw (not at its borders).
        u_src = INTR.fx * pts[..., 0] / pts[..., 2] + INTR.cx
        inside = (u_src >= 1.0) & (u_src <= W - 2.0)
        inside[:, :1] = inside[:, -1:] = False
        assert inside.mean() > 0.7
        assert not filled[inside].any(), eye
        value = psnr(img[inside], truth[inside])
        assert value >= 35.0, (eye, value)


def box_scene():
    """Wall at 4 m and a fronto-parallel box face at 1.5 m covering columns 40..79, rows 15..44."""
    z_wall, z_box = 4.0, 1.5
    u0, u1, v0, v1 = 40, 80, 15, 45
    # Box extent in metres: pixel footprints [u0 - 1/2, u1 - 1/2) at the box depth.
    bx = ((u0 - 0.5 - INTR.cx) * z_box / INTR.fx, (u1 - 0.5 - INTR.cx) * z_box / INTR.fx)
    by = ((v0 - 0.5 - INTR.cy) * z_box / INTR.fy, (v1 - 0.5 - INTR.cy) * z_box / INTR.fy)

    def cast(origin):
        wall = plane_hits(origin, np.array([0.0, 0.0, 1.0]), z_wall)
        box = plane_hits(origin, np.array([0.0, 0.0, 1.0]), z_box)
        on_box = (box[..., 0] >= bx[0]) & (box[..., 0] < bx[1]) & (box[..., 1] >= by[0]) & (box[..., 1] < by[1])
        colour = np.where(on_box[..., None], box_texture(box), wall_texture(wall))
        depth = np.where(on_box, z_box, z_wall)
        # Wall points the source camera could not see (behind the box): the disocclusions.
        u = INTR.fx * wall[..., 0] / wall[..., 2] + INTR.cx
        v = INTR.fy * wall[..., 1] / wall[..., 2] + INTR.cy
        hidden = (u >= u0 - 0.5) & (u < u1 - 0.5) & (v >= v0 - 0.5) & (v < v1 - 0.5) & ~on_box
        return to_u8(colour), depth.astype(np.float32), hidden

    return cast


def soften(colour: np.ndarray, depth: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A k-pixel horizontal box blur of the colour and of the inverse depth: the soft edges of real
    cameras and depth networks (ramps of in-between depths and colours at every depth edge)."""
    from numpy.lib.stride_tricks import sliding_window_view

    pad = ((0, 0), (k // 2, k // 2))
    inv = sliding_window_view(np.pad(1.0 / depth, pad, mode="edge"), k, axis=1).mean(-1)
    col = sliding_window_view(np.pad(colour.astype(float), pad + ((0, 0),), mode="edge"), k, axis=1).mean(-1)
    return to_u8(col), (1.0 / inv).astype(np.float32)


def test_soft_depth_edges_do_not_streak_the_disocclusion(capsys):
    # With soft edges the ramp pixels land spread out over the disoccluded strip; kept, they would
    # streak it with box colours (checked: most of it); dropped, the strip is wall-coloured.
    cast = box_scene()
    colour, depth = soften(*cast(np.zeros(3))[:2])
    report = []
    for drop in (2, 0):
        views = render_stereo(colour, fx_disparity(depth), drop_fragments=drop)
        for eye, img in (("left", views.left), ("right", views.right)):
            truth, _, hidden = cast(eye_origin(eye))
            strip = hidden & (np.arange(W) > 8)[None] & (np.arange(W) < W - 8)[None]
            boxlike = (img[strip][:, 0].astype(int) > img[strip][:, 1].astype(int)).mean()
            if drop:
                assert boxlike <= 0.05, (eye, boxlike)
                report.append(f"{eye}: box-coloured {boxlike:.1%}, PSNR strip {psnr(img[strip], truth[strip]):.1f} dB")
            else:
                assert boxlike > 0.3, (eye, boxlike)  # what the fragment dropping prevents
    with capsys.disabled():
        print("\nsoft-edged box scene: " + "; ".join(report))


def test_box_in_front_of_wall_fills_disocclusions_with_wall(capsys):
    cast = box_scene()
    colour, depth, _ = cast(np.zeros(3))
    views = render_stereo(colour, fx_disparity(depth))
    report = []
    for eye, img, filled in (("left", views.left, views.left_filled), ("right", views.right, views.right_filled)):
        truth, _, hidden = cast(eye_origin(eye))
        strip = hidden & (np.arange(W) > 8)[None] & (np.arange(W) < W - 8)[None]  # not the border strips
        assert strip.sum() > 100
        # The disoccluded strip is what was filled, and it is filled with wall, not box.
        assert filled[strip].mean() > 0.95
        boxlike = img[strip][:, 0].astype(int) > img[strip][:, 1].astype(int)  # box: R > G, wall: R < G
        assert boxlike.mean() <= 0.05, (eye, boxlike.mean())
        # Everything else matches the ray-cast view (edge columns of the box excluded: a pixel
        # there is half box, half wall in the ray-cast truth).
        rest = ~strip & (np.arange(W) > 8)[None] & (np.arange(W) < W - 8)[None]
        value_rest = psnr(img[rest], truth[rest])
        value_strip = psnr(img[strip], truth[strip])
        assert value_rest >= 30.0, (eye, value_rest)
        report.append(f"{eye}: strip {strip.sum()} px, box-coloured {boxlike.mean():.1%}, "
                      f"PSNR strip {value_strip:.1f} dB, rest {value_rest:.1f} dB")
    with capsys.disabled():
        print("\nbox scene: " + "; ".join(report))

"""Pinhole geometry: FOV <-> focal length, intrinsics, back-projection (hand-computed values)."""

import math

import numpy as np
import pytest

from mvda.ops.geometry import (
    Intrinsics,
    backproject,
    focal_from_fov,
    fov_from_focal,
    intrinsics_from_fov,
    pixel_grid,
    project,
)


def test_focal_from_fov_hand_values():
    # 90 degrees: tan(45) = 1, so f = half the image side.
    assert focal_from_fov(640, 90.0) == pytest.approx(320.0, rel=1e-12)
    # 60 degrees: f = 320 / tan(30) = 320 * sqrt(3).
    assert focal_from_fov(640, 60.0) == pytest.approx(320.0 * math.sqrt(3.0), rel=1e-12)


@pytest.mark.parametrize("fov", [1.0, 30.0, 48.0, 90.0, 120.0, 179.0])
@pytest.mark.parametrize("size", [64, 1280, 1919])
def test_fov_focal_round_trip(size, fov):
    focal = focal_from_fov(size, fov)
    assert fov_from_focal(size, focal) == pytest.approx(fov, rel=1e-12)
    assert focal_from_fov(size, fov_from_focal(size, focal)) == pytest.approx(focal, rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, -10.0, 180.0, 200.0, float("nan"), float("inf")])
def test_fov_out_of_range_raises(bad):
    with pytest.raises(ValueError):
        focal_from_fov(640, bad)


def test_intrinsics_from_one_fov_gives_square_pixels():
    intr = intrinsics_from_fov(720, 1280, xfov=90.0)
    assert intr.fx == pytest.approx(640.0) and intr.fy == pytest.approx(640.0)
    assert (intr.cx, intr.cy) == (639.5, 359.5)
    # the vertical FOV follows from the aspect ratio: 2 atan(360 / 640)
    assert intr.yfov == pytest.approx(math.degrees(2 * math.atan(360 / 640)), rel=1e-12)
    same = intrinsics_from_fov(720, 1280, yfov=intr.yfov)
    assert same.fx == pytest.approx(intr.fx, rel=1e-12)


def test_intrinsics_from_both_fovs_and_errors():
    intr = intrinsics_from_fov(100, 200, xfov=90.0, yfov=90.0)
    assert (intr.fx, intr.fy) == (pytest.approx(100.0), pytest.approx(50.0))
    with pytest.raises(ValueError, match="--xfov"):
        intrinsics_from_fov(200, 100)
    with pytest.raises(ValueError):
        intrinsics_from_fov(100, 0, xfov=40)


def test_principal_point_lands_on_the_optical_axis():
    intr = intrinsics_from_fov(3, 5, xfov=48.0)  # principal point is pixel (2, 1)
    depth = np.full((3, 5), 7.5, dtype=np.float32)
    pts = backproject(depth, intr)
    assert pts.shape == (3, 5, 3) and pts.dtype == np.float32
    np.testing.assert_array_equal(pts[1, 2], [0.0, 0.0, 7.5])


def test_backproject_hand_computed_and_project_inverse():
    intr = Intrinsics(width=4, height=2, fx=2.0, fy=4.0, cx=1.5, cy=0.5)
    depth = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    pts = backproject(depth, intr)
    # pixel (u=0, v=0), z=1: x = (0 - 1.5) * 1 / 2 = -0.75, y = (0 - 0.5) * 1 / 4 = -0.125
    np.testing.assert_allclose(pts[0, 0], [-0.75, -0.125, 1.0], rtol=0, atol=1e-7)
    # pixel (u=3, v=1), z=2: x = 1.5 * 2 / 2 = 1.5, y = 0.5 * 2 / 4 = 0.25
    np.testing.assert_allclose(pts[1, 3], [1.5, 0.25, 2.0], rtol=0, atol=1e-7)
    u, v = project(pts, intr)
    gu, gv = pixel_grid(2, 4)
    np.testing.assert_allclose(u, gu, atol=1e-6)
    np.testing.assert_allclose(v, gv, atol=1e-6)


def test_backproject_rejects_size_mismatch():
    intr = intrinsics_from_fov(2, 4, xfov=60)
    with pytest.raises(ValueError, match="4x2"):
        backproject(np.ones((4, 2), np.float32), intr)


def test_scaled_keeps_fov():
    intr = intrinsics_from_fov(720, 1280, xfov=48.0)
    small = intr.scaled(360, 640)
    assert small.xfov == pytest.approx(48.0, rel=1e-12)
    assert small.yfov == pytest.approx(intr.yfov, rel=1e-12)
    assert (small.cx, small.cy) == (319.5, 179.5)

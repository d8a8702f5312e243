"""VR180 equirectangular projection: known angles land on the hand-computed pixels, black outside the FOV."""

from __future__ import annotations

import math

import pytest
import torch

from mvda.ops.geometry import Intrinsics, intrinsics_from_fov
from mvda.ops.vr180 import VR180Projector, equirect_directions, vr180_eye_size, vr180_grid


def coordinate_image(h: int, w: int) -> torch.Tensor:
    """(H, W, 2) float: channel 0 = column index u, channel 1 = row index v (bilinear sampling returns
    the sampled position exactly)."""
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                          indexing="ij")
    return torch.stack([u, v], dim=-1)


def test_point_at_known_angle_lands_on_the_equirect_pixel():
    # 101 x 101 pinhole, f = 50 px, principal point (50, 50); S = 180: one pixel per degree.
    intr = Intrinsics(101, 101, 50.0, 50.0, 50.0, 50.0)
    out = VR180Projector(intr, 180).project(coordinate_image(101, 101))
    # Column 120's centre is at longitude 120.5 - 90 = 30.5 degrees, row 69's at latitude 90 - 69.5 = 20.5.
    lon, lat = math.radians(30.5), math.radians(20.5)
    u = 50 + 50 * math.tan(lon)  # x / z = tan(lon)
    v = 50 - 50 * math.tan(lat) / math.cos(lon)  # y / z = -tan(lat) / cos(lon)
    assert (u, v) == pytest.approx((79.4525, 28.3039), abs=1e-3)  # hand computed
    assert out[69, 120].tolist() == pytest.approx([u, v], abs=1e-3)
    # The view centre: the pinhole centre, between the four middle pixels (S even).
    centre = out[89:91, 89:91].reshape(4, 2).mean(0)
    assert centre.tolist() == pytest.approx([50.0, 50.0], abs=1e-3)


def test_outside_the_field_of_view_is_black_and_inside_is_not():
    intr = intrinsics_from_fov(60, 80, xfov=90.0)  # fx = 40; vertical half-FOV atan(29.5 / 40) ~ 36.9 deg
    img = torch.full((60, 80, 3), 200, dtype=torch.uint8)
    out = VR180Projector(intr, 180).project(img)
    assert out.dtype == torch.uint8 and out.shape == (180, 180, 3)
    assert (out[90, 90] == 200).all()  # straight ahead
    assert (out[90, 90 + 40] == 200).all()  # 40.5 deg right: inside the 45 deg half-FOV
    assert (out[90, 90 + 46] == 0).all()  # 46.5 deg right: outside
    assert (out[90, 90 - 47] == 0).all()  # 46.5 deg left
    assert (out[90 - 45, 90] == 0).all()  # 45.5 deg up: beyond the vertical half-FOV
    assert (out[90 - 30, 90] == 200).all()  # 30.5 deg up
    assert (out[:, :2] == 0).all() and (out[:2] == 0).all()  # the sphere's sides and poles
    # The black region is exactly where the grid says "outside".
    _, inside = vr180_grid(intr, 180)
    assert torch.equal(out[..., 0] > 0, inside)


def test_directions_are_unit_and_symmetric():
    d = equirect_directions(8)
    assert torch.allclose(d.norm(dim=-1), torch.ones(8, 8, dtype=d.dtype))
    assert (d[..., 2] > 0).all()  # the whole image is the front half-sphere
    assert torch.allclose(d[:, :4, 0], -d[:, 4:, 0].flip(1))  # left/right mirror
    assert (d[:4, :, 1] < 0).all()  # top rows look up (y down)


def test_masks_stay_masks():
    intr = intrinsics_from_fov(20, 20, xfov=90.0)
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[:, 10:] = True
    out = VR180Projector(intr, 40).project(mask)
    assert out.dtype == torch.bool and out.shape == (40, 40)
    assert out[20, 25] and not out[20, 15] and not out[20, 39]


def test_eye_size_keeps_centre_resolution_even_and_capped():
    intr = intrinsics_from_fov(720, 1280, xfov=90.0)  # fx = 640
    assert vr180_eye_size(intr) == 2010  # pi * 640 = 2010.6 -> even 2010
    assert vr180_eye_size(intr, max_size=1001) == 1000
    assert vr180_eye_size(intrinsics_from_fov(1080, 1920, xfov=60.0)) == 2048  # capped
    with pytest.raises(ValueError):
        vr180_eye_size(intr, max_size=1)


def test_rejects_a_wrong_size():
    proj = VR180Projector(intrinsics_from_fov(20, 30, xfov=60.0), 16)
    with pytest.raises(ValueError, match="projector"):
        proj.project(torch.zeros(30, 20, 3))

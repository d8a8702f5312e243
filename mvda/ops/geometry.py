"""Pinhole camera geometry shared by the stereo renderer and the 3D viewer (pure functions).

Conventions (OpenCV camera frame): x to the right, y down, z forward (along the optical axis), all in
metres. Pixel (u, v) means column u, row v, and integer coordinates are pixel *centres*, so the image
centre of a W x H image is ((W - 1) / 2, (H - 1) / 2), which is where the principal point sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Intrinsics",
    "focal_from_fov",
    "fov_from_focal",
    "intrinsics_from_fov",
    "pixel_grid",
    "backproject",
    "project",
]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``(height, width)`` pixels: focal lengths (fx, fy) and principal
    point (cx, cy), in pixels."""

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def xfov(self) -> float:
        """Horizontal field of view in degrees."""
        return fov_from_focal(self.width, self.fx)

    @property
    def yfov(self) -> float:
        """Vertical field of view in degrees."""
        return fov_from_focal(self.height, self.fy)

    def matrix(self) -> np.ndarray:
        """(3, 3) float64 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, height: int, width: int) -> "Intrinsics":
        """The same camera (same fields of view) for an image resized to ``(height, width)`` pixels."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(height, width, self.fx * sx, self.fy * sy, (width - 1) / 2, (height - 1) / 2)


def _check_fov(fov_deg: float, name: str) -> float:
    fov = float(fov_deg)
    if not (0.0 < fov < 180.0) or not math.isfinite(fov):
        raise ValueError(f"{name} must be between 0 and 180 degrees (exclusive), got {fov_deg}")
    return fov


def focal_from_fov(size_px: float, fov_deg: float) -> float:
    """Focal length in pixels for an image side of ``size_px`` pixels spanning ``fov_deg`` degrees.

    ``f = (size_px / 2) / tan(fov / 2)``; the FOV must be in (0, 180).
    """
    fov = _check_fov(fov_deg, "field of view")
    return (size_px / 2.0) / math.tan(math.radians(fov) / 2.0)


def fov_from_focal(size_px: float, focal_px: float) -> float:
    """Field of view in degrees of an image side of ``size_px`` pixels with focal length ``focal_px``."""
    if not focal_px > 0:
        raise ValueError(f"focal length must be > 0, got {focal_px}")
    return math.degrees(2.0 * math.atan((size_px / 2.0) / focal_px))


def intrinsics_from_fov(height: int, width: int, xfov: float | None = None,
                        yfov: float | None = None) -> Intrinsics:
    """Pinhole intrinsics from a horizontal and/or vertical field of view (degrees).

    With one FOV the pixels are square (fy = fx, i.e. the other FOV follows from the aspect ratio);
    with both, each axis gets its own focal length. The principal point is the image centre.
    Raises ValueError when neither is given or a FOV is outside (0, 180).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if xfov is None and yfov is None:
        raise ValueError("give a horizontal (--xfov) or vertical (--yfov) field of view")
    fx = focal_from_fov(width, _check_fov(xfov, "--xfov")) if xfov is not None else None
    fy = focal_from_fov(height, _check_fov(yfov, "--yfov")) if yfov is not None else None
    fx = fx if fx is not None else fy
    fy = fy if fy is not None else fx
    return Intrinsics(int(height), int(width), float(fx), float(fy), (width - 1) / 2.0, (height - 1) / 2.0)


def pixel_grid(height: int, width: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(u, v)``, each (H, W): u = column index, v = row index."""
    u = np.arange(width, dtype=dtype)[None, :].repeat(height, axis=0)
    v = np.arange(height, dtype=dtype)[:, None].repeat(width, axis=1)
    return u, v


def backproject(depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Back-project a depth map to camera-frame 3D points.

    Args:
        depth: (H, W) depth along the optical axis (z), metres.
        intr: intrinsics for an image of the same size.

    Returns:
        (H, W, 3) float32 points (x, y, z) in metres: x = (u - cx) z / fx, y = (v - cy) z / fy.
    """
    depth = np.asarray(depth, dtype=np.float32)
    h, w = depth.shape
    if (w, h) != (intr.width, intr.height):
        raise ValueError(f"depth is {w}x{h} but intrinsics are for {intr.width}x{intr.height}")
    u, v = pixel_grid(h, w)
    x = (u - np.float32(intr.cx)) * depth / np.float32(intr.fx)
    y = (v - np.float32(intr.cy)) * depth / np.float32(intr.fy)
    return np.stack([x, y, depth], axis=-1)


def project(points: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points (..., 3) in metres to pixel coordinates ``(u, v)`` (each (...))."""
    points = np.asarray(points, dtype=np.float64)
    z = points[..., 2]
    return intr.fx * points[..., 0] / z + intr.cx, intr.fy * points[..., 1] / z + intr.cy

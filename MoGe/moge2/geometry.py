"""Camera recovery for MoGe-2: view-plane uv grid, focal/shift solver, intrinsics, depth -> points.

Conventions (as upstream MoGe):

* ``focal`` is in units of **half the image diagonal**: a pixel at view-plane position ``uv`` (see
  :func:`normalized_view_plane_uv`) sees the ray ``(uv / focal, 1)``.
* Intrinsics are **normalised**: ``fx`` in image widths, ``fy`` in image heights, principal point
  ``(0.5, 0.5)``; pixel ``(i, j)`` has uv ``((j + 0.5) / W, (i + 0.5) / H)``.
* The affine point map predicted by the network is ``(x, y, z - shift)`` of the true camera-space
  points; :func:`recover_focal_shift` finds ``focal`` and ``shift`` by a least-squares fit
  (``scipy.optimize.least_squares``, Levenberg-Marquardt, exactly the call upstream makes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "normalized_view_plane_uv",
    "solve_optimal_focal_shift",
    "solve_optimal_shift",
    "solver_samples",
    "recover_focal_shift",
    "focal_from_fov_x",
    "fov_x_from_focal",
    "intrinsics_from_focal",
    "depth_to_points",
]

#: Size (rows, cols) of the nearest-neighbour downsample the solver works on.
SOLVER_DOWNSAMPLE_HW = (64, 64)

#: ``ftol`` of the Levenberg-Marquardt fit (upstream's value: it stops early, see the fixtures README).
SOLVER_FTOL = 1e-3


def normalized_view_plane_uv(
    width: int, height: int, aspect_ratio: float | None = None, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pixel-centre view-plane coordinates ``(height, width, 2)``, channels ``(u, v)``, in units of the
    half diagonal of an image with ``aspect_ratio`` (width / height; default ``width / height``).

    ``u`` runs over ``linspace(-sx (w-1)/w, sx (w-1)/w, w)`` with ``sx = ar / sqrt(1 + ar^2)``, ``v``
    likewise with ``sy = 1 / sqrt(1 + ar^2)``.
    """
    ar = width / height if aspect_ratio is None else aspect_ratio
    span_x = ar / (1 + ar**2) ** 0.5
    span_y = 1 / (1 + ar**2) ** 0.5
    u = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    v = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype, device=device)
    u, v = torch.meshgrid(u, v, indexing="xy")
    return torch.stack([u, v], dim=-1)


def _split(uv: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return uv.reshape(-1, 2), xyz[..., :2].reshape(-1, 2), xyz[..., 2].reshape(-1)


def _best_focal(uv: np.ndarray, xy: np.ndarray, z: np.ndarray, shift) -> np.ndarray:
    """Closed-form focal for a given shift: ``sum(p . uv) / sum(p . p)`` with ``p = xy / (z + shift)``."""
    projected = xy / (z + shift)[:, None]
    return (projected * uv).sum() / np.square(projected).sum()


def solve_optimal_focal_shift(uv: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``|f(s) xy / (z + s) - uv|^2`` over the shift ``s`` (focal ``f(s)`` in closed form).

    Args:
        uv: ``(N, 2)`` float32 view-plane coordinates.
        xyz: ``(N, 3)`` float32 affine points.

    Returns:
        ``(shift, focal)``: float32 shift, and the focal recomputed from it in float32.
        The fit is ``scipy.optimize.least_squares(r, x0=0, ftol=1e-3, method="lm")`` in float64.
    """
    from scipy.optimize import least_squares

    uv, xy, z = _split(uv, xyz)

    def residual(shift: np.ndarray) -> np.ndarray:
        projected = xy / (z + shift)[:, None]
        focal = (projected * uv).sum() / np.square(projected).sum()
        return (focal * projected - uv).ravel()

    solution = least_squares(residual, x0=0, ftol=SOLVER_FTOL, method="lm")
    shift = solution["x"].squeeze().astype(np.float32)
    return shift, _best_focal(uv, xy, z, shift)


def solve_optimal_shift(uv: np.ndarray, xyz: np.ndarray, focal) -> np.ndarray:
    """Minimise ``|focal xy / (z + s) - uv|^2`` over the shift ``s`` for a known ``focal``
    (same least-squares call as :func:`solve_optimal_focal_shift`); returns the float32 shift."""
    from scipy.optimize import least_squares

    uv, xy, z = _split(uv, xyz)

    def residual(shift: np.ndarray) -> np.ndarray:
        return (focal * (xy / (z + shift)[:, None]) - uv).ravel()

    solution = least_squares(residual, x0=0, ftol=SOLVER_FTOL, method="lm")
    return solution["x"].squeeze().astype(np.float32)


def solver_samples(
    points: torch.Tensor, mask: torch.Tensor | None = None, downsample_size: tuple[int, int] = SOLVER_DOWNSAMPLE_HW,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The solver's inputs: ``(uv, xyz)`` float32 arrays ``(N_i, 2)``, ``(N_i, 3)`` per map.

    ``points`` ``(B, H, W, 3)``, the uv grid of an ``H`` x ``W`` image and ``mask`` ``(B, H, W)`` (as
    float, then ``> 0``) are downsampled to ``downsample_size`` (rows, cols) with torch's legacy
    ``'nearest'`` (``src = floor(dst * in / out)``); the valid samples are kept (all without a mask).
    """
    height, width = points.shape[-3], points.shape[-2]
    uv = normalized_view_plane_uv(width, height, dtype=points.dtype, device=points.device)
    points_lr = F.interpolate(points.permute(0, 3, 1, 2), downsample_size, mode="nearest").permute(0, 2, 3, 1)
    uv_lr = F.interpolate(uv.unsqueeze(0).permute(0, 3, 1, 2), downsample_size, mode="nearest").squeeze(0).permute(1, 2, 0)
    points_np = points_lr.detach().cpu().numpy()
    uv_np = uv_lr.cpu().numpy()
    if mask is None:
        return [(uv_np.reshape(-1, 2), p.reshape(-1, 3)) for p in points_np]
    mask_lr = F.interpolate(mask.to(torch.float32).unsqueeze(1), downsample_size, mode="nearest").squeeze(1) > 0
    mask_np = mask_lr.cpu().numpy()
    return [(uv_np[m], p[m]) for p, m in zip(points_np, mask_np)]


def recover_focal_shift(
    points: torch.Tensor, mask: torch.Tensor | None = None, focal: torch.Tensor | None = None,
    downsample_size: tuple[int, int] = SOLVER_DOWNSAMPLE_HW,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal and z shift of an affine point map (optical centre at the image centre, no distortion).

    The valid samples of a 64x64 nearest downsample (:func:`solver_samples`) are fitted with
    :func:`solve_optimal_focal_shift` (or :func:`solve_optimal_shift` when ``focal`` is given). A map
    with fewer than 2 valid samples gives focal 1 and shift 0.

    Args:
        points: ``(..., H, W, 3)`` affine point map.
        mask: ``(..., H, W)`` bool valid pixels, or ``None``.
        focal: ``(...)`` known focal (half-diagonal units), or ``None`` to solve for it.

    Returns:
        ``(focal, shift)``, each of shape ``(...)`` in ``points.dtype``; a given ``focal`` is returned as is.
    """
    shape = points.shape
    points = points.reshape(-1, *shape[-3:])
    mask = None if mask is None else mask.reshape(-1, *shape[-3:-1])
    focal = None if focal is None else focal.reshape(-1)
    focal_np = None if focal is None else focal.cpu().numpy()

    shifts, focals = [], []
    for i, (uv_i, xyz_i) in enumerate(solver_samples(points, mask, downsample_size)):
        if uv_i.shape[0] < 2:
            focals.append(1.0)
            shifts.append(0.0)
            continue
        if focal_np is None:
            shift_i, focal_i = solve_optimal_focal_shift(uv_i, xyz_i)
            focals.append(float(focal_i))
        else:
            shift_i = solve_optimal_shift(uv_i, xyz_i, focal_np[i])
        shifts.append(float(shift_i))

    batch_shape = shape[:-3]
    shift_t = torch.tensor(shifts, device=points.device, dtype=points.dtype).reshape(batch_shape)
    if focal is None:
        focal_t = torch.tensor(focals, device=points.device, dtype=points.dtype).reshape(batch_shape)
    else:
        focal_t = focal.reshape(batch_shape)
    return focal_t, shift_t


def focal_from_fov_x(fov_x_deg: float | torch.Tensor, aspect_ratio: float, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Focal (half-diagonal units) of a horizontal field of view in degrees:
    ``ar / sqrt(1 + ar^2) / tan(fov_x / 2)``, computed in ``dtype`` (float32 as upstream)."""
    fov = torch.as_tensor(fov_x_deg, device=device, dtype=dtype)
    return aspect_ratio / (1 + aspect_ratio**2) ** 0.5 / torch.tan(torch.deg2rad(fov / 2))


def fov_x_from_focal(focal: float | torch.Tensor, aspect_ratio: float) -> float | torch.Tensor:
    """Horizontal field of view in degrees of a focal in half-diagonal units (inverse of :func:`focal_from_fov_x`)."""
    half_width = aspect_ratio / (1 + aspect_ratio**2) ** 0.5
    if isinstance(focal, torch.Tensor):
        return torch.rad2deg(2 * torch.atan(half_width / focal))
    return math.degrees(2 * math.atan(half_width / focal))


def intrinsics_from_focal(focal: torch.Tensor, aspect_ratio: float) -> torch.Tensor:
    """Normalised intrinsics ``(..., 3, 3)`` ``[[fx, 0, 0.5], [0, fy, 0.5], [0, 0, 1]]`` of a focal
    ``(...)`` in half-diagonal units: ``fx = focal/2 sqrt(1 + ar^2) / ar``, ``fy = focal/2 sqrt(1 + ar^2)``."""
    diag = (1 + aspect_ratio**2) ** 0.5
    fx = focal / 2 * diag / aspect_ratio
    fy = focal / 2 * diag
    zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
    half = torch.full_like(fx, 0.5)
    return torch.stack([fx, zeros, half, zeros, fy, half, zeros, zeros, ones], dim=-1).unflatten(-1, (3, 3))


def depth_to_points(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space point map ``(..., H, W, 3)`` of a depth map ``(..., H, W)`` and normalised
    intrinsics ``(..., 3, 3)``: pixel centres ``u = (j + 0.5) / W``, ``v = (i + 0.5) / H`` give
    ``[u d, v d, d, 1] @ inv(K4)^T`` (``K4`` = intrinsics padded to 4x4), i.e.
    ``x = (u - cx) / fx * d``, ``y = (v - cy) / fy * d``, ``z = d``."""
    height, width = depth.shape[-2:]
    dtype, device = depth.dtype, depth.device
    u = torch.linspace(0.5 / width, 1 - 0.5 / width, width, dtype=dtype, device=device)
    v = torch.linspace(0.5 / height, 1 - 0.5 / height, height, dtype=dtype, device=device)
    u, v = torch.meshgrid(u, v, indexing="xy")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (H, W, 3)
    k = intrinsics[..., None, :, :]  # (..., 1, 3, 3): broadcast over rows
    k4 = torch.cat([
        torch.cat([k, torch.zeros((*k.shape[:-2], 3, 1), dtype=k.dtype, device=device)], dim=-1),
        torch.tensor([[0, 0, 0, 1]], dtype=k.dtype, device=device).expand(*k.shape[:-2], 1, 4),
    ], dim=-2)
    homogeneous = uv1 * depth[..., None]
    homogeneous = torch.cat([homogeneous, torch.ones_like(homogeneous[..., :1])], dim=-1)
    return (homogeneous @ torch.linalg.inv(k4).mT)[..., :3]

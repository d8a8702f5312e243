"""VR180: a pinhole image re-projected onto the front half-sphere as a 180 x 180 degree equirectangular image.

Each output pixel (row i, column j) of an (S, S) eye image looks in the direction of longitude
``lon = ((j + 0.5) / S - 0.5) * 180`` degrees (left -90, right +90) and latitude
``lat = (0.5 - (i + 0.5) / S) * 180`` degrees (top +90, bottom -90). That direction
``(x, y, z) = (cos lat sin lon, -sin lat, cos lat cos lon)`` (x right, y down, z forward, the camera
convention of :mod:`mvda.ops.geometry`) is projected through the pinhole ``u = cx + fx x / z``,
``v = cy + fy y / z`` (pixel centres at integer indices) and the source is sampled bilinearly there.
Directions outside the source frame (or behind the camera) are black. This is the layout VR180
players (headsets, YouTube) expect for an equirectangular half-sphere whose metadata crops a quarter
of the full 360-degree width from each side (see :mod:`mvda.io.spatial_meta`).

Output size (:func:`vr180_eye_size`): the equirectangular image has ``S / pi`` pixels per radian,
the pinhole image has ``f`` pixels per radian at its centre, so ``S = pi * f`` keeps the source's
resolution in the middle of the view (and oversamples towards its edges, where the pinhole image
is stretched). S is rounded to an even number and capped (default 2048 per eye, so the side-by-side
frame of 4096 x 2048 stays within H.264 level 5.1).

:class:`VR180Projector` builds the sampling grid once for an image size and field of view and
applies it with :func:`torch.nn.functional.grid_sample` on the image's device (CPU or CUDA).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mvda.ops.geometry import Intrinsics

__all__ = ["DEFAULT_MAX_EYE_SIZE", "VR180Projector", "equirect_directions", "vr180_eye_size", "vr180_grid"]

#: Default cap on the side of one eye's square equirectangular image, in pixels.
DEFAULT_MAX_EYE_SIZE = 2048


def vr180_eye_size(intr: Intrinsics, max_size: int = DEFAULT_MAX_EYE_SIZE) -> int:
    """Side S (pixels, even, >= 2) of one eye's (S, S) VR180 image: ``pi * max(fx, fy)`` (the source's
    resolution at the view centre), rounded to an even number and capped at ``max_size``."""
    if max_size < 2:
        raise ValueError(f"max_size must be >= 2, got {max_size}")
    size = 2 * round(math.pi * max(intr.fx, intr.fy) / 2)
    return int(max(2, min(size, max_size - max_size % 2)))


def equirect_directions(size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(S, S, 3) unit view directions (x right, y down, z forward) of the pixel centres of an (S, S)
    180 x 180 degree equirectangular image (see the module docstring for the angles)."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    centres = (torch.arange(size, dtype=dtype) + 0.5) / size
    lon = (centres - 0.5) * math.pi  # (S,) per column
    lat = (0.5 - centres) * math.pi  # (S,) per row
    lat_g, lon_g = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([torch.cos(lat_g) * torch.sin(lon_g), -torch.sin(lat_g), torch.cos(lat_g) * torch.cos(lon_g)],
                       dim=-1)


def vr180_grid(intr: Intrinsics, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel of an (S, S) VR180 eye image samples an (H, W) pinhole image.

    Returns ``grid`` (S, S, 2) float32, grid_sample coordinates for ``align_corners=False`` (x, y in
    [-1, 1] across the pixel areas), and ``inside`` (S, S) bool: the direction is in front of the camera
    and within the image's area (pixel centres at 0..W-1, so the area spans -0.5..W-0.5).
    """
    d = equirect_directions(size)
    z = d[..., 2]
    front = z > 1e-9
    zs = torch.where(front, z, torch.ones_like(z))
    u = intr.cx + intr.fx * d[..., 0] / zs
    v = intr.cy + intr.fy * d[..., 1] / zs
    inside = front & (u >= -0.5) & (u <= intr.width - 0.5) & (v >= -0.5) & (v <= intr.height - 0.5)
    gx = (2.0 * u + 1.0) / intr.width - 1.0
    gy = (2.0 * v + 1.0) / intr.height - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    grid = torch.where(inside[..., None], grid, torch.zeros_like(grid))  # keep the numbers finite
    return grid.to(torch.float32), inside


class VR180Projector:
    """Re-project (H, W, C) pinhole images of one size and field of view to (S, S, C) VR180 eye images.

    The grid is built once (on ``device``), cropped to the rows and columns that see the source (a 70-degree
    view covers about a tenth of the half-sphere, so only that part is sampled); :meth:`project` samples
    bilinearly (``nearest`` for masks) and leaves the rest black.
    """

    def __init__(self, intr: Intrinsics, size: int, device: torch.device | str = "cpu") -> None:
        self.intr = intr
        self.size = int(size)
        grid, inside = vr180_grid(intr, self.size)
        rows = torch.nonzero(inside.any(dim=1)).flatten()
        cols = torch.nonzero(inside.any(dim=0)).flatten()
        if rows.numel() == 0:  # (cannot happen for a camera looking forward; kept for safety)
            rows = cols = torch.zeros(1, dtype=torch.long)
        self._rows = slice(int(rows[0]), int(rows[-1]) + 1)
        self._cols = slice(int(cols[0]), int(cols[-1]) + 1)
        self.device = torch.device(device)
        self._grid = grid[self._rows, self._cols][None].to(self.device)  # (1, h, w, 2) of the crop
        self._inside = inside[self._rows, self._cols].to(self.device)  # (h, w)

    def project(self, image: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """(H, W, C) or (H, W) image (uint8, bool or float) -> (S, S, C) or (S, S) of the same dtype.

        uint8 results are rounded; bool images are sampled nearest (a mask stays a mask).
        """
        if tuple(image.shape[:2]) != (self.intr.height, self.intr.width):
            raise ValueError(f"image is {tuple(image.shape[:2])}, projector is for "
                             f"{(self.intr.height, self.intr.width)}")
        squeeze = image.ndim == 2
        src = image[..., None] if squeeze else image
        dtype = src.dtype
        if dtype == torch.bool:
            mode = "nearest"
        x = src.to(self._grid.device, torch.float32).permute(2, 0, 1)[None]
        y = F.grid_sample(x, self._grid, mode=mode, padding_mode="border", align_corners=False)[0]
        y = y.permute(1, 2, 0) * self._inside[..., None]
        if dtype == torch.bool:
            y = y > 0.5
        elif not dtype.is_floating_point:
            y = y.round_().clamp_(0, 255).to(dtype)
        else:
            y = y.to(dtype)
        out = torch.zeros((self.size, self.size, y.shape[-1]), dtype=dtype, device=y.device)
        out[self._rows, self._cols] = y
        return out[..., 0] if squeeze else out

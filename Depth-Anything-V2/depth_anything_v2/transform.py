"""Input preprocessing of Depth-Anything-V2 / Video-Depth-Anything, as torch operations.

The official pipeline resizes so the *shorter* scaled side reaches ``input_size`` (aspect ratio kept,
both sides multiples of 14), resizes with bicubic interpolation, and normalises with the ImageNet
mean/std. Here the same steps run on any torch device, on a whole batch at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "network_input_size", "constrain_to_multiple", "prepare_images"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def constrain_to_multiple(value: float, multiple: int = 14, min_val: int = 0) -> int:
    """Round ``value`` to the nearest multiple of ``multiple`` (round-half-even, as ``np.round``),
    rounding up instead when the result would fall below ``min_val``."""
    y = int(round(value / multiple)) * multiple
    if y < min_val:
        y = int(math.ceil(value / multiple)) * multiple
    return y


def network_input_size(height: int, width: int, input_size: int = 518, multiple: int = 14) -> tuple[int, int]:
    """Network input size (h, w) for an image of ``height`` x ``width`` pixels.

    Same rule as the official ``Resize(keep_aspect_ratio=True, ensure_multiple_of=14,
    resize_method='lower_bound')``: both sides are scaled by the larger of ``input_size/height``
    and ``input_size/width`` (so the shorter side reaches ``input_size``), then each side is rounded
    to a multiple of ``multiple``, rounding up if that would fall below ``input_size``.

    Example: 60x80 at 70 gives (70, 98); 48x64 at 56 gives (56, 70).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    scale = max(input_size / height, input_size / width)
    h = constrain_to_multiple(scale * height, multiple, min_val=input_size)
    w = constrain_to_multiple(scale * width, multiple, min_val=input_size)
    return h, w


def prepare_images(
    images: torch.Tensor | np.ndarray,
    size: tuple[int, int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Turn RGB uint8 images into normalised network input.

    Steps: divide by 255, bicubic resize to ``size`` (``align_corners=False``, no antialias, the
    same kernel as ``cv2.INTER_CUBIC`` on float images), ImageNet normalisation.

    Args:
        images: ``(N, H, W, 3)`` or ``(H, W, 3)`` RGB images, uint8 (or float in [0, 255]),
            torch tensor or numpy array.
        size: network input size ``(h, w)``, e.g. from :func:`network_input_size`.
        device: where to compute; defaults to the tensor's device (CPU for numpy input).

    Returns:
        ``(N, 3, h, w)`` float32 tensor on ``device``.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3) or (H, W, 3), got {tuple(images.shape)}")
    if device is not None:
        images = images.to(device, non_blocking=True)
    h, w = int(size[0]), int(size[1])
    # One pass: convert to float32 straight into a new contiguous (N, 3, H, W) tensor (never the caller's
    # frames, which may already be float), then divide in place; the same values as a cast, a copy and a
    # division done one after the other.
    x = torch.empty((images.shape[0], 3, images.shape[1], images.shape[2]), dtype=torch.float32, device=images.device)
    x.copy_(images.permute(0, 3, 1, 2)).div_(255.0)
    if (x.shape[2], x.shape[3]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)

"""Red-cyan anaglyphs from a left and a right eye image.

Each method is a pair of 3 x 3 matrices (``left``, ``right``) applied to the gamma-encoded RGB values
(in [0, 1]) of the two eyes: ``out = clip(L @ left_rgb + R @ right_rgb, 0, 1)`` per pixel.

* ``dubois`` (default): Eric Dubois' least-squares red-cyan matrices, which choose the output colour
  whose appearance through red/cyan glasses best matches each eye's image (least ghosting, colours
  mostly kept). The matrices are the ones Dubois published for red-cyan glasses.
* ``color``: red channel from the left eye, green and blue from the right (the plain anaglyph; strong
  ghosting and retinal rivalry on saturated reds/cyans).
* ``half-color``: the left eye's luma (Rec. 601 weights) in red, the right eye's green and blue.
* ``gray``: the left eye's luma in red, the right eye's luma in green and blue (no colour, least rivalry).

Anaglyphs are encoded without chroma subsampling (4:4:4): the red channel carries one eye alone, so
4:2:0 would smear each eye's edges into the other.
"""

from __future__ import annotations

import torch

__all__ = ["ANAGLYPH_METHODS", "DEFAULT_ANAGLYPH_METHOD", "anaglyph", "anaglyph_matrices"]

ANAGLYPH_METHODS = ("dubois", "color", "half-color", "gray")
DEFAULT_ANAGLYPH_METHOD = "dubois"

_LUMA = (0.299, 0.587, 0.114)  # Rec. 601
_ZERO = (0.0, 0.0, 0.0)

_MATRICES: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]] = {
    "dubois": (
        ((0.456, 0.500, 0.176), (-0.040, -0.038, -0.016), (-0.015, -0.021, -0.005)),
        ((-0.043, -0.088, -0.002), (0.378, 0.734, -0.018), (-0.072, -0.113, 1.226)),
    ),
    "color": (
        ((1.0, 0.0, 0.0), _ZERO, _ZERO),
        (_ZERO, (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ),
    "half-color": (
        (_LUMA, _ZERO, _ZERO),
        (_ZERO, (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ),
    "gray": (
        (_LUMA, _ZERO, _ZERO),
        (_ZERO, _LUMA, _LUMA),
    ),
}


def anaglyph_matrices(method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (3, 3) float32 matrices (left, right) of ``method`` (output RGB rows x input RGB columns)."""
    if method not in _MATRICES:
        raise ValueError(f"unknown anaglyph method {method!r}; choose one of {', '.join(ANAGLYPH_METHODS)}")
    left, right = _MATRICES[method]
    return torch.tensor(left, dtype=torch.float32), torch.tensor(right, dtype=torch.float32)


def anaglyph(left: torch.Tensor, right: torch.Tensor, method: str = DEFAULT_ANAGLYPH_METHOD) -> torch.Tensor:
    """(H, W, 3) red-cyan anaglyph of two (H, W, C >= 3) eye images (uint8 0..255 or float 0..1).

    Returns the input's dtype (uint8 rounded); extra channels beyond RGB are ignored.
    """
    if left.shape != right.shape:
        raise ValueError(f"eye images differ in shape: {tuple(left.shape)} vs {tuple(right.shape)}")
    if left.ndim != 3 or left.shape[2] < 3:
        raise ValueError("an anaglyph needs colour images (H, W, 3)")
    ml, mr = (m.to(left.device) for m in anaglyph_matrices(method))
    scale = 255.0 if left.dtype == torch.uint8 else 1.0
    lf = left[..., :3].to(torch.float32) / scale
    rf = right[..., :3].to(torch.float32) / scale
    out = (lf @ ml.T + rf @ mr.T).clamp_(0.0, 1.0)
    if left.dtype == torch.uint8:
        return (out * 255.0).round_().to(torch.uint8)
    return out.to(left.dtype)

"""MoGe-2 as the metric anchor of the converter's fit (``--model vda+moge2``).

The rolling and the global fit map Video-Depth-Anything's relative output to metres with a metric
network's depth of the same frames (``convert._MetricStatsQueue``, which calls its network's
``infer_images``). :class:`MoGeMetricDepth` gives MoGe-2 that interface, with the field of view fixed
to the video's (``infer(..., fov_x=...)``): MoGe-2's metres then agree with the FOV that is written into
the depth file's tags and used by stereo and the viewer.

Pixels MoGe-2 masks out (sky, no surface) get infinite depth, i.e. inverse depth 0, where
Video-Depth-Anything's relative inverse depth also goes to 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["anchor_num_tokens", "MoGeMetricDepth"]


def anchor_num_tokens(height: int, width: int, input_size: int, num_tokens_range: tuple[int, int] | list[int]) -> int:
    """MoGe-2's token count for frames of ``height`` x ``width``: the ViT tokens Depth-Anything-V2 sees at
    ``input_size`` (shorter side ``input_size / 14`` patches, the longer one in proportion), clamped to
    the model's trained ``num_tokens_range``.

    >>> anchor_num_tokens(360, 640, 518, (1200, 3600)), anchor_num_tokens(360, 640, 266, (1200, 3600))
    (2433, 1200)
    """
    low, high = int(num_tokens_range[0]), int(num_tokens_range[1])
    short, long = min(height, width), max(height, width)
    tokens = (input_size / 14.0) ** 2 * long / short
    return int(min(high, max(low, math.floor(tokens))))


class MoGeMetricDepth:
    """Metric depth by MoGe-2 with a fixed horizontal field of view, callable as metric Depth-Anything-V2's
    ``infer_images`` (the interface ``convert._MetricStatsQueue`` uses).

    Args:
        model: a loaded ``moge2.MoGeModel``.
        fov_x: the video's horizontal field of view in degrees; None: MoGe-2 recovers each frame's own
            (the metres are then not tied to one FOV).
        num_tokens: MoGe-2's token count; None: :func:`anchor_num_tokens` of each call's ``input_size``.
    """

    def __init__(self, model: Any, fov_x: float | None, num_tokens: int | None = None) -> None:
        self.model = model
        self.fov_x = fov_x
        self.num_tokens = num_tokens

    def infer_images(self, frames: torch.Tensor, input_size: int, output_size: tuple[int, int], precision: str,
                     batch_size: int, device: torch.device) -> torch.Tensor:
        """``(K, h, w, 3)`` RGB frames in [0, 255] (uint8 or float) -> ``(K, *output_size)`` depth in metres
        (``+inf`` where MoGe-2 sees no surface), on ``device``. The inverse depth is resized (bilinear)
        when ``output_size`` differs from ``(h, w)``."""
        height, width = int(frames.shape[1]), int(frames.shape[2])
        tokens = self.num_tokens or anchor_num_tokens(height, width, input_size, self.model.num_tokens_range)
        maps = []
        for chunk in frames.split(max(1, int(batch_size))):
            image = chunk.to(device).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.inference_mode():
                out = self.model.infer(image, num_tokens=tokens, fov_x=self.fov_x, precision=precision)
            inverse = out["depth"].float().reciprocal()  # masked pixels: 1 / inf = 0
            inverse = torch.where(torch.isfinite(inverse) & (inverse > 0), inverse, torch.zeros_like(inverse))
            if tuple(output_size) != (height, width):
                inverse = F.interpolate(inverse[:, None], size=tuple(output_size), mode="bilinear",
                                        align_corners=False)[:, 0]
            maps.append(inverse.reciprocal_())
        return torch.cat(maps)

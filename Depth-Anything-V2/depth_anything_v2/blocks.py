"""DPT fusion blocks: residual conv units and feature-fusion (refine-net) blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResidualConvUnit", "FeatureFusionBlock", "Scratch"]


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convolutions (with bias), shape preserving."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out, inplace=True))
        return out + x


class FeatureFusionBlock(nn.Module):
    """Refine-net fusion block.

    ``forward(x0)`` or ``forward(x0, x1)``: ``out = x0 (+ resConfUnit1(x1))``, then ``resConfUnit2``,
    bilinear upsampling (``align_corners=True``) to ``size`` (default: 2x), then the 1x1 ``out_conv``.

    The 1x1 convolution is applied *before* the upsampling: both are linear maps acting on different
    axes and bilinear weights sum to one (so the bias commutes), which gives the same result with
    4x less work.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        # Registration order = official state_dict order: out_conv, resConfUnit1, resConfUnit2.
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, *xs: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        if len(xs) not in (1, 2):
            raise ValueError(f"FeatureFusionBlock takes 1 or 2 inputs, got {len(xs)}")
        out = xs[0]
        if len(xs) == 2:
            out = out + self.resConfUnit1(xs[1])
        out = self.resConfUnit2(out)
        out = self.out_conv(out)
        if size is None:
            target = (out.shape[-2] * 2, out.shape[-1] * 2)
        else:
            target = (int(size[0]), int(size[1]))
        return F.interpolate(out, size=target, mode="bilinear", align_corners=True)


class Scratch(nn.Module):
    """Container named ``scratch`` in the official checkpoints.

    Holds ``layerK_rn`` (3x3 conv, no bias, ``out_channels[K-1] -> features``), ``refinenetK``
    (:class:`FeatureFusionBlock`), ``output_conv1`` and ``output_conv2``, in that order.
    """

    def __init__(self, in_channels: Sequence[int], features: int, output_conv2: nn.Module) -> None:
        super().__init__()
        c1, c2, c3, c4 = in_channels
        self.layer1_rn = nn.Conv2d(c1, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(c2, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(c3, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(c4, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        self.refinenet4 = FeatureFusionBlock(features)
        self.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, stride=1, padding=1)
        self.output_conv2 = output_conv2

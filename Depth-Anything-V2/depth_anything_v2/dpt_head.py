"""DPT decoder head: reassembles ViT tokens into a 4-level feature pyramid and fuses it into depth."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import Scratch

__all__ = ["DPTHead", "make_output_conv2"]

PATCH_SIZE = 14


def make_output_conv2(features: int, activation: str, head_features_2: int = 32) -> nn.Sequential:
    """Last convolutions: ``3x3 conv (features//2 -> 32), ReLU, 1x1 conv (32 -> 1), activation``.

    ``activation`` is ``"sigmoid"`` (metric Depth-Anything-V2) or ``"relu"`` (Video-Depth-Anything).
    """
    if activation == "sigmoid":
        act: nn.Module = nn.Sigmoid()
    elif activation == "relu":
        act = nn.ReLU(inplace=True)
    else:
        raise ValueError(f"unknown output activation {activation!r}: use 'sigmoid' or 'relu'")
    return nn.Sequential(
        nn.Conv2d(features // 2, head_features_2, kernel_size=3, stride=1, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(head_features_2, 1, kernel_size=1, stride=1, padding=0),
        act,
    )


class DPTHead(nn.Module):
    """DPT head of Depth-Anything-V2.

    Args:
        in_channels: encoder width D.
        features: width of the fusion path.
        out_channels: widths of the four reassembled pyramid levels.
        use_bn, use_clstoken: must be False (the only configuration of the official checkpoints).
        output_activation: ``"sigmoid"`` or ``"relu"``.
        output_fp32: run ``output_conv2`` in float32 with autocast disabled (Video-Depth-Anything does).
        frame_chunk: images decoded at once by the fine stages (refinenet2, refinenet1, output convs), which
            hold full-resolution maps; ``None`` picks it from ``chunk_elements``. Memory bound only: results
            do not depend on it.
        chunk_elements: budget for one full-resolution ``output_conv1`` map of a chunk (values).

    Input: four ``(patch_tokens (B, N, D), class_token (B, D))`` pairs and the patch grid
    ``(patch_h, patch_w)``; output ``(B, 1, 14*patch_h, 14*patch_w)``.
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 256,
        use_bn: bool = False,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        use_clstoken: bool = False,
        output_activation: str = "sigmoid",
        output_fp32: bool = False,
        frame_chunk: int | None = None,
        chunk_elements: int = 1 << 23,
    ) -> None:
        super().__init__()
        if use_bn or use_clstoken:
            raise ValueError("use_bn=True / use_clstoken=True are not supported (no official checkpoint uses them)")
        out_channels = [int(c) for c in out_channels]
        if len(out_channels) != 4:
            raise ValueError(f"out_channels must have 4 entries, got {out_channels}")
        self.output_fp32 = output_fp32
        self.frame_chunk = frame_chunk
        self.chunk_elements = int(chunk_elements)
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, kernel_size=1) for c in out_channels)
        c0, c1, _, c3 = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4, padding=0),
                nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2, padding=0),
                nn.Identity(),
                nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(out_channels, features, make_output_conv2(features, output_activation))

    # -- pieces -----------------------------------------------------------------------------------
    def reassemble(self, level: int, tokens: torch.Tensor, patch_h: int, patch_w: int) -> torch.Tensor:
        """Tokens ``(B, N, D)`` of pyramid level ``level`` (0..3) -> feature map after ``projects`` and
        ``resize_layers``: strides 4x, 2x, 1x, 1/2x of the patch grid (channels-last memory format)."""
        b, _, d = tokens.shape
        # (B, N, D) tokens are already a channels-last (B, D, h, w) map: no transpose copy, and the
        # whole head then runs channels-last, which oneDNN convolutions prefer (no layout reorders).
        x = tokens.reshape(b, patch_h, patch_w, d).permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=torch.channels_last)
        return self.resize_layers[level](self.projects[level](x))

    def decode_fine(
        self, path_3: torch.Tensor, layer_1: torch.Tensor, layer_2: torch.Tensor, patch_h: int, patch_w: int
    ) -> torch.Tensor:
        """Last two fusion stages and the output convolutions (all per-image operations).

        ``path_3`` is the refinenet3 output at the size of ``layer_2``; returns ``(B, 1, 14*ph, 14*pw)``.
        """
        s = self.scratch
        layer_1_rn = s.layer1_rn(layer_1)
        layer_2_rn = s.layer2_rn(layer_2)
        path_2 = s.refinenet2(path_3, layer_2_rn, size=layer_1_rn.shape[2:])
        del layer_2_rn
        path_1 = s.refinenet1(path_2, layer_1_rn)
        del path_2, layer_1_rn
        return self.output(path_1, patch_h, patch_w)

    def output(self, path_1: torch.Tensor, patch_h: int, patch_w: int) -> torch.Tensor:
        """``output_conv1``, bilinear resize (``align_corners=True``) to ``14*ph x 14*pw``, ``output_conv2``."""
        out = self.scratch.output_conv1(path_1)
        out = F.interpolate(out, size=(patch_h * PATCH_SIZE, patch_w * PATCH_SIZE), mode="bilinear", align_corners=True)
        if self.output_fp32:
            with torch.autocast(device_type=out.device.type, enabled=False):
                return self.scratch.output_conv2(out.float())
        return self.scratch.output_conv2(out)

    def fine_chunk(self, n: int, patch_h: int, patch_w: int) -> int:
        """Images per chunk of the fine stages (see ``frame_chunk`` / ``chunk_elements``)."""
        if self.frame_chunk:
            return max(1, int(self.frame_chunk))
        per_image = self.scratch.output_conv1.out_channels * (patch_h * PATCH_SIZE) * (patch_w * PATCH_SIZE)
        return max(1, min(n, self.chunk_elements // max(1, per_image)))

    def decode_fine_chunked(
        self, path_3: torch.Tensor, tokens_1: torch.Tensor, tokens_2: torch.Tensor, patch_h: int, patch_w: int
    ) -> torch.Tensor:
        """:meth:`decode_fine` over chunks of images, reassembling levels 1 and 2 from their tokens per
        chunk; returns ``(N, 1, 14*ph, 14*pw)``."""
        n = path_3.shape[0]
        step = self.fine_chunk(n, patch_h, patch_w)
        out: torch.Tensor | None = None
        for a in range(0, n, step):
            e = min(n, a + step)
            layer_1 = self.reassemble(0, tokens_1[a:e], patch_h, patch_w)
            layer_2 = self.reassemble(1, tokens_2[a:e], patch_h, patch_w)
            depth = self.decode_fine(path_3[a:e], layer_1, layer_2, patch_h, patch_w)
            del layer_1, layer_2
            if out is None:
                if e == n:
                    return depth
                out = torch.empty((n, *depth.shape[1:]), dtype=depth.dtype, device=depth.device)
            out[a:e] = depth
        if out is None:
            raise ValueError("empty batch")
        return out

    # -- full head --------------------------------------------------------------------------------
    def forward(self, out_features: Sequence, patch_h: int, patch_w: int) -> torch.Tensor:
        tokens = [f[0] for f in out_features]
        s = self.scratch
        layer_3_rn = s.layer3_rn(self.reassemble(2, tokens[2], patch_h, patch_w))
        layer_4_rn = s.layer4_rn(self.reassemble(3, tokens[3], patch_h, patch_w))
        path_4 = s.refinenet4(layer_4_rn, size=layer_3_rn.shape[2:])
        del layer_4_rn
        path_3 = s.refinenet3(path_4, layer_3_rn, size=(2 * patch_h, 2 * patch_w))
        del path_4, layer_3_rn
        return self.decode_fine_chunked(path_3, tokens[0], tokens[1], patch_h, patch_w)

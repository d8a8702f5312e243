"""Building blocks of MoGe-2: the DINOv2 encoder wrapper, the convolutional neck/heads and the scale MLP.

Module and attribute names follow the official ``moge/model/modules.py`` so the state_dict keys of
the released checkpoints match exactly (``encoder.backbone.*``, ``encoder.output_projections.N``,
``encoder.image_mean``/``image_std``, ``*.input_blocks.N``, ``*.resamplers.N.{0,1}``,
``*.res_blocks.N.M.layers.{2,5}``, ``*.output_blocks.N``, ``scale_head.{0,2,4}``).

The ViT is our DINOv2 (:mod:`depth_anything_v2.dinov2`): LayerNorm eps 1e-6, LayerScale, exact GELU,
qkv bias, positional table for 518x518 resampled bicubically with ``scale_factor=(n + 0.1) / 37``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_anything_v2.dinov2 import DINOv2, DinoVisionTransformer

__all__ = ["BACKBONES", "DINOv2Encoder", "ResidualConvBlock", "Resampler", "MLP", "ConvStack"]

#: MoGe backbone names -> our DINOv2 sizes (all patch 14, 518x518 positional table, no registers).
BACKBONES: dict[str, str] = {"dinov2_vits14": "vits", "dinov2_vitb14": "vitb", "dinov2_vitl14": "vitl"}

PATCH_SIZE = 14

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.2),
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}: use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def _norm(kind: str, channels: int) -> nn.Module:
    """``'group_norm'``: GroupNorm(C // 32, C); ``'layer_norm'``: GroupNorm(1, C);
    ``'instance_norm'``: InstanceNorm2d; ``'none'``: Identity (all as upstream, default eps)."""
    if kind == "group_norm":
        return nn.GroupNorm(channels // 32, channels)
    if kind == "layer_norm":
        return nn.GroupNorm(1, channels)
    if kind == "instance_norm":
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unsupported norm {kind!r}: use group_norm, layer_norm, instance_norm or none")


class DINOv2Encoder(nn.Module):
    """DINOv2 ViT whose selected block outputs are projected (1x1 conv each) and summed into one map.

    Input: RGB ``(B, 3, H, W)`` in [0, 1] (not normalised). It is resized to ``(14 rows, 14 cols)``
    bilinearly with antialiasing, normalised with the ImageNet mean/std buffers, and encoded.

    Args:
        backbone: ``"dinov2_vits14"``, ``"dinov2_vitb14"`` or ``"dinov2_vitl14"``.
        intermediate_layers: 0-based block indices (or an int: the last n blocks).
        dim_out: channels of the output map.
    """

    def __init__(self, backbone: str, intermediate_layers: int | Sequence[int], dim_out: int, **deprecated_kwargs) -> None:
        super().__init__()
        if deprecated_kwargs:
            warnings.warn(f"ignored encoder arguments: {deprecated_kwargs}", stacklevel=2)
        if backbone not in BACKBONES:
            raise ValueError(f"unsupported backbone {backbone!r}: use one of {', '.join(BACKBONES)}")
        self.intermediate_layers = intermediate_layers if isinstance(intermediate_layers, int) else list(intermediate_layers)
        self.backbone_name = backbone
        self.backbone: DinoVisionTransformer = DINOv2(BACKBONES[backbone])
        self.dim_features = self.backbone.embed_dim
        self.num_features = intermediate_layers if isinstance(intermediate_layers, int) else len(intermediate_layers)
        self.output_projections = nn.ModuleList(
            nn.Conv2d(self.dim_features, dim_out, kernel_size=1) for _ in range(self.num_features)
        )
        self.register_buffer("image_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(
        self, image: torch.Tensor, token_rows: int, token_cols: int, return_class_token: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Feature map ``(B, dim_out, token_rows, token_cols)`` (and the class token ``(B, C)`` of the
        last selected block, after the final LayerNorm, when ``return_class_token``)."""
        image_14 = F.interpolate(
            image, (token_rows * PATCH_SIZE, token_cols * PATCH_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        image_14 = (image_14 - self.image_mean) / self.image_std
        features = self.backbone.get_intermediate_layers(image_14, n=self.intermediate_layers, return_class_token=True)
        maps = [
            proj(tokens.permute(0, 2, 1).unflatten(2, (token_rows, token_cols)).contiguous())
            for proj, (tokens, _) in zip(self.output_projections, features)
        ]
        x = torch.stack(maps, dim=1).sum(dim=1)
        if return_class_token:
            return x, features[-1][1]
        return x


class ResidualConvBlock(nn.Module):
    """``x + conv(act(norm(conv(act(norm(x))))))`` with 3x3 replicate-padded convs.

    ``layers`` is ``[in_norm, act, conv, hidden_norm, act, conv]`` (keys ``layers.2``, ``layers.5``);
    ``skip_connection`` is a 1x1 conv when the channel count changes, else the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        hidden_channels: int | None = None,
        kernel_size: int = 3,
        padding_mode: str = "replicate",
        activation: str = "relu",
        in_norm: str = "layer_norm",
        hidden_norm: str = "group_norm",
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        pad = kernel_size // 2
        self.layers = nn.Sequential(
            _norm(in_norm, in_channels),
            _activation(activation),
            nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=pad, padding_mode=padding_mode),
            _norm(hidden_norm, hidden_channels),
            _activation(activation),
            nn.Conv2d(hidden_channels, out_channels, kernel_size, padding=pad, padding_mode=padding_mode),
        )
        self.skip_connection = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip_connection(x)
        return self.layers(x) + skip


class Resampler(nn.Sequential):
    """2x upsampling followed by a 3x3 replicate-padded conv.

    ``"conv_transpose"``: ConvTranspose2d(k=s=2) then the conv; ``"bilinear"``/``"nearest"``:
    ``nn.Upsample`` (bilinear with ``align_corners=False``) then the conv. The other upstream types
    (pixel shuffle, pooling) are not used by the released MoGe-2 models and are not implemented.
    """

    def __init__(self, in_channels: int, out_channels: int, type_: str, scale_factor: int = 2) -> None:
        conv = nn.Conv2d(out_channels if type_ == "conv_transpose" else in_channels, out_channels,
                         kernel_size=3, stride=1, padding=1, padding_mode="replicate")
        if type_ == "conv_transpose":
            super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=scale_factor, stride=scale_factor), conv)
        elif type_ in ("bilinear", "nearest"):
            up = nn.Upsample(scale_factor=scale_factor, mode=type_, align_corners=False if type_ == "bilinear" else None)
            super().__init__(up, conv)
        else:
            raise ValueError(f"unsupported resampler {type_!r}: use conv_transpose, bilinear or nearest")


class MLP(nn.Sequential):
    """``Linear, ReLU, ..., Linear`` through ``dims`` (keys ``0``, ``2``, ``4``, ...)."""

    def __init__(self, dims: Sequence[int]) -> None:
        dims = list(dims)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1]))
        super().__init__(*layers)


def _per_level(value, n: int) -> list:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * n


class ConvStack(nn.Module):
    """Multi-level convolutional stack (the MoGe-2 neck and heads), coarse to fine, 2x per level.

    For level ``i``: ``x = input_blocks[i](in[i])`` (i = 0) or ``x + input_blocks[i](in[i])``, then
    ``x = res_blocks[i](x)``, ``out[i] = output_blocks[i](x)``, and ``x = resamplers[i](x)`` before the
    next level. ``None`` in ``dim_in``/``dim_out`` means the identity (no 1x1 conv).

    Args:
        dim_in: input channels per level (or one value for all).
        dim_res_blocks: working channels per level.
        dim_out: output channels per level (or one value for all).
        resamplers: resampler type between consecutive levels (or one for all).
        dim_times_res_block_hidden: hidden width factor of the residual blocks.
        num_res_blocks: residual blocks per level (or one value for all).
        res_block_in_norm, res_block_hidden_norm, activation: residual block options.
    """

    def __init__(
        self,
        dim_in: int | None | Sequence[int | None],
        dim_res_blocks: Sequence[int],
        dim_out: int | None | Sequence[int | None],
        resamplers: str | Sequence[str],
        dim_times_res_block_hidden: int = 1,
        num_res_blocks: int | Sequence[int] = 1,
        res_block_in_norm: str = "layer_norm",
        res_block_hidden_norm: str = "group_norm",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        dims = list(dim_res_blocks)
        n = len(dims)
        ins, outs = _per_level(dim_in, n), _per_level(dim_out, n)
        kinds, counts = _per_level(resamplers, n - 1), _per_level(num_res_blocks, n)
        self.input_blocks = nn.ModuleList(
            nn.Conv2d(d_in, d, kernel_size=1) if d_in is not None else nn.Identity() for d_in, d in zip(ins, dims)
        )
        self.resamplers = nn.ModuleList(
            Resampler(d_prev, d_next, type_=kind, scale_factor=2) for d_prev, d_next, kind in zip(dims[:-1], dims[1:], kinds)
        )
        self.res_blocks = nn.ModuleList(
            nn.Sequential(*(
                ResidualConvBlock(d, d, dim_times_res_block_hidden * d, activation=activation,
                                  in_norm=res_block_in_norm, hidden_norm=res_block_hidden_norm)
                for _ in range(counts[i])
            ))
            for i, d in enumerate(dims)
        )
        self.output_blocks = nn.ModuleList(
            nn.Conv2d(d, d_out, kernel_size=1) if d_out is not None else nn.Identity() for d_out, d in zip(outs, dims)
        )

    def forward(self, in_features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level inputs (level ``i`` at ``2^i`` times the level-0 resolution) -> per-level outputs."""
        out_features = []
        x = None
        last = len(self.res_blocks) - 1
        for i in range(last + 1):
            feature = self.input_blocks[i](in_features[i])
            x = feature if i == 0 else x + feature
            x = self.res_blocks[i](x)
            out_features.append(self.output_blocks[i](x))
            if i < last:
                x = self.resamplers[i](x)
        return out_features

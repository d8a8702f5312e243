"""Video-Depth-Anything network (relative and metric): DINOv2 encoder + temporal DPT head.

Same class name, constructor arguments, ``forward`` and ``infer_video_depth`` as the official
``video_depth_anything/video_depth.py``; the state_dict layout is identical, so the official
checkpoints load with ``strict=True``. The encoder is the one of :mod:`depth_anything_v2`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_anything_v2.dinov2 import DINOv2
from depth_anything_v2.dpt import INTERMEDIATE_LAYER_IDX as _DAV2_INTERMEDIATE_LAYER_IDX
from depth_anything_v2.dpt import MODEL_CONFIGS as _DAV2_MODEL_CONFIGS

from .dpt_temporal import DPTHeadTemporal

__all__ = ["MODEL_CONFIGS", "INTERMEDIATE_LAYER_IDX", "VideoDepthAnything"]

#: Constructor arguments of each official model size (relative and metric models share them) and the
#: encoder blocks that feed the four DPT pyramid levels: the same table as Depth-Anything-V2's, whose
#: encoder and head widths Video-Depth-Anything reuses.
MODEL_CONFIGS: dict[str, dict] = _DAV2_MODEL_CONFIGS
INTERMEDIATE_LAYER_IDX: dict[str, list[int]] = _DAV2_INTERMEDIATE_LAYER_IDX

PATCH_SIZE = 14


class VideoDepthAnything(nn.Module):
    """Video-Depth-Anything.

    Args:
        encoder: ``"vits"``, ``"vitb"`` or ``"vitl"``.
        features, out_channels: head widths (see :data:`MODEL_CONFIGS`).
        use_bn, use_clstoken: must be False, as in every official checkpoint.
        num_frames: temporal positional table length (32).
        pe: ``"ape"``.
        metric: metric-depth checkpoint (changes only the stitching in :meth:`infer_video_depth`).
        encoder_chunk: frames encoded at once in :meth:`forward` (memory bound; no effect on results).
    """

    def __init__(
        self,
        encoder: str = "vitl",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        use_bn: bool = False,
        use_clstoken: bool = False,
        num_frames: int = 32,
        pe: str = "ape",
        metric: bool = False,
        encoder_chunk: int = 8,
    ) -> None:
        super().__init__()
        if encoder not in INTERMEDIATE_LAYER_IDX:
            raise ValueError(f"unknown encoder {encoder!r}: use one of {', '.join(INTERMEDIATE_LAYER_IDX)}")
        self.encoder = encoder
        self.intermediate_layer_idx = dict(INTERMEDIATE_LAYER_IDX)
        self.metric = bool(metric)
        self.encoder_chunk = int(encoder_chunk)
        self.pretrained = DINOv2(model_name=encoder)
        self.head = DPTHeadTemporal(
            self.pretrained.embed_dim, features, use_bn, out_channels=out_channels,
            use_clstoken=use_clstoken, num_frames=num_frames, pe=pe,
        )

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return self.pretrained.cls_token.device

    def encode(self, frames: torch.Tensor) -> tuple:
        """Encoder features of ``(N, 3, H, W)`` frames: four ``(tokens (N, h*w, D), cls (N, D))`` pairs,
        computed ``encoder_chunk`` frames at a time."""
        idx = self.intermediate_layer_idx[self.encoder]
        n = frames.shape[0]
        step = max(1, self.encoder_chunk)
        if step >= n:
            return self.pretrained.get_intermediate_layers(frames, idx, return_class_token=True)
        result: list[list[torch.Tensor]] | None = None
        for a in range(0, n, step):
            e = min(n, a + step)
            feats = self.pretrained.get_intermediate_layers(frames[a:e], idx, return_class_token=True)
            if result is None:
                result = [
                    [torch.empty((n, *t.shape[1:]), dtype=t.dtype, device=t.device),
                     torch.empty((n, *c.shape[1:]), dtype=c.dtype, device=c.device)]
                    for t, c in feats
                ]
            for (t, c), slot in zip(feats, result):
                slot[0][a:e] = t
                slot[1][a:e] = c
            del feats
        assert result is not None
        return tuple((t, c) for t, c in result)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` (H, W multiples of 14, T <= num_frames) -> depth ``(B, T, H, W)``
        (relative inverse depth, or metres for metric checkpoints; non-negative)."""
        if x.dim() != 5:
            raise ValueError(f"expected input of shape (B, T, 3, H, W), got {tuple(x.shape)}")
        b, t, _, h, w = x.shape
        return self.decode(self.encode(x.flatten(0, 1)), b, t, h, w)

    def decode(self, features: tuple, batch: int, frames: int, height: int, width: int) -> torch.Tensor:
        """Encoder features of ``batch * frames`` images (as :meth:`encode` returns them) -> depth
        ``(batch, frames, height, width)``: temporal head, resize to the input size, ReLU."""
        depth = self.head(features, height // PATCH_SIZE, width // PATCH_SIZE, frames)
        del features
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=True)
        depth = F.relu(depth)
        return depth.squeeze(1).unflatten(0, (batch, frames))

    def infer_video_depth(
        self,
        frames: Any,
        target_fps: float,
        input_size: int = 518,
        device: str | torch.device | None = None,
        fp32: bool | None = None,
        precision: str | None = None,
        **kwargs: Any,
    ):
        """Depth of a whole video with the official 32-frame windowing and stitching.

        Delegates to :func:`video_depth_anything.inference.infer_video_depth`; see it for the arguments.
        Returns ``(depth (N, H, W) float32, target_fps)``.
        """
        from .inference import infer_video_depth as _infer_video_depth

        return _infer_video_depth(
            self, frames, target_fps, input_size=input_size, device=device, fp32=fp32, precision=precision, **kwargs
        )

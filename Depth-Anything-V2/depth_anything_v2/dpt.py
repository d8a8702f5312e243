"""Depth-Anything-V2 metric depth network (DINOv2 encoder + DPT head, ``sigmoid * max_depth`` output).

Same class name, constructor arguments, ``forward`` and ``infer_image`` (BGR input) as the official
``metric_depth/depth_anything_v2/dpt.py``, so code written for it runs on this one; the state_dict
layout is identical, so the official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .precision import autocast_context
from .dinov2 import DINOv2
from .dpt_head import DPTHead
from .transform import network_input_size, prepare_images

__all__ = ["MODEL_CONFIGS", "INTERMEDIATE_LAYER_IDX", "DepthAnythingV2"]

#: Constructor arguments of each official model size.
MODEL_CONFIGS: dict[str, dict] = {
    "vits": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
}

#: Encoder blocks whose outputs feed the four DPT pyramid levels.
INTERMEDIATE_LAYER_IDX: dict[str, list[int]] = {
    "vits": [2, 5, 8, 11],
    "vitb": [2, 5, 8, 11],
    "vitl": [4, 11, 17, 23],
}

PATCH_SIZE = 14


class DepthAnythingV2(nn.Module):
    """Metric Depth-Anything-V2.

    Args:
        encoder: ``"vits"``, ``"vitb"`` or ``"vitl"``.
        features, out_channels: DPT head widths (see :data:`MODEL_CONFIGS`).
        use_bn, use_clstoken: must be False, as in every official checkpoint.
        max_depth: depth in metres that a sigmoid output of 1 maps to (20 indoor / Hypersim, 80 outdoor / VKITTI).
    """

    def __init__(
        self,
        encoder: str = "vitl",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        use_bn: bool = False,
        use_clstoken: bool = False,
        max_depth: float = 20.0,
    ) -> None:
        super().__init__()
        if encoder not in INTERMEDIATE_LAYER_IDX:
            raise ValueError(f"unknown encoder {encoder!r}: use one of {', '.join(INTERMEDIATE_LAYER_IDX)}")
        self.encoder = encoder
        self.intermediate_layer_idx = dict(INTERMEDIATE_LAYER_IDX)
        self.max_depth = float(max_depth)
        self.pretrained = DINOv2(model_name=encoder)
        self.depth_head = DPTHead(
            self.pretrained.embed_dim,
            features,
            use_bn,
            out_channels=out_channels,
            use_clstoken=use_clstoken,
            output_activation="sigmoid",
        )

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return self.pretrained.cls_token.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(B, 3, H, W)`` (H, W multiples of 14) -> metric depth ``(B, H, W)`` in metres."""
        patch_h, patch_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        features = self.pretrained.get_intermediate_layers(
            x, self.intermediate_layer_idx[self.encoder], return_class_token=True
        )
        depth = self.depth_head(features, patch_h, patch_w) * self.max_depth
        return depth.squeeze(1)

    @torch.inference_mode()
    def infer_image(self, raw_image: np.ndarray, input_size: int = 518, *, device: torch.device | str | None = None) -> np.ndarray:
        """Metric depth of one image, as the official ``infer_image``.

        Args:
            raw_image: ``(H, W, 3)`` uint8 image in **BGR** order (as ``cv2.imread`` returns).
            input_size: shorter side of the network input (rounded to a multiple of 14).
            device: where to run; defaults to the device of the model parameters.

        Returns:
            ``(H, W)`` float32 depth in metres.
        """
        image = np.asarray(raw_image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"raw_image must be an (H, W, 3) BGR image, got shape {image.shape}")
        rgb = image[:, :, ::-1]
        depth = self.infer_images(rgb[None], input_size=input_size, device=device, precision="fp32")
        return depth[0].cpu().numpy()

    @torch.inference_mode()
    def infer_images(
        self,
        images: torch.Tensor | np.ndarray,
        input_size: int = 518,
        output_size: tuple[int, int] | None = None,
        precision: str = "fp32",
        batch_size: int = 4,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Metric depth of a batch of RGB images, without leaving the device.

        Args:
            images: ``(N, H, W, 3)`` uint8 **RGB** images (tensor on any device, or numpy).
            input_size: shorter side of the network input (rounded to a multiple of 14).
            output_size: ``(h, w)`` of the returned depth maps; defaults to ``(H, W)``.
            precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast on the device).
            batch_size: images per network call (bounds memory).
            device: where to run; defaults to the device of the model parameters.

        Returns:
            ``(N, h, w)`` float32 depth in metres, on ``device``.
        """
        dev = torch.device(device) if device is not None else self.device
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must have shape (N, H, W, 3), got {tuple(images.shape)}")
        n, h, w = images.shape[0], images.shape[1], images.shape[2]
        out_size = (h, w) if output_size is None else (int(output_size[0]), int(output_size[1]))
        net_size = network_input_size(h, w, input_size)
        step = max(1, int(batch_size))
        if 0 < n <= step:
            return self.infer_prepared(prepare_images(images, net_size, device=dev), out_size, precision, step, dev)
        result = torch.empty((n, *out_size), dtype=torch.float32, device=dev)
        for start in range(0, n, step):
            x = prepare_images(images[start : start + step], net_size, device=dev)
            result[start : start + step] = self.infer_prepared(x, out_size, precision, step, dev)
        return result

    @torch.inference_mode()
    def infer_prepared(
        self,
        x: torch.Tensor,
        output_size: tuple[int, int],
        precision: str = "fp32",
        batch_size: int = 4,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """:meth:`infer_images` of images already prepared by
        :func:`~depth_anything_v2.transform.prepare_images` (e.g. shared with another network that
        takes the same input): ``(N, 3, h, w)`` normalised network input -> ``(N, H', W')`` float32
        metric depth (metres) of ``output_size`` ``(H', W')``, on ``device``. Bit-identical to
        :meth:`infer_images` on the images ``x`` was prepared from.
        """
        dev = torch.device(device) if device is not None else self.device
        x = x.to(dev, non_blocking=True)
        out_h, out_w = int(output_size[0]), int(output_size[1])
        n = int(x.shape[0])
        step = max(1, int(batch_size))
        result: torch.Tensor | None = None
        for start in range(0, n, step):
            with autocast_context(dev, precision):
                depth = self.forward(x[start : start + step])
            depth = F.interpolate(depth.float()[:, None], size=(out_h, out_w), mode="bilinear", align_corners=True)
            if n <= step:  # one batch: the upsampled maps are the result, no copy
                return depth[:, 0]
            if result is None:
                result = torch.empty((n, out_h, out_w), dtype=torch.float32, device=dev)
            result[start : start + step] = depth[:, 0]
        if result is None:
            return torch.empty((0, out_h, out_w), dtype=torch.float32, device=dev)
        return result

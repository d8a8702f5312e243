"""MoGe-2: monocular metric point map, depth, camera intrinsics, normals and validity mask from one image.

Same class name, constructor arguments (the checkpoint's ``model_config``), ``forward`` and ``infer``
as the official ``moge/model/v2.py`` (microsoft/MoGe), and the same state_dict layout, so the
released checkpoints load with ``strict=True``.

Pipeline: the [0, 1] RGB image is encoded by DINOv2 on a token grid of about ``num_tokens`` tokens
with the image's aspect ratio; the summed feature map plus a view-plane uv grid go through a 5-level
convolutional neck (2x per level); three heads predict the affine point map ``(x/z, y/z, log z)``,
the normal map and the mask logits at 16x the token grid, resized bilinearly to the input; an MLP on
the class token predicts the metric scale. ``infer`` then recovers the focal length and z shift
(:func:`moge2.geometry.recover_focal_shift`), re-projects the depth with the recovered intrinsics,
applies the metric scale and masks invalid pixels.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from numbers import Number
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_anything_v2.precision import autocast_context, default_precision, precision_dtype

from .geometry import (
    depth_to_points,
    focal_from_fov_x,
    intrinsics_from_focal,
    normalized_view_plane_uv,
    recover_focal_shift,
)
from .modules import MLP, ConvStack, DINOv2Encoder

__all__ = ["MoGeModel", "token_grid", "num_tokens_for_level", "postprocess"]

#: Output remaps of the raw point channels (``'exp'`` in every MoGe-2 release).
REMAP_OUTPUTS = ("linear", "sinh", "exp", "sinh_exp")

#: Number of pyramid levels of the neck (the uv grid is fed at each one).
NUM_LEVELS = 5


def token_grid(height: int, width: int, num_tokens: int | torch.Tensor) -> tuple[int, int] | tuple[torch.Tensor, torch.Tensor]:
    """Token grid ``(rows, cols)`` for an image of ``height`` x ``width`` and about ``num_tokens`` tokens:
    ``round(sqrt(num_tokens / ar))``, ``round(sqrt(num_tokens * ar))`` with ``ar = width / height``
    (Python ``round``, half to even; the product is not exactly ``num_tokens``)."""
    ar = width / height
    rows, cols = (num_tokens / ar) ** 0.5, (num_tokens * ar) ** 0.5
    if isinstance(rows, torch.Tensor):
        return rows.round().long(), cols.round().long()
    return round(rows), round(cols)


def num_tokens_for_level(resolution_level: int | float, num_tokens_range: tuple[int, int] | list[int] = (1200, 3600)) -> int:
    """Token count of a resolution level 0..9: ``int(min + level / 9 * (max - min))`` (9 -> max)."""
    lo, hi = num_tokens_range
    return int(lo + (resolution_level / 9) * (hi - lo))


class MoGeModel(nn.Module):
    """MoGe-2 network.

    Args:
        encoder: :class:`~moge2.modules.DINOv2Encoder` arguments (``backbone``, ``intermediate_layers``, ``dim_out``).
        neck: :class:`~moge2.modules.ConvStack` arguments of the shared neck.
        points_head, mask_head, normal_head: ConvStack arguments of each head, or ``None`` (absent).
        scale_head: :class:`~moge2.modules.MLP` arguments (``dims``) of the metric scale head, or ``None``.
        remap_output: ``'exp'`` (MoGe-2), ``'linear'``, ``'sinh'`` or ``'sinh_exp'``.
        num_tokens_range: token counts of resolution levels 0 and 9.
        **deprecated_kwargs: ignored with a warning (as upstream).
    """

    def __init__(
        self,
        encoder: Mapping[str, Any],
        neck: Mapping[str, Any],
        points_head: Mapping[str, Any] | None = None,
        mask_head: Mapping[str, Any] | None = None,
        normal_head: Mapping[str, Any] | None = None,
        scale_head: Mapping[str, Any] | None = None,
        remap_output: str = "linear",
        num_tokens_range: list[int] | tuple[int, int] = (1200, 3600),
        **deprecated_kwargs,
    ) -> None:
        super().__init__()
        if deprecated_kwargs:
            warnings.warn(f"ignored MoGeModel arguments: {deprecated_kwargs}", stacklevel=2)
        if remap_output not in REMAP_OUTPUTS:
            raise ValueError(f"unknown remap_output {remap_output!r}: use one of {', '.join(REMAP_OUTPUTS)}")
        self.remap_output = remap_output
        self.num_tokens_range = list(num_tokens_range)
        # Registration order = state_dict order: encoder, neck, points, mask, normal, scale (as upstream).
        self.encoder = DINOv2Encoder(**encoder)
        self.neck = ConvStack(**neck)
        if points_head is not None:
            self.points_head = ConvStack(**points_head)
        if mask_head is not None:
            self.mask_head = ConvStack(**mask_head)
        if normal_head is not None:
            self.normal_head = ConvStack(**normal_head)
        if scale_head is not None:
            self.scale_head = MLP(**scale_head)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        model_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        download: bool = True,
    ) -> "MoGeModel":
        """Released model by checkpoint path, Hugging Face repo id (``"Ruicheng/moge-2-vitl-normal"``)
        or name (``"vitl-normal"``); built from the checkpoint's ``model_config`` and loaded with
        ``strict=True`` (see :func:`moge2.hub.load_moge2`)."""
        from .hub import MOGE2_CHECKPOINTS, load_moge2

        source = str(pretrained_model_name_or_path)
        by_repo = {spec.repo_id: name for name, spec in MOGE2_CHECKPOINTS.items()}
        if source in by_repo or source in MOGE2_CHECKPOINTS:
            return load_moge2(by_repo.get(source, source), device=device, download=download, model_kwargs=model_kwargs)
        return load_moge2(checkpoint=pretrained_model_name_or_path, device=device, download=download,
                          model_kwargs=model_kwargs)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters."""
        return next(self.parameters()).dtype

    def _remap_points(self, points: torch.Tensor) -> torch.Tensor:
        """Raw ``(..., 3)`` channels -> affine points; ``'exp'``: ``(x e^z, y e^z, e^z)``."""
        if self.remap_output == "linear":
            return points
        if self.remap_output == "sinh":
            return torch.sinh(points)
        xy, z = points.split([2, 1], dim=-1)
        if self.remap_output == "exp":
            z = torch.exp(z)
            return torch.cat([xy * z, z], dim=-1)
        return torch.cat([torch.sinh(xy), torch.exp(z)], dim=-1)  # sinh_exp

    def forward(self, image: torch.Tensor, num_tokens: int | torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw network outputs.

        Args:
            image: ``(B, 3, H, W)`` RGB in [0, 1] (not ImageNet-normalised).
            num_tokens: approximate number of ViT tokens (see :func:`token_grid`).

        Returns:
            ``points`` ``(B, H, W, 3)`` affine point map, ``normal`` ``(B, H, W, 3)`` unit vectors,
            ``mask`` ``(B, H, W)`` probability, ``metric_scale`` ``(B,)``; only those whose head exists.
        """
        batch, _, img_h, img_w = image.shape
        device, dtype = image.device, image.dtype
        aspect_ratio = img_w / img_h
        rows, cols = token_grid(img_h, img_w, num_tokens)

        features, cls_token = self.encoder(image, rows, cols, return_class_token=True)
        levels: list[torch.Tensor] = []
        for level in range(NUM_LEVELS):
            uv = normalized_view_plane_uv(width=cols * 2**level, height=rows * 2**level, aspect_ratio=aspect_ratio,
                                          dtype=dtype, device=device)
            uv = uv.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)
            levels.append(torch.cat([features, uv], dim=1) if level == 0 else uv)
        levels = self.neck(levels)

        heads = {name: getattr(self, f"{name}_head")(levels)[-1] if hasattr(self, f"{name}_head") else None
                 for name in ("points", "normal", "mask")}
        out: dict[str, torch.Tensor] = {}
        for name, raw in heads.items():
            if raw is None:
                continue
            raw = F.interpolate(raw, (img_h, img_w), mode="bilinear", align_corners=False, antialias=False)
            if name == "points":
                out["points"] = self._remap_points(raw.permute(0, 2, 3, 1))
            elif name == "normal":
                out["normal"] = F.normalize(raw.permute(0, 2, 3, 1), dim=-1)
            else:
                out["mask"] = raw.squeeze(1).sigmoid()
        if hasattr(self, "scale_head"):
            out["metric_scale"] = self.scale_head(cls_token).squeeze(1).exp()
        return out

    @torch.inference_mode()
    def infer(
        self,
        image: torch.Tensor,
        num_tokens: int | None = None,
        resolution_level: int = 9,
        force_projection: bool = True,
        apply_mask: bool | str = True,
        fov_x: Number | torch.Tensor | None = None,
        use_fp16: bool | None = None,
        *,
        precision: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Metric point map, depth, intrinsics, mask and normals of one image or a batch.

        Args:
            image: ``(3, H, W)`` or ``(B, 3, H, W)`` RGB in [0, 1]; cast to the model's device and dtype.
            num_tokens: approximate ViT token count; ``None``: from ``resolution_level``
                (:func:`num_tokens_for_level`: 1200 at level 0, 3600 at level 9).
            resolution_level: 0..9, used when ``num_tokens`` is ``None``.
            force_projection: recompute the points from the depth and the recovered intrinsics
                (else keep the network's x, y).
            apply_mask: set ``points``/``depth`` to ``+inf`` and ``normal`` to 0 where the mask is False.
            fov_x: known horizontal field of view in degrees (then only the shift is solved).
            use_fp16: the official flag: run the network under float16 autocast. ``None`` (default):
                fp16 on CUDA, float32 elsewhere (upstream defaults to ``True`` on every device).
            precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``; overrides ``use_fp16``.

        Returns:
            ``points`` ``(B, H, W, 3)`` metric camera-space points (OpenCV axes: x right, y down,
            z forward), ``depth`` ``(B, H, W)``, ``intrinsics`` ``(B, 3, 3)`` normalised (see
            :mod:`moge2.geometry`), ``mask`` ``(B, H, W)`` bool, ``normal`` ``(B, H, W, 3)``; without the
            batch dimension for a 3-D input. Post-processing always runs in float32.
        """
        omit_batch = image.dim() == 3
        if omit_batch:
            image = image.unsqueeze(0)
        image = image.to(dtype=self.dtype, device=self.device)
        if num_tokens is None:
            num_tokens = num_tokens_for_level(resolution_level, self.num_tokens_range)

        if precision is None:
            precision = default_precision(self.device) if use_fp16 is None else ("fp16" if use_fp16 else "fp32")
        autocast_dtype = precision_dtype(precision)
        autocast = autocast_dtype is not None and self.dtype != autocast_dtype
        with autocast_context(self.device, precision) if autocast else contextlib.nullcontext():
            output = self.forward(image, num_tokens=num_tokens)

        result = postprocess(
            output, image.shape[-2], image.shape[-1], fov_x=fov_x,
            force_projection=force_projection, apply_mask=bool(apply_mask),
        )
        if omit_batch:
            result = {k: v.squeeze(0) for k, v in result.items()}
        return result


def postprocess(
    output: Mapping[str, torch.Tensor],
    height: int,
    width: int,
    fov_x: Number | torch.Tensor | None = None,
    force_projection: bool = True,
    apply_mask: bool = True,
    focal: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """``infer``'s post-processing of :meth:`MoGeModel.forward` outputs (batched), in float32.

    ``focal``/``shift`` ``(B,)``, when both are given, replace the solver (used by the tests to check
    this step alone against upstream's solver output). Returns ``points``, ``intrinsics``, ``depth``,
    ``mask``, ``normal`` (those that can be computed from the available outputs).
    """
    points, normal, mask, metric_scale = (output.get(k) for k in ("points", "normal", "mask", "metric_scale"))
    points, normal, mask, metric_scale, fov_x = (
        v.float() if isinstance(v, torch.Tensor) else v for v in (points, normal, mask, metric_scale, fov_x)
    )
    aspect_ratio = width / height
    mask_binary = None if mask is None else mask > 0.5
    depth = intrinsics = None
    if points is not None:
        points = points.clone()
        if focal is None or shift is None:
            if fov_x is None:
                focal, shift = recover_focal_shift(points, mask_binary)
            else:
                focal = focal_from_fov_x(fov_x, aspect_ratio, dtype=points.dtype, device=points.device)
                if focal.ndim == 0:
                    focal = focal[None].expand(points.shape[0])
                _, shift = recover_focal_shift(points, mask_binary, focal=focal)
        focal = focal.to(device=points.device, dtype=points.dtype)
        shift = shift.to(device=points.device, dtype=points.dtype)
        intrinsics = intrinsics_from_focal(focal, aspect_ratio)
        points[..., 2] += shift[..., None, None]
        if mask_binary is not None:
            mask_binary &= points[..., 2] > 0  # guards against negative depth
        depth = points[..., 2].clone()
        if force_projection:
            points = depth_to_points(depth, intrinsics)
    if metric_scale is not None:
        if points is not None:
            points *= metric_scale[:, None, None, None]
        if depth is not None:
            depth *= metric_scale[:, None, None]
    if apply_mask and mask_binary is not None:
        if points is not None:
            points = torch.where(mask_binary[..., None], points, torch.inf)
        if depth is not None:
            depth = torch.where(mask_binary, depth, torch.inf)
        if normal is not None:
            normal = torch.where(mask_binary[..., None], normal, torch.zeros_like(normal))
    result = {"points": points, "intrinsics": intrinsics, "depth": depth, "mask": mask_binary, "normal": normal}
    return {k: v for k, v in result.items() if v is not None}

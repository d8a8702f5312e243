"""Official Video-Depth-Anything checkpoints (relative and metric) and their loader.

Default local directory: ``Video-Depth-Anything/checkpoints/`` (as the official repository),
computed from the package location. Lookup order (explicit path, local directory, Hugging Face
hub), strict loading and errors are those of the generic loader, :mod:`depth_anything_v2.checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from depth_anything_v2.checkpoint import (
    ENCODER_SIZE_NAMES,
    CheckpointError,
    CheckpointSpec,
    check_encoder,
    load_checkpoint,
    resolve_checkpoint,
)

__all__ = [
    "CheckpointError",
    "VDA_CHECKPOINT_DIR",
    "VDA_CHECKPOINTS",
    "checkpoint_spec",
    "checkpoint_path",
    "load_video_depth_anything",
]

#: Default local checkpoint directory of the Video-Depth-Anything models.
VDA_CHECKPOINT_DIR: Path = Path(__file__).resolve().parents[1] / "checkpoints"


def _spec(encoder: str, metric: bool) -> CheckpointSpec:
    size = ENCODER_SIZE_NAMES[encoder]
    if metric:
        return CheckpointSpec(
            family="vda_metric",
            encoder=encoder,
            repo_id=f"depth-anything/Metric-Video-Depth-Anything-{size}",
            filename=f"metric_video_depth_anything_{encoder}.pth",
            local_dir=VDA_CHECKPOINT_DIR,
        )
    return CheckpointSpec(
        family="vda",
        encoder=encoder,
        repo_id=f"depth-anything/Video-Depth-Anything-{size}",
        filename=f"video_depth_anything_{encoder}.pth",
        local_dir=VDA_CHECKPOINT_DIR,
    )


#: The six official checkpoints keyed by ``(encoder, metric)``. E.g. ``("vitl", True)``:
#: ``depth-anything/Metric-Video-Depth-Anything-Large`` / ``metric_video_depth_anything_vitl.pth``;
#: ``("vits", False)``: ``depth-anything/Video-Depth-Anything-Small`` / ``video_depth_anything_vits.pth``.
VDA_CHECKPOINTS: dict[tuple[str, bool], CheckpointSpec] = {
    (e, m): _spec(e, m) for e in ENCODER_SIZE_NAMES for m in (False, True)
}


def checkpoint_spec(encoder: str = "vitl", metric: bool = False) -> CheckpointSpec:
    """Spec of a Video-Depth-Anything checkpoint (``metric=True``: the metric-depth fine-tune)."""
    check_encoder(encoder)
    return VDA_CHECKPOINTS[(encoder, bool(metric))]


def checkpoint_path(
    encoder: str = "vitl", metric: bool = False, checkpoint: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Local file of a Video-Depth-Anything checkpoint: explicit path, else the default local
    directory, else the Hugging Face hub (see :func:`depth_anything_v2.checkpoint.resolve_checkpoint`)."""
    return resolve_checkpoint(checkpoint_spec(encoder, metric), checkpoint, download)


def load_video_depth_anything(
    encoder: str = "vitl",
    metric: bool = False,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
):
    """Video-Depth-Anything with official weights, in eval mode.

    Args:
        encoder: ``"vits"``, ``"vitb"`` or ``"vitl"``.
        metric: metric-depth model (metres) instead of relative inverse depth.
        checkpoint: explicit ``.pth`` path (else the default local directory, else the hub).
        device: a resolved ``torch.device`` (or its name).
        download: allow fetching from the hub.

    Raises:
        CheckpointError: checkpoint missing, unreadable or not matching.
    """
    from .video_depth import MODEL_CONFIGS, VideoDepthAnything

    return load_checkpoint(
        checkpoint_spec(encoder, metric), lambda: VideoDepthAnything(**MODEL_CONFIGS[encoder], metric=metric),
        checkpoint, device, download,
    )

"""Official Video-Depth-Anything checkpoints (relative and metric) and their strict loading.

Default local directory: ``Video-Depth-Anything/checkpoints/`` (as the official repository),
computed from the package location. Lookup order, error handling and key remapping are those of
:mod:`depth_anything_v2.hub`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from depth_anything_v2.hub import (
    CheckpointError,
    CheckpointSpec,
    build_from_checkpoint,
    read_state_dict,
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

_SIZE_NAMES = {"vits": "Small", "vitb": "Base", "vitl": "Large"}


def _spec(encoder: str, metric: bool) -> CheckpointSpec:
    if metric:
        return CheckpointSpec(
            family="vda_metric",
            encoder=encoder,
            repo_id=f"depth-anything/Metric-Video-Depth-Anything-{_SIZE_NAMES[encoder]}",
            filename=f"metric_video_depth_anything_{encoder}.pth",
            local_dir=VDA_CHECKPOINT_DIR,
        )
    return CheckpointSpec(
        family="vda",
        encoder=encoder,
        repo_id=f"depth-anything/Video-Depth-Anything-{_SIZE_NAMES[encoder]}",
        filename=f"video_depth_anything_{encoder}.pth",
        local_dir=VDA_CHECKPOINT_DIR,
    )


#: The six official checkpoints keyed by ``(encoder, metric)``. E.g. ``("vitl", True)``:
#: ``depth-anything/Metric-Video-Depth-Anything-Large`` / ``metric_video_depth_anything_vitl.pth``;
#: ``("vits", False)``: ``depth-anything/Video-Depth-Anything-Small`` / ``video_depth_anything_vits.pth``.
VDA_CHECKPOINTS: dict[tuple[str, bool], CheckpointSpec] = {
    (e, m): _spec(e, m) for e in _SIZE_NAMES for m in (False, True)
}


def checkpoint_spec(encoder: str = "vitl", metric: bool = False) -> CheckpointSpec:
    """Spec of a Video-Depth-Anything checkpoint (``metric=True``: the metric-depth fine-tune)."""
    if encoder not in _SIZE_NAMES:
        raise ValueError(f"unknown encoder {encoder!r}: use one of {', '.join(_SIZE_NAMES)}")
    return VDA_CHECKPOINTS[(encoder, bool(metric))]


def checkpoint_path(
    encoder: str = "vitl", metric: bool = False, checkpoint: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Local file of a Video-Depth-Anything checkpoint: explicit path, else the default local
    directory, else the Hugging Face hub (see :func:`depth_anything_v2.hub.resolve_checkpoint`)."""
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
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        download: allow fetching from the hub.

    Raises:
        CheckpointError: checkpoint missing, unreadable or not matching.
    """
    from .video_depth import MODEL_CONFIGS, VideoDepthAnything

    spec = checkpoint_spec(encoder, metric)
    path = resolve_checkpoint(spec, checkpoint, download)
    state = read_state_dict(path)
    return build_from_checkpoint(
        lambda: VideoDepthAnything(**MODEL_CONFIGS[encoder], metric=metric), state, f"checkpoint {path}", device
    )

"""Official checkpoints of the metric Depth-Anything-V2 models and their loader.

Default local directory: ``Depth-Anything-V2/metric_depth/checkpoints/`` (as the official
repository), computed from the package location. Lookup order (explicit path, local directory,
Hugging Face hub), strict loading and errors are those of the generic loader,
:mod:`depth_anything_v2.checkpoint`; its public names are re-exported here for older imports.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import ENCODER_SIZE_NAMES, CheckpointSpec, check_encoder, load_checkpoint, resolve_checkpoint

# The generic names stay importable from here for older imports (``from depth_anything_v2.hub import ...``).
from .checkpoint import (  # noqa: F401  (re-exported)
    INSTALL_COMMAND,
    CheckpointError,
    build_from_checkpoint,
    download_checkpoint,
    hub_unreachable,
    load_strict,
    read_state_dict,
    remap_state_dict,
)

__all__ = [
    "DAV2_CHECKPOINT_DIR",
    "METRIC_MAX_DEPTH",
    "DAV2_METRIC_CHECKPOINTS",
    "checkpoint_spec",
    "checkpoint_path",
    "load_depth_anything_v2_metric",
]

#: Default local checkpoint directory of the metric Depth-Anything-V2 models (from the package location).
DAV2_CHECKPOINT_DIR: Path = Path(__file__).resolve().parents[1] / "metric_depth" / "checkpoints"

#: Depth (metres) that a sigmoid output of 1 maps to, per training set: indoor Hypersim, outdoor Virtual KITTI 2.
METRIC_MAX_DEPTH: dict[str, float] = {"hypersim": 20.0, "vkitti": 80.0}

_DATASET_NAMES = {"hypersim": "Hypersim", "vkitti": "VKITTI"}


def _dav2_spec(dataset: str, encoder: str) -> CheckpointSpec:
    return CheckpointSpec(
        family="dav2_metric",
        encoder=encoder,
        repo_id=f"depth-anything/Depth-Anything-V2-Metric-{_DATASET_NAMES[dataset]}-{ENCODER_SIZE_NAMES[encoder]}",
        filename=f"depth_anything_v2_metric_{dataset}_{encoder}.pth",
        local_dir=DAV2_CHECKPOINT_DIR,
        max_depth=METRIC_MAX_DEPTH[dataset],
        dataset=dataset,
    )


#: The six official metric checkpoints, keyed by ``(dataset, encoder)``. E.g.
#: ``("hypersim", "vitl")``: ``depth-anything/Depth-Anything-V2-Metric-Hypersim-Large`` /
#: ``depth_anything_v2_metric_hypersim_vitl.pth``, max depth 20 m.
DAV2_METRIC_CHECKPOINTS: dict[tuple[str, str], CheckpointSpec] = {
    (d, e): _dav2_spec(d, e) for d in _DATASET_NAMES for e in ENCODER_SIZE_NAMES
}


def checkpoint_spec(encoder: str = "vitl", dataset: str = "hypersim") -> CheckpointSpec:
    """Spec of a metric Depth-Anything-V2 checkpoint (``dataset`` ``"hypersim"`` indoor or ``"vkitti"`` outdoor)."""
    check_encoder(encoder)
    if dataset not in _DATASET_NAMES:
        raise ValueError(f"unknown metric dataset {dataset!r}: use 'hypersim' (indoor, 20 m) or 'vkitti' (outdoor, 80 m)")
    return DAV2_METRIC_CHECKPOINTS[(dataset, encoder)]


def checkpoint_path(encoder: str = "vitl", dataset: str = "hypersim", checkpoint: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local file of a metric Depth-Anything-V2 checkpoint (see :func:`~depth_anything_v2.checkpoint.resolve_checkpoint`)."""
    return resolve_checkpoint(checkpoint_spec(encoder, dataset), checkpoint, download)


def load_depth_anything_v2_metric(
    encoder: str = "vitl",
    dataset: str = "hypersim",
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
    max_depth: float | None = None,
):
    """Metric Depth-Anything-V2 with official weights, in eval mode.

    Args:
        encoder: ``"vits"``, ``"vitb"`` or ``"vitl"``.
        dataset: ``"hypersim"`` (indoor, 20 m) or ``"vkitti"`` (outdoor, 80 m); selects the default
            checkpoint and the max depth.
        checkpoint: explicit ``.pth`` path (else the default local directory, else the hub).
        device: a resolved ``torch.device`` (or its name).
        download: allow fetching from the hub.
        max_depth: override the max depth of the dataset.

    Raises:
        CheckpointError: checkpoint missing, unreadable or not matching.
    """
    from .dpt import MODEL_CONFIGS, DepthAnythingV2

    spec = checkpoint_spec(encoder, dataset)

    def factory() -> DepthAnythingV2:
        depth = float(max_depth) if max_depth is not None else float(spec.max_depth)
        return DepthAnythingV2(**MODEL_CONFIGS[encoder], max_depth=depth)

    return load_checkpoint(spec, factory, checkpoint, device, download)

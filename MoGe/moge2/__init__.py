"""MoGe-2 network (microsoft/MoGe ``moge/model/v2.py``): our implementation, state-dict compatible with
the released checkpoints. Metric point map, depth, normalised intrinsics, normals and mask from one image.

The encoder is the DINOv2 of :mod:`depth_anything_v2`. This package never imports ``mvda``.
"""

from .geometry import (
    depth_to_points,
    focal_from_fov_x,
    fov_x_from_focal,
    intrinsics_from_focal,
    normalized_view_plane_uv,
    recover_focal_shift,
    solve_optimal_focal_shift,
    solve_optimal_shift,
)
from .hub import (
    DEFAULT_MODEL,
    MOGE2_CHECKPOINTS,
    CheckpointError,
    checkpoint_path,
    checkpoint_spec,
    load_moge2,
    read_checkpoint,
)
from .model import MoGeModel, num_tokens_for_level, postprocess, token_grid
from .modules import ConvStack, DINOv2Encoder, MLP

__all__ = [
    "MoGeModel",
    "DINOv2Encoder",
    "ConvStack",
    "MLP",
    "token_grid",
    "num_tokens_for_level",
    "postprocess",
    "normalized_view_plane_uv",
    "recover_focal_shift",
    "solve_optimal_focal_shift",
    "solve_optimal_shift",
    "focal_from_fov_x",
    "fov_x_from_focal",
    "intrinsics_from_focal",
    "depth_to_points",
    "CheckpointError",
    "DEFAULT_MODEL",
    "MOGE2_CHECKPOINTS",
    "checkpoint_path",
    "checkpoint_spec",
    "read_checkpoint",
    "load_moge2",
]

"""Depth-Anything-V2 (metric) network: our implementation, state-dict compatible with the official checkpoints."""

from .precision import autocast_context, default_precision, precision_dtype
from .dinov2 import DINOv2, DinoVisionTransformer
from .dpt import INTERMEDIATE_LAYER_IDX, MODEL_CONFIGS, DepthAnythingV2
from .checkpoint import CheckpointError, CheckpointSpec, download_checkpoint, load_checkpoint
from .hub import checkpoint_path, checkpoint_spec, load_depth_anything_v2_metric
from .transform import network_input_size, prepare_images

__all__ = [
    "DepthAnythingV2",
    "MODEL_CONFIGS",
    "INTERMEDIATE_LAYER_IDX",
    "DINOv2",
    "DinoVisionTransformer",
    "CheckpointError",
    "CheckpointSpec",
    "checkpoint_path",
    "checkpoint_spec",
    "download_checkpoint",
    "load_checkpoint",
    "load_depth_anything_v2_metric",
    "autocast_context",
    "default_precision",
    "precision_dtype",
    "network_input_size",
    "prepare_images",
]

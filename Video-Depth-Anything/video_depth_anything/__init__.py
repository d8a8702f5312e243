"""Video-Depth-Anything network: our implementation, state-dict compatible with the official checkpoints."""

from .hub import VDA_CHECKPOINTS, checkpoint_path, checkpoint_spec, load_video_depth_anything
from .keyframe_cache import KeyframeFeatureCache
from .video_depth import INTERMEDIATE_LAYER_IDX, MODEL_CONFIGS, VideoDepthAnything

__all__ = [
    "VideoDepthAnything",
    "KeyframeFeatureCache",
    "MODEL_CONFIGS",
    "INTERMEDIATE_LAYER_IDX",
    "VDA_CHECKPOINTS",
    "checkpoint_path",
    "checkpoint_spec",
    "load_video_depth_anything",
]

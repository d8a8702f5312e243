"""The depth video viewer behind ``3d_view_depthfile.py`` (Open3D), one job per module:

* :mod:`.frames` :class:`FrameSource`: depth (+ colour) frames by index, paired by
  :mod:`mvda.io.pairing`, with a ring buffer of recent frames for stepping back.
* :mod:`.scene` the camera pose, the frame's Open3D geometry (:class:`GeometryBuilder`), the view's
  intrinsics and the drawing options.
* :mod:`.render` ``--render``: offscreen renderers and :func:`render_video` (on the frame loop).
* :mod:`.window` the interactive window (its own event loop) and the display checks.
* :mod:`.app` :func:`view_depth_video`, the script's one call.
"""

from .app import RENDER_SUFFIXES, ViewOptions, view_depth_video
from .frames import HISTORY_BYTES, Frame, FrameSource, resize_rgb
from .render import (BACKENDS, FilamentRenderer, LegacyRenderer, RenderResult, open_renderer,
                     private_runtime_dir, probe_offscreen_renderer, render_size, render_video)
from .scene import (BACKGROUND, DEFAULT_EYE, CameraPose, GeometryBuilder, default_target, resolve_pose,
                    view_intrinsics)
from .window import NO_DISPLAY_MESSAGE, display_problem, run_viewer, window_size

__all__ = [
    "RENDER_SUFFIXES", "ViewOptions", "view_depth_video",
    "HISTORY_BYTES", "Frame", "FrameSource", "resize_rgb",
    "BACKENDS", "FilamentRenderer", "LegacyRenderer", "RenderResult", "open_renderer", "private_runtime_dir",
    "probe_offscreen_renderer", "render_size", "render_video",
    "BACKGROUND", "DEFAULT_EYE", "CameraPose", "GeometryBuilder", "default_target", "resolve_pose",
    "view_intrinsics",
    "NO_DISPLAY_MESSAGE", "display_problem", "run_viewer", "window_size",
]

"""``--render``: draw every frame without a display and encode them into an H.264 video.

Backends: ``legacy`` (a hidden ``Visualizer`` window read back with ``capture_screen_float_buffer``;
with no display Open3D uses EGL offscreen) and ``filament`` (``rendering.OffscreenRenderer``). ``auto``
takes ``legacy`` when it can create its hidden window, else ``filament`` after a probe in a subprocess,
because the Filament renderer aborts the whole process when no Vulkan/OpenGL driver is available. The
legacy renderer comes first because on Mesa's software drivers it was faster (see
benchmarks/bench_viewer.py) and it draws exactly what the interactive window shows.

:func:`render_video` runs through :func:`mvda.frames.run_frames`: frames are decoded on the decode
thread, the geometry update and the render run on the calling thread (Open3D's renderers must stay on
the thread that created them), and the H.264 encoder runs on the encode thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvda.errors import UserError
from mvda.frames import FunctionSink, run_frames
from mvda.io.video import VideoWriter
from mvda.ops.geometry import Intrinsics

from .frames import FrameSource
from .scene import (BACKGROUND, CameraPose, GeometryBuilder, apply_camera, configure_render_option, open3d_module,
                    set_clip_planes, view_intrinsics)

__all__ = [
    "BACKENDS",
    "render_size",
    "probe_offscreen_renderer",
    "private_runtime_dir",
    "LegacyRenderer",
    "FilamentRenderer",
    "open_renderer",
    "RenderResult",
    "render_video",
]

log = logging.getLogger("mvda")

BACKENDS = ("auto", "legacy", "filament")
#: H.264 settings of the rendered video.
_CODEC, _PIX_FMT, _OPTIONS = "libx264", "yuv420p", {"crf": "18", "preset": "medium"}


def render_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the ``--render`` output in pixels: the depth video's size rounded down to even
    (H.264 4:2:0 needs it)."""
    return max(2, height - height % 2), max(2, width - width % 2)


_PROBE_SCRIPT = (
    "import numpy as np, open3d as o3d\n"
    "r = o3d.visualization.rendering.OffscreenRenderer(16, 16)\n"
    "img = np.asarray(r.render_to_image())\n"
    "assert img.shape == (16, 16, 3), img.shape\n"
)


def probe_offscreen_renderer(timeout: float = 120.0) -> bool:
    """Whether Open3D's Filament ``OffscreenRenderer`` works here, tested in a child process.

    (Creating it without a usable Vulkan/OpenGL driver aborts the process, which no ``try`` can catch.)
    """
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT], capture_output=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@contextlib.contextmanager
def private_runtime_dir() -> Iterator[None]:
    """While active, XDG_RUNTIME_DIR names a usable folder.

    GLFW/Mesa print "error: XDG_RUNTIME_DIR is invalid or not set in the environment." on stdout when
    it is unset or not an absolute folder (common in containers and under sudo). When that is so, a
    private temporary folder (mode 0700) stands in for the render and is removed afterwards; a valid
    XDG_RUNTIME_DIR is left as it is.
    """
    current = os.environ.get("XDG_RUNTIME_DIR", "")
    if current.startswith("/") and os.path.isdir(current):
        yield
        return
    folder = tempfile.mkdtemp(prefix="mvda-runtime-")  # mode 0700
    os.environ["XDG_RUNTIME_DIR"] = folder
    try:
        yield
    finally:
        if current:
            os.environ["XDG_RUNTIME_DIR"] = current
        else:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def _to_uint8(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an Open3D image (float 0..1 or uint8, RGB or RGBA)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


class LegacyRenderer:
    """Offscreen rendering through a hidden legacy ``Visualizer`` window (EGL when there is no display).

    Args:
        height, width: image size in pixels.
        point_size: point size in pixels (point clouds).
    """

    name = "legacy"

    def __init__(self, height: int, width: int, point_size: float = 2.0) -> None:
        o3d = open3d_module()

        self.height, self.width = height, width
        self.point_size = point_size
        self._vis = o3d.visualization.Visualizer()
        if not self._vis.create_window(window_name="render", width=width, height=height, visible=False):
            raise UserError("Open3D cannot create an offscreen OpenGL context (install Mesa's EGL/GL "
                            "drivers or a GPU driver)")
        self._geometry = None

    def render(self, geometry, intr: Intrinsics, pose: CameraPose, max_depth: float) -> np.ndarray:
        """(height, width, 3) uint8 RGB image of ``geometry`` seen from ``pose`` with the vertical field of
        view of ``intr``; ``max_depth`` (metres) sets the far clip plane."""
        vis = self._vis
        if self._geometry is not geometry:
            vis.clear_geometries()
            vis.add_geometry(geometry)
            configure_render_option(vis.get_render_option(), self.point_size)
            self._geometry = geometry
        else:
            vis.update_geometry(geometry)
        ctr = vis.get_view_control()
        set_clip_planes(ctr, pose, max_depth)
        apply_camera(ctr, view_intrinsics(intr, self.height, self.width), pose.extrinsic())
        vis.poll_events()
        return _to_uint8(vis.capture_screen_float_buffer(do_render=True))

    def close(self) -> None:
        self._vis.destroy_window()


class FilamentRenderer:
    """Offscreen rendering with Open3D's Filament ``OffscreenRenderer`` (probe it first!).

    Args:
        height, width: image size in pixels.
        point_size: point size in pixels (point clouds).
    """

    name = "filament"

    def __init__(self, height: int, width: int, point_size: float = 2.0) -> None:
        o3d = open3d_module()

        self.height, self.width = height, width
        self._renderer = o3d.visualization.rendering.OffscreenRenderer(width, height)
        self._renderer.scene.set_background([*BACKGROUND, 1.0])
        self._renderer.scene.view.set_post_processing(False)  # exact colours, no tone mapping
        self._material = o3d.visualization.rendering.MaterialRecord()
        self._material.shader = "defaultUnlit"
        self._material.point_size = float(point_size)

    def render(self, geometry, intr: Intrinsics, pose: CameraPose, max_depth: float) -> np.ndarray:
        """(height, width, 3) uint8 RGB image of ``geometry`` seen from ``pose`` (see LegacyRenderer)."""
        scene = self._renderer.scene
        scene.clear_geometry()
        scene.add_geometry("frame", geometry, self._material)
        view = view_intrinsics(intr, self.height, self.width)
        self._renderer.setup_camera(view.matrix(), pose.extrinsic(), self.width, self.height)
        return _to_uint8(self._renderer.render_to_image())

    def close(self) -> None:
        self._renderer = None


def open_renderer(height: int, width: int, backend: str = "auto", point_size: float = 2.0):
    """An offscreen renderer of (height, width) pixels: ``legacy``, ``filament`` or ``auto`` (legacy,
    else a probed Filament)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}")
    if backend in ("auto", "legacy"):
        try:
            return LegacyRenderer(height, width, point_size)
        except UserError:
            if backend == "legacy":
                raise
            log.warning("the legacy Open3D renderer is not available; trying the Filament renderer")
    if not probe_offscreen_renderer():
        raise UserError("Open3D's offscreen renderer does not work here (no usable OpenGL/EGL or Vulkan "
                        "driver); install Mesa (libegl1, libgl1-mesa-dri, mesa-vulkan-drivers)")
    return FilamentRenderer(height, width, point_size)


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_video` wrote: ``frames`` of (``height``, ``width``) pixels to ``output`` in
    ``seconds`` (the frame loop's wall time)."""

    output: Path
    frames: int
    height: int
    width: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def render_video(source: FrameSource, builder: GeometryBuilder, pose: CameraPose, out_path,
                 backend: str = "auto", start_frame: int = 0, point_size: float = 2.0,
                 progress: bool = True) -> RenderResult:
    """Render frames ``start_frame ..`` of ``source`` to ``out_path`` (H.264, atomic: nothing is left
    behind on an error or an interrupt).

    ``source`` is read on the frame loop's decode thread only while this runs.
    """
    if source.get(start_frame) is None:
        raise UserError(f"--draw_frame {start_frame} is past the end of the video "
                        f"({source.num_frames} frames)")
    height, width = render_size(source.height, source.width)
    total = source.num_frames_estimate
    with private_runtime_dir():
        renderer = open_renderer(height, width, backend, point_size)
        try:
            writer = VideoWriter(out_path, width, height, source.fps, codec=_CODEC, pix_fmt=_PIX_FMT,
                                 options=_OPTIONS)

            def step(frame):
                geometry = builder.update(frame)
                return (renderer.render(geometry, builder.intr, pose, builder.max_depth),)

            loop = run_frames(source.frames(start_frame), step, [FunctionSink(writer)],
                              total=None if total is None else max(total - start_frame, 0),
                              desc="render", progress=progress)
        finally:
            renderer.close()
    return RenderResult(Path(out_path), writer.frames_written, height, width, loop.seconds)

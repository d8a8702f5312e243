"""Open3D side of the depth video viewer (``3d_view_depthfile.py``).

* :class:`FrameSource` streams depth (+ colour) frames by index. Decoding is streaming, so stepping
  backwards uses a ring buffer of the most recent decoded frames (512 MB: about 80 frames of 1280x720
  depth + colour, i.e. ~3 s; at least 2 frames); stepping back further than the buffer reopens the
  videos and decodes forward to the wanted frame (correct, but slow far into a long video).
* :class:`GeometryBuilder` turns a frame into an Open3D mesh or point cloud, reusing its buffers; the
  triangle index array comes from :func:`depth_mesh.grid_triangles` (built once per resolution).
* :func:`run_viewer` is the interactive window (legacy ``VisualizerWithKeyCallback``, mouse orbit/zoom
  from Open3D; keys below); the frame number and state are shown on a console status line (the legacy
  Open3D window cannot change its title after it is created).
* :func:`render_video` renders every frame without a display. Backends: ``legacy`` (a hidden
  ``Visualizer`` window read back with ``capture_screen_float_buffer``; with no display Open3D uses EGL
  offscreen) and ``filament`` (``rendering.OffscreenRenderer``). ``auto`` takes ``legacy`` when it can
  create its hidden window, else ``filament`` after a probe in a subprocess, because the Filament
  renderer aborts the whole process when no Vulkan/OpenGL driver is available. The legacy renderer
  comes first because on Mesa's software drivers it was faster (see benchmarks/bench_viewer.py) and it
  draws exactly what the interactive window shows.

Keys in the window: space play/pause, right/left arrow step one frame forward/back (and pause),
``r`` reset the view to the chosen camera pose, ``q`` or Esc quit.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mvda.ops import depth_mesh
from mvda.errors import UserError
from mvda.cli import progress_bar
from depth_codec import DepthVideoReader
from mvda.ops.geometry import Intrinsics
from mvda.io.video import VideoReader, VideoWriter, probe_video

__all__ = [
    "NO_DISPLAY_MESSAGE",
    "BACKGROUND",
    "DEFAULT_EYE",
    "Frame",
    "FrameSource",
    "CameraPose",
    "default_target",
    "resolve_pose",
    "check_color_match",
    "resize_rgb",
    "window_size",
    "render_size",
    "display_problem",
    "GeometryBuilder",
    "probe_offscreen_renderer",
    "LegacyRenderer",
    "FilamentRenderer",
    "open_renderer",
    "render_video",
    "run_viewer",
]

log = logging.getLogger("mvda")


def _open3d():
    """Import Open3D, keeping its console chatter to errors unless --verbose asked for info."""
    import open3d as o3d

    levels = o3d.utility.VerbosityLevel
    o3d.utility.set_verbosity_level(levels.Info if log.isEnabledFor(logging.INFO) else levels.Error)
    return o3d


NO_DISPLAY_MESSAGE = "no display: use --render out.mp4 or run under xvfb-run"
BACKGROUND = (1.0, 1.0, 1.0)
#: Default camera position in the pose frame (metres): behind and above the original camera.
DEFAULT_EYE = (0.0, 1.0, -2.0)
HISTORY_BYTES = 512 << 20
ASPECT_TOLERANCE = 0.01  # relative; 1920x1080 vs 1280x720 match, 854x480 vs 1280x720 (0.06 %) too

# GLFW key codes (what Open3D's key callbacks receive).
KEY_SPACE, KEY_ESCAPE, KEY_RIGHT, KEY_LEFT = 32, 256, 262, 263
KEY_Q, KEY_R = ord("Q"), ord("R")


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One frame: index (from 0), (H, W) float32 depth in metres, (H, W, 3) uint8 RGB colour or None."""

    index: int
    depth: np.ndarray
    color: np.ndarray | None


def check_color_match(depth_size: tuple[int, int], color_size: tuple[int, int], color_path) -> bool:
    """Decide what to do with a colour video of another size than the depth video.

    Args:
        depth_size, color_size: (width, height) in pixels.

    Returns:
        False when the sizes are equal; True when the colour frames must be resized (same aspect
        ratio within 1 %, a warning is logged). Raises UserError for a different aspect ratio.
    """
    (dw, dh), (cw, ch) = depth_size, color_size
    if (dw, dh) == (cw, ch):
        return False
    if abs((cw / ch) / (dw / dh) - 1.0) > ASPECT_TOLERANCE:
        raise UserError(
            f"{color_path}: colour video is {cw}x{ch} but the depth video is {dw}x{dh} (another aspect "
            "ratio); pass the colour video the depth video was made from"
        )
    log.warning("%s: colour video is %dx%d, depth video %dx%d; resizing the colour frames",
                color_path, cw, ch, dw, dh)
    return True


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 RGB image to ``height`` x ``width`` (area averaging / bilinear)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray(format="rgb24")


class FrameSource:
    """Depth frames (and matching colour frames) by index, decoded on demand.

    Args:
        depth_path: RGB-packed depth video (``*_depth.mkv``).
        color_path: optional colour video with the same frames.
        max_depth: decode scale override (None: the file's tag, else 6 m).
        max_frames: use at most this many frames from the start.
        history_bytes: memory budget of the ring buffer of recent frames.
    """

    def __init__(self, depth_path, color_path=None, max_depth: float | None = None,
                 max_frames: int | None = None, history_bytes: int = HISTORY_BYTES) -> None:
        self.depth_path = Path(depth_path)
        self.color_path = Path(color_path) if color_path is not None else None
        self._max_depth_flag = max_depth
        self.max_frames = max_frames
        info = probe_video(self.depth_path)
        self.width, self.height, self.fps = info.width, info.height, info.fps
        if self.width < 2 or self.height < 2:
            raise UserError(f"{self.depth_path}: a {self.width}x{self.height} video is too small to view")
        self._resize_color = False
        if self.color_path is not None:
            cinfo = probe_video(self.color_path)
            self._resize_color = check_color_match((self.width, self.height), (cinfo.width, cinfo.height),
                                                   self.color_path)
        per_frame = self.width * self.height * (4 + (3 if self.color_path is not None else 0))
        self.history_len = int(max(2, min(600, history_bytes // per_frame)))
        self._history: collections.deque[Frame] = collections.deque(maxlen=self.history_len)
        self._depth: DepthVideoReader | None = None
        self._color: VideoReader | None = None
        self.length: int | None = None  # number of frames, known once the end has been reached
        self._open()
        self.max_depth = self._depth.max_depth
        self.num_frames_estimate = self._depth.num_frames

    def _open(self) -> None:
        self.close()
        self._depth = DepthVideoReader(self.depth_path, max_depth=self._max_depth_flag,
                                       max_frames=self.max_frames)
        self._depth_iter = iter(self._depth)
        if self.color_path is not None:
            self._color = VideoReader(self.color_path, max_frames=self.max_frames)
            self._color_iter = iter(self._color)
        self._next_index = 0

    def _read_next(self) -> Frame | None:
        depth = next(self._depth_iter, None)
        if depth is None:
            return None
        color = None
        if self._color is not None:
            color = next(self._color_iter, None)
            if color is None:
                if self.length is None:  # warn once, not again after a rewind
                    log.warning("%s: the colour video ends after %d frames, before the depth video; "
                                "stopping there", self.color_path, self._next_index)
                return None
            if self._resize_color:
                color = resize_rgb(color, self.width, self.height)
        frame = Frame(self._next_index, depth, color)
        self._history.append(frame)
        self._next_index += 1
        return frame

    def get(self, index: int) -> Frame | None:
        """Frame ``index`` (from 0), or None when the video has fewer frames."""
        if index < 0:
            return None
        if self.length is not None and index >= self.length:
            return None
        for frame in reversed(self._history):
            if frame.index == index:
                return frame
        if index < self._next_index:  # older than the ring buffer: decode again from the start
            log.info("frame %d is no longer buffered; re-decoding from the start", index)
            self._history.clear()
            self._open()
        frame = None
        while self._next_index <= index:
            frame = self._read_next()
            if frame is None:
                self.length = self._next_index
                return None
        return frame

    @property
    def num_frames(self) -> int | None:
        """Exact frame count once known, else the container's estimate."""
        return self.length if self.length is not None else self.num_frames_estimate

    def close(self) -> None:
        for reader in (self._depth, self._color):
            if reader is not None:
                reader.close()
        self._depth = self._color = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraPose:
    """Viewer camera: position and target in the viewer frame (metres, see :mod:`depth_mesh`)."""

    eye: np.ndarray
    target: np.ndarray

    def extrinsic(self) -> np.ndarray:
        """(4, 4) world-to-camera matrix (Open3D pinhole convention)."""
        return depth_mesh.look_at_extrinsic(self.eye, self.target)


def default_target(depth: np.ndarray) -> tuple[float, float, float]:
    """Default look-at point in the pose frame: on the optical axis at the median valid depth (1 m if none)."""
    d = np.asarray(depth)
    valid = d[(d > 0) & np.isfinite(d)]
    z = float(np.median(valid)) if valid.size else 1.0
    return (0.0, 0.0, z)


def resolve_pose(depth: np.ndarray, x=None, y=None, z=None, tx=None, ty=None, tz=None) -> CameraPose:
    """Camera pose from the command-line values (pose frame, metres; None = default for that axis).

    Defaults: position :data:`DEFAULT_EYE` (1 m above and 2 m behind the original camera), target on
    the optical axis at the median depth of ``depth`` (the first frame shown).
    """
    eye = [v if v is not None else d for v, d in zip((x, y, z), DEFAULT_EYE)]
    target = [v if v is not None else d for v, d in zip((tx, ty, tz), default_target(depth))]
    pose = CameraPose(depth_mesh.pose_to_viewer(eye), depth_mesh.pose_to_viewer(target))
    try:
        pose.extrinsic()
    except ValueError as exc:
        raise UserError(f"bad camera pose --x/--y/--z {eye} --tx/--ty/--tz {target}: {exc}") from None
    return pose


def window_size(width: int, height: int) -> tuple[int, int]:
    """Window size for a video: same aspect ratio, fits in 1280x720; small videos are enlarged until
    their longer side is 640 pixels (if that still fits)."""
    fit = min(1280 / width, 720 / height)
    scale = min(fit, max(1.0, 640 / max(width, height)))
    return max(2, round(width * scale)), max(2, round(height * scale))


def render_size(width: int, height: int) -> tuple[int, int]:
    """Output size of ``--render``: the depth video's size, rounded down to even (H.264 needs it)."""
    return max(2, width - width % 2), max(2, height - height % 2)


def _view_intrinsics(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """The source camera's vertical field of view at another image size, with square pixels.

    (Open3D's legacy view control uses one field of view; the vertical one is kept.)
    """
    fy = intr.fy * height / intr.height
    return Intrinsics(height, width, fy, fy, (width - 1) / 2.0, (height - 1) / 2.0)


def _x11_reachable(display: str) -> bool:
    """Whether an X server answers on ``display`` (XOpenDisplay through ctypes; False without libX11)."""
    try:
        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    except OSError:
        return False
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        return False
    x11.XCloseDisplay(handle)
    return True


def _wayland_reachable(env) -> bool:
    name = env.get("WAYLAND_DISPLAY", "")
    path = Path(name) if name.startswith("/") else Path(env.get("XDG_RUNTIME_DIR", "/nonexistent")) / name
    return path.exists()


def display_problem(environ=None) -> str | None:
    """Why no window can be opened here, or None when one can.

    Linux needs DISPLAY (an X server that answers) or WAYLAND_DISPLAY (an existing socket); without
    them Open3D silently falls back to an invisible offscreen context. macOS/Windows always have one.
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if not display and not wayland:
        return NO_DISPLAY_MESSAGE
    if display and _x11_reachable(display):
        return None
    if wayland and _wayland_reachable(env):
        return None
    shown = display or wayland
    return f"cannot connect to display {shown!r}: use --render out.mp4 or run under xvfb-run"


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
class GeometryBuilder:
    """Build/update the Open3D geometry of a frame, reusing buffers between frames.

    Args:
        intr: intrinsics of the depth video.
        max_depth: far end of the depth colour map (when frames have no colour).
        point_cloud: points instead of a triangle mesh.
        remove_edges: drop triangles (or flying points) across depth discontinuities.
        edge_threshold: relative depth jump for ``remove_edges`` (see :mod:`depth_mesh`).
    """

    def __init__(self, intr: Intrinsics, max_depth: float, point_cloud: bool = False,
                 remove_edges: bool = False,
                 edge_threshold: float = depth_mesh.DEFAULT_EDGE_THRESHOLD) -> None:
        o3d = _open3d()

        self._o3d = o3d
        self.intr = intr
        self.max_depth = float(max_depth)
        self.point_cloud = point_cloud
        self.remove_edges = remove_edges
        self.edge_threshold = edge_threshold
        n = intr.width * intr.height
        if point_cloud:
            self.geometry = o3d.geometry.PointCloud()
            self._vertices = np.empty((n, 3), dtype=np.float64)
            self._colors = np.empty((n, 3), dtype=np.float64)
        else:
            self.geometry = o3d.geometry.TriangleMesh()
            self.geometry.vertices = o3d.utility.Vector3dVector(np.zeros((n, 3)))
            self.geometry.vertex_colors = o3d.utility.Vector3dVector(np.zeros((n, 3)))
            self._triangles = depth_mesh.grid_triangles(intr.height, intr.width)
            if not remove_edges:
                self.geometry.triangles = o3d.utility.Vector3iVector(self._triangles.copy())
        self.visible_count = 0  # triangles (mesh) or points (point cloud) of the last frame

    def _fill_colors(self, frame: Frame, out: np.ndarray) -> None:
        if frame.color is not None:
            depth_mesh.vertex_colors(frame.color, out=out)
        else:
            depth_mesh.depth_colors(frame.depth, self.max_depth, out=out)

    def update(self, frame: Frame):
        """Load ``frame`` into :attr:`geometry` and return it."""
        o3d = self._o3d
        if frame.depth.shape != (self.intr.height, self.intr.width):
            raise ValueError(f"frame is {frame.depth.shape}, expected {(self.intr.height, self.intr.width)}")
        if self.point_cloud:
            mask = depth_mesh.point_mask(frame.depth, self.edge_threshold if self.remove_edges else None)
            count = int(np.count_nonzero(mask))
            pcd = self.geometry
            if count != len(pcd.points):  # (re)allocate Open3D's buffers only when the count changes
                pcd.points = o3d.utility.Vector3dVector(np.zeros((count, 3)))
                pcd.colors = o3d.utility.Vector3dVector(np.zeros((count, 3)))
            points, colors = np.asarray(pcd.points), np.asarray(pcd.colors)
            if count == mask.size:  # every pixel is a point: fill Open3D's buffers directly
                depth_mesh.mesh_vertices(frame.depth, self.intr, out=points)
                self._fill_colors(frame, colors)
            else:
                depth_mesh.mesh_vertices(frame.depth, self.intr, out=self._vertices)
                self._fill_colors(frame, self._colors)
                points[...] = depth_mesh.select_rows(self._vertices, mask)
                colors[...] = depth_mesh.select_rows(self._colors, mask)
            self.visible_count = count
        else:
            depth_mesh.mesh_vertices(frame.depth, self.intr, out=np.asarray(self.geometry.vertices))
            self._fill_colors(frame, np.asarray(self.geometry.vertex_colors))
            if self.remove_edges:
                kept = depth_mesh.kept_triangles(frame.depth, self.edge_threshold)
                self.geometry.triangles = o3d.utility.Vector3iVector(kept)
                self.visible_count = len(kept)
            else:
                self.visible_count = len(self._triangles)
        return self.geometry


# --------------------------------------------------------------------------------------------------
# Offscreen rendering
# --------------------------------------------------------------------------------------------------
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


def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def _configure_render_option(opt, point_size: float) -> None:
    opt.background_color = np.asarray(BACKGROUND)
    opt.light_on = False  # show the video's colours as they are
    opt.mesh_show_back_face = True
    opt.point_size = float(point_size)


def _apply_camera(view_control, intr: Intrinsics, extrinsic: np.ndarray) -> None:
    o3d = _open3d()

    params = view_control.convert_to_pinhole_camera_parameters()
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(intr.width, intr.height, intr.fx, intr.fy,
                                                         intr.cx, intr.cy)
    params.extrinsic = extrinsic
    if not view_control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
        raise UserError(f"Open3D refused the camera for a {intr.width}x{intr.height} view")


def _set_clip_planes(view_control, pose: CameraPose, max_depth: float) -> None:
    far = 2.0 * (max_depth + float(np.linalg.norm(pose.eye))) + 10.0
    view_control.set_constant_z_near(0.02)
    view_control.set_constant_z_far(far)


class LegacyRenderer:
    """Offscreen rendering through a hidden legacy ``Visualizer`` window (EGL when there is no display)."""

    name = "legacy"

    def __init__(self, width: int, height: int, point_size: float = 2.0) -> None:
        o3d = _open3d()

        self.width, self.height = width, height
        self.point_size = point_size
        self._vis = o3d.visualization.Visualizer()
        if not self._vis.create_window(window_name="render", width=width, height=height, visible=False):
            raise UserError("Open3D cannot create an offscreen OpenGL context (install Mesa's EGL/GL "
                           "drivers or a GPU driver)")
        self._geometry = None

    def render(self, geometry, intr: Intrinsics, pose: CameraPose, max_depth: float) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of ``geometry`` seen from ``pose``."""
        vis = self._vis
        if self._geometry is not geometry:
            vis.clear_geometries()
            vis.add_geometry(geometry)
            _configure_render_option(vis.get_render_option(), self.point_size)
            self._geometry = geometry
        else:
            vis.update_geometry(geometry)
        ctr = vis.get_view_control()
        _set_clip_planes(ctr, pose, max_depth)
        _apply_camera(ctr, _view_intrinsics(intr, self.width, self.height), pose.extrinsic())
        vis.poll_events()
        return _to_uint8(vis.capture_screen_float_buffer(do_render=True))

    def close(self) -> None:
        self._vis.destroy_window()


class FilamentRenderer:
    """Offscreen rendering with Open3D's Filament ``OffscreenRenderer`` (probe it first!)."""

    name = "filament"

    def __init__(self, width: int, height: int, point_size: float = 2.0) -> None:
        o3d = _open3d()

        self.width, self.height = width, height
        self._renderer = o3d.visualization.rendering.OffscreenRenderer(width, height)
        self._renderer.scene.set_background([*BACKGROUND, 1.0])
        self._renderer.scene.view.set_post_processing(False)  # exact colours, no tone mapping
        self._material = o3d.visualization.rendering.MaterialRecord()
        self._material.shader = "defaultUnlit"
        self._material.point_size = float(point_size)

    def render(self, geometry, intr: Intrinsics, pose: CameraPose, max_depth: float) -> np.ndarray:
        scene = self._renderer.scene
        scene.clear_geometry()
        scene.add_geometry("frame", geometry, self._material)
        view = _view_intrinsics(intr, self.width, self.height)
        self._renderer.setup_camera(view.matrix(), pose.extrinsic(), self.width, self.height)
        return _to_uint8(self._renderer.render_to_image())

    def close(self) -> None:
        self._renderer = None


def open_renderer(width: int, height: int, backend: str = "auto", point_size: float = 2.0):
    """An offscreen renderer: ``legacy``, ``filament`` or ``auto`` (legacy, else a probed Filament)."""
    if backend not in ("auto", "legacy", "filament"):
        raise ValueError(f"unknown render backend {backend!r}")
    if backend in ("auto", "legacy"):
        try:
            return LegacyRenderer(width, height, point_size)
        except UserError:
            if backend == "legacy":
                raise
            log.warning("the legacy Open3D renderer is not available; trying the Filament renderer")
    if not probe_offscreen_renderer():
        raise UserError("Open3D's offscreen renderer does not work here (no usable OpenGL/EGL or Vulkan "
                       "driver); install Mesa (libegl1, libgl1-mesa-dri, mesa-vulkan-drivers)")
    return FilamentRenderer(width, height, point_size)


def render_video(source: FrameSource, builder: GeometryBuilder, pose: CameraPose, out_path,
                 backend: str = "auto", start_frame: int = 0, point_size: float = 2.0) -> int:
    """Render frames ``start_frame ..`` of ``source`` to ``out_path`` (H.264, atomic). Returns the count."""
    first = source.get(start_frame)
    if first is None:
        raise UserError(f"--draw_frame {start_frame} is past the end of the video "
                       f"({source.num_frames} frames)")
    width, height = render_size(source.width, source.height)
    renderer = open_renderer(width, height, backend, point_size)
    total = source.num_frames_estimate
    bar = progress_bar(total=None if total is None else max(total - start_frame, 0), desc="render")
    try:
        with VideoWriter(out_path, width, height, source.fps, codec="libx264", pix_fmt="yuv420p",
                         options={"crf": "18", "preset": "medium"}) as writer:
            index, frame = start_frame, first
            while frame is not None:
                geometry = builder.update(frame)
                writer.write(renderer.render(geometry, builder.intr, pose, builder.max_depth))
                bar.update(1)
                index += 1
                frame = source.get(index)
            count = writer.frames_written
    finally:
        bar.close()
        renderer.close()
    return count


# --------------------------------------------------------------------------------------------------
# Interactive window
# --------------------------------------------------------------------------------------------------
@dataclass
class _ViewerState:
    index: int
    playing: bool
    step: int = 0
    reset_view: bool = False
    quit: bool = False


def _status_text(state: _ViewerState, total: int | None, at_end: bool) -> str:
    count = "?" if total is None else str(total)
    mode = "playing" if state.playing else ("paused at end" if at_end else "paused")
    return (f"frame {state.index}/{count} {mode}  [space play/pause, left/right step, r reset view, "
            "q quit]")


def run_viewer(source: FrameSource, builder: GeometryBuilder, pose: CameraPose, start_frame: int = 0,
               paused: bool = False, point_size: float = 2.0, title: str = "depth video") -> int:
    """Open the interactive window and play ``source`` until the user quits. Returns 0."""
    problem = display_problem()
    if problem is not None:
        raise UserError(problem)
    first = source.get(start_frame)
    if first is None:
        raise UserError(f"--draw_frame {start_frame} is past the end of the video "
                       f"({source.num_frames} frames)")
    o3d = _open3d()

    width, height = window_size(source.width, source.height)
    vis = o3d.visualization.VisualizerWithKeyCallback()
    if not vis.create_window(window_name=title, width=width, height=height, visible=True):
        raise UserError(f"cannot open a window on display {os.environ.get('DISPLAY', '')!r}: "
                       "use --render out.mp4 or run under xvfb-run")
    state = _ViewerState(index=start_frame, playing=not paused)
    view_intr = _view_intrinsics(builder.intr, width, height)

    def reset_view() -> None:
        ctr = vis.get_view_control()
        _set_clip_planes(ctr, pose, builder.max_depth)
        _apply_camera(ctr, view_intr, pose.extrinsic())

    def on_space(_vis) -> bool:
        state.playing = not state.playing
        return False

    def on_step(delta: int):
        def callback(_vis) -> bool:
            state.playing = False
            state.step += delta
            return False
        return callback

    def on_reset(_vis) -> bool:
        state.reset_view = True
        return False

    def on_quit(_vis) -> bool:
        state.quit = True
        return False

    for key, callback in ((KEY_SPACE, on_space), (KEY_RIGHT, on_step(1)), (KEY_LEFT, on_step(-1)),
                          (KEY_R, on_reset), (KEY_Q, on_quit), (KEY_ESCAPE, on_quit)):
        vis.register_key_callback(key, callback)

    status = progress_bar(total=None, desc="", bar_format="{desc}", mininterval=0.0)
    at_end = False
    try:
        vis.add_geometry(builder.update(first))
        _configure_render_option(vis.get_render_option(), point_size)
        reset_view()
        # update_renderer() only asks for a redraw: the next poll_events() draws and shows the picture.
        # The status line of a change is therefore written after that poll_events(), so that it never
        # describes a picture the window does not show yet.
        pending_status = _status_text(state, source.num_frames, at_end)
        frame_period = 1.0 / float(source.fps) if source.fps else 1.0 / 30.0
        next_due = time.monotonic() + frame_period
        while not state.quit and vis.poll_events():
            if pending_status is not None:
                status.set_description_str(pending_status)
                pending_status = None
            wanted = None
            if state.step:
                wanted, state.step = state.index + state.step, 0
            elif state.playing and time.monotonic() >= next_due:
                wanted = 0 if at_end else state.index + 1  # play at the end starts over
            if state.reset_view:
                state.reset_view = False
                reset_view()
                vis.update_renderer()
            if wanted is None:
                time.sleep(0.005)
                continue
            frame = source.get(wanted)
            at_end = frame is None and wanted > state.index
            if frame is None:
                state.playing = False
            else:
                vis.update_geometry(builder.update(frame))
                vis.update_renderer()
                state.index = frame.index
                next_due = time.monotonic() + frame_period
            pending_status = _status_text(state, source.num_frames, at_end)
    finally:
        status.close()
        vis.destroy_window()
    return 0


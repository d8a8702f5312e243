"""What the viewer draws and from where: the camera pose, the frame's Open3D geometry, the view's
intrinsics and the drawing options shared by the window and the offscreen renderers.

Positions are metres. The *pose frame* of the command line is the original camera's: x right, y up,
z forward (the depth direction); the *viewer frame* of the geometry is Open3D's (see
:mod:`mvda.ops.depth_mesh`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mvda.errors import UserError
from mvda.ops import depth_mesh
from mvda.ops.geometry import Intrinsics

from .frames import Frame

__all__ = [
    "BACKGROUND",
    "DEFAULT_EYE",
    "open3d_module",
    "CameraPose",
    "default_target",
    "resolve_pose",
    "view_intrinsics",
    "GeometryBuilder",
    "configure_render_option",
    "apply_camera",
    "set_clip_planes",
]

log = logging.getLogger("mvda")

#: Background colour (RGB, 0..1) of the window and the renders.
BACKGROUND = (1.0, 1.0, 1.0)
#: Default camera position in the pose frame (metres): 1 m above and 2 m behind the original camera.
DEFAULT_EYE = (0.0, 1.0, -2.0)


def open3d_module():
    """Import Open3D, keeping its console chatter to errors unless --verbose asked for info."""
    import open3d as o3d

    levels = o3d.utility.VerbosityLevel
    o3d.utility.set_verbosity_level(levels.Info if log.isEnabledFor(logging.INFO) else levels.Error)
    return o3d


# --------------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraPose:
    """Viewer camera: ``eye`` (position) and ``target``, (3,) arrays in the viewer frame, metres."""

    eye: np.ndarray
    target: np.ndarray

    def extrinsic(self) -> np.ndarray:
        """(4, 4) world-to-camera matrix (Open3D pinhole convention)."""
        return depth_mesh.look_at_extrinsic(self.eye, self.target)


def default_target(depth: np.ndarray) -> tuple[float, float, float]:
    """Default look-at point in the pose frame, metres: on the optical axis at the median valid depth
    of the (H, W) ``depth`` (1 m if no pixel is valid)."""
    d = np.asarray(depth)
    valid = d[(d > 0) & np.isfinite(d)]
    z = float(np.median(valid)) if valid.size else 1.0
    return (0.0, 0.0, z)


def resolve_pose(depth: np.ndarray, x=None, y=None, z=None, tx=None, ty=None, tz=None) -> CameraPose:
    """Camera pose from the command-line values (pose frame, metres; None = default for that axis).

    Defaults: position :data:`DEFAULT_EYE` (1 m above and 2 m behind the original camera), target on
    the optical axis at the median depth of ``depth`` ((H, W) metres, the first frame shown).
    """
    eye = [v if v is not None else d for v, d in zip((x, y, z), DEFAULT_EYE)]
    target = [v if v is not None else d for v, d in zip((tx, ty, tz), default_target(depth))]
    pose = CameraPose(depth_mesh.pose_to_viewer(eye), depth_mesh.pose_to_viewer(target))
    try:
        pose.extrinsic()
    except ValueError as exc:
        raise UserError(f"bad camera pose --x/--y/--z {eye} --tx/--ty/--tz {target}: {exc}") from None
    return pose


def view_intrinsics(intr: Intrinsics, height: int, width: int) -> Intrinsics:
    """The source camera's vertical field of view at another image size (pixels), with square pixels.

    (Open3D's legacy view control uses one field of view; the vertical one is kept.)
    """
    fy = intr.fy * height / intr.height
    return Intrinsics(height, width, fy, fy, (width - 1) / 2.0, (height - 1) / 2.0)


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
class GeometryBuilder:
    """Build/update the Open3D geometry of a frame, reusing buffers between frames.

    The triangle index array comes from :func:`depth_mesh.grid_triangles` (built once per resolution).

    Args:
        intr: intrinsics of the depth video ((H, W) pixels).
        max_depth: far end of the depth colour map in metres (when frames have no colour).
        point_cloud: points instead of a triangle mesh.
        remove_edges: drop triangles (or flying points) across depth discontinuities.
        edge_threshold: relative depth jump for ``remove_edges`` (see :mod:`depth_mesh`).
    """

    def __init__(self, intr: Intrinsics, max_depth: float, point_cloud: bool = False,
                 remove_edges: bool = False,
                 edge_threshold: float = depth_mesh.DEFAULT_EDGE_THRESHOLD) -> None:
        o3d = open3d_module()

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
# Drawing options shared by the window and the legacy offscreen renderer
# --------------------------------------------------------------------------------------------------
def configure_render_option(opt, point_size: float) -> None:
    """White background, unlit (the video's colours as they are), back faces, ``point_size`` pixels."""
    opt.background_color = np.asarray(BACKGROUND)
    opt.light_on = False
    opt.mesh_show_back_face = True
    opt.point_size = float(point_size)


def apply_camera(view_control, intr: Intrinsics, extrinsic: np.ndarray) -> None:
    """Point a legacy view control along ``extrinsic`` ((4, 4) world-to-camera) with ``intr``."""
    o3d = open3d_module()

    params = view_control.convert_to_pinhole_camera_parameters()
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(intr.width, intr.height, intr.fx, intr.fy,
                                                         intr.cx, intr.cy)
    params.extrinsic = extrinsic
    if not view_control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
        raise UserError(f"Open3D refused the camera for a {intr.width}x{intr.height} view")


def set_clip_planes(view_control, pose: CameraPose, max_depth: float) -> None:
    """Near 2 cm; far beyond everything ``max_depth`` metres from the camera can show."""
    far = 2.0 * (max_depth + float(np.linalg.norm(pose.eye))) + 10.0
    view_control.set_constant_z_near(0.02)
    view_control.set_constant_z_far(far)

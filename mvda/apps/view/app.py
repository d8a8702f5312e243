"""The viewer job behind ``3d_view_depthfile.py``: check the options, open the frames, place the camera,
then either open the interactive window or render every frame to a video."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from depth_codec import resolve_fov
from mvda.errors import UserError
from mvda.ops import depth_mesh
from mvda.ops.geometry import intrinsics_from_fov

from .frames import FrameSource
from .render import BACKENDS, RenderResult, render_video
from .scene import GeometryBuilder, resolve_pose
from .window import display_problem, run_viewer

__all__ = ["RENDER_SUFFIXES", "ViewOptions", "view_depth_video"]

RENDER_SUFFIXES = (".mp4", ".mkv", ".mov")


@dataclass(frozen=True)
class ViewOptions:
    """What to show and how (the command line's values; None means the default).

    ``xfov`` / ``yfov``: the camera's field of view in degrees (one of them is needed). ``eye`` and
    ``target``: camera position and look-at point (x, y, z) in metres relative to the original camera
    (x right, y up, z forward), each coordinate None for its default. ``render``: an output video
    (.mp4/.mkv/.mov) instead of the window; ``progress``: its progress bar.
    """

    video: Path
    color_video: Path | None = None
    xfov: float | None = None
    yfov: float | None = None
    max_depth: float | None = None
    point_cloud: bool = False
    remove_edges: bool = False
    edge_threshold: float | None = None
    max_frames: int | None = None
    skip_damaged: bool = False
    draw_frame: int | None = None
    eye: tuple[float | None, float | None, float | None] = (None, None, None)
    target: tuple[float | None, float | None, float | None] = (None, None, None)
    render: Path | None = None
    render_backend: str = "auto"
    point_size: float = 2.0
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`UserError` for option combinations that cannot work (before opening any file)."""
        if self.xfov is None and self.yfov is None:
            raise UserError("give the camera's field of view with --xfov or --yfov (degrees); the depth file has no "
                            "field-of-view tags")
        if self.edge_threshold is not None and not self.remove_edges:
            raise UserError("--edge_threshold only applies with --remove_edges")
        if self.render_backend not in BACKENDS:
            raise UserError(f"--render_backend {self.render_backend}: use one of {', '.join(BACKENDS)}")
        if self.render is not None:
            out = Path(self.render)
            if out.suffix.lower() not in RENDER_SUFFIXES:
                raise UserError(f"--render {out}: use a .mp4, .mkv or .mov file name")
            for given in (self.video, self.color_video):
                if given is not None and Path(given).exists() and out.exists() and out.samefile(given):
                    raise UserError(f"--render {out} would overwrite an input video; choose another name")


def view_depth_video(options: ViewOptions) -> RenderResult | None:
    """Show ``options.video`` in the interactive window (returns None when the user quits), or render it
    to ``options.render`` (returns what was written). Raises :class:`UserError` for what a user can fix."""
    if options.xfov is None and options.yfov is None:
        xfov, yfov = resolve_fov(None, None, options.video)  # the depth file's tags (a missing file: one line)
        options = dataclasses.replace(options, xfov=xfov, yfov=yfov)
    options.validate()
    with FrameSource(options.video, options.color_video, max_depth=options.max_depth,
                     max_frames=options.max_frames, skip_damaged=options.skip_damaged) as source:
        if options.render is None:
            problem = display_problem()
            if problem is not None:
                raise UserError(problem)
        try:
            intr = intrinsics_from_fov(source.height, source.width, options.xfov, options.yfov)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        start = options.draw_frame or 0
        first = source.get(start)
        if first is None:
            raise UserError(f"--draw_frame {start} is past the end of the video ({source.num_frames} frames)")
        pose = resolve_pose(first.depth, *options.eye, *options.target)
        threshold = (options.edge_threshold if options.edge_threshold is not None
                     else depth_mesh.DEFAULT_EDGE_THRESHOLD)
        builder = GeometryBuilder(intr, source.max_depth, point_cloud=options.point_cloud,
                                  remove_edges=options.remove_edges, edge_threshold=threshold)
        if options.render is not None:
            return render_video(source, builder, pose, options.render, backend=options.render_backend,
                                start_frame=start, point_size=options.point_size, progress=options.progress)
        run_viewer(source, builder, pose, start_frame=start, paused=options.draw_frame is not None,
                   point_size=options.point_size, title=f"{Path(options.video).name} - depth viewer")
        return None

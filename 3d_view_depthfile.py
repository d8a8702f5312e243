"""View a metric depth video as a coloured 3D mesh (Open3D), or render it to a video without a display.

The depth video is the RGB-packed *_depth.mkv written by video_metric_convert.py; its metres are
decoded with the file's max_depth tag (else 6 m, or --max_depth). Give the camera's field of view
(--xfov or --yfov, degrees). The viewer starts behind and above the original camera; camera position
(--x --y --z) and target (--tx --ty --tz) are metres relative to the original camera: x right,
y up, z forward (the depth direction), so --z -2 is 2 m behind it.

Keys: space play/pause, right/left arrow step one frame (left goes back through a buffer of recent
frames; further back re-decodes from the start), r reset the view, q or Esc quit. Mouse: Open3D's
orbit (left drag), pan (ctrl + left drag, or middle drag) and zoom (wheel). Frame numbers count
from 0 and are shown on a console status line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mvda.errors import UserError
from mvda.cli import non_negative_float, non_negative_int, positive_float, positive_int, run_cli

PROG = "3d_view_depthfile.py"
RENDER_SUFFIXES = (".mp4", ".mkv", ".mov")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python 3d_view_depthfile.py --video some_video_depth.mkv "
               "--color_video some_video.mkv --xfov 48",
    )
    parser.add_argument("--video", "--depth_video", dest="video", required=True,
                        help="RGB-packed depth video (*_depth.mkv)")
    parser.add_argument("--color_video", help="colour video with the same frames (default: colour by depth)")
    parser.add_argument("--xfov", type=positive_float, help="horizontal field of view of the camera, degrees")
    parser.add_argument("--yfov", type=positive_float, help="vertical field of view of the camera, degrees")
    parser.add_argument("--max_depth", type=positive_float, default=None,
                        help="depth scale the video was written with, metres (default: the file's tag, else 6)")
    parser.add_argument("--point_cloud", action="store_true", help="draw points instead of a mesh")
    parser.add_argument("--remove_edges", action="store_true",
                        help="drop triangles that span a depth discontinuity (and flying points)")
    parser.add_argument("--edge_threshold", type=non_negative_float, default=None,
                        help="relative depth jump treated as a discontinuity by --remove_edges "
                             "(default 0.05: max depth > 1.05 x min depth within a triangle)")
    parser.add_argument("--max_frames", type=positive_int, default=None,
                        help="use at most this many frames from the start")
    parser.add_argument("--draw_frame", type=non_negative_int, default=None,
                        help="open paused on frame N (from 0); with --render, start rendering at N")
    for axis, default in zip("xyz", ("0", "1", "-2")):
        parser.add_argument(f"--{axis}", type=float, default=None,
                            help=f"camera position {axis}, metres (default {default})")
    for axis, default in zip("xyz", ("0", "0", "median depth of the first frame")):
        parser.add_argument(f"--t{axis}", type=float, default=None,
                            help=f"camera target {axis}, metres (default {default})")
    parser.add_argument("--render", metavar="OUT.mp4",
                        help="render every frame to this H.264 video (no display needed) instead of "
                             "opening a window")
    parser.add_argument("--render_backend", choices=("auto", "legacy", "filament"), default="auto",
                        help="Open3D renderer for --render (default auto: legacy offscreen window, "
                             "else Filament)")
    parser.add_argument("--point_size", type=positive_float, default=2.0, help="point size in pixels")
    parser.add_argument("-v", "--verbose", action="store_true", help="log informational messages")
    return parser


def _run(args: argparse.Namespace) -> int:
    from mvda.ops import depth_mesh
    import mvda.apps.view as depth_viewer
    from mvda.ops.geometry import intrinsics_from_fov

    if args.xfov is None and args.yfov is None:
        raise UserError("give the camera's field of view with --xfov or --yfov (degrees)")
    if args.edge_threshold is not None and not args.remove_edges:
        raise UserError("--edge_threshold only applies with --remove_edges")
    if args.render is not None:
        out = Path(args.render)
        if out.suffix.lower() not in RENDER_SUFFIXES:
            raise UserError(f"--render {out}: use a .mp4, .mkv or .mov file name")
        for given in (args.video, args.color_video):
            if given is not None and Path(given).exists() and out.exists() and out.samefile(given):
                raise UserError(f"--render {out} would overwrite an input video; choose another name")

    with depth_viewer.FrameSource(args.video, args.color_video, max_depth=args.max_depth,
                                  max_frames=args.max_frames) as source:
        if args.render is None:
            problem = depth_viewer.display_problem()
            if problem is not None:
                raise UserError(problem)
        try:
            intr = intrinsics_from_fov(source.height, source.width, args.xfov, args.yfov)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        start = args.draw_frame or 0
        first = source.get(start)
        if first is None:
            raise UserError(f"--draw_frame {start} is past the end of the video ({source.num_frames} frames)")
        pose = depth_viewer.resolve_pose(first.depth, args.x, args.y, args.z, args.tx, args.ty, args.tz)
        threshold = args.edge_threshold if args.edge_threshold is not None else depth_mesh.DEFAULT_EDGE_THRESHOLD
        builder = depth_viewer.GeometryBuilder(intr, source.max_depth, point_cloud=args.point_cloud,
                                               remove_edges=args.remove_edges, edge_threshold=threshold)
        if args.render is not None:
            depth_viewer.render_video(source, builder, pose, args.render, backend=args.render_backend,
                                      start_frame=start, point_size=args.point_size)
            return 0
        return depth_viewer.run_viewer(source, builder, pose, start_frame=start,
                                       paused=args.draw_frame is not None, point_size=args.point_size,
                                       title=f"{Path(args.video).name} - depth viewer")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args), verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())

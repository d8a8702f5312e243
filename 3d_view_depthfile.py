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
import sys

from mvda.apps import view
from mvda.cli import (add_damage_arg, add_fov_args, add_frame_limit_arg, add_max_depth_arg, add_report_args,
                      finite_float, non_negative_float, non_negative_int, positive_float, run_cli)

PROG = "3d_view_depthfile.py"
EXAMPLE = """\
examples:
  python 3d_view_depthfile.py --video some_video_depth.mkv --color_video some_video.mkv --xfov 48
  python 3d_view_depthfile.py --video some_video_depth.mkv --color_video some_video.mkv --xfov 48 \\
      --remove_edges --render some_video_3d.mp4
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", "--depth_video", dest="video", required=True,
                        help="RGB-packed depth video (*_depth.mkv)")
    parser.add_argument("--color_video", help="colour video with the same frames (default: colour by depth)")
    add_fov_args(parser)
    add_max_depth_arg(parser, reader=True)
    parser.add_argument("--point_cloud", action="store_true", help="draw points instead of a mesh")
    parser.add_argument("--remove_edges", action="store_true",
                        help="drop triangles that span a depth discontinuity (and flying points)")
    parser.add_argument("--edge_threshold", type=non_negative_float, default=None,
                        help="relative depth jump treated as a discontinuity by --remove_edges "
                             "(default 0.05: max depth > 1.05 x min depth within a triangle)")
    add_frame_limit_arg(parser)
    parser.add_argument("--draw_frame", type=non_negative_int, default=None,
                        help="open paused on frame N (from 0); with --render, start rendering at N")
    for axis, default in zip("xyz", ("0", "1", "-2")):
        parser.add_argument(f"--{axis}", type=finite_float, default=None,
                            help=f"camera position {axis}, metres (default {default})")
    for axis, default in zip("xyz", ("0", "0", "median depth of the first frame")):
        parser.add_argument(f"--t{axis}", type=finite_float, default=None,
                            help=f"camera target {axis}, metres (default {default})")
    parser.add_argument("--render", metavar="OUT.mp4",
                        help="render every frame to this H.264 video (no display needed) instead of "
                             "opening a window")
    parser.add_argument("--render_backend", choices=view.BACKENDS, default="auto",
                        help="Open3D renderer for --render (default auto: legacy offscreen window, "
                             "else Filament)")
    parser.add_argument("--point_size", type=positive_float, default=2.0, help="point size in pixels")
    add_damage_arg(parser)
    add_report_args(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    result = view.view_depth_video(view.ViewOptions(
        video=args.video, color_video=args.color_video, xfov=args.xfov, yfov=args.yfov,
        max_depth=args.max_depth, point_cloud=args.point_cloud, remove_edges=args.remove_edges,
        edge_threshold=args.edge_threshold, max_frames=args.max_frames, draw_frame=args.draw_frame,
        eye=(args.x, args.y, args.z), target=(args.tx, args.ty, args.tz), render=args.render,
        render_backend=args.render_backend, point_size=args.point_size, progress=not args.no_progress,
        skip_damaged=args.skip_damaged,
    ))
    if result is not None:
        print(f"{PROG}: wrote {result.frames} frames ({result.width}x{result.height}) in {result.seconds:.1f} s "
              f"({result.fps:.1f} fps) to {result.output}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

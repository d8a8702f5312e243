"""Render a stereo 3D video from a colour video and its metric depth video.

Every frame is re-rendered for a left and a right eye: a pinhole camera with the given field of view
(principal point at the image centre, square pixels unless both --xfov and --yfov are given) moved
by -/+ half the pupillary distance along x. A point at depth Z moves by fx * (IPD / 2) / Z pixels,
right in the left-eye view and left in the right-eye view (infinity on the screen plane; --convergence
moves the screen plane to a given depth, see the comfort flags). The warp is exact and z-ordered (nearest
surface wins, sub-pixel accurate, no cracks on slanted surfaces); what an eye sees that the camera did
not (disocclusions) is filled from the background side, and --infill_mask writes those pixels as a
video for inpainting tools. Unknown depth (0) is treated as the far plane (max_depth).

The output goes next to the depth video as {depth video}_stereo.mp4 (H.264, full side-by-side with
the left eye on the left, the colour video's audio copied), or {depth video}_stereo.mkv with
--lossless (FFV1). It carries the stereo layout players read (MP4: the st3d box, plus sv3d for VR180;
Matroska: StereoMode, plus Projection for VR180). --player_names adds the layout suffix players detect:

  --format   suffix    layout
  sbs        _LR       full side-by-side, left eye left
  half-sbs   _3dh      half-width side-by-side
  tb         _TB       full top-bottom, left eye on top
  half-tb    _3dv      half-height top-bottom
  vr180      _180_LR   180-degree equirectangular eyes side by side (VR headsets, YouTube VR)
  anaglyph   _anaglyph red-cyan glasses
"""

from __future__ import annotations

import argparse
import sys

from mvda.apps import stereo
from mvda.apps.stereo_output import CODECS
from mvda.cli import (add_damage_arg, add_device_args, add_fov_args, add_frame_limit_arg, add_max_depth_arg,
                      add_report_args, non_negative_int, positive_float, positive_int, run_cli)
from mvda.ops.anaglyph import ANAGLYPH_METHODS, DEFAULT_ANAGLYPH_METHOD
from mvda.ops.stereo_comfort import DEFAULT_EDGE_DILATION, DEFAULT_EDGE_SHARPEN
from mvda.ops.stereo_warp import FILLS

PROG = "stero_rerender.py"
EXAMPLE = """example:
  python stero_rerender.py --video outputs/clip_depth.mkv --color_video clip.mp4 --xfov 48
  python stero_rerender.py --video outputs/clip_depth.mkv --color_video clip.mp4 --xfov 48 \
      --format vr180 --codec hevc --player_names     # -> outputs/clip_depth.mkv_stereo_180_LR.mp4
  python stero_rerender.py --video outputs/clip_depth.mkv --color_video clip.mp4 --xfov 48 --convergence 3 --max_disparity 2.5
      (for a 3D TV or monitor: the screen plane at 3 m, pop-out at most 2.5 % of the width)
"""


def percent(text: str) -> float:
    """argparse type: a percentage, more than 0 and at most 50."""
    value = positive_float(text)
    if value > 50:
        raise argparse.ArgumentTypeError(f"must be a percentage of the width, more than 0 and at most 50, got {value:g}")
    return value


def zoom_percent(text: str) -> float | str:
    """argparse type: "auto" or a percentage of the width cropped on each side, more than 0 and at most 20."""
    if text == "auto":
        return text
    value = positive_float(text)
    if value > 20:
        raise argparse.ArgumentTypeError(f"must be a percentage per side, more than 0 and at most 20, got {value:g}")
    return value


def crf_value(text: str) -> int:
    """argparse type: an H.264 constant rate factor 0..51."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..51, got {text!r}") from None
    if not 0 <= value <= 51:
        raise argparse.ArgumentTypeError(f"must be 0..51 (lower is better quality), got {value}")
    return value


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """The "output" group: codec, player names, anaglyph method, VR180 size."""
    group = parser.add_argument_group("output")
    group.add_argument("--codec", choices=tuple(CODECS), default="h264",
                       help="h264 (libx264, default) or hevc (libx265: smaller files, and frames beyond H.264's "
                            "4096x2304 limit, e.g. side-by-side 4K)")
    group.add_argument("--player_names", action="store_true",
                       help="insert the layout suffix players detect before the extension (_LR, _3dh, _TB, _3dv, "
                            "_180_LR, _anaglyph; see the table above), also into --output")
    group.add_argument("--anaglyph_method", choices=ANAGLYPH_METHODS, default=DEFAULT_ANAGLYPH_METHOD,
                       help="with --format anaglyph: dubois (least-squares, least ghosting; default), color "
                            "(plain red/cyan), half-color (left eye grey in red), gray; encoded 4:4:4")
    group.add_argument("--vr180_size", type=positive_int, default=None, metavar="PIXELS",
                       help="with --format vr180: the side of each eye's square image (default: pi x the focal "
                            "length, which keeps the source's resolution at the centre, at most 2048, even)")


def add_comfort_args(parser: argparse.ArgumentParser) -> None:
    """The viewing-comfort flags: screen plane, depth budget, soft edges, hole fill."""
    group = parser.add_argument_group(
        "comfort", "where the screen plane is, how far things may pop out, soft depth edges and filled holes")
    group.add_argument("--convergence", type=positive_float, default=None, metavar="METRES",
                       help="depth that sits on the screen plane: nearer pops out, farther goes behind "
                            "(default: infinity on the screen, everything in front; right for VR headsets; "
                            "on a TV or monitor try the subject's distance)")
    group.add_argument("--max_disparity", type=percent, default=None, metavar="PERCENT",
                       help="compress near depths smoothly so that no point pops out by more than this "
                            "percent of the eye's width between the eyes, keeping the depth order "
                            "(default: no limit; 2-3 suits TVs and monitors)")
    group.add_argument("--edge_sharpen", type=non_negative_int, default=DEFAULT_EDGE_SHARPEN, metavar="PIXELS",
                       help="snap the in-between depths of soft depth edges within this many pixels to the "
                            f"nearer side, so edges are steps again (default {DEFAULT_EDGE_SHARPEN}; 0: off)")
    group.add_argument("--edge_dilation", type=non_negative_int, default=DEFAULT_EDGE_DILATION, metavar="PIXELS",
                       help="grow the near side of depth edges this many pixels into the background, so "
                            f"thin objects stay whole with soft network depth (default {DEFAULT_EDGE_DILATION}; 0: off)")
    group.add_argument("--edge_zoom", type=zoom_percent, nargs="?", const="auto", default=None, metavar="PERCENT",
                       help="zoom in slightly so that no eye shows the strips at the frame edges that the "
                            "camera never saw: crop PERCENT of the width on each side (and rows in "
                            "proportion), or, without a value, what the first frame needs plus 10 %% "
                            "(default: no zoom, the geometry stays exact and the strips are filled)")
    group.add_argument("--fill", choices=FILLS, default="smooth",
                       help="holes (what an eye sees that the camera did not): smooth (default: from the "
                            "background side, averaged vertically, no streaks), row (the background pixel "
                            "repeated along the row), none (black)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", "--depth_video", dest="video", required=True, metavar="DEPTH_VIDEO",
                        help="the RGB-packed metric depth video (*_depth.mkv from video_metric_convert.py)")
    parser.add_argument("--color_video", default=None,
                        help="the colour video the depth belongs to (default: the depth video's own frames, "
                             "as the original tool did)")
    add_fov_args(parser)
    add_max_depth_arg(parser, reader=True)
    parser.add_argument("--pupillary_distance", type=positive_float, default=stereo.DEFAULT_IPD_MM,
                        help="distance between the eyes in mm (default 63)")
    add_frame_limit_arg(parser)
    parser.add_argument("--format", choices=stereo.FORMATS, default="sbs",
                        help="sbs: full side-by-side, 2W x H (default); half-sbs: W x H; tb / half-tb: "
                             "top-bottom, left eye on top; vr180: each eye on a 180-degree equirectangular "
                             "half-sphere, side by side (for VR headsets); anaglyph: red-cyan")
    parser.add_argument("--crf", type=crf_value, default=18,
                        help="H.264/HEVC quality, 0..51, lower is better (default 18)")
    parser.add_argument("--preset", choices=stereo.X264_PRESETS, default="fast",
                        help="H.264 speed/size trade-off (default fast)")
    parser.add_argument("--lossless", action="store_true",
                        help="write lossless FFV1 in .mkv ({depth video}_stereo.mkv) instead of H.264")
    parser.add_argument("--infill_mask", action="store_true",
                        help="also write the filled-in (disoccluded) pixels as a black/white video in the same "
                             "layout: {output stem}_mask.mp4 (lossless H.264) or .mkv")
    parser.add_argument("--output", default=None,
                        help="output file (default: {depth video}_stereo.mp4, or .mkv with --lossless)")
    parser.add_argument("--max_stretch", type=positive_float, default=1.0,
                        help="neighbouring pixels whose gap grows by more than this many pixels in an eye's "
                             "view are a depth edge and are not joined (default 1)")
    parser.add_argument("--drop_fragments", type=non_negative_int, default=2,
                        help="rendered fragments of at most this many pixels between filled-in pixels (the "
                             "'flying pixels' of soft depth edges) are filled in too (default 2; 0: keep them)")
    add_output_args(parser)
    add_comfort_args(parser)
    add_device_args(parser, precision=False)
    add_damage_arg(parser)
    add_report_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: stereo.run(args, PROG), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

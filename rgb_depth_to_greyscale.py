"""Convert an RGB-packed metric depth video (*_depth.mkv) to greyscale depth for other tools.

8-bit (default): grey = rint(depth * 255 / max_depth), clipped to 0..255, written losslessly
(FFV1 in .mkv). --bit16: grey = rint(depth * 255**2 / max_depth), clipped to 0..65025 (the original
tool's full scale, so existing workflows keep their numbers), as 16-bit FFV1. --inverse makes near
white and far black (grey' = 255 - grey, or 65025 - grey with --bit16), as Looking Glass, Touchly and
VisionDepth3D expect. --png16 DIR writes a 16-bit PNG sequence (frame_000000.png, ...; values as
--bit16) instead of the video. max_depth: --max_depth when given (with a warning if it disagrees
with the file's max_depth tag), else the tag, else 6 m (files of the original tool have no tag).
"""

from __future__ import annotations

import argparse
import sys

from mvda.apps import grey
from mvda.cli import add_damage_arg, add_frame_limit_arg, add_max_depth_arg, add_report_args, run_cli

PROG = "rgb_depth_to_greyscale.py"

EPILOG = """examples:
  python rgb_depth_to_greyscale.py --video outputs/clip_depth.mkv
      -> outputs/clip_depth.mkv_grey_depth.mkv (8-bit, 255 = max_depth)
  python rgb_depth_to_greyscale.py --video outputs/clip_depth.mkv --bit16 --inverse
  python rgb_depth_to_greyscale.py --depth_video outputs/clip_depth.mkv --png16 outputs/clip_png16
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--video", "--depth_video", dest="video", required=True, metavar="X",
                        help="RGB-packed depth video (*_depth.mkv from video_metric_convert.py)")
    parser.add_argument("--output", metavar="PATH.mkv",
                        help=f"output video (default: X's whole name + '{grey.OUTPUT_SUFFIX}', "
                             "next to X)")
    add_max_depth_arg(parser, reader=True,
                      note="; also the depth that maps to white (black with --inverse)")
    parser.add_argument("--bit16", action="store_true",
                        help="16-bit greyscale: rint(depth * 65025 / max_depth) (the original 255**2 full scale)")
    parser.add_argument("--inverse", action="store_true",
                        help="near = white, far = black: 255 - v (8-bit) or 65025 - v (16-bit, PNG)")
    parser.add_argument("--png16", metavar="DIR",
                        help="write a 16-bit PNG sequence DIR/frame_000000.png ... (values as --bit16) "
                             "instead of the video; add --output to get both")
    add_frame_limit_arg(parser)
    add_damage_arg(parser)
    add_report_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        result = grey.convert_to_grey(args.video, args.output, args.png16, max_depth=args.max_depth,
                                      bit16=args.bit16, inverse=args.inverse, max_frames=args.max_frames,
                                      progress=not args.no_progress, skip_damaged=args.skip_damaged)
        for line in result.summary_lines():
            print(line)
        return 0

    return run_cli(PROG, body, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

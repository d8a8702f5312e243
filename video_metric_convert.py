"""Convert videos to metric depth videos (outputs/{name}_depth.mkv, RGB-packed metres, lossless FFV1).

Video-Depth-Anything gives temporally stable relative depth; metric Depth-Anything-V2 gives metres per
frame; a rolling (default) or global scale/shift fit in inverse-depth space combines them. Or use the
Metric-Video-Depth-Anything checkpoints directly with --model vda-metric, or MoGe-2's metres (with the
video's field of view) as the fit's anchor with --model vda+moge2. Frames stream through the
networks, so memory does not grow with the video length; depth is written at the source resolution
and frame rate (or --target_fps). The camera's field of view (MoGe-2 on a few keyframes, or --xfov)
goes into the depth file's tags for stereo and the viewer. --input_video accepts several files or folders.
"""

from __future__ import annotations

import argparse
import sys

from mvda.apps.convert import ENCODERS, FITS, METRIC_MODELS, MODELS, run
from mvda.apps.ray_split import DEFAULT_SPLIT_SECONDS
from mvda.apps.resume import PART_SECONDS
from mvda.apps.video_fov import FOV_MODES
from mvda.cli import (add_device_args, add_fov_args, add_fov_model_args, add_frame_limit_arg, add_max_depth_arg,
                      add_report_args, frame_rate, non_negative_float, positive_float, positive_int, run_cli)
from mvda.ops.scene_cuts import DEFAULT_THRESHOLD

PROG = "video_metric_convert.py"
EPILOG = """example:
  python video_metric_convert.py --input_video assets/big_buck_bunny_3s.mp4 --max_depth 20
  python video_metric_convert.py --input_video clips/ --fit global --metric_every 4 --precision bf16
  python video_metric_convert.py --input_video assets/big_buck_bunny_3s.mp4 --model vda+moge2 --fov_encoder vitl
  python video_metric_convert.py --input_video films/ --output_dir /shared/depth --ray auto   # a Ray cluster
  python video_metric_convert.py --input_video film.mkv --scene_cuts cuts.csv --resume --report
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_video", nargs="+", required=True, metavar="PATH",
                        help="video file(s) or folder(s) of videos to convert")
    parser.add_argument("--output_dir", default="./outputs",
                        help="folder for {name}_depth.mkv, relative to the current folder (default ./outputs)")
    parser.add_argument("--input_size", type=positive_int, default=518,
                        help="network input size, shorter side (default 518)")
    parser.add_argument("--max_res", type=int, default=1440,
                        help="frames larger than this are downscaled for inference; output stays at the source "
                             "resolution (default 1440; <= 0: never)")
    add_frame_limit_arg(parser, alias="--max_len")
    parser.add_argument("--target_fps", type=frame_rate, default=-1,
                        help="output frame rate; frames are dropped/duplicated by timestamp (-1: source rate)")
    add_max_depth_arg(parser, reader=False)
    add_fov_args(parser, note="; a known field of view, written into the depth file's tags for stereo and the viewer")
    parser.add_argument("--fov", choices=FOV_MODES, default="auto",
                        help="auto: MoGe-2's field of view of keyframes spread over the video into the depth file's "
                             "xfov/yfov tags (default; a missing MoGe-2 checkpoint is a warning, no tag); off: none. "
                             "--xfov/--yfov, when given, are written instead")
    add_fov_model_args(parser, note="; with --model vda+moge2 also the metric anchor")
    parser.add_argument("--model", choices=MODELS, default="vda+dav2",
                        help="vda+dav2: relative Video-Depth-Anything + metric Depth-Anything-V2 + fit (default); "
                             "vda-metric: Metric-Video-Depth-Anything directly (no DA-V2, no fit); vda+moge2: "
                             "MoGe-2's metres with the video's field of view as the fit's anchor instead of DA-V2")
    parser.add_argument("--encoder", choices=ENCODERS, default="vitl", help="Video-Depth-Anything size (default vitl)")
    parser.add_argument("--metric_encoder", choices=ENCODERS, default="vitl",
                        help="Depth-Anything-V2 metric size (default vitl)")
    parser.add_argument("--metric_model", choices=METRIC_MODELS, default="hypersim",
                        help="Depth-Anything-V2 metric training set: hypersim (indoor, 20 m) or vkitti (outdoor, 80 m)")
    parser.add_argument("--vda_checkpoint", default=None,
                        help="local Video-Depth-Anything .pth (default: Video-Depth-Anything/checkpoints, then the hub)")
    parser.add_argument("--metric_checkpoint", default=None,
                        help="local Depth-Anything-V2 metric .pth (default: Depth-Anything-V2/metric_depth/checkpoints, "
                             "then the hub)")
    parser.add_argument("--fit", choices=FITS, default="rolling",
                        help="rolling: the original per-frame rolling average (default); global: one robust fit over "
                             "the whole clip (two passes, temporary file in --output_dir)")
    parser.add_argument("--metric_every", type=positive_int, default=1,
                        help="run Depth-Anything-V2 on every N-th frame only (rolling fit; default 1)")
    parser.add_argument("--scene_cuts", default="auto", metavar="auto|off|FILE",
                        help="auto: detect scene cuts while decoding (default); off: none; FILE: cuts from another tool, "
                             "one frame number (0-based) or time (00:01:02.5) per line, or PySceneDetect's scene list CSV. "
                             "Each shot is converted as a video of its own (fresh Video-Depth-Anything windows and fit)")
    parser.add_argument("--scene_threshold", type=positive_float, default=DEFAULT_THRESHOLD,
                        help=f"cut detection threshold: lower finds more cuts (default {DEFAULT_THRESHOLD}; "
                             "mean difference of normalised thumbnails, about 1 across a cut)")
    parser.add_argument("--resume", action="store_true",
                        help="keep finished parts in {output}.parts/ and, when run again with --resume after an "
                             "interruption, continue from them (the result is identical to an uninterrupted run)")
    parser.add_argument("--report", action="store_true",
                        help="also draw {name}_depth_report.png beside the output: depth frames, and the fit's scale "
                             "and shift per frame with the scene cuts marked")
    parser.add_argument("--part_seconds", type=positive_float, default=PART_SECONDS, help=argparse.SUPPRESS)
    add_device_args(parser)
    parser.add_argument("--skip_existing", action="store_true", help="skip videos whose output already exists")
    ray = parser.add_argument_group("many videos on several GPUs or machines (Ray; install_mvda.sh --ray)")
    ray.add_argument("--ray", metavar="WHERE", default=None,
                     help="convert the videos on Ray workers, one per GPU (or per --ray_cpus_per_worker cores): "
                          "local (start Ray on this machine), auto (join the running cluster, RAY_ADDRESS) or "
                          "the address of a cluster; --output_dir must be writable by every worker")
    ray.add_argument("--ray_cpus", type=positive_int, default=None, metavar="N",
                     help="--ray local: cores Ray may use (default: all)")
    ray.add_argument("--ray_cpus_per_worker", type=positive_int, default=None, metavar="N",
                     help="cores per worker where there are no GPUs (default 4)")
    ray.add_argument("--ray_workers", type=positive_int, default=None, metavar="N",
                     help="at most N workers (default: one per GPU, or per --ray_cpus_per_worker cores)")
    ray.add_argument("--ray_split_seconds", type=non_negative_float, default=None, metavar="S",
                     help="split a video of at least 2*S seconds at its scene cuts into pieces of at least S seconds, "
                          "converted on several workers and joined losslessly (identical result); 0: never "
                          f"(default {DEFAULT_SPLIT_SECONDS:g})")
    add_report_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

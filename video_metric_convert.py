"""Convert videos to metric depth videos (outputs/{name}_depth.mkv, RGB-packed metres, lossless FFV1).

Video-Depth-Anything gives temporally stable relative depth; metric Depth-Anything-V2 gives metres per
frame; a rolling (default) or global scale/shift fit in inverse-depth space combines them. Or use the
Metric-Video-Depth-Anything checkpoints directly with --model vda-metric. Frames stream through the
networks, so memory does not grow with the video length; depth is written at the source resolution
and frame rate (or --target_fps). --input_video accepts several files or folders.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mvda.errors import UserError
from mvda.cli import positive_float, positive_int, run_cli
from mvda.apps.convert import FITS, MODELS, ConvertOptions, collect_inputs, convert_batch, load_models

PROG = "video_metric_convert.py"
ENCODERS = ("vits", "vitb", "vitl")
METRIC_MODELS = ("hypersim", "vkitti")
log = logging.getLogger("mvda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
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
    parser.add_argument("--max_len", type=int, default=-1, help="convert at most this many frames (-1: all)")
    parser.add_argument("--target_fps", type=float, default=-1,
                        help="output frame rate; frames are dropped/duplicated by timestamp (-1: source rate)")
    parser.add_argument("--max_depth", type=positive_float, default=6.0,
                        help="full scale of the packed output in metres; farther depth is clipped (default 6)")
    parser.add_argument("--model", choices=MODELS, default="vda+dav2",
                        help="vda+dav2: relative Video-Depth-Anything + metric Depth-Anything-V2 + fit (default); "
                             "vda-metric: Metric-Video-Depth-Anything directly (no DA-V2, no fit)")
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
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, cuda:N, mps or cpu")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                        help="network precision (default: fp16 on CUDA, fp32 elsewhere)")
    parser.add_argument("--fp32", action="store_true", help="run the networks in float32 (overrides --precision)")
    parser.add_argument("--skip_existing", action="store_true", help="skip videos whose output already exists")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="log details (e.g. the fitted parameters)")
    return parser


def options_from_args(args: argparse.Namespace) -> ConvertOptions:
    """Resolve device and precision and build the :class:`ConvertOptions` (raises UserError)."""
    from mvda.device import default_precision, precision_warning, resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.fp32:
        if args.precision not in (None, "fp32"):
            log.warning("--fp32 overrides --precision %s", args.precision)
        precision = "fp32"
    else:
        precision = args.precision or default_precision(device)
    slow = precision_warning(device, precision)
    if slow:
        log.warning(slow)
    if args.model == "vda-metric" and args.fit != "rolling":
        log.warning("--fit is ignored with --model vda-metric (its output is already metric)")
    if args.metric_every != 1 and (args.model == "vda-metric" or args.fit == "global"):
        log.warning("--metric_every only applies to --model vda+dav2 --fit rolling; ignored")
    if args.model == "vda+dav2" and args.metric_model == "vkitti" and args.max_depth < 20:
        log.warning("--metric_model vkitti predicts up to 80 m but --max_depth is %g m: farther depth is clipped",
                    args.max_depth)
    options = ConvertOptions(
        model=args.model, fit=args.fit, input_size=args.input_size, max_res=args.max_res, max_len=args.max_len,
        target_fps=args.target_fps, max_depth=args.max_depth, metric_every=args.metric_every,
        device=device, precision=precision, dav2_batch=4 if device.type == "cuda" else 1,
        progress=not args.no_progress,
    )
    options.validate()
    return options


def _run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    inputs = collect_inputs(args.input_video)

    def models():
        return load_models(args.model, args.encoder, args.metric_encoder, args.metric_model, options.device,
                           vda_checkpoint=args.vda_checkpoint, metric_checkpoint=args.metric_checkpoint)

    results = convert_batch(inputs, Path(args.output_dir), models, options, skip_existing=args.skip_existing,
                            report=lambda line: print(line, flush=True))
    failed = [r for r in results if r.status == "failed"]
    if len(results) > 1:
        done = sum(r.status == "ok" for r in results)
        skipped = sum(r.status == "skipped" for r in results)
        line = f"{done} converted, {skipped} skipped, {len(failed)} failed"
        if failed:
            line += ": " + ", ".join(str(r.input) for r in failed)
        print(line, flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

"""Estimate the camera's field of view of a video or an image with MoGe-2 (what users opened
PerspectiveFields for).

MoGe-2 runs on frames spread over the video (one for an image); each gives the focal length of its
metric point map, and the median of the horizontal and vertical fields of view is printed, ready for
``--xfov`` of the other scripts.

example:
  python -m mvda.fov assets/big_buck_bunny_3s.mp4
  python -m mvda.fov photo.jpg --fov_encoder vitl --fov_checkpoint MoGe/checkpoints/moge-2-vitl-normal/model.pt
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mvda.cli import FOV_ENCODERS, add_device_args, add_fov_model_args, add_report_args, positive_int, run_cli
from mvda.errors import UserError

__all__ = ["FovEstimate", "fov_from_intrinsics", "estimate_fov", "keyframe_indices", "keyframe_count",
           "shot_keyframe_count", "shot_keyframes",
           "build_parser", "main"]

PROG = "python -m mvda.fov"
#: ``--fov_encoder`` choices and the released MoGe-2 checkpoint each selects.
FOV_MODELS = {encoder: f"{encoder}-normal" for encoder in FOV_ENCODERS}
log = logging.getLogger("mvda")
#: Keyframes for a video's field of view: one per this many frames, at least one, at most :data:`MAX_KEYFRAMES`
#: (the converter's cost bound; benchmarks/RESULTS.md, "Field of view in the converter").
FRAMES_PER_KEYFRAME = 20
MAX_KEYFRAMES = 16
#: Keyframes per shot (:func:`shot_keyframe_count`) never exceed one per this many frames (the scene cut
#: detector's shortest shot, :data:`mvda.ops.scene_cuts.DEFAULT_MIN_SHOT`), which bounds their cost.
MIN_FRAMES_PER_KEYFRAME = 8


@dataclass(frozen=True)
class FovEstimate:
    """Fields of view in degrees: the medians ``xfov`` / ``yfov`` and each frame's ``(xfov, yfov)``."""

    xfov: float
    yfov: float
    per_frame: list[tuple[float, float]]


def fov_from_intrinsics(intrinsics: np.ndarray) -> tuple[float, float]:
    """``(xfov, yfov)`` in degrees from MoGe-2's normalised (3, 3) intrinsics (focal lengths in units of
    the image width and height): ``fov = 2 atan(1 / (2 f))``."""
    fx, fy = float(intrinsics[0, 0]), float(intrinsics[1, 1])
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise ValueError(f"no usable focal length in {intrinsics.tolist()}")
    return math.degrees(2 * math.atan(0.5 / fx)), math.degrees(2 * math.atan(0.5 / fy))


def keyframe_count(frames: int | None) -> int:
    """How many keyframes to estimate a video's field of view from: one per :data:`FRAMES_PER_KEYFRAME`
    frames, rounded, between 1 and :data:`MAX_KEYFRAMES` (``None``, an unknown length: the maximum).

    >>> keyframe_count(5), keyframe_count(100), keyframe_count(10_000), keyframe_count(None)
    (1, 5, 16, 16)
    """
    if frames is None:
        return MAX_KEYFRAMES
    return min(MAX_KEYFRAMES, max(1, round(frames / FRAMES_PER_KEYFRAME)))


def keyframe_indices(frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``frames`` frames: the middle of each of ``count`` equal
    parts (fewer when ``frames < count``; none for no frames).

    >>> keyframe_indices(100, 4), keyframe_indices(3, 5), keyframe_indices(1, 1)
    ([12, 37, 62, 87], [0, 1, 2], [0])
    """
    if frames <= 0 or count <= 0:
        return []
    return sorted({(2 * k + 1) * frames // (2 * count) for k in range(count)})


def shot_keyframe_count(frames: int, shots: int) -> int:
    """How many keyframes for ``frames`` frames in ``shots`` shots: :func:`keyframe_count`, raised to one
    per shot, but to no more than :data:`MAX_KEYFRAMES` and one per :data:`MIN_FRAMES_PER_KEYFRAME`
    frames (:func:`shot_keyframes` then takes the longest shots).

    >>> shot_keyframe_count(50, 1), shot_keyframe_count(50, 5), shot_keyframe_count(50, 10), shot_keyframe_count(10, 2)
    (2, 5, 6, 1)
    """
    return max(keyframe_count(frames), min(shots, MAX_KEYFRAMES, frames // MIN_FRAMES_PER_KEYFRAME))


def shot_keyframes(cuts: Sequence[int], frames: int, count: int) -> list[int]:
    """``count`` keyframe indices over ``frames`` frames cut into shots at ``cuts`` (first frames of new
    shots; those outside ``1 .. frames - 1`` are ignored), sorted, with at least one in every shot.

    Each shot gets its middle frame; with more shots than ``count``, only the ``count`` longest shots
    (the earlier one of equally long ones). The rest of the budget, ``count - shots``, is shared in
    proportion to the shots' lengths (largest remainders, ties to the earlier shot), and a shot with
    ``k`` keyframes gets :func:`keyframe_indices` ``(length, k)`` of its own frames. Without cuts this is
    ``keyframe_indices(frames, count)``. Fewer indices when a shot has fewer frames than its share.

    >>> shot_keyframes([], 100, 4), shot_keyframes([10], 100, 2), shot_keyframes([10, 20, 60], 100, 2)
    ([12, 37, 62, 87], [5, 55], [40, 80])
    """
    if frames <= 0 or count <= 0:
        return []
    starts = [0, *sorted({int(c) for c in cuts if 0 < int(c) < frames})]
    lengths = [end - start for start, end in zip(starts, [*starts[1:], frames])]
    if len(starts) >= count:
        longest = sorted(range(len(starts)), key=lambda i: (-lengths[i], i))[:count]
        return sorted(starts[i] + lengths[i] // 2 for i in longest)
    spare = count - len(starts)
    shares = [spare * length / frames for length in lengths]
    extra = [math.floor(share) for share in shares]
    order = sorted(range(len(starts)), key=lambda i: (-(shares[i] - extra[i]), i))
    for i in order[:spare - sum(extra)]:
        extra[i] += 1
    return sorted(start + k for start, length, n in zip(starts, lengths, extra)
                  for k in keyframe_indices(length, 1 + n))


def estimate_fov(frames: Iterable[np.ndarray], model: Any, device: torch.device, num_tokens: int | None = 1200
                 ) -> FovEstimate:
    """Median field of view of ``frames`` ((H, W, 3) uint8 RGB) by MoGe-2 ``model`` on ``device``.

    Raises:
        UserError: no frame gave a usable focal length.
    """
    per_frame: list[tuple[float, float]] = []
    for rgb in frames:
        image = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float() / 255.0
        with torch.inference_mode():
            out = model.infer(image, num_tokens=num_tokens)
        try:
            per_frame.append(fov_from_intrinsics(out["intrinsics"].float().cpu().numpy()))
        except ValueError as exc:
            log.info("a frame gave no field of view (%s); skipped", exc)
    if not per_frame:
        raise UserError("MoGe-2 found no usable field of view in any frame")
    xs, ys = zip(*per_frame)
    return FovEstimate(float(np.median(xs)), float(np.median(ys)), per_frame)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="PATH", help="a video or an image")
    parser.add_argument("--frames", type=positive_int, default=8,
                        help="frames spread over a video to estimate from (default 8; the median is printed)")
    add_fov_model_args(parser)
    parser.add_argument("--num_tokens", type=positive_int, default=1200,
                        help="MoGe-2 resolution in image tokens (default 1200, its lowest level: fast and enough "
                             "for the field of view)")
    add_device_args(parser, precision=False)
    add_report_args(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    from moge2.hub import load_moge2

    from mvda.device import resolve_device
    from mvda.io.video import VideoReader

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with VideoReader(Path(args.path)) as reader:  # a missing or unreadable file fails before the model loads
        frames = reader.sample_frames(args.frames)
    if not frames:
        raise UserError(f"{args.path}: no frame could be decoded")
    model = load_moge2(FOV_MODELS[args.fov_encoder], checkpoint=args.fov_checkpoint, device=device)
    estimate = estimate_fov(frames, model, device, num_tokens=args.num_tokens)
    spread = np.ptp([x for x, _ in estimate.per_frame]) if len(estimate.per_frame) > 1 else 0.0
    print(f"xfov {estimate.xfov:.2f} yfov {estimate.yfov:.2f} (degrees; median of {len(estimate.per_frame)} "
          f"frame(s), xfov spread {spread:.2f}); use: --xfov {estimate.xfov:.2f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

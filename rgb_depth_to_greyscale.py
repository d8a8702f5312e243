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
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mvda.errors import UserError
from mvda.cli import positive_float, positive_int, progress_bar, run_cli
from depth_codec import (
    GREY8_FULL_SCALE,
    GREY16_FULL_SCALE,
    TAG_ENCODING,
    TAG_MAX_DEPTH,
    DepthVideoReader,
    depth_to_grey,
)
from mvda.io.video import VideoWriter, ensure_writable_dir, ffv1_settings

PROG = "rgb_depth_to_greyscale.py"
OUTPUT_SUFFIX = "_grey_depth.mkv"

EPILOG = """examples:
  python rgb_depth_to_greyscale.py --video outputs/clip_depth.mkv
      -> outputs/clip_depth_grey_depth.mkv (8-bit, 255 = max_depth)
  python rgb_depth_to_greyscale.py --video outputs/clip_depth.mkv --bit16 --inverse
  python rgb_depth_to_greyscale.py --depth_video outputs/clip_depth.mkv --png16 outputs/clip_png16
"""


def default_output_path(video: str | os.PathLike) -> Path:
    """``X_grey_depth.mkv`` next to the input: ``clip_depth.mkv`` -> ``clip_depth_grey_depth.mkv``."""
    p = Path(video)
    return p.with_name(p.stem + OUTPUT_SUFFIX)


def grey_encoding_name(bit16: bool, inverse: bool) -> str:
    """The ``depth_encoding`` tag of a greyscale depth video, e.g. ``grey16-linear-inverse-v1``."""
    return f"grey{16 if bit16 else 8}-linear{'-inverse' if inverse else ''}-v1"


def encode_png16(image: np.ndarray) -> bytes:
    """Encode a (H, W) uint16 image as a 16-bit greyscale PNG file (bytes)."""
    if image.ndim != 2 or image.dtype != np.uint16:
        raise ValueError(f"expected a (H, W) uint16 image, got {image.shape} {image.dtype}")
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height = image.shape[1], image.shape[0]
    ctx.pix_fmt = "gray16be"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray16be")
    data = b"".join(bytes(p) for p in ctx.encode(frame))
    data += b"".join(bytes(p) for p in ctx.encode(None))
    return data


@dataclass
class GreyResult:
    frames: int
    max_depth: float
    video: Path | None
    png_dir: Path | None


class _PngSequence:
    """Write frame_000000.png ... into a hidden temporary folder; move it into place at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise UserError(f"--png16 folder {directory} already exists and is not empty; remove it or "
                           "choose a new folder")
        ensure_writable_dir(directory.parent)
        self.tmp = directory.with_name(f".{directory.name}.partial-{os.getpid()}-{secrets.token_hex(3)}")
        self.tmp.mkdir()
        self.count = 0

    def write(self, image: np.ndarray) -> None:
        (self.tmp / f"frame_{self.count:06d}.png").write_bytes(encode_png16(image))
        self.count += 1

    def close(self) -> None:
        if self.directory.exists():
            self.directory.rmdir()  # empty (checked above); replace it with the finished folder
        os.replace(self.tmp, self.directory)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def convert_to_grey(
    video: str | os.PathLike,
    output: str | os.PathLike | None = None,
    png_dir: str | os.PathLike | None = None,
    max_depth: float | None = None,
    bit16: bool = False,
    inverse: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
) -> GreyResult:
    """Convert a packed depth video to a greyscale depth video and/or a 16-bit PNG sequence.

    The video goes to ``output`` (default :func:`default_output_path`) unless only ``png_dir`` is
    given. Nothing appears at either destination unless the whole conversion succeeds.
    """
    video = Path(video)
    png_path = Path(png_dir) if png_dir is not None else None
    out_path = Path(output) if output is not None else (None if png_path else default_output_path(video))
    if out_path is not None:
        if out_path.suffix.lower() != ".mkv":
            raise UserError(f"greyscale depth is written losslessly as FFV1 in .mkv; give an --output "
                           f"ending in .mkv, not {out_path.name}")
        if out_path.exists() and video.exists() and out_path.resolve() == video.resolve():
            raise UserError(f"--output {out_path} is the input video; choose another name")
    with DepthVideoReader(video, max_depth=max_depth, max_frames=max_frames) as reader:
        writer = pngs = None
        try:
            if out_path is not None:
                fmt = "gray16le" if bit16 else "gray"
                tags = {TAG_MAX_DEPTH: repr(reader.max_depth), TAG_ENCODING: grey_encoding_name(bit16, inverse),
                        "grey_full_scale": str(GREY16_FULL_SCALE if bit16 else GREY8_FULL_SCALE)}
                writer = VideoWriter(out_path, reader.width, reader.height, reader.fps, input_format=fmt,
                                     **ffv1_settings(fmt),
                                     metadata=tags)
            if png_path is not None:
                pngs = _PngSequence(png_path)
            with progress_bar(total=reader.num_frames, desc="greyscale", disable=not progress) as bar:
                for depth in reader:
                    if writer is not None:
                        writer.write(depth_to_grey(depth, reader.max_depth, bit16=bit16, inverse=inverse))
                    if pngs is not None:
                        pngs.write(depth_to_grey(depth, reader.max_depth, bit16=True, inverse=inverse))
                    bar.update(1)
            if writer is not None:
                writer.close()
            if pngs is not None:
                pngs.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            if pngs is not None:
                pngs.abort()
            raise
        return GreyResult(reader.frames_read, reader.max_depth, out_path, png_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--video", "--depth_video", dest="video", required=True, metavar="X",
                        help="RGB-packed depth video (*_depth.mkv from video_metric_convert.py)")
    parser.add_argument("--output", metavar="PATH.mkv",
                        help=f"output video (default: X's name without extension + '{OUTPUT_SUFFIX}', "
                             "next to X)")
    parser.add_argument("--max_depth", type=positive_float, default=None, metavar="M",
                        help="metres of the depth file's full scale, overriding its max_depth tag (default: the "
                             "tag, else 6); also the depth that maps to white (black with --inverse)")
    parser.add_argument("--bit16", action="store_true",
                        help="16-bit greyscale: rint(depth * 65025 / max_depth) (the original 255**2 full scale)")
    parser.add_argument("--inverse", action="store_true",
                        help="near = white, far = black: 255 - v (8-bit) or 65025 - v (16-bit, PNG)")
    parser.add_argument("--png16", metavar="DIR",
                        help="write a 16-bit PNG sequence DIR/frame_000000.png ... (values as --bit16) "
                             "instead of the video; add --output to get both")
    parser.add_argument("--max_frames", type=positive_int, default=None, metavar="N",
                        help="convert only the first N frames")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        result = convert_to_grey(args.video, args.output, args.png16, args.max_depth, args.bit16,
                                 args.inverse, args.max_frames)
        for target in (result.video, result.png_dir):
            if target is not None:
                print(f"{target} ({result.frames} frames, max_depth {result.max_depth:g} m)")
        return 0

    return run_cli(PROG, body)


if __name__ == "__main__":
    sys.exit(main())

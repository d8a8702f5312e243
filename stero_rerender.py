"""Render a stereo 3D video from a colour video and its metric depth video.

Every frame is re-rendered for a left and a right eye: a pinhole camera with the given field of view
(principal point at the image centre, square pixels unless both --xfov and --yfov are given) moved
by -/+ half the pupillary distance along x. A point at depth Z moves by fx * (IPD / 2) / Z pixels,
right in the left-eye view and left in the right-eye view. The warp is exact and z-ordered (nearest
surface wins, sub-pixel accurate, no cracks on slanted surfaces); what an eye sees that the camera did
not (disocclusions) is filled from the background side, and --infill_mask writes those pixels as a
video for inpainting tools. Unknown depth (0) is treated as the far plane (max_depth).

The output goes next to the depth video as {depth video}_stereo.mp4 (H.264, full side-by-side with
the left eye on the left, the colour video's audio copied), or {depth video}_stereo.mkv with
--lossless (FFV1).

Example:
  python stero_rerender.py --video outputs/clip_depth.mkv --color_video clip.mp4 --xfov 48
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mvda.errors import UserError
from mvda.cli import non_negative_int, positive_float, positive_int, progress_bar, run_cli
from depth_codec import DepthVideoReader, unpack_depth
from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.stereo_warp import FORMATS, StereoWarper, disparity_from_depth, pack_stereo, packed_size, resize_depth
from mvda.io.video import VideoReader, VideoWriter, ffv1_settings

PROG = "stero_rerender.py"
DEFAULT_IPD_MM = 63.0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
log = logging.getLogger("mvda")


def crf_value(text: str) -> int:
    """argparse type: an H.264 constant rate factor 0..51."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..51, got {text!r}") from None
    if not 0 <= value <= 51:
        raise argparse.ArgumentTypeError(f"must be 0..51 (lower is better quality), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", "--depth_video", dest="video", required=True, metavar="DEPTH_VIDEO",
                        help="the RGB-packed metric depth video (*_depth.mkv from video_metric_convert.py)")
    parser.add_argument("--color_video", default=None,
                        help="the colour video the depth belongs to (default: the depth video's own frames, "
                             "as the original tool did)")
    parser.add_argument("--xfov", type=float, default=None,
                        help="horizontal field of view in degrees (fractions allowed)")
    parser.add_argument("--yfov", type=float, default=None,
                        help="vertical field of view in degrees; with only one of the two, the other follows "
                             "from the aspect ratio")
    parser.add_argument("--max_depth", type=positive_float, default=None,
                        help="full scale of the depth video in metres (default: its max_depth tag, else 6)")
    parser.add_argument("--pupillary_distance", type=positive_float, default=DEFAULT_IPD_MM,
                        help="distance between the eyes in mm (default 63)")
    parser.add_argument("--max_frames", type=positive_int, default=None, help="render at most this many frames")
    parser.add_argument("--format", choices=FORMATS, default="sbs",
                        help="sbs: full side-by-side, 2W x H (default); half-sbs: W x H; tb / half-tb: "
                             "top-bottom, left eye on top; anaglyph: red-cyan")
    parser.add_argument("--crf", type=crf_value, default=18,
                        help="H.264 quality, 0..51, lower is better (default 18)")
    parser.add_argument("--preset", choices=X264_PRESETS, default="fast",
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
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, cuda:N, mps or cpu")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="log details")
    return parser


# ------------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StereoJob:
    """Everything :func:`render_stereo_video` needs (validated by :func:`job_from_args`)."""

    depth_video: Path
    color_video: Path | None
    output: Path
    mask_output: Path | None
    xfov: float | None
    yfov: float | None
    max_depth: float | None
    ipd_mm: float = DEFAULT_IPD_MM
    max_frames: int | None = None
    fmt: str = "sbs"
    crf: int = 18
    preset: str = "fast"
    lossless: bool = False
    max_stretch: float = 1.0
    drop_fragments: int = 2
    device: torch.device = torch.device("cpu")
    progress: bool = True


@dataclass(frozen=True)
class StereoResult:
    frames: int
    seconds: float
    width: int
    height: int
    output: Path
    mask_output: Path | None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def default_outputs(depth_video: Path, output: str | None, lossless: bool, infill_mask: bool
                    ) -> tuple[Path, Path | None]:
    """The stereo video's path and, with ``infill_mask``, the mask video's path."""
    suffix = ".mkv" if lossless else ".mp4"
    if output is None:
        out = Path(str(depth_video) + "_stereo" + suffix)
    else:
        out = Path(output)
        if lossless and out.suffix.lower() != ".mkv":
            raise UserError(f"--lossless writes FFV1, which goes into .mkv files; got --output {out.name}")
        if not lossless and out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise UserError(f"--output {out.name}: use a .mp4, .mkv or .mov file name for H.264")
    mask = out.with_name(out.stem + "_mask" + out.suffix) if infill_mask else None
    return out, mask


def job_from_args(args: argparse.Namespace) -> StereoJob:
    """Check the flags and paths that can be checked before decoding anything (raises UserError)."""
    from mvda.device import resolve_device

    if args.xfov is None and args.yfov is None:
        raise UserError("give the camera's field of view with --xfov (horizontal) or --yfov (vertical), in degrees")
    for flag, fov in (("--xfov", args.xfov), ("--yfov", args.yfov)):
        if fov is not None and not 0.0 < fov < 180.0:
            raise UserError(f"{flag} {fov:g} is not a field of view: give degrees between 0 and 180 (exclusive)")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    depth = Path(args.video)
    color = Path(args.color_video) if args.color_video else None
    for path, flag in ((depth, "--video"), (color, "--color_video")):
        if path is not None and not path.is_file():
            raise UserError(f"{flag} {path}: no such file" if not path.exists() else f"{flag} {path}: not a file")
    output, mask = default_outputs(depth, args.output, args.lossless, args.infill_mask)
    inputs = {depth.resolve()} | ({color.resolve()} if color else set())
    for out in (output, mask):
        if out is not None and out.resolve() in inputs:
            raise UserError(f"output {out} would overwrite an input; choose another --output")
    return StereoJob(
        depth_video=depth, color_video=color, output=output, mask_output=mask, xfov=args.xfov, yfov=args.yfov,
        max_depth=args.max_depth, ipd_mm=args.pupillary_distance, max_frames=args.max_frames, fmt=args.format,
        crf=args.crf, preset=args.preset, lossless=args.lossless, max_stretch=args.max_stretch,
        drop_fragments=args.drop_fragments, device=device,
        progress=not args.no_progress,
    )


def _frame_pairs(depth: DepthVideoReader, colour: VideoReader | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(depth metres (h, w) float32, colour (H, W, 3) uint8) in lockstep; the shorter video wins.

    Without a colour video the depth video's own (packed) frames are the colour.
    """
    packed_frames = depth.packed_frames()
    colour_frames = iter(colour) if colour is not None else None
    count = 0
    while True:
        packed = next(packed_frames, None)
        rgb = packed if colour_frames is None else next(colour_frames, None)
        if packed is None or rgb is None:
            if packed is None and rgb is not None:
                log.warning("the depth video %s ended after %d frames, before the colour video; the output "
                            "has %d frames", depth.path.name, count, count)
            elif rgb is None and packed is not None:
                log.warning("the colour video %s ended after %d frames, before the depth video; the output "
                            "has %d frames", colour.path.name, count, count)
            return
        count += 1
        yield unpack_depth(packed, depth.max_depth), rgb


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column so that both sides are even (H.264 with 4:2:0 needs it)."""
    h, w = frame.shape[:2]
    pad = ((0, h % 2), (0, w % 2)) + ((0, 0),) * (frame.ndim - 2)
    return np.pad(frame, pad, mode="edge") if (h % 2 or w % 2) else frame


def _mask_frame(left: torch.Tensor, right: torch.Tensor, fmt: str) -> np.ndarray:
    """(H', W') uint8 mask in the output layout: 255 where a pixel was filled in."""
    if fmt == "anaglyph":
        packed = left | right
    else:
        # 0/255 so that a half format's average of a filled and an unfilled pixel stays > 0.
        packed = pack_stereo(left.to(torch.uint8)[..., None] * 255, right.to(torch.uint8)[..., None] * 255,
                             fmt)[..., 0] > 0
    return (packed.to(torch.uint8) * 255).cpu().numpy()


def _writer_settings(job: StereoJob, mask: bool) -> dict:
    if job.lossless:
        return ffv1_settings("gray" if mask else "bgr0")
    if mask:  # qp 0: lossless luma, so the mask stays exactly black and white
        return {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"qp": "0", "preset": job.preset}}
    return {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"crf": str(job.crf), "preset": job.preset}}


def render_stereo_video(job: StereoJob) -> StereoResult:
    """Read the depth (and colour) video, render both eyes of every frame and write the stereo video.

    Nothing appears at ``job.output`` (or the mask path) unless the whole video was written.
    """
    start = time.perf_counter()
    with DepthVideoReader(job.depth_video, max_depth=job.max_depth, max_frames=job.max_frames) as depth_reader:
        colour_reader = VideoReader(job.color_video, max_frames=job.max_frames) if job.color_video else None
        try:
            return _render(job, depth_reader, colour_reader, start)
        finally:
            if colour_reader is not None:
                colour_reader.close()


def _render(job: StereoJob, depth_reader: DepthVideoReader, colour_reader: VideoReader | None,
            start: float) -> StereoResult:
    colour_info = colour_reader.info if colour_reader is not None else depth_reader.info
    w, h = colour_info.width, colour_info.height
    try:
        intr = intrinsics_from_fov(h, w, job.xfov, job.yfov)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if colour_reader is not None:
        _check_alignment(depth_reader, colour_reader)
    fps: Fraction = colour_info.fps

    pairs = _frame_pairs(depth_reader, colour_reader)
    first = next(pairs, None)  # decode errors and "not a depth video" surface before any output exists
    if first is None:
        raise UserError(f"{job.depth_video}: no frames to render")

    out_w, out_h = packed_size(w, h, job.fmt)
    enc_w, enc_h = out_w, out_h
    if not job.lossless and (out_w % 2 or out_h % 2):
        enc_w, enc_h = out_w + out_w % 2, out_h + out_h % 2
        log.warning("the %s frame is %dx%d; H.264 needs even sizes, so the last row/column is repeated "
                    "(%dx%d); use --lossless to keep the exact size", job.fmt, out_w, out_h, enc_w, enc_h)
    audio_source = job.color_video if job.color_video is not None else job.depth_video
    metadata = {"stereo_layout": job.fmt, "pupillary_distance_mm": f"{job.ipd_mm:g}",
                "xfov": f"{intr.xfov:.6g}", "yfov": f"{intr.yfov:.6g}"}
    warper = StereoWarper(h, w, device=job.device, max_stretch=job.max_stretch, drop_fragments=job.drop_fragments)
    ipd_m = job.ipd_mm / 1000.0
    far = depth_reader.max_depth
    total = depth_reader.num_frames
    if colour_reader is not None and colour_reader.num_frames is not None:
        total = colour_reader.num_frames if total is None else min(total, colour_reader.num_frames)

    pad = (enc_w, enc_h) != (out_w, out_h)
    writer = VideoWriter(job.output, enc_w, enc_h, fps, metadata=metadata, audio_from=audio_source,
                         **_writer_settings(job, mask=False))
    mask_writer = None
    reader = background = None
    try:
        if job.mask_output is not None:
            mask_writer = VideoWriter(job.mask_output, enc_w, enc_h, fps, input_format="gray",
                                      metadata={"stereo_layout": job.fmt, "content": "infill mask"},
                                      **_writer_settings(job, mask=True))

        def write(item: tuple[np.ndarray, np.ndarray | None]) -> None:
            frame, mask = item
            writer.write(_pad_even(frame) if pad else frame)
            if mask_writer is not None:
                mask_writer.write(_pad_even(mask) if pad else mask)

        # Decoding, rendering and encoding overlap: the videos are decoded in one thread, the
        # frames encoded in another, while this thread renders.
        reader = _Prefetch(pairs, depth=2)
        background = _BackgroundWriter(write, depth=2)
        resized_warned = False
        bar = progress_bar(total=total, desc="stereo", disable=not job.progress)
        with bar, _cpu_render_threads(warper, job.device):
            for depth_m, rgb in _chain([first], reader):
                z = torch.from_numpy(depth_m).to(job.device)
                if tuple(z.shape) != (h, w):
                    if not resized_warned:
                        log.warning("depth frames are %dx%d but colour frames are %dx%d; depth is resized "
                                    "(nearest neighbour) to the colour size", z.shape[1], z.shape[0], w, h)
                        resized_warned = True
                    z = resize_depth(z, h, w)
                if rgb.shape[:2] != (h, w):
                    raise UserError(f"colour frame {bar.n} is {rgb.shape[1]}x{rgb.shape[0]}, expected {w}x{h}; "
                                   "variable frame sizes are not supported")
                disp = disparity_from_depth(z, intr.fx, ipd_m, far_m=far)
                views = warper.render(torch.from_numpy(rgb).to(job.device), disp)
                frame = pack_stereo(views.left, views.right, job.fmt).cpu().numpy()
                mask = _mask_frame(views.left_filled, views.right_filled, job.fmt) if mask_writer else None
                background.put((frame, mask))
                bar.update(1)
            background.finish()
        reader.close()
        frames = writer.frames_written
        if mask_writer is not None:
            mask_writer.close()
        writer.close()
    except BaseException:
        if background is not None:
            background.abort()
        if reader is not None:
            reader.close()
        if mask_writer is not None:
            mask_writer.abort()
        writer.abort()
        raise
    return StereoResult(frames, time.perf_counter() - start, enc_w, enc_h, job.output, job.mask_output)


def _chain(*iterables):
    for it in iterables:
        yield from it


@contextlib.contextmanager
def _cpu_render_threads(warper: StereoWarper, device: torch.device):
    """On the CPU, render with the warper's worker threads and one torch op thread each.

    OpenMP threads inside every small op, next to the decoder and encoder threads, spin and
    oversubscribe the cores; whole chunks per worker thread scale better.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    warper.workers = max(warper.workers, previous)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_END = object()


class _Prefetch:
    """Iterate ``items`` in a background thread, keeping up to ``depth`` items ready.

    Exceptions raised by ``items`` are re-raised in the consuming thread. :meth:`close` stops and
    joins the thread (call it before closing what ``items`` reads from).
    """

    def __init__(self, items: Iterator, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="stereo-decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


class _BackgroundWriter:
    """Call ``write(item)`` for every item in a background thread (up to ``depth`` items queued).

    An exception in ``write`` is re-raised by the next :meth:`put` or by :meth:`finish`.
    """

    def __init__(self, write, depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stereo-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END or self._abort.is_set():
                return
            try:
                self._write(item)
            except BaseException as exc:
                self._error = exc
                return

    def put(self, item) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive() and self._error is None:
                    raise RuntimeError("the encoder thread stopped unexpectedly") from None

    def finish(self) -> None:
        """Wait until everything queued is written."""
        self.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._abort.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_END, timeout=0.05)
        self._thread.join()


def _check_alignment(depth_reader: DepthVideoReader, colour_reader: VideoReader) -> None:
    """Warn about inputs that do not obviously belong together (sizes are handled per frame)."""
    d, c = depth_reader.info, colour_reader.info
    if d.width * c.height != d.height * c.width:
        ratio_d, ratio_c = d.width / d.height, c.width / c.height
        if abs(ratio_d / ratio_c - 1.0) > 0.01:
            log.warning("the depth video (%dx%d) and the colour video (%dx%d) have different aspect ratios; "
                        "are they the same clip?", d.width, d.height, c.width, c.height)
    if abs(float(d.fps) - float(c.fps)) > 1e-3 * float(c.fps):
        log.warning("the depth video runs at %.4g fps and the colour video at %.4g fps; frames are paired in "
                    "order and the output uses the colour video's rate", float(d.fps), float(c.fps))


def _run(args: argparse.Namespace) -> int:
    job = job_from_args(args)
    result = render_stereo_video(job)
    line = (f"{PROG}: wrote {result.frames} frames ({result.width}x{result.height} {job.fmt}) in "
            f"{result.seconds:.1f} s ({result.fps:.1f} fps) to {result.output}")
    if result.mask_output is not None:
        line += f" and {result.mask_output}"
    print(line, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

"""The stereo job behind stero_rerender.py: a colour video and its metric depth video -> a stereo video.

:func:`job_from_args` checks the flags, :func:`render_stereo_video` runs the job and :func:`run` does
both and prints the final "wrote ..." line. Frames go through :func:`mvda.frames.run_frames`: the
depth/colour pairs (:mod:`mvda.io.pairing`) are decoded on one thread, both eyes rendered on the
calling thread and the stereo video (and the infill mask) encoded on another.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from depth_codec import DepthVideoReader, resolve_fov
from mvda.apps.stereo_output import (OUTPUT_FORMATS, StereoPacker, check_encoder, check_frame_size, encoder_settings,
                                    level_warning, metadata_writer_args, player_name)
from mvda.errors import UserError
from mvda.frames import FunctionSink, run_frames
from mvda.io.pairing import FramePair, check_pair, needs_resize, paired_frames
from mvda.io.video import VideoReader, VideoWriter, ffv1_settings
from mvda.ops.anaglyph import DEFAULT_ANAGLYPH_METHOD
from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.stereo_comfort import (DEFAULT_EDGE_DILATION, DEFAULT_EDGE_SHARPEN, comfort_disparity, crop_zoom,
                                     edge_strip_width, zoom_margin)
from mvda.ops.stereo_warp import StereoWarper, disparity_from_depth, resize_depth

__all__ = ["DEFAULT_IPD_MM", "FORMATS", "X264_PRESETS", "StereoJob", "StereoResult", "default_outputs", "job_from_args",
           "render_stereo_video", "run"]

#: Every output layout of ``--format``.
FORMATS = OUTPUT_FORMATS
#: Default pupillary distance in millimetres.
DEFAULT_IPD_MM = 63.0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
log = logging.getLogger("mvda")


@dataclass(frozen=True)
class StereoJob:
    """Everything :func:`render_stereo_video` needs (validated by :func:`job_from_args`).

    ``xfov`` / ``yfov`` in degrees, ``max_depth`` in metres (None: the depth video's tag), ``ipd_mm``
    in millimetres, ``max_stretch`` in pixels, ``drop_fragments`` in pixels, ``codec`` "h264" / "hevc",
    ``vr180_size`` the side of one VR180 eye in pixels (None: from the focal length). Comfort settings:
    ``convergence_m`` in metres (None: infinity on the screen plane), ``max_disparity_pct`` in percent
    of the eye's width (None: no limit), ``edge_sharpen`` and ``edge_dilation`` in pixels, ``fill`` one of
    :data:`~mvda.ops.stereo_warp.FILLS`, ``edge_zoom`` None (no zoom), "auto" or percent of the width
    cropped on each side.
    """

    depth_video: Path
    color_video: Path | None
    output: Path
    mask_output: Path | None
    xfov: float | None
    yfov: float | None
    max_depth: float | None
    ipd_mm: float = DEFAULT_IPD_MM
    max_frames: int | None = None
    skip_damaged: bool = False
    fmt: str = "sbs"
    crf: int = 18
    preset: str = "fast"
    lossless: bool = False
    max_stretch: float = 1.0
    drop_fragments: int = 2
    codec: str = "h264"
    anaglyph_method: str = DEFAULT_ANAGLYPH_METHOD
    vr180_size: int | None = None
    convergence_m: float | None = None
    max_disparity_pct: float | None = None
    edge_sharpen: int = DEFAULT_EDGE_SHARPEN
    edge_dilation: int = DEFAULT_EDGE_DILATION
    fill: str = "smooth"
    edge_zoom: float | str | None = None
    device: torch.device = torch.device("cpu")
    progress: bool = True


@dataclass(frozen=True)
class StereoResult:
    """What was written: ``frames``, wall ``seconds``, the encoded frame size (``height`` x ``width``
    pixels, after padding to even sizes for H.264) and the output paths."""

    frames: int
    seconds: float
    width: int
    height: int
    output: Path
    mask_output: Path | None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def default_outputs(depth_video: Path, output: str | None, lossless: bool, infill_mask: bool,
                    fmt: str | None = None) -> tuple[Path, Path | None]:
    """The stereo video's path and, with ``infill_mask``, the mask video's path; with ``fmt`` (--player_names)
    the layout's player suffix goes before the extension (``X_depth.mkv_stereo_LR.mp4``)."""
    suffix = ".mkv" if lossless else ".mp4"
    if output is None:
        out = Path(str(depth_video) + "_stereo" + suffix)
    else:
        out = Path(output)
        if lossless and out.suffix.lower() != ".mkv":
            raise UserError(f"--lossless writes FFV1, which goes into .mkv files; got --output {out.name}")
        if not lossless and out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise UserError(f"--output {out.name}: use a .mp4, .mkv or .mov file name for H.264")
    if fmt is not None:
        out = player_name(out, fmt)
    mask = out.with_name(out.stem + "_mask" + out.suffix) if infill_mask else None
    return out, mask


def job_from_args(args: argparse.Namespace) -> StereoJob:
    """Check the flags and paths that can be checked before decoding anything (raises UserError)."""
    from mvda.device import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    depth = Path(args.video)
    color = Path(args.color_video) if args.color_video else None
    for path, flag in ((depth, "--video"), (color, "--color_video")):
        if path is not None and not path.is_file():
            raise UserError(f"{flag} {path}: no such file" if not path.exists() else f"{flag} {path}: not a file")
    xfov, yfov = args.xfov, args.yfov  # range-checked by the flags' type (and the tags by resolve_fov)
    if xfov is None and yfov is None:
        xfov, yfov = resolve_fov(None, None, depth)  # the depth file's tags, if any
    if xfov is None and yfov is None:
        raise UserError("give the camera's field of view with --xfov (horizontal) or --yfov (vertical), in degrees "
                        "(the depth file has no field-of-view tags)")
    output, mask = default_outputs(depth, args.output, args.lossless, args.infill_mask,
                                   args.format if args.player_names else None)
    if not args.lossless:
        check_encoder(args.codec)
    inputs = {depth.resolve()} | ({color.resolve()} if color else set())
    for out in (output, mask):
        if out is not None and out.resolve() in inputs:
            raise UserError(f"output {out} would overwrite an input; choose another --output")
    return StereoJob(
        depth_video=depth, color_video=color, output=output, mask_output=mask, xfov=xfov, yfov=yfov,
        max_depth=args.max_depth, ipd_mm=args.pupillary_distance, max_frames=args.max_frames,
        skip_damaged=args.skip_damaged, fmt=args.format,
        crf=args.crf, preset=args.preset, lossless=args.lossless, max_stretch=args.max_stretch,
        drop_fragments=args.drop_fragments, device=device, progress=not args.no_progress,
        codec=args.codec, anaglyph_method=args.anaglyph_method, vr180_size=args.vr180_size,
        **_comfort_from_args(args),
    )


def _comfort_from_args(args: argparse.Namespace) -> dict:
    """The comfort group's flags (stero_rerender.py) as StereoJob fields."""
    return {"convergence_m": args.convergence, "max_disparity_pct": args.max_disparity,
            "edge_sharpen": args.edge_sharpen, "edge_dilation": args.edge_dilation, "fill": args.fill,
            "edge_zoom": args.edge_zoom}


def _edge_zoomer(setting: float | str | None, width: int):
    """views -> (left, right, left_filled, right_filled), with --edge_zoom cropped and scaled back
    (:func:`crop_zoom`); "auto" takes the margin from the first frame's frame-edge strips."""
    if setting is None:
        return lambda v: (v.left, v.right, v.left_filled, v.right_filled)
    margin = None if setting == "auto" else int(round(float(setting) / 100.0 * width))

    def apply(views):
        nonlocal margin
        if margin is None:
            strip = edge_strip_width(torch.stack([views.left_filled, views.right_filled]))
            margin = zoom_margin(strip, width)
            log.info("--edge_zoom: the first frame's eyes did not see up to %d px at the frame edges; cropping "
                     "%d px on each side (%.1f %% zoom)", strip, margin, 100.0 * (width / (width - 2 * margin) - 1))
        return tuple(crop_zoom(x, margin) for x in (views.left, views.right, views.left_filled, views.right_filled))

    return apply


def run(args: argparse.Namespace, prog: str) -> int:
    """The whole command: check the flags, render, print ``{prog}: wrote ...``; returns 0."""
    job = job_from_args(args)
    result = render_stereo_video(job)
    line = (f"{prog}: wrote {result.frames} frames ({result.width}x{result.height} {job.fmt}) in "
            f"{result.seconds:.1f} s ({result.fps:.1f} fps) to {result.output}")
    if result.mask_output is not None:
        line += f" and {result.mask_output}"
    print(line, flush=True)
    return 0


# ------------------------------------------------------------------------------------------------
# the render loop
# ------------------------------------------------------------------------------------------------
def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column so that both sides are even (H.264 with 4:2:0 needs it)."""
    h, w = frame.shape[:2]
    pad = ((0, h % 2), (0, w % 2)) + ((0, 0),) * (frame.ndim - 2)
    return np.pad(frame, pad, mode="edge") if (h % 2 or w % 2) else frame


def _writer_settings(job: StereoJob, mask: bool, frames: int | None = None) -> dict:
    if job.lossless:
        return ffv1_settings("gray" if mask else "bgr0")
    if mask:  # qp 0: lossless luma, so the mask stays exactly black and white
        return {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"qp": "0", "preset": job.preset}}
    return encoder_settings(job.codec, job.crf, job.preset, job.fmt, frames)


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


def render_stereo_video(job: StereoJob) -> StereoResult:
    """Read the depth (and colour) video, render both eyes of every frame and write the stereo video.

    Nothing appears at ``job.output`` (or the mask path) unless the whole video was written.
    """
    start = time.perf_counter()
    with DepthVideoReader(job.depth_video, max_depth=job.max_depth, max_frames=job.max_frames,
                          skip_damaged=job.skip_damaged) as depth_reader:
        colour_reader = VideoReader(job.color_video, max_frames=job.max_frames) if job.color_video else None
        try:
            return _render(job, depth_reader, colour_reader, start)
        finally:
            if colour_reader is not None:
                colour_reader.close()


#: A median per-eye shift above this fraction of the width means the two views barely overlap.
MAX_MEDIAN_SHIFT = 0.25


def _check_disparity(pair: FramePair, intr, job: StereoJob, far: float, width: int) -> None:
    """Refuse settings whose eyes' views would not overlap (e.g. --xfov 1e-9 or --pupillary_distance 1e9):
    the output would be almost entirely filled-in pixels."""
    z = torch.from_numpy(pair.depth)
    shift = disparity_from_depth(z, intr.fx * width / max(1, z.shape[-1]), job.ipd_mm / 1000.0, far_m=far,
                                 convergence_m=job.convergence_m)
    median = float(shift.abs().median())
    if median > MAX_MEDIAN_SHIFT * width:
        conv = "" if job.convergence_m is None else f" with --convergence {job.convergence_m:g} m"
        raise UserError(
            f"--xfov {intr.xfov:.3g} degrees and --pupillary_distance {job.ipd_mm:g} mm{conv} shift each eye's view by "
            f"{median:.0f} px of a {width} px frame (the views would barely overlap); check the field of view "
            "(degrees), the pupillary distance (mm, about 63)" + (" and the convergence distance (metres)" if conv else "")
        )


def _render(job: StereoJob, depth_reader: DepthVideoReader, colour_reader: VideoReader | None,
            start: float) -> StereoResult:
    colour_info = colour_reader.info if colour_reader is not None else depth_reader.info
    h, w = colour_info.height, colour_info.width
    try:
        intr = intrinsics_from_fov(h, w, job.xfov, job.yfov)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    resize = False
    if colour_reader is not None:
        check_pair(depth_reader.info, colour_reader.info)
        resize = needs_resize(depth_reader.info, colour_reader.info)
    fps: Fraction = colour_info.fps

    pairs = paired_frames(depth_reader, colour_reader)
    first = next(pairs, None)  # decode errors and "not a depth video" surface before any output exists
    if first is None:
        raise UserError(f"{job.depth_video}: no frames to render")

    _check_disparity(first, intr, job, far=depth_reader.max_depth, width=w)

    packer = StereoPacker(job.fmt, intr, job.device, job.anaglyph_method, job.vr180_size)
    out_h, out_w = packer.size
    enc_h, enc_w = out_h, out_w
    if not job.lossless and (out_w % 2 or out_h % 2):
        enc_h, enc_w = out_h + out_h % 2, out_w + out_w % 2
        log.warning("the %s frame is %dx%d; H.264 needs even sizes, so the last row/column is repeated "
                    "(%dx%d); use --lossless to keep the exact size", job.fmt, out_w, out_h, enc_w, enc_h)
    pad = _pad_even if (enc_h, enc_w) != (out_h, out_w) else (lambda frame: frame)
    if not job.lossless:
        check_frame_size(enc_w, enc_h, job.codec)
    warning = None if job.lossless else level_warning(enc_w, enc_h, job.codec)
    if warning:
        log.warning("%s", warning)
    audio_source = job.color_video if job.color_video is not None else job.depth_video
    metadata = {"stereo_layout": job.fmt, "pupillary_distance_mm": f"{job.ipd_mm:g}",
                "xfov": f"{intr.xfov:.6g}", "yfov": f"{intr.yfov:.6g}"}
    if job.fmt == "anaglyph":
        metadata["anaglyph_method"] = job.anaglyph_method
    warper = StereoWarper(h, w, device=job.device, max_stretch=job.max_stretch, drop_fragments=job.drop_fragments,
                          fill=job.fill)
    max_parallax = None if job.max_disparity_pct is None else job.max_disparity_pct / 100.0 * w
    zoom = _edge_zoomer(job.edge_zoom, w)
    ipd_m = job.ipd_mm / 1000.0
    far = depth_reader.max_depth
    total = depth_reader.num_frames
    if colour_reader is not None and colour_reader.num_frames is not None:
        total = colour_reader.num_frames if total is None else min(total, colour_reader.num_frames)
    device = job.device

    def step(pair: FramePair):
        z = torch.from_numpy(pair.depth).to(device)
        if tuple(z.shape) != (h, w):
            z = resize_depth(z, h, w)
        rgb = pair.rgb
        if rgb.shape[:2] != (h, w):
            raise UserError(f"colour frame {pair.index} is {rgb.shape[1]}x{rgb.shape[0]}, expected {w}x{h}; "
                            "variable frame sizes are not supported")
        disp = comfort_disparity(z, intr.fx, ipd_m, far, convergence_m=job.convergence_m,
                                 max_parallax_px=max_parallax, edge_sharpen=job.edge_sharpen,
                                 edge_dilation=job.edge_dilation)
        left, right, left_filled, right_filled = zoom(warper.render(torch.from_numpy(rgb).to(device), disp))
        frame = packer.pack(left, right).cpu().numpy()
        mask = packer.pack_mask(left_filled, right_filled).cpu().numpy() if job.mask_output else None
        return ((frame, mask, pair.time),)

    writers: list[VideoWriter] = []
    try:
        # Variable frame rate (phones): every output frame keeps its colour frame's time, so picture and
        # sound stay in sync; constant-rate sources keep frame i at i / fps.
        vfr = colour_info.vfr
        writer = VideoWriter(job.output, enc_w, enc_h, fps, metadata=metadata, audio_from=audio_source, vfr=vfr,
                             **_writer_settings(job, mask=False, frames=total),
                             **metadata_writer_args(job.fmt, job.output))
        writers.append(writer)
        time_of = (lambda out: out[2]) if vfr else None
        sinks = [FunctionSink(writer, select=lambda out: pad(out[0]), time=time_of)]
        if job.mask_output is not None:
            mask_writer = VideoWriter(job.mask_output, enc_w, enc_h, fps, input_format="gray", vfr=vfr,
                                      metadata={"stereo_layout": job.fmt, "content": "infill mask"},
                                      **_writer_settings(job, mask=True),
                                      **metadata_writer_args(job.fmt, job.mask_output))
            writers.append(mask_writer)
            sinks.insert(0, FunctionSink(mask_writer, select=lambda out: pad(out[1]), time=time_of))  # closed first
        if resize:
            d = depth_reader.info
            log.warning("depth frames are %dx%d but colour frames are %dx%d; depth is resized "
                        "(nearest neighbour) to the colour size", d.width, d.height, w, h)
        with _cpu_render_threads(warper, device):
            run_frames(itertools.chain([first], pairs), step, sinks, total=total, desc="stereo",
                       progress=job.progress)
    except BaseException:
        for out in writers:
            out.abort()
        raise
    return StereoResult(writer.frames_written, time.perf_counter() - start, enc_w, enc_h, job.output,
                        job.mask_output)

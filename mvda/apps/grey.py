"""Greyscale depth export: an RGB-packed metric depth video -> greyscale depth video and/or 16-bit PNGs.

One pass through :func:`mvda.frames.run_frames`::

    source: decoded depth frames, (H, W) float32 metres (DepthVideoReader, on the decode thread)
    step:   depth -> (grey for the video or None, 16-bit grey for the PNGs or None)
    sinks:  the FFV1 writer (gray / gray16le .mkv) and/or the PNG sequence (on the encode thread)

Both outputs are atomic: the video is a hidden temporary file and the PNG sequence a hidden temporary
folder until every frame is written; any failure or interruption (Ctrl-C, SIGTERM, SIGHUP) removes them.
The values follow :func:`depth_codec.depth_to_grey` (the original tool's rules).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from depth_codec import (
    GREY8_FULL_SCALE,
    GREY16_FULL_SCALE,
    TAG_ENCODING,
    TAG_MAX_DEPTH,
    DepthVideoReader,
    depth_to_grey,
)
from mvda.errors import UserError
from mvda.frames import FunctionSink, run_frames
from mvda.io.video import AtomicFolder, VideoWriter, ffv1_settings

log = logging.getLogger("mvda")

__all__ = [
    "OUTPUT_SUFFIX",
    "default_output_path",
    "grey_encoding_name",
    "encode_png16",
    "PngSequence",
    "GreyResult",
    "convert_to_grey",
]

#: Appended to the input's whole file name (as the original tool does) for the default output video.
OUTPUT_SUFFIX = "_grey_depth.mkv"


def default_output_path(video: str | os.PathLike) -> Path:
    """The original tool's name, next to the input: the whole input name plus ``_grey_depth.mkv``
    (``clip_depth.mkv`` -> ``clip_depth.mkv_grey_depth.mkv``, as stereo writes ``X_depth.mkv_stereo.mp4``)."""
    p = Path(video)
    return p.with_name(p.name + OUTPUT_SUFFIX)


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


class PngSequence:
    """A sink writing ``frame_000000.png``, ``frame_000001.png``, ... (16-bit grey) into ``directory``.

    The frames go into a hidden temporary folder (:class:`mvda.io.video.AtomicFolder`) that
    :meth:`close` moves into place and :meth:`abort` removes with its contents. ``directory`` may
    exist only as an empty folder (else :class:`UserError`).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.folder = AtomicFolder(directory, label="--png16 folder")
        self.directory = self.folder.path
        self.count = 0

    def write(self, image: np.ndarray) -> None:
        """Write one (H, W) uint16 image as the next frame."""
        path = self.folder.temp_path / f"frame_{self.count:06d}.png"
        try:
            path.write_bytes(encode_png16(image))
        except OSError as exc:  # e.g. a full disk
            raise UserError(f"cannot write {self.folder.path / path.name}: {exc.strerror or exc}") from None
        self.count += 1

    def close(self) -> Path:
        return self.folder.close()

    def abort(self) -> None:
        self.folder.abort()


@dataclass
class GreyResult:
    """What :func:`convert_to_grey` wrote: frames, the max_depth used (metres) and the outputs."""

    frames: int
    max_depth: float
    video: Path | None
    png_dir: Path | None

    def summary_lines(self) -> list[str]:
        """One line per output: ``PATH (N frames, max_depth M m)``."""
        return [f"{target} ({self.frames} frames, max_depth {self.max_depth:g} m)"
                for target in (self.video, self.png_dir) if target is not None]


class _GreyStep:
    """depth (H, W) metres -> ``(video grey or None, PNG grey or None)``, one output per frame."""

    def __init__(self, max_depth: float, bit16: bool, inverse: bool, video: bool, pngs: bool) -> None:
        self.max_depth, self.bit16, self.inverse = max_depth, bit16, inverse
        self.video, self.pngs = video, pngs

    def __call__(self, depth: np.ndarray) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        grey = depth_to_grey(depth, self.max_depth, bit16=self.bit16, inverse=self.inverse) if self.video else None
        png = depth_to_grey(depth, self.max_depth, bit16=True, inverse=self.inverse) if self.pngs else None
        return [(grey, png)]


def _check_output(video: Path, out_path: Path) -> None:
    if out_path.suffix.lower() != ".mkv":
        raise UserError(f"greyscale depth is written losslessly as FFV1 in .mkv; give an --output "
                        f"ending in .mkv, not {out_path.name}")
    if out_path.exists() and video.exists() and out_path.resolve() == video.resolve():
        raise UserError(f"--output {out_path} is the input video; choose another name")
    if out_path.is_file():  # 8-bit and --bit16 share the name, as in the original
        log.warning("%s exists and will be replaced", out_path)


def convert_to_grey(
    video: str | os.PathLike,
    output: str | os.PathLike | None = None,
    png_dir: str | os.PathLike | None = None,
    max_depth: float | None = None,
    bit16: bool = False,
    inverse: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
    skip_damaged: bool = False,
) -> GreyResult:
    """Convert a packed depth video to a greyscale depth video and/or a 16-bit PNG sequence.

    Args:
        video: the RGB-packed depth video (``*_depth.mkv``).
        output: the greyscale video (.mkv, FFV1 gray or gray16le); default :func:`default_output_path`
            unless only ``png_dir`` is given.
        png_dir: folder for a 16-bit PNG sequence (values as ``bit16``), or None.
        max_depth: metres of the input's full scale and of white (black with ``inverse``); None: the
            file's tag, else 6.
        bit16, inverse: see :func:`depth_codec.depth_to_grey`.
        max_frames: convert only the first N frames (None: all).
        progress: show the progress bar.

    Nothing appears at either destination unless the whole conversion succeeds.
    """
    video = Path(video)
    png_path = Path(png_dir) if png_dir is not None else None
    out_path = Path(output) if output is not None else (None if png_path else default_output_path(video))
    if out_path is not None:
        _check_output(video, out_path)
    with DepthVideoReader(video, max_depth=max_depth, max_frames=max_frames, skip_damaged=skip_damaged) as reader:
        sinks: list[FunctionSink] = []
        try:
            if out_path is not None:
                fmt = "gray16le" if bit16 else "gray"
                tags = {TAG_MAX_DEPTH: repr(reader.max_depth), TAG_ENCODING: grey_encoding_name(bit16, inverse),
                        "grey_full_scale": str(GREY16_FULL_SCALE if bit16 else GREY8_FULL_SCALE)}
                writer = VideoWriter(out_path, reader.width, reader.height, reader.fps, input_format=fmt,
                                     **ffv1_settings(fmt), metadata=tags)
                sinks.append(FunctionSink(writer, select=lambda out: out[0]))
            if png_path is not None:
                sinks.append(FunctionSink(PngSequence(png_path), select=lambda out: out[1]))
        except BaseException:
            for sink in sinks:  # a later output could not be opened: discard the earlier ones
                sink.abort()
            raise
        step = _GreyStep(reader.max_depth, bit16, inverse, video=out_path is not None, pngs=png_path is not None)
        run_frames(reader, step, sinks, total=reader.num_frames, desc="greyscale", progress=progress)
        return GreyResult(reader.frames_read, reader.max_depth, out_path, png_path)

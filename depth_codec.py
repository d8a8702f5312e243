"""Metric depth <-> RGB frames: the one place that packs and unpacks depth videos.

Format (compatible with the original tool, bit for bit)
-------------------------------------------------------
A depth ``d`` in metres is scaled to a 32-bit integer ``v = uint32(d * 255**4 / max_depth)``
(computed in float64). Its most significant byte goes to R and G (R = G), the next byte to B:

    R = G = v >> 24            B = (v >> 16) & 255

Decoding averages R and G (so compression damage that made R != G decodes as the original did):

    high = uint8((R + G) / 2)   (float division, truncated)
    depth = float32(high << 24 | B << 16) / (255**4 / max_depth)      (float32 arithmetic)

The step between codes is ``max_depth * 65536 / 255**4`` (about 0.093 mm at the default 6 m).
Frames are stored losslessly with FFV1 in Matroska (.mkv). Our files also carry the container tags
``max_depth`` and ``depth_encoding`` so readers know the scale; files of the original tool have no
tags and decode with the default ``max_depth`` of 6 m unless the user says otherwise.

Unlike the original tool, depth beyond ``max_depth`` is clipped (never rescaled) and counted, and
NaN / inf / negative depth is mapped to 0 and counted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mvda.errors import UserError
from mvda.io.video import VideoReader, VideoWriter, ffv1_settings, probe_video

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "ENCODING_NAME",
    "FULL_SCALE",
    "TAG_MAX_DEPTH",
    "TAG_ENCODING",
    "pack_depth",
    "unpack_depth",
    "sanitize_depth",
    "depth_step",
    "looks_like_packed_depth",
    "check_packed_depth_samples",
    "resolve_max_depth",
    "resolve_fov",
    "TAG_XFOV",
    "TAG_YFOV",
    "TAG_SCENE_CUTS",
    "DepthStats",
    "DepthVideoWriter",
    "DepthVideoReader",
    "GREY8_FULL_SCALE",
    "GREY16_FULL_SCALE",
    "depth_to_grey",
]

log = logging.getLogger("mvda")

DEFAULT_MAX_DEPTH = 6.0
FULL_SCALE = 255**4  # 4_228_250_625: the original tool's integer full scale
ENCODING_NAME = "mvda-rgb-hilo-v1"  # R = G = high byte, B = low byte of uint32(d * 255**4 / max_depth)
TAG_MAX_DEPTH = "max_depth"
TAG_ENCODING = "depth_encoding"
TAG_XFOV = "xfov"  # horizontal field of view of the camera, degrees (when known)
TAG_YFOV = "yfov"  # vertical field of view, degrees
TAG_SCENE_CUTS = "scene_cuts"  # first frames of the shots after the first, comma-separated (0-based output frames)
GREY8_FULL_SCALE = 255  # 8-bit greyscale depth: value 255 = max_depth
GREY16_FULL_SCALE = 255**2  # 16-bit greyscale depth: the original tool's 65025 (not 65535) = max_depth
GREY_PIX_FMTS = ("gray", "gray10le", "gray12le", "gray16le", "gray16be", "ya8", "ya16le", "ya16be")


def sanitize_depth(depth_m: np.ndarray, max_depth: float) -> tuple[np.ndarray, int, int]:
    """Make depth safe to pack.

    Args:
        depth_m: (H, W) depth in metres, any float dtype.
        max_depth: full scale in metres (> 0).

    Returns:
        (depth, n_clipped, n_invalid): float64 (H, W) depth in [0, max_depth]; the number of pixels
        above ``max_depth`` that were clipped to it; the number of NaN / inf / negative pixels that
        were set to 0.
    """
    if not max_depth > 0:
        raise ValueError(f"max_depth must be > 0, got {max_depth}")
    d = np.asarray(depth_m, dtype=np.float64)
    invalid = np.isfinite(d)
    np.logical_not(invalid, out=invalid)
    invalid |= d < 0
    n_invalid = int(np.count_nonzero(invalid))
    if n_invalid:
        d = np.where(invalid, 0.0, d)
    over = d > max_depth
    n_clipped = int(np.count_nonzero(over))
    if n_clipped:
        d = np.where(over, max_depth, d)
    return d, n_clipped, n_invalid


def pack_depth(depth_m: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH) -> np.ndarray:
    """Pack metric depth into an RGB frame.

    Args:
        depth_m: (H, W) depth in metres, already within [0, max_depth] (see :func:`sanitize_depth`;
            out-of-range values raise ValueError rather than wrap around).
        max_depth: full scale in metres.

    Returns:
        (H, W, 3) uint8 RGB frame with R = G = high byte, B = low byte.
    """
    d = np.asarray(depth_m, dtype=np.float64)
    if d.size and not (np.isfinite(d).all() and d.min() >= 0 and d.max() <= max_depth):
        raise ValueError("depth must be finite and within [0, max_depth]; call sanitize_depth first")
    return _pack_valid(d, max_depth)


def _pack_valid(d: np.ndarray, max_depth: float) -> np.ndarray:
    """:func:`pack_depth` of float64 depth known to be finite and within ``[0, max_depth]``: the same
    arithmetic (``d * FULL_SCALE / max_depth``, truncated to uint32), with fewer temporaries."""
    v = d * FULL_SCALE
    v /= max_depth
    code = v.astype(np.uint32)
    out = np.empty(d.shape + (3,), dtype=np.uint8)
    out[..., 0] = code >> 24  # at most 252: FULL_SCALE < 2**32
    out[..., 1] = out[..., 0]
    code >>= 16
    code &= 0xFF
    out[..., 2] = code
    return out


def unpack_depth(rgb: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH) -> np.ndarray:
    """Decode an RGB-packed depth frame exactly as the original tool.

    Args:
        rgb: (H, W, 3) uint8 frame in RGB order.
        max_depth: full scale in metres used when the file was written.

    Returns:
        (H, W) float32 depth in metres.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
    r = rgb[..., 0].astype(np.float32)
    g = rgb[..., 1].astype(np.float32)
    high = ((r + g) / 2).astype(np.uint8).astype(np.uint32)
    low = rgb[..., 2].astype(np.uint32)
    code = ((high << 24) | (low << 16)).astype(np.float32)
    return code / np.float32(FULL_SCALE / max_depth)


def depth_to_grey(depth_m: np.ndarray, max_depth: float = DEFAULT_MAX_DEPTH, bit16: bool = False,
                  inverse: bool = False) -> np.ndarray:
    """Metric depth to a greyscale depth image, as the original ``rgb_depth_to_greyscale.py``.

    Args:
        depth_m: (H, W) depth in metres (float). NaN / inf / negative count as 0.
        max_depth: depth (metres) that maps to full scale, > 0.
        bit16: False: ``v = rint(depth * 255 / max_depth)``, uint8 in [0, 255].
            True: ``v = rint(depth * 255**2 / max_depth)``, uint16 in [0, 65025] (the original tool's
            full scale, so existing workflows keep their numbers; 65026..65535 are never used).
        inverse: near = white: ``v' = full_scale - v`` (255 - v or 65025 - v), as Looking Glass,
            Touchly or VisionDepth3D expect.

    Returns:
        (H, W) uint8 or uint16 image. Depth beyond ``max_depth`` saturates at full scale. The
        arithmetic is the original's exactly: the float32 depth times the Python float
        ``full / max_depth`` (a float32 product), then round-half-to-even (``numpy.rint``).
    """
    if not max_depth > 0:
        raise ValueError(f"max_depth must be > 0, got {max_depth}")
    full = GREY16_FULL_SCALE if bit16 else GREY8_FULL_SCALE
    d = np.asarray(depth_m, dtype=np.float32)
    d = np.where(np.isfinite(d) & (d > 0), d, np.float32(0))
    v = np.rint(d * np.float32(full / max_depth))  # the original: depth_f32 * (full / max_depth), in float32
    v = np.clip(v, 0, full)
    if inverse:
        v = full - v
    return v.astype(np.uint16 if bit16 else np.uint8)


def depth_step(max_depth: float = DEFAULT_MAX_DEPTH) -> float:
    """Size of one code step of the packed format, in metres."""
    return max_depth * 65536 / FULL_SCALE


def looks_like_packed_depth(rgb: np.ndarray, tolerance: int = 4, max_fraction: float = 0.02) -> bool:
    """True when R and G agree (within ``tolerance``) on all but ``max_fraction`` of the pixels.

    Packed depth has R = G (up to compression noise); ordinary colour video almost never does.
    """
    rgb = np.asarray(rgb)
    diff = np.abs(rgb[..., 0].astype(np.int16) - rgb[..., 1].astype(np.int16))
    return float((diff > tolerance).mean()) <= max_fraction


def check_packed_depth_samples(frames: list[np.ndarray], source: os.PathLike | str = "") -> None:
    """Judge from frames spread over a file (see ``VideoReader.sample_frames``) whether it holds packed
    depth; raise :class:`UserError` when it does not.

    Uniform frames (a black fade-in) say nothing and are passed over. A frame whose R and G differ is
    colour; one whose B equals R and G too is a monochrome (greyscale) picture: in packed depth B is
    the low byte, which almost never equals the high byte.
    """
    for rgb in frames:
        rgb = np.asarray(rgb)
        if rgb.size == 0 or int(rgb.max()) == int(rgb.min()):
            continue
        if not looks_like_packed_depth(rgb):
            raise UserError(
                f"{source}: does not look like an RGB-packed depth video (its R and G channels differ); pass "
                "the *_depth.mkv written by video_metric_convert.py"
            )
        if looks_like_packed_depth(rgb[..., [0, 2]], tolerance=2, max_fraction=0.02):
            raise UserError(
                f"{source}: is a monochrome (greyscale) video, not an RGB-packed depth video (B equals R and G); "
                "pass the *_depth.mkv written by video_metric_convert.py"
            )


def resolve_fov(xfov: float | None, yfov: float | None, path: str | os.PathLike) -> tuple[float | None, float | None]:
    """The field of view to use for a depth video: the command line's, else the file's ``xfov`` / ``yfov``
    tags (logged), else ``(None, None)``.

    Args:
        xfov, yfov: degrees given on the command line (None: not given).
        path: the depth video, whose tags are read only when neither is given.
    """
    if xfov is not None or yfov is not None:
        return xfov, yfov
    info = probe_video(path)
    tagged = []
    for name in (TAG_XFOV, TAG_YFOV):
        value = info.tag(name)
        try:
            fov = float(value) if value is not None else None
        except ValueError:
            fov = None
        tagged.append(fov if fov is not None and 0.0 < fov < 180.0 else None)
    if tagged[0] is not None or tagged[1] is not None:
        log.info("%s: using the field of view in the file's tags (xfov %s, yfov %s degrees)", Path(path).name,
                 *(f"{v:g}" if v is not None else "-" for v in tagged))
    return tagged[0], tagged[1]


def resolve_max_depth(tag_value: str | None, flag_value: float | None, source: str = "") -> float:
    """Choose the ``max_depth`` for decoding.

    The command-line value wins (with a warning when it disagrees with the file's tag); otherwise the
    file's tag; otherwise :data:`DEFAULT_MAX_DEPTH` (files of the original tool carry no tag).
    """
    tagged: float | None = None
    if tag_value is not None:
        try:
            tagged = float(tag_value)
        except ValueError:
            log.warning("%s: ignoring unreadable max_depth tag %r", source, tag_value)
        else:
            if not (np.isfinite(tagged) and tagged > 0):
                log.warning("%s: ignoring invalid max_depth tag %r", source, tag_value)
                tagged = None
    if flag_value is not None:
        if tagged is not None and not np.isclose(flag_value, tagged, rtol=1e-9, atol=0):
            log.warning(
                "%s: --max_depth %g overrides the file's max_depth tag %g; decoded metres will be "
                "scaled by %.4g", source, flag_value, tagged, flag_value / tagged,
            )
        return float(flag_value)
    return tagged if tagged is not None else DEFAULT_MAX_DEPTH


@dataclass
class DepthStats:
    """Running statistics of the depth written to a file."""

    frames: int = 0
    clipped: int = 0
    invalid: int = 0
    min_depth: float = float("inf")
    max_depth: float = float("-inf")

    def update(self, depth: np.ndarray, clipped: int, invalid: int) -> None:
        self.frames += 1
        self.clipped += clipped
        self.invalid += invalid
        if depth.size:
            self.min_depth = min(self.min_depth, float(depth.min()))
            self.max_depth = max(self.max_depth, float(depth.max()))


class DepthVideoWriter:
    """Write metric depth frames to a lossless, self-describing depth video (FFV1 in .mkv).

    ``write(depth_m)`` takes (H, W) metres; depth above ``max_depth`` is clipped and NaN/inf/negative
    depth set to 0, both counted in :attr:`stats` and reported as one warning when the file is closed.
    The file appears at ``path`` only when :meth:`close` succeeds (temp file + ``os.replace``);
    ``finish``, if given, is called with the complete temporary file just before (e.g. to fill a tag).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction | float | int,
        max_depth: float = DEFAULT_MAX_DEPTH,
        metadata: dict[str, str] | None = None,
        vfr: bool = False,
        label: str | None = None,
        finish: Callable[[Path], None] | None = None,
    ) -> None:
        if not max_depth > 0:
            raise UserError(f"--max_depth must be > 0, got {max_depth}")
        self.path = Path(path)
        self.label = label or self.path.name  # the name in warnings (a part or a hidden file: the final name)
        if self.path.suffix.lower() != ".mkv":
            raise UserError(f"depth videos are written as .mkv (FFV1), got {self.path.name}")
        self.max_depth = float(max_depth)
        self.stats = DepthStats()
        tags = {TAG_MAX_DEPTH: repr(self.max_depth), TAG_ENCODING: ENCODING_NAME}
        tags.update(metadata or {})
        self._writer = VideoWriter(
            self.path, width, height, fps, input_format="rgb24", metadata=tags, vfr=vfr, finish=finish,
            **ffv1_settings("bgr0"),
        )

    def write(self, depth_m: np.ndarray, time: float | None = None) -> None:
        """Write (H, W) metres; ``time`` (seconds) places the frame in a ``vfr`` file."""
        depth, clipped, invalid = sanitize_depth(depth_m, self.max_depth)
        self.stats.update(depth, clipped, invalid)
        self._writer.write(_pack_valid(depth, self.max_depth), time=time)  # sanitized: in range

    def write_packed(self, rgb: np.ndarray, time: float | None = None) -> None:
        """Write an already packed (H, W, 3) uint8 RGB frame unchanged."""
        self.stats.frames += 1
        self._writer.write(rgb, time=time)

    def close(self) -> Path:
        path = self._writer.close()
        if self.stats.clipped:
            log.warning("%s: %d depth pixels beyond max_depth %g m were clipped to it (raise --max_depth "
                        "to keep them)", self.label, self.stats.clipped, self.max_depth)
        if self.stats.invalid:
            log.warning("%s: %d depth pixels were NaN, infinite or negative and were written as 0",
                        self.label, self.stats.invalid)
        return path

    def abort(self) -> None:
        self._writer.abort()

    def __enter__(self) -> "DepthVideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DepthVideoReader:
    """Stream metric depth frames, (H, W) float32 metres, from an RGB-packed depth video.

    ``max_depth`` comes from ``max_depth_flag`` when given, else the file's tag, else 6 m (see
    :func:`resolve_max_depth`). A colour video passed by mistake (R != G) raises :class:`UserError`
    on the first frame.
    """

    def __init__(self, path: str | os.PathLike, max_depth: float | None = None,
                 max_frames: int | None = None, skip_damaged: bool = False) -> None:
        self._reader = VideoReader(path, pix_fmt="rgb24", max_frames=max_frames,
                                   damaged="skip" if skip_damaged else "error")
        self.info = self._reader.info
        self.path = self._reader.path
        encoding = self.info.tag(TAG_ENCODING)
        if (encoding or "").startswith("grey") or self.info.pix_fmt in GREY_PIX_FMTS:
            self._reader.close()
            raise UserError(
                f"{self.path}: is a greyscale depth video ({encoding or self.info.pix_fmt}), not an "
                "RGB-packed metric depth video; pass the *_depth.mkv written by video_metric_convert.py"
            )
        if encoding is not None and encoding != ENCODING_NAME:
            self._reader.close()
            raise UserError(f"{self.path}: unknown depth encoding {encoding!r} (this version reads "
                           f"{ENCODING_NAME!r}); update metric video depth anything")
        self.tagged = self.info.tag(TAG_MAX_DEPTH) is not None
        # Our files declare their length exactly; the original tool's are only checked for damage.
        self._reader.strict_length = self.tagged and not skip_damaged
        if encoding is None:
            try:
                check_packed_depth_samples(self._reader.sample_frames(), self.path)
            except UserError:
                self._reader.close()
                raise
        self.max_depth = resolve_max_depth(self.info.tag(TAG_MAX_DEPTH), max_depth, str(self.path.name))
        self.frames_read = 0

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def fps(self) -> Fraction:
        return self.info.fps

    @property
    def num_frames(self) -> int | None:
        return self._reader.num_frames

    @property
    def times(self) -> list[float]:
        """Presentation time (seconds from the first frame) of each frame read so far."""
        return self._reader.times

    @property
    def damaged_frames(self) -> list[int]:
        """Indices of the damaged frames left out (with ``skip_damaged``)."""
        return self._reader.damaged_frames

    def indexed_packed_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(index in the file, packed frame)``: indices skip the damaged frames left out."""
        for index, rgb in self._reader.indexed():
            if self.frames_read == 0 and not looks_like_packed_depth(rgb):
                raise UserError(
                    f"{self.path}: does not look like an RGB-packed depth video (its R and G channels "
                    "differ); pass the *_depth.mkv written by video_metric_convert.py"
                )
            self.frames_read += 1
            yield index, rgb

    def packed_frames(self) -> Iterator[np.ndarray]:
        """The raw (H, W, 3) uint8 RGB frames, after checking the first one looks like packed depth."""
        for _, rgb in self.indexed_packed_frames():
            yield rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        for rgb in self.packed_frames():
            yield unpack_depth(rgb, self.max_depth)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "DepthVideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

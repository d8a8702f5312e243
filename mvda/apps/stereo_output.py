"""The output side of the stereo job: layouts (including VR180 and anaglyph methods), codecs, player-
friendly names and the stereo / spherical metadata players read.

* :class:`StereoPacker` turns the two rendered eyes of a frame (and their filled-in masks) into the
  output frame of a layout: the flat layouts of :mod:`mvda.ops.stereo_warp`, ``vr180`` (each eye re-
  projected by :mod:`mvda.ops.vr180`, side by side) and ``anaglyph`` with a :mod:`mvda.ops.anaglyph`
  method.
* :func:`encoder_settings` picks the encoder (libx264 / libx265) and pixel format (4:4:4 for anaglyphs,
  whose red channel carries one eye alone), :func:`check_encoder` fails early with one line when the
  encoder is missing, and :func:`level_warning` says when an H.264 frame exceeds level 5.2.
* :data:`PLAYER_SUFFIXES` / :func:`player_name`: the layout suffixes video players detect in names.
* :func:`spatial_metadata` / :func:`metadata_writer_args`: st3d/sv3d (MP4) or StereoMode/Projection
  (Matroska) for the layout (:mod:`mvda.io.spatial_meta`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mvda.errors import UserError
from mvda.io.spatial_meta import (SpatialMetadata, flat_metadata, matroska_stream_tags, vr180_metadata,
                                  write_spatial_metadata)
from mvda.ops.anaglyph import DEFAULT_ANAGLYPH_METHOD, anaglyph
from mvda.ops.geometry import Intrinsics
from mvda.ops.stereo_warp import FORMATS, pack_stereo, packed_size
from mvda.ops.vr180 import DEFAULT_MAX_EYE_SIZE, VR180Projector, vr180_eye_size

__all__ = ["OUTPUT_FORMATS", "CODECS", "PLAYER_SUFFIXES", "H264_MAX_MACROBLOCKS", "StereoPacker", "check_encoder",
           "check_frame_size",
           "encoder_settings", "level_warning", "player_name", "spatial_metadata", "metadata_writer_args"]

log = logging.getLogger("mvda")

#: Every layout of ``--format``.
OUTPUT_FORMATS = tuple(FORMATS) + ("vr180",)

#: ``--codec`` name -> FFmpeg encoder.
CODECS = {"h264": "libx264", "hevc": "libx265"}

#: Layout -> the name suffix players (DeoVR, Skybox, HereSphere, Pigasus, Kodi ...) detect:
#: _LR full side-by-side, _3dh half side-by-side, _TB full top-bottom, _3dv half top-bottom,
#: _180_LR VR180 side-by-side. Anaglyphs need no player support; the suffix is for people.
PLAYER_SUFFIXES = {"sbs": "_LR", "half-sbs": "_3dh", "tb": "_TB", "half-tb": "_3dv", "vr180": "_180_LR",
                   "anaglyph": "_anaglyph"}

#: H.264 levels 5.1 and 5.2 allow frames of at most 36864 macroblocks (16 x 16 px), e.g. 4096 x 2304;
#: level 6 decoders (which allow 139264) are rare in TVs, phones and older GPUs.
H264_MAX_MACROBLOCKS = 36864


def player_name(path: Path, fmt: str) -> Path:
    """``path`` with the layout's player suffix before the extension (unchanged if already there)."""
    suffix = PLAYER_SUFFIXES[fmt]
    if path.stem.lower().endswith(suffix.lower()):
        return path
    return path.with_name(path.stem + suffix + path.suffix)


def check_encoder(codec: str) -> str:
    """The FFmpeg encoder of ``--codec`` (raises UserError when this PyAV/FFmpeg build lacks it)."""
    import av

    encoder = CODECS[codec]
    try:
        av.codec.Codec(encoder, "w")
    except (av.error.FFmpegError, ValueError) as exc:  # UnknownCodecError is a ValueError
        others = [c for c in CODECS if c != codec]
        raise UserError(f"--codec {codec}: this PyAV/FFmpeg build has no {encoder} encoder ({exc}); use "
                        f"--codec {others[0]} or --lossless") from None
    return encoder


#: H.264 frame packing arrangement SEI types (x264's --frame-packing): 3 side by side, 4 top-bottom.
H264_FRAME_PACKING = {"sbs": 3, "half-sbs": 3, "tb": 4, "half-tb": 4}

#: FFmpeg's libx265 wrapper hands out a garbage decoding time for the first packet of clips this short
#: when B-frames are on (the MP4 muxer then fails with "pts/dts pair unsupported"); such clips are
#: encoded without B-frames.
X265_SHORT_CLIP_FRAMES = 3


def encoder_settings(codec: str, crf: int, preset: str, fmt: str, frames: int | None = None) -> dict:
    """``VideoWriter`` keyword arguments for a lossy stereo video: the encoder, 4:4:4 for anaglyphs
    (4:2:0 otherwise), crf and preset; H.264 flat layouts carry a frame-packing SEI (3D TVs switch
    their 3D mode from it); x265 logs errors only, without B-frames when ``frames``, the expected
    frame count, is unknown or at most :data:`X265_SHORT_CLIP_FRAMES`."""
    encoder = CODECS[codec]
    options = {"crf": str(crf), "preset": preset}
    if encoder == "libx264" and fmt in H264_FRAME_PACKING:
        options["x264-params"] = f"frame-packing={H264_FRAME_PACKING[fmt]}"
    if encoder == "libx265":
        options["x265-params"] = "log-level=error"
        if frames is None or frames <= X265_SHORT_CLIP_FRAMES:
            options["x265-params"] += ":bframes=0"
    return {"codec": encoder, "pix_fmt": "yuv444p" if fmt == "anaglyph" else "yuv420p", "options": options}


def level_warning(width: int, height: int, codec: str) -> str | None:
    """A one-line warning when an H.264 frame of ``width`` x ``height`` exceeds level 5.2 (None: fine)."""
    if codec != "h264":
        return None
    macroblocks = -(-width // 16) * -(-height // 16)
    if macroblocks <= H264_MAX_MACROBLOCKS:
        return None
    return (f"the {width}x{height} H.264 output exceeds level 5.2 ({H264_MAX_MACROBLOCKS} macroblocks, e.g. "
            "4096x2304), which most TVs, phones and headsets cannot decode; use --codec hevc, or a half-width "
            "layout (--format half-sbs / half-tb)")


#: Frames narrower or lower than this are refused for HEVC: libx265 (in this PyAV build) corrupts its heap
#: on frames under one 64-px coding tree unit now and then, which kills the process.
X265_MIN_SIDE = 64


def check_frame_size(width: int, height: int, codec: str) -> None:
    """Raise UserError for an HEVC frame smaller than :data:`X265_MIN_SIDE` pixels on a side."""
    if codec == "hevc" and min(width, height) < X265_MIN_SIDE:
        raise UserError(f"--codec hevc: the {width}x{height} output frame is smaller than {X265_MIN_SIDE} px on a "
                        "side, which libx265 cannot encode reliably; use --codec h264")


def spatial_metadata(fmt: str) -> SpatialMetadata | None:
    """The stereo / spherical metadata of a layout (None for an anaglyph)."""
    return vr180_metadata() if fmt == "vr180" else flat_metadata(fmt)


def metadata_writer_args(fmt: str, output: Path) -> dict:
    """``VideoWriter`` keyword arguments that put the layout's metadata into ``output``: Matroska's
    StereoMode as a stream tag, and a ``finish`` step that writes the MP4 boxes (or the Matroska
    Projection of VR180) into the finished file."""
    meta = spatial_metadata(fmt)
    if meta is None:
        return {}
    suffix = output.suffix.lower()
    args: dict = {}
    if suffix in (".mkv", ".webm"):
        args["stream_metadata"] = matroska_stream_tags(meta)
        if meta.equirect_bounds is None:
            return args
    elif suffix not in (".mp4", ".mov"):
        return args
    args["finish"] = lambda path: write_spatial_metadata(path, meta)
    return args


class StereoPacker:
    """Pack two rendered (H, W, C) eyes (and their (H, W) bool filled-in masks) into one output frame.

    ``fmt`` is one of :data:`OUTPUT_FORMATS`; ``vr180_size`` is the side of one VR180 eye (None: from
    the focal length, see :func:`mvda.ops.vr180.vr180_eye_size`); ``anaglyph_method`` one of
    :data:`mvda.ops.anaglyph.ANAGLYPH_METHODS`. :attr:`size` is the output (height, width) in pixels.
    """

    def __init__(self, fmt: str, intr: Intrinsics, device: torch.device | str = "cpu",
                 anaglyph_method: str = DEFAULT_ANAGLYPH_METHOD, vr180_size: int | None = None) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"unknown stereo format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        self.fmt = fmt
        self.anaglyph_method = anaglyph_method
        self.projector: VR180Projector | None = None
        if fmt == "vr180":
            side = vr180_size if vr180_size is not None else vr180_eye_size(intr, DEFAULT_MAX_EYE_SIZE)
            self.projector = VR180Projector(intr, side, device)
            self.size = (side, 2 * side)
        else:
            self.size = packed_size(intr.height, intr.width, fmt)

    def pack(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The output frame (H', W', C) from two (H, W, C) eyes, on their device."""
        if self.projector is not None:
            return torch.cat([self.projector.project(left), self.projector.project(right)], dim=1)
        if self.fmt == "anaglyph":
            return anaglyph(left, right, self.anaglyph_method)
        return pack_stereo(left, right, self.fmt)

    def pack_mask(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(H', W') uint8 mask in the output layout, 255 where a pixel was filled in, from two (H, W) bool masks."""
        if self.projector is not None:
            packed = torch.cat([self.projector.project(left), self.projector.project(right)], dim=1)
        elif self.fmt == "anaglyph":
            packed = left | right
        else:
            # 0/255 so that a half format's average of a filled and an unfilled pixel stays > 0.
            packed = pack_stereo(left.to(torch.uint8)[..., None] * 255, right.to(torch.uint8)[..., None] * 255,
                                 self.fmt)[..., 0] > 0
        return packed.to(torch.uint8) * 255

"""Depth frames paired with colour frames: one policy for every script that reads both.

The policy:

1. Frame i of the depth video goes with frame i of the colour video (both decoded in order).
2. The shorter video wins: pairing stops where either ends, with one warning naming the video that
   ended first (none when ``max_frames`` stopped both).
3. A colour video with another aspect ratio (more than 1 % off) is the wrong file: :class:`UserError`.
   The same aspect ratio at another size is fine; the caller resizes whichever side it needs (stereo
   renders at the colour size, the viewer meshes at the depth size).
4. Different frame rates give a warning (frames are still paired by order).

Without a colour video the depth video's own (packed) frames stand in for colour, as the original
tool did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_codec import DepthVideoReader, unpack_depth
from mvda.errors import UserError
from mvda.io.video import VideoInfo, VideoReader

__all__ = ["ASPECT_TOLERANCE", "FramePair", "check_pair", "paired_frames", "needs_resize"]

log = logging.getLogger("mvda")

#: Relative aspect-ratio difference above which a colour video is taken for another clip.
ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class FramePair:
    """One frame: ``index`` in the depth video from 0 (damaged frames left out keep their numbers); ``depth`` (h, w) float32 metres; ``packed`` the depth frame as
    stored, (h, w, 3) uint8; ``colour`` (H, W, 3) uint8 RGB, or None without a colour video; ``time`` the
    presentation time in seconds of the colour frame (of the depth frame without a colour video)."""

    index: int
    depth: np.ndarray
    packed: np.ndarray
    colour: np.ndarray | None
    time: float = 0.0

    @property
    def rgb(self) -> np.ndarray:
        """The colour frame, or the packed depth frame when there is no colour video."""
        return self.packed if self.colour is None else self.colour


def check_pair(depth: VideoInfo, colour: VideoInfo, rate_from: str = "colour") -> None:
    """Apply rules 3 and 4 above to two videos' properties (raises :class:`UserError` for rule 3).

    ``rate_from``: which video's frame rate the caller's output uses ("colour" or "depth"), for the
    rule-4 warning.
    """
    if depth.width * colour.height != depth.height * colour.width:
        ratio = (colour.width / colour.height) / (depth.width / depth.height)
        if abs(ratio - 1.0) > ASPECT_TOLERANCE:
            raise UserError(
                f"{colour.path}: colour video is {colour.width}x{colour.height} but the depth video is "
                f"{depth.width}x{depth.height} (another aspect ratio); pass the colour video the depth video "
                "was made from"
            )
    if abs(float(depth.fps) - float(colour.fps)) > 1e-3 * float(colour.fps):
        log.warning("the depth video runs at %.4g fps and the colour video at %.4g fps; frames are paired in "
                    "order and the output uses the %s video's rate", float(depth.fps), float(colour.fps), rate_from)


def needs_resize(depth: VideoInfo, colour: VideoInfo) -> bool:
    """True when the two videos have the same aspect ratio but different sizes."""
    return (depth.height, depth.width) != (colour.height, colour.width)


def paired_frames(depth: DepthVideoReader, colour: VideoReader | None) -> Iterator[FramePair]:
    """Yield :class:`FramePair` in order until either video ends (rules 1 and 2).

    Call :func:`check_pair` first (the readers' ``max_frames`` limit both). Raises what the readers
    raise (a decode error, a colour video passed as depth).
    """
    packed_frames = depth.indexed_packed_frames()
    colour_frames = iter(colour) if colour is not None else None
    count = 0  # pairs yielded
    colour_index = -1  # index of the last colour frame taken
    while True:
        index, packed = next(packed_frames, (None, None))
        rgb = None
        if colour_frames is not None:
            # Depth frames left out as damaged (``skip_damaged``) take their colour frames with them.
            target = colour_index + 1 if index is None else index
            while colour_index < target:
                rgb = next(colour_frames, None)
                colour_index += 1
                if rgb is None:
                    break
        if packed is None or (colour_frames is not None and rgb is None):
            if packed is None and rgb is not None:
                log.warning("the depth video %s ended after %d frames, before the colour video; the output "
                            "has %d frames", Path(depth.path).name, count, count)
            elif packed is not None:
                log.warning("the colour video %s ended after %d frames, before the depth video; the output "
                            "has %d frames", Path(colour.path).name, count, count)
            return
        time = colour.times[-1] if colour_frames is not None else depth.times[-1]
        yield FramePair(index, unpack_depth(packed, depth.max_depth), packed, rgb, time)
        count += 1

"""Depth frames (and matching colour frames) by index, for the viewer and ``--render``.

Decoding is streaming, so :class:`FrameSource` keeps a ring buffer of the most recent decoded frames
(512 MB: about 80 frames of 1280x720 depth + colour, i.e. ~3 s; at least 2 frames) for stepping back;
stepping back further than the buffer reopens the videos and decodes forward to the wanted frame
(correct, but slow far into a long video).

Depth and colour are paired by :mod:`mvda.io.pairing` (frame i with frame i, the shorter video wins,
another aspect ratio is an error); a colour video of the same aspect ratio at another size is resized
to the depth video's size, because the mesh has one vertex per depth pixel.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from depth_codec import DepthVideoReader
from mvda.errors import UserError
from mvda.io.pairing import check_pair, needs_resize, paired_frames
from mvda.io.video import VideoReader, probe_video

__all__ = ["HISTORY_BYTES", "Frame", "FrameSource", "resize_rgb"]

log = logging.getLogger("mvda")

#: Memory budget of the ring buffer of recent frames, bytes.
HISTORY_BYTES = 512 << 20


@dataclass(frozen=True)
class Frame:
    """One frame: ``index`` from 0; ``depth`` (H, W) float32 metres; ``color`` (H, W, 3) uint8 RGB at the
    depth video's size, or None without a colour video (the mesh is then coloured by depth)."""

    index: int
    depth: np.ndarray
    color: np.ndarray | None


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (h, w, 3) uint8 RGB image to (height, width, 3) pixels (area averaging / bilinear)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="AREA").to_ndarray(format="rgb24")


class FrameSource:
    """Depth frames (and matching colour frames) by index, decoded on demand.

    Not thread-safe: use it from one thread at a time (``--render`` reads it on the decode thread only).

    Args:
        depth_path: RGB-packed depth video (``*_depth.mkv``).
        color_path: optional colour video with the same frames (any size of the same aspect ratio).
        max_depth: decode scale override, metres (None: the file's tag, else 6 m).
        max_frames: use at most this many frames from the start (None: all).
        history_bytes: memory budget of the ring buffer of recent frames.

    Attributes:
        height, width: the depth video's size in pixels (frames and meshes have this size).
        fps: the depth video's frame rate.
        max_depth: the decode scale in metres.
        length: the exact frame count once the end has been reached, else None.
    """

    def __init__(self, depth_path, color_path=None, max_depth: float | None = None,
                 max_frames: int | None = None, history_bytes: int = HISTORY_BYTES,
                 skip_damaged: bool = False) -> None:
        self.depth_path = Path(depth_path)
        self.color_path = Path(color_path) if color_path is not None else None
        self._max_depth_flag = max_depth
        self.max_frames = max_frames
        self.skip_damaged = skip_damaged
        info = probe_video(self.depth_path)
        self.height, self.width, self.fps = info.height, info.width, info.fps
        if self.width < 2 or self.height < 2:
            raise UserError(f"{self.depth_path}: a {self.width}x{self.height} video is too small to view")
        self._resize_color = False
        if self.color_path is not None:
            cinfo = probe_video(self.color_path)
            check_pair(info, cinfo, rate_from="depth")
            self._resize_color = needs_resize(info, cinfo)
            if self._resize_color:
                log.warning("%s: colour video is %dx%d, depth video %dx%d; resizing the colour frames",
                            self.color_path, cinfo.width, cinfo.height, self.width, self.height)
        per_frame = self.width * self.height * (4 + (3 if self.color_path is not None else 0))
        self.history_len = int(max(2, min(600, history_bytes // per_frame)))
        self._history: collections.deque[Frame] = collections.deque(maxlen=self.history_len)
        self._depth: DepthVideoReader | None = None
        self._color: VideoReader | None = None
        self._pairs = None
        self.length: int | None = None
        self._open()
        self.max_depth = self._depth.max_depth
        self.num_frames_estimate = self._depth.num_frames

    def _open(self) -> None:
        self.close()
        self._depth = DepthVideoReader(self.depth_path, max_depth=self._max_depth_flag,
                                       max_frames=self.max_frames, skip_damaged=self.skip_damaged)
        if self.color_path is not None:
            self._color = VideoReader(self.color_path, max_frames=self.max_frames)
        self._pairs = paired_frames(self._depth, self._color)
        self._next_index = 0

    def _read_next(self) -> Frame | None:
        pair = next(self._pairs, None)
        if pair is None:
            return None
        color = pair.colour
        if color is not None and self._resize_color:
            color = resize_rgb(color, self.height, self.width)
        frame = Frame(self._next_index, pair.depth, color)
        self._history.append(frame)
        self._next_index += 1
        return frame

    def get(self, index: int) -> Frame | None:
        """Frame ``index`` (from 0), or None when the video has fewer frames."""
        if index < 0:
            return None
        if self.length is not None and index >= self.length:
            return None
        for frame in reversed(self._history):
            if frame.index == index:
                return frame
        if index < self._next_index:  # older than the ring buffer: decode again from the start
            log.info("frame %d is no longer buffered; re-decoding from the start", index)
            self._history.clear()
            self._open()
        frame = None
        while self._next_index <= index:
            frame = self._read_next()
            if frame is None:
                self.length = self._next_index
                return None
        return frame

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames ``start``, ``start + 1``, ... to the end (the frame loop's source)."""
        index = start
        while (frame := self.get(index)) is not None:
            yield frame
            index += 1

    @property
    def num_frames(self) -> int | None:
        """Exact frame count once known, else the container's estimate."""
        return self.length if self.length is not None else self.num_frames_estimate

    def close(self) -> None:
        if self._pairs is not None:
            self._pairs.close()
            self._pairs = None
        for reader in (self._depth, self._color):
            if reader is not None:
                reader.close()
        self._depth = self._color = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

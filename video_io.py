"""The one place that decodes and encodes video (PyAV), streaming frame by frame.

* :class:`VideoReader` iterates the frames of any common container/codec as ``(H, W, 3)`` uint8 RGB
  arrays (or another PyAV pixel format), never holding more than one decoded frame.
* :class:`VideoWriter` encodes frames with the encode/mux/flush pattern, optionally copying the audio
  of a source file (interleaved as the video advances, so it stays in sync and bounded in memory),
  and writes container metadata tags. It writes to a hidden temporary file next to the target and
  moves it into place with :func:`os.replace` only when :meth:`VideoWriter.close` succeeds, so an
  error or Ctrl-C never leaves a file that looks complete.

Errors a user can fix (missing file, not a video, corrupt stream, unwritable folder) are raised as
:class:`cli_utils.CliError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Mapping

import av
import numpy as np

from cli_utils import CliError

__all__ = [
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "VideoDecodeError",
    "probe_video",
    "atomic_output_path",
    "ensure_writable_dir",
]

log = logging.getLogger("mvda")

# Formats whose container is chosen from the output file name's extension.
_MUXER_BY_SUFFIX = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm"}


class VideoDecodeError(CliError):
    """The video could not be opened or a frame could not be decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video file before decoding it.

    ``num_frames`` is the container's frame count, or an estimate from duration × fps when the
    container does not store one (Matroska); ``None`` when neither is known. Use it for progress bars,
    never for correctness.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    num_frames: int | None
    codec: str
    pix_fmt: str | None
    has_audio: bool
    metadata: Mapping[str, str] = field(default_factory=dict)

    def tag(self, name: str) -> str | None:
        """Container metadata tag ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.metadata.items():
            if key.lower() == wanted:
                return value
        return None


def _open_input(path: str | os.PathLike) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise VideoDecodeError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise VideoDecodeError(f"{p}: is a folder, expected a video file")
    try:
        container = av.open(str(p), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(f"{p}: not a readable video ({_short(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{p}: contains no video stream")
    return container


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] or type(exc).__name__


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        return Fraction(30, 1)
    return Fraction(rate).limit_denominator(1001 * 1000)


def _info_from(container: av.container.InputContainer, path: Path) -> VideoInfo:
    stream = container.streams.video[0]
    fps = _stream_fps(stream)
    num = int(stream.frames or 0) or None
    if num is None:
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        if seconds:
            num = max(1, round(seconds * float(fps)))
    ctx = stream.codec_context
    return VideoInfo(
        path=path,
        width=int(ctx.width),
        height=int(ctx.height),
        fps=fps,
        num_frames=num,
        codec=ctx.name,
        pix_fmt=ctx.pix_fmt,
        has_audio=bool(container.streams.audio),
        metadata=dict(container.metadata),
    )


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` just long enough to read its :class:`VideoInfo` (raises :class:`VideoDecodeError`)."""
    container = _open_input(path)
    try:
        return _info_from(container, Path(path))
    finally:
        container.close()


class VideoReader:
    """Stream the frames of a video file.

    >>> with VideoReader("clip.mp4") as reader:          # doctest: +SKIP
    ...     for rgb in reader:                             # (H, W, 3) uint8, RGB
    ...         ...

    ``pix_fmt`` is any PyAV ndarray format ("rgb24", "gray16le", ...). ``max_frames`` stops early.
    A decode error in the middle of the stream raises :class:`VideoDecodeError` naming the frame.
    """

    def __init__(self, path: str | os.PathLike, pix_fmt: str = "rgb24", max_frames: int | None = None):
        self.path = Path(path)
        self.pix_fmt = pix_fmt
        self.max_frames = max_frames
        self._container = _open_input(self.path)
        self.info = _info_from(self._container, self.path)
        self.frames_read = 0

    # -- convenience accessors -------------------------------------------------------------------
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
        """Expected frame count (after ``max_frames``), for progress bars."""
        n = self.info.num_frames
        if self.max_frames is not None:
            return self.max_frames if n is None else min(n, self.max_frames)
        return n

    def __iter__(self) -> Iterator[np.ndarray]:
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in self._container.decode(stream):
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    return
                array = frame.to_ndarray(format=self.pix_fmt)
                self.frames_read += 1
                yield array
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(
                f"{self.path}: decode error after frame {self.frames_read} ({_short(exc)}); "
                "the file may be truncated or corrupt"
            ) from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ensure_writable_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that files can be created in it (raises CliError)."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create output folder {d}: {exc.strerror or exc}") from None
    if not d.is_dir():
        raise CliError(f"output folder {d} is not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise CliError(f"output folder {d} is not writable; choose another with --output_dir")
    return d


def _temp_path_for(path: Path) -> Path:
    # Keep the extension so that tools (and PyAV) recognise the format; hide and mark the file.
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it to ``path`` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is left
    untouched.
    """
    final = Path(path)
    ensure_writable_dir(final.parent if str(final.parent) else ".")
    tmp = _temp_path_for(final)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.replace(tmp, final)


class VideoWriter:
    """Encode frames into a video file, atomically.

    Parameters
    ----------
    path:         final output path; the container comes from its extension (.mkv, .mp4, ...).
    width, height: frame size in pixels.
    fps:          frame rate (Fraction, int or float).
    codec:        "libx264", "ffv1", ... ; ``pix_fmt`` is the encoder's pixel format
                  (FFV1 with "bgr0" or "gray16le" is lossless and bit-exact).
    input_format: the PyAV ndarray format of the frames given to :meth:`write` ("rgb24", "gray",
                  "gray16le").
    options:      encoder options, e.g. ``{"crf": "18", "preset": "medium"}``.
    metadata:     container tags (strings), e.g. ``{"max_depth": "6.0"}``.
    audio_from:   a media file whose first audio stream is copied (no re-encode) alongside the video,
                  up to the end of the written video.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction | float | int,
        codec: str = "libx264",
        pix_fmt: str = "yuv420p",
        input_format: str = "rgb24",
        options: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        audio_from: str | os.PathLike | None = None,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.fps = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
        self.input_format = input_format
        self.frames_written = 0
        self._closed = False
        self._ctx = atomic_output_path(self.path)
        self.temp_path = self._ctx.__enter__()
        muxer = _MUXER_BY_SUFFIX.get(self.path.suffix.lower())
        try:
            self._out = av.open(str(self.temp_path), mode="w", format=muxer)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            self._fail()
            raise CliError(f"cannot write {self.path}: {_short(exc)}") from None
        try:
            for key, value in (metadata or {}).items():
                self._out.metadata[str(key)] = str(value)
            self._stream = self._out.add_stream(codec, rate=self.fps)
            self._stream.width = self.width
            self._stream.height = self.height
            self._stream.pix_fmt = pix_fmt
            self._frame_time_base = Fraction(1, 1) / self.fps
            if options:
                self._stream.options = {str(k): str(v) for k, v in options.items()}
            if codec in ("libx264", "libx265", "h264") and (self.width % 2 or self.height % 2):
                raise CliError(
                    f"{codec} needs even frame sizes, got {self.width}x{self.height}; "
                    "use a lossless output or crop/resize the input"
                )
            self._audio_in = None
            self._audio_packets: Iterator[av.Packet] | None = None
            self._pending_audio: av.Packet | None = None
            if audio_from is not None:
                self._open_audio(Path(audio_from))
        except BaseException:
            self._fail()
            raise

    # -- audio ---------------------------------------------------------------------------------------
    def _open_audio(self, source: Path) -> None:
        try:
            src = av.open(str(source), mode="r")
        except (av.error.FFmpegError, OSError):
            return
        if not src.streams.audio:
            src.close()
            return
        in_stream = src.streams.audio[0]
        try:
            self._audio_out = self._out.add_stream_from_template(in_stream)
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("audio of %s cannot be copied into %s (%s); writing video only",
                        source, self.path.suffix, _short(exc))
            src.close()
            return
        self._audio_in = src
        self._audio_stream_in = in_stream
        self._audio_packets = iter(src.demux(in_stream))

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy source audio packets that start before ``seconds`` (all remaining if None)."""
        if self._audio_packets is None:
            return
        while True:
            packet = self._pending_audio
            self._pending_audio = None
            if packet is None:
                try:
                    packet = next(self._audio_packets)
                except (StopIteration, av.error.FFmpegError):
                    self._audio_packets = None
                    return
            if packet.dts is None:  # flush packets from the demuxer carry no data
                continue
            start = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
            if seconds is not None and start >= seconds:
                self._pending_audio = packet
                return
            packet.stream = self._audio_out
            self._out.mux(packet)

    # -- video ---------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        """Encode one frame (an ndarray in ``input_format``, shape (H, W[, C]))."""
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, writer expects {self.width}x{self.height}"
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=self.input_format)
        vf.pts = self.frames_written
        vf.time_base = self._frame_time_base
        for packet in self._stream.encode(vf):
            self._out.mux(packet)
        self.frames_written += 1
        if self._audio_packets is not None:
            self._mux_audio_until(self.frames_written / float(self.fps))

    def close(self) -> Path:
        """Flush the encoder, finish the audio, close the file and move it into place."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._mux_audio_until(self.frames_written / float(self.fps))
            self._out.close()
            if self._audio_in is not None:
                self._audio_in.close()
        except BaseException:
            self._fail()
            raise
        self._closed = True
        self._ctx.__exit__(None, None, None)
        return self.path

    def _fail(self) -> None:
        """Discard the temporary file; the final path is never created."""
        if self._closed:
            return
        self._closed = True
        for closer in (getattr(self, "_out", None), getattr(self, "_audio_in", None)):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    abort = _fail

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fail()

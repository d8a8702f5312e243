"""The one place that decodes and encodes video (PyAV), streaming frame by frame.

* :class:`VideoReader` iterates the frames of any common container/codec as ``(H, W, 3)`` uint8 RGB
  arrays (or another PyAV pixel format), never holding more than one decoded frame.
* :class:`VideoWriter` encodes frames with the encode/mux/flush pattern, optionally copying the audio
  of a source file (interleaved as the video advances, so it stays in sync and bounded in memory),
  and writes container metadata tags. It writes to a hidden temporary file next to the target and
  moves it into place with :func:`os.replace` only when :meth:`VideoWriter.close` succeeds, so an
  error or Ctrl-C never leaves a file that looks complete.

Errors a user can fix (missing file, not a video, corrupt stream, unwritable folder) are raised as
:class:`mvda.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Mapping

import av
import numpy as np

from mvda.errors import UserError

__all__ = [
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "VideoDecodeError",
    "probe_video",
    "atomic_output_path",
    "AtomicFolder",
    "ensure_writable_dir",
]

log = logging.getLogger("mvda")

# Formats whose container is chosen from the output file name's extension.
_MUXER_BY_SUFFIX = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm"}
# Audio codecs that can be stream-copied into each container without re-encoding. Matroska takes
# anything; for the others only well-trodden codecs (PCM with an unspecified channel order, for
# instance, is accepted by the MP4 muxer's header but rejected when the file is finalised).
_AUDIO_COPY_CODECS = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    ".avi": {"mp3", "ac3", "pcm_s16le", "pcm_u8"},
    ".webm": {"opus", "vorbis"},
}


class VideoDecodeError(UserError):
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
        """Yield decoded frames one at a time (a generator: nothing is buffered).

        Raises :class:`VideoDecodeError` when the decoder fails or when the file yields no frame at
        all; logs a warning when it ends well before the frame count its container declares
        (a truncated file).
        """
        if self.max_frames is not None and self.frames_read >= self.max_frames:
            return
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in self._container.decode(stream):
                array = frame.to_ndarray(format=self.pix_fmt)
                self.frames_read += 1
                yield array
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(
                f"{self.path}: decode error after frame {self.frames_read} ({_short(exc)}); "
                "the file may be truncated or corrupt"
            ) from None
        if self.frames_read == 0:
            raise VideoDecodeError(
                f"{self.path}: no frame could be decoded; the file may be truncated or corrupt"
            )
        expected = self.info.num_frames
        if expected is not None and self.frames_read < expected - max(2, 0.05 * expected):
            log.warning("%s: the video ended after %d of the %d frames its container declares; the "
                        "file may be truncated", self.path.name, self.frames_read, expected)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ensure_writable_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that files can be created in it (raises UserError)."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {d}: {exc.strerror or exc}") from None
    if not d.is_dir():
        raise UserError(f"output folder {d} is not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UserError(f"output folder {d} is not writable; choose another output location")
    return d


def _temp_path_for(path: Path) -> Path:
    # Keep the extension so that tools (and PyAV) recognise the format; hide and mark the file (or
    # folder). The random part keeps two writers of one process (or a retry after a failure) apart.
    return path.with_name(f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


def _discard(tmp: Path) -> None:
    """Remove a temporary output, file or folder (with what it holds); missing is fine."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        tmp.unlink()


def _finalise(tmp: Path, final: Path) -> None:
    """Move a finished temporary file or folder into place (raises UserError, removing ``tmp``, on failure).

    A folder replaces an existing *empty* folder ``final`` (callers check that it is empty).
    """
    try:
        if tmp.is_dir() and final.is_dir():
            final.rmdir()  # os.replace of a folder onto an existing one is POSIX-only
        os.replace(tmp, final)
    except OSError as exc:
        _discard(tmp)
        raise UserError(f"cannot write {final}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it to ``path`` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is left
    untouched. Raises :class:`UserError` when the folder cannot be written or the final move fails.
    """
    final = Path(path)
    ensure_writable_dir(final.parent)
    if final.is_dir():
        raise UserError(f"output {final} is a folder; give a file name")
    tmp = _temp_path_for(final)
    try:
        yield tmp
    except BaseException:
        _discard(tmp)
        raise
    _finalise(tmp, final)


class AtomicFolder:
    """An output folder (a PNG sequence, ...) built under a hidden temporary name, like the files.

    The folder ``temp_path`` (named as the temporary files are: ``.NAME.partial-PID-RANDOM`` next to
    ``path``) is created at once; fill it, then :meth:`close` moves it to ``path`` and :meth:`abort`
    removes it with everything in it, so a failure or an interruption never leaves a folder that
    looks complete. ``path`` may exist only as an empty folder (it is replaced).

    Raises :class:`UserError` when ``path`` exists and is not an empty folder (the message names it as
    ``label``, e.g. "--png16 folder"), when its parent cannot be written, or when the final move fails.
    Also a context manager: closed when the block succeeds, aborted when it raises.
    """

    def __init__(self, path: str | os.PathLike, label: str = "output folder") -> None:
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise UserError(f"{label} {self.path} already exists and is not empty; remove it or "
                            "choose a new folder")
        ensure_writable_dir(self.path.parent)
        self.temp_path = _temp_path_for(self.path)
        try:
            self.temp_path.mkdir()
        except OSError as exc:
            raise UserError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._done = False

    def close(self) -> Path:
        """Move the finished folder into place (once)."""
        if not self._done:
            self._done = True
            _finalise(self.temp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the temporary folder and its contents; ``path`` is left as it was."""
        if not self._done:
            self._done = True
            _discard(self.temp_path)

    def __enter__(self) -> "AtomicFolder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


#: Encoder options of every lossless output (depth, greyscale, lossless stereo, masks): FFV1 version 3
#: with per-slice CRCs, so that damage to a file can be detected when it is read.
FFV1_OPTIONS: dict[str, str] = {"level": "3", "slicecrc": "1"}


def ffv1_settings(pix_fmt: str) -> dict:
    """``VideoWriter`` keyword arguments for a lossless FFV1 stream in ``pix_fmt`` ("bgr0", "gray",
    "gray16le"): codec, pixel format and :data:`FFV1_OPTIONS`."""
    return {"codec": "ffv1", "pix_fmt": pix_fmt, "options": dict(FFV1_OPTIONS)}


def _needs_even_size(codec: str, pix_fmt: str) -> bool:
    return codec in ("libx264", "libx265", "h264", "hevc") or pix_fmt in (
        "yuv420p", "yuvj420p", "nv12", "nv21", "yuv420p10le", "yuv422p", "yuvj422p"
    )


class VideoWriter:
    """Encode frames into a video file, atomically.

    Parameters
    ----------
    path:         final output path; the container comes from its extension (.mkv, .mp4, ...).
    width, height: frame size in pixels.
    fps:          frame rate (Fraction, int or float), > 0.
    codec:        "libx264", "ffv1", ... ; ``pix_fmt`` is the encoder's pixel format
                  (FFV1 with "bgr0" or "gray16le" is lossless and bit-exact).
    input_format: the PyAV ndarray format of the frames given to :meth:`write` ("rgb24", "gray",
                  "gray16le").
    options:      encoder options, e.g. ``{"crf": "18", "preset": "medium"}``.
    metadata:     container tags (strings), e.g. ``{"max_depth": "6.0"}``.
    audio_from:   a media file whose first audio stream is copied (no re-encode) alongside the video,
                  up to the end of the written video. When the audio codec cannot go into the output
                  container (e.g. PCM into .mp4), a warning is logged and the video is written alone.

    The file is encoded into a hidden temporary file next to ``path`` and moved into place by
    :meth:`close`; :meth:`abort` (or an exception inside ``with``) removes it. Errors a user can fix
    (unwritable folder, bad size or options) raise :class:`UserError`.
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
        self.fps = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001 * 1000)
        if not self.fps > 0:
            raise UserError(f"frame rate must be > 0, got {fps}")
        if self.width <= 0 or self.height <= 0:
            raise UserError(f"frame size must be positive, got {self.width}x{self.height}")
        if _needs_even_size(codec, pix_fmt) and (self.width % 2 or self.height % 2):
            raise UserError(
                f"{codec} ({pix_fmt}) needs even frame sizes, got {self.width}x{self.height}; "
                "use a lossless output or crop/resize the input"
            )
        self.codec, self.pix_fmt = codec, pix_fmt
        self.input_format = input_format
        self.frames_written = 0
        self._closed = False
        self._options = {str(k): str(v) for k, v in (options or {}).items()}
        self._metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self._frame_time_base = Fraction(1, 1) / self.fps
        self._out = None
        self._audio_in: av.container.InputContainer | None = None
        self._audio_packets: Iterator[av.Packet] | None = None
        self._pending_audio: av.Packet | None = None
        self._audio_offset = 0.0
        if self.path.is_dir():
            raise UserError(f"output {self.path} is a folder; give a file name")
        ensure_writable_dir(self.path.parent)
        self.temp_path = _temp_path_for(self.path)
        try:
            self._open(audio_from)
        except BaseException:
            self._fail()
            raise

    # -- opening -------------------------------------------------------------------------------------
    def _open(self, audio_from: str | os.PathLike | None) -> None:
        audio_source = None if audio_from is None else self._audio_source(Path(audio_from))
        try:
            self._open_container(audio_source)
        except (av.error.FFmpegError, ValueError) as exc:
            if audio_source is None:
                raise UserError(f"cannot write {self.path}: {_short(exc)}") from None
            # Perhaps the audio codec does not go into this container: try the video alone.
            self._close_containers()
            _discard(self.temp_path)
            try:
                self._open_container(None)
            except (av.error.FFmpegError, ValueError) as exc2:
                raise UserError(f"cannot write {self.path}: {_short(exc2)}") from None
            log.warning("audio of %s cannot be copied into a %s file (%s); writing video only",
                        audio_from, self.path.suffix or "this", _short(exc))

    def _audio_source(self, source: Path) -> av.container.InputContainer | None:
        try:
            src = av.open(str(source), mode="r")
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("cannot read audio from %s (%s); writing video only", source, _short(exc))
            return None
        if not src.streams.audio:
            src.close()
            return None
        codec = src.streams.audio[0].codec_context.name
        allowed = _AUDIO_COPY_CODECS.get(self.path.suffix.lower())
        if allowed is not None and codec not in allowed:
            log.warning("%s audio of %s cannot be copied into a %s file; writing video only (use .mkv "
                        "to keep it)", codec, source, self.path.suffix)
            src.close()
            return None
        return src

    def _open_container(self, audio_source: av.container.InputContainer | None) -> None:
        muxer = _MUXER_BY_SUFFIX.get(self.path.suffix.lower())
        try:
            self._out = av.open(str(self.temp_path), mode="w", format=muxer)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            if audio_source is not None:
                audio_source.close()
            raise UserError(f"cannot write {self.path}: {_short(exc)}") from None
        for key, value in self._metadata.items():
            self._out.metadata[key] = value
        try:
            self._stream = self._out.add_stream(self.codec, rate=self.fps)
        except (av.error.FFmpegError, ValueError) as exc:
            if audio_source is not None:
                audio_source.close()
            raise UserError(f"cannot encode {self.codec} into {self.path.name}: {_short(exc)}") from None
        self._stream.width = self.width
        self._stream.height = self.height
        self._stream.pix_fmt = self.pix_fmt
        if self._options:
            self._stream.options = dict(self._options)
        if audio_source is not None:
            self._audio_in = audio_source
            in_stream = audio_source.streams.audio[0]
            self._audio_out = self._out.add_stream_from_template(in_stream)
            # Shift the audio so that the source's earliest stream starts at 0 like our video does.
            start = audio_source.start_time
            self._audio_offset = start / av.time_base if start not in (None, 0) else 0.0
            self._audio_packets = iter(audio_source.demux(in_stream))
        # Write the header now, so that codec/container mismatches surface here and not mid-encode.
        self._out.start_encoding()

    def _close_containers(self) -> None:
        for closer in (self._out, self._audio_in):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._out = None
        self._audio_in = None
        self._audio_packets = None
        self._pending_audio = None

    # -- audio ---------------------------------------------------------------------------------------
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
            start -= self._audio_offset
            if seconds is not None and start >= seconds:
                self._pending_audio = packet
                return
            if self._audio_offset:
                shift = round(self._audio_offset / packet.time_base)
                packet.dts -= shift
                if packet.pts is not None:
                    packet.pts -= shift
            packet.stream = self._audio_out
            self._out.mux(packet)

    # -- video ---------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        """Encode one frame (an ndarray in ``input_format``, shape (H, W[, C]))."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, writer expects {self.width}x{self.height}"
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=self.input_format)
        vf.pts = self.frames_written
        vf.time_base = self._frame_time_base
        try:
            for packet in self._stream.encode(vf):
                self._out.mux(packet)
            self.frames_written += 1
            if self._audio_packets is not None:
                self._mux_audio_until(self.frames_written / float(self.fps))
        except av.error.FFmpegError as exc:  # e.g. disk full
            self._fail()
            raise UserError(f"cannot write {self.path}: {_short(exc)}") from None

    def close(self) -> Path:
        """Flush the encoder, finish the audio, close the file and move it into place."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._mux_audio_until(self.frames_written / float(self.fps))
            out, self._out = self._out, None
            out.close()
            self._close_containers()
        except av.error.FFmpegError as exc:
            self._fail()
            raise UserError(f"cannot finish writing {self.path}: {_short(exc)}") from None
        except BaseException:
            self._fail()
            raise
        self._closed = True
        _finalise(self.temp_path, self.path)
        return self.path

    def _fail(self) -> None:
        """Discard the temporary file; the final path is never created."""
        if self._closed:
            return
        self._closed = True
        self._close_containers()
        if hasattr(self, "temp_path"):
            _discard(self.temp_path)

    abort = _fail

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fail()

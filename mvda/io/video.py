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
import itertools
import logging
import math
import os
import secrets
import threading
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import av
import numpy as np

from mvda.errors import UserError

__all__ = [
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "VideoDecodeError",
    "DamagedVideoError",
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


class DamagedVideoError(VideoDecodeError):
    """A frame failed its checksum (FFV1 slice CRC), or the file ends before its declared length."""


class _DamageLog:
    """Collect the times of frames FFmpeg reports as damaged while decoding.

    FFV1 reports a slice CRC mismatch only as a log message ("slice CRC mismatch", then "at T
    seconds") and conceals the damage; PyAV raises nothing. The capture is process-wide (the decoder
    runs on FFmpeg's threads), so messages of other decoders could be seen too: only FFV1's CRC
    messages are taken. A message arrives before the damaged frame is returned by the decoder.
    """

    _MARKERS = ("crc mismatch", "checksum mismatch", "slice damaged")

    def __enter__(self) -> "_DamageLog":
        import av.logging as avlog

        # PyAV routes FFmpeg's log through Python only while a level is set, and that can deadlock a
        # decoder whose own threads log while the GIL is held (e.g. when its container is closed). So
        # the level is set only for this capture and restored after it, and the watched stream is
        # decoded on the calling thread (see VideoReader.indexed).
        self._previous_level = avlog.get_level()
        if self._previous_level is None or self._previous_level > avlog.ERROR:
            avlog.set_level(avlog.ERROR)
        self._capture = avlog.Capture(local=False)
        self._logs = self._capture.__enter__()
        self._seen = 0
        self._pending = False
        self.times: list[float] = []
        self.untimed = 0
        return self

    def __exit__(self, *exc) -> None:
        import av.logging as avlog

        self._capture.__exit__(*exc)
        avlog.set_level(self._previous_level)

    def _scan(self) -> None:
        logs = self._logs
        while self._seen < len(logs):
            _level, name, message = logs[self._seen]
            self._seen += 1
            text = str(message).strip().lower()
            if name == "ffv1" and any(m in text for m in self._MARKERS):
                if self._pending:
                    self.untimed += 1
                self._pending = True
            elif self._pending and text.startswith("at ") and text.endswith("seconds"):
                with contextlib.suppress(ValueError):
                    self.times.append(float(text[3:-7]))
                    self._pending = False

    def damaged_at(self, time: float, tolerance: float) -> bool:
        """True when a damage report names ``time`` (within ``tolerance`` seconds), or one without a
        time is waiting (then it is taken for this frame)."""
        self._scan()
        for k, t in enumerate(self.times):
            if abs(t - time) <= tolerance:
                del self.times[k]
                return True
        if self.untimed:
            self.untimed -= 1
            return True
        return False


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video file before decoding it.

    ``num_frames`` is the container's frame count, or an estimate from duration × fps when the
    container does not store one (Matroska); ``None`` when neither is known. Use it for progress bars
    and to detect truncated files, never to size buffers.

    ``rotation``: the display rotation of the stream in degrees counter-clockwise (0, 90, 180 or -90;
    phones record portrait video as landscape frames plus such a display matrix). ``width`` and
    ``height`` are the size as displayed, i.e. after that rotation, which :class:`VideoReader` applies.

    ``vfr``: the frames are not evenly spaced in time (phones record variable frame rate). Read from
    the MP4/MOV sample table (every frame's time is in the header, so nothing is decoded); other
    containers are taken as constant-rate. Frame times while decoding: :attr:`VideoReader.times`.
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
    rotation: int = 0
    vfr: bool = False

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


#: Demuxers that can carry a display matrix (MP4/MOV family, including phones' files).
_ROTATING_FORMATS = ("mov", "mp4", "3gp", "3g2", "mj2")


def _display_rotation(path: Path, container: av.container.InputContainer) -> int:
    """The stream's display rotation (degrees counter-clockwise, a multiple of 90), read from the first
    decoded frame's display matrix; 0 for containers that cannot carry one."""
    names = set((container.format.name or "").split(","))
    if not names & set(_ROTATING_FORMATS):
        return 0
    try:
        with av.open(str(path), mode="r") as probe:
            for frame in probe.decode(probe.streams.video[0]):
                angle = float(getattr(frame, "rotation", 0) or 0)
                break
            else:
                return 0
    except (av.error.FFmpegError, OSError):
        return 0
    quarter = round(angle / 90.0) % 4
    if abs(angle - round(angle / 90.0) * 90.0) > 1.0:
        log.warning("%s: display rotation of %.1f degrees is not a multiple of 90; ignored", path.name, angle)
        return 0
    return {0: 0, 1: 90, 2: 180, 3: -90}[quarter]


def _is_vfr(container: av.container.InputContainer) -> bool:
    """True when the stream's sample table shows frame durations that differ by more than 25 %."""
    names = set((container.format.name or "").split(","))
    if not names & set(_ROTATING_FORMATS):
        return False
    try:
        stamps = sorted(e.timestamp for e in container.streams.video[0].index_entries)
    except (AttributeError, av.error.FFmpegError):
        return False
    if len(stamps) < 3:
        return False
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    steps = steps[steps > 0]
    if steps.size < 2:
        return False
    typical = float(np.median(steps))
    return bool(np.abs(steps - typical).max() > 0.25 * typical)


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
    rotation = _display_rotation(path, container)
    width, height = int(ctx.width), int(ctx.height)
    if rotation in (90, -90):
        width, height = height, width
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        fps=fps,
        num_frames=num,
        codec=ctx.name,
        pix_fmt=ctx.pix_fmt,
        has_audio=bool(container.streams.audio),
        metadata=dict(container.metadata),
        rotation=rotation,
        vfr=_is_vfr(container),
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
    Frames come out as displayed: a display rotation (phones' portrait video) is applied, so
    ``(height, width)`` are the displayed size. A decode error in the middle of the stream raises
    :class:`VideoDecodeError` naming the frame. After iteration, :attr:`times` holds each yielded
    frame's presentation time in seconds from the first frame (variable frame rate kept).

    ``damaged``: what to do with frames the decoder reports as damaged (FFV1 slice CRC mismatches,
    which FFmpeg only logs and conceals by copying the previous frame): ``"ignore"`` (default, as any
    player), ``"error"`` (raise :class:`DamagedVideoError` naming the first damaged frame; a file that
    ends before the frame count its container declares is an error too) or ``"skip"`` (leave those
    frames out and count them in :attr:`damaged_frames`; :meth:`indexed` gives each frame's index in
    the file so that paired videos can skip the same frame).
    """

    def __init__(self, path: str | os.PathLike, pix_fmt: str = "rgb24", max_frames: int | None = None,
                 damaged: str = "ignore", strict_length: bool | None = None):
        if damaged not in ("ignore", "error", "skip"):
            raise ValueError(f"damaged must be 'ignore', 'error' or 'skip', got {damaged!r}")
        self.path = Path(path)
        self.pix_fmt = pix_fmt
        self.max_frames = max_frames
        self.damaged = damaged
        #: a file that ends before its declared length is an error (default: with ``damaged="error"``)
        self.strict_length = damaged == "error" if strict_length is None else bool(strict_length)
        self._container = _open_input(self.path)
        self.info = _info_from(self._container, self.path)
        self.frames_read = 0  # frames yielded
        self.frames_decoded = 0  # frames decoded, damaged ones included
        self.damaged_frames: list[int] = []
        self.times: list[float] = []
        # set by seek(): the decoder already positioned, its first frame, the first frame's time
        self._decoding: Iterator[av.VideoFrame] | None = None
        self._held: list[av.VideoFrame] = []
        self._first_time: float | None = None

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
        (a truncated file; an error with ``damaged="error"``).
        """
        for _, array in self.indexed():
            yield array

    def seek(self, index: int, time: float) -> bool:
        """Before iterating: continue at frame ``index`` of the file, whose time is ``time`` (seconds from
        the first frame, exactly as :attr:`times` holds it after a decode from the start). Seeks to the key
        frame before it and decodes (without converting) up to it; iteration then yields it first, as
        frame ``index``, with the times of a decode from the start. Returns False, leaving the reader as
        newly opened, when no frame has exactly that time there (times missing or not as given): then
        iterate from the start. Not with ``damaged`` other than ``"ignore"``."""
        if self.frames_decoded or self.damaged != "ignore":
            return False
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = self._container.decode(stream)
        found = False
        try:
            first = next(frames, None)
            if first is not None and first.time is not None and index > 0:
                start = float(first.time)
                target = math.floor((start + time) / float(stream.time_base)) - 1
                self._container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
                frames = self._container.decode(stream)
                for frame in frames:
                    if frame.time is None or float(frame.time) - start > time:
                        break
                    if float(frame.time) - start == time:
                        found = True
                        self._decoding, self._held, self._first_time = frames, [frame], start
                        self.frames_decoded = index
                        break
        except av.error.FFmpegError:
            found = False
        if not found:  # as newly opened
            self._container.close()
            self._container = _open_input(self.path)
            self._decoding, self._held, self._first_time = None, [], None
        return found

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """Like iterating, but yields ``(index in the file, frame)``; indices skip damaged frames."""
        if self.max_frames is not None and self.frames_read >= self.max_frames:
            return
        stream = self._container.streams.video[0]
        watch = self.damaged != "ignore"
        # A watched stream (its damage reports are read from FFmpeg's log) decodes on this thread; see
        # _DamageLog. Others use FFmpeg's frame/slice threads.
        if not stream.codec_context.is_open:  # (after seek() it is, with these threads)
            stream.thread_type = "NONE" if watch else "AUTO"
        capture = _DamageLog() if watch else contextlib.nullcontext()
        start: float | None = self._first_time
        tainted = False
        quarter = {0: 0, 90: 1, 180: 2, -90: 3}[self.info.rotation]
        decoding = self._decoding if self._decoding is not None else self._container.decode(stream)
        held, self._held, self._decoding = self._held, [], None
        try:
            with capture:
                for frame in itertools.chain(held, decoding):
                    index = self.frames_decoded
                    self.frames_decoded += 1
                    time = float(frame.time) if frame.time is not None else index / float(self.fps)
                    if start is None:
                        start = time
                    if watch:
                        # After a damaged frame, FFV1's non-key frames decode from a spoilt coder state
                        # (their own checksums still pass): damaged too, up to the next key frame.
                        if capture.damaged_at(time, 0.5 / float(self.fps)):
                            tainted = True
                        elif tainted and frame.key_frame:
                            tainted = False
                        if tainted:
                            self._damaged(index)
                            continue
                    array = frame.to_ndarray(format=self.pix_fmt)
                    if quarter:
                        array = np.ascontiguousarray(np.rot90(array, quarter))
                    self.frames_read += 1
                    self.times.append(time - start)
                    yield index, array
                    if self.max_frames is not None and self.frames_read >= self.max_frames:
                        return
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(
                f"{self.path}: decode error after frame {self.frames_decoded} ({_short(exc)}); "
                "the file may be truncated or corrupt"
            ) from None
        if self.frames_read == 0 and not self.damaged_frames:
            raise VideoDecodeError(
                f"{self.path}: no frame could be decoded; the file may be truncated or corrupt"
            )
        expected = self.info.num_frames
        if self.strict_length and expected is not None and self.frames_decoded < expected - 1:
            raise DamagedVideoError(
                f"{self.path}: the video ends after {self.frames_decoded} of the {expected} frames its container "
                f"declares (frame {self.frames_decoded} is the first missing one); the file is truncated"
            )
        if expected is not None and self.frames_decoded < expected - max(2, 0.05 * expected):
            log.warning("%s: the video ended after %d of the %d frames its container declares; the "
                        "file may be truncated", self.path.name, self.frames_decoded, expected)
        if self.damaged_frames:
            log.warning("%s: left out %d damaged frame(s) (first: frame %d)", self.path.name,
                        len(self.damaged_frames), self.damaged_frames[0])

    def _damaged(self, index: int) -> None:
        if self.damaged == "error":
            raise DamagedVideoError(
                f"{self.path}: frame {index} is damaged (checksum mismatch); the file is corrupt: re-create it, "
                "or pass --skip_damaged to leave out damaged frames"
            )
        self.damaged_frames.append(index)

    def sample_frames(self, count: int = 5) -> list[np.ndarray]:
        """Up to ``count`` frames spread over the whole file (by seeking a second decoder), as displayed.

        For judging what a file holds without decoding all of it; does not disturb iteration.
        """
        duration = self._duration()
        return self.frames_at([0.0] if not duration else [duration * k / count for k in range(count)])

    def _duration(self) -> float | None:
        """The video stream's (else the container's) duration in seconds, or None."""
        stream = self._container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None:
            return self._container.duration / av.time_base
        return None

    def frames_at(self, times: Sequence[float]) -> list[np.ndarray]:
        """The frames on screen at ``times`` (seconds, by their timestamps), as displayed, each found by
        seeking a second decoder to the key frame before it and decoding from there (so reading a few
        frames of a long video costs a few GOPs, not a pass). Does not disturb iteration; frames that
        cannot be read are left out."""
        frames: list[np.ndarray] = []
        quarter = {0: 0, 90: 1, 180: 2, -90: 3}[self.info.rotation]
        try:
            with av.open(str(self.path), mode="r") as probe:
                stream = probe.streams.video[0]
                for t in times:
                    if t > 0:
                        probe.seek(int(t / float(stream.time_base)), stream=stream, backward=True)
                    for frame in probe.decode(stream):
                        if frame.time is None or frame.time + 1e-6 >= t:
                            array = frame.to_ndarray(format=self.pix_fmt)
                            frames.append(np.ascontiguousarray(np.rot90(array, quarter)) if quarter else array)
                            break
        except av.error.FFmpegError:
            pass  # judged by what could be read; iteration reports decode errors itself
        return frames

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


class _Temporaries:
    """The temporary outputs of this process that are not finished yet.

    Every writer removes its own temporary file when it fails or is aborted. A signal can also land
    in the few instructions between creating a temporary file and handing its writer to whatever
    would abort it; :func:`mvda.cli.run_cli` therefore calls :func:`discard_temporaries` whenever a
    script ends without success, so that no window is left in which a hidden partial file survives.
    """

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._lock = threading.Lock()

    def add(self, path: Path) -> Path:
        with self._lock:
            self._paths.add(path)
        return path

    def forget(self, path: Path) -> None:
        with self._lock:
            self._paths.discard(path)

    def discard_all(self) -> list[Path]:
        with self._lock:
            paths, self._paths = sorted(self._paths), set()
        for path in paths:
            _remove(path)
        return paths


#: This process's unfinished temporary outputs (one per process: signals are per process).
_TEMPORARIES = _Temporaries()


def register_temporary(path: Path) -> Path:
    """Record ``path`` as a temporary output to remove if the script ends without success."""
    return _TEMPORARIES.add(Path(path))


def forget_temporary(path: Path) -> None:
    """``path`` was finalised or removed by its owner."""
    _TEMPORARIES.forget(Path(path))


def discard_temporaries() -> list[Path]:
    """Remove every temporary output still registered (see :class:`_Temporaries`); returns them."""
    return _TEMPORARIES.discard_all()


def _temp_path_for(path: Path) -> Path:
    # Keep the extension so that tools (and PyAV) recognise the format; hide and mark the file (or
    # folder). The random part keeps two writers of one process (or a retry after a failure) apart.
    return register_temporary(
        path.with_name(f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{path.suffix}"))


def _discard(tmp: Path) -> None:
    """Remove a temporary output, file or folder (with what it holds); missing is fine."""
    _remove(tmp)
    forget_temporary(tmp)


def _remove(tmp: Path) -> None:
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
        forget_temporary(tmp)
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
#: with per-slice CRCs, so that damage to a file can be detected when it is read, and every frame a
#: key frame (``g=1``): FFV1's non-key frames continue the previous frame's coder state, so one damaged
#: frame would silently spoil every frame up to the next key frame.
FFV1_OPTIONS: dict[str, str] = {"level": "3", "slicecrc": "1", "g": "1"}


def ffv1_settings(pix_fmt: str) -> dict:
    """``VideoWriter`` keyword arguments for a lossless FFV1 stream in ``pix_fmt`` ("bgr0", "gray",
    "gray16le"): codec, pixel format and :data:`FFV1_OPTIONS`."""
    return {"codec": "ffv1", "pix_fmt": pix_fmt, "options": dict(FFV1_OPTIONS)}


#: Time base (Hz) of variable-frame-rate outputs: MPEG's 90 kHz clock.
VFR_TIME_BASE_HZ = 90000


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
    vfr:          variable frame rate: each :meth:`write` gives the frame's time in seconds (kept to
                  1/90000 s), so a phone's uneven timing and its audio stay in sync. Default: constant
                  rate, frame i at i / fps.
    stream_metadata: tags of the video stream (e.g. ``{"stereo_mode": "left_right"}``, which the
                  Matroska muxer writes as its StereoMode element).
    finish:       called with the finished temporary file before it is moved into place (e.g. to add
                  boxes the muxer cannot write); a ValueError or OSError it raises fails the write.

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
        vfr: bool = False,
        stream_metadata: Mapping[str, str] | None = None,
        finish: Callable[[Path], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._stream_metadata = {str(k): str(v) for k, v in (stream_metadata or {}).items()}
        self._finish = finish
        self.vfr = bool(vfr)
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
        # Constant rate: frame i at pts i in 1/fps. Variable rate: each frame at the time given to
        # write(), in 1/VFR_TIME_BASE_HZ seconds.
        self._frame_time_base = Fraction(1, VFR_TIME_BASE_HZ) if self.vfr else Fraction(1, 1) / self.fps
        self._last_pts = -1
        self._last_time = 0.0
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
            # bitexact: no creation date or random UIDs in the container, so the same frames give the
            # same bytes (a batch spread over workers writes exactly what a serial run writes).
            self._out = av.open(str(self.temp_path), mode="w", format=muxer, options={"fflags": "+bitexact"})
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
        for key, value in self._stream_metadata.items():
            self._stream.metadata[key] = value
        self._stream.width = self.width
        self._stream.height = self.height
        self._stream.pix_fmt = self.pix_fmt
        if self._options:
            self._stream.options = dict(self._options)
        if self.vfr:
            self._stream.codec_context.time_base = self._frame_time_base
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
    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Encode one frame (an ndarray in ``input_format``, shape (H, W[, C])).

        ``time``: the frame's presentation time in seconds from the start; used by a ``vfr`` writer
        (required there, and must increase), ignored by a constant-rate one (frame i is at i / fps).
        """
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, writer expects {self.width}x{self.height}"
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=self.input_format)
        if self.vfr:
            if time is None:
                raise ValueError(f"{self.path}: a variable-frame-rate writer needs each frame's time")
            pts = max(round(time * VFR_TIME_BASE_HZ), self._last_pts + 1)
            self._last_time = pts / VFR_TIME_BASE_HZ
        else:
            pts = self.frames_written
        self._last_pts = pts
        vf.pts = pts
        vf.time_base = self._frame_time_base
        try:
            for packet in self._stream.encode(vf):
                self._out.mux(packet)
            self.frames_written += 1
            if self._audio_packets is not None:
                self._mux_audio_until(self._video_end())
        except av.error.FFmpegError as exc:  # e.g. disk full
            self._fail()
            raise UserError(f"cannot write {self.path}: {_short(exc)}") from None

    def _video_end(self) -> float:
        """Seconds of video written so far (the last frame shown for one nominal frame duration)."""
        if self.vfr:
            return self._last_time + 1.0 / float(self.fps)
        return self.frames_written / float(self.fps)

    def close(self) -> Path:
        """Flush the encoder, finish the audio, close the file and move it into place."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._mux_audio_until(self._video_end())
            out, self._out = self._out, None
            out.close()
            self._close_containers()
            if self._finish is not None:
                self._finish(self.temp_path)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
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

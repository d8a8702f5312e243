"""Scene cuts: detection on decoded frames as they stream past, and cut lists from other tools.

Detection (:class:`CutDetector`) works on a tiny *thumbnail* of each frame (about 24 rows, block
means), normalised per colour channel to zero mean and unit standard deviation, so that a change of
exposure, white balance or a flash (a global gain or offset of a channel) does not look like new
content. The *score* of frame ``t`` is the mean absolute difference of its thumbnail and frame
``t - 1``'s (:func:`cut_score`): about 0.1-0.4 inside a shot, also with camera motion, and about 1
(two unrelated images: ``E|X - Y| = 2 / sqrt(pi)`` for independent unit normals) across a cut.
Frame ``t`` starts a new shot when

* its score is at least ``threshold`` (``--scene_threshold``, default :data:`DEFAULT_THRESHOLD`),
* and at least :data:`ADAPTIVE_RATIO` times the mean score of the :data:`WINDOW` frames before and
  after it (fast motion raises every score of a stretch, a cut only one),
* and the current shot is at least ``min_shot`` frames long.

The frames after ``t`` are needed for the second rule, so a cut is known :data:`WINDOW` frames late
(:attr:`CutDetector.delay`); the frame source holds that many frames back.

Cut lists (:func:`parse_cut_list`): one cut per line, as the first frame of the new shot (a 0-based
frame number ``123``) or its time (``00:01:02.500``, ``1:02.5``, ``62.5s`` or ``62.5``), or
PySceneDetect's scene list CSV (``scenedetect ... list-scenes``: the *Start Frame* column, 1-based,
of every scene after the first).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_MIN_SHOT",
    "ADAPTIVE_RATIO",
    "WINDOW",
    "CutList",
    "parse_cut_list",
    "thumbnail",
    "cut_score",
    "CutDetector",
    "ListedCuts",
]

#: Default ``--scene_threshold``: the least score (mean absolute difference of normalised thumbnails)
#: of a cut.
DEFAULT_THRESHOLD: float = 0.7
#: Shortest shot in frames: a cut closer than this to the previous one is ignored.
DEFAULT_MIN_SHOT: int = 8
#: A cut's score must be this many times the mean score of its neighbours.
ADAPTIVE_RATIO: float = 2.5
#: Neighbours on each side compared with a candidate cut (the detection delay, in frames).
WINDOW: int = 2
#: Rows of the thumbnail.
THUMB_ROWS: int = 24
#: Added to each channel's standard deviation before normalising (grey levels): flat frames (black,
#: a fade) are not amplified into noise.
STD_FLOOR: float = 4.0


@dataclass(frozen=True)
class CutList:
    """Cuts read from a file: first frames of new shots, as 0-based frame numbers and as times (s)."""

    frames: tuple[int, ...] = ()
    seconds: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.frames) + len(self.seconds)


_TIMECODE = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_SECONDS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*s?$")


def _parse_time(text: str) -> float | None:
    """Seconds of ``HH:MM:SS(.fff)``, ``MM:SS(.fff)``, ``12.5s``, ``12.5`` or ``12s``; None if not a time."""
    m = _TIMECODE.match(text)
    if m:
        hours = int(m.group(1) or 0)
        return hours * 3600.0 + int(m.group(2)) * 60.0 + float(m.group(3))
    m = _SECONDS.match(text)
    if m and ("." in text or text.endswith("s")):
        return float(m.group(1))
    return None


def parse_cut_list(text: str, name: str = "cut list") -> CutList:
    """Parse a cut list (see the module docstring).

    Args:
        text: the file's content.
        name: the file's name, for error messages.

    Returns:
        The :class:`CutList`, frames and times each sorted, without duplicates; cuts at frame 0 or time
        0 are dropped (the first shot starts there anyway).

    Raises:
        ValueError: a line that is neither a frame number nor a time (message names the line), or a CSV
            without a *Start Frame* column.

    Example:
        >>> parse_cut_list("# shots\\n48\\n00:00:04.000\\n2.5s\\n")
        CutList(frames=(48,), seconds=(2.5, 4.0))
    """
    lines = text.splitlines()
    if any(line.strip().startswith(("Scene Number", "Timecode List")) for line in lines[:3]):
        return _parse_scenedetect_csv(text, name)
    frames: set[int] = set()
    seconds: set[float] = set()
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.isdigit():
            frames.add(int(line))
            continue
        t = _parse_time(line)
        if t is None or not math.isfinite(t):
            raise ValueError(f"{name} line {number}: {raw.strip()!r} is neither a frame number (0-based, e.g. 120) "
                             "nor a time (e.g. 00:00:05.000 or 5.0s)")
        seconds.add(t)
    frames.discard(0)
    seconds.discard(0.0)
    return CutList(frames=tuple(sorted(frames)), seconds=tuple(sorted(seconds)))


def _parse_scenedetect_csv(text: str, name: str) -> CutList:
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    header = next((i for i, row in enumerate(rows) if row and row[0].strip() == "Scene Number"), None)
    if header is None or "Start Frame" not in [c.strip() for c in rows[header]]:
        raise ValueError(f"{name}: a PySceneDetect scene list needs its 'Scene Number,Start Frame,...' header row")
    column = [c.strip() for c in rows[header]].index("Start Frame")
    frames: set[int] = set()
    for offset, row in enumerate(rows[header + 1:], start=header + 2):
        try:
            start = int(row[column])
        except (IndexError, ValueError):
            raise ValueError(f"{name} row {offset}: no Start Frame number") from None
        if start > 1:  # 1-based: the first scene starts at frame 1
            frames.add(start - 1)
    return CutList(frames=tuple(sorted(frames)))


def thumbnail(frame: np.ndarray, rows: int = THUMB_ROWS) -> np.ndarray:
    """Small normalised image of an ``(H, W, 3)`` frame (uint8 or float grey levels).

    The frame is subsampled with a stride (to at most about ``4 * rows`` rows), averaged over blocks to
    ``rows`` rows (columns in proportion), and each channel is centred and divided by its standard
    deviation plus :data:`STD_FLOOR`.

    Returns:
        ``(rows', cols', 3)`` float32, ``rows' <= rows`` (fewer for a frame smaller than that).
    """
    if frame.ndim != 3 or frame.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    h, w = frame.shape[:2]
    stride = max(1, h // (4 * rows))
    small = np.asarray(frame[::stride, ::stride, :3], dtype=np.float32)
    h, w = small.shape[:2]
    out_rows = min(rows, h)
    out_cols = max(1, min(w, round(out_rows * w / h)))
    by, bx = h // out_rows, w // out_cols
    blocks = small[: out_rows * by, : out_cols * bx].reshape(out_rows, by, out_cols, bx, 3).mean(axis=(1, 3))
    blocks -= blocks.mean(axis=(0, 1))
    blocks /= blocks.std(axis=(0, 1)) + STD_FLOOR
    return blocks


def cut_score(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute difference of two :func:`thumbnail` images (0: identical; about 1: unrelated)."""
    if previous.shape != current.shape:
        raise ValueError(f"thumbnails differ in shape: {previous.shape} and {current.shape}")
    return float(np.abs(current - previous).mean())


class CutDetector:
    """Feed frames one by one (:meth:`push`); learn the frames that start a new shot, :attr:`delay`
    frames later (see the module docstring for the rule).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.uniform(0, 255, (2, 48, 64, 3))
        >>> det = CutDetector()
        >>> found = [c for i in range(30) for c in det.push(i, a if i < 15 else b)] + det.finish()
        >>> found
        [15]
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, min_shot: int = DEFAULT_MIN_SHOT,
                 window: int = WINDOW, ratio: float = ADAPTIVE_RATIO) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = float(threshold)
        self.min_shot = max(1, int(min_shot))
        self.window = max(1, int(window))
        self.ratio = float(ratio)
        self._previous: np.ndarray | None = None
        self._scores: deque[tuple[int, float]] = deque()  # (frame, score), the last 2 * window + 1
        self._last_cut = 0
        self.scores: list[float] = []  # every frame's score (0 for the first), for reports and tests

    @property
    def delay(self) -> int:
        """Frames pushed after a cut before :meth:`push` reports it."""
        return self.window

    def push(self, index: int, frame: np.ndarray, time: float | None = None) -> list[int]:
        """Add frame ``index`` (``(H, W, 3)``, indices increasing; ``time`` is not used); return the cuts now known (frame
        numbers of first frames of new shots, at most one, :attr:`delay` frames back)."""
        thumb = thumbnail(frame)
        score = 0.0 if self._previous is None or self._previous.shape != thumb.shape else cut_score(self._previous, thumb)
        self._previous = thumb
        self.scores.append(score)
        self._scores.append((index, score))
        if len(self._scores) > 2 * self.window + 1:
            self._scores.popleft()
        if len(self._scores) < 2 * self.window + 1:
            return []
        return self._decide(self.window)

    def finish(self) -> list[int]:
        """End of the stream: decide the last frames, whose later neighbours never came."""
        found: list[int] = []
        items = list(self._scores)
        start = max(0, len(items) - self.window) if len(items) >= 2 * self.window + 1 else 1
        for k in range(start, len(items)):
            found.extend(self._decide(k))
        self._scores.clear()
        return found

    def _decide(self, k: int) -> list[int]:
        items = list(self._scores)
        index, score = items[k]
        if index == 0 or score < self.threshold or index - self._last_cut < self.min_shot:
            return []
        neighbours = [s for j, (_, s) in enumerate(items) if j != k and abs(j - k) <= self.window]
        if neighbours and score < self.ratio * (sum(neighbours) / len(neighbours)):
            return []
        self._last_cut = index
        return [index]


class ListedCuts:
    """Cuts from a :class:`CutList` matched against decoded frames: :meth:`push` says whether a frame
    (source frame number ``index``, presentation time ``time`` in seconds) is the first one at or after
    a listed cut. No delay."""

    delay = 0

    def __init__(self, cuts: CutList, fps: float) -> None:
        # Half a frame of tolerance: a time written with rounded milliseconds still hits its frame.
        tolerance = 0.5 / fps if fps > 0 else 1e-3
        self._frames = deque(cuts.frames)
        self._seconds = deque(t - tolerance for t in cuts.seconds)
        self.scores: list[float] = []

    def push(self, index: int, frame: np.ndarray | None = None, time: float | None = None) -> list[int]:
        hit = False
        while self._frames and index >= self._frames[0]:
            self._frames.popleft()
            hit = True
        while self._seconds and time is not None and time >= self._seconds[0]:
            self._seconds.popleft()
            hit = True
        return [index] if hit and index > 0 else []

    def finish(self) -> list[int]:
        return []

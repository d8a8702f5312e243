"""``--ray``: long videos split at their scene cuts, the pieces converted on several workers and joined
losslessly; the result holds the serial run's frames (the same FFV1 packets) and tags.

Used by :mod:`mvda.apps.ray_batch` (the driver and the workers); Ray itself is not imported here.

* Which videos: with more than one worker, a video whose expected length is at least twice
  ``--ray_split_seconds`` (:data:`DEFAULT_SPLIT_SECONDS`; 0: never split) and that has scene cuts
  (not ``--scene_cuts off``); never with ``--resume`` (its parts folder is per video) or ``--report``
  (the picture needs the whole video's fit).
* The plan is a job on a worker (:func:`mvda.apps.convert.plan_video`), not on the driver: the
  ``--fov auto`` estimate needs MoGe-2, which the workers have loaded (the driver loads no network),
  and the decode-only pass that finds the cuts (:func:`mvda.apps.convert.prescan_cuts`, the same
  detector and frames as the serial run; a ``--scene_cuts FILE`` list is placed on the decoded frames
  the same way) reads the input on a worker node like the conversion does. It returns the cuts, the
  output frame count and the whole video's field of view, computed once and given to every piece.
* Pieces (:func:`plan_pieces`): consecutive whole shots of at least ``--ray_split_seconds`` of video
  each (greedy; a shorter tail joins the last piece). A video that gives one piece is converted whole.
* A piece job (:class:`PieceJob`) converts output frames ``[start, end)``: ``start`` is a cut, so
  Video-Depth-Anything's stream, the rolling fit and each shot's global fit start there anew exactly
  as in the serial run, with the known cut list (no detection). The reader seeks to the key frame
  before ``start`` and decodes up to the frame the plan's own decode saw there, found by its exact
  time (:meth:`mvda.io.video.VideoReader.seek`), so frame numbers and ``--target_fps`` selection are
  those of a decode from the start; where that cannot be proven (no or repeated frame times, frames
  picked by time from a variable-rate source) the frames before ``start`` are decoded and skipped
  instead. It writes a lossless FFV1 part file hidden next to the output
  (:func:`piece_part_path`), which the driver joins, packets copied
  (:func:`mvda.io.remux.join_videos`), into the output with the whole video's ``scene_cuts`` tag
  (:func:`join_pieces`) once every piece is done, and removes.
* A failing piece fails its video alone: its pieces not started are dropped, those still running
  stop at their next progress report (the worker's counter answers that their video was given up,
  within about a second; a ``--fit global`` piece in its first pass only when that pass ends), the
  finished ones are removed, the other videos go on.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from depth_codec import TAG_SCENE_CUTS
from mvda.apps.convert import VideoPlan, VideoResult, format_cuts
from mvda.io.remux import join_videos
from mvda.ops.depth_fit import ClampCounts

__all__ = [
    "DEFAULT_SPLIT_SECONDS",
    "PlanJob",
    "PieceJob",
    "plan_pieces",
    "worth_planning",
    "piece_part_path",
    "joined_result",
    "join_pieces",
    "SplitVideo",
]

#: ``--ray_split_seconds`` default: a piece holds at least this much video (seconds).
DEFAULT_SPLIT_SECONDS = 300.0


@dataclass(frozen=True)
class PlanJob:
    """Find the cuts, the length and the field of view of video ``input`` (the ``index``-th), to split it."""

    index: int
    input: str

    @property
    def key(self) -> tuple[int, int]:
        return (self.index, -1)


@dataclass(frozen=True)
class PieceJob:
    """Convert output frames ``[start, end)`` of video ``input`` (the ``index``-th); ``cuts`` and ``fov``
    are the whole video's (:class:`mvda.apps.convert.VideoPlan`), ``anchor`` its entry for ``start``."""

    index: int
    input: str
    start: int
    end: int
    cuts: tuple[int, ...]
    fov: tuple[float, float] | None
    anchor: tuple[int, float] | None = None  # source frame of ``start`` and its time: seek there

    @property
    def key(self) -> tuple[int, int]:
        return (self.index, self.start)


def plan_pieces(cuts: Sequence[int], frames: int, fps: float, seconds: float) -> list[tuple[int, int]]:
    """Split ``frames`` output frames at ``fps`` with shots starting at ``cuts`` (output frames) into
    pieces ``[start, end)`` of consecutive whole shots of at least ``seconds`` of video each: a piece
    ends at the first cut that makes it long enough; a shorter rest joins the last piece.
    ``seconds <= 0``: one piece.

    >>> plan_pieces([100, 250, 400, 700], 1000, 10.0, 20.0)
    [(0, 250), (250, 700), (700, 1000)]
    >>> plan_pieces([100, 250, 400, 700], 800, 10.0, 20.0)
    [(0, 250), (250, 800)]
    >>> plan_pieces([], 1000, 10.0, 20.0)
    [(0, 1000)]
    """
    if seconds <= 0 or frames <= 0:
        return [(0, max(0, int(frames)))]
    least = seconds * fps
    pieces: list[tuple[int, int]] = []
    start = 0
    for bound in [*sorted({int(c) for c in cuts if 0 < c < frames}), int(frames)]:
        if bound - start >= least:
            pieces.append((start, bound))
            start = bound
    if start < frames:
        if pieces:
            pieces[-1] = (pieces[-1][0], int(frames))
        else:
            pieces.append((start, int(frames)))
    return pieces


def worth_planning(expected_frames: int | None, fps: float, seconds: float) -> bool:
    """Whether a video of ``expected_frames`` output frames at ``fps`` may give two pieces of
    ``seconds`` each (unknown length or ``seconds <= 0``: no)."""
    return seconds > 0 and expected_frames is not None and expected_frames >= 2 * seconds * fps


def piece_estimate(expected_frames: int | None, fps: float, seconds: float) -> int:
    """At most how many pieces a video gives (for the number of workers to start)."""
    if not worth_planning(expected_frames, fps, seconds):
        return 1
    return max(1, math.floor(expected_frames / (seconds * fps)))  # type: ignore[operator]


def piece_part_path(output: Path, start: int, pid: int) -> Path:
    """The hidden part file of the piece from output frame ``start`` of ``output``, written by process
    ``pid``: ``.{NAME}.piece-{PID}-{START}.mkv`` (see :func:`mvda.apps.ray_batch.worker_temporaries`)."""
    return Path(output).with_name(f".{Path(output).stem}.piece-{pid}-{start:09d}.mkv")


def joined_result(pieces: Sequence[VideoResult], output: Path, cuts: Sequence[int], seconds: float) -> VideoResult:
    """The :class:`VideoResult` of a video from those of its pieces (in order): frames, clamps and
    DA-V2 frames added, the depth range of all, ``seconds`` of wall time."""
    first = pieces[0]
    clamps = ClampCounts()
    timings: dict[str, float] = {}
    for piece in pieces:
        clamps += piece.clamps
        for stage, value in piece.timings.items():
            timings[stage] = timings.get(stage, 0.0) + value
    return VideoResult(input=first.input, output=output, frames=sum(p.frames for p in pieces), seconds=seconds,
                       width=first.width, height=first.height, fps=first.fps,
                       depth_min=min(p.depth_min for p in pieces), depth_max=max(p.depth_max for p in pieces),
                       clamps=clamps, metric_frames=sum(p.metric_frames for p in pieces), fit=first.fit,
                       timings=timings, cuts=list(cuts))


def join_pieces(parts: Sequence[Path], output: Path, plan: VideoPlan) -> int:
    """Join the part files (in order) into ``output`` atomically, packets copied, with the whole
    video's cut list in the ``scene_cuts`` tag (as the serial run writes it); returns the frames."""
    return join_videos(list(parts), output, plan.fps, metadata={TAG_SCENE_CUTS: format_cuts(plan.cuts)},
                       vfr=plan.vfr)


def remove_files(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@dataclass
class SplitVideo:
    """The driver's record of one video being split: its plan job, when that started (``started``,
    ``time.monotonic()``), the plan, the piece jobs, and the finished pieces (start -> result, node,
    worker label, part file)."""

    job: PlanJob
    started: float
    plan: VideoPlan | None = None
    pieces: list[PieceJob] = field(default_factory=list)
    done: dict[int, tuple[VideoResult, str, str, Path]] = field(default_factory=dict)
    failed: bool = False

    @property
    def complete(self) -> bool:
        return bool(self.pieces) and len(self.done) == len(self.pieces)

    def parts(self) -> list[Path]:
        return [self.done[start][3] for start in sorted(self.done)]

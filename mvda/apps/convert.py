"""The logic of ``video_metric_convert.py``: any video to a metric depth video, streaming.

Per video, frames flow decode -> (select by timestamp) -> (downscale to ``max_res``) -> networks ->
fit -> encode, one at a time, so memory does not grow with the video length. The loop is
:func:`mvda.frames.run_frames`: decoding runs on its own thread, the networks on the calling thread,
the per-pixel fit, packing and FFV1 encoding on the encode thread (see :class:`_Converter`); an error,
Ctrl-C or SIGTERM/SIGHUP leaves neither a partial output nor the global fit's temporary store.

* ``model="vda+dav2"``, ``fit="rolling"`` (default, the original tool): Video-Depth-Anything (VDA)
  runs as a :class:`~video_depth_anything.inference.VideoDepthStream` and returns final relative
  frames with a lag of up to one window (32 frames). Metric Depth-Anything-V2 (DA-V2) runs on each
  frame as it is decoded (or on every ``metric_every``-th frame) and only two numbers per frame are
  kept, ``mean`` and ``std`` of its inverse depth, until VDA emits that frame. The emitted frame is
  then mapped to metric inverse depth by :class:`depth_fit.RollingFit` and written.
* ``model="vda+dav2"``, ``fit="global"``: pass 1 streams VDA and stores its output at network
  resolution as float16 in a temporary file in the output folder (deleted afterwards, also on
  error), and runs DA-V2 on about ``global_frames`` frames evenly spaced over the clip, keeping
  ``global_points`` sampled pixels of each. One trimmed least-squares fit
  (:func:`depth_fit.robust_scale_shift`) maps VDA to metric inverse depth; pass 2 reads the file
  back, upsamples, applies the fit and writes.
* ``model="vda-metric"``: the Metric-Video-Depth-Anything checkpoint gives metres directly; no DA-V2,
  no fit.
* ``model="vda+moge2"``: as ``vda+dav2`` (rolling or global fit), with MoGe-2's metric depth, its field of
  view fixed to the video's, as the metric anchor instead of DA-V2 (:mod:`mvda.apps.metric_anchor`).

The field of view (``fov``, ``xfov``, ``yfov``; :mod:`mvda.apps.video_fov`) is found before the frame loop
and written into the depth file's ``xfov`` / ``yfov`` tags, from keyframes per shot (:func:`fov_keyframes`).

``metric_every = N`` (rolling fit): DA-V2 runs on output frames ``0, N, 2N, ...`` only, and each of
them adds one history entry; every other frame uses the parameters computed for the most recent DA-V2
frame before it, unchanged. The history limits are scaled so that they span the same number of video
frames as the original's: the first entry is used while the history holds fewer than
``ceil(10 / N)`` entries, and the oldest entry is dropped (after fitting) when it holds more than
``ceil(100 / N)`` (:func:`rolling_limits`). ``N = 1`` is exactly the original tool.

Scene cuts (``scene_cuts``, :mod:`mvda.ops.scene_cuts`): the frame source detects them on the decoded
frames (or takes them from a list) and puts a :class:`ShotStart` before each new shot; the steps end
their VDA stream there as at the end of a video and start a new one, the rolling fit's history starts
again and the global fit fits each shot on its own. ``resume`` writes the output as parts that a later
run continues (:mod:`mvda.apps.resume`); ``report`` draws a picture of the run (:mod:`mvda.apps.report`).

Depth is written at the source resolution (VDA's output is resized there directly), with the
source frame rate (or ``target_fps``), through :class:`depth_codec.DepthVideoWriter` (lossless,
atomic, tagged with ``max_depth``). Fitted inverse depth that is non-positive, non-finite or below
``1/max_depth`` is written as ``max_depth`` and counted; depth below :func:`near_limit` is raised
to it so that every decoded pixel is in ``(0, max_depth]``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mvda.ops import depth_fit
from mvda.ops import scene_cuts as cut_detection
from mvda.apps.video_fov import FOV_MODES, fov_tags, load_fov_model, video_fov
from mvda.errors import UserError
from mvda.cli import progress_bar
from mvda.frames import run_frames
from depth_anything_v2.transform import network_input_size, prepare_images
from depth_codec import TAG_SCENE_CUTS, DepthVideoWriter, depth_step
from video_depth_anything.inference import VideoDepthStream, video_input_size
from video_depth_anything.keyframe_cache import KeyframeFeatureCache
from mvda.io.ebml import fill_reserved_tag, reserve_tag
from mvda.io.remux import join_videos
from mvda.apps import resume as resume_parts
from mvda.io.video import (VideoDecodeError, VideoReader, ensure_writable_dir, forget_temporary, probe_video,
                           register_temporary)

__all__ = [
    "MODELS",
    "FITS",
    "VIDEO_EXTENSIONS",
    "ConvertOptions",
    "Models",
    "StageTimer",
    "VideoResult",
    "load_models",
    "collect_inputs",
    "output_path_for",
    "inference_size",
    "selection_count",
    "expected_output_frames",
    "rolling_limits",
    "near_limit",
    "clamp_metric_depth",
    "convert_video",
    "plan_video",
    "VideoPlan",
    "VideoPiece",
    "convert_batch",
    "options_from_args",
    "run",
]

log = logging.getLogger("mvda")

#: ``--model`` choices: VDA relative + DA-V2 metric + fit, Metric-VDA directly, or VDA relative + MoGe-2 metric + fit.
MODELS: tuple[str, ...] = ("vda+dav2", "vda-metric", "vda+moge2")
#: ``--encoder`` / ``--metric_encoder`` choices.
ENCODERS: tuple[str, ...] = ("vits", "vitb", "vitl")
#: ``--metric_model`` choices (Depth-Anything-V2 metric training sets).
METRIC_MODELS: tuple[str, ...] = ("hypersim", "vkitti")
#: ``--fit`` choices.
FITS: tuple[str, ...] = ("rolling", "global")
#: File extensions taken from a folder given as ``--input_video``.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".m2ts", ".3gp"}
)
#: Output suffix: ``{stem}_depth.mkv``.
OUTPUT_SUFFIX = "_depth.mkv"


# ---------------------------------------------------------------------------------------------------
# options, models, timers, results


@dataclass
class ConvertOptions:
    """Everything that controls one conversion (the CLI flags, resolved).

    Attributes:
        model: ``"vda+dav2"``, ``"vda-metric"`` or ``"vda+moge2"``.
        fit: ``"rolling"`` or ``"global"`` (``vda+dav2`` and ``vda+moge2``).
        input_size: network shorter side (518 for the released models).
        max_res: frames whose larger side exceeds this are downscaled for inference (<= 0: never).
        max_len: at most this many output frames (<= 0: all).
        target_fps: output frame rate; frames are selected by timestamp (<= 0: the source rate).
        max_depth: full scale of the packed output in metres.
        metric_every: DA-V2 on every N-th output frame (rolling fit).
        device: torch device of both networks.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``: autocast of Video-Depth-Anything, and of DA-V2
            unless ``metric_precision`` is given.
        metric_precision: DA-V2's precision; None: ``precision``. The command line sets it to fp32 by
            default, as the official DA-V2 ``infer_image`` runs in float32 even on CUDA.
        dav2_batch: frames per DA-V2 call (frames wait at most until VDA needs their statistics).
        global_frames: frames sampled by the global fit.
        global_points: pixels sampled per frame by the global fit.
        output_size: ``(H, W)`` of the written depth; ``None``: the source resolution.
        reuse_keyframe_features: encode each frame once in VDA (:class:`KeyframeFeatureCache`).
        progress: show tqdm bars.
        fov: ``"auto"``: MoGe-2's field of view of keyframes into the tags (when :attr:`Models.moge` is
            loaded); ``"off"``: none. ``xfov`` / ``yfov`` (degrees), when given, are written instead.
        on_frame: called (on the encode thread) after each depth frame is written, e.g. to feed a
            batch's overall progress from a worker (``mvda.apps.ray_batch``); None: nothing.
    """

    model: str = "vda+dav2"
    fit: str = "rolling"
    input_size: int = 518
    max_res: int = 1440
    max_len: int = -1
    target_fps: float = -1.0
    max_depth: float = 6.0
    metric_every: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    metric_precision: str | None = None
    dav2_batch: int = 1
    global_frames: int = 32
    global_points: int = 4096
    output_size: tuple[int, int] | None = None
    reuse_keyframe_features: bool = True
    progress: bool = True
    xfov: float | None = None
    yfov: float | None = None
    fov: str = "auto"
    on_frame: Callable[[], None] | None = None
    #: ``"auto"`` (detect while decoding), ``"off"``, or a cut list file (:mod:`mvda.ops.scene_cuts`).
    scene_cuts: str = "auto"
    scene_threshold: float = cut_detection.DEFAULT_THRESHOLD
    #: Keep finished parts in ``{output}.parts/`` and continue from them (:mod:`mvda.apps.resume`).
    resume: bool = False
    part_seconds: float = resume_parts.PART_SECONDS
    #: Draw ``{name}_depth_report.png`` beside the output (:mod:`mvda.apps.report`).
    report: bool = False

    def validate(self) -> None:
        """Raise :class:`UserError` for impossible combinations."""
        if self.model not in MODELS:
            raise UserError(f"unknown --model {self.model!r}: use one of {', '.join(MODELS)}")
        if self.fit not in FITS:
            raise UserError(f"unknown --fit {self.fit!r}: use one of {', '.join(FITS)}")
        if self.input_size < 14:
            raise UserError(f"--input_size must be at least 14 (one patch), got {self.input_size}")
        if not self.max_depth > 0 or not math.isfinite(self.max_depth):
            raise UserError(f"--max_depth must be a finite number > 0, got {self.max_depth}")
        if self.metric_every < 1:
            raise UserError(f"--metric_every must be >= 1, got {self.metric_every}")
        if self.fov not in FOV_MODES:
            raise UserError(f"unknown --fov {self.fov!r}: use one of {', '.join(FOV_MODES)}")
        if self.model == "vda+moge2" and self.fov == "off" and self.xfov is None and self.yfov is None:
            raise UserError("--model vda+moge2 fixes MoGe-2's field of view to the video's: use --fov auto "
                            "(the default) or give --xfov")
        if not self.part_seconds > 0:
            raise UserError(f"--part_seconds must be > 0, got {self.part_seconds}")
        if not self.scene_threshold > 0:
            raise UserError(f"--scene_threshold must be > 0, got {self.scene_threshold}")


@dataclass
class Models:
    """The networks of one run (loaded once for a whole batch).

    ``vda``: VideoDepthAnything (relative for ``vda+dav2`` and ``vda+moge2``, metric for ``vda-metric``);
    ``dav2``: metric DepthAnythingV2 (``vda+dav2`` only);
    ``moge``: MoGe-2 for the field of view (``fov="auto"``; None: no estimate) and the metric anchor of
    ``vda+moge2``.
    """

    vda: Any
    dav2: Any | None = None
    moge: Any | None = None


def load_models(
    model: str,
    encoder: str,
    metric_encoder: str,
    metric_model: str,
    device: torch.device,
    vda_checkpoint: str | os.PathLike | None = None,
    metric_checkpoint: str | os.PathLike | None = None,
    fov_encoder: str | None = None,
    fov_checkpoint: str | os.PathLike | None = None,
) -> Models:
    """Load the networks for ``model`` strictly from their checkpoints.

    Checkpoints: the explicit paths, else the default local folders of the packages
    (``Video-Depth-Anything/checkpoints``, ``Depth-Anything-V2/metric_depth/checkpoints``,
    ``MoGe/checkpoints``), else the Hugging Face hub. Raises :class:`depth_anything_v2.hub.CheckpointError`
    (a one-line message naming the repo id, the file and the install command) when one is missing or
    does not match; MoGe-2 of size ``fov_encoder`` (``None``: not loaded) is needed only by
    ``vda+moge2``, elsewhere a missing or bad one is a warning and ``Models.moge`` stays None.
    """
    from depth_anything_v2.hub import load_depth_anything_v2_metric
    from video_depth_anything.hub import load_video_depth_anything

    if model == "vda-metric":
        vda = load_video_depth_anything(encoder, metric=True, checkpoint=vda_checkpoint, device=device)
        dav2 = None
    else:
        vda = load_video_depth_anything(encoder, metric=False, checkpoint=vda_checkpoint, device=device)
        dav2 = None if model == "vda+moge2" else load_depth_anything_v2_metric(
            metric_encoder, metric_model, checkpoint=metric_checkpoint, device=device)
    if model == "vda+moge2":
        fov_encoder = fov_encoder or "vits"
    moge = None if fov_encoder is None else load_fov_model(fov_encoder, fov_checkpoint, device,
                                                           required=model == "vda+moge2")
    return Models(vda=vda, dav2=dav2, moge=moge)


class StageTimer:
    """Wall-clock seconds per pipeline stage (``decode``, ``vda``, ``dav2``, ``fit``, ``encode``, ...).

    On CUDA the device is synchronised at the end of each stage so that the time is attributed to the
    stage that queued the work (only when ``enabled``; disabled timers cost nothing).

    Stages are timed on the thread that runs them (run_frames: ``decode`` on the decode thread,
    ``vda``/``dav2``/``fit`` on the calling thread, ``encode``/``store`` on the encode thread), so they
    overlap and their sum can exceed the wall time. Thread-safe.
    """

    def __init__(self, device: torch.device | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = {}
        self._sync = device is not None and device.type == "cuda"
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed

    def merge(self, other: "StageTimer") -> None:
        for key, value in other.seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value


@dataclass
class VideoResult:
    """Outcome of one video: ``status`` is ``"ok"``, ``"skipped"`` (output existed) or ``"failed"``."""

    input: Path
    output: Path
    status: str = "ok"
    error: str | None = None
    frames: int = 0
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    fps: Fraction | None = None
    depth_min: float = float("nan")
    depth_max: float = float("nan")
    clamps: depth_fit.ClampCounts = field(default_factory=depth_fit.ClampCounts)
    metric_frames: int = 0
    fit: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cuts: list[int] = field(default_factory=list)  # output frames that start a new shot

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def summary_line(self) -> str:
        """One line for the user: frames, seconds, frames/s, depth range, clamped pixels."""
        name = self.input.name
        if self.status == "skipped":
            return f"{name}: skipped, {self.output} exists (--skip_existing)"
        if self.status == "failed":
            return f"{name}: FAILED: {self.error}"
        pixels = max(1, self.frames * self.width * self.height)
        far = self.clamps.far
        text = (
            f"{name}: {self.frames} frames {self.width}x{self.height} @ {float(self.fps or 0):.3g} fps in "
            f"{self.seconds:.1f} s ({self.frames_per_second:.2f} frames/s), depth {self.depth_min:.3f}-"
            f"{self.depth_max:.3f} m, clipped to max_depth: {far} px ({100.0 * far / pixels:.2f} %"
        )
        if self.clamps.nonpositive:
            text += f", {self.clamps.nonpositive} with non-positive fitted inverse depth"
        text += ")"
        if self.clamps.near:
            text += f", raised to the near limit: {self.clamps.near} px"
        shots = len(self.cuts) + 1
        text += f", {shots} shot{'s' if shots != 1 else ''}"
        return text + f" -> {self.output}"


# ---------------------------------------------------------------------------------------------------
# small pure helpers


def inference_size(height: int, width: int, max_res: int) -> tuple[int, int]:
    """Frame size fed to the networks: the source size, or scaled down so that its larger side is
    ``max_res`` when it is larger (``max_res <= 0``: never), rounding each side to the nearest pixel.

    >>> inference_size(2160, 3840, 1440), inference_size(480, 640, 1440)
    ((810, 1440), (480, 640))
    """
    if max_res > 0 and max(height, width) > max_res:
        scale = max_res / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    return height, width


def selection_count(index: int, source_fps: Fraction, target_fps: Fraction | None) -> int:
    """How many output frames show source frame ``index`` when resampling to ``target_fps``.

    Output frame ``k`` (at time ``k / target_fps``) shows the source frame on screen at that time,
    ``floor(k * source_fps / target_fps)``. So source frame ``j`` is used
    ``ceil((j + 1) * t / s) - ceil(j * t / s)`` times: 0 (dropped), 1, or more (duplicated).
    ``target_fps=None`` keeps every frame once.

    >>> [selection_count(j, Fraction(30), Fraction(15)) for j in range(4)]
    [1, 0, 1, 0]
    >>> [selection_count(j, Fraction(10), Fraction(25)) for j in range(3)]
    [3, 2, 3]
    """
    if target_fps is None:
        return 1
    ratio = Fraction(target_fps) / Fraction(source_fps)
    return math.ceil((index + 1) * ratio) - math.ceil(index * ratio)


def expected_output_frames(
    source_frames: int | None, source_fps: Fraction, target_fps: Fraction | None, max_len: int
) -> int | None:
    """Output frame count for a source of ``source_frames`` frames (``None`` if unknown)."""
    if source_frames is None:
        return max_len if max_len > 0 else None
    n = source_frames if target_fps is None else math.ceil(source_frames * Fraction(target_fps) / Fraction(source_fps))
    return min(n, max_len) if max_len > 0 else n


def rolling_limits(metric_every: int) -> tuple[int, int]:
    """``(min_history, max_history)`` of the rolling fit when DA-V2 runs on every ``metric_every``-th
    frame: ``(ceil(10 / N), ceil(100 / N))``, so the history spans about the same video frames as the
    original's ``(10, 100)`` (which ``N = 1`` gives exactly).

    >>> rolling_limits(1), rolling_limits(4), rolling_limits(3)
    ((10, 100), (3, 25), (4, 34))
    """
    n = max(1, int(metric_every))
    return math.ceil(depth_fit.ROLLING_MIN_HISTORY / n), math.ceil(depth_fit.ROLLING_MAX_HISTORY / n)


def near_limit(max_depth: float) -> float:
    """Smallest depth written (metres): two code steps of the packed format, so it never decodes to 0."""
    return 2.0 * depth_step(max_depth)


def clamp_metric_depth(depth: torch.Tensor, max_depth: float, min_depth: float) -> tuple[torch.Tensor, depth_fit.ClampCounts]:
    """Clamp network metric depth (metres, ``vda-metric``) to ``[min_depth, max_depth]``.

    Non-finite or larger than ``max_depth`` -> ``max_depth`` (``far``; non-finite also counts as
    ``nonpositive``); below ``min_depth`` (including VDA's ReLU zeros) -> ``min_depth`` (``near``).
    """
    finite = torch.isfinite(depth)
    far = ~finite | (depth > max_depth)
    near = finite & (depth < min_depth)
    out = depth.masked_fill(far, max_depth).masked_fill_(near, min_depth)
    counts = torch.stack([torch.count_nonzero(far), finite.numel() - torch.count_nonzero(finite),
                          torch.count_nonzero(near)]).tolist()
    return out, depth_fit.ClampCounts(far=int(counts[0]), nonpositive=int(counts[1]), near=int(counts[2]))


def output_path_for(input_path: Path, output_dir: Path) -> Path:
    """``output_dir / "{input stem}_depth.mkv"``."""
    return Path(output_dir) / f"{Path(input_path).stem}{OUTPUT_SUFFIX}"


def collect_inputs(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand ``--input_video`` arguments: files as given; a folder gives its video files (by
    extension, sorted, not recursive, skipping hidden files and ``*_depth.mkv`` outputs).

    Raises:
        UserError: nothing given, a folder without videos, or two inputs that would write the same
            output name.
    """
    if not items:
        raise UserError("no --input_video given")
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                c for c in p.iterdir()
                if c.is_file() and c.suffix.lower() in VIDEO_EXTENSIONS
                and not c.name.startswith(".") and not c.name.endswith(OUTPUT_SUFFIX)
            )
            if not found:
                raise UserError(f"folder {p} contains no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})")
            paths.extend(found)
        else:
            paths.append(p)
    seen: dict[str, Path] = {}
    for p in paths:
        key = output_path_for(p, Path(".")).name
        if key in seen and seen[key].resolve() != p.resolve():
            raise UserError(f"{seen[key]} and {p} would both be written to {key}; convert them separately")
        seen[key] = p
    unique: list[Path] = []
    for p in paths:  # the same file given twice is converted once
        if all(p.resolve() != q.resolve() for q in unique):
            unique.append(p)
    return unique


# ---------------------------------------------------------------------------------------------------
# frame source


@dataclass(frozen=True)
class ShotStart:
    """Item of the frame source placed before the first frame of every shot after the first: the steps
    end their stream there as at the end of a video and start anew. ``frame``: its output frame number;
    ``length``: the shot's expected length in output frames (None: unknown)."""

    frame: int
    length: int | None = None


def read_cut_file(path: str | os.PathLike) -> cut_detection.CutList:
    """The cut list of ``--scene_cuts FILE`` (raises UserError naming the problem)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"--scene_cuts {path}: cannot read the cut list ({exc.strerror or exc}); give 'auto', "
                        "'off' or a file with one frame number or time per line") from None
    except UnicodeDecodeError:
        raise UserError(f"--scene_cuts {path}: not a text file; give a file with one frame number or time per line") from None
    try:
        return cut_detection.parse_cut_list(text, name=str(path))
    except ValueError as exc:
        raise UserError(f"--scene_cuts {exc}") from None


class _FrameSource:
    """Decoded, selected and (if needed) downscaled frames of one video.

    Yields the frames fed to the networks, ``(h, w, 3)`` on the device (uint8, or float in [0, 255]
    when downscaled). Iterated on run_frames' decode thread (stage ``decode``).

    A piece of a video split at its cuts (:class:`VideoPiece`): ``frames = (start, end)`` yields output
    frames ``[start, end)`` only (the earlier ones are decoded and skipped, as when resuming), and
    ``cuts``, the whole video's cut list (output frames), replaces cut detection; ``start`` being a cut,
    the piece begins a shot without a :class:`ShotStart`. ``anchor``: ``(source frame, its time)`` of
    output frame ``start`` (:func:`prescan_cuts`' ``anchors``): the reader seeks there instead of decoding
    the frames before it (:meth:`VideoReader.seek`, which finds that frame by its exact time or declines),
    unless frames are picked by time from a variable-rate source (that needs the frames before).
    """

    def __init__(self, reader: VideoReader, options: ConvertOptions, timer: StageTimer,
                 frames: tuple[int, int] | None = None, cuts: Sequence[int] | None = None,
                 anchor: tuple[int, float] | None = None) -> None:
        self.reader = reader
        self.options = options
        self.timer = timer
        self.source_fps = reader.fps
        self.target_fps: Fraction | None = (
            Fraction(str(options.target_fps)) if options.target_fps and options.target_fps > 0 else None
        )
        self.fps = self.target_fps or self.source_fps
        self.height, self.width = reader.height, reader.width
        self.infer_h, self.infer_w = inference_size(self.height, self.width, options.max_res)
        if video_input_size(self.infer_h, self.infer_w, options.input_size) < 14:
            raise UserError(
                f"{reader.path}: a {self.width}x{self.height} video is too narrow for the networks (at --input_size "
                f"{options.input_size} its short side gets less than one 14-pixel patch); use a larger --input_size "
                "or crop the video"
            )
        self.expected = expected_output_frames(reader.info.num_frames, self.source_fps, self.target_fps, options.max_len)
        self.emitted = 0
        #: Variable frame rate kept in the output (no --target_fps): each depth frame carries its colour
        #: frame's time, taken from :attr:`times` (seconds, one per output frame, in order).
        self.vfr = bool(reader.info.vfr and self.target_fps is None)
        self.times: collections.deque[float] = collections.deque()
        #: Output frames that start a new shot (filled while iterating; see :class:`ShotStart`).
        self.cuts: list[int] = []
        #: Resuming: output frames below ``skip_pushed`` are decoded (for cut detection) but not yielded,
        #: and times are kept from ``skip_written`` on (frames the restored state still holds).
        self.start, self.stop = (int(frames[0]), int(frames[1])) if frames is not None else (0, None)
        self.skip_pushed = self.start
        self.skip_written = self.start
        #: The source frame the reader starts at (after a seek to a piece's start).
        self.first_index = 0
        if anchor is not None and self.start > 0 and not (reader.info.vfr and self.target_fps is not None):
            if reader.seek(int(anchor[0]), float(anchor[1])):
                self.first_index, self.emitted = int(anchor[0]), self.start
        #: Known cuts (output frames) used instead of a detector or a list (a piece of a split video).
        self.fixed_cuts: frozenset[int] | None = None if cuts is None else frozenset(int(c) for c in cuts)
        self.listed: cut_detection.CutList | None = None
        # Output frames that start a shot, found by a pass ahead of the conversion (:func:`prescan_cuts`;
        # ``--fit global`` with ``--scene_cuts auto``): the shots' lengths are then known as they start.
        self.known_starts: list[int] | None = None
        if options.scene_cuts not in ("auto", "off"):
            self.listed = read_cut_file(options.scene_cuts)

    def _cut_finder(self) -> cut_detection.CutDetector | cut_detection.ListedCuts | None:
        if self.fixed_cuts is not None:
            return None
        if self.listed is not None:
            return cut_detection.ListedCuts(self.listed, float(self.source_fps))
        if self.options.scene_cuts == "auto":
            return cut_detection.CutDetector(threshold=self.options.scene_threshold)
        return None

    def shot_length(self, start: int) -> int | None:
        """Expected output frames of the shot starting at output frame ``start``: up to the next listed
        cut (``--scene_cuts FILE``) or pre-scanned one (:attr:`known_starts`), or the end (cuts detected
        while converting: the rest of the video); None when unknown."""
        end = self.expected
        starts = self.listed_starts() if self.listed is not None else self.known_starts
        if starts is not None:
            later = [f for f in starts if f > start]
            if later:
                end = min(later) if end is None else min(end, min(later))
        return None if end is None else max(1, end - start)

    def listed_starts(self) -> list[int]:
        """Output frames at which the listed cuts (``--scene_cuts FILE``) start a new shot, sorted (empty
        without a list)."""
        if self.listed is None:
            return []
        rate = float(self.fps)
        ratio = rate / float(self.source_fps)
        starts = {math.ceil(f * ratio - 1e-9) for f in self.listed.frames}
        starts |= {math.ceil(t * rate - 0.5) for t in self.listed.seconds}
        return sorted(starts)

    @property
    def output_times(self) -> "collections.deque[float] | None":
        """The output frames' times for the depth writer, or None for a constant-rate output."""
        return self.times if self.vfr else None

    def _prepare(self, frame: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(frame).to(self.options.device, non_blocking=True)
        if (self.infer_h, self.infer_w) == (self.height, self.width):
            return t
        x = t.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        x = F.interpolate(x, size=(self.infer_h, self.infer_w), mode="bilinear", align_corners=False, antialias=True)
        return x[0].permute(1, 2, 0).clamp_(0.0, 255.0)

    def __iter__(self) -> Iterator[torch.Tensor | ShotStart]:
        """The prepared frames, with a :class:`ShotStart` before each shot after the first. Cut
        detection sees each decoded frame once; frames wait here until the detector (which decides
        :attr:`~mvda.ops.scene_cuts.CutDetector.delay` frames late) has decided about them."""
        finder = self._cut_finder()
        pending: collections.deque[list] = collections.deque()  # [source index, prepared, repeats, time, cut]
        for frame, repeats, frame_time, index in self._selected():
            pending.append([index, frame, repeats, frame_time, False])
            if finder is not None:
                with self.timer.stage("cuts"):
                    found = set(finder.push(index, frame, frame_time))
                for item in pending:
                    item[4] = item[4] or item[0] in found
            while len(pending) > (finder.delay if finder is not None else 0):
                yield from self._release(*pending.popleft()[1:])
                if self._full():
                    return
        if finder is not None:
            found = set(finder.finish())
            for item in pending:
                item[4] = item[4] or item[0] in found
        while pending and not self._full():
            yield from self._release(*pending.popleft()[1:])

    def _full(self) -> bool:
        return 0 < self.options.max_len <= self.emitted or (self.stop is not None and self.emitted >= self.stop)

    def _release(self, frame: np.ndarray, repeats: int, frame_time: float, cut: bool
                 ) -> Iterator[torch.Tensor | ShotStart]:
        prepared = None
        for k in range(repeats):
            if self._full():
                return
            index = self.emitted
            self.emitted += 1
            starts = cut and k == 0 if self.fixed_cuts is None else index in self.fixed_cuts
            if starts and index > 0:
                self.cuts.append(index)
                if index >= self.skip_pushed and index > self.start:
                    yield ShotStart(index, self.shot_length(index))
            if self.vfr and index >= self.skip_written:  # each output frame keeps its source frame's time
                self.times.append(frame_time)
            if index < self.skip_pushed:
                continue
            if prepared is None:
                with self.timer.stage("decode"):
                    prepared = self._prepare(frame)
            yield prepared

    def _selected(self) -> Iterator[tuple[np.ndarray, int, float, int]]:
        """``(frame, how many output frames show it, its time in seconds, its source frame number)`` for
        each decoded frame that is shown.

        Frames are picked by time: output frame ``k`` (at ``k / target_fps``) shows the source frame on
        screen then. For a constant-rate source that is :func:`selection_count` (exact fractions); for a
        variable-rate one it uses the frames' own times, so each frame waits for the next one's time.
        """
        frames = iter(self.reader)
        times = self.reader.times
        vfr = self.reader.info.vfr and self.target_fps is not None
        held: tuple[np.ndarray, float] | None = None
        previous: float | None = None  # time of the frame before the held one
        index = self.first_index
        while True:
            with self.timer.stage("decode"):
                frame = next(frames, None)
            if frame is not None and (frame.shape[0] != self.height or frame.shape[1] != self.width):
                raise VideoDecodeError(
                    f"{self.reader.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but the video "
                    f"is {self.width}x{self.height}; videos that change size are not supported"
                )
            if not vfr:
                if frame is None:
                    return
                repeats = selection_count(index, self.source_fps, self.target_fps)
                index += 1
                if repeats:
                    yield frame, repeats, times[-1] if times else 0.0, index - 1
                continue
            t = float(self.target_fps)
            if held is not None:
                start = held[1]
                # The last frame lasts as long as the interval before it (the nominal one if it is alone).
                end = times[-1] if frame is not None else start + (start - previous if previous is not None
                                                                   else 1.0 / float(self.source_fps))
                repeats = math.ceil(end * t - 1e-9) - math.ceil(start * t - 1e-9)
                if repeats > 0:
                    yield held[0], repeats, start, index - 1
                previous = start
            if frame is None:
                return
            held = (frame, times[-1])
            index += 1


def prescan_cuts(path: Path, options: ConvertOptions,
                 anchors: dict[int, tuple[int, float]] | None = None) -> tuple[list[int], int]:
    """``--scene_cuts auto`` ahead of the conversion, for ``--fov auto``'s keyframes per shot: a pass that
    only decodes ``path`` and feeds the frames the conversion would use (``--target_fps``, ``--max_len``)
    to the same :class:`~mvda.ops.scene_cuts.CutDetector` (``--scene_threshold``), which takes a thumbnail
    of each. Returns the output frames that start a new shot (as :attr:`_FrameSource.cuts` will hold
    them) and the number of output frames. With ``--scene_cuts FILE`` the list is matched against the
    decoded frames' numbers and times as while converting (a split video's plan, :func:`plan_video`).
    ``anchors``, if given, receives for each cut its source frame and that frame's time (seconds from the
    first frame, :attr:`VideoReader.times`), where a piece starting there seeks to; nothing when two
    decoded frames have the same time."""
    with VideoReader(path) as reader:
        scan = _FrameSource(reader, dataclasses.replace(options, scene_cuts="off"), StageTimer(enabled=False))
        listed = read_cut_file(options.scene_cuts) if options.scene_cuts not in ("auto", "off") else None
        detector: cut_detection.CutDetector | cut_detection.ListedCuts = (
            cut_detection.ListedCuts(listed, float(scan.source_fps)) if listed is not None
            else cut_detection.CutDetector(threshold=options.scene_threshold))
        first_output: dict[int, int] = {}  # source frame -> the first output frame showing it
        times: dict[int, float] = {}  # source frame -> its time
        emitted, past, found = 0, 0, []
        for frame, repeats, frame_time, index in scan._selected():
            times[index] = frame_time
            if 0 < options.max_len <= emitted:  # full: the detector still sees its delay's worth of frames
                if past >= detector.delay:
                    break
                past += 1
            else:
                first_output[index] = emitted
                emitted = emitted + repeats if options.max_len <= 0 else min(options.max_len, emitted + repeats)
            found += detector.push(index, frame, frame_time)
        else:
            found += detector.finish()
        # A frame is found again by its time only if no two frames share one (broken timestamps).
        unique = all(a < b for a, b in zip(reader.times, reader.times[1:]))
    cuts = {first_output[c]: c for c in found if first_output.get(c, 0) > 0}
    if anchors is not None and unique:
        anchors.update({cut: (source, times[source]) for cut, source in cuts.items()})
    return sorted(cuts), emitted


def fov_keyframes(source: _FrameSource, options: ConvertOptions,
                  scanned: tuple[list[int], int] | None = None) -> list[int] | None:
    """``--fov auto``'s keyframes (output frame numbers) per shot (:func:`mvda.fov.shot_keyframes`,
    :func:`mvda.fov.shot_keyframe_count` of them: one in every shot within the cost bound). The shots
    come from ``--scene_cuts FILE`` or from :func:`prescan_cuts` (``auto``; ``scanned``: its result when
    already known). None (keyframes spread over the video) with ``--scene_cuts off``, or with a list and
    an unknown length."""
    from mvda.fov import shot_keyframe_count, shot_keyframes

    if options.scene_cuts == "off" or (source.listed is not None and source.expected is None):
        return None
    if source.listed is not None:
        cuts, frames = source.listed_starts(), int(source.expected or 0)
    elif source.known_starts is not None and source.expected is not None:
        cuts, frames = source.known_starts, int(source.expected)
    else:
        cuts, frames = scanned if scanned is not None else prescan_cuts(source.reader.path, options)
    if frames <= 0:
        return None
    shots = 1 + sum(1 for c in cuts if 0 < c < frames)
    return shot_keyframes(cuts, frames, shot_keyframe_count(frames, shots))


# ---------------------------------------------------------------------------------------------------
# the conversion of one video


class _MetricStatsQueue:
    """DA-V2 on selected frames, batched, keeping only ``(mean, std)`` of the inverse depth."""

    def __init__(self, dav2: Any, options: ConvertOptions, timer: StageTimer,
                 output_size: tuple[int, int] | None = None) -> None:
        self.dav2 = dav2
        self.options = options
        self.timer = timer
        self.output_size = output_size
        # (index, frame (h, w, 3) or prepared network input (1, 3, h', w'), frame size (h, w) if prepared)
        self.waiting: list[tuple[int, torch.Tensor, tuple[int, int] | None]] = []
        self.stats: dict[int, depth_fit.MapStats] = {}
        self.runs = 0

    def network_size(self, height: int, width: int) -> tuple[int, int] | None:
        """DA-V2's network input ``(h', w')`` for frames of ``height`` x ``width``, or None when the
        model cannot take prepared input (:meth:`add_prepared`)."""
        if not hasattr(self.dav2, "infer_prepared"):
            return None
        return network_input_size(height, width, self.options.input_size)

    def add(self, index: int, frame: torch.Tensor) -> None:
        self.waiting.append((index, frame, None))
        if len(self.waiting) >= max(1, self.options.dav2_batch):
            self.run()

    def add_prepared(self, index: int, prepared: torch.Tensor, frame_size: tuple[int, int]) -> None:
        """:meth:`add` of a frame of ``frame_size`` already prepared at :meth:`network_size` (the same
        tensor VDA takes, so the full-resolution conversion and normalisation run once)."""
        self.waiting.append((index, prepared, tuple(frame_size)))
        if len(self.waiting) >= max(1, self.options.dav2_batch):
            self.run()

    def infer(self, frames: torch.Tensor) -> torch.Tensor:
        """``(K, h, w, 3)`` frames -> ``(K, h', w')`` metric depth (metres) on the device."""
        with self.timer.stage("dav2"):
            h, w = int(frames.shape[1]), int(frames.shape[2])
            return self.dav2.infer_images(
                frames, input_size=self.options.input_size, output_size=self.output_size or (h, w),
                precision=self.options.metric_precision or self.options.precision,
                batch_size=max(1, self.options.dav2_batch),
                device=self.options.device,
            )

    def infer_prepared(self, x: torch.Tensor, frame_size: tuple[int, int]) -> torch.Tensor:
        """:meth:`infer` of prepared input ``(K, 3, h', w')`` of frames of ``frame_size``."""
        with self.timer.stage("dav2"):
            return self.dav2.infer_prepared(
                x, output_size=self.output_size or frame_size,
                precision=self.options.metric_precision or self.options.precision,
                batch_size=max(1, self.options.dav2_batch),
                device=self.options.device,
            )

    def run(self) -> None:
        if not self.waiting:
            return
        indices = [i for i, _, _ in self.waiting]
        sizes = {size for _, _, size in self.waiting}
        if None not in sizes and len(sizes) == 1:
            depth = self.infer_prepared(torch.cat([x for _, x, _ in self.waiting]), sizes.pop())
        else:  # frames (a model without infer_prepared)
            depth = self.infer(torch.stack([f for _, f, _ in self.waiting]))
        self.waiting = []
        with self.timer.stage("fit"):
            for k, index in enumerate(indices):
                self.stats[index] = depth_fit.inverse_depth_stats(depth[k])
        self.runs += len(indices)

    def pop(self, index: int) -> depth_fit.MapStats | None:
        if index in self.stats:
            return self.stats.pop(index)
        if any(i == index for i, _, _ in self.waiting):
            self.run()
            return self.stats.pop(index)
        return None


#: Outputs queued for the encode thread: VDA finishes a window's 22 frames at once, and the networks go
#: on with the next frames (DA-V2) while the encoder works through them. 24 output frames, e.g. 85 MiB
#: of float32 depth at 1280x720.
_ENCODE_QUEUE = 24


class _DepthSink:
    """The depth writer as a :func:`mvda.frames.run_frames` sink, on the encode thread: ``finish(output)``
    turns a step output into depth (metres, torch; stage ``fit``), which is converted to numpy, packed
    and encoded (stage ``encode``). Closing is left to the caller (``with`` block)."""

    def __init__(self, writer: DepthVideoWriter, timer: StageTimer, finish: Callable[[Any], torch.Tensor],
                 times: "collections.deque[float] | None" = None,
                 on_written: Callable[[], None] | None = None) -> None:
        self.writer = writer
        self.timer = timer
        self.finish = finish
        self.times = times  # output frame times (variable frame rate), consumed in order
        self.on_written = on_written  # ConvertOptions.on_frame

    def write(self, output: Any) -> None:
        with self.timer.stage("fit"):
            depth = self.finish(output)
        with self.timer.stage("encode"):
            time = self.times.popleft() if self.times is not None else None
            self.writer.write(depth.detach().to("cpu", torch.float32).numpy(), time=time)
        if self.on_written is not None:
            self.on_written()

    def close(self) -> Path:
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class _StoreSink:
    """Pass 1 of the global fit: VDA output frames ``(h, w)`` appended as float16 to ``store`` (stage
    ``store``, encode thread). The file itself is removed by :func:`convert_video` on every exit (or kept
    in the parts folder with ``--resume``).

    Outputs are ``(r, state)``; a state (``--resume``) goes to ``checkpoint(state)`` once ``r`` and the
    frames before it are in the file.
    """

    def __init__(self, store: Any, timer: StageTimer, checkpoint: Callable[[dict], None] | None = None) -> None:
        self.store = store
        self.timer = timer
        self.checkpoint = checkpoint

    def write(self, output: tuple[torch.Tensor, dict | None]) -> None:
        r, state = output
        with self.timer.stage("store"):
            data = r.to(torch.float16).cpu().numpy().tobytes()
            try:
                self.store.write(data)
                if state is not None and self.checkpoint is not None:
                    self.store.flush()
                    self.checkpoint(state)
            except OSError as exc:  # e.g. a full disk: the store takes 2 bytes per pixel and frame
                raise UserError(f"cannot write the global fit's temporary file {self.store.name}: "
                                f"{exc.strerror or exc}; free space in the output folder or use --fit rolling") from None

    def close(self) -> None:
        self.store.flush()

    def abort(self) -> None:
        pass


class _Converter:
    """The per-video work as :func:`mvda.frames.run_frames` loops.

    Threads: the frame source (decode, selection, downscale: stage ``decode``) runs on the decode
    thread; the networks (``vda``, ``dav2``, with DA-V2's statistics and the global fit's samples and
    upsampling under ``fit``) on the calling thread; the per-pixel fit of each output frame (``fit``,
    in frame order, so the rolling history is unchanged), packing and FFV1 encoding (``encode``) or the
    float16 store (``store``) on the encode thread. The stages overlap, so their seconds can add up to
    more than the wall time.
    """

    def __init__(self, models: Models, options: ConvertOptions, timer: StageTimer) -> None:
        self.models = models
        self.options = options
        self.timer = timer
        self.min_depth = near_limit(options.max_depth)
        self.clamps = depth_fit.ClampCounts()
        self.metric_frames = 0
        #: ``(scale, shift)`` of each output frame's fit ``inverse = scale * r + shift`` (1/metres), in
        #: frame order; empty for ``vda-metric``.
        self.trace: list[tuple[float, float]] = []
        #: The metric network of the fit (``infer_images``): DA-V2, or MoGe-2 set by :func:`convert_video`.
        self.metric: Any = models.dav2

    # -- shared -------------------------------------------------------------------------------------
    def _stream(self, output_size: tuple[int, int]) -> VideoDepthStream:
        model = self.models.vda
        if self.options.reuse_keyframe_features and hasattr(model, "encode") and hasattr(model, "head"):
            model = KeyframeFeatureCache(model)
        return VideoDepthStream(
            model, input_size=self.options.input_size, device=self.options.device,
            precision=self.options.precision, output_size=output_size, output="torch",
        )

    def _loop(self, source: Any, step: Any, sink: Any, frame_source: _FrameSource, name: str,
              passes: int = 1, bar_initial: int = 0, close_sink: bool = False) -> int:
        total = frame_source.expected * passes if frame_source.expected else None
        result = run_frames(source, step, [sink], total=total, desc=name, progress=self.options.progress,
                            close_sinks=close_sink, bar_initial=bar_initial, encode_queue_size=_ENCODE_QUEUE)
        return result.outputs

    # -- rolling fit / metric VDA -----------------------------------------------------------------
    def run_streaming(self, source: _FrameSource, writer: DepthVideoWriter, out_size: tuple[int, int], name: str) -> int:
        """Frames -> VDA (+ DA-V2 statistics, rolling fit) -> ``writer``; returns the frames written."""
        step = _StreamingStep(self, out_size)
        sink = _DepthSink(writer, self.timer, step.finish, source.output_times, self.options.on_frame)
        return self._loop(source, step, sink, source, name)

    def run_parts(self, source: _FrameSource, folder: resume_parts.PartsFolder, open_writer: Callable[[Path], Any],
                  out_size: tuple[int, int], name: str) -> int:
        """:meth:`run_streaming` into the parts of ``folder``, continuing after its last finished part;
        returns the frames written in all parts."""
        part_frames = max(1, round(self.options.part_seconds * float(source.fps)))
        step = _StreamingStep(self, out_size, part_frames=part_frames)
        state = folder.load_state()
        if state is not None and state.get("complete"):  # stopped between the last part and the join
            source.cuts = list(state["cuts"])
            self._restore_counters(state)
            return folder.frames_done
        if state is not None:
            step.restore(state)
            source.skip_pushed, source.skip_written = int(state["pushed_total"]), int(state["written_total"])
            log.info("%s: resuming at frame %d (%d parts done)", name, folder.frames_done, len(folder.parts))

        def encode_state() -> dict[str, Any]:
            return {**step.encode_state(), "cuts": list(source.cuts)}

        sink = resume_parts.PartSink(folder, open_writer, step.finish, encode_state, source.output_times,
                                     self.options.on_frame)
        total = source.expected
        result = run_frames(source, step, [sink], total=total, desc=name, progress=self.options.progress,
                            bar_initial=folder.frames_done, encode_queue_size=_ENCODE_QUEUE)
        return folder.frames_done if result.outputs or folder.parts else 0

    # -- global fit ---------------------------------------------------------------------------------
    def run_global(self, source: _FrameSource, writer: DepthVideoWriter, out_size: tuple[int, int], name: str,
                   temp_path: Path) -> int:
        """Pass 1: frames -> VDA -> float16 store at ``temp_path`` (+ DA-V2 samples; each shot fitted as it
        ends); pass 2: store -> upsample, fit -> ``writer``. Returns the frames written. The caller
        removes ``temp_path``."""
        pass1 = _GlobalPass1(self, source)
        with open(temp_path, "wb") as store:
            self._loop(source, pass1, _StoreSink(store, self.timer), source, name, passes=2)
        if pass1.written == 0:
            return 0
        fits = self._global_fits(pass1, source, name)
        sink = _DepthSink(writer, self.timer, self._global_finish, source.output_times, self.options.on_frame)
        with open(temp_path, "rb") as store:
            return self._global_pass2(store, temp_path, pass1.net, out_size, fits, pass1.shot_starts, pass1.written,
                                      sink, source, name)

    def run_global_parts(self, source: _FrameSource, folder: resume_parts.PartsFolder,
                         open_writer: Callable[[Path], Any], out_size: tuple[int, int], name: str) -> int:
        """:meth:`run_global` with ``--resume``: pass 1's store and state live in ``folder`` (the state
        saved at each cut and every ``part_seconds`` of video, so an interrupted pass 1 goes on from
        there), pass 2 writes the folder's parts. Returns the frames written in all parts."""
        part_frames = max(1, round(self.options.part_seconds * float(source.fps)))
        state = folder.load_state()
        if state is not None and state.get("complete"):  # stopped between the last part and the join
            source.cuts = list(state["cuts"])
            self._restore_counters(state)
            return folder.frames_done
        pass1 = _GlobalPass1(self, source, part_frames=part_frames)
        saved = folder.load_pass1()
        store_path = folder.store_path
        if saved is None or not saved.get("complete"):
            if saved is not None:
                pass1.restore(saved)
                source.skip_pushed = pass1.index  # frames before it are decoded again (cut detection, times)
                log.info("%s: resuming the first pass at frame %d", name, pass1.written)
            mode = "wb" if saved is None else "r+b"
            with open(store_path, mode) as store:
                store.truncate(pass1.written * pass1.net[0] * pass1.net[1] * 2)
                store.seek(0, os.SEEK_END)
                sink = _StoreSink(store, self.timer, checkpoint=folder.save_pass1)
                self._loop(source, pass1, sink, source, name, passes=2, bar_initial=pass1.written)
            if pass1.written == 0:
                return 0
            fits = self._global_fits(pass1, source, name)
            saved = {"complete": True, "written": pass1.written, "shot_starts": list(pass1.shot_starts),
                     "fits": [[f.scale, f.shift] for f in fits], "metric_frames": self.metric_frames,
                     "cuts": list(source.cuts),
                     "times": torch.tensor(list(source.times), dtype=torch.float64) if source.vfr else None}
            folder.save_pass1(saved)
        else:
            self.metric_frames = int(saved["metric_frames"])
            source.cuts = list(saved["cuts"])
            fits = [depth_fit.AffineFit(*f) for f in saved["fits"]]
        if state is not None:
            self._restore_counters(state)
            log.info("%s: resuming the second pass at frame %d (%d parts done)", name, folder.frames_done,
                     len(folder.parts))
        first = folder.frames_done
        times = collections.deque(saved["times"][first:].tolist()) if saved["times"] is not None else None

        def encode_state() -> dict[str, Any]:  # encode thread, after a part's last frame
            return {"pass": 2, "cuts": list(source.cuts), **self._counters()}

        sink = resume_parts.PartSink(folder, open_writer, self._global_finish, encode_state, times,
                                     self.options.on_frame)
        with open(store_path, "rb") as store:
            self._global_pass2(store, store_path, pass1.net, out_size, fits, saved["shot_starts"], saved["written"],
                               sink, source, name, first=first, part_frames=part_frames)
        return folder.frames_done

    def _counters(self) -> dict[str, Any]:
        """The encode thread's counters (clamps, fit trace) for a part's state."""
        return {"clamps": [self.clamps.far, self.clamps.nonpositive, self.clamps.near],
                "trace": torch.tensor(self.trace, dtype=torch.float64).reshape(-1, 2)}

    def _restore_counters(self, state: dict[str, Any]) -> None:
        """Continue the counters from :meth:`_counters`' entries in a part's ``state``."""
        self.clamps = depth_fit.ClampCounts(*state["clamps"])
        self.trace = [tuple(row) for row in state["trace"].tolist()]

    def _global_fits(self, pass1: _GlobalPass1, source: _FrameSource, name: str) -> list[depth_fit.AffineFit]:
        """The fit of every shot after pass 1 (the last shot is fitted here); a shot without one takes
        its neighbour's. Raises UserError when no shot could be fitted."""
        with self.timer.stage("fit"):
            pass1.end_shot()
        fits, starts = pass1.fits, pass1.shot_starts
        if all(f is None for f in fits):
            raise UserError(f"{source.reader.path}: the global fit failed ({pass1.fit_error}); try --fit rolling")
        for k in range(len(fits)):  # a shot without a fit (e.g. all black) takes its neighbour's
            if fits[k] is None:
                fits[k] = fits[k - 1] if k else next(f for f in fits if f is not None)
                log.warning("%s: shot %d (from frame %d) could not be fitted on its own (%s); it takes a neighbour's "
                            "fit", name, k + 1, starts[k], pass1.fit_error)
        return list(fits)

    def _global_pass2(self, store: Any, store_path: Path, net: tuple[int, int], out_size: tuple[int, int],
                      fits: Sequence[depth_fit.AffineFit], starts: Sequence[int], written: int, sink: Any,
                      source: _FrameSource, name: str, first: int = 0, part_frames: int | None = None) -> int:
        """Pass 2 from output frame ``first``: the store's frames -> upsampled to ``out_size``, each with
        its shot's fit -> ``sink`` (:meth:`_global_finish` turns them into metres). With ``part_frames``
        (``--resume``) a part ends at each cut and every ``part_frames`` frames. Returns the frames
        written now."""
        values = net[0] * net[1]
        shot_of = np.searchsorted(np.asarray(starts), np.arange(written), side="right") - 1
        later_starts = set(int(s) for s in starts[1:])
        store.seek(first * values * 2)

        def stored() -> Iterator[np.ndarray]:  # decode thread
            for _ in range(first, written):
                with self.timer.stage("store"):
                    buffer = np.empty(values, dtype=np.float16)
                    if store.readinto(buffer) != buffer.nbytes:
                        raise UserError(f"temporary file {store_path} is truncated; is the disk full?")
                yield buffer

        frame_numbers = iter(range(first, written))
        part_start = first

        def upsample(buffer: np.ndarray) -> list[tuple]:  # calling thread
            nonlocal part_start
            k = next(frame_numbers)
            with self.timer.stage("store"):
                r = torch.from_numpy(buffer).to(self.options.device).view(1, 1, *net).to(torch.float32)
            with self.timer.stage("fit"):
                if tuple(out_size) != tuple(net):
                    r = F.interpolate(r, size=out_size, mode="bilinear", align_corners=True)
            end_part = (part_frames is not None and k + 1 < written
                        and (k + 1 in later_starts or k + 1 - part_start >= part_frames))
            if end_part:
                part_start = k + 1
            return [(r[0, 0], fits[shot_of[k]], {"pass": 2} if end_part else None)]

        return self._loop(stored(), upsample, sink, source, name, passes=2, bar_initial=written + first,
                          close_sink=part_frames is not None)

    def _global_finish(self, output: tuple) -> torch.Tensor:
        """Encode thread, in frame order: pass 2's ``(r, fit, ...)`` -> metres."""
        r, fit = output[:2]
        self.trace.append((fit.scale, fit.shift))
        depth, counts = depth_fit.inverse_to_depth(depth_fit.apply_affine(r, fit), self.options.max_depth,
                                                   self.min_depth)
        self.clamps += counts
        return depth


def _stream_state(stream: VideoDepthStream) -> dict[str, Any]:
    """A VDA stream's part of a ``--resume`` state: the stream itself and its keyframe features (their
    inputs, the stream's previous keyframes, are kept once)."""
    model = stream.model
    state = stream.state()
    keyframes = model.keyframe_state() if isinstance(model, KeyframeFeatureCache) else None
    if (keyframes is not None and keyframes["inputs"] is not None and state["prev_keyframes"] is not None
            and torch.equal(keyframes["inputs"], state["prev_keyframes"])):
        keyframes = {**keyframes, "inputs": "prev_keyframes"}
    return {"stream": state, "keyframes": keyframes}


def _load_stream_state(stream: VideoDepthStream, state: dict[str, Any], device: torch.device) -> None:
    """Continue ``stream`` (new, same model and settings) from :func:`_stream_state`'s entries in ``state``."""
    stream.load_state(state["stream"])
    keyframes = state["keyframes"]
    if keyframes is not None and isinstance(stream.model, KeyframeFeatureCache):
        if isinstance(keyframes["inputs"], str):
            keyframes = {**keyframes, "inputs": state["stream"]["prev_keyframes"]}
        stream.model.load_keyframe_state(keyframes, device)


class _StreamingStep:
    """Step of the rolling fit and of ``vda-metric``: one decoded frame in, the frames that VDA finished
    out (``out_size``, each with its DA-V2 statistics); :meth:`flush` returns the rest at the end.
    :meth:`finish` (the fit, per pixel) runs in the depth sink on the encode thread, in frame order."""

    def __init__(self, converter: _Converter, out_size: tuple[int, int], part_frames: int | None = None) -> None:
        self.c = converter
        options = converter.options
        self.metric_model = options.model == "vda-metric"
        self.out_size = out_size
        self.every = options.metric_every
        self.fit = depth_fit.RollingFit(*rolling_limits(self.every))  # encode thread
        #: ``--resume``: a part ends at each cut and at the first window boundary after this many frames.
        self.part_frames = part_frames
        self.shot_start = 0  # output frame of the current shot's first frame
        self.part_start = 0  # output frame of the current part's first frame
        self._start_shot()

    def _start_shot(self) -> None:
        """A new VDA stream and DA-V2 queue: every shot is converted as a video of its own."""
        self.stream = self.c._stream(self.out_size)
        self.queue = None if self.metric_model else _MetricStatsQueue(self.c.metric, self.c.options, self.c.timer)
        self.index = 0  # frames of this shot pushed
        self.written = 0  # frames of this shot finished

    def __call__(self, frame: torch.Tensor | ShotStart) -> list[tuple]:
        if isinstance(frame, ShotStart):  # the stream ends as at the end of a video; the next one starts
            done = self.flush()
            self.shot_start = frame.frame
            self._start_shot()
            if self.part_frames is not None and done:  # a part ends at each cut
                done[-1] = (*done[-1][:3], self._snapshot())
            return done
        prepared = None
        if self.queue is not None and self.index % self.every == 0:
            frame_size = (int(frame.shape[0]), int(frame.shape[1]))
            net = self.queue.network_size(*frame_size)
            if net is not None and net == self.stream.network_size_for(*frame_size):
                # Both networks take the same input: convert and normalise the frame once, for both.
                with self.c.timer.stage("vda"):
                    prepared = prepare_images(frame, net, device=self.c.options.device)
                self.queue.add_prepared(self.index, prepared, frame_size)
            else:
                self.queue.add(self.index, frame)
            self.c.metric_frames += 1
        self.index += 1
        with self.c.timer.stage("vda"):
            if prepared is not None:
                outputs = self.stream.push_prepared(prepared, (int(frame.shape[0]), int(frame.shape[1])))
            else:
                outputs = self.stream.push(frame)
        done = self._finish(outputs)
        if (self.part_frames is not None and done
                and self.shot_start + self.written - self.part_start >= self.part_frames):
            # A window just ran (no input frame waits in the stream): a cheap point to end a long part.
            if self.queue is not None:
                self.queue.run()
            done[-1] = (*done[-1][:3], self._snapshot())
        return done

    # -- --resume: the state at the end of a part --------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        """The calling thread's state after the last output so far (see :mod:`mvda.apps.resume`)."""
        self.part_start = self.shot_start + self.written
        return {
            "shot_start": self.shot_start, "index": self.index, "written": self.written,
            "pushed_total": self.shot_start + self.index, "written_total": self.part_start,
            **_stream_state(self.stream),
            "queue": {int(i): [st.mean, st.std] for i, st in self.queue.stats.items()} if self.queue else {},
            "metric_frames": self.c.metric_frames,
        }

    def encode_state(self) -> dict[str, Any]:
        """The encode thread's state after the last frame written (the fit, the counters)."""
        c, params = self.c, self.fit.params
        return {
            "fit_history": [[e.s, e.a, e.b] for e in self.fit.history],
            "fit_params": None if params is None else [params.s, params.a, params.b],
            **c._counters(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a part's state: :meth:`_snapshot` and :meth:`encode_state` merged."""
        c = self.c
        self.shot_start = int(state["shot_start"])
        self._start_shot()
        self.index, self.written = int(state["index"]), int(state["written"])
        self.part_start = int(state["written_total"])
        _load_stream_state(self.stream, state, c.options.device)
        if self.queue is not None:
            self.queue.stats = {int(i): depth_fit.MapStats(*v) for i, v in state["queue"].items()}
        c.metric_frames = int(state["metric_frames"])
        self.fit.history = collections.deque(depth_fit.FitEntry(*e) for e in state["fit_history"])
        self.fit._params = None if state["fit_params"] is None else depth_fit.RollingParams(*state["fit_params"])
        c._restore_counters(state)

    def flush(self) -> list[torch.Tensor]:
        with self.c.timer.stage("vda"):
            outputs = self.stream.flush()
        return self._finish(outputs)

    def _finish(self, outputs: list[torch.Tensor]) -> list[tuple]:
        """Pair each finished VDA frame with its DA-V2 statistics (None: none for this frame), whether
        it is the first frame of its shot, and the state when a part ends after it (else None)."""
        done = []
        for r in outputs:
            metric = self.queue.pop(self.written) if self.queue is not None and self.written % self.every == 0 else None
            done.append((r, metric, self.written == 0, None))
            self.written += 1
        return done

    def finish(self, output: tuple) -> torch.Tensor:
        """Encode thread, in frame order: the rolling fit (or the metric clamp) of one frame -> metres.
        The fit's history starts anew with each shot."""
        c = self.c
        r, metric, first = output[:3]
        if self.metric_model:
            depth, counts = clamp_metric_depth(r, c.options.max_depth, c.min_depth)
        else:
            if first:
                self.fit = depth_fit.RollingFit(*rolling_limits(self.every))
            params = self.fit.fit_frame(metric, depth_fit.relative_stats(r))
            c.trace.append((params.s, params.a - params.b * params.s))
            depth, counts = depth_fit.inverse_to_depth(
                depth_fit.apply_rolling(r, params), c.options.max_depth, c.min_depth
            )
        c.clamps += counts
        return depth


class _GlobalPass1:
    """Step of the global fit's first pass: VDA at network resolution (its frames go to the store),
    DA-V2 on about ``global_frames`` evenly spaced frames of each shot; both sampled at the same pixels.
    Each shot is fitted when it ends (:attr:`fits`), and its samples let go.

    Outputs ``(r, state)``: ``state`` is None, or with ``part_frames`` (``--resume``) the state to save
    once ``r`` is stored: at each cut, and at the first window's end after ``part_frames`` frames.
    """

    def __init__(self, converter: _Converter, source: _FrameSource, part_frames: int | None = None) -> None:
        self.c = converter
        options = converter.options
        self.name = Path(source.reader.path).name
        self.net = network_input_size(source.infer_h, source.infer_w,
                                      video_input_size(source.infer_h, source.infer_w, options.input_size))
        rows, cols = depth_fit.sample_grid(self.net[0], self.net[1], options.global_points)
        self.rows = torch.from_numpy(rows).to(options.device)
        self.cols = torch.from_numpy(cols).to(options.device)
        self.queue = _MetricStatsQueue(converter.metric, options, converter.timer, output_size=self.net)
        self.metric_samples: dict[int, np.ndarray] = {}  # frame -> 1/m at the grid (1/metres), this shot
        self.relative_samples: dict[int, np.ndarray] = {}  # frame -> r at the grid, this shot
        self.index = 0  # frames pushed
        self.written = 0  # frames finished
        self.shot_starts = [0]  # output frame of each shot's first frame
        self.fits: list[depth_fit.AffineFit | None] = []  # of each ended shot (None: it could not be fitted)
        self.fit_error = ""  # why the last shot without a fit has none
        self.part_frames = part_frames
        self.part_start = 0
        self.lengths_known = options.scene_cuts != "auto" or source.known_starts is not None
        self._start_shot(source.shot_length(source.start))

    def _start_shot(self, length: int | None) -> None:
        """A new VDA stream and DA-V2 sampler: each shot is fitted on its own."""
        options = self.c.options
        self.stream = self.c._stream(self.net)
        cap = None if self.lengths_known else _AUTO_CUTS_MAX_STRIDE
        self.sampler = _EvenSampler(length, options.global_frames, max_stride=cap)
        self.shot_index = 0

    def __call__(self, frame: torch.Tensor | ShotStart) -> list[tuple[torch.Tensor, dict | None]]:
        if isinstance(frame, ShotStart):
            if self.shot_index == 0:  # restored at this very cut (--resume): the shot before it has ended
                return []
            done = self._flush_stream()
            with self.c.timer.stage("fit"):
                self.end_shot()
            self.shot_starts.append(self.written)
            self._start_shot(frame.length)
            return self._outputs(done, end_part=True)
        c, index, local = self.c, self.index, self.shot_index
        self.index += 1
        self.shot_index += 1
        if self.sampler.take(local):
            depth = self.queue.infer(frame.unsqueeze(0))[0]
            with c.timer.stage("fit"):
                self.metric_samples[index] = 1.0 / depth[self.rows, self.cols].double().clamp_min(
                    depth_fit.MIN_METRIC_DEPTH).cpu().numpy()
            c.metric_frames += 1
            for dropped in self.sampler.drop_surplus():
                self.metric_samples.pop(self.shot_starts[-1] + dropped, None)
                self.relative_samples.pop(self.shot_starts[-1] + dropped, None)
        with c.timer.stage("vda"):
            outputs = self.stream.push(frame)
        done = self._keep(outputs)
        # A window just ran (no input frame waits in the stream): a cheap point to save the state.
        return self._outputs(done, end_part=self.written - self.part_start >= (self.part_frames or 0))

    def flush(self) -> list[tuple[torch.Tensor, None]]:
        """The end of the video: the last frames (the caller fits the last shot, see :meth:`end_shot`)."""
        return self._outputs(self._flush_stream(), end_part=False)

    def _flush_stream(self) -> list[torch.Tensor]:
        with self.c.timer.stage("vda"):
            outputs = self.stream.flush()
        return self._keep(outputs)

    def _keep(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        for r in outputs:
            if self.written in self.metric_samples:
                with self.c.timer.stage("store"):
                    self.relative_samples[self.written] = r[self.rows, self.cols].double().cpu().numpy()
            self.written += 1
        return outputs

    def _outputs(self, done: list[torch.Tensor], end_part: bool) -> list[tuple[torch.Tensor, dict | None]]:
        outputs: list[tuple[torch.Tensor, dict | None]] = [(r, None) for r in done]
        if self.part_frames is not None and outputs and end_part:
            outputs[-1] = (outputs[-1][0], self._snapshot())
        return outputs

    def end_shot(self) -> None:
        """Fit the shot that just ended (its stream flushed: all its samples are in) and let its samples go."""
        start, end = self.shot_starts[-1], self.written
        frames = sorted(set(self.metric_samples) & set(self.relative_samples))
        try:
            if not frames:
                raise ValueError("no frame of it was sampled")
            fit, inliers = depth_fit.robust_scale_shift(
                np.concatenate([self.relative_samples[i] for i in frames]),
                np.concatenate([self.metric_samples[i] for i in frames]),
            )
        except ValueError as exc:
            self.fit_error = str(exc)
            self.fits.append(None)
        else:
            log.info("%s: global fit of frames %d-%d: inverse = %.6g * r + %.6g over %d frames, %d of %d samples "
                     "kept", self.name, start, end - 1, fit.scale, fit.shift, len(frames), int(inliers.sum()),
                     inliers.size)
            self.fits.append(fit)
        self.metric_samples.clear()
        self.relative_samples.clear()

    # -- --resume: the state after the frames stored so far -----------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        self.part_start = self.written
        as_tensors = (lambda samples: {int(i): torch.from_numpy(a) for i, a in samples.items()})
        return {
            "index": self.index, "written": self.written, "shot_index": self.shot_index,
            "shot_starts": list(self.shot_starts), **_stream_state(self.stream),
            "sampler": [self.sampler.stride, list(self.sampler.kept)],
            "metric_samples": as_tensors(self.metric_samples), "relative_samples": as_tensors(self.relative_samples),
            "fits": [None if f is None else [f.scale, f.shift] for f in self.fits], "fit_error": self.fit_error,
            "metric_frames": self.c.metric_frames,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`_snapshot`."""
        self.index, self.written = int(state["index"]), int(state["written"])
        self.part_start = self.written
        self.shot_starts = [int(s) for s in state["shot_starts"]]
        self._start_shot(None)
        self.shot_index = int(state["shot_index"])
        _load_stream_state(self.stream, state, self.c.options.device)
        self.sampler.stride, self.sampler.kept = int(state["sampler"][0]), [int(i) for i in state["sampler"][1]]
        self.metric_samples = {int(i): t.numpy() for i, t in state["metric_samples"].items()}
        self.relative_samples = {int(i): t.numpy() for i, t in state["relative_samples"].items()}
        self.fits = [None if f is None else depth_fit.AffineFit(*f) for f in state["fits"]]
        self.fit_error = str(state["fit_error"])
        self.c.metric_frames = int(state["metric_frames"])


#: With detected cuts a shot's length is unknown while it streams (only the rest of the video is an upper
#: bound), so its global-fit sampler starts at most this sparse and thins out as frames come
#: (:class:`_EvenSampler`): a short shot still gets about ``global_frames`` DA-V2 frames.
_AUTO_CUTS_MAX_STRIDE = 8


class _EvenSampler:
    """Choose about ``target`` frames evenly spaced over a stream of unknown exact length.

    Starts with a stride from the expected length; whenever more than ``2 * target`` frames are held
    (the estimate was too small), every other one is dropped and the stride doubles, so the kept
    frames stay evenly spaced and their number bounded.
    """

    def __init__(self, expected: int | None, target: int, max_stride: int | None = None) -> None:
        self.target = max(2, int(target))
        self.stride = max(1, math.ceil(expected / self.target)) if expected else 1
        if max_stride is not None:  # the expected length is only an upper bound (a cut may come first)
            self.stride = min(self.stride, max(1, int(max_stride)))
        self.kept: list[int] = []

    def take(self, index: int) -> bool:
        if index % self.stride:
            return False
        self.kept.append(index)
        return True

    def drop_surplus(self) -> list[int]:
        dropped: list[int] = []
        while len(self.kept) > 2 * self.target:
            self.stride *= 2
            dropped.extend(i for i in self.kept if i % self.stride)
            self.kept = [i for i in self.kept if i % self.stride == 0]
        return dropped


def _temp_store_path(output: Path) -> Path:
    """The global fit's float16 store, hidden next to the output; registered so that a script that ends
    without success removes it whatever the reason (see :func:`mvda.io.video.register_temporary`)."""
    return register_temporary(output.with_name(f".{output.stem}.vda-{os.getpid()}.f16"))


#: The cut list's room in the depth file's header, in cuts per second of video: shots last 2-5 s in films
#: and series; a longer list makes :func:`_write_cut_list` remux the file once.
_RESERVED_CUTS_PER_SECOND = 1.0
#: The most bytes reserved for the cut list.
_RESERVED_CUTS_MAX_BYTES = 512 * 1024


def cut_list_room(frames: int | None, fps: float) -> int:
    """Bytes reserved in the depth file's header for the :data:`~depth_codec.TAG_SCENE_CUTS` list of a
    video of ``frames`` output frames at ``fps``: one cut a second, each as many digits as the frame
    count and a comma (16 KiB when the length is unknown).

    >>> cut_list_room(2 * 3600 * 24, 24)  # two hours at 24 fps: 7200 cuts of 6 digits and a comma
    50400
    >>> cut_list_room(90, 30)
    64
    """
    if not frames:
        return 16 * 1024
    cuts = math.ceil(frames / fps * _RESERVED_CUTS_PER_SECOND)
    return int(min(_RESERVED_CUTS_MAX_BYTES, max(64, cuts * (len(str(frames)) + 1))))


def _write_cut_list(path: Path, source: _FrameSource) -> None:
    """The depth writer's finish hook (the complete file, before it is moved into place): the cut list
    into its reserved tag (the tag removed when there is no cut); a list longer than the room: the file
    is remuxed once with it (packets copied, see :func:`mvda.io.remux.join_videos`)."""
    text = format_cuts(source.cuts)
    if fill_reserved_tag(path, TAG_SCENE_CUTS, text):
        return
    log.info("%s: %d cuts do not fit the room reserved for them; remuxing the depth file with the list",
             source.reader.path.name, len(source.cuts))
    remuxed = register_temporary(path.with_name(path.stem + ".cuts" + path.suffix))
    try:
        join_videos([path], remuxed, source.fps, metadata={TAG_SCENE_CUTS: text}, vfr=source.vfr)
        os.replace(remuxed, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            remuxed.unlink()
        forget_temporary(remuxed)


def _resume_settings(options: ConvertOptions, models: Models) -> dict[str, Any]:
    """What must not change between a run and its resumption: the options that shape the output, the
    device type, the cut list's content and an identity of the networks' weights."""
    ignored = ("progress", "device", "resume", "report")
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in ignored}
    settings["device"] = options.device.type
    if options.scene_cuts not in ("auto", "off"):
        settings["scene_cuts"] = "file:" + hashlib.sha256(Path(options.scene_cuts).read_bytes()).hexdigest()
    for name in ("vda", "dav2"):
        model = getattr(models, name)
        params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
        settings[f"{name}_weights"] = None if model is None else [
            type(model).__name__, sum(p.numel() for p in params),
            float(sum(p.detach().double().sum().item() for p in params[:4]))]
    return settings


def _convert_resumable(input_path: Path, output: Path, models: Models, options: ConvertOptions,
                       source: _FrameSource, converter: _Converter, metadata: dict[str, str],
                       out_size: tuple[int, int]) -> tuple[int, tuple[float, float]]:
    """``--resume``: convert into (or continue) the parts folder, join the parts into ``output``, remove
    the folder. Returns the frames and the depth range."""
    folder = resume_parts.PartsFolder.open(output, _resume_settings(options, models),
                                           resume_parts.source_identity(input_path), resume=True)
    out_h, out_w = out_size

    def open_writer(path: Path) -> DepthVideoWriter:
        return DepthVideoWriter(path, out_w, out_h, source.fps, max_depth=options.max_depth, metadata=metadata,
                                vfr=source.vfr, label=f"{output.name} ({path.name})")

    run = converter.run_global_parts if options.model != "vda-metric" and options.fit == "global" else converter.run_parts
    frames = run(source, folder, open_writer, out_size, input_path.name)
    if frames == 0:
        folder.remove()
        raise UserError(f"{input_path}: no frames decoded (empty video, or --max_len / --target_fps leave none)")
    tags = {TAG_SCENE_CUTS: format_cuts(source.cuts)} if source.cuts else {}
    folder.join(output, source.fps, tags, source.vfr)
    folder.remove()
    return frames, (min(p.depth_min for p in folder.parts), max(p.depth_max for p in folder.parts))


def format_cuts(cuts: Sequence[int]) -> str:
    """The :data:`~depth_codec.TAG_SCENE_CUTS` tag's text: frame numbers, comma-separated.

    >>> format_cuts([48, 120])
    '48,120'
    """
    return ",".join(str(int(c)) for c in cuts)


@dataclass(frozen=True)
class VideoPlan:
    """What splitting a video at its cuts needs (:func:`plan_video`): ``cuts``, the output frames that
    start a shot (the ``scene_cuts`` tag of the serial run); ``frames``, the output frames; the output's
    ``fps`` and ``vfr``; ``fov``, the whole video's field of view ``(xfov, yfov)`` in degrees (or None);
    ``anchors``: ``(cut, source frame, its time)`` for each cut, where a piece starting there seeks to."""

    cuts: tuple[int, ...]
    frames: int
    fps: Fraction
    vfr: bool
    fov: tuple[float, float] | None
    anchors: tuple[tuple[int, int, float], ...] = ()


@dataclass(frozen=True)
class VideoPiece:
    """Output frames ``[start, end)`` of a video split at its cuts (``start`` is 0 or a cut, ``end`` a
    cut or the last frame + 1), converted into the depth file ``part`` (joined with the other pieces
    afterwards, :mod:`mvda.apps.ray_batch`). ``cuts`` and ``fov``: the whole video's (:class:`VideoPlan`);
    ``anchor``: the source frame of ``start`` and its time, to seek there (None: decode from the start)."""

    start: int
    end: int
    cuts: tuple[int, ...]
    fov: tuple[float, float] | None
    part: Path
    anchor: tuple[int, float] | None = None


def _prescans(options: ConvertOptions) -> bool:
    """Whether the conversion finds the cuts before the frame loop: ``--fit global`` with detected cuts
    spreads each shot's DA-V2 frames as when that shot is converted alone, which needs its length when
    it starts."""
    return options.fit == "global" and options.model != "vda-metric" and options.scene_cuts == "auto"


def _find_fov(reader: VideoReader, source: _FrameSource, options: ConvertOptions, models: Models,
              size: tuple[int, int], timer: StageTimer,
              scanned: tuple[list[int], int] | None = None) -> tuple[float, float] | None:
    """The field of view of the output (``size`` = (H, W)): given, or MoGe-2's estimate on the keyframes
    of :func:`fov_keyframes` (stage ``fov``); ``scanned``: :func:`prescan_cuts`' result if known."""
    with timer.stage("fov") if models.moge is not None else contextlib.nullcontext():
        estimate = options.fov == "auto" and options.xfov is None and options.yfov is None
        keyframes = fov_keyframes(source, options, scanned) if estimate and models.moge is not None else None
        return video_fov(reader, size, source.expected, float(source.fps), options.fov, options.xfov,
                         options.yfov, models.moge, options.device, indices=keyframes)


def plan_video(input_path: str | os.PathLike, models: Models, options: ConvertOptions) -> VideoPlan:
    """The cuts, the output frame count and the field of view of ``input_path`` exactly as
    :func:`convert_video` finds them, to split it into pieces: one decode-only pass
    (:func:`prescan_cuts`, which gives the cuts ``--scene_cuts auto`` finds while converting, and places
    a ``--scene_cuts FILE`` list on the frames the conversion does), then the field of view from the
    whole video's keyframes. Needs scene cuts (not ``--scene_cuts off``)."""
    options.validate()
    if options.scene_cuts == "off":
        raise ValueError("plan_video splits at scene cuts; not with scene_cuts='off'")
    input_path = Path(input_path)
    timer = StageTimer(enabled=False)
    with VideoReader(input_path) as reader:
        source = _FrameSource(reader, options, timer)
        anchors: dict[int, tuple[int, float]] = {}
        cuts, frames = prescan_cuts(input_path, options, anchors)
        if _prescans(options):
            source.known_starts = cuts
        size = options.output_size or (reader.height, reader.width)
        fov = _find_fov(reader, source, options, models, size, timer,
                        scanned=(cuts, frames) if options.scene_cuts == "auto" else None)
    return VideoPlan(cuts=tuple(cuts), frames=frames, fps=source.fps, vfr=source.vfr, fov=fov,
                     anchors=tuple((cut, *anchors[cut]) for cut in cuts if cut in anchors))


def convert_video(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    models: Models,
    options: ConvertOptions,
    timer: StageTimer | None = None,
    piece: VideoPiece | None = None,
) -> VideoResult:
    """Convert one video to ``output_dir/{stem}_depth.mkv`` and return its :class:`VideoResult`.

    ``piece``: convert only that piece of the video, into ``piece.part`` (not ``--resume``, not
    ``--scene_cuts off``); its shots are converted exactly as in the whole video's conversion, and the
    result counts the piece's frames.

    Raises:
        UserError (including :class:`mvda.io.video.VideoDecodeError`): unreadable input, zero frames, a
            decode error mid-stream, an unwritable output; the output file is then not created.
    """
    options.validate()
    if piece is not None and (options.resume or options.scene_cuts == "off"):
        raise ValueError("a piece of a video is cut at scene cuts, and not with resume")
    timer = timer or StageTimer(options.device, enabled=False)
    input_path = Path(input_path)
    output = output_path_for(input_path, Path(output_dir))
    start = time.perf_counter()
    with VideoReader(input_path) as reader:
        source = (_FrameSource(reader, options, timer) if piece is None else
                  _FrameSource(reader, options, timer, frames=(piece.start, piece.end), cuts=piece.cuts,
                               anchor=piece.anchor))
        out_h, out_w = options.output_size or (reader.height, reader.width)
        converter = _Converter(models, options, timer)
        metadata = {
            "mvda_model": options.model,
            "mvda_fit": "none" if options.model == "vda-metric" else options.fit,
            "mvda_metric_every": str(options.metric_every),
            "mvda_source": input_path.name,
        }
        if _prescans(options):
            # Each shot's DA-V2 frames are spread as when that shot is converted alone, which needs its
            # length when it starts: find the cuts first (a decode-only pass, about 3 ms a frame).
            with timer.stage("cuts"):
                source.known_starts = list(piece.cuts) if piece is not None else prescan_cuts(input_path, options)[0]
            # The main pass takes these cuts instead of detecting them again (the same detector saw the
            # same frames).
            source.fixed_cuts = frozenset(source.known_starts)
        # The field of view travels with the file (given, or MoGe-2's estimate: stage "fov"; a piece has
        # the whole video's).
        fov = piece.fov if piece is not None else _find_fov(reader, source, options, models, (out_h, out_w), timer)
        metadata.update(fov_tags(fov))
        if options.model == "vda+moge2":
            from mvda.apps.metric_anchor import MoGeMetricDepth

            if models.moge is None:
                raise ValueError("--model vda+moge2 needs Models.moge (load_models(..., fov_encoder=...))")
            converter.metric = MoGeMetricDepth(models.moge, None if fov is None else fov[0])
        if options.resume:
            frames, stats = _convert_resumable(input_path, output, models, options, source, converter, metadata,
                                               (out_h, out_w))
            seconds = time.perf_counter() - start
            return _with_report(options, converter, VideoResult(
                input=input_path, output=output, frames=frames, seconds=seconds, width=out_w, height=out_h,
                fps=source.fps, depth_min=stats[0], depth_max=stats[1], clamps=converter.clamps,
                metric_frames=converter.metric_frames, fit="none" if options.model == "vda-metric" else options.fit,
                timings=dict(timer.seconds), cuts=list(source.cuts),
            ))
        temp_store: Path | None = None
        finish = None
        if options.scene_cuts != "off" and piece is None:
            # The container's tags are written before the first frame, the cuts are known after the last:
            # the cut list's room is reserved in the header and filled when the file is complete. A piece
            # is written as it is, to be joined with the others (:mod:`mvda.apps.ray_split`).
            metadata[TAG_SCENE_CUTS] = reserve_tag(cut_list_room(source.expected, float(source.fps)))
            finish = functools.partial(_write_cut_list, source=source)
        try:
            with DepthVideoWriter(output if piece is None else piece.part, out_w, out_h, source.fps,
                                  max_depth=options.max_depth, metadata=metadata, vfr=source.vfr,
                                  label=output.name, finish=finish) as writer:
                if options.model != "vda-metric" and options.fit == "global":
                    temp_store = _temp_store_path(output)
                    frames = converter.run_global(source, writer, (out_h, out_w), input_path.name, temp_store)
                else:
                    frames = converter.run_streaming(source, writer, (out_h, out_w), input_path.name)
                if frames == 0:
                    raise UserError(f"{input_path}: no frames decoded (empty video, or --max_len / --target_fps leave none)")
                if piece is not None and frames != piece.end - piece.start:
                    raise UserError(f"{input_path}: frames {piece.start}-{piece.end - 1} were to be converted, but "
                                    f"{frames} came; did the file change while it was converted?")
                stats = writer.stats
        finally:
            if temp_store is not None:
                with contextlib.suppress(FileNotFoundError):
                    temp_store.unlink()
                forget_temporary(temp_store)
    seconds = time.perf_counter() - start
    return _with_report(options, converter, VideoResult(
        input=input_path, output=output, frames=frames, seconds=seconds, width=out_w, height=out_h,
        fps=source.fps, depth_min=stats.min_depth, depth_max=stats.max_depth, clamps=converter.clamps,
        metric_frames=converter.metric_frames, fit="none" if options.model == "vda-metric" else options.fit,
        timings=dict(timer.seconds), cuts=list(source.cuts),
    ))


def _with_report(options: ConvertOptions, converter: _Converter, result: VideoResult) -> VideoResult:
    """``--report``: draw :func:`mvda.apps.report.write_report` beside the output; returns ``result``."""
    if options.report:
        from mvda.apps.report import write_report

        write_report(result.output, result.frames, converter.trace, result.cuts, options.max_depth,
                     f"{result.input.name}: {result.frames} frames, fit {result.fit}")
    return result


def convert_batch(
    inputs: Sequence[Path],
    output_dir: str | os.PathLike,
    models: Models | Callable[[], Models],
    options: ConvertOptions,
    skip_existing: bool = False,
    report: Callable[[str], None] | None = None,
    timer: StageTimer | None = None,
) -> list[VideoResult]:
    """Convert several videos; one failing video does not stop the others.

    Args:
        inputs: video files (see :func:`collect_inputs`).
        output_dir: output folder (created; must be writable).
        models: the networks, or a function loading them (called once, only if a video needs them).
        options: conversion options.
        skip_existing: leave videos whose output exists alone.
        report: called with each video's summary line (default: ``log.info``).
        timer: accumulates per-stage times over the batch.

    Returns:
        One :class:`VideoResult` per input, in order.

    Raises:
        UserError / CheckpointError: problems that concern the whole batch (output folder, models)
            and, when there is a single input, its own error.
    """
    options.validate()
    out_dir = ensure_writable_dir(output_dir)
    report = report or log.info
    loaded: Models | None = models if isinstance(models, Models) else None
    results: list[VideoResult] = []
    many = len(inputs) > 1
    outer = progress_bar(total=len(inputs), desc="videos", unit="video", disable=not (many and options.progress),
                         position=0)
    # Open every input first (cheap), so that a missing or unreadable file is reported before the
    # networks are loaded (which can take long, or fail for want of a checkpoint).
    problems: dict[int, str] = {}
    for k, path in enumerate(inputs):
        if skip_existing and output_path_for(path, out_dir).exists():
            continue
        try:
            probe_video(path)
        except UserError as exc:
            if not many:
                raise
            problems[k] = " ".join(str(exc).split())
    with outer:
        for k, path in enumerate(inputs):
            output = output_path_for(path, out_dir)
            if skip_existing and output.exists():
                result = VideoResult(input=Path(path), output=output, status="skipped")
            elif k in problems:
                result = VideoResult(input=Path(path), output=output, status="failed", error=problems[k])
            else:
                if loaded is None:
                    loaded = models()  # type: ignore[operator]
                try:
                    result = convert_video(path, out_dir, loaded, options, timer=timer)
                except UserError as exc:
                    if not many:
                        raise
                    result = VideoResult(input=Path(path), output=output, status="failed",
                                         error=" ".join(str(exc).split()))
            results.append(result)
            report(result.summary_line())
            outer.update(1)
    return results


# ---------------------------------------------------------------------------------------------------
# the command line (video_metric_convert.py)


def options_from_args(args: Any) -> ConvertOptions:
    """Resolve device and precision of parsed ``video_metric_convert.py`` arguments and build the
    :class:`ConvertOptions` (raises UserError); warns about flags that do not apply."""
    from mvda.device import default_precision, precision_warning, resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.fp32:
        if args.precision not in (None, "fp32"):
            log.warning("--fp32 overrides --precision %s", args.precision)
        precision = "fp32"
    else:
        precision = args.precision or default_precision(device)
    # The official Depth-Anything-V2 runs in float32 and Video-Depth-Anything under fp16 autocast on CUDA:
    # without --precision each network keeps its official precision; --precision sets both.
    metric_precision = precision if (args.fp32 or args.precision) else "fp32"
    slow = precision_warning(device, precision)
    if slow:
        log.warning(slow)
    if args.model == "vda-metric" and args.fit != "rolling":
        log.warning("--fit is ignored with --model vda-metric (its output is already metric)")
    if args.metric_every != 1 and (args.model == "vda-metric" or args.fit == "global"):
        log.warning("--metric_every only applies to --model vda+dav2 --fit rolling; ignored")
    if args.model == "vda+moge2" and (args.metric_checkpoint or args.metric_encoder != "vitl"
                                      or args.metric_model != "hypersim"):
        log.warning("--metric_encoder/--metric_model/--metric_checkpoint choose Depth-Anything-V2; --model vda+moge2 "
                    "uses the MoGe-2 of --fov_encoder/--fov_checkpoint")
    if args.model == "vda+dav2" and args.metric_model == "vkitti" and args.max_depth < 20:
        log.warning("--metric_model vkitti predicts up to 80 m but --max_depth is %g m: farther depth is clipped",
                    args.max_depth)
    if args.scene_cuts not in ("auto", "off"):
        read_cut_file(args.scene_cuts)  # a bad list is reported before the networks load
    options = ConvertOptions(
        model=args.model, fit=args.fit, input_size=args.input_size, max_res=args.max_res,
        max_len=-1 if args.max_frames is None else args.max_frames,
        target_fps=args.target_fps, max_depth=args.max_depth, metric_every=args.metric_every,
        device=device, precision=precision, metric_precision=metric_precision,
        dav2_batch=4 if device.type == "cuda" else 1,
        progress=not args.no_progress, xfov=args.xfov, yfov=args.yfov, fov=args.fov,
        scene_cuts=args.scene_cuts, scene_threshold=args.scene_threshold,
        resume=args.resume, part_seconds=args.part_seconds, report=args.report,
    )
    options.validate()
    return options


def fov_model_args(args: Any, options: ConvertOptions) -> dict[str, Any]:
    """:func:`load_models`' ``fov_encoder`` / ``fov_checkpoint`` for parsed arguments: MoGe-2 is loaded for
    ``--fov auto`` unless a field of view is given, and always for ``vda+moge2`` (its metric anchor)."""
    estimate = options.fov == "auto" and options.xfov is None and options.yfov is None
    fov_encoder = getattr(args, "fov_encoder", "vits") if estimate or options.model == "vda+moge2" else None
    return {"fov_encoder": fov_encoder, "fov_checkpoint": getattr(args, "fov_checkpoint", None)}


def run(args: Any) -> int:
    """The whole of ``video_metric_convert.py`` after parsing: convert every input, print one summary
    line per video (and a batch line for several), return 1 if any failed, else 0."""
    options = options_from_args(args)
    inputs = collect_inputs(args.input_video)

    def models() -> Models:
        return load_models(args.model, args.encoder, args.metric_encoder, args.metric_model, options.device,
                           vda_checkpoint=args.vda_checkpoint, metric_checkpoint=args.metric_checkpoint,
                           **fov_model_args(args, options))

    def report(line: str) -> None:
        print(line, flush=True)

    if getattr(args, "ray", None):  # many videos on a Ray cluster (Ray is imported only then)
        from mvda.apps.ray_batch import convert_on_ray

        results = convert_on_ray(inputs, args, options, report)
    else:
        unused = [f"--{name}" for name in ("ray_cpus", "ray_cpus_per_worker", "ray_workers", "ray_split_seconds")
                  if getattr(args, name, None) is not None]
        if unused:
            log.warning("%s only apply with --ray; converting here, one video after another", ", ".join(unused))
        results = convert_batch(inputs, Path(args.output_dir), models, options, skip_existing=args.skip_existing,
                                report=report)
    failed = [r for r in results if r.status == "failed"]
    if len(results) > 1:
        done = sum(r.status == "ok" for r in results)
        skipped = sum(r.status == "skipped" for r in results)
        line = f"{done} converted, {skipped} skipped, {len(failed)} failed"
        if failed:
            line += ": " + ", ".join(str(r.input) for r in failed)
        print(line, flush=True)
    return 1 if failed else 0

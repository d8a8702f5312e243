"""Windowed video inference of Video-Depth-Anything, as a stream with bounded memory.

The official algorithm runs the network on 32-frame windows that start every 22 frames. Each
window after the first replaces its first 10 input frames by 10 *keyframes* of the previous
window's input (positions ``KEYFRAMES``), so the network sees long-range context. The raw window
outputs are resized to the output resolution and stitched:

* relative models: each window is aligned to the running result with a least-squares scale and
  shift, fitted on its first two frames against two reference frames (frame 0 of the video and
  the aligned frame at keyframe 12 of the previous window); metric models use scale 1, shift 0;
* the 8 frames where consecutive windows overlap are cross-faded linearly;
* negative values after scale/shift are set to 0;
* the video is padded with copies of its last frame so the last window is full.

:class:`VideoDepthStream` implements that algorithm incrementally: frames are pushed one at a
time (or in chunks) and depth frames are returned as soon as no later window can change them.
It keeps at most one window of state (the not yet processed input frames, the 10 keyframe inputs
of the previous window, the 8 frames still open to the cross-fade and the 2 reference frames),
whatever the video length. :func:`infer_video_depth` is a thin wrapper running the stream over a
whole video, so both give bit-identical results.

The model only needs ``model(x)`` mapping a float32 ``(1, T, 3, h, w)`` normalised clip to
``(1, T, h, w)`` depth, and a boolean attribute ``model.metric``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from depth_anything_v2.precision import autocast_context, default_precision, precision_dtype
from depth_anything_v2.transform import network_input_size, prepare_images

__all__ = [
    "INFER_LEN",
    "OVERLAP",
    "KEYFRAMES",
    "INTERP_LEN",
    "FRAME_STEP",
    "video_input_size",
    "padded_length",
    "window_starts",
    "crossfade_weights",
    "fit_scale_shift",
    "resolve_precision",
    "VideoDepthStream",
    "stream_video_depth",
    "infer_video_depth",
]

#: Frames per network window.
INFER_LEN: int = 32
#: Input positions of a window (after the first) that are taken from the previous window.
OVERLAP: int = 10
#: Positions of the previous window's input copied into positions ``0..OVERLAP-1``.
KEYFRAMES: tuple[int, ...] = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
#: Frames cross-faded between consecutive windows.
INTERP_LEN: int = 8
#: Distance between window starts (22).
FRAME_STEP: int = INFER_LEN - OVERLAP
#: Frames used for the scale/shift fit between windows (2).
ALIGN_LEN: int = OVERLAP - INTERP_LEN
#: Keyframe positions whose aligned depth serves as reference for the next window's fit (0, 12).
KF_ALIGN: tuple[int, ...] = KEYFRAMES[:ALIGN_LEN]
#: Window positions that are final once a window has been stitched (all later positions can
#: still be cross-faded by the next window).
FINAL_PER_WINDOW: int = INFER_LEN - INTERP_LEN  # 24 for the first window, 22 new ones later

#: Autocast precision that ``fp32=False`` selects, as ``torch.autocast``'s default per device type.
_AUTOCAST_DEFAULT = {"cuda": "fp16", "mps": "fp16", "xpu": "bf16", "cpu": "bf16"}


def video_input_size(height: int, width: int, input_size: int = 518) -> int:
    """Shorter-side network size for a video frame, with the official wide-aspect reduction.

    For frames wider (or taller) than 1.78:1 the size is reduced to ``int(input_size * 1.777 /
    ratio)`` and rounded to a multiple of 14, so very wide videos do not blow up the token count.

    Args:
        height: frame height in pixels.
        width: frame width in pixels.
        input_size: requested shorter-side size (518 for the released models).

    Returns:
        The ``input_size`` to pass to :func:`network_input_size`.

    Example:
        >>> video_input_size(48, 64, 56), video_input_size(100, 400, 518)
        (56, 224)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    ratio = max(height, width) / min(height, width)
    if ratio > 1.78:
        input_size = int(input_size * 1.777 / ratio)
        input_size = round(input_size / 14) * 14
    return input_size


def padded_length(num_frames: int) -> int:
    """Length of the video after the official padding with copies of its last frame.

    ``num_frames + (22 - num_frames % 22) % 22 + 10``: the last window, which starts at the last
    multiple of 22 below ``num_frames``, ends exactly there.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return num_frames + (FRAME_STEP - num_frames % FRAME_STEP) % FRAME_STEP + (INFER_LEN - FRAME_STEP)


def window_starts(num_frames: int) -> list[int]:
    """Start frames of the windows run for a video of ``num_frames`` frames: ``0, 22, ... < N``."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return list(range(0, num_frames, FRAME_STEP))


def crossfade_weights(length: int = INTERP_LEN) -> list[float]:
    """Weights of the newer window in the cross-fade: ``[0, 1/(L-1), ..., (L-2)/(L-1), 1]``.

    The inner weights are ``i * (1 / (L - 1))`` (Python floats, as the official code); the first is
    exactly 0 and the last exactly 1.
    """
    if length < 2:
        raise ValueError(f"cross-fade length must be at least 2, got {length}")
    step = 1.0 / (length - 1)
    return [0.0] + [i * step for i in range(1, length - 1)] + [1.0]


def fit_scale_shift(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``scale, shift`` minimising ``sum((scale * prediction + shift - target)^2)``.

    Solves the 2x2 normal equations in float32 over all elements, with numpy's summation, exactly
    as the official fit with an all-ones mask (so the result is bit-identical to it). A singular
    system (e.g. a constant prediction) gives ``scale = 1, shift = 0``.

    Args:
        prediction: depth of any shape; converted to float32.
        target: reference depth of the same shape; converted to float32.

    Returns:
        ``(scale, shift)`` as Python floats (exactly representable in float32).

    Example:
        >>> p = np.array([1.0, 2.0, 3.0], np.float32)
        >>> fit_scale_shift(p, 2 * p + 1)
        (2.0, 1.0)
    """
    p = np.ascontiguousarray(prediction, dtype=np.float32)
    t = np.ascontiguousarray(target, dtype=np.float32)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    a00 = np.sum(p * p)
    a01 = np.sum(p)
    a11 = np.float32(p.size)
    b0 = np.sum(p * t)
    b1 = np.sum(t)
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1.0, 0.0
    return float((a11 * b0 - a01 * b1) / det), float((-a01 * b0 + a00 * b1) / det)


def resolve_precision(device: torch.device, fp32: bool | None = None, precision: str | None = None) -> str:
    """Compute precision from the official ``fp32`` flag or a precision name.

    Args:
        device: the device the network runs on.
        fp32: official flag: ``True`` runs in float32, ``False`` under autocast with the device's
            default autocast dtype (fp16 on CUDA and MPS, bf16 on the CPU). ``None``: not given.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``; ``None``: not given.

    Returns:
        The precision name; with neither argument, :func:`default_precision` of the device
        (fp16 on CUDA, fp32 elsewhere).

    Raises:
        ValueError: unknown precision, or ``fp32`` and ``precision`` contradict each other.
    """
    if precision is not None:
        name = str(precision).strip().lower()
        precision_dtype(name)  # validates the name
        if fp32 is not None and fp32 != (name == "fp32"):
            raise ValueError(f"fp32={fp32} contradicts precision={precision!r}: give only one of them")
        return name
    if fp32 is None:
        return default_precision(device)
    if fp32:
        return "fp32"
    return _AUTOCAST_DEFAULT.get(device.type, "fp16")


def _model_device(model: Any) -> torch.device | None:
    params = getattr(model, "parameters", None)
    if params is None:
        return None
    for p in params():
        return p.device
    return None


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    """Own float32 numpy copy of a tensor."""
    return tensor.detach().to("cpu", copy=True).numpy()


def _as_frames(frames: Any) -> tuple[torch.Tensor | np.ndarray, bool]:
    """``(array, is_single)`` for a ``(H, W, 3)`` frame or a ``(K, H, W, 3)`` chunk."""
    if not isinstance(frames, (torch.Tensor, np.ndarray)):
        frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        return frames, True
    if frames.ndim == 4 and frames.shape[-1] == 3:
        return frames, False
    raise ValueError(
        f"frames must be an RGB frame (H, W, 3) or a chunk of frames (K, H, W, 3), got shape {tuple(frames.shape)}"
    )


class VideoDepthStream:
    """Incremental Video-Depth-Anything inference: push frames, receive final depth frames.

    Results are identical to :func:`infer_video_depth` on the whole video. State is bounded by one
    window: at most 32 transformed input frames waiting for the next window, the 10 keyframe
    inputs of the previous window, 8 depth frames still open to the cross-fade and 2 reference
    depth frames (see :meth:`retained_frames`).

    Args:
        model: callable ``(1, T, 3, h, w) -> (1, T, h, w)`` with a boolean ``metric`` attribute,
            e.g. :class:`video_depth_anything.video_depth.VideoDepthAnything`. It must already be on
            ``device``.
        input_size: network shorter side before the wide-aspect reduction (518 for the released
            models).
        device: where preprocessing, the network, resizing and stitching run; ``None`` uses the
            model's device (CPU for a model without parameters); ``"auto"`` picks CUDA, MPS, CPU.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``; ``None``: fp16 on CUDA, fp32 elsewhere.
        fp32: the official flag, an alternative to ``precision`` (see :func:`resolve_precision`).
        output_size: ``(H2, W2)`` of the returned depth; default: the size of the first frame.
            The window outputs are resized to it directly (bilinear, ``align_corners=True``).
        output: ``"numpy"`` returns float32 ``np.ndarray`` frames; ``"torch"`` returns float32
            tensors on ``device`` (no host copy).
        metric: stitch with scale 1 and shift 0; ``None`` reads ``model.metric``.

    Example:
        >>> stream = VideoDepthStream(model, input_size=518, device="cpu")  # doctest: +SKIP
        >>> for frame in frames:                                              # doctest: +SKIP
        ...     for depth in stream.push(frame):
        ...         write(depth)
        >>> for depth in stream.flush():                                      # doctest: +SKIP
        ...     write(depth)
    """

    def __init__(
        self,
        model: Any,
        input_size: int = 518,
        device: str | torch.device | None = None,
        precision: str | None = None,
        output_size: Sequence[int] | None = None,
        *,
        fp32: bool | None = None,
        output: Literal["numpy", "torch"] = "numpy",
        metric: bool | None = None,
    ) -> None:
        model_device = _model_device(model)
        if device is None:
            dev = model_device if model_device is not None else torch.device("cpu")
        else:
            dev = torch.device(device)
        if model_device is not None and (
            model_device.type != dev.type
            or (dev.index is not None and model_device.index is not None and dev.index != model_device.index)
        ):
            raise ValueError(
                f"the model is on {model_device} but inference was asked to run on {dev}: "
                f"move it first with model.to({str(dev)!r})"
            )
        if int(input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        if output not in ("numpy", "torch"):
            raise ValueError(f"output must be 'numpy' or 'torch', got {output!r}")
        if metric is None:
            if not hasattr(model, "metric"):
                raise ValueError("the model has no 'metric' attribute: pass metric=True or metric=False")
            metric = bool(model.metric)
        if output_size is not None:
            if len(output_size) != 2 or int(output_size[0]) <= 0 or int(output_size[1]) <= 0:
                raise ValueError(f"output_size must be (height, width) with positive sides, got {output_size!r}")
            output_size = (int(output_size[0]), int(output_size[1]))

        self.model = model
        self.device: torch.device = dev
        self.precision: str = resolve_precision(dev, fp32=fp32, precision=precision)
        self.metric: bool = bool(metric)
        self.input_size: int = int(input_size)
        self.output: str = output
        self.output_size: tuple[int, int] | None = output_size
        #: ``(H, W)`` of the input frames, set by the first frame.
        self.frame_size: tuple[int, int] | None = None
        #: ``(h, w)`` of the network input, set by the first frame.
        self.network_size: tuple[int, int] | None = None

        self._pushed = 0
        self._emitted = 0
        self._windows = 0
        self._flushed = False
        self._fresh: list[torch.Tensor] = []  # transformed frames (3, h, w) waiting for the next window
        self._prev_keyframes: torch.Tensor | None = None  # (OVERLAP, 3, h, w) previous input at KEYFRAMES
        self._tail: torch.Tensor | None = None  # (INTERP_LEN, H2, W2) aligned depth, not final yet
        self._ref: np.ndarray | None = None  # (ALIGN_LEN, H2, W2) host reference depth for the fit (relative)
        self._weights_new: torch.Tensor | None = None
        self._weights_old: torch.Tensor | None = None

    # ------------------------------------------------------------------ counters and state size
    @property
    def frames_pushed(self) -> int:
        """Number of video frames pushed so far."""
        return self._pushed

    @property
    def frames_emitted(self) -> int:
        """Number of depth frames returned so far."""
        return self._emitted

    @property
    def windows_run(self) -> int:
        """Number of network windows run so far."""
        return self._windows

    def retained_frames(self) -> int:
        """Frames held in the state: waiting input frames + previous keyframe inputs + open and
        reference depth frames. At most ``32 + 10 + 8 + 2`` whatever the video length."""
        count = len(self._fresh)
        for t in (self._prev_keyframes, self._tail, self._ref):
            if t is not None:
                count += int(t.shape[0])
        return count

    def retained_bytes(self) -> int:
        """Bytes of tensor and array storage held by the state (see :meth:`retained_frames`)."""
        storages: dict[tuple[int, str], int] = {}
        for t in [*self._fresh, self._prev_keyframes, self._tail]:
            if t is not None:
                storage = t.untyped_storage()
                storages[(storage.data_ptr(), str(t.device))] = storage.nbytes()
        total = sum(storages.values())
        if self._ref is not None:
            total += self._ref.nbytes
        return int(total)

    # ------------------------------------------------------------------ saving and restoring
    def state(self) -> dict[str, Any]:
        """Everything needed to continue this stream elsewhere (e.g. in another process after
        ``torch.save``): counters, sizes, the waiting input frames, the previous keyframe inputs, the
        open cross-fade frames and the alignment references; tensors are copied to the CPU.
        :meth:`load_state` on a new stream with the same model and settings continues bit-identically."""
        cpu = (lambda t: None if t is None else t.detach().to("cpu", copy=True))
        return {
            "pushed": self._pushed, "emitted": self._emitted, "windows": self._windows, "flushed": self._flushed,
            "frame_size": self.frame_size, "network_size": self.network_size, "output_size": self.output_size,
            "fresh": [cpu(t) for t in self._fresh], "prev_keyframes": cpu(self._prev_keyframes),
            "tail": cpu(self._tail), "ref": None if self._ref is None else torch.from_numpy(self._ref.copy()),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` of a stream with the same model and settings."""
        dev = (lambda t: None if t is None else t.to(self.device))
        if state["frame_size"] is not None:
            self.output_size = tuple(state["output_size"])
            self._start(*state["frame_size"])
            self.network_size = tuple(state["network_size"])
        self._pushed, self._emitted = int(state["pushed"]), int(state["emitted"])
        self._windows, self._flushed = int(state["windows"]), bool(state["flushed"])
        self._fresh = [dev(t) for t in state["fresh"]]
        self._prev_keyframes, self._tail = dev(state["prev_keyframes"]), dev(state["tail"])
        self._ref = None if state["ref"] is None else state["ref"].numpy()

    # ------------------------------------------------------------------ public API
    def push(self, frames: np.ndarray | torch.Tensor) -> list[np.ndarray] | list[torch.Tensor]:
        """Add one frame ``(H, W, 3)`` or a chunk ``(K, H, W, 3)`` of RGB frames (uint8, or float
        in ``[0, 255]``).

        Returns:
            The depth frames that became final, in video order (possibly none): float32 arrays
            (or tensors, with ``output="torch"``) of ``output_size`` or the frame size.

        Raises:
            ValueError: bad shape, or a frame size different from the first frame's.
            RuntimeError: the stream was already flushed.
        """
        if self._flushed:
            raise RuntimeError("this stream was flushed; start a new VideoDepthStream for another video")
        chunk, single = _as_frames(frames)
        if single:
            chunk = chunk[None]
        self._check_size(int(chunk.shape[1]), int(chunk.shape[2]))
        return self._push(chunk, prepared=False)

    def push_prepared(self, prepared: torch.Tensor, frame_size: tuple[int, int]) -> list[np.ndarray] | list[torch.Tensor]:
        """:meth:`push` of frames already prepared by :func:`~depth_anything_v2.transform.prepare_images`
        at :meth:`network_size_for` ``(H, W)`` (e.g. shared with Depth-Anything-V2 when both take the
        same input): ``prepared`` is ``(K, 3, h, w)`` normalised network input of ``K`` frames of
        ``frame_size`` ``(H, W)``. Bit-identical to :meth:`push` of those frames.

        Raises:
            ValueError: ``prepared`` is not of the stream's network size, or ``frame_size`` differs
                from the first frame's.
            RuntimeError: the stream was already flushed.
        """
        if self._flushed:
            raise RuntimeError("this stream was flushed; start a new VideoDepthStream for another video")
        self._check_size(int(frame_size[0]), int(frame_size[1]))
        if prepared.dim() != 4 or tuple(prepared.shape[1:]) != (3, *self.network_size):
            raise ValueError(f"prepared frames must be (K, 3, {self.network_size[0]}, {self.network_size[1]}), "
                             f"got {tuple(prepared.shape)}")
        return self._push(prepared, prepared=True)

    def network_size_for(self, height: int, width: int) -> tuple[int, int]:
        """Network input ``(h, w)`` of frames of ``height`` x ``width`` pixels."""
        return network_input_size(height, width, video_input_size(height, width, self.input_size))

    def _check_size(self, height: int, width: int) -> None:
        if self.frame_size is None:
            self._start(height, width)
        elif (height, width) != self.frame_size:
            raise ValueError(
                f"frame {self._pushed} is {height}x{width} but the video started with "
                f"{self.frame_size[0]}x{self.frame_size[1]}: all frames must have the same size"
            )

    def _push(self, chunk: Any, prepared: bool) -> list[Any]:
        out: list[Any] = []
        start = 0
        total = int(chunk.shape[0])
        while start < total:
            take = min(total - start, self._window_need() - len(self._fresh))
            if prepared:
                x = chunk[start : start + take].to(self.device, non_blocking=True)
            else:
                x = prepare_images(chunk[start : start + take], self.network_size, device=self.device)
            self._fresh.extend(x.unbind(0))
            self._pushed += take
            start += take
            if len(self._fresh) == self._window_need():
                out.extend(self._run_window())
        return out

    def flush(self) -> list[np.ndarray] | list[torch.Tensor]:
        """End of the video: pad the last window(s) with copies of the last frame as the official
        code does, run them, and return all remaining depth frames (the total emitted equals the
        number of frames pushed). Calling it again returns an empty list."""
        if self._flushed or self._pushed == 0:
            self._flushed = True
            return []
        self._flushed = True
        allowed = self._pushed - self._emitted
        out: list[Any] = []
        while FRAME_STEP * self._windows < self._pushed:
            need = self._window_need()
            if len(self._fresh) < need:
                last = self._fresh[-1] if self._fresh else self._prev_keyframes[-1]
                self._fresh.extend([last] * (need - len(self._fresh)))
            out.extend(self._run_window())
        out.extend(self._emit(self._tail))
        self._tail = None
        self._ref = None
        self._prev_keyframes = None
        self._fresh = []
        self._emitted = self._pushed  # the padding frames beyond the video are dropped
        return out[:allowed]

    # ------------------------------------------------------------------ internals
    def _start(self, height: int, width: int) -> None:
        self.frame_size = (height, width)
        if self.output_size is None:
            self.output_size = (height, width)
        self.network_size = self.network_size_for(height, width)
        new = torch.tensor(crossfade_weights(INTERP_LEN), dtype=torch.float64)
        old = torch.tensor([1.0 - w for w in crossfade_weights(INTERP_LEN)], dtype=torch.float64)
        self._weights_new = new.to(torch.float32).view(-1, 1, 1).to(self.device)
        self._weights_old = old.to(torch.float32).view(-1, 1, 1).to(self.device)

    def _window_need(self) -> int:
        """Fresh input frames the next window needs: 32 for the first, 22 afterwards."""
        return INFER_LEN if self._windows == 0 else FRAME_STEP

    def _forward(self, clip: torch.Tensor) -> torch.Tensor:
        """Network on one window ``(T, 3, h, w)``; returns float32 depth ``(T, H2, W2)``."""
        x = clip.unsqueeze(0)
        with torch.no_grad():
            with autocast_context(self.device, self.precision):
                depth = self.model(x)
            expected = (1, clip.shape[0], clip.shape[2], clip.shape[3])
            if tuple(depth.shape) != expected:
                raise ValueError(f"the model returned shape {tuple(depth.shape)} for a window, expected {expected}")
            depth = depth.to(torch.float32)
            depth = F.interpolate(
                depth.flatten(0, 1).unsqueeze(1), size=self.output_size, mode="bilinear", align_corners=True
            )
        return depth[:, 0]

    def _run_window(self) -> list[Any]:
        fresh = torch.stack(self._fresh)
        self._fresh = []
        if self._prev_keyframes is None:
            clip = fresh
        else:
            clip = torch.cat([self._prev_keyframes, fresh], dim=0)
        if clip.shape[0] != INFER_LEN:
            raise AssertionError(f"window of {clip.shape[0]} frames")  # internal invariant
        depth = self._forward(clip)
        self._prev_keyframes = clip[list(KEYFRAMES)]  # advanced indexing copies
        del clip, fresh
        self._windows += 1
        return self._emit(self._stitch(depth))

    def _stitch(self, depth: torch.Tensor) -> torch.Tensor:
        """Align one window ``(32, H2, W2)`` to the result so far; returns the frames now final and
        keeps the open tail and the references."""
        if self._tail is None:
            if not self.metric:
                self._ref = _to_host(depth[list(KF_ALIGN)])
            self._tail = depth[FINAL_PER_WINDOW:].clone()
            return depth[:FINAL_PER_WINDOW]
        if self.metric:
            scale, shift = 1.0, 0.0
        else:
            current = _to_host(depth[:ALIGN_LEN])
            width = current.shape[-1]  # the official fit concatenates the frames along the height
            scale, shift = fit_scale_shift(current.reshape(-1, width), self._ref.reshape(-1, width))
        # In place on the window's own (freshly upsampled) depth: the same arithmetic as
        # ``(depth[2:] * scale + shift).clamp_min(0)`` and a concatenation, without 30-frame temporaries.
        aligned = depth[ALIGN_LEN:].mul_(scale).add_(shift).clamp_min_(0.0)  # window positions 2..31
        post = aligned[: OVERLAP - ALIGN_LEN]  # window positions 2..9
        faded = self._tail * self._weights_old + post * self._weights_new
        if not self.metric:
            ref_new = _to_host(aligned[KF_ALIGN[1] - ALIGN_LEN])
            self._ref = np.stack([self._ref[0], ref_new])
        post.copy_(faded)
        result = aligned  # 8 cross-faded + 22 frames
        self._tail = result[FRAME_STEP:].clone()
        return result[:FRAME_STEP]

    def _emit(self, block: torch.Tensor | None) -> list[Any]:
        if block is None or block.shape[0] == 0:
            return []
        self._emitted += int(block.shape[0])
        if self.output == "torch":
            return list(block.clone().unbind(0))
        array = _to_host(block)
        return [array[i] for i in range(array.shape[0])]


def stream_video_depth(
    model: Any,
    frames: Iterable[np.ndarray | torch.Tensor],
    input_size: int = 518,
    device: str | torch.device | None = None,
    precision: str | None = None,
    output_size: Sequence[int] | None = None,
    *,
    fp32: bool | None = None,
    output: Literal["numpy", "torch"] = "numpy",
    metric: bool | None = None,
) -> Iterator[np.ndarray | torch.Tensor]:
    """Yield the depth of a video frame by frame, in order, with memory bounded by one window.

    Args:
        model: see :class:`VideoDepthStream`.
        frames: iterable of RGB frames ``(H, W, 3)`` or chunks ``(K, H, W, 3)``, uint8.
        input_size, device, precision, output_size, fp32, output, metric: see
            :class:`VideoDepthStream`.

    Yields:
        One float32 depth map per input frame, ``output_size`` or ``(H, W)``.
    """
    stream = VideoDepthStream(
        model, input_size, device, precision, output_size, fp32=fp32, output=output, metric=metric
    )
    for item in frames:
        yield from stream.push(item)
    yield from stream.flush()


def infer_video_depth(
    model: Any,
    frames: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    target_fps: float,
    input_size: int = 518,
    device: str | torch.device | None = None,
    fp32: bool | None = None,
    precision: str | None = None,
    *,
    output_size: Sequence[int] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, float]:
    """Depth of a whole video with the official windowing and stitching.

    Args:
        model: see :class:`VideoDepthStream`.
        frames: ``(N, H, W, 3)`` RGB uint8 frames (array, tensor, or a sequence of ``(H, W, 3)``).
        target_fps: passed through unchanged (official signature; ``-1`` means the source rate).
        input_size: network shorter side before the wide-aspect reduction.
        device: ``None`` (the model's device), ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        fp32: official flag: ``True`` float32, ``False`` autocast (fp16 on CUDA, bf16 on CPU).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` instead of ``fp32``; with neither,
            fp16 on CUDA and fp32 elsewhere.
        output_size: ``(H2, W2)`` of the depth; default ``(H, W)``.
        progress: show a tqdm bar over the frames.

    Returns:
        ``(depth, target_fps)``: ``depth`` is ``(N, H, W)`` float32 (relative inverse depth, or
        metres for metric models).

    Raises:
        ValueError: no frames, or frames of the wrong shape.
    """
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (N, H, W, 3), got {tuple(frames.shape)}")
        count = int(frames.shape[0])
        chunks: Iterable[Any] = (frames[i : i + FRAME_STEP] for i in range(0, count, FRAME_STEP))
    else:
        frames = list(frames)
        count = len(frames)
        chunks = iter(frames)
    if count == 0:
        raise ValueError("the video has no frames")
    stream = VideoDepthStream(model, input_size, device, precision, output_size, fp32=fp32)
    result: list[np.ndarray] = []
    bar = tqdm(total=count, desc="depth", unit="frame", disable=not progress)
    with contextlib.closing(bar):
        for chunk in chunks:
            before = stream.frames_pushed
            result.extend(stream.push(chunk))
            bar.update(stream.frames_pushed - before)
        result.extend(stream.flush())
    return np.stack(result, axis=0), target_fps

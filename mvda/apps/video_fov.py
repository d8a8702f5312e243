"""The converter's field of view (``--fov auto|off``, ``--xfov`` / ``--yfov``): what goes into the depth
file's ``xfov`` / ``yfov`` tags, and the FOV that ``--model vda+moge2`` fixes MoGe-2 to.

* ``--xfov`` / ``--yfov`` given: that field of view (the other one follows from the aspect ratio when
  only one is given); MoGe-2 does not run.
* ``--fov auto`` (default): MoGe-2 (``--fov_encoder``, vits by default) on a few keyframes spread over
  the frames that will be converted (:func:`mvda.fov.keyframe_count`, :func:`mvda.fov.keyframe_indices`),
  the median of their fields of view (:func:`mvda.fov.estimate_fov`). The keyframes are read before the
  conversion by seeking a second decoder (:meth:`VideoReader.frames_at`), because the tags are written
  when the depth file is opened and ``vda+moge2`` needs the FOV from its first frame on; this costs a
  few GOPs of decoding, far less than MoGe-2 itself (benchmarks/RESULTS.md). :func:`keyframe_fov`
  takes the keyframe indices: the converter passes keyframes per shot (:func:`mvda.fov.shot_keyframes`,
  :func:`mvda.apps.convert.fov_keyframes`; with ``--scene_cuts auto`` the shots come from a decode-only
  pre-scan, :func:`mvda.apps.convert.prescan_cuts`).
* ``--fov off``: no tag.

The field of view never makes a conversion fail: a missing or bad MoGe-2 checkpoint
(:func:`load_fov_model`) and an estimate without a usable focal length each give one warning line and
no tag. (``--model vda+moge2`` needs MoGe-2 for its metres, so there a missing checkpoint is an
error, as for the other networks.)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from depth_codec import TAG_XFOV, TAG_YFOV
from mvda.errors import UserError
from mvda.fov import FOV_MODELS, FovEstimate, estimate_fov, keyframe_count, keyframe_indices
from mvda.io.video import VideoReader
from mvda.ops.geometry import intrinsics_from_fov

__all__ = ["FOV_MODES", "KEYFRAME_MAX_SIDE", "load_fov_model", "keyframes_of", "keyframe_fov",
           "given_fov", "fov_tags", "video_fov"]

log = logging.getLogger("mvda")

#: ``--fov`` choices.
FOV_MODES: tuple[str, ...] = ("auto", "off")
#: Keyframes are downscaled so that their larger side is at most this (the FOV does not depend on the
#: resolution; MoGe-2 at 1200 tokens sees about 644x364 pixels of a 16:9 frame anyway).
KEYFRAME_MAX_SIDE = 768


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def load_fov_model(encoder: str, checkpoint: str | os.PathLike | None, device: torch.device,
                   required: bool = False) -> Any | None:
    """MoGe-2 of size ``encoder`` (``--fov_encoder``) from ``checkpoint`` (else ``MoGe/checkpoints``, else
    the hub), or None after one warning line when it is missing or unusable.

    Raises:
        CheckpointError: only when ``required`` (``--model vda+moge2``).
    """
    from moge2.hub import CheckpointError, load_moge2

    try:
        return load_moge2(FOV_MODELS[encoder], checkpoint=checkpoint, device=device)
    except CheckpointError as exc:
        if required:
            raise
        log.warning("no field of view estimate (--fov auto), the depth files get no xfov/yfov tags: %s; "
                    "or give --xfov, or use --fov off", _one_line(exc))
        return None


def _downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    """``frame`` (H, W, 3) uint8, area-downscaled so that its larger side is at most ``max_side``."""
    height, width = frame.shape[:2]
    if max(height, width) <= max_side:
        return frame
    scale = max_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def keyframes_of(reader: VideoReader, indices: Sequence[int], fps: float,
                 max_side: int = KEYFRAME_MAX_SIDE) -> list[np.ndarray]:
    """The frames ``indices`` of the converter's output (frame ``k`` is on screen at ``k / fps`` seconds),
    (H', W', 3) uint8 RGB with their larger side at most ``max_side``, read by seeking (no pass over the
    video). Frames that cannot be read are left out."""
    return [_downscale(f, max_side) for f in reader.frames_at([k / float(fps) for k in indices])]


def keyframe_fov(reader: VideoReader, indices: Sequence[int], fps: float, model: Any, device: torch.device,
                 num_tokens: int | None = None) -> FovEstimate | None:
    """MoGe-2 ``model``'s median field of view over the output frames ``indices`` (e.g. spread over the
    whole video, or over one shot), or None after one warning line when no keyframe gives one.

    ``num_tokens``: MoGe-2's resolution; None: its lowest trained level (``num_tokens_range[0]``, 1200
    for the released models), enough for the focal length and 3x cheaper than the default level 9
    (benchmarks/RESULTS.md)."""
    frames = keyframes_of(reader, indices, fps)
    try:
        if not frames:
            raise UserError("no keyframe could be decoded")
        return estimate_fov(frames, model, device, num_tokens=num_tokens or int(model.num_tokens_range[0]))
    except UserError as exc:
        log.warning("%s: no field of view estimate (%s); the depth file gets no xfov/yfov tags",
                    reader.path.name, _one_line(exc))
        return None


def given_fov(height: int, width: int, xfov: float | None, yfov: float | None) -> tuple[float, float] | None:
    """``(xfov, yfov)`` in degrees of an image of ``height`` x ``width`` from ``--xfov`` / ``--yfov`` (the
    missing one from the aspect ratio, square pixels), or None when neither is given."""
    if xfov is None and yfov is None:
        return None
    intr = intrinsics_from_fov(height, width, xfov, yfov)
    return intr.xfov, intr.yfov


def fov_tags(fov: tuple[float, float] | None) -> dict[str, str]:
    """The depth file's ``xfov`` / ``yfov`` tags (degrees, 6 significant digits) of ``fov``; none for None."""
    if fov is None:
        return {}
    return {TAG_XFOV: f"{fov[0]:.6g}", TAG_YFOV: f"{fov[1]:.6g}"}


def video_fov(reader: VideoReader, size: tuple[int, int], frames: int | None, fps: float, mode: str,
              xfov: float | None, yfov: float | None, model: Any | None, device: torch.device,
              indices: Sequence[int] | None = None) -> tuple[float, float] | None:
    """The field of view ``(xfov, yfov)`` (degrees) of a video converted to ``size`` = (H, W) over ``frames``
    output frames at ``fps``: the given one, else (``mode == "auto"`` and a MoGe-2 ``model``) the median
    over the keyframes ``indices`` (None: :func:`mvda.fov.keyframe_count` of them spread over the frames,
    or the first frame when the length is unknown), else None."""
    given = given_fov(size[0], size[1], xfov, yfov)
    if given is not None or mode != "auto" or model is None:
        return given
    if indices is None:
        indices = keyframe_indices(frames, keyframe_count(frames)) if frames else [0]
    estimate = keyframe_fov(reader, indices, fps, model, device)
    if estimate is None:
        return None
    log.info("%s: field of view xfov %.2f yfov %.2f degrees (MoGe-2, median of %d keyframe(s))", reader.path.name,
             estimate.xfov, estimate.yfov, len(estimate.per_frame))
    # MoGe-2's pixels are square: the vertical FOV follows from the horizontal one and the output's aspect.
    return given_fov(size[0], size[1], estimate.xfov, None)

"""Keyframe feature reuse for the streaming Video-Depth-Anything inference.

Each window after the first starts with the previous window's keyframe inputs; their encoder features
are kept instead of being computed again (see :class:`KeyframeFeatureCache`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .inference import INFER_LEN, KEYFRAMES

__all__ = ["KeyframeFeatureCache"]


class KeyframeFeatureCache(nn.Module):
    """Video-Depth-Anything for :class:`VideoDepthStream` that encodes each input frame only once.

    Every window after the first starts with the 10 *keyframe* inputs of the previous window
    (positions :data:`KEYFRAMES`). The DINOv2 encoder works on each frame independently, so their
    encoder features are the same as in the previous window: this wrapper keeps them and encodes only
    the 22 new frames (32 -> 22 encoder passes per window, the encoder being most of VDA's cost). The
    temporal head still sees all 32 frames. Reuse happens only when the first 10 inputs are equal to
    the stored keyframe inputs (``torch.equal``), so any other caller gets ``model(x)``'s result.

    The output equals ``model(x)`` up to float rounding (the encoder runs on batches of a different
    size), and goes through the same :meth:`VideoDepthAnything.decode` (head, resize, ReLU) as
    :meth:`VideoDepthAnything.forward`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.metric = bool(model.metric)
        self._inputs: torch.Tensor | None = None  # (10, 3, h, w) keyframe inputs of the last window
        self._features: tuple | None = None  # their encoder features, per level (tokens, cls)
        self.frames_encoded = 0
        self.frames_reused = 0

    def keyframe_state(self) -> dict:
        """The stored keyframe inputs and features (on the CPU), to continue elsewhere with
        :meth:`load_keyframe_state` exactly as this cache would."""
        if self._inputs is None:
            return {"inputs": None, "features": None}
        return {"inputs": self._inputs.to("cpu", copy=True),
                "features": [(t.to("cpu", copy=True), c.to("cpu", copy=True)) for t, c in self._features]}

    def load_keyframe_state(self, state: dict, device: torch.device) -> None:
        """Restore a :meth:`keyframe_state` onto ``device``."""
        if state["inputs"] is None:
            self._inputs = self._features = None
            return
        self._inputs = state["inputs"].to(device)
        self._features = tuple((t.to(device), c.to(device)) for t, c in state["features"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _, h, w = x.shape
        if b != 1:
            return self.model(x)
        frames = x[0]
        n = len(KEYFRAMES)
        if (self._inputs is not None and t > n and self._inputs.shape == frames[:n].shape
                and self._inputs.dtype == frames.dtype and torch.equal(self._inputs, frames[:n])):
            fresh = self.model.encode(frames[n:])
            features = tuple(
                (torch.cat([old_t, new_t.to(old_t.dtype)]), torch.cat([old_c, new_c.to(old_c.dtype)]))
                for (old_t, old_c), (new_t, new_c) in zip(self._features, fresh)
            )
            self.frames_encoded += t - n
            self.frames_reused += n
        else:
            features = self.model.encode(frames)
            self.frames_encoded += t
        if t == INFER_LEN:
            keep = list(KEYFRAMES)
            self._inputs = frames[keep].clone()
            self._features = tuple((tokens[keep], cls[keep]) for tokens, cls in features)
        else:
            self._inputs = self._features = None
        return self.model.decode(features, b, t, h, w)

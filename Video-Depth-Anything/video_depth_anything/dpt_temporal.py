"""Temporal DPT head of Video-Depth-Anything: the DPT head plus four motion modules.

Motion modules act on the two coarsest reassembled levels (``layer_3``, ``layer_4``) and after the two
coarsest fusion stages (``path_4``, ``path_3``); everything after ``path_3`` is per-frame and is
computed in chunks of frames to bound memory (same results), see :meth:`DPTHead.decode_fine_chunked`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from depth_anything_v2.dpt_head import DPTHead

from .motion_module import TemporalModule

__all__ = ["DPTHeadTemporal"]


class DPTHeadTemporal(DPTHead):
    """DPT head with temporal motion modules (ReLU output, ``output_conv2`` in float32).

    Args:
        in_channels, features, use_bn, out_channels, use_clstoken: as :class:`DPTHead`.
        num_frames: length of the temporal positional tables (32).
        pe: positional embedding type; only ``"ape"`` (absolute sinusoidal) exists in the checkpoints.
        frame_chunk, chunk_elements: size of the frame chunks decoded at once after the last motion module
            (see :class:`DPTHead`; memory bound only, no effect on results).
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 256,
        use_bn: bool = False,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        use_clstoken: bool = False,
        num_frames: int = 32,
        pe: str = "ape",
        frame_chunk: int | None = None,
        chunk_elements: int = 1 << 23,
    ) -> None:
        super().__init__(
            in_channels, features, use_bn, out_channels=out_channels, use_clstoken=use_clstoken,
            output_activation="relu", output_fp32=True, frame_chunk=frame_chunk, chunk_elements=chunk_elements,
        )
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        if pe != "ape":
            raise ValueError(f"positional embedding {pe!r} is not supported: the official checkpoints use 'ape'")
        c = [int(v) for v in out_channels]
        self.motion_modules = nn.ModuleList(
            TemporalModule(ch, num_attention_heads=8, num_transformer_block=1, num_attention_blocks=2, temporal_max_len=num_frames)
            for ch in (c[2], c[3], features, features)
        )

    def forward(self, out_features: Sequence, patch_h: int, patch_w: int, frame_length: int) -> torch.Tensor:
        """Four ``(tokens (B*T, N, D), cls)`` pairs (frame-major) -> ``(B*T, 1, 14*patch_h, 14*patch_w)``."""
        t = int(frame_length)
        tokens = [f[0] for f in out_features]
        bt = tokens[0].shape[0]
        if bt % t:
            raise ValueError(f"batch of {bt} frames is not a multiple of frame_length={t}")
        s = self.scratch
        mm = self.motion_modules
        layer_3 = mm[0].forward_frames(self.reassemble(2, tokens[2], patch_h, patch_w), t)
        layer_4 = mm[1].forward_frames(self.reassemble(3, tokens[3], patch_h, patch_w), t)
        layer_3_rn = s.layer3_rn(layer_3)
        del layer_3
        layer_4_rn = s.layer4_rn(layer_4)
        del layer_4
        path_4 = s.refinenet4(layer_4_rn, size=layer_3_rn.shape[2:])
        del layer_4_rn
        path_4 = mm[2].forward_frames(path_4, t)
        path_3 = s.refinenet3(path_4, layer_3_rn, size=(2 * patch_h, 2 * patch_w))
        del path_4, layer_3_rn
        path_3 = mm[3].forward_frames(path_3, t)
        return self.decode_fine_chunked(path_3, tokens[0], tokens[1], patch_h, patch_w)

"""Temporal motion modules of Video-Depth-Anything (AnimateDiff-style temporal transformer).

Each module attends along the time axis only, independently at every spatial position:
GroupNorm per frame -> ``proj_in`` -> transformer block (two temporal self-attentions with a
sinusoidal positional table added to their input, then a GEGLU feed-forward, each pre-LayerNorm and
residual) -> ``proj_out`` -> residual add.

Names follow the official checkpoints (``temporal_transformer.{norm, proj_in, transformer_blocks.0,
proj_out}``, ``attention_blocks.{0,1}.{to_q, to_k, to_v, to_out.0, pos_encoder.pe}``, ``norms.{0,1}``,
``ff.net.{0.proj, 2}``, ``ff_norm``).

Implementation note: every operation after the GroupNorm acts either on single tokens or along
time, so the tokens are kept in one ``(batch, position, time, channel)`` layout for the whole
transformer (no back-and-forth rearranging), and positions are processed in chunks to bound memory.
The result is the same as the official frame-major implementation.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "GROUPNORM_EPS",
    "LAYERNORM_EPS",
    "PositionalEncoding",
    "TemporalAttention",
    "GEGLU",
    "FeedForward",
    "TemporalTransformerBlock",
    "TemporalTransformer3DModel",
    "TemporalModule",
]

#: Epsilon of the per-frame GroupNorm at the start of each temporal transformer.
GROUPNORM_EPS = 1e-6
#: Epsilon of the LayerNorms inside the transformer block (PyTorch's default).
LAYERNORM_EPS = 1e-5


class PositionalEncoding(nn.Module):
    """Sinusoidal temporal positions, stored as the persistent buffer ``pe`` of shape ``(1, max_len, d_model)``:
    ``pe[0, t, 2i] = sin(t w_i)``, ``pe[0, t, 2i+1] = cos(t w_i)``, ``w_i = exp(-2i ln(10000) / d_model)``."""

    def __init__(self, d_model: int, max_len: int = 32) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        freqs = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_len, d_model)
        pe[0, :, 0::2] = torch.sin(position * freqs)
        pe[0, :, 1::2] = torch.cos(position * freqs)
        self.register_buffer("pe", pe, persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C)`` -> ``x + pe[:, :T]`` (T <= max_len)."""
        t = x.shape[-2]
        if t > self.pe.shape[1]:
            raise ValueError(f"{t} frames exceed the temporal positional table length {self.pe.shape[1]}")
        return x + self.pe[:, :t].to(x.dtype)


class TemporalAttention(nn.Module):
    """Multi-head self-attention along time, positional table added to the input first.

    ``to_q``/``to_k``/``to_v`` have no bias; ``to_out.0`` has one. Scale ``head_dim ** -0.5``.
    """

    def __init__(self, query_dim: int, heads: int = 8, dim_head: int | None = None, temporal_max_len: int = 32) -> None:
        super().__init__()
        dim_head = query_dim // heads if dim_head is None else dim_head
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(query_dim, inner, bias=False)
        self.to_v = nn.Linear(query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])
        self.pos_encoder = PositionalEncoding(query_dim, max_len=temporal_max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, T, C)`` (N independent sequences of T frames) -> ``(N, T, C)``."""
        n, t, _ = x.shape
        x = self.pos_encoder(x)
        q = self.to_q(x).view(n, t, self.heads, self.dim_head).transpose(1, 2)
        k = self.to_k(x).view(n, t, self.heads, self.dim_head).transpose(1, 2)
        v = self.to_v(x).view(n, t, self.heads, self.dim_head).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(n, t, self.heads * self.dim_head)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """``h * gelu(gate)`` with ``h, gate = proj(x).chunk(2, -1)`` and exact (erf) GELU."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> mult*dim -> dim`` stored as ``net = [GEGLU, Dropout(0), Linear]``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TemporalTransformerBlock(nn.Module):
    """``x = attn_i(norm_i(x)) + x`` for each attention block, then ``x = ff(ff_norm(x)) + x``."""

    def __init__(self, dim: int, num_attention_heads: int = 8, num_attention_blocks: int = 2, temporal_max_len: int = 32) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalAttention(dim, heads=num_attention_heads, dim_head=dim // num_attention_heads, temporal_max_len=temporal_max_len)
            for _ in range(num_attention_blocks)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim, eps=LAYERNORM_EPS) for _ in range(num_attention_blocks))
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim, eps=LAYERNORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, T, C)`` -> ``(N, T, C)``."""
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x)) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer3DModel(nn.Module):
    """GroupNorm, ``proj_in``, transformer blocks along time, ``proj_out``, residual.

    Args:
        in_channels: channels C of the feature maps.
        num_attention_heads: heads of each temporal attention.
        num_layers: transformer blocks (1 in Video-Depth-Anything).
        num_attention_blocks: temporal attentions per block (2).
        norm_num_groups: GroupNorm groups (32).
        temporal_max_len: length of the positional tables (32 frames).
        max_chunk_elements: bound on ``positions * T * C`` processed at once (memory; no effect on results).
    """

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_layers: int = 1,
        num_attention_blocks: int = 2,
        norm_num_groups: int = 32,
        temporal_max_len: int = 32,
        max_chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__()
        self.max_chunk_elements = int(max_chunk_elements)
        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=GROUPNORM_EPS, affine=True)
        self.proj_in = nn.Linear(in_channels, in_channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(in_channels, num_attention_heads, num_attention_blocks, temporal_max_len)
            for _ in range(num_layers)
        )
        self.proj_out = nn.Linear(in_channels, in_channels)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x)
        return self.proj_out(x)

    def forward_frames(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Frame-major maps ``(B*T, C, h, w)`` (frames of one clip consecutive) -> same shape, in the
        channels-last memory format (a channels-last input needs no layout copies)."""
        bt, c, h, w = x.shape
        if bt % num_frames:
            raise ValueError(f"batch of {bt} maps is not a multiple of num_frames={num_frames}")
        b, t, hw = bt // num_frames, num_frames, h * w
        frames = self.norm(x).permute(0, 2, 3, 1).reshape(b, t, hw, c)  # per-frame tokens (B, T, hw, C)
        out = torch.empty((b, t, hw, c), dtype=frames.dtype, device=frames.device)
        step = max(1, self.max_chunk_elements // max(1, b * t * c))
        for s in range(0, hw, step):
            e = min(hw, s + step)
            # (B*positions, T, C), made contiguous: a strided 3-D input would make F.linear fall back to a
            # batched matmul with one weight copy per position
            seq = frames[:, :, s:e].transpose(1, 2).contiguous().view(b * (e - s), t, c)
            seq = self._tokens(seq)
            out[:, :, s:e] = seq.view(b, e - s, t, c).transpose(1, 2)
        return out.view(bt, h, w, c).permute(0, 3, 1, 2) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, h, w)`` -> ``(B, C, T, h, w)``."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.forward_frames(frames, t).view(b, t, c, h, w).transpose(1, 2)


class TemporalModule(nn.Module):
    """Motion module: a :class:`TemporalTransformer3DModel` under the name ``temporal_transformer``.

    ``forward(x)`` takes ``(B, C, T, h, w)``; :meth:`forward_frames` takes frame-major ``(B*T, C, h, w)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_transformer_block: int = 1,
        num_attention_blocks: int = 2,
        norm_num_groups: int = 32,
        temporal_max_len: int = 32,
    ) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(
            in_channels,
            num_attention_heads=num_attention_heads,
            num_layers=num_transformer_block,
            num_attention_blocks=num_attention_blocks,
            norm_num_groups=norm_num_groups,
            temporal_max_len=temporal_max_len,
        )

    def forward_frames(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.temporal_transformer.forward_frames(x, num_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)

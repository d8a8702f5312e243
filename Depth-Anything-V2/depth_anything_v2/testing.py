"""Procedural "pf-v1" weights for tests (see ``tests/fixtures/README.md``).

Every state_dict entry gets a deterministic tensor computed from its key and shape only, so tests can
build full-size checkpoints without downloading the real ones, and compare against golden outputs
produced by the official code with the same weights.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

__all__ = [
    "procedural_tensor",
    "sinusoidal_table",
    "procedural_state_dict",
    "load_procedural_weights",
    "write_procedural_checkpoint",
]


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Temporal positional table ``(1, length, dim)``: ``pe[0, t, 2i] = sin(t w_i)``,
    ``pe[0, t, 2i+1] = cos(t w_i)``, ``w_i = exp(-2i ln(10000) / dim)``, in float32."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(pos * freqs)
    table[0, :, 1::2] = torch.cos(pos * freqs)
    return table


def procedural_tensor(key: str, shape: Iterable[int], is_buffer: bool = False) -> torch.Tensor:
    """The pf-v1 tensor of one state_dict entry (float32, CPU).

    Seeded by ``zlib.crc32(key)`` on a CPU generator; transformed by the key's last component
    (``pos_embed``/``cls_token``/``mask_token``: ``0.5 n``; ``gamma``: ``0.2 (1 + 0.1 n)``;
    ``bias``: ``0.1 n``; other 1-D: ``1 + 0.1 n``; >= 2-D: ``n / sqrt(prod(shape[1:]))``).
    Buffers (``pos_encoder.pe``, shape ``(1, L, D)``) get the sinusoidal table.
    """
    shape = tuple(int(s) for s in shape)
    if is_buffer:
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"pf-v1 buffers are (1, L, D) positional tables, got {key} {shape}")
        return sinusoidal_table(shape[1], shape[2])
    leaf = key.rsplit(".", 1)[-1]
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    n = torch.randn(shape, generator=gen, dtype=torch.float32)
    if leaf in ("pos_embed", "cls_token", "mask_token"):
        return 0.5 * n
    if leaf == "gamma":
        return 0.2 * (1 + 0.1 * n)
    if leaf == "bias":
        return 0.1 * n
    if len(shape) == 1:
        return 1 + 0.1 * n
    return n / math.sqrt(math.prod(shape[1:]))


def _entries(source: nn.Module | Mapping | Iterable[Mapping]) -> list[tuple[str, tuple[int, ...], bool]]:
    if isinstance(source, nn.Module):
        buffers = {name for name, _ in source.named_buffers()}
        return [(k, tuple(v.shape), k in buffers) for k, v in source.state_dict().items()]
    if isinstance(source, Mapping):
        source = source["entries"]
    return [(e["key"], tuple(e["shape"]), e.get("kind") == "buffer") for e in source]


def procedural_state_dict(source: nn.Module | Mapping | Iterable[Mapping]) -> "OrderedDict[str, torch.Tensor]":
    """pf-v1 state_dict for a model, a fixture manifest (``{"entries": [...]}``) or a list of entries
    (dicts with ``key``, ``shape`` and ``kind``). Keys keep the source order; tensors are on the CPU."""
    return OrderedDict((k, procedural_tensor(k, shape, is_buffer)) for k, shape, is_buffer in _entries(source))


def load_procedural_weights(model: nn.Module) -> nn.Module:
    """Fill ``model`` in place with pf-v1 weights (``strict=True``) and return it."""
    state = procedural_state_dict(model)
    model.load_state_dict(state, strict=True)
    return model


def write_procedural_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write a pf-v1 checkpoint for ``model``'s architecture to ``path`` (``torch.save`` of a plain
    state_dict, like the official ``.pth`` files) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(procedural_state_dict(model), out)
    return out

"""Procedural "pf-v1" weights for tests (see ``tests/fixtures/README.md``).

Every state_dict entry gets a deterministic tensor computed from its key and shape only, so tests can
build full-size checkpoints without downloading the real ones, and compare against golden outputs
produced by the official code with the same weights.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

__all__ = [
    "IMAGE_NORM_BUFFERS",
    "procedural_tensor",
    "sinusoidal_table",
    "procedural_state_dict",
    "load_procedural_weights",
    "write_procedural_checkpoint",
    "state_dict_layout",
    "read_manifests",
    "layout_problems",
    "fill_problems",
]


#: Values of the MoGe-2 image normalisation buffers (float32), as upstream constructs them.
IMAGE_NORM_BUFFERS: dict[str, tuple[float, float, float]] = {
    "image_mean": (0.485, 0.456, 0.406),
    "image_std": (0.229, 0.224, 0.225),
}


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
    Buffers (``pos_encoder.pe``, shape ``(1, L, D)``) get the sinusoidal table; MoGe-2's
    ``image_mean``/``image_std`` buffers (``(1, 3, 1, 1)``) get the ImageNet mean/std that the model
    constructs (:data:`IMAGE_NORM_BUFFERS`, tests/fixtures/moge2/README.md).
    """
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if is_buffer and leaf in IMAGE_NORM_BUFFERS:
        values = torch.tensor(IMAGE_NORM_BUFFERS[leaf], dtype=torch.float32)
        if math.prod(shape) != values.numel():
            raise ValueError(f"pf-v1 {leaf} buffers hold 3 values, got {key} {shape}")
        return values.view(shape)
    if is_buffer:
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"pf-v1 buffers are (1, L, D) positional tables, got {key} {shape}")
        return sinusoidal_table(shape[1], shape[2])
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


def state_dict_layout(model: nn.Module) -> list[tuple[str, list[int], str, str]]:
    """``(key, shape, dtype, kind)`` of every state_dict entry, in order, as in the fixture manifests
    (dtype like ``"float32"``, kind ``"parameter"`` or ``"buffer"``). Works on ``meta`` models."""
    buffers = {name for name, _ in model.named_buffers()}
    return [
        (k, list(v.shape), str(v.dtype).replace("torch.", ""), "buffer" if k in buffers else "parameter")
        for k, v in model.state_dict().items()
    ]


def read_manifests(path: str | os.PathLike) -> dict[str, dict]:
    """Read the compact manifest file ``tests/fixtures/manifests_networks.json.gz``.

    Returns ``{name: manifest}`` where each manifest has the upstream metadata (``config``,
    ``num_entries``, ``total_numel``, ...) and ``entries``: ``[key, shape, dtype, kind, fill_sum]``
    lists in upstream state_dict order (a ``same_entries_as`` reference is resolved).
    """
    with gzip.open(Path(path), "rt", encoding="utf-8") as fh:
        data = json.load(fh)["manifests"]
    for item in data.values():
        if "same_entries_as" in item:
            item["entries"] = data[item["same_entries_as"]]["entries"]
    return data


def layout_problems(model: nn.Module, manifest: Mapping) -> list[str]:
    """Differences between ``model``'s state_dict layout and a manifest (empty list: exact match of
    keys, order, shapes, dtypes, parameter/buffer kinds, entry and value counts)."""
    got = state_dict_layout(model)
    want = [(e[0], list(e[1]), e[2], e[3]) for e in manifest["entries"]]
    problems = []
    if [g[0] for g in got] != [w[0] for w in want]:
        missing = [w[0] for w in want if w[0] not in {g[0] for g in got}]
        extra = [g[0] for g in got if g[0] not in {w[0] for w in want}]
        problems.append(f"keys differ (missing {missing[:5]}, extra {extra[:5]}, or order)")
    else:
        problems += [f"{g} != {w}" for g, w in zip(got, want) if g != w]
    if len(got) != manifest["num_entries"]:
        problems.append(f"{len(got)} entries, manifest {manifest['num_entries']}")
    numel = sum(math.prod(shape) for _, shape, _, _ in got)
    if numel != manifest["total_numel"]:
        problems.append(f"{numel} values, manifest {manifest['total_numel']}")
    buffers = sum(kind == "buffer" for *_, kind in got)
    if buffers != manifest["num_buffers"]:
        problems.append(f"{buffers} buffers, manifest {manifest['num_buffers']}")
    return problems


def fill_problems(state: Mapping[str, torch.Tensor], manifest: Mapping, rel: float = 1e-9) -> list[str]:
    """Entries of ``state`` whose float64 sum differs from the manifest's ``fill_sum`` (relative ``rel``)."""
    problems = []
    for key, _, _, _, fill_sum in manifest["entries"]:
        total = state[key].double().sum().item()
        if abs(total - fill_sum) > rel * max(1.0, abs(fill_sum)):
            problems.append(f"{key}: sum {total!r}, manifest {fill_sum!r}")
    return problems

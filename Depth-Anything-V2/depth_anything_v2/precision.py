"""Compute precision of the networks: names, autocast dtypes and the autocast context.

The networks take a resolved :class:`torch.device` and a precision name (``"fp32"``, ``"fp16"``,
``"bf16"``); choosing them from user input is the application's job (``mvda.device``). Autocast
always uses ``device.type``; nothing here hard-codes a device.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

__all__ = ["PRECISIONS", "precision_dtype", "autocast_context", "default_precision"]

#: Accepted precision names and the autocast dtype each one selects (``None``: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def precision_dtype(precision: str) -> torch.dtype | None:
    """Autocast dtype for a precision name (``None`` for ``"fp32"``).

    Raises:
        ValueError: unknown precision name.
    """
    key = str(precision).strip().lower()
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[key]


def default_precision(device: torch.device | str) -> str:
    """Default compute precision for a device: ``"fp16"`` on CUDA (as the official code), else ``"fp32"``."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    return "fp16" if dev.type == "cuda" else "fp32"


def autocast_context(device: torch.device | str, precision: str) -> ContextManager:
    """Context manager running the enclosed code in ``precision`` on ``device``.

    Args:
        device: the device the computation runs on (its ``type`` selects the autocast backend).
        precision: ``"fp32"`` (no autocast), ``"fp16"`` or ``"bf16"``.

    Returns:
        ``contextlib.nullcontext()`` for fp32, else ``torch.autocast(device_type=device.type, dtype=...)``.
    """
    dtype = precision_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    return torch.autocast(device_type=dev.type, dtype=dtype)

"""Device and precision choice for the scripts: ``--device`` and ``--precision`` resolved and checked.

The networks (``depth_anything_v2``, ``video_depth_anything``) take the resolved device and a precision
name; their own :mod:`depth_anything_v2.precision` holds the names, the autocast context and the
network default (fp16 on CUDA), re-exported here for the applications.

The device is always a parameter: ``"auto"`` picks CUDA, then Apple MPS, then the CPU.
Autocast always uses ``device.type``; nothing here hard-codes ``"cuda"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from depth_anything_v2.precision import PRECISIONS, autocast_context, default_precision, precision_dtype

__all__ = [
    "PRECISIONS",
    "resolve_device",
    "autocast_context",
    "default_precision",
    "precision_dtype",
    "cpu_has_native",
    "precision_warning",
]

def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a device name into an available :class:`torch.device`.

    Args:
        name: ``"auto"`` (CUDA if available, else MPS, else CPU), or any torch device string
            such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, or a ``torch.device``.

    Returns:
        The device.

    Raises:
        ValueError: the name is not a device, or the device is not available on this machine.
    """
    if isinstance(name, torch.device):
        dev = name
    else:
        text = str(name).strip().lower()
        if text in ("", "auto"):
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(text)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"unknown device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} requested but CUDA is not available on this machine: use --device cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist: "
                f"use an index below {torch.cuda.device_count()}"
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {name!r} requested but MPS is not available on this machine: use cpu or auto")
        return dev
    raise ValueError(f"unsupported device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def cpu_has_native(precision: str) -> bool:
    """Whether this CPU computes ``precision`` natively (oneDNN's check: AVX-512 BF16 / AMX for bf16,
    AVX-512 FP16 / AMX-FP16 for fp16). Without it, reduced precision is emulated and usually slower
    than fp32. ``"fp32"`` is always native."""
    key = str(precision).strip().lower()
    precision_dtype(key)  # validates the name
    if key == "fp32":
        return True
    mkldnn = torch.ops.mkldnn
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[key]
    return bool(getattr(mkldnn, check)())


def precision_warning(
    device: torch.device | str, precision: str, native: Callable[[str], bool] | None = None
) -> str | None:
    """A warning for a precision that will run slowly on ``device``, else ``None``.

    Only the CPU is checked: bf16 or fp16 autocast on a CPU without native support (``native``,
    :func:`cpu_has_native` by default) is emulated and usually slower than fp32.
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    key = str(precision).strip().lower()
    if dev.type != "cpu" or key == "fp32" or (native or cpu_has_native)(key):
        return None
    return (f"this CPU has no native {key} support (AVX-512 {key.upper()} or AMX): --precision {key} is "
            "emulated and likely slower than fp32")

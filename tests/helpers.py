"""Plain helpers shared by the test files (the shared fixtures are in ``tests/conftest.py``).

Import them as ``from tests.helpers import ...`` (``tests`` is a package; pytest runs from the repo root).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "REPO",
    "FIXTURES",
    "run_module",
    "one_line_error",
    "load_golden",
    "synthetic_frames",
    "write_lossless_video",
    "read_frames",
    "read_depth_frames",
    "original_pack",
    "original_unpack",
]

#: The repository root (the benchmarks run as ``python -m benchmarks.NAME`` from here).
REPO: Path = Path(__file__).resolve().parents[1]

#: The shared test fixtures: manifests and goldens of the networks (``tests/fixtures/README.md``).
FIXTURES: Path = REPO / "tests" / "fixtures"


def run_module(module: str, *args: str | os.PathLike, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m module args...`` from the repo root, text output captured (for benchmark smoke tests)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(capsys, *fragments: str, prog: str | None = None) -> str:
    """The one ``PROG: error: ...`` line a command wrote to stderr (read from ``capsys``); no traceback.

    Without ``prog`` other stderr lines (progress bars, warnings) may stand around the one line that
    holds ``": error: "``; with ``prog`` no other line may start with ``"PROG:"`` (no warnings either).
    Each of ``fragments`` must occur in the error line, which is returned.
    """
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if prog is None:
        errors = [line for line in err.strip().splitlines() if ": error: " in line]
        assert len(errors) == 1, err
    else:
        errors = [line for line in err.splitlines() if line.startswith(f"{prog}:")]
        assert len(errors) == 1 and errors[0].startswith(f"{prog}: error: "), err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def load_golden(name: str) -> dict[str, np.ndarray]:
    """Arrays of ``tests/fixtures/NAME.npz`` (goldens of the official code), read at once."""
    with np.load(FIXTURES / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def synthetic_frames(n: int, height: int = 36, width: int = 48, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 RGB: smooth moving content whose brightness changes a lot over time, and
    a moving magenta disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, 3)
    frames = []
    for i in range(n):
        t = i / 5.0
        r = 128 + 100 * np.sin(xx / 7.0 + t + phase[0])
        g = 128 + 100 * np.cos(yy / 5.0 - 0.7 * t + phase[1])
        b = 60 + 30 * i % 190 + 40 * np.sin((xx + yy) / 9.0 + phase[2])
        cx, cy = (width / 2) + width / 3 * np.sin(t), (height / 2) + height / 3 * np.cos(t)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (height / 4) ** 2
        frame = np.stack([r, g, b], -1)
        frame[disc] = (240, 30, 200)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_lossless_video(path: str | os.PathLike, frames, fps=24) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB frames as a lossless FFV1 ``bgr0`` video (as the original tool wrote
    its depth files, and so that a decoder gets exactly these frames back); returns the path."""
    from mvda.io.video import VideoWriter

    frames = list(frames)
    height, width = frames[0].shape[:2]
    with VideoWriter(path, width, height, fps, codec="ffv1", pix_fmt="bgr0") as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def read_frames(path: str | os.PathLike, pix_fmt: str = "rgb24") -> list[np.ndarray]:
    """Every decoded frame of a video, as ``pix_fmt`` arrays."""
    from mvda.io.video import VideoReader

    with VideoReader(path, pix_fmt=pix_fmt) as reader:
        return list(reader)


def read_depth_frames(path: str | os.PathLike, **kwargs) -> list[np.ndarray]:
    """Every depth frame (``(H, W)`` float32 metres) of a depth video; ``kwargs`` go to DepthVideoReader."""
    from depth_codec import DepthVideoReader

    with DepthVideoReader(path, **kwargs) as reader:
        return list(reader)


# --- an independent re-implementation of the original tool's formula, from the issue text ---------
def original_pack(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """The original tool's packing: byte view of the little-endian uint32 (not shifts, unlike
    depth_codec): R = G = byte 3, B = byte 2."""
    v = (depth.astype(np.float64) * 255**4 / max_depth).astype("<u4")
    b = v.view(np.uint8).reshape(*v.shape, 4)
    return np.stack([b[..., 3], b[..., 3], b[..., 2]], axis=-1)


def original_unpack(rgb: np.ndarray, max_depth: float) -> np.ndarray:
    """The original tool's unpacking: ``(mean(R, G) << 24 | B << 16) / (255**4 / max_depth)``, float32."""
    high = ((rgb[..., 0].astype(np.float64) + rgb[..., 1].astype(np.float64)) / 2).astype(np.uint8)
    v = high.astype(np.uint32) * np.uint32(2**24) + rgb[..., 2].astype(np.uint32) * np.uint32(2**16)
    return v.astype(np.float32) / np.float32(255**4 / max_depth)

"""Plain helpers shared by the test files (the shared fixtures are in ``tests/conftest.py``).

Import them as ``from tests.helpers import ...`` (``tests`` is a package; pytest runs from the repo root).
"""

from __future__ import annotations

import os
import signal
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
    "write_depth_video",
    "rolled_noise_frames",
    "write_portrait_clip",
    "write_vfr_clip",
]

#: The repository root (the benchmarks run as ``python -m benchmarks.NAME`` from here).
REPO: Path = Path(__file__).resolve().parents[1]

#: The shared test fixtures: manifests and goldens of the networks (``tests/fixtures/README.md``).
FIXTURES: Path = REPO / "tests" / "fixtures"


def run_module(module: str, *args: str | os.PathLike, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m module args...`` from the repo root, text output captured (for benchmark smoke tests)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def terminate(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Send SIGTERM to ``proc`` and wait for it to end (killed if it outlives ``timeout``); its stderr."""
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


def one_line_error(capsys, *fragments: str, prog: str | None = None, alone: bool = False) -> str:
    """The one ``PROG: error: ...`` line a command wrote to stderr (read from ``capsys``); no traceback.

    Without ``prog`` other stderr lines (progress bars, warnings) may stand around the one line that
    holds ``": error: "``; with ``prog`` no other line may start with ``"PROG:"`` (no warnings either);
    with ``alone`` stderr holds nothing but that line (blank lines aside).
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
    if alone:
        assert [line for line in err.splitlines() if line.strip()] == errors, err
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


# --- small clips that more than one test file writes ------------------------------------------------
def write_depth_video(path: str | os.PathLike, depths, fps=25, max_depth: float = 6.0) -> Path:
    """Write ``(H, W)`` depth frames (metres) with our DepthVideoWriter (packed FFV1 .mkv with the
    ``max_depth`` tag); returns the path."""
    from depth_codec import DepthVideoWriter

    depths = iter(depths)
    first = next(depths)
    height, width = first.shape
    with DepthVideoWriter(path, width, height, fps, max_depth=max_depth) as writer:
        writer.write(first)
        for depth in depths:
            writer.write(depth)
    return Path(path)


def rolled_noise_frames(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` ``(H, W, 3)`` uint8 frames: one uniform-noise image (``seed``) rolled right by ``i`` px in frame ``i``."""
    base = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


def write_portrait_clip(path: str | os.PathLike, n: int, dark: int, bright: int) -> Path:
    """A phone's portrait H.264 clip: ``n`` stored 64x32 (W x H) frames of level ``dark`` with the left
    16 columns at ``bright``, and a -90 degree display matrix (shown 32 wide, 64 high, turned clockwise:
    the bright strip at the top)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(-90)  # what phones write for portrait: show it turned 90 degrees clockwise
        for i in range(n):
            stored = np.full((32, 64, 3), dark, np.uint8)
            stored[:, :16] = bright
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


def write_vfr_clip(path: str | os.PathLike, size: tuple[int, int] = (32, 48), audio_seconds: float = 0) -> list[float]:
    """A phone's variable-rate clip: 30 frames at 30 fps, then 10 at 5 fps, H.264 in MP4, frame ``i``
    grey at level ``(6 i) % 256``; ``size`` is ``(H, W)``. With ``audio_seconds`` also that much mono
    440 Hz AAC at 48 kHz. Returns the frame times (seconds)."""
    import av
    from fractions import Fraction

    h, w = size
    times = [i / 30 for i in range(30)] + [1.0 + i / 5 for i in range(10)]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.time_base = Fraction(1, 90000)
        audio = out.add_stream("aac", rate=48000) if audio_seconds else None
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), (i * 6) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t * 90000), Fraction(1, 90000)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            samples = np.sin(np.arange(round(audio_seconds * 48000)) / 48000 * 2 * np.pi * 440).astype(np.float32)
            for k in range(0, samples.size, 1024):
                chunk = samples[k:k + 1024]
                if chunk.size < 1024:
                    chunk = np.pad(chunk, (0, 1024 - chunk.size))
                frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, k
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return times

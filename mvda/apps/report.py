"""``video_metric_convert.py --report``: a picture of one conversion, ``{name}_depth_report.png``.

Top: a strip of depth frames evenly spaced over the video, colour-mapped (near: warm, far: cold, up to
``max_depth``). Bottom: the fit ``inverse depth = scale * r + shift`` (1/metres) of every frame, scale
and shift on their own axes, with the scene cuts as vertical lines, so a jump of the scale shows at a
glance (at a cut it is expected: each shot is fitted on its own).

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvda.io.video import atomic_output_path

__all__ = ["report_path", "strip_indices", "write_report"]

#: Depth frames in the strip.
STRIP_FRAMES = 6


def report_path(output: Path) -> Path:
    """``{stem}_report.png`` beside the depth video ``{stem}.mkv`` (``clip_depth.mkv`` ->
    ``clip_depth_report.png``)."""
    return output.with_name(f"{output.stem}_report.png")


def strip_indices(frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """``count`` frame numbers evenly spaced over ``frames`` frames, first and last included (fewer for a
    shorter video).

    >>> strip_indices(100, 4), strip_indices(2, 4)
    ([0, 33, 66, 99], [0, 1])
    """
    if frames <= 0:
        return []
    count = max(1, min(count, frames))
    if count == 1:
        return [0]
    return sorted({round(k * (frames - 1) / (count - 1)) for k in range(count)})


def _read_frames(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    """Depth frames (metres) ``indices`` of a depth video, read in one pass."""
    from depth_codec import DepthVideoReader

    wanted = set(indices)
    frames: list[np.ndarray] = []
    with DepthVideoReader(path) as reader:
        for k, depth in enumerate(reader):
            if k in wanted:
                frames.append(np.asarray(depth))
            if k >= max(indices):
                break
    return frames


def write_report(output: Path, frames: int, trace: Sequence[tuple[float, float]], cuts: Sequence[int],
                 max_depth: float, title: str) -> Path:
    """Draw the report of the depth video ``output`` (``frames`` frames) next to it.

    Args:
        output: the finished depth video.
        frames: its number of frames.
        trace: ``(scale, shift)`` of each frame's fit (1/metres per unit of r, 1/metres); empty when the
            network is metric (no fit).
        cuts: first frames of the shots after the first.
        max_depth: the colour map's far end, metres.
        title: a line above the figure.

    Returns:
        The PNG's path (written atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    indices = strip_indices(frames)
    depth = _read_frames(output, indices) if indices else []
    fig = Figure(figsize=(12, 6.5), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, max(1, len(depth)), height_ratios=[1, 1.2])
    image = None
    for k, (index, d) in enumerate(zip(indices, depth)):
        ax = fig.add_subplot(grid[0, k])
        image = ax.imshow(d, cmap="turbo_r", vmin=0.0, vmax=max_depth, interpolation="nearest")
        ax.set_title(f"frame {index}", fontsize=9)
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=fig.axes, location="right", shrink=0.8, label="depth (m)")
    ax = fig.add_subplot(grid[1, :])
    x = np.arange(len(trace))
    if len(trace):
        values = np.asarray(trace, dtype=np.float64)
        ax.plot(x, values[:, 0], color="tab:blue", label="scale")
        ax.set_ylabel("scale (1/m per unit of r)", color="tab:blue")
        shift_ax = ax.twinx()
        shift_ax.plot(x, values[:, 1], color="tab:orange", label="shift")
        shift_ax.set_ylabel("shift (1/m)", color="tab:orange")
    else:
        ax.text(0.5, 0.5, "no fit: the network's depth is metric", ha="center", va="center", transform=ax.transAxes)
    for k, cut in enumerate(cuts):
        ax.axvline(cut, color="red", linestyle="--", linewidth=1, label="scene cut" if k == 0 else None)
    ax.set_xlim(0, max(1, frames - 1))
    ax.set_xlabel("frame")
    ax.set_title(f"fit per frame: inverse depth = scale * r + shift ({len(cuts) + 1} shot"
                 f"{'s' if cuts else ''})", fontsize=10)
    if cuts:
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=11)
    path = report_path(output)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path

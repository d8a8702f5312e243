"""Benchmark of the stereo renderer (stero_rerender.py) at 1280x720 and 1920x1080.

Measures, per size and device:
  * render: depth -> disparity (with the default edge sharpening and dilation), both eyes (warp +
    smooth background fill) and side-by-side packing of one
    frame, i.e. the per-frame work without video decode/encode (frames/s, from the median and the
    best of --repeat runs, plus the CPU time the process used per frame); on the CPU with one
    torch op thread (as stero_rerender.py) and one worker thread, then one worker per core;
  * end to end (--io): the whole stereo job (mvda.apps.stereo) on a generated clip (H.264 colour + FFV1 depth,
    --frames frames): decode both videos, render, encode H.264 with --preset.

The machine's load average is printed too: on a shared machine other processes take CPU time and
the wall-clock figures drop accordingly.

Run: python -m benchmarks.bench_stereo [--io] [--device cpu|cuda|auto] [--sizes 1280x720,1920x1080]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from depth_codec import DepthVideoWriter
from mvda.apps import stereo
from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.stereo_comfort import DEFAULT_EDGE_DILATION, DEFAULT_EDGE_SHARPEN, comfort_disparity
from mvda.ops.stereo_warp import StereoWarper, pack_stereo
from mvda.io.video import VideoWriter


def synthetic_scene(width: int, height: int, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A slanted wavy ground (1.5 .. 6 m), two boxes in front and a thin pole: many depth edges."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 5.5 - 4.0 * v / height + 0.3 * np.sin((u + 4 * i) / 50.0)
    depth[height // 4: height // 2, width // 3: width // 2] = 1.2
    depth[height // 2: 3 * height // 4, (width * 3) // 5: (width * 4) // 5] = 2.0
    depth[:, width // 8 + i: width // 8 + i + 3] = 0.9
    rgb = np.stack([(u / 5 + i) % 256, (v / 3) % 256, ((u + v) / 7) % 256], axis=-1).astype(np.uint8)
    return rgb, depth.astype(np.float32)


def bench_render(width: int, height: int, device: torch.device, repeat: int, workers: int | None) -> dict:
    rgb, depth = synthetic_scene(width, height)
    fx = intrinsics_from_fov(height, width, xfov=60.0).fx
    warper = StereoWarper(height, width, device=device, workers=workers)
    colour_t = torch.from_numpy(rgb).to(device)
    depth_t = torch.from_numpy(depth).to(device)

    def once() -> None:
        disp = comfort_disparity(depth_t, fx, 0.063, 6.0, edge_sharpen=DEFAULT_EDGE_SHARPEN,
                                 edge_dilation=DEFAULT_EDGE_DILATION)  # stero_rerender.py's defaults
        views = warper.render(colour_t, disp)
        frame = pack_stereo(views.left, views.right, "sbs")
        frame.cpu()

    once()
    once()
    walls, cpus = [], []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        w0, c0 = time.perf_counter(), time.process_time()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"median_fps": 1.0 / statistics.median(walls), "best_fps": 1.0 / min(walls),
            "cpu_ms": 1000.0 * statistics.median(cpus), "cpu_ms_best": 1000.0 * min(cpus),
            "workers": warper.workers}


def make_clip(folder: Path, width: int, height: int, frames: int) -> tuple[Path, Path]:
    colour_path, depth_path = folder / "colour.mp4", folder / "colour_depth.mkv"
    with VideoWriter(colour_path, width, height, 30, options={"crf": "20", "preset": "ultrafast"}) as cw, \
            DepthVideoWriter(depth_path, width, height, 30, max_depth=6.0) as dw:
        for i in range(frames):
            rgb, depth = synthetic_scene(width, height, i)
            cw.write(rgb)
            dw.write(depth)
    return colour_path, depth_path


def bench_io(width: int, height: int, device: torch.device, frames: int, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        colour, depth = make_clip(Path(tmp), width, height, frames)
        job = stereo.StereoJob(
            depth_video=depth, color_video=colour, output=Path(tmp) / "out.mp4", mask_output=None, xfov=60.0,
            yfov=None, max_depth=None, preset=preset, device=device, progress=False)
        c0 = time.process_time()
        result = stereo.render_stereo_video(job)
        cpu = time.process_time() - c0
    return {"fps": result.fps, "frames": result.frames, "cpu_ms": 1000.0 * cpu / result.frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated WxH list")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument("--repeat", type=int, default=20, help="timed render runs per size")
    parser.add_argument("--io", action="store_true", help="also time the whole job with video decode/encode")
    parser.add_argument("--frames", type=int, default=30, help="frames of the generated clip for --io")
    parser.add_argument("--preset", default="fast", help="x264 preset for --io (default fast, as the script)")
    args = parser.parse_args()
    from mvda.device import resolve_device

    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, "
          f"load average {load:.2f}")
    for size in args.sizes.split(","):
        width, height = (int(x) for x in size.lower().split("x"))
        for workers in ([1, threads] if device.type == "cpu" else [None]):
            # As stero_rerender does on the CPU: one torch op thread, chunks spread over workers.
            torch.set_num_threads(1 if device.type == "cpu" else threads)
            r = bench_render(width, height, device, args.repeat, workers)
            print(f"{width}x{height} render (both eyes + sbs, no I/O), {r['workers']} worker(s): "
                  f"{r['median_fps']:.1f} fps median, {r['best_fps']:.1f} fps best; CPU time "
                  f"{r['cpu_ms']:.0f} ms/frame median, {r['cpu_ms_best']:.0f} best")
        torch.set_num_threads(threads)
        if args.io:
            e = bench_io(width, height, device, args.frames, args.preset)
            print(f"{width}x{height} end to end (decode + render + H.264 {args.preset} encode, {e['frames']} "
                  f"frames): {e['fps']:.1f} fps; CPU time {e['cpu_ms']:.0f} ms/frame (all threads)")


if __name__ == "__main__":
    main()

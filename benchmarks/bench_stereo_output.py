"""Benchmark of the stereo output side: the whole stereo job per layout and codec (issue 13).

For each (--format, --codec) pair the stereo job (mvda.apps.stereo) renders a generated clip (H.264
colour + FFV1 depth, --frames frames at --size) end to end: decode, render both eyes, pack (VR180
re-projection, Dubois anaglyph ...), encode, write the metadata. Prints frames/s, the CPU time per
frame and the output frame size; then the VR180 re-projection alone (per eye, one torch thread).

Run: python -m benchmarks.bench_stereo_output [--size 1280x720] [--frames 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from depth_codec import DepthVideoWriter
from mvda.apps import stereo
from mvda.io.video import VideoWriter
from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.vr180 import VR180Projector, vr180_eye_size

CASES = (("sbs", "h264"), ("sbs", "hevc"), ("half-sbs", "h264"), ("anaglyph", "h264"), ("vr180", "h264"),
         ("vr180", "hevc"))
XFOV = 70.0


def make_clip(folder: Path, width: int, height: int, frames: int) -> tuple[Path, Path]:
    """A slanted ground with a box and moving stripes, as H.264 colour and FFV1 depth."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    colour_path, depth_path = folder / "colour.mp4", folder / "colour_depth.mkv"
    with VideoWriter(colour_path, width, height, 30, options={"crf": "20", "preset": "ultrafast"}) as cw, \
            DepthVideoWriter(depth_path, width, height, 30, max_depth=6.0) as dw:
        for i in range(frames):
            depth = 5.5 - 4.0 * v / height
            depth[height // 4: height // 2, width // 3: width // 2] = 1.2
            rgb = np.stack([(u / 5 + i) % 256, (v / 3) % 256, ((u + v) / 7) % 256], axis=-1).astype(np.uint8)
            cw.write(rgb)
            dw.write(depth)
    return colour_path, depth_path


def bench_job(colour: Path, depth: Path, out: Path, fmt: str, codec: str, device: torch.device) -> dict:
    job = stereo.StereoJob(depth_video=depth, color_video=colour, output=out, mask_output=None, xfov=XFOV, yfov=None,
                           max_depth=None, fmt=fmt, codec=codec, device=device, progress=False)
    c0 = time.process_time()
    result = stereo.render_stereo_video(job)
    cpu = time.process_time() - c0
    return {"fps": result.fps, "cpu_ms": 1000.0 * cpu / result.frames, "size": f"{result.width}x{result.height}"}


def bench_projection(width: int, height: int, device: torch.device, repeat: int = 10) -> tuple[int, float]:
    intr = intrinsics_from_fov(height, width, xfov=XFOV)
    proj = VR180Projector(intr, vr180_eye_size(intr), device)
    img = torch.randint(0, 255, (height, width, 3), dtype=torch.uint8, device=device)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        proj.project(img)
        t0 = time.perf_counter()
        for _ in range(repeat):
            proj.project(img)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return proj.size, (time.perf_counter() - t0) / repeat
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1280x720", help="WxH of the generated clip")
    parser.add_argument("--frames", type=int, default=20, help="frames of the generated clip")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.lower().split("x"))
    device = torch.device(args.device)
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, {args.frames} frames at {width}x{height}, "
          f"xfov {XFOV:g}, device {device}")
    with tempfile.TemporaryDirectory() as tmp:
        colour, depth = make_clip(Path(tmp), width, height, args.frames)
        print("| format | codec | output | fps | CPU ms/frame |")
        print("| --- | --- | --- | --- | --- |")
        for fmt, codec in CASES:
            r = bench_job(colour, depth, Path(tmp) / f"out_{fmt}_{codec}.mp4", fmt, codec, device)
            print(f"| {fmt} | {codec} | {r['size']} | {r['fps']:.2f} | {r['cpu_ms']:.0f} |", flush=True)
    side, seconds = bench_projection(width, height, device)
    print(f"VR180 re-projection alone: {1000 * seconds:.1f} ms per {side}x{side} eye (one torch thread)")


if __name__ == "__main__":
    main()

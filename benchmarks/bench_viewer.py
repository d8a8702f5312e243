"""Benchmark of the 3D viewer's per-frame work at 1280x720 (or --width/--height).

Measures (median of --repeat runs, milliseconds):
  * numpy: back-projection into the viewer frame + vertex colours (into preallocated buffers)
  * numpy: remove_edges triangle mask + gathering the kept triangles
  * mesh update: GeometryBuilder.update, i.e. numpy + Open3D buffers (what the viewer does per frame),
    for the mesh, the mesh with --remove_edges, and the point cloud
  * decode: FrameSource.get of the next frame (FFV1 depth + H.264 colour, unpacking)
  * render (with --render): one offscreen frame with the legacy renderer (software GL here)

Run: python -m benchmarks.bench_viewer [--render]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mvda.ops import depth_mesh
from mvda.apps import view as depth_viewer
from depth_codec import DepthVideoWriter
from mvda.ops.geometry import intrinsics_from_fov
from mvda.io.video import VideoWriter


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (allocations, caches)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def synthetic_frame(height: int, width: int, i: int = 0) -> depth_viewer.Frame:
    """Frame ``i``, (height, width) pixels: a smooth slanted surface with waves (metres), a box in front (a
    discontinuity) and a smooth colour image."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 2.0 + 2.0 * v / height + 0.3 * np.sin((u + 4 * i) / 50.0)
    depth[height // 4: height // 2, width // 3: width // 2] = 1.2
    rgb = np.stack([(u / 5 + i) % 256, (v / 3) % 256, ((u + v) / 7) % 256], axis=-1).astype(np.uint8)
    return depth_viewer.Frame(i, depth.astype(np.float32), rgb)


def report(label: str, ms: float) -> None:
    print(f"{label:<44s}{ms:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--render", action="store_true", help="also time offscreen rendering")
    args = parser.parse_args()
    w, h, repeat = args.width, args.height, args.repeat
    intr = intrinsics_from_fov(h, w, xfov=60.0)
    frame = synthetic_frame(h, w)
    n = w * h
    print(f"{w}x{h}: {n} vertices, {depth_mesh.num_grid_triangles(h, w)} triangles")

    start = time.perf_counter()
    depth_mesh.grid_triangles.cache_clear()
    depth_mesh.grid_triangles(h, w)
    report("triangle index array (once per resolution)", (time.perf_counter() - start) * 1000)

    verts, cols = np.empty((n, 3)), np.empty((n, 3))

    def numpy_update() -> None:
        depth_mesh.mesh_vertices(frame.depth, intr, out=verts)
        depth_mesh.vertex_colors(frame.color, out=cols)

    report("numpy vertices + colours", timed(numpy_update, repeat))
    report("numpy remove_edges mask + kept triangles",
           timed(lambda: depth_mesh.kept_triangles(frame.depth), repeat))

    for label, kwargs in (("mesh", {}), ("mesh --remove_edges", {"remove_edges": True}),
                          ("point cloud", {"point_cloud": True}),
                          ("point cloud --remove_edges", {"point_cloud": True, "remove_edges": True})):
        builder = depth_viewer.GeometryBuilder(intr, 6.0, **kwargs)
        report(f"mesh update ({label})", timed(lambda: builder.update(frame), repeat))

    with tempfile.TemporaryDirectory() as tmp:
        depth_path, color_path = Path(tmp) / "d_depth.mkv", Path(tmp) / "c.mp4"
        frames = repeat + 2
        with DepthVideoWriter(depth_path, w, h, 30) as dw, VideoWriter(color_path, w, h, 30) as cw:
            for i in range(frames):
                moving = synthetic_frame(h, w, i)
                dw.write(moving.depth)
                cw.write(moving.color)
        with depth_viewer.FrameSource(depth_path, color_path) as source:
            counter = iter(range(frames))
            report("decode next frame (FFV1 depth + H.264)", timed(lambda: source.get(next(counter)), repeat))

    if args.render:
        renderer = depth_viewer.LegacyRenderer(h, w)
        builder = depth_viewer.GeometryBuilder(intr, 6.0)
        pose = depth_viewer.resolve_pose(frame.depth)
        geometry = builder.update(frame)
        report("offscreen render, legacy (per frame)",
               timed(lambda: renderer.render(geometry, intr, pose, 6.0), max(3, repeat // 5)))
        renderer.close()


if __name__ == "__main__":
    main()

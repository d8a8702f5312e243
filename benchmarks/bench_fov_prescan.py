"""What ``--fov auto`` with ``--scene_cuts auto`` adds for keyframes per shot: the decode-only pre-scan.

The converter needs the field of view before the depth file opens, so with ``--scene_cuts auto`` it
finds the shots first by a pass that only decodes the video and feeds each frame's thumbnail to the cut
detector (:func:`mvda.apps.convert.prescan_cuts`). This measures that pass on a synthetic H.264 clip
(1280x720 by default, one cut in the middle, ``benchmarks.bench_scene_cuts.moving_clip`` re-encoded
with libx264 at its defaults, as a typical input) against decoding the same clip alone, in process CPU
seconds (all threads) and wall seconds, the median of ``--repeats`` runs after a warm-up, per frame.

The share of a default conversion is printed against the lower bound of its per-frame cost measured by
``benchmarks.bench_fov`` (DA-V2 vitl at input 518, 36.07 CPU-s per frame on the 2-core VM; the default
conversion also runs VDA vitl on every frame), i.e. an upper bound of the share.

Example (about a minute on a 2-core VM)::

    nice python -m benchmarks.bench_fov_prescan
    nice python -m benchmarks.bench_fov_prescan --frames 60 --height 1080 --width 1920
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.bench_fov import timed

#: DA-V2 vitl ``infer_images`` at input 518, CPU-s per frame (benchmarks/RESULTS.md, bench_fov).
DEFAULT_FRAME_CPU_S = 36.07


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=120, help="frames of the clip (default 120)")
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frame_cpu_s", type=float, default=DEFAULT_FRAME_CPU_S,
                   help="a default conversion's CPU-s per frame to compare with (default: DA-V2 vitl at 518)")
    return p


def h264_clip(folder: Path, frames: int, height: int, width: int) -> Path:
    """``moving_clip`` (lossless) re-encoded as H.264 (libx264 defaults), 30 fps."""
    from benchmarks.bench_scene_cuts import moving_clip
    from mvda.io.video import VideoReader, VideoWriter

    lossless = moving_clip(folder / "clip.mkv", frames, height, width)
    path = folder / "clip.mp4"
    with VideoReader(lossless) as reader, VideoWriter(path, width, height, 30) as writer:
        for frame in reader:
            writer.write(frame)
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mvda.apps.convert import ConvertOptions, prescan_cuts
    from mvda.io.video import VideoReader

    with tempfile.TemporaryDirectory() as tmp:
        clip = h264_clip(Path(tmp), args.frames, args.height, args.width)
        options = ConvertOptions()
        found: list = []

        def decode() -> None:
            with VideoReader(clip) as reader:
                for _ in reader:
                    pass

        def scan() -> None:
            found.append(prescan_cuts(clip, options))

        decode_cpu, decode_wall = timed(decode, args.repeats)
        scan_cpu, scan_wall = timed(scan, args.repeats)
    n = args.frames
    result = {
        "clip": f"{args.width}x{args.height} H.264, {n} frames",
        "cuts_found": found[-1][0], "output_frames": found[-1][1],
        "decode_ms_per_frame": {"cpu": 1e3 * decode_cpu / n, "wall": 1e3 * decode_wall / n},
        "prescan_ms_per_frame": {"cpu": 1e3 * scan_cpu / n, "wall": 1e3 * scan_wall / n},
        "prescan_share_of_default_conversion_pct": 100 * scan_cpu / n / args.frame_cpu_s,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

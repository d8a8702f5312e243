"""Benchmark of issue 14: what scene cut detection costs, and what --resume saves.

1. ``detector``: the detector alone (:class:`mvda.ops.scene_cuts.CutDetector`) on decoded-size RGB
   frames (1920x1080 and 1280x720 by default): milliseconds per frame.
2. ``convert``: the same conversion of a synthetic clip with ``--scene_cuts off`` and ``auto``
   (vits networks with procedural weights, ``--input_size`` 518 by default, as the default
   conversion; vitl, the default model, only makes the networks slower and the share of the cut
   detection smaller): wall seconds of each, and the ``cuts`` stage's seconds (time spent in the
   detector on the decode thread) as a share of the conversion.
3. ``resume``: a long clip converted with ``--resume`` (``--part_seconds`` short), stopped after
   ``--stop_at`` of its parts, then resumed; reports the resumed run's seconds against a complete
   run's: the saving of resuming instead of starting again (the resumed run decodes the finished part
   again, for the cut detector, but runs no network on it).

4. ``state``: the size of what ``--resume`` keeps besides the parts, at the first part's end (after the
   first 32-frame window) of a 720p clip: ``state.pt`` (rolling fit) and the first pass's ``pass1.pt``
   and ``pass1.f16`` per frame (``--fit global``), with ``--state_encoder`` (vitl by default, the
   default model) at ``--input_size`` 518. Slow on a CPU (one vitl window at 518).

5. ``remux``: what writing the depth file once saves: the remux (packets copied) a depth file with cuts
   took before the cut list went into room reserved in its header, timed on a 1080p FFV1 depth file
   (``--remux_frames`` frames of a smooth moving depth), in ms per frame and MB per frame.

Example (2-core VM, about 10 minutes when quiet)::

    nice python -m benchmarks.bench_scene_cuts --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--sizes", default="1080x1920,720x1280", help="detector frame sizes HxW, comma-separated")
    p.add_argument("--frames", type=int, default=40, help="frames of the conversion comparison (default 40)")
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--input_size", type=int, default=518, help="network input size of the comparison (default 518)")
    p.add_argument("--resume_frames", type=int, default=300, help="frames of the resume clip (default 300)")
    p.add_argument("--resume_size", type=int, default=140, help="network input size of the resume runs (default 140)")
    p.add_argument("--part_seconds", type=float, default=4.0, help="part length of the resume runs (default 4 s)")
    p.add_argument("--stop_at", type=float, default=0.75, help="stop the first resume run after this share of parts")
    p.add_argument("--modes", nargs="+", default=["off", "auto"], choices=["off", "auto"],
                   help="conversion runs, in order (default: off auto; e.g. off auto off auto to alternate)")
    p.add_argument("--state_encoder", default="vitl", help="VDA encoder of the state size runs (default vitl)")
    p.add_argument("--state_fits", nargs="+", default=["rolling", "global"], choices=["rolling", "global"],
                   help="fits of the state size runs (default both)")
    p.add_argument("--remux_frames", type=int, default=120, help="frames of the remux timing (default 120)")
    p.add_argument("--skip", nargs="*", default=[], choices=["detector", "convert", "resume", "state", "remux"])
    return p


def moving_clip(path: Path, frames: int, height: int, width: int, fps: int = 30) -> Path:
    """A synthetic lossless clip: a smooth texture panning with a lighting ramp, one cut in the middle."""
    from mvda.io.video import VideoWriter

    offsets = np.random.default_rng(0).uniform(0, 6.28, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with VideoWriter(path, width, height, fps, codec="ffv1", pix_fmt="bgr0") as writer:
        for i in range(frames):
            shot = 0 if i < frames // 2 else 1
            phase = np.full(3, 2.0 * shot) + offsets
            t = i * 0.05
            r = 128 + 90 * np.sin(xx / (37.0 + 20 * shot) + t + phase[0])
            g = 128 + 90 * np.cos(yy / (23.0 + 9 * shot) - 0.7 * t + phase[1])
            b = 110 + 60 * np.sin((xx + yy) / 41.0 + phase[2]) + 30 * (i % 100) / 100
            writer.write(np.clip(np.stack([r, g, b], -1) * (0.6 + 0.4 * i / frames), 0, 255).astype(np.uint8))
    return path


def packed(path: Path) -> list[np.ndarray]:
    from mvda.io.video import VideoReader

    with VideoReader(path) as reader:
        return list(reader)


def bench_detector(sizes: list[tuple[int, int]]) -> dict:
    from mvda.ops.scene_cuts import CutDetector

    rng = np.random.default_rng(0)
    out = {}
    for h, w in sizes:
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
        det = CutDetector()
        n = 100
        start = time.perf_counter()
        for i in range(n):
            det.push(i, frames[i % 4])
        out[f"{h}x{w}"] = round(1000 * (time.perf_counter() - start) / n, 3)
    return {"ms_per_frame": out}


def models_for(folder: Path, device):
    from benchmarks.bench_convert import load_models, make_checkpoints

    return load_models(make_checkpoints(folder, "vits", "vits"), device)


def bench_convert(args, folder: Path, models, device) -> dict:
    import mvda.apps.convert as cp

    clip = moving_clip(folder / "cmp.mkv", args.frames, args.height, args.width)
    result = {}
    for mode in args.modes:  # the last run of each mode is reported
        timer = cp.StageTimer(device)
        options = cp.ConvertOptions(input_size=args.input_size, device=device, progress=False, scene_cuts=mode)
        r = cp.convert_video(clip, folder / mode, models, options, timer=timer)
        result[mode] = {"seconds": round(r.seconds, 2), "cuts_stage_seconds": round(timer.seconds.get("cuts", 0.0), 3),
                        "shots": len(r.cuts) + 1, "frames": r.frames}
    result["cuts_share_percent"] = round(100 * result["auto"]["cuts_stage_seconds"] / result["auto"]["seconds"], 3)
    result["wall_difference_percent"] = round(
        100 * (result["auto"]["seconds"] - result["off"]["seconds"]) / result["off"]["seconds"], 2)
    return result


def bench_resume(args, folder: Path, models, device) -> dict:
    import mvda.apps.convert as cp
    import mvda.apps.resume as resume

    clip = moving_clip(folder / "long.mkv", args.resume_frames, 270, 480)
    options = cp.ConvertOptions(input_size=args.resume_size, device=device, progress=False, resume=True,
                                part_seconds=args.part_seconds)
    full = cp.convert_video(clip, folder / "full", models, options)
    parts_total = None
    original = resume.PartsFolder.finish_part

    class Stop(Exception):
        pass

    def counting(self, *a, **k):
        original(self, *a, **k)
        if parts_total is not None and len(self.parts) >= parts_total:
            raise Stop

    # Number of parts of a complete run: one part per cut plus the long-shot splits; stop after stop_at of them.
    fps = 30
    per_part = args.part_seconds * fps
    parts_total = max(1, int(args.stop_at * (args.resume_frames / per_part)))
    resume.PartsFolder.finish_part = counting
    start = time.perf_counter()
    try:
        cp.convert_video(clip, folder / "interrupted", models, options)
    except Stop:
        pass
    first = time.perf_counter() - start
    resume.PartsFolder.finish_part = original
    manifest = json.loads((folder / "interrupted" / "long_depth.mkv.parts" / "manifest.json").read_text())
    done = sum(p["frames"] for p in manifest["parts"])
    resumed = cp.convert_video(clip, folder / "interrupted", models, options)
    same = all(np.array_equal(a, b) for a, b in zip(packed(folder / "full" / "long_depth.mkv"),
                                                     packed(folder / "interrupted" / "long_depth.mkv"), strict=True))
    return {
        "frames": full.frames, "full_seconds": round(full.seconds, 2), "interrupted_after_frames": done,
        "interrupted_run_seconds": round(first, 2), "resumed_seconds": round(resumed.seconds, 2),
        "saving_percent": round(100 * (1 - resumed.seconds / full.seconds), 1), "identical_file": same,
    }


def bench_state(args, folder: Path, device) -> dict:
    import torch

    import mvda.apps.convert as cp
    import mvda.apps.resume as resume
    from benchmarks.bench_convert import load_models, make_checkpoints

    models = load_models(make_checkpoints(folder, args.state_encoder, "vits"), device)
    clip = moving_clip(folder / "state.mkv", 40, args.height, args.width)

    class Stop(Exception):
        pass

    def stop(original):
        def stopped(self, *a, **k):
            original(self, *a, **k)
            raise Stop
        return stopped

    result = {"encoder": args.state_encoder, "input_size": args.input_size, "size": [args.height, args.width]}
    for fit, method, files in (("rolling", "finish_part", ["state.pt"]),
                               ("global", "save_pass1", ["pass1.pt", "pass1.f16"])):
        if fit not in args.state_fits:
            continue
        original = getattr(resume.PartsFolder, method)
        setattr(resume.PartsFolder, method, stop(original))
        options = cp.ConvertOptions(input_size=args.input_size, device=device, progress=False, resume=True,
                                    part_seconds=0.5, fit=fit, fov="off", scene_cuts="off")
        try:
            cp.convert_video(clip, folder / fit, models, options)
        except Stop:
            pass
        finally:
            setattr(resume.PartsFolder, method, original)
        parts = folder / fit / "state_depth.mkv.parts"
        for name in files:
            size = (parts / name).stat().st_size
            result[f"{fit}_{name}_MB"] = round(size / 1e6, 1)
        if fit == "global":
            frames = int(torch.load(parts / "pass1.pt", weights_only=True)["written"])
            result["global_store_MB_per_frame"] = round((parts / "pass1.f16").stat().st_size / frames / 1e6, 3)
    return result


def bench_remux(args, folder: Path) -> dict:
    from fractions import Fraction

    from depth_codec import DepthVideoWriter
    from mvda.io.remux import join_videos

    height, width = 1080, 1920
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    path = folder / "remux_depth.mkv"
    with DepthVideoWriter(path, width, height, 30) as writer:
        for i in range(args.remux_frames):
            writer.write(2.0 + 1.5 * np.sin(xx / 211.0 + i * 0.05) * np.cos(yy / 157.0 - i * 0.03))
    start = time.perf_counter()
    join_videos([path], folder / "remuxed_depth.mkv", Fraction(30), metadata={"scene_cuts": "10,20"})
    seconds = time.perf_counter() - start
    return {"frames": args.remux_frames, "size": [height, width],
            "MB_per_frame": round(path.stat().st_size / args.remux_frames / 1e6, 3),
            "remux_ms_per_frame": round(1000 * seconds / args.remux_frames, 3)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    report: dict = {"device": "cpu", "threads": torch.get_num_threads()}
    if "detector" not in args.skip:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        report["detector"] = bench_detector(sizes)
        print(json.dumps({"detector": report["detector"]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not {"convert", "resume"} <= set(args.skip):
            models = models_for(folder, device)
        if "convert" not in args.skip:
            report["convert"] = bench_convert(args, folder, models, device)
            print(json.dumps({"convert": report["convert"]}), flush=True)
        if "resume" not in args.skip:
            report["resume"] = bench_resume(args, folder, models, device)
            print(json.dumps({"resume": report["resume"]}), flush=True)
        if "remux" not in args.skip:
            report["remux"] = bench_remux(args, folder)
            print(json.dumps({"remux": report["remux"]}), flush=True)
        if "state" not in args.skip:
            report["state"] = bench_state(args, folder, device)
            print(json.dumps({"state": report["state"]}), flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

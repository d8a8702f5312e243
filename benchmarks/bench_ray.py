"""Benchmark of ``video_metric_convert.py --ray local`` against the serial run on the same clips.

Four short clips (copies of ``--clip``, first ``--frames`` frames each) are converted three times, each
in a fresh process, wall time measured from outside (so Ray's start, the workers' model loading and
shutdown are included):

* ``serial``: the ordinary run, torch with ``--threads`` threads;
* ``ray_1cpu_workers``: ``--ray local --ray_cpus_per_worker 1``: one single-threaded worker per core;
* ``ray_<cores>cpu_worker``: ``--ray local --ray_cpus_per_worker <cores>``: one worker using every core.

Reports frames/s, the sum of the per-video seconds (conversion alone, from the summary lines) and
whether the depth files are byte-identical to the serial run's (expected only where the thread counts
match: serial with ``--threads 1`` against one-core workers). Networks: vits with procedural weights
(``tests/procedural.py``, same speed as the released ones) unless checkpoints are given. On a GPU
machine ``--device cuda`` and ``--ray_workers N`` give frames/s with 1 and with all GPUs.

Example (2-core VM, 2.5 to 12 minutes depending on the load)::

    nice python -m benchmarks.bench_ray --clip assets/big_buck_bunny_3s.mp4 --frames 32 --input_size 140 --threads 1

``--split``: one long video instead, ``--shots`` shots of ``--frames`` frames each (the clip, a synthetic
shot, the clip upside down, another synthetic shot, ...; lossless FFV1), converted ``serial`` (``--threads``)
and ``ray_split`` (``--ray local --ray_cpus_per_worker 1 --ray_split_seconds`` one shot, so each shot is a
piece and the pieces spread over one single-threaded worker per core). Also reports the cost of a
decode-only pass over the clip, which bounds what the pieces spend decoding and skipping the frames before
their start (the later a piece starts, the more it skips) and what the plan's cut scan costs::

    nice python -m benchmarks.bench_ray --split --frames 32 --input_size 140 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def procedural_checkpoints(folder: Path) -> dict[str, Path]:
    """vits checkpoints with procedural weights (as the tests use)."""
    import torch

    from depth_anything_v2 import MODEL_CONFIGS as DAV2_CONFIGS, DepthAnythingV2
    from tests.procedural import write_procedural_checkpoint
    from video_depth_anything import MODEL_CONFIGS as VDA_CONFIGS, VideoDepthAnything

    with torch.device("meta"):
        vda = VideoDepthAnything(**VDA_CONFIGS["vits"])
        dav2 = DepthAnythingV2(**DAV2_CONFIGS["vits"], max_depth=20.0)
    return {"vda": write_procedural_checkpoint(vda, folder / "video_depth_anything_vits.pth"),
            "dav2": write_procedural_checkpoint(dav2, folder / "depth_anything_v2_metric_hypersim_vits.pth")}


def run(argv: list[str], threads: int) -> tuple[float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join(
        [str(REPO), str(REPO / "Depth-Anything-V2"), str(REPO / "Video-Depth-Anything")]))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "video_metric_convert.py"), *argv], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(REPO / "assets" / "big_buck_bunny_3s.mp4"))
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--input_size", type=int, default=140)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="serial run's torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vda_checkpoint", default=None)
    parser.add_argument("--metric_checkpoint", default=None)
    parser.add_argument("--ray_workers", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--split", action="store_true", help="one long video of --shots shots, split over the workers")
    parser.add_argument("--shots", type=int, default=4)
    args = parser.parse_args(argv)
    if args.split:
        return split_main(args)

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        ck = checkpoints(args, work)
        clips = work / "clips"
        clips.mkdir()
        for k in range(args.clips):
            shutil.copy(args.clip, clips / f"clip{k}{Path(args.clip).suffix}")
        common = ["--input_video", str(clips), "--encoder", "vits", "--metric_encoder", "vits",
                  "--input_size", str(args.input_size), "--max_frames", str(args.frames), "--device", args.device,
                  "--vda_checkpoint", str(ck["vda"]), "--metric_checkpoint", str(ck["dav2"]), "--no_progress",
                  "--fov", "off"]
        extra = ["--ray_workers", str(args.ray_workers)] if args.ray_workers else []
        runs = {
            "serial": ([], args.threads),
            "ray_1cpu_workers": (["--ray", "local", "--ray_cpus_per_worker", "1", *extra], 1),
            f"ray_{cores}cpu_worker": (["--ray", "local", "--ray_cpus_per_worker", str(cores), *extra], cores),
        }
        figures: dict[str, dict] = {}
        outputs: dict[str, Path] = {}
        for name, (flags, threads) in runs.items():
            out = work / name
            seconds, stdout = run([*common, "--output_dir", str(out), *flags], threads)
            per_video = [float(s) for s in re.findall(r" in ([0-9.]+) s \(", stdout)]
            frames = sum(int(n) for n in re.findall(r": ([0-9]+) frames ", stdout))
            outputs[name] = out
            figures[name] = {"wall_s": round(seconds, 2), "frames": frames, "fps": round(frames / seconds, 3),
                             "sum_video_s": round(sum(per_video), 2),
                             "identical_to_serial": all(
                                 (out / p.name).read_bytes() == p.read_bytes()
                                 for p in sorted(outputs["serial"].iterdir()))}
            print(f"{name:>20}: {seconds:7.1f} s wall, {frames} frames, {frames / seconds:6.2f} frames/s, "
                  f"videos' own seconds {sum(per_video):6.1f}, bytes as serial: {figures[name]['identical_to_serial']}",
                  flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "cores": cores, "runs": figures}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def long_clip(clip: Path, path: Path, frames: int, shots: int) -> Path:
    """``shots`` shots of ``frames`` frames: the clip's first frames, a synthetic shot, the clip upside
    down, another synthetic shot, ... (lossless), so that every shot change is a cut."""
    import numpy as np

    from tests.helpers import read_frames, synthetic_frames, write_lossless_video

    source = np.stack(read_frames(clip)[:frames])
    height, width = source.shape[1:3]
    parts = []
    for k in range(shots):
        if k % 2:
            parts.append(synthetic_frames(frames, height, width, seed=7 + k))
        else:
            parts.append(source[:, ::-1] if k % 4 == 2 else source)
    return write_lossless_video(path, np.concatenate(parts), fps=25)


def decode_seconds(path: Path) -> tuple[float, int]:
    """Seconds of a decode-only pass over ``path`` and its frames."""
    from mvda.io.video import VideoReader

    start = time.perf_counter()
    with VideoReader(path) as reader:
        frames = sum(1 for _ in reader)
    return time.perf_counter() - start, frames


def checkpoints(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """The given checkpoints, or procedural vits ones written in ``work``."""
    if args.vda_checkpoint and args.metric_checkpoint:
        return {"vda": Path(args.vda_checkpoint), "dav2": Path(args.metric_checkpoint)}
    return procedural_checkpoints(work / "ck")


def split_main(args: argparse.Namespace) -> int:
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench_ray_split_"))
    try:
        ck = checkpoints(args, work)
        clip = long_clip(Path(args.clip), work / "long.mkv", args.frames, args.shots)
        decode_s, frames = decode_seconds(clip)
        print(f"decode-only pass: {decode_s:.2f} s for {frames} frames ({1000 * decode_s / frames:.1f} ms a frame)",
              flush=True)
        common = ["--input_video", str(clip), "--encoder", "vits", "--metric_encoder", "vits",
                  "--input_size", str(args.input_size), "--device", args.device, "--vda_checkpoint", str(ck["vda"]),
                  "--metric_checkpoint", str(ck["dav2"]), "--no_progress", "--fov", "off"]
        shot_seconds = args.frames / 25
        runs = {
            "serial": ([], args.threads),
            "ray_split": (["--ray", "local", "--ray_cpus_per_worker", "1", "--ray_split_seconds",
                           f"{0.9 * shot_seconds:g}", "-v"], 1),
        }
        figures: dict[str, dict] = {"decode": {"seconds": round(decode_s, 2), "frames": frames}}
        for name, (flags, threads) in runs.items():
            out = work / name
            seconds, stdout = run([*common, "--output_dir", str(out), *flags], threads)
            video_s = float(re.findall(r" in ([0-9.]+) s \(", stdout)[0])
            shots = re.findall(r", ([0-9]+) shots ->", stdout)
            from mvda.io.remux import video_content

            # The serial file is written once (cut list in reserved room), the split one joined: their
            # headers differ; their tags and FFV1 packets must not.
            same = video_content(out / "long_depth.mkv") == video_content(work / "serial" / "long_depth.mkv")
            figures[name] = {"wall_s": round(seconds, 2), "video_s": video_s, "frames": frames,
                             "fps": round(frames / seconds, 3), "shots": int(shots[0]) if shots else 1,
                             "identical_to_serial": same}
            print(f"{name:>10}: {seconds:7.1f} s wall, {frames} frames, {frames / seconds:6.2f} frames/s, video's own "
                  f"seconds {video_s:6.1f}, {figures[name]['shots']} shots, packets and tags as serial: {same}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "cores": cores, "runs": figures}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

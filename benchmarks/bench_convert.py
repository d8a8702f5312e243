"""Benchmark of video_metric_convert's pipeline: frames/s, peak memory and where the time goes.

Two parts, both on the same clip and models (vits, procedural pf-v1 weights unless checkpoints are
given, which does not change the speed):

1. Length sweep (default 60, 300, 600 frames, the default configuration: rolling fit, DA-V2 on
   every frame, fp32). Each length runs in a fresh process so that its peak RSS is its own. Reports
   frames/s, peak RSS, the split of time between decode, VDA, DA-V2, fit and encode, and checks that
   the peak RSS at the longest length stays within 1.25x of the shortest (memory does not grow with
   the video length).
2. Speed comparison in one process, side by side: the original configuration (DA-V2 on every frame,
   fp32) against the fast CPU configuration (``--metric_every 4``, bf16 autocast). Reports seconds
   per frame of each, the speed-up (target: 3x) and the median relative difference of the decoded
   depth (target: within 2 %). ``--ablation`` also runs each change alone.

3. ``--overlap``: how well decode, compute and encode overlap. With the networks almost free
   (``--input_size 14``, vits procedural weights) the conversion of a synthetic 1280x720 clip
   (``--overlap_frames``, default 120) is pure video I/O plus the per-frame work at full resolution
   (upsampling, fit, packing). It is timed against a one-thread baseline in the same run: decode the
   clip and write an FFV1 (bgr0) video of the same size (``baseline``: the decoded RGB frames through
   ``VideoWriter``; ``baseline_depth``: a depth map per frame through ``DepthVideoWriter``, i.e. the
   same sanitize/pack/encode as the converter). Reports ``ratio = convert time / baseline time``
   (goal <= 1.5x) and the converter's per-stage seconds (the stages run on different threads, so they
   overlap and may sum to more than the wall time).

The clip is ``--clip`` (looped to the needed length, e.g. the bundled sample in assets/) or a
synthetic moving scene. On a shared 2-core machine use ``--threads 1``: with 2 OpenMP threads and
other load, small kernels slowed down by up to 10x in our runs. Examples (2-core VM, 1 thread)::

    # sweep 60/300/600 frames at input 140 (about 11 min)
    python -m benchmarks.bench_convert --clip assets/big_buck_bunny_3s.mp4 --skip_compare --threads 1
    # original vs fast at input 266 with the ablations (about 8 min)
    python -m benchmarks.bench_convert --clip assets/big_buck_bunny_3s.mp4 --skip_sweep --threads 1 --ablation
    # decode/compute/encode overlap at 1280x720, networks almost free (about 1 min)
    python -m benchmarks.bench_convert --overlap
    # original vs fast at the default input size 518 (about 15 min)
    python -m benchmarks.bench_convert --clip assets/big_buck_bunny_3s.mp4 --skip_sweep --threads 1 --compare_size 518
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

PRESETS = {
    "original": {"metric_every": 1, "precision": "fp32"},
    "fast": {"metric_every": 4, "precision": "bf16"},
    "every4_fp32": {"metric_every": 4, "precision": "fp32"},
    "every1_bf16": {"metric_every": 1, "precision": "bf16"},
    "original_no_reuse": {"metric_every": 1, "precision": "fp32", "reuse_keyframe_features": False},
    "fast_no_reuse": {"metric_every": 4, "precision": "bf16", "reuse_keyframe_features": False},
}
STAGES = ("decode", "vda", "dav2", "fit", "encode")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default=None, help="source clip (looped as needed); default: synthetic frames")
    p.add_argument("--height", type=int, default=270, help="synthetic clip height (default 270)")
    p.add_argument("--width", type=int, default=480, help="synthetic clip width (default 480)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 300, 600], help="sweep lengths in frames")
    p.add_argument("--input_size", type=int, default=140, help="network input size of the sweep (default 140)")
    p.add_argument("--compare_size", type=int, default=266, help="network input size of the comparison (default 266)")
    p.add_argument("--compare_frames", type=int, default=66, help="frames of the comparison (default 66: 3 windows)")
    p.add_argument("--encoder", default="vits", choices=["vits", "vitb", "vitl"],
                   help="VDA encoder of the sweep (default vits)")
    p.add_argument("--metric_encoder", default="vits", choices=["vits", "vitb", "vitl"],
                   help="DA-V2 metric encoder of the sweep (default vits)")
    p.add_argument("--compare_encoder", default=None, choices=["vits", "vitb", "vitl"],
                   help="VDA encoder of the comparison (default: --encoder; the original tool used vitl)")
    p.add_argument("--compare_metric_encoder", default=None, choices=["vits", "vitb", "vitl"],
                   help="DA-V2 metric encoder of the comparison (default: --metric_encoder; the original used vitl)")
    p.add_argument("--repeats", type=int, default=1, help="comparison rounds (each runs every configuration once)")
    p.add_argument("--presets", nargs="+", default=None, choices=sorted(PRESETS),
                   help="configurations to compare (default: original fast, plus the ablations with --ablation)")
    p.add_argument("--ablation", action="store_true",
                   help="also time metric_every 4 alone, bf16 alone, and both configurations without the VDA "
                        "keyframe feature reuse")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--vda_checkpoint", default=None, help="real vits checkpoint (default: procedural weights)")
    p.add_argument("--metric_checkpoint", default=None, help="real DA-V2 metric vits checkpoint")
    p.add_argument("--overlap", action="store_true",
                   help="only the overlap figure: convert vs decode + FFV1 write in one thread (see above)")
    p.add_argument("--overlap_height", type=int, default=720, help="overlap clip height (default 720)")
    p.add_argument("--overlap_width", type=int, default=1280, help="overlap clip width (default 1280)")
    p.add_argument("--overlap_frames", type=int, default=120, help="overlap clip length (default 120)")
    p.add_argument("--overlap_input_size", type=int, default=14, help="network input size of the overlap run")
    p.add_argument("--skip_sweep", action="store_true")
    p.add_argument("--skip_compare", action="store_true")
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    p.add_argument("--workdir", default=None, help="keep clips and outputs here (default: a temp folder)")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------------------------------------------
# inputs


def synthetic_frame(i: int, height: int, width: int) -> np.ndarray:
    """A smooth moving scene: gradients, a drifting wave and two moving discs (uint8 RGB)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = i / 30.0
    r = 120 + 80 * np.sin(xx / 37.0 + t) * np.cos(yy / 53.0)
    g = 60 + 150 * yy / height
    b = 100 + 60 * np.sin((xx + yy) / 71.0 - 2 * t)
    img = np.stack([r, g, b], -1)
    for k, (radius, colour) in enumerate(((height / 5, (230, 40, 40)), (height / 7, (30, 200, 240)))):
        cx = width * (0.5 + 0.35 * np.sin(t * (1 + k) + k))
        cy = height * (0.5 + 0.3 * np.cos(t * (1.3 + k)))
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def make_clip(path: Path, frames: int, args: argparse.Namespace) -> Path:
    """Write ``frames`` frames (H.264, crf 18) from ``--clip`` looped, or synthetic ones."""
    from mvda.io.video import VideoReader, VideoWriter

    if path.exists():
        return path
    if args.clip:
        with VideoReader(args.clip) as reader:
            height, width, fps = reader.height, reader.width, reader.fps
        height, width = height - height % 2, width - width % 2

        def source():
            while True:
                with VideoReader(args.clip) as reader:
                    for frame in reader:
                        yield frame[:height, :width]
    else:
        height, width, fps = args.height, args.width, args.fps

        def source():
            i = 0
            while True:
                yield synthetic_frame(i, height, width)
                i += 1
    frames_iter = source()
    with VideoWriter(path, width, height, fps, codec="libx264", options={"crf": "18", "preset": "veryfast"}) as writer:
        for _ in range(frames):
            writer.write(next(frames_iter))
    return path


def make_synthetic_clip(path: Path, frames: int, height: int, width: int, fps: int) -> Path:
    """``frames`` synthetic frames (:func:`synthetic_frame`) as H.264 (crf 18), reused when present."""
    from mvda.io.video import VideoWriter

    if not path.exists():
        with VideoWriter(path, width, height, fps, codec="libx264",
                         options={"crf": "18", "preset": "veryfast"}) as writer:
            for i in range(frames):
                writer.write(synthetic_frame(i, height, width))
    return path


def make_checkpoints(folder: Path, encoder: str, metric_encoder: str) -> dict[str, Path]:
    """Procedural (pf-v1) checkpoints of the two networks in ``folder`` (reused when present)."""
    import torch

    from depth_anything_v2.dpt import MODEL_CONFIGS as DC
    from depth_anything_v2.dpt import DepthAnythingV2
    from tests.procedural import write_procedural_checkpoint
    from video_depth_anything.video_depth import MODEL_CONFIGS as VC
    from video_depth_anything.video_depth import VideoDepthAnything

    vda, dav2 = folder / f"vda_{encoder}.pth", folder / f"dav2_{metric_encoder}.pth"
    with torch.device("meta"):  # only the architecture is needed: no memory, no random init
        vda_model = VideoDepthAnything(**VC[encoder])
        dav2_model = DepthAnythingV2(**DC[metric_encoder], max_depth=20.0)
    if not vda.exists():
        write_procedural_checkpoint(vda_model, vda)
    if not dav2.exists():
        write_procedural_checkpoint(dav2_model, dav2)
    return {"vda": vda, "dav2": dav2, "encoder": encoder, "metric_encoder": metric_encoder}


# ---------------------------------------------------------------------------------------------------
# one conversion


def run_conversion(models, clip: Path, out_dir: Path, input_size: int, preset: str, device, max_len: int = -1) -> dict:
    import mvda.apps.convert as cp

    options = cp.ConvertOptions(input_size=input_size, device=device, progress=False, max_len=max_len,
                                dav2_batch=4 if device.type == "cuda" else 1, **PRESETS[preset])
    timer = cp.StageTimer(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = cp.convert_video(clip, out_dir, models, options, timer=timer)
    return {
        "preset": preset, "frames": result.frames, "seconds": result.seconds,
        "seconds_per_frame": result.seconds / result.frames, "fps": result.frames_per_second,
        "timings": {k: round(v, 3) for k, v in timer.seconds.items()}, "output": str(result.output),
        "metric_frames": result.metric_frames, "clipped_far": result.clamps.far,
        "size": [result.height, result.width], "input_size": input_size,
    }


def load_models(ckpt: dict, device):
    import mvda.apps.convert as cp

    return cp.load_models("vda+dav2", ckpt["encoder"], ckpt["metric_encoder"], "hypersim", device,
                          vda_checkpoint=ckpt["vda"], metric_checkpoint=ckpt["dav2"])


def child_main(config: dict) -> None:
    """Run one conversion in this fresh process and print its result (with peak RSS) as JSON."""
    import torch

    from mvda.device import resolve_device

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = resolve_device(config["device"])
    models = load_models(config["checkpoints"], device)
    rss_models = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = run_conversion(models, Path(config["clip"]), Path(config["out_dir"]), config["input_size"],
                         config["preset"], device, max_len=config["max_len"])
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    res["rss_after_model_load_mib"] = rss_models
    print("RESULT " + json.dumps(res), flush=True)


def median_relative_difference(path_a: str, path_b: str) -> dict:
    """Median and 95th percentile of ``|a - b| / a`` over all pixels of two decoded depth videos."""
    from depth_codec import DepthVideoReader

    rel: list[np.ndarray] = []
    with DepthVideoReader(path_a) as ra, DepthVideoReader(path_b) as rb:
        for a, b in zip(ra, rb):
            rel.append((np.abs(b.astype(np.float64) - a) / np.maximum(a, 1e-6)).ravel()[::7])
    r = np.concatenate(rel)
    return {"median": float(np.median(r)), "p95": float(np.percentile(r, 95)), "mean": float(r.mean())}


def io_baselines(clip: Path, out_dir: Path) -> dict:
    """Seconds of the one-thread I/O floors of a conversion of ``clip`` (see the module docstring)."""
    from depth_codec import DepthVideoWriter
    from mvda.io.video import VideoReader, VideoWriter, ffv1_settings

    out_dir.mkdir(parents=True, exist_ok=True)
    times = {}
    start = time.perf_counter()
    with VideoReader(clip) as reader:
        frames = sum(1 for _ in reader)
    times["decode_only"] = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    with VideoReader(clip) as reader:
        with VideoWriter(out_dir / "baseline.mkv", reader.width, reader.height, reader.fps, input_format="rgb24",
                         **ffv1_settings("bgr0")) as writer:
            for frame in reader:
                writer.write(frame)
    times["baseline"] = time.perf_counter() - start
    times["baseline_cpu"] = time.process_time() - cpu
    start = time.perf_counter()
    with VideoReader(clip) as reader:
        with DepthVideoWriter(out_dir / "baseline_depth.mkv", reader.width, reader.height, reader.fps,
                              max_depth=6.0) as writer:
            for frame in reader:  # a smooth-ish depth map per frame: 1-5 m from the green channel
                writer.write(1.0 + frame[..., 1].astype(np.float32) * np.float32(4.0 / 255.0))
    times["baseline_depth"] = time.perf_counter() - start
    times["frames"] = frames
    return times


def run_overlap(args: argparse.Namespace, work: Path, device) -> dict:
    """The overlap figure: best of ``--repeats`` rounds, convert and baselines alternating."""
    h, w, n = args.overlap_height, args.overlap_width, args.overlap_frames
    clip = make_synthetic_clip(work / f"overlap_{w}x{h}_{n}.mp4", n, h, w, args.fps)
    models = load_models(make_checkpoints(work, "vits", "vits"), device)
    rounds = []
    for _ in range(max(1, args.repeats)):
        base = io_baselines(clip, work / "overlap_baseline")
        cpu = time.process_time()
        res = run_conversion(models, clip, work / "overlap_convert", args.overlap_input_size, "original", device)
        cpu = time.process_time() - cpu  # CPU seconds of all threads: work done, whatever the overlap
        rounds.append({"convert": res["seconds"], "convert_cpu": cpu, "timings": res["timings"],
                       "frames": res["frames"], **base})
        print(f"overlap {w}x{h}, {res['frames']} frames, input {args.overlap_input_size}: convert "
              f"{res['seconds']:.2f} s ({res['fps']:.1f} frames/s, {cpu:.2f} CPU-s), decode + FFV1 write in one thread "
              f"{base['baseline']:.2f} s (depth writer {base['baseline_depth']:.2f} s, decode alone "
              f"{base['decode_only']:.2f} s): ratio {res['seconds'] / base['baseline']:.2f}x "
              f"({res['seconds'] / base['baseline_depth']:.2f}x the depth writer); stages "
              + ", ".join(f"{k} {v:.2f}s" for k, v in res["timings"].items()), flush=True)
    best = min(rounds, key=lambda r: r["convert"] / r["baseline"])
    ratio = best["convert"] / best["baseline"]
    print(f"overlap ratio {ratio:.2f}x ({'OK' if ratio <= 1.5 else 'above'} the 1.5x goal), "
          f"{best['convert'] / best['baseline_depth']:.2f}x the depth-writer baseline", flush=True)
    return {"size": [h, w], "input_size": args.overlap_input_size, "rounds": rounds, "best": best, "ratio": ratio,
            "ratio_depth": best["convert"] / best["baseline_depth"]}


def fmt_timings(t: dict) -> str:
    total = sum(t.get(s, 0.0) for s in STAGES) or 1.0
    return ", ".join(f"{s} {t.get(s, 0.0):.1f}s ({100 * t.get(s, 0.0) / total:.0f}%)" for s in STAGES)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args._child:
        child_main(json.loads(args._child))
        return 0
    import torch

    from mvda.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report: dict = {"device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        def checkpoints(encoder: str, metric_encoder: str) -> dict:
            ckpt = make_checkpoints(work, encoder, metric_encoder)
            if args.vda_checkpoint:
                ckpt["vda"] = Path(args.vda_checkpoint)
            if args.metric_checkpoint:
                ckpt["dav2"] = Path(args.metric_checkpoint)
            return ckpt
        if args.overlap:
            report["overlap"] = run_overlap(args, work, device)
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=2))
            return 0
        longest = max(args.lengths + [args.compare_frames])
        clip = make_clip(work / f"clip_{longest}.mp4", longest, args)
        print(f"clip {clip.name}: {longest} frames; device {device}, {torch.get_num_threads()} threads", flush=True)

        if not args.skip_sweep:
            ckpt = checkpoints(args.encoder, args.metric_encoder)
            print(f"sweep: VDA {args.encoder}, DA-V2 {args.metric_encoder}", flush=True)
            sweep = []
            for length in args.lengths:
                config = {"clip": str(clip), "out_dir": str(work / f"sweep_{length}"), "input_size": args.input_size,
                          "preset": "original", "device": args.device, "max_len": length,
                          "checkpoints": {k: str(v) for k, v in ckpt.items()}, "threads": args.threads}
                proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_convert", "--_child", json.dumps(config)],
                                      cwd=REPO, capture_output=True, text=True)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"sweep run with {length} frames failed")
                res = json.loads(lines[-1][len("RESULT "):])
                sweep.append(res)
                print(f"sweep {length:4d} frames {res['size'][1]}x{res['size'][0]} @ input {args.input_size}: "
                      f"{res['fps']:.2f} frames/s, peak RSS {res['peak_rss_mib']:.0f} MiB "
                      f"(after model load {res['rss_after_model_load_mib']:.0f} MiB); {fmt_timings(res['timings'])}",
                      flush=True)
            ratio = sweep[-1]["peak_rss_mib"] / sweep[0]["peak_rss_mib"]
            report["sweep"] = sweep
            report["rss_ratio"] = ratio
            print(f"peak RSS {sweep[-1]['frames']} / {sweep[0]['frames']} frames: {ratio:.3f}x "
                  f"({'OK' if ratio <= 1.25 else 'FAIL'}: limit 1.25x)", flush=True)

        if not args.skip_compare:
            enc = args.compare_encoder or args.encoder
            menc = args.compare_metric_encoder or args.metric_encoder
            models = load_models(checkpoints(enc, menc), device)
            report["compare_models"] = {"encoder": enc, "metric_encoder": menc}
            print(f"comparison: VDA {enc}, DA-V2 {menc}", flush=True)
            extra = ["every4_fp32", "every1_bf16", "original_no_reuse", "fast_no_reuse"] if args.ablation else []
            presets = ["original", "fast"] + [p for p in (args.presets or []) + extra if p not in ("original", "fast")]
            presets = list(dict.fromkeys(presets))
            runs: dict[str, list[dict]] = {p: [] for p in presets}
            for round_ in range(args.repeats):
                order = presets if round_ % 2 == 0 else presets[::-1]
                for preset in order:
                    res = run_conversion(models, clip, work / f"cmp_{preset}", args.compare_size, preset, device,
                                         max_len=args.compare_frames)
                    runs[preset].append(res)
                    print(f"{preset:12s} {res['frames']} frames @ input {args.compare_size}: "
                          f"{res['seconds_per_frame']:.3f} s/frame; {fmt_timings(res['timings'])}", flush=True)
            best = {p: min(r["seconds_per_frame"] for r in rs) for p, rs in runs.items()}
            diff = median_relative_difference(runs["original"][-1]["output"], runs["fast"][-1]["output"])
            speedup = best["original"] / best["fast"]
            report["compare"] = {"runs": runs, "best_seconds_per_frame": best, "speedup": speedup,
                                 "relative_difference": diff}
            print(f"original {best['original']:.3f} s/frame, fast {best['fast']:.3f} s/frame: speed-up {speedup:.2f}x "
                  f"({'OK' if speedup >= 3 else 'below'} the 3x target); decoded depth median relative difference "
                  f"{100 * diff['median']:.2f} % (p95 {100 * diff['p95']:.2f} %, "
                  f"{'OK' if diff['median'] <= 0.02 else 'above'} the 2 % target)", flush=True)
            report["compare"]["relative_difference_per_preset"] = per_preset = {}
            for p in presets[2:]:
                d = per_preset[p] = median_relative_difference(runs["original"][-1]["output"], runs[p][-1]["output"])
                print(f"  {p}: {best[p]:.3f} s/frame, {best['original'] / best[p]:.2f}x faster than original; "
                      f"median relative difference {100 * d['median']:.2f} % (p95 {100 * d['p95']:.2f} %)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

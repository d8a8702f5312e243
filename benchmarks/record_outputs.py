"""Record (or check) the decoded outputs of all four scripts on the bundled clip.

Used to prove that a refactor changes no output bit: run ``--record FILE`` before it and ``--check
FILE`` after it. Each script runs as a subprocess from the repo root (its command line is the stable
interface), with small procedural-weight checkpoints at ``--input_size 28``. For every output file the
JSON holds the SHA-256 of each decoded video frame and audio frame (in decode order) and the frame
timestamps, so a change in any pixel, sample or time shows up.

    python -m benchmarks.record_outputs --checkpoints /tmp/ckpt --record /tmp/before.json
    python -m benchmarks.record_outputs --checkpoints /tmp/ckpt --check /tmp/before.json

Baselines: ``benchmarks/outputs_before_redesign.json`` (before issue 11's redesign; the redesign changed
no output) and ``benchmarks/outputs_baseline.json`` (re-recorded after issue 13, whose stereo defaults
(edge sharpening and dilation, the smooth background fill, Dubois anaglyph) changed the stereo cases on
purpose; issue 12 had changed the 16-bit greyscale values to the original tool's exact arithmetic):
check refactors against the latter.

``--checkpoints DIR`` must hold ``vda_vits.pth``, ``vda_metric_vits.pth`` and ``dav2_metric_vits.pth``
(procedural pf-v1 weights; ``--make_checkpoints`` writes them there first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "assets" / "big_buck_bunny_3s.mp4"


def cases(ck: Path, out: Path) -> list[tuple[str, list[str], list[str]]]:
    """(name, argv, output paths relative to ``out``)."""
    common = ["--input_size", "28", "--encoder", "vits", "--metric_encoder", "vits", "--no_progress", "--fov", "off",
              "--vda_checkpoint", str(ck / "vda_vits.pth"), "--metric_checkpoint", str(ck / "dav2_metric_vits.pth")]
    metric = ["--input_size", "28", "--encoder", "vits", "--no_progress", "--model", "vda-metric", "--fov", "off",
              "--vda_checkpoint", str(ck / "vda_metric_vits.pth")]
    depth = str(out / "rolling" / "big_buck_bunny_3s_depth.mkv")
    conv = [sys.executable, "video_metric_convert.py", "--input_video", str(CLIP), "--max_len", "40"]
    stereo = [sys.executable, "stero_rerender.py", "--video", depth, "--color_video", str(CLIP), "--xfov", "48",
              "--no_progress"]
    grey = [sys.executable, "rgb_depth_to_greyscale.py", "--video", depth]
    view = [sys.executable, "3d_view_depthfile.py", "--video", depth, "--color_video", str(CLIP), "--xfov", "48",
            "--max_frames", "3"]
    return [
        ("convert_rolling", conv + common + ["--output_dir", str(out / "rolling")],
         ["rolling/big_buck_bunny_3s_depth.mkv"]),
        ("convert_global", conv + common + ["--fit", "global", "--output_dir", str(out / "global")],
         ["global/big_buck_bunny_3s_depth.mkv"]),
        ("convert_every4_fps", conv + common + ["--metric_every", "4", "--target_fps", "12", "--max_depth", "20",
                                                "--output_dir", str(out / "every4")],
         ["every4/big_buck_bunny_3s_depth.mkv"]),
        ("convert_metric", conv + metric + ["--output_dir", str(out / "metric")],
         ["metric/big_buck_bunny_3s_depth.mkv"]),
        ("stereo_sbs", stereo + ["--output", str(out / "sbs.mp4")], ["sbs.mp4"]),
        ("stereo_lossless_mask", stereo + ["--format", "half-tb", "--lossless", "--infill_mask",
                                           "--output", str(out / "htb.mkv")], ["htb.mkv", "htb_mask.mkv"]),
        ("stereo_anaglyph_nocolour", [sys.executable, "stero_rerender.py", "--video", depth, "--xfov", "60",
                                      "--format", "anaglyph", "--no_progress", "--max_frames", "10",
                                      "--output", str(out / "ana.mp4")], ["ana.mp4"]),
        ("grey8", grey + ["--output", str(out / "g8.mkv")], ["g8.mkv"]),
        ("grey16_inverse", grey + ["--bit16", "--inverse", "--output", str(out / "g16.mkv")], ["g16.mkv"]),
        ("grey_png16", grey + ["--png16", str(out / "png16"), "--max_frames", "4"],
         [f"png16/frame_{i:06d}.png" for i in range(4)]),
        ("view_render", view + ["--render", str(out / "view.mp4")], ["view.mp4"]),
    ]


def digest(path: Path) -> dict:
    """Per-stream SHA-256 of each decoded frame (video frames in their native format) and the pts."""
    if path.suffix == ".png":
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    result: dict = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type not in ("video", "audio"):
                continue
            hashes, pts = [], []
            for frame in container.decode(stream):
                planes = b"".join(bytes(p) for p in frame.planes) if stream.type == "video" else frame.to_ndarray().tobytes()
                hashes.append(hashlib.sha256(planes).hexdigest()[:16])
                pts.append(None if frame.time is None else round(float(frame.time), 6))
            container.seek(0)
            result[f"{stream.type}{stream.index}"] = {"frames": len(hashes), "sha": hashes, "time": pts}
        result["tags"] = {k: v for k, v in container.metadata.items() if k.lower() not in ("encoder", "creation_time")}
    return result


def make_checkpoints(folder: Path) -> None:
    """The three procedural (pf-v1) vits checkpoints the cases use."""
    import torch

    from depth_anything_v2 import MODEL_CONFIGS as DAV2, DepthAnythingV2
    from tests.procedural import write_procedural_checkpoint
    from video_depth_anything import MODEL_CONFIGS as VDA, VideoDepthAnything

    folder.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        models = {"vda_vits.pth": VideoDepthAnything(**VDA["vits"]),
                  "vda_metric_vits.pth": VideoDepthAnything(**VDA["vits"], metric=True),
                  "dav2_metric_vits.pth": DepthAnythingV2(**DAV2["vits"], max_depth=20.0)}
    for name, model in models.items():
        write_procedural_checkpoint(model, folder / name)


def run_all(ck: Path, only: list[str] | None) -> dict:
    record: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, argv, outputs in cases(ck, out):
            if only and name not in only and name != "convert_rolling":
                continue
            proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
            entry = {"rc": proc.returncode,
                     "stderr": [line for line in proc.stderr.splitlines()
                                if line.strip() and "XDG_RUNTIME_DIR" not in line
                                and "frame/s]" not in line and "s/frame]" not in line]}  # tqdm lines
            if proc.returncode == 0:
                entry["outputs"] = {o: digest(out / o) for o in outputs}
            else:
                print(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}", file=sys.stderr)
            record[name] = entry
            print(f"{name}: rc {proc.returncode}", file=sys.stderr)
    return record


def compare(old: dict, new: dict) -> list[str]:
    problems = []
    for name, entry in old.items():
        if name not in new:
            continue
        got = new[name]
        if got["rc"] != entry["rc"]:
            problems.append(f"{name}: exit {entry['rc']} -> {got['rc']}")
        for out, dig in entry.get("outputs", {}).items():
            if got.get("outputs", {}).get(out) != dig:
                problems.append(f"{name}: {out} differs")
        if got["stderr"] != entry["stderr"]:
            problems.append(f"{name}: stderr {entry['stderr']} -> {got['stderr']}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", required=True, type=Path)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--check", type=Path)
    parser.add_argument("--only", nargs="*", help="case names (convert_rolling always runs: the others read it)")
    parser.add_argument("--make_checkpoints", action="store_true", help="write the procedural checkpoints first")
    args = parser.parse_args(argv)
    if args.make_checkpoints:
        make_checkpoints(args.checkpoints)
    record = run_all(args.checkpoints, args.only)
    if args.record:
        args.record.write_text(json.dumps(record, indent=1))
        return 0
    problems = compare(json.loads(args.check.read_text()), record)
    for p in problems:
        print(p)
    print("identical" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""What ``video_metric_convert.py --fov auto`` costs: MoGe-2 per keyframe and its share of a default conversion.

Measured on the chosen clip (default: the bundled 640x360 sample), CPU, procedural pf-v1 weights (the
cost of the real checkpoints):

1. MoGe-2 per keyframe: :func:`mvda.fov.estimate_fov` on one frame (network, focal/shift solver,
   intrinsics) at the converter's resolution (the model's lowest trained level, ``--tokens``, default
   1200), for vits (the third-party config of tests/fixtures/moge2/README.md, 35M parameters: the
   released vits config is not published) and vitl-normal (the manifest's config, 331M).
2. Reading the keyframes: :func:`mvda.apps.video_fov.keyframes_of` (seeking a second decoder, what the
   converter does) against decoding the whole clip once (what reading them "in the stream" would
   share with the conversion: nothing extra to decode, but the tags must be known before the depth file
   is written).
3. A lower bound of a default conversion's cost per frame: metric Depth-Anything-V2 vitl ``infer_images``
   at input 518 on one frame. The default conversion runs it on every frame *and* Video-Depth-Anything
   vitl (which costs more than DA-V2 per frame, benchmarks/RESULTS.md), so the share printed,
   ``keyframes(N) x (MoGe-2 + read) / (N x DA-V2)``, is an upper bound of the true share.

Times are process CPU seconds (all threads) and wall seconds, the median of ``--repeats`` warm runs.
Example (about 4 minutes on a 2-core VM)::

    python -m benchmarks.bench_fov
    python -m benchmarks.bench_fov --encoders vits --tokens 1200 3600 --skip_dav2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "big_buck_bunny_3s.mp4"

#: The vits-normal config used by third-party code (tests/fixtures/moge2/README.md), 35,103,656 parameters.
_HEAD = {"res_block_in_norm": "none", "res_block_hidden_norm": "none",
         "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"]}


def vits_config() -> dict:
    dims = [384, 256, 128, 64, 32]
    head = {"dim_in": dims, "dim_res_blocks": dims, "num_res_blocks": [0, 1, 1, 1, 0], **_HEAD}
    return {
        "encoder": {"backbone": "dinov2_vits14", "intermediate_layers": [5, 11], "dim_out": 384},
        "neck": {"dim_in": [386, 2, 2, 2, 2], "dim_out": None, "dim_res_blocks": dims,
                 "num_res_blocks": [0, 1, 1, 1, 0], **_HEAD},
        "points_head": {**head, "dim_out": [None, None, None, None, 3]},
        "normal_head": {**head, "dim_out": [None, None, None, None, 3]},
        "mask_head": {**head, "dim_out": [None, None, None, None, 1]},
        "scale_head": {"dims": [384, 384, 384, 1]},
        "remap_output": "exp", "num_tokens_range": [1200, 3600],
    }


def vitl_config() -> dict:
    from tests.test_moge2 import VITL_NORMAL, manifests

    return dict(manifests()[VITL_NORMAL]["config"])


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of ``repeats`` calls after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def moge_per_keyframe(encoder: str, frame: np.ndarray, tokens: int, repeats: int) -> tuple[float, float]:
    from moge2 import MoGeModel
    from mvda.errors import UserError
    from mvda.fov import estimate_fov
    from tests.procedural import load_procedural_weights

    config = vits_config() if encoder == "vits" else vitl_config()
    model = load_procedural_weights(MoGeModel(**config)).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"MoGe-2 {encoder}: {params / 1e6:.1f}M parameters", flush=True)

    def one() -> None:
        try:
            estimate_fov([frame], model, torch.device("cpu"), num_tokens=tokens)
        except UserError:  # procedural weights may find no positive focal length: the same work was done
            pass

    return timed(one, repeats)


def read_costs(clip: Path, count: int, repeats: int) -> dict[str, tuple[float, float]]:
    from mvda.apps.video_fov import keyframes_of
    from mvda.fov import keyframe_indices
    from mvda.io.video import VideoReader

    with VideoReader(clip) as reader:
        frames = reader.info.num_frames or 1
        indices = keyframe_indices(frames, count)
        fps = float(reader.fps)
        seek = timed(lambda: keyframes_of(reader, indices, fps), repeats)

    def decode_all() -> None:
        with VideoReader(clip) as full:
            for _ in full:
                pass

    return {f"seek {len(indices)} keyframes": seek, f"decode all {frames} frames": timed(decode_all, repeats)}


def dav2_per_frame(frame: np.ndarray, input_size: int, repeats: int) -> tuple[float, float]:
    from depth_anything_v2 import MODEL_CONFIGS, DepthAnythingV2
    from tests.procedural import load_procedural_weights

    model = load_procedural_weights(DepthAnythingV2(**MODEL_CONFIGS["vitl"], max_depth=20.0)).eval()
    image = torch.from_numpy(frame)[None]
    return timed(lambda: model.infer_images(image, input_size=input_size, precision="fp32"), repeats)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, default=SAMPLE, help="video to take the frame and keyframes from")
    p.add_argument("--encoders", nargs="+", choices=("vits", "vitl"), default=["vits", "vitl"])
    p.add_argument("--tokens", nargs="+", type=int, default=[1200], help="MoGe-2 num_tokens (default 1200)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--input_size", type=int, default=518, help="DA-V2 input size of the default conversion")
    p.add_argument("--skip_dav2", action="store_true", help="do not time DA-V2 vitl (no share is printed)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from mvda.fov import keyframe_count
    from mvda.io.video import VideoReader

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with VideoReader(args.clip) as reader:
        frame = reader.sample_frames(3)[1]
    print(f"clip {args.clip.name} {frame.shape[1]}x{frame.shape[0]}, {torch.get_num_threads()} threads", flush=True)
    moge: dict[tuple[str, int], tuple[float, float]] = {}
    for encoder in args.encoders:
        for tokens in args.tokens:
            moge[encoder, tokens] = moge_per_keyframe(encoder, frame, tokens, args.repeats)
            print(f"MoGe-2 {encoder} {tokens} tokens per keyframe: {moge[encoder, tokens][0]:.2f} CPU-s, "
                  f"{moge[encoder, tokens][1]:.2f} s", flush=True)
    reads = read_costs(args.clip, 16, args.repeats)
    for name, (cpu, wall) in reads.items():
        print(f"read: {name}: {cpu:.3f} CPU-s, {wall:.3f} s", flush=True)
    seek_per_keyframe = next(iter(reads.values()))[0] / 16
    if args.skip_dav2:
        return 0
    dav2 = dav2_per_frame(frame, args.input_size, max(1, args.repeats - 1))
    print(f"DA-V2 vitl metric at input {args.input_size} per frame (lower bound of a default conversion's cost "
          f"per frame): {dav2[0]:.2f} CPU-s, {dav2[1]:.2f} s", flush=True)
    for (encoder, tokens), (cpu, _) in moge.items():
        shares = []
        for frames in (10, 20, 75, 300, 3000):
            k = keyframe_count(frames)
            share = 100 * k * (cpu + seek_per_keyframe) / (frames * dav2[0])
            shares.append(f"{frames} frames ({k} keyframes) {share:.1f} %")
        print(f"share of a default conversion, at most, MoGe-2 {encoder} {tokens} tokens: " + ", ".join(shares),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

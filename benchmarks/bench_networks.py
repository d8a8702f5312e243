"""Time the Video-Depth-Anything and metric Depth-Anything-V2 networks: seconds per frame, frames/s and
peak memory, per encoder, input size and precision, on the chosen device.

Weights are pf-v1 procedural weights (same cost as the real checkpoints, no download needed).
VDA is timed on ``forward`` of one ``(1, frames, 3, S, S)`` clip; DA-V2 on ``infer_images`` of one
``S x S`` uint8 image (preprocessing + network + resize, like the official ``infer_image``).

``--reference`` also times an *upstream-equivalent* computation written for this benchmark (same weights,
the official computation order: explicit softmax attention, frame-major temporal rearrangements around each
attention, upsample-then-1x1-conv fusion, whole clip in one batch) interleaved with ours, and reports the
speed-up (wall time, and process CPU time, which is less sensitive to other load) and the max output
difference, so the comparison is made within one run on a noisy machine.

On a shared CPU, ``OMP_WAIT_POLICY=PASSIVE`` in the environment keeps idle OpenMP threads from spinning and
makes the numbers steadier. Example::

    python -m benchmarks.bench_networks --models vda --encoders vits --input_size 196 --reference
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
import torch
import torch.nn.functional as F

from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2 import MODEL_CONFIGS as DAV2_CONFIGS
from mvda.device import autocast_context, resolve_device
from tests.procedural import load_procedural_weights
from video_depth_anything import MODEL_CONFIGS as VDA_CONFIGS
from video_depth_anything import VideoDepthAnything


# -- upstream-equivalent reference computation ------------------------------------------------------------

def _ref_block(blk, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    heads = blk.attn.num_heads
    h = blk.norm1(x)
    qkv = blk.attn.qkv(h).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    att = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    h = blk.attn.proj((att @ v).transpose(1, 2).reshape(b, n, c))
    x = x + h * blk.ls1.gamma
    h = blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))
    return x + h * blk.ls2.gamma


def _ref_encoder(enc, x: torch.Tensor, idx: Sequence[int]):
    tokens = enc.prepare_tokens(x)
    outs = []
    for i, blk in enumerate(enc.blocks):
        tokens = _ref_block(blk, tokens)
        if i in idx:
            outs.append(tokens)
    outs = [enc.norm(o) for o in outs]
    return [(o[:, 1:], o[:, 0]) for o in outs]


def _ref_rcu(rcu, x):
    return rcu.conv2(F.relu(rcu.conv1(F.relu(x)))) + x


def _ref_fusion(block, *xs, size=None):
    out = xs[0]
    if len(xs) == 2:
        out = out + _ref_rcu(block.resConfUnit1, xs[1])
    out = _ref_rcu(block.resConfUnit2, out)
    kw = {"scale_factor": 2} if size is None else {"size": size}
    out = F.interpolate(out, **kw, mode="bilinear", align_corners=True)
    return block.out_conv(out)


def _ref_temporal_attention(attn, x, frames):
    # x: (B*F, hw, C) frame-major, rearranged to (B*hw, F, C) and back around the attention
    bf, d, c = x.shape
    b = bf // frames
    h = x.reshape(b, frames, d, c).transpose(1, 2).reshape(b * d, frames, c)
    h = attn.pos_encoder(h)
    heads, hd = attn.heads, attn.dim_head

    def split(t):
        return t.reshape(b * d, frames, heads, hd).permute(0, 2, 1, 3).reshape(b * d * heads, frames, hd)

    q, k, v = split(attn.to_q(h)), split(attn.to_k(h)), split(attn.to_v(h))
    scores = torch.baddbmm(
        torch.empty(q.shape[0], frames, frames, dtype=q.dtype, device=q.device), q, k.transpose(-1, -2),
        beta=0, alpha=hd ** -0.5,
    )
    out = torch.bmm(scores.softmax(dim=-1), v)
    out = out.reshape(b * d, heads, frames, hd).permute(0, 2, 1, 3).reshape(b * d, frames, c)
    out = attn.to_out[0](out)
    return out.reshape(b, d, frames, c).transpose(1, 2).reshape(bf, d, c)


def _ref_motion(mm, x):
    # x: (B, C, F, h, w)
    tt = mm.temporal_transformer
    b, c, f, hh, ww = x.shape
    x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, hh, ww)
    residual = x
    h = tt.norm(x).permute(0, 2, 3, 1).reshape(b * f, hh * ww, c).contiguous()
    h = tt.proj_in(h)
    for blk in tt.transformer_blocks:
        for attn, norm in zip(blk.attention_blocks, blk.norms):
            h = _ref_temporal_attention(attn, norm(h), f) + h
        h = blk.ff(blk.ff_norm(h)) + h
    h = tt.proj_out(h).reshape(b * f, hh, ww, c).permute(0, 3, 1, 2).contiguous()
    out = h + residual
    return out.reshape(b, f, c, hh, ww).permute(0, 2, 1, 3, 4)


def _ref_levels(head, feats, ph, pw):
    out = []
    for i, (tokens, _) in enumerate(feats):
        x = tokens.permute(0, 2, 1).reshape(tokens.shape[0], tokens.shape[-1], ph, pw).contiguous()
        out.append(head.resize_layers[i](head.projects[i](x)))
    return out


def _ref_output(head, path_1, ph, pw):
    s = head.scratch
    out = F.interpolate(s.output_conv1(path_1), (ph * 14, pw * 14), mode="bilinear", align_corners=True)
    if head.output_fp32:
        with torch.autocast(device_type=out.device.type, enabled=False):
            return s.output_conv2(out.float())
    return s.output_conv2(out)


def reference_vda_forward(model: VideoDepthAnything, x: torch.Tensor) -> torch.Tensor:
    """Upstream-equivalent VDA forward ``(B, T, 3, H, W) -> (B, T, H, W)`` on ``model``'s weights."""
    b, t, _, hh, ww = x.shape
    ph, pw = hh // 14, ww // 14
    feats = _ref_encoder(model.pretrained, x.flatten(0, 1), model.intermediate_layer_idx[model.encoder])
    head, s = model.head, model.head.scratch
    l1, l2, l3, l4 = _ref_levels(head, feats, ph, pw)

    def motion(i, y):
        return _ref_motion(head.motion_modules[i], y.unflatten(0, (b, t)).permute(0, 2, 1, 3, 4)).permute(0, 2, 1, 3, 4).flatten(0, 1)

    l3, l4 = motion(0, l3), motion(1, l4)
    r1, r2, r3, r4 = s.layer1_rn(l1), s.layer2_rn(l2), s.layer3_rn(l3), s.layer4_rn(l4)
    p4 = motion(2, _ref_fusion(s.refinenet4, r4, size=r3.shape[2:]))
    p3 = motion(3, _ref_fusion(s.refinenet3, p4, r3, size=r2.shape[2:]))
    p2 = _ref_fusion(s.refinenet2, p3, r2, size=r1.shape[2:])
    p1 = _ref_fusion(s.refinenet1, p2, r1)
    depth = _ref_output(head, p1, ph, pw)
    depth = F.relu(F.interpolate(depth, size=(hh, ww), mode="bilinear", align_corners=True))
    return depth.squeeze(1).unflatten(0, (b, t))


def reference_dav2_forward(model: DepthAnythingV2, x: torch.Tensor) -> torch.Tensor:
    """Upstream-equivalent metric DA-V2 forward ``(B, 3, H, W) -> (B, H, W)``."""
    ph, pw = x.shape[-2] // 14, x.shape[-1] // 14
    feats = _ref_encoder(model.pretrained, x, model.intermediate_layer_idx[model.encoder])
    head, s = model.depth_head, model.depth_head.scratch
    l1, l2, l3, l4 = _ref_levels(head, feats, ph, pw)
    r1, r2, r3, r4 = s.layer1_rn(l1), s.layer2_rn(l2), s.layer3_rn(l3), s.layer4_rn(l4)
    p4 = _ref_fusion(s.refinenet4, r4, size=r3.shape[2:])
    p3 = _ref_fusion(s.refinenet3, p4, r3, size=r2.shape[2:])
    p2 = _ref_fusion(s.refinenet2, p3, r2, size=r1.shape[2:])
    p1 = _ref_fusion(s.refinenet1, p2, r1)
    return (_ref_output(head, p1, ph, pw) * model.max_depth).squeeze(1)


def reference_dav2_infer(model: DepthAnythingV2, image_rgb: torch.Tensor, input_size: int) -> torch.Tensor:
    from depth_anything_v2.transform import network_input_size, prepare_images

    h, w = image_rgb.shape[:2]
    x = prepare_images(image_rgb, network_input_size(h, w, input_size), device=model.device)
    depth = reference_dav2_forward(model, x)
    return F.interpolate(depth[:, None], (h, w), mode="bilinear", align_corners=True)[0, 0]


# -- measurement ----------------------------------------------------------------------------------------

def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``) so RSS peaks reflect the call."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS deltas are then only a lower bound
        pass


class PeakMemory:
    """Peak memory while the block runs: CUDA allocator peak above the allocation at entry, else the
    process RSS sampled every 2 ms: ``peak_bytes`` above the RSS at entry (after returning freed heap
    to the OS) and ``peak_total_bytes`` (whole process, model weights included)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self.peak_total_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_heap()
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, self._proc.memory_info().rss)
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_total_bytes = torch.cuda.max_memory_allocated(self.device)
            self.peak_bytes = self.peak_total_bytes - self._base
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_bytes = self._peak - self._base
        self.peak_total_bytes = self._peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_calls(fns: dict[str, Callable[[], torch.Tensor]], device: torch.device, repeat: int, warmup: int) -> dict:
    """Run each function ``warmup`` times, then ``repeat`` rounds interleaving the functions.
    Returns per-name seconds list, peak memory of the first timed call and its output."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    res = {name: {"seconds": [], "cpu_seconds": [], "peak_bytes": 0, "peak_total_bytes": 0, "output": None} for name in fns}
    for r in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            with PeakMemory(device) as mem:
                c0 = time.process_time()
                t0 = time.perf_counter()
                out = fn()
                _sync(device)
                dt = time.perf_counter() - t0
                cpu = time.process_time() - c0
            res[name]["seconds"].append(dt)
            res[name]["cpu_seconds"].append(cpu)
            if r == 0:
                res[name]["peak_bytes"] = mem.peak_bytes
                res[name]["peak_total_bytes"] = mem.peak_total_bytes
                res[name]["output"] = out.float().cpu()
            del out
    return res


def bench_one(family: str, encoder: str, size: int, precision: str, args, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    if family == "vda":
        model = VideoDepthAnything(**VDA_CONFIGS[encoder])
        frames = args.frames
        x = (torch.randn(1, frames, 3, size, size) * 0.5).to(device)
    else:
        model = DepthAnythingV2(**DAV2_CONFIGS[encoder], max_depth=20.0)
        frames = 1
        image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        image = image.to(device)
    model = load_procedural_weights(model).to(device).eval()

    def ours() -> torch.Tensor:
        with torch.inference_mode(), autocast_context(device, precision):
            if family == "vda":
                return model(x)
            return model.infer_images(image[None], input_size=size, precision=precision)[0]

    def reference() -> torch.Tensor:
        with torch.inference_mode(), autocast_context(device, precision):
            if family == "vda":
                return reference_vda_forward(model, x)
            return reference_dav2_infer(model, image, size)

    fns = {"ours": ours}
    if args.reference:
        fns["reference"] = reference
    res = time_calls(fns, device, args.repeat, args.warmup)
    rows = []
    for name, r in res.items():
        best = min(r["seconds"])
        row = {
            "model": family, "encoder": encoder, "input_size": size, "frames": frames, "precision": precision,
            "impl": name, "device": str(device), "threads": torch.get_num_threads(),
            "seconds_per_call_min": best, "seconds_per_call_median": statistics.median(r["seconds"]),
            "cpu_seconds_per_call_min": min(r["cpu_seconds"]),
            "seconds_per_frame": best / frames, "frames_per_second": frames / best,
            "peak_memory_mb": r["peak_bytes"] / 2**20,
            "peak_total_memory_mb": r["peak_total_bytes"] / 2**20,
        }
        if name == "reference":
            ours_best = min(res["ours"]["seconds"])
            row["speedup_ours_vs_reference"] = best / ours_best
            row["cpu_time_ratio_reference_vs_ours"] = min(r["cpu_seconds"]) / min(res["ours"]["cpu_seconds"])
            row["max_abs_diff_ours_vs_reference"] = float((res["ours"]["output"] - r["output"]).abs().max())
        rows.append(row)
    del model
    gc.collect()
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vda,dav2", help="comma list of vda, dav2 (default: both)")
    parser.add_argument("--encoders", default="vits,vitb", help="comma list of vits, vitb, vitl (default: vits,vitb)")
    parser.add_argument("--input_size", default="518,280", help="comma list of square input sizes, multiples of 14")
    parser.add_argument("--frames", type=int, default=32, help="VDA clip length (default 32, the window length)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    parser.add_argument("--precision", default="fp32", help="comma list of fp32, fp16, bf16 (default fp32)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the minimum is reported (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--reference", action="store_true", help="also time the upstream-equivalent computation")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    return parser


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":  # compare like with like: no TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sizes = [int(s) for s in _csv(args.input_size)]
    bad = [s for s in sizes if s % 14]
    if bad:
        print(f"error: input sizes {bad} are not multiples of 14", file=sys.stderr)
        return 2
    rows: list[dict] = []
    header = f"{'model':5} {'enc':4} {'size':>5} {'T':>3} {'prec':4} {'impl':9} {'s/frame':>8} {'fps':>7} {'peak MB':>8} {'total MB':>8}  notes"
    print(header)
    for family in _csv(args.models):
        if family not in ("vda", "dav2"):
            print(f"error: unknown model {family!r}: use vda or dav2", file=sys.stderr)
            return 2
        for encoder in _csv(args.encoders):
            for size in sizes:
                for precision in _csv(args.precision):
                    for row in bench_one(family, encoder, size, precision, args, device):
                        rows.append(row)
                        notes = ""
                        if "speedup_ours_vs_reference" in row:
                            notes = (f"ours {row['speedup_ours_vs_reference']:.2f}x faster "
                                     f"(CPU time {row['cpu_time_ratio_reference_vs_ours']:.2f}x), "
                                     f"max|diff| {row['max_abs_diff_ours_vs_reference']:.2e}")
                        print(f"{family:5} {encoder:4} {size:5d} {row['frames']:3d} {precision:4} {row['impl']:9} "
                              f"{row['seconds_per_frame']:8.3f} {row['frames_per_second']:7.2f} "
                              f"{row['peak_memory_mb']:8.0f} {row['peak_total_memory_mb']:8.0f}  {notes}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

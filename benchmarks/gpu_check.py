"""GPU check of issue 16: goldens, fp16 accuracy, stereo warp, and end-to-end speed, in one bounded run.

Run it through ``benchmarks/gpu_check.sh`` (sets PYTHONPATH, adds a hard timeout) from the repository
root, or as ``python -m benchmarks.gpu_check``. It writes ``OUT/gpu_check.json`` (every figure) and
``OUT/gpu_check.txt`` (the summary: the device name, then one PASS/FAIL line per goal of issue 16 with
its figures, and INFO lines) and prints the summary. Exit status 0 when every evaluated goal passed,
1 when one failed, 2 for bad arguments, 3 when the overall budget stopped the run (what was measured
until then is written).

On the device machine (device tool, one H100; 15 minutes of device time in all, machine start
included). PyAV is not in its image, so once, on a machine with network, from the repository root
(``.whl/`` is git-ignored)::

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl av==18.1.0

then ONE device call, ``carry=[".whl"]``, ``timeout_s=450`` (the run stops itself after 360 s, the
script's own hard limit is 420 s; start + 450 s leaves about 5 minutes of device time to rerun missing
parts with ``--only PARTS --budget_s N`` on the still-warm machine)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; nvidia-smi -L; bash benchmarks/gpu_check.sh --budget_s 360 --out $OUT/gc

Parts, in this order, each with its own deadline within ``--budget_s`` (see :class:`Budget`: the
correctness parts may use all but a reserve for the speed parts; each speed part gets its share of what
is left, so unused time goes to later parts). Each part checks its clock before every step and skips,
or shortens, what would not fit, saying so in the report; a watchdog writes the report and exits when
the whole budget is spent:

1. ``goldens``: the golden fixtures of ``tests/fixtures`` (official code, CPU, float32, pf-v1 weights
   of ``tests/procedural.py``) on the device in float32 with TF32 off: DA-V2 vits forward (+ its encoder
   features) and ``infer_image``, VDA vits forward (T=32 and T=8), windowed ``infer_video_depth``
   (relative, its three raw window outputs, and metric), and the streaming :class:`VideoDepthStream`.
   Tolerance 1e-4 absolute, as on the CPU (tests/fixtures/README.md).
2. ``fp16``: the same goldens under fp16 autocast (on ``--device cpu`` too: CPU autocast fp16),
   against the float32 goldens, tolerance :data:`FP16_MAX_TOL` (max) and :data:`FP16_MEAN_TOL`
   (mean) absolute on outputs of 0..15 (m for DA-V2). Measured on a CPU (fp16 autocast, 2026-11):
   VDA forward max 0.016 / mean 0.0027, DA-V2 forward max 0.020 / mean 0.0041, i.e. the tolerance
   has a margin of about 2.5x. Also run: an *official-style* fp16 VDA on the same weights (see below),
   the difference ours - official-style, and the dtypes each variant produces on the device.

   The official fp16 path, point by point, and ours:

   * VDA ``infer_video_depth`` runs ``forward`` under ``torch.autocast(device_type=device)`` (fp16 on
     CUDA), then ``depth.to(float32)`` before the resize to the frame size. Ours: the same autocast,
     :class:`VideoDepthStream` casts to float32 before resizing. Same.
   * Head, final conv: official ``with torch.autocast(device_type="cuda", enabled=False):
     output_conv2(out.float())``, i.e. always ``"cuda"`` (on a CPU it would not switch CPU autocast
     off). Ours: autocast off for ``out.device.type``. Same on CUDA.
   * Head output: official ``out.to(ori_type)`` casts the float32 result back to fp16, so the
     interpolation to the input size and the ReLU run in fp16 and the depth is rounded to fp16 (11-bit
     mantissa: up to ~0.004 at 8). Ours: stays float32. Differs.
   * Motion modules: official ``output = hidden_states + residual`` adds the transformer output and
     the residual in fp16 and returns fp16. Ours: GroupNorm under autocast returns float32, our token
     buffer takes that dtype, so the residual is added in float32 and the module returns float32 (the
     next conv casts to fp16 again). Differs (the sum is rounded once more in the official).
   * DA-V2: official ``infer_image`` runs in float32 (no autocast). Ours: ``infer_image`` is float32
     too (part 1), but the converter calls ``infer_images(precision=...)``, fp16 on CUDA by default.
     Differs; its fp16 error is measured here (``dav2_infer_images``).

   :func:`official_fp16` reproduces the two VDA differences on our model (head output cast to the
   autocast dtype, motion-module output cast to its input's dtype), so the report gives, on the same
   device and weights, the error of each variant and their difference.
3. ``stereo_warp``: :class:`mvda.ops.stereo_warp.StereoWarper` on the device against the CPU path on
   analytic scenes (fronto-parallel and slanted planes, a box before a wall with hard and soft edges,
   random depth edges) and the 1080p scene of ``benchmarks/bench_stereo.py``: eyes identical within one
   colour level. With ``--device cpu`` the CPU path in the device configuration (whole frame in one
   chunk, one worker) is compared with the default chunked one.
4. ``convert``: :func:`mvda.apps.convert.convert_video` on a synthetic 1920x1080 H.264 clip at input
   518, default precision of the device, vits/vits then vitl/vitl procedural checkpoints loaded with
   :func:`mvda.apps.convert.load_models`: a warm-up run, 60 frames with the stage timer (split between
   decode, vda, dav2, fit, encode; the timer synchronises the GPU at each stage end), 600 frames without
   it (frames/s end to end, GPU busy fraction from NVML via pynvml, else sampled ``nvidia-smi``),
   peak GPU memory (allocator) of both runs.
5. ``networks``: ``benchmarks.bench_networks.bench_one`` (ours against the upstream-equivalent
   reference, interleaved, same device, same run) for VDA (32 frames) and DA-V2 at 518, vits and vitl,
   default precision.
6. ``stereo``: ``benchmarks.bench_stereo``: render frames/s at 1080p (both eyes + side-by-side, no
   I/O), and the whole stereo job with H.264 encoding.

``--quick`` shrinks every size (tiny clips, vits only, few repeats) to test the script on a CPU in about
two minutes; its speed figures say nothing about the goals. Example::

    bash benchmarks/gpu_check.sh --device cpu --quick --out /tmp/gc
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
GOLDEN_TOL = 1e-4
FP16_MAX_TOL = 0.05
FP16_MEAN_TOL = 0.01
WARP_TOL = 1  # colour levels
PARTS = ("goldens", "fp16", "stereo_warp", "convert", "networks", "stereo")
#: share of the budget of each part (their sum is 1)
SHARES = {"goldens": 0.06, "fp16": 0.06, "stereo_warp": 0.05, "convert": 0.53, "networks": 0.18, "stereo": 0.12}
#: parts that check correctness, and the budget fraction they leave to each later part (see Budget)
CORRECTNESS = ("goldens", "fp16", "stereo_warp")
RESERVE = {"goldens": 0.02, "fp16": 0.02, "stereo_warp": 0.02, "convert": 0.3, "networks": 0.12, "stereo": 0.06}
#: goals of issue 16 on one H100
GOAL_CONVERT_FPS = {"vitl/vitl": 25.0, "vits/vits": 60.0}
GOAL_NETWORK_SPEEDUP = 1.3
GOAL_STEREO_FPS = 200.0
GOAL_MEMORY_RATIO = 1.1


# ---------------------------------------------------------------------------------------------------
# report, budget, watchdog


class Report:
    """The JSON report, written after every step (and by the watchdog), thread-safe."""

    def __init__(self, out_dir: Path, header: dict) -> None:
        self.out_dir = out_dir
        self.data: dict[str, Any] = {**header, "parts": {}}
        self.lock = threading.RLock()
        self.summary: list[str] = []

    def part(self, name: str) -> dict:
        with self.lock:
            return self.data["parts"].setdefault(name, {})

    def set(self, name: str, key: str, value: Any) -> None:
        with self.lock:
            self.part(name)[key] = value
        self.write()

    def write(self, summary: Sequence[str] | None = None) -> None:
        with self.lock:
            if summary is not None:
                self.summary = list(summary)
                self.data["summary"] = self.summary
            for attempt in range(3):  # a part may still be filling a nested dict (watchdog thread)
                try:
                    text = json.dumps(self.data, indent=1, default=_json_default)
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
                    time.sleep(0.05)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.out_dir / "gpu_check.json.tmp"
            tmp.write_text(text)
            tmp.replace(self.out_dir / "gpu_check.json")
            if summary is not None:
                (self.out_dir / "gpu_check.txt").write_text("\n".join(self.summary) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class Budget:
    """Overall time budget and the deadline of each part, set when the part begins.

    A correctness part (:data:`CORRECTNESS`: cheap on a GPU, and what the speed figures rest on) may run
    until the end of the budget less the reserve (:data:`RESERVE`, fractions of the budget) of the speed
    parts still to come. A speed part gets the time left, split among the parts still to come in
    proportion to their :data:`SHARES`, so time an earlier part leaves unused goes to the later ones.
    """

    def __init__(self, total_s: float, parts: Sequence[str]) -> None:
        self.start = time.monotonic()
        self.total = float(total_s)
        self.parts = list(parts)
        self.deadline: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def begin(self, part: str) -> float:
        """Set ``part``'s deadline (now) and return its seconds."""
        now, end = time.monotonic(), self.start + self.total
        later = self.parts[self.parts.index(part) + 1:]
        if part in CORRECTNESS:
            self.deadline[part] = end - self.total * sum(RESERVE[p] for p in later)
        else:
            shares = SHARES[part] + sum(SHARES[p] for p in later)
            self.deadline[part] = now + (end - now) * SHARES[part] / shares
        return self.left(part)

    def left(self, part: str | None = None) -> float:
        end = self.start + self.total
        if part is not None:
            end = min(end, self.deadline.get(part, end))
        return end - time.monotonic()


class Watchdog:
    """Writes the report and ends the process when the overall budget is spent (exit status 3)."""

    def __init__(self, budget: Budget, report: Report, finish: Callable[[str], list[str]]) -> None:
        self.budget, self.report, self.finish = budget, report, finish
        self.current = ""
        self._timer = threading.Timer(max(1.0, budget.total - 2.0), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        note = f"overall budget of {self.budget.total:.0f} s spent during part {self.current!r}: stopped there"
        try:
            with self.report.lock:
                self.report.data["stopped"] = note
                if self.current:
                    self.report.part(self.current).setdefault("status", "stopped by the budget")
                lines = self.finish(note)
                self.report.write(lines)
            print("\n".join(lines), flush=True)
        finally:
            os._exit(3)


# ---------------------------------------------------------------------------------------------------
# small helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off on CUDA (matmul and cuDNN) for the enclosed block; restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


def _err(ours: Any, golden: np.ndarray) -> dict[str, float]:
    a = ours.detach().float().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours, np.float32)
    d = np.abs(a.astype(np.float64) - golden.astype(np.float64))
    return {"max": float(d.max()), "mean": float(d.mean())}


def _golden(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "host": platform.node()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, cuda=torch.version.cuda, memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)
    else:
        info["device_name"] = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return info


# ---------------------------------------------------------------------------------------------------
# parts 1 and 2: goldens


class GoldenModels:
    """pf-v1 vits networks of the fixtures on ``device``: DA-V2 metric, VDA relative and metric."""

    def __init__(self, device: torch.device) -> None:
        from depth_anything_v2 import MODEL_CONFIGS as DAV2_CONFIGS
        from depth_anything_v2 import DepthAnythingV2
        from tests.procedural import procedural_state_dict
        from video_depth_anything import MODEL_CONFIGS as VDA_CONFIGS
        from video_depth_anything import VideoDepthAnything

        self.device = device
        dav2 = DepthAnythingV2(**DAV2_CONFIGS["vits"], max_depth=20.0)
        dav2.load_state_dict(procedural_state_dict(dav2), strict=True)
        self.dav2 = dav2.to(device).eval()
        vda = VideoDepthAnything(**VDA_CONFIGS["vits"])
        state = procedural_state_dict(vda)
        vda.load_state_dict(state, strict=True)
        self.vda = vda.to(device).eval()
        metric = VideoDepthAnything(**VDA_CONFIGS["vits"], metric=True)
        metric.load_state_dict(state, strict=True)
        self.vda_metric = metric.to(device).eval()


@contextlib.contextmanager
def official_fp16(model: Any, seen: dict | None = None) -> Iterator[None]:
    """Make our VDA's reduced-precision path behave like the official one (see the module docstring):
    the head output is cast to the autocast dtype (so resize and ReLU run in it) and each motion module
    returns its input's dtype (residual rounded as the official fp16 addition). Without autocast
    nothing changes. ``seen`` collects the dtypes produced (``head``, ``motion``)."""
    with _vda_patched(model, seen, official=True):
        yield


@contextlib.contextmanager
def observe_dtypes(model: Any, seen: dict) -> Iterator[None]:
    """Record the dtypes our VDA's head and motion modules produce (no change to the computation)."""
    with _vda_patched(model, seen, official=False):
        yield


@contextlib.contextmanager
def _vda_patched(model: Any, seen: dict | None, official: bool) -> Iterator[None]:
    """Hook our VDA's head output and wrap each motion module's ``forward_frames``: with ``official``
    cast them as :func:`official_fp16` describes; record their dtypes into ``seen`` when given."""
    handles, patched = [], []

    def head_hook(module: Any, args: Any, out: torch.Tensor) -> torch.Tensor | None:
        dev = out.device.type
        if official and torch.is_autocast_enabled(dev):
            out = out.to(torch.get_autocast_dtype(dev))
        if seen is not None:
            seen["head"] = str(out.dtype)
        return out

    handles.append(model.head.register_forward_hook(head_hook))
    for mm in model.head.motion_modules:
        tt = mm.temporal_transformer
        method = tt.forward_frames

        def forward_frames(x: torch.Tensor, num_frames: int, _method: Callable = method) -> torch.Tensor:
            out = _method(x, num_frames)
            if official:
                out = out.to(x.dtype)
            if seen is not None:
                seen["motion"] = str(out.dtype)
            return out

        tt.forward_frames = forward_frames  # the instance attribute shadows the method
        patched.append(tt)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for tt in patched:
            del tt.forward_frames


GOLDEN_NAMES = ("dav2_forward", "dav2_features", "dav2_infer_image", "vda_forward_t32", "vda_forward_t8",
                "vda_windows", "vda_infer_video", "vda_metric_infer_video", "vda_stream")


def golden_outputs(models: GoldenModels, precision: str = "fp32", official: bool = False,
                   names: Sequence[str] = GOLDEN_NAMES, seen: dict | None = None,
                   clock: Callable[[], float] | None = None) -> dict[str, list[tuple[Any, np.ndarray]]]:
    """Our outputs next to the goldens: ``{name: [(ours, golden), ...]}`` (float32 arrays/tensors).

    Args:
        models: the networks (their device is the one tested).
        precision: ``"fp32"`` (the golden conditions; wrap in :func:`strict_fp32` on CUDA), ``"fp16"``
            or ``"bf16"`` (autocast on the device).
        official: VDA under :func:`official_fp16` (the official reduced-precision rounding).
        names: which goldens (see :data:`GOLDEN_NAMES`). ``dav2_features`` exists in fp32 only;
            ``dav2_infer_image`` is ``infer_image`` (always float32, official) in fp32 and the
            converter's ``infer_images(precision=...)`` otherwise.
        seen: collects the VDA head / motion-module output dtypes.
        clock: seconds left; goldens are skipped (absent) once it is below 0.
    """
    from mvda.device import autocast_context
    from video_depth_anything.inference import VideoDepthStream, infer_video_depth

    dev = models.device
    out: dict[str, list[tuple[Any, np.ndarray]]] = {}
    vda_ctx = (lambda m: official_fp16(m, seen)) if official else (
        (lambda m: observe_dtypes(m, seen)) if seen is not None else (lambda m: contextlib.nullcontext()))

    def time_left() -> bool:
        return clock is None or clock() > 0

    with torch.inference_mode():
        if {"dav2_forward", "dav2_features"} & set(names) and time_left():
            z = _golden("golden_dav2_metric_vits_forward")
            x = torch.from_numpy(z["input"]).to(dev)
            with autocast_context(dev, precision):
                y = models.dav2(x)
            if "dav2_forward" in names:
                out["dav2_forward"] = [(y, z["output"])]
            if "dav2_features" in names and precision == "fp32":
                feats = models.dav2.pretrained.get_intermediate_layers(x, [2, 5, 8, 11], return_class_token=True)
                out["dav2_features"] = [p for i, (t, c) in enumerate(feats)
                                        for p in ((t, z[f"feat{i}_tokens"]), (c, z[f"feat{i}_cls"]))]
        if "dav2_infer_image" in names and time_left():
            z = _golden("golden_dav2_metric_vits_infer_image")
            if precision == "fp32":
                y = models.dav2.infer_image(z["image_bgr"], 70, device=dev)
            else:
                rgb = torch.from_numpy(np.ascontiguousarray(z["image_bgr"][:, :, ::-1])).to(dev)
                y = models.dav2.infer_images(rgb[None], input_size=70, precision=precision)[0]
            out["dav2_infer_image" if precision == "fp32" else "dav2_infer_images"] = [(y, z["output"])]
        for name, fixture in (("vda_forward_t32", "golden_vda_vits_forward"), ("vda_forward_t8", "golden_vda_vits_forward_t8")):
            if name in names and time_left():
                z = _golden(fixture)
                with vda_ctx(models.vda), autocast_context(dev, precision):
                    y = models.vda(torch.from_numpy(z["input"]).to(dev))
                out[name] = [(y, z["output"])]
    relative = None
    if {"vda_windows", "vda_infer_video", "vda_metric_infer_video", "vda_stream"} & set(names):
        relative = _golden("golden_vda_vits_infer_video")
    if {"vda_windows", "vda_infer_video"} & set(names) and time_left():
        windows: list[torch.Tensor] = []
        hook = models.vda.register_forward_hook(lambda m, a, y: windows.append(y.detach().float().cpu()))
        try:
            with vda_ctx(models.vda):
                depth, _ = infer_video_depth(models.vda, relative["frames"], 30, input_size=56, device=dev,
                                             precision=precision)
        finally:
            hook.remove()
        if "vda_infer_video" in names:
            out["vda_infer_video"] = [(depth, relative["output"])]
        if "vda_windows" in names:
            out["vda_windows"] = [(torch.cat(windows), relative["window_outputs"])]
    if "vda_metric_infer_video" in names and time_left():
        z = _golden("golden_vda_metric_vits_infer_video")
        with vda_ctx(models.vda_metric):
            depth, _ = infer_video_depth(models.vda_metric, z["frames"], 30, input_size=56, device=dev,
                                         precision=precision)
        out["vda_metric_infer_video"] = [(depth, z["output"])]
    if "vda_stream" in names and time_left():
        stream = VideoDepthStream(models.vda, input_size=56, device=dev, precision=precision)
        with vda_ctx(models.vda):
            frames = [d for f in relative["frames"] for d in stream.push(f)] + stream.flush()
        out["vda_stream"] = [(np.stack(frames), relative["output"])]
    return out


def golden_errors(device: torch.device | str, precision: str = "fp32", official: bool = False,
                  names: Sequence[str] = GOLDEN_NAMES, models: GoldenModels | None = None) -> dict[str, dict[str, float]]:
    """Max and mean absolute error of each golden on ``device``: ``{name: {"max": .., "mean": ..}}``.

    In fp32 on CUDA, TF32 is switched off for the run. See :func:`golden_outputs` for the arguments.
    """
    dev = torch.device(device)
    models = models or GoldenModels(dev)
    with strict_fp32(dev) if precision == "fp32" else contextlib.nullcontext():
        outputs = golden_outputs(models, precision, official, names)
    return {name: _combine([_err(a, g) for a, g in pairs]) for name, pairs in outputs.items()}


def _combine(errs: list[dict[str, float]]) -> dict[str, float]:
    return {"max": max(e["max"] for e in errs), "mean": float(np.mean([e["mean"] for e in errs]))}


def part_goldens(device: torch.device, ctx: PartContext) -> None:
    t0 = time.perf_counter()
    models = ctx.shared.setdefault("golden_models", GoldenModels(device))
    ctx.set("model_load_seconds", round(time.perf_counter() - t0, 2))
    with strict_fp32(device):
        outputs = golden_outputs(models, "fp32", clock=ctx.left)
    errors = {name: _combine([_err(a, g) for a, g in pairs]) for name, pairs in outputs.items()}
    missing = [n for n in GOLDEN_NAMES if n not in errors]
    worst = max(e["max"] for e in errors.values()) if errors else float("nan")
    ctx.set("tolerance", GOLDEN_TOL)
    ctx.set("tf32", False)
    ctx.set("errors", errors)
    ctx.set("max_error", worst)
    ctx.set("skipped_by_budget", missing)
    ctx.set("pass", bool(errors) and not missing and worst <= GOLDEN_TOL)


def part_fp16(device: torch.device, ctx: PartContext) -> None:
    models = ctx.shared.get("golden_models") or ctx.shared.setdefault("golden_models", GoldenModels(device))
    names = [n for n in GOLDEN_NAMES if n != "dav2_features"]
    if ctx.quick:  # the CPU emulates fp16: only the forward goldens and one windowed run
        names = ["dav2_forward", "dav2_infer_image", "vda_forward_t32", "vda_windows", "vda_infer_video"]
    ctx.set("tolerance", {"max": FP16_MAX_TOL, "mean": FP16_MEAN_TOL})
    if device.type == "cuda":  # torch's defaults, as the tool runs (float32 ops under autocast may use TF32)
        ctx.set("tf32", {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32})
    seen_ours: dict = {}
    ours = golden_outputs(models, "fp16", names=names, seen=seen_ours, clock=ctx.left)
    ours_err = {n: _combine([_err(a, g) for a, g in pairs]) for n, pairs in ours.items()}
    ctx.set("ours", ours_err)
    ctx.set("ours_dtypes", seen_ours)
    seen_off: dict = {}
    vda_names = [n for n in names if n.startswith("vda")]
    official = golden_outputs(models, "fp16", official=True, names=vda_names, seen=seen_off, clock=ctx.left)
    ctx.set("official_style", {n: _combine([_err(a, g) for a, g in pairs]) for n, pairs in official.items()})
    ctx.set("official_style_dtypes", seen_off)
    diff = {}
    for n, pairs in official.items():
        if n in ours:
            diff[n] = _combine([_err(a, b.detach().float().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b))
                                for (a, _), (b, _) in zip(ours[n], pairs)])
    ctx.set("ours_minus_official_style", diff)
    worst_max = max((e["max"] for e in ours_err.values()), default=float("nan"))
    worst_mean = max((e["mean"] for e in ours_err.values()), default=float("nan"))
    ctx.set("max_error", worst_max)
    ctx.set("max_mean_error", worst_mean)
    ctx.set("skipped_by_budget", [n for n in names if n not in ours and n != "dav2_infer_image"])
    ctx.set("pass", bool(ours_err) and worst_max <= FP16_MAX_TOL and worst_mean <= FP16_MEAN_TOL)


# ---------------------------------------------------------------------------------------------------
# part 3: stereo warp, device against CPU


def warp_scenes(height: int, width: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Analytic test scenes ``{name: (colour (H, W, 3) uint8, depth (H, W) float32 metres)}`` for a
    pinhole camera of 60 degrees horizontal field of view."""
    from mvda.ops.geometry import intrinsics_from_fov

    k = intrinsics_from_fov(height, width, xfov=60.0)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = (u - k.cx) / k.fx, (v - k.cy) / k.fy  # ray directions (dx, dy, 1)

    def texture(a: np.ndarray, b: np.ndarray, red: bool = False) -> np.ndarray:
        if red:
            rgb = [200 + 40 * np.sin(2 * np.pi * (a + b) / 0.25), 60 + 30 * np.cos(2 * np.pi * a / 0.3),
                   50 + 20 * np.sin(2 * np.pi * b / 0.2)]
        else:
            rgb = [40 + 20 * np.sin(2 * np.pi * a / 0.9), 120 + 50 * np.sin(2 * np.pi * (0.6 * a + b) / 0.8),
                   170 + 40 * np.cos(2 * np.pi * (a - 0.7 * b) / 1.0)]
        return np.clip(np.floor(np.stack(rgb, -1) + 0.5), 0, 255).astype(np.uint8)

    scenes = {}
    z = np.full((height, width), 2.5)
    scenes["fronto_plane"] = (texture(dx * z, dy * z), z)
    theta = math.radians(50.0)  # plane turned about the vertical axis: n . P = 2.2 (2 to 10 m)
    z = 2.2 / (dx * math.sin(theta) + math.cos(theta))
    scenes["slanted_plane"] = (texture((dx * math.cos(theta) - math.sin(theta)) * z * 0.7, dy * z * 0.7), z)
    wall, box = 4.0, 1.5
    on_box = (u >= width * 0.3) & (u < width * 0.6) & (v >= height * 0.25) & (v < height * 0.7)
    z = np.where(on_box, box, wall)
    colour = np.where(on_box[..., None], texture(dx * box, dy * box, red=True), texture(dx * wall, dy * wall))
    scenes["box_before_wall"] = (colour, z)
    kernel = 5  # soft edges: horizontal box blur of colour and inverse depth
    pad = ((0, 0), (kernel // 2, kernel // 2))
    from numpy.lib.stride_tricks import sliding_window_view

    inv = sliding_window_view(np.pad(1.0 / z, pad, mode="edge"), kernel, axis=1).mean(-1)
    col = sliding_window_view(np.pad(colour.astype(float), pad + ((0, 0),), mode="edge"), kernel, axis=1).mean(-1)
    scenes["soft_box_before_wall"] = (np.clip(np.floor(col + 0.5), 0, 255).astype(np.uint8), 1.0 / inv)
    rng = np.random.default_rng(seed)
    z = rng.choice([0.7, 1.5, 4.0], size=(height, width)) * rng.uniform(0.95, 1.05, (height, width))
    scenes["random_edges"] = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8), z)
    return {name: (c, d.astype(np.float32)) for name, (c, d) in scenes.items()}


def compare_warp(colour: np.ndarray, depth: np.ndarray, device: torch.device, ipd_m: float = 0.2) -> dict:
    """Render both eyes on the CPU and on ``device`` and compare them."""
    from mvda.ops.geometry import intrinsics_from_fov
    from mvda.ops.stereo_warp import StereoWarper, disparity_from_depth

    h, w = depth.shape
    fx = intrinsics_from_fov(h, w, xfov=60.0).fx
    disp = disparity_from_depth(torch.from_numpy(depth), fx, ipd_m, 100.0)
    ref = StereoWarper(h, w, device="cpu").render(colour, disp.numpy(), return_disparity=True)
    if device.type == "cpu":  # the device configuration of the warper: whole frame in one chunk, one worker
        warper = StereoWarper(h, w, device="cpu", chunk_rows=h, workers=1)
    else:
        warper = StereoWarper(h, w, device=device)
    got = warper.render(torch.from_numpy(colour).to(device), disp.to(device), return_disparity=True)
    res = {"size": [h, w], "disparity_px": [round(float(disp.min()), 2), round(float(disp.max()), 2)]}
    diffs, differing, filled = [], 0, 0
    for eye in ("left", "right"):
        a = getattr(got, eye).cpu().numpy().astype(np.int16)
        b = getattr(ref, eye).astype(np.int16)
        d = np.abs(a - b)
        diffs.append(int(d.max()))
        differing += int((d.max(axis=-1) > 0).sum())
        filled += int((getattr(got, f"{eye}_filled").cpu().numpy() != getattr(ref, f"{eye}_filled")).sum())
        dd = np.abs(getattr(got, f"{eye}_disparity").cpu().numpy() - getattr(ref, f"{eye}_disparity"))
        res[f"{eye}_disparity_max_diff"] = float(dd.max())
    res.update(max_colour_diff=max(diffs), differing_pixels=differing, filled_mask_differences=filled,
               pixels=2 * h * w)
    return res


def part_stereo_warp(device: torch.device, ctx: PartContext) -> None:
    size = (60, 80) if ctx.quick else (120, 160)
    scenes = warp_scenes(*size)
    big = (108, 192) if ctx.quick else (1080, 1920)
    try:
        from benchmarks.bench_stereo import synthetic_scene

        scenes[f"bench_scene_{big[1]}x{big[0]}"] = synthetic_scene(big[1], big[0])
    except ImportError as exc:  # bench_stereo imports the stereo script
        ctx.set("bench_scene_error", f"{type(exc).__name__}: {exc}")
    results = {}
    for name, (colour, depth) in scenes.items():
        if ctx.left() <= 0:
            break
        results[name] = compare_warp(colour, depth, device, ipd_m=0.2 if depth.shape[0] <= 200 else 0.063)
        ctx.set("scenes", results)
    worst = max((r["max_colour_diff"] for r in results.values()), default=None)
    ctx.set("tolerance_levels", WARP_TOL)
    ctx.set("max_colour_diff", worst)
    ctx.set("skipped_by_budget", [n for n in scenes if n not in results])
    ctx.set("pass", worst is not None and worst <= WARP_TOL and len(results) == len(scenes))


# ---------------------------------------------------------------------------------------------------
# part 4: conversion end to end


class BusySampler:
    """Fraction of time the GPU was busy while the block ran: NVML utilisation (pynvml) sampled every
    ``interval`` s, else ``nvidia-smi --query-gpu=utilization.gpu`` every 100 ms; ``None`` elsewhere."""

    def __init__(self, device: torch.device, interval: float = 0.05) -> None:
        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self.method: str | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None

    def _nvml_index(self) -> int:
        idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if visible[0].strip() and idx < len(visible) and visible[idx].strip().isdigit():
            return int(visible[idx])
        return idx

    def __enter__(self) -> BusySampler:
        if self.device.type != "cuda":
            self.error = "not a CUDA device"
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self._nvml_index())
            pynvml.nvmlDeviceGetUtilizationRates(handle)
            self.method = "pynvml"

            def sample() -> None:
                while not self._stop.wait(self.interval):
                    self.samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        except Exception as exc:  # noqa: BLE001 - no NVML: fall back to nvidia-smi
            self.error = f"pynvml: {type(exc).__name__}: {exc}"
            try:
                self._proc = subprocess.Popen(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100",
                     "-i", str(self._nvml_index())], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                self.method = "nvidia-smi"
            except OSError as exc2:
                self.error += f"; nvidia-smi: {exc2}"
                return self

            def sample() -> None:
                assert self._proc is not None and self._proc.stdout is not None
                for line in self._proc.stdout:
                    if self._stop.is_set():
                        break
                    with contextlib.suppress(ValueError):
                        self.samples.append(float(line.strip()))
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def fraction(self) -> float | None:
        return float(np.mean(self.samples)) / 100.0 if self.samples else None


def _free_golden_models(ctx: PartContext, device: torch.device) -> None:
    """The small golden networks are not needed by the speed parts: off the device memory figures."""
    if ctx.shared.pop("golden_models", None) is not None and device.type == "cuda":
        torch.cuda.empty_cache()


def make_clip(path: Path, frames: int, height: int, width: int, unique: int = 24) -> Path:
    """A synthetic H.264 clip (``benchmarks.bench_convert.synthetic_frame``), ``unique`` distinct frames
    played forwards and backwards (generating every 1080p frame would cost more than the checks)."""
    from benchmarks.bench_convert import synthetic_frame
    from mvda.io.video import VideoWriter

    pool = [synthetic_frame(i, height, width) for i in range(min(unique, frames))]
    cycle = pool + pool[-2:0:-1] if len(pool) > 2 else pool
    with VideoWriter(path, width, height, 30, codec="libx264", options={"crf": "18", "preset": "ultrafast"}) as writer:
        for i in range(frames):
            writer.write(cycle[i % len(cycle)])
    return path


def _mib(n: float) -> float:
    return round(n / 2**20, 1)


def convert_run(clip: Path, out_dir: Path, models: Any, device: torch.device, frames: int, input_size: int,
                timer: bool = False, busy: bool = False) -> dict:
    """One :func:`mvda.apps.convert.convert_video` with the defaults of the CLI on ``device`` (precision,
    DA-V2 batch); returns frames/s, peak memory, optionally the stage split and the GPU busy fraction."""
    import mvda.apps.convert as cp
    from benchmarks.bench_networks import PeakMemory
    from mvda.device import default_precision

    precision = default_precision(device)
    options = cp.ConvertOptions(input_size=input_size, device=device, precision=precision, progress=False,
                                dav2_batch=4 if device.type == "cuda" else 1, max_len=frames)
    stage_timer = cp.StageTimer(device) if timer else None
    out_dir.mkdir(parents=True, exist_ok=True)
    sampler = BusySampler(device)
    with PeakMemory(device) as mem, (sampler if busy else contextlib.nullcontext()):
        c0 = time.process_time()
        result = cp.convert_video(clip, out_dir, models, options, timer=stage_timer)
        cpu = time.process_time() - c0
    res = {"frames": result.frames, "seconds": round(result.seconds, 3), "fps": round(result.frames_per_second, 3),
           "precision": precision, "size": [result.height, result.width], "input_size": input_size,
           "peak_memory_mib": _mib(mem.peak_total_bytes), "peak_memory_above_start_mib": _mib(mem.peak_bytes),
           "process_cpu_seconds": round(cpu, 2)}
    if device.type == "cuda":
        res["memory_reserved_mib"] = _mib(torch.cuda.max_memory_reserved(device))
    if stage_timer is not None:
        total = sum(stage_timer.seconds.values()) or 1.0
        res["stages_seconds"] = {k: round(v, 3) for k, v in stage_timer.seconds.items()}
        res["stages_fraction"] = {k: round(v / total, 3) for k, v in stage_timer.seconds.items()}
    if busy:
        res["gpu_busy_fraction"] = None if sampler.fraction is None else round(sampler.fraction, 3)
        res["gpu_busy_method"] = sampler.method
        res["gpu_busy_samples"] = len(sampler.samples)
        if sampler.error and sampler.method != "pynvml":
            res["gpu_busy_note"] = sampler.error
    with contextlib.suppress(OSError):
        result.output.unlink()
    return res


def part_convert(device: torch.device, ctx: PartContext) -> None:
    import mvda.apps.convert as cp
    from benchmarks.bench_convert import make_checkpoints

    _free_golden_models(ctx, device)
    if ctx.quick:
        height, width, input_size, short, long, pairs = 108, 192, 28, 8, 36, ["vits"]
    else:
        height, width, input_size, short, long, pairs = 1080, 1920, 518, 60, 600, ["vits", "vitl"]
    work = ctx.workdir / "convert"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clip = make_clip(work / f"clip_{width}x{height}_{long}.mp4", long, height, width)
    ctx.set("clip", {"size": [height, width], "frames": long, "seconds_to_make": round(time.perf_counter() - t0, 1)})
    results: dict[str, dict] = {}
    ctx.set("pairs", results)
    for k, enc in enumerate(pairs):
        name = f"{enc}/{enc}"
        pair_budget = ctx.left() / (len(pairs) - k)
        pair_end = time.monotonic() + pair_budget
        res: dict[str, Any] = {}
        results[name] = res
        if pair_budget < (20 if ctx.quick else 45):
            res["status"] = f"skipped: {pair_budget:.0f} s left for it"
            ctx.set("pairs", results)
            continue
        t0 = time.perf_counter()
        ckpt = make_checkpoints(work, enc, enc)
        models = cp.load_models("vda+dav2", enc, enc, "hypersim", device, vda_checkpoint=ckpt["vda"],
                                metric_checkpoint=ckpt["dav2"])
        res["load_seconds"] = round(time.perf_counter() - t0, 1)
        if not ctx.quick:
            warm = convert_run(clip, work / "out", models, device, 32, input_size)
            res["warmup"] = {"frames": warm["frames"], "seconds": warm["seconds"]}
        res["short"] = convert_run(clip, work / "out", models, device, short, input_size, timer=True)
        ctx.set("pairs", results)
        fps = res["short"]["fps"]
        left = pair_end - time.monotonic()
        frames = long
        estimate = long / fps * 1.15 + 3
        if estimate > left:
            frames = int(max(0, left - 3) / 1.15 * fps)
            res["long_note"] = f"shortened from {long} to {frames} frames by the budget (estimate {estimate:.0f} s, {left:.0f} s left)"
        if frames >= max(short + 1, 33):
            res["long"] = convert_run(clip, work / "out", models, device, frames, input_size, busy=True)
            res["memory_ratio_long_vs_short"] = round(res["long"]["peak_memory_mib"] / max(1e-9, res["short"]["peak_memory_mib"]), 4)
        else:
            res["long_note"] = f"skipped: {left:.0f} s left, {long} frames need about {estimate:.0f} s"
        ctx.set("pairs", results)
        del models
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ctx.set("pass", None)


# ---------------------------------------------------------------------------------------------------
# part 5: networks against the upstream-equivalent reference


def part_networks(device: torch.device, ctx: PartContext) -> None:
    from benchmarks.bench_networks import bench_one
    from mvda.device import default_precision

    _free_golden_models(ctx, device)
    precision = default_precision(device)
    if ctx.quick:
        encoders, size, args = ["vits"], 56, argparse.Namespace(frames=4, repeat=1, warmup=1, reference=True)
    else:
        encoders, size, args = ["vits", "vitl"], 518, argparse.Namespace(frames=32, repeat=3, warmup=1, reference=True)
    rows: list[dict] = []
    skipped = []
    for enc in encoders:
        for family in ("vda", "dav2"):
            need = 5 if ctx.quick else (15 if enc == "vits" else 35)
            if ctx.left() < need:
                skipped.append(f"{family} {enc}")
                continue
            for row in bench_one(family, enc, size, precision, args, device):
                rows.append({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
            ctx.set("rows", rows)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    ctx.set("precision", precision)
    ctx.set("skipped_by_budget", skipped)
    speedups = {f"{r['model']} {r['encoder']}": r["speedup_ours_vs_reference"] for r in rows if r["impl"] == "reference"}
    ctx.set("speedups", speedups)
    ctx.set("pass", None)


# ---------------------------------------------------------------------------------------------------
# part 6: stereo end to end


def part_stereo(device: torch.device, ctx: PartContext) -> None:
    import benchmarks.bench_stereo as bs

    height, width = (108, 192) if ctx.quick else (1080, 1920)
    repeat, frames = (3, 6) if ctx.quick else (30, 60)
    r = bs.bench_render(width, height, device, repeat, None)
    ctx.set("render", {"size": [height, width], "repeat": repeat, **{k: round(v, 3) if isinstance(v, float) else v
                                                                     for k, v in r.items()}})
    estimate = frames * (0.15 if ctx.quick else 0.25) + 5  # clip generation dominates (numpy scene per frame)
    if ctx.left() < estimate:
        ctx.set("io_note", f"skipped: {ctx.left():.0f} s left, about {estimate:.0f} s needed")
    else:
        e = bs.bench_io(width, height, device, frames, "fast")
        ctx.set("io", {"size": [height, width], "preset": "fast", **{k: round(v, 3) if isinstance(v, float) else v
                                                                   for k, v in e.items()}})
    ctx.set("pass", None)


# ---------------------------------------------------------------------------------------------------
# driver


class PartContext:
    """What a part gets: its clock, the report, the shared state between parts and the run's options."""

    def __init__(self, name: str, budget: Budget, report: Report, shared: dict, quick: bool, workdir: Path) -> None:
        self.name, self.budget, self.report, self.shared = name, budget, report, shared
        self.quick, self.workdir = quick, workdir

    def left(self) -> float:
        return self.budget.left(self.name)

    def set(self, key: str, value: Any) -> None:
        self.report.set(self.name, key, value)


PART_FUNCTIONS: dict[str, Callable[[torch.device, PartContext], None]] = {
    "goldens": part_goldens, "fp16": part_fp16, "stereo_warp": part_stereo_warp, "convert": part_convert,
    "networks": part_networks, "stereo": part_stereo,
}


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def evaluate_goals(data: dict) -> list[dict]:
    """Goals of issue 16 from the report: ``{"goal", "pass" (True/False/None: not evaluated), "detail"}``.
    Speed and memory goals are evaluated only on CUDA at full size (they are stated for one H100)."""
    parts = data.get("parts", {})
    cuda_full = data.get("device", "").startswith("cuda") and not data.get("quick")
    goals: list[dict] = []

    def add(goal: str, ok: bool | None, detail: str, speed: bool = False) -> None:
        if speed and not cuda_full and ok is not None:
            detail += " (not a full-size CUDA run: not evaluated)"
            ok = None
        goals.append({"goal": goal, "pass": ok, "detail": detail})

    g = parts.get("goldens", {})
    if "errors" in g:
        add("goldens float32, TF32 off", g.get("pass"),
            f"max error {_fmt(g.get('max_error'), '.2e')} <= {GOLDEN_TOL:.0e} over {len(g['errors'])} goldens"
            + (f"; not run: {', '.join(g['skipped_by_budget'])}" if g.get("skipped_by_budget") else ""))
    f = parts.get("fp16", {})
    if "ours" in f:
        off = f.get("official_style", {})
        diff = f.get("ours_minus_official_style", {})
        dav2 = f["ours"].get("dav2_infer_images", {})
        add("fp16 autocast against the float32 goldens", f.get("pass"),
            f"ours max {_fmt(f.get('max_error'), '.4f')} <= {FP16_MAX_TOL}, worst mean {_fmt(f.get('max_mean_error'), '.4f')} "
            f"<= {FP16_MEAN_TOL}; official-style VDA max {_fmt(max((e['max'] for e in off.values()), default=None), '.4f')}; "
            f"ours - official-style max {_fmt(max((e['max'] for e in diff.values()), default=None), '.4f')}; "
            f"DA-V2 fp16 (official: fp32) max {_fmt(dav2.get('max'), '.4f')}; dtypes ours {f.get('ours_dtypes')}, "
            f"official-style {f.get('official_style_dtypes')}")
    w = parts.get("stereo_warp", {})
    if "scenes" in w:
        add("stereo warp on the device = CPU path within one colour level", w.get("pass"),
            f"max colour difference {w.get('max_colour_diff')} level(s) over {len(w['scenes'])} scenes, "
            f"{sum(s['differing_pixels'] for s in w['scenes'].values())} differing pixels, "
            f"{sum(s['filled_mask_differences'] for s in w['scenes'].values())} fill-mask differences")
    c = parts.get("convert", {}).get("pairs", {})
    for name, res in c.items():
        goal_fps = GOAL_CONVERT_FPS.get(name)
        run = res.get("long") or res.get("short")
        if not run:
            add(f"conversion {name} 1080p @518", None, res.get("status") or res.get("long_note") or "not run", speed=True)
            continue
        busy = run.get("gpu_busy_fraction")
        stages = res.get("short", {}).get("stages_fraction", {})
        detail = (f"{run['fps']:.2f} frames/s over {run['frames']} frames of {run['size'][1]}x{run['size'][0]} at input "
                  f"{run['input_size']} ({run['precision']}); GPU busy {_fmt(None if busy is None else 100 * busy, '.0f')} %"
                  f" ({run.get('gpu_busy_method')}); split " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in stages.items()))
        add(f"conversion {name} >= {goal_fps:g} frames/s", run["fps"] >= goal_fps if goal_fps else None, detail, speed=True)
        if "memory_ratio_long_vs_short" in res:
            ratio = res["memory_ratio_long_vs_short"]
            add(f"peak memory {name}: {res['long']['frames']} frames <= {GOAL_MEMORY_RATIO}x {res['short']['frames']} frames",
                ratio <= GOAL_MEMORY_RATIO,
                f"{res['long']['peak_memory_mib']:.0f} MiB vs {res['short']['peak_memory_mib']:.0f} MiB = {ratio:.3f}x"
                + (" (allocator peak, weights included)" if cuda_full else " (process RSS)"), speed=True)
    n = parts.get("networks", {})
    for row in n.get("rows", []):
        if row["impl"] != "reference":
            continue
        sp = row["speedup_ours_vs_reference"]
        add(f"network {row['model']} {row['encoder']} >= {GOAL_NETWORK_SPEEDUP}x reference", sp >= GOAL_NETWORK_SPEEDUP,
            f"{sp:.2f}x at {row['input_size']} ({row['frames']} frames, {row['precision']}), ours "
            f"{row['frames'] * sp / row['seconds_per_call_min']:.1f} frames/s, "
            f"max |ours - reference| {row['max_abs_diff_ours_vs_reference']:.2e}", speed=True)
    s = parts.get("stereo", {})
    if "render" in s:
        r = s["render"]
        add(f"stereo render {r['size'][1]}x{r['size'][0]} >= {GOAL_STEREO_FPS:g} frames/s", r["median_fps"] >= GOAL_STEREO_FPS,
            f"{r['median_fps']:.1f} frames/s median, {r['best_fps']:.1f} best (no I/O)", speed=True)
    if "io" in s:
        e = s["io"]
        add("stereo end to end with H.264", None, f"{e['fps']:.1f} frames/s over {e['frames']} frames "
            f"{e['size'][1]}x{e['size'][0]} (decode + render + H.264 {e['preset']})")
    return goals


def summary_lines(data: dict, note: str | None = None) -> list[str]:
    """The text summary: header, one line per goal, then parts that did not finish."""
    lines = [f"GPU check on {data.get('device_name')} ({data.get('device')}, torch {data.get('torch')}"
             f"{', CUDA ' + str(data['cuda']) if data.get('cuda') else ''}), {data.get('started')}; budget "
             f"{data.get('budget_s')} s{', QUICK sizes' if data.get('quick') else ''}"]
    for g in evaluate_goals(data):
        tag = {True: "PASS", False: "FAIL", None: "INFO"}[g["pass"]]
        lines.append(f"{tag} {g['goal']}: {g['detail']}")
    for name, part in data.get("parts", {}).items():
        status = part.get("status", "")
        if status and status != "ok":
            lines.append(f"NOTE part {name}: {status}")
    if note:
        lines.append(f"NOTE {note}")
    if "elapsed_s" in data:
        lines.append(f"took {data['elapsed_s']:.0f} s")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (the CPU path)")
    p.add_argument("--budget_s", type=float, default=420.0,
                   help="the run stops itself after this many seconds, writing what it has (default 420)")
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder of gpu_check.json / .txt")
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests the script; no speed figures)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma list of parts (default all: {','.join(PARTS)})")
    p.add_argument("--workdir", type=Path, default=None, help="clips and checkpoints here (default: a temp folder)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 with --quick on the CPU, steadier on a shared machine)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        print(f"error: unknown parts {unknown}: use {','.join(PARTS)}", file=sys.stderr)
        return 2
    if not args.budget_s > 0:
        print("error: --budget_s must be > 0", file=sys.stderr)
        return 2
    from mvda.device import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threads = args.threads or (1 if args.quick and device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    budget = Budget(args.budget_s, parts)
    header = {"schema": 1, "issue": 16, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "budget_s": args.budget_s, "quick": args.quick, "parts_requested": parts,
              "torch_threads": torch.get_num_threads(), **device_info(device),
              "tolerances": {"golden": GOLDEN_TOL, "fp16_max": FP16_MAX_TOL, "fp16_mean": FP16_MEAN_TOL,
                             "warp_levels": WARP_TOL}}
    report = Report(args.out, header)
    report.write()
    shared: dict = {}

    def finish(note: str | None = None) -> list[str]:
        with report.lock:
            report.data["elapsed_s"] = round(budget.elapsed(), 1)
            report.data["goals"] = evaluate_goals(report.data)
            return summary_lines(report.data, note)

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp, Watchdog(budget, report, finish) as watchdog:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in parts:
            watchdog.current = name
            ctx = PartContext(name, budget, report, shared, args.quick, workdir)
            left = budget.begin(name)
            if left <= 1:
                ctx.set("status", f"skipped: budget spent ({left:.0f} s left for it)")
                continue
            t0 = time.perf_counter()
            print(f"[{budget.elapsed():6.1f} s] {name}: {left:.0f} s", flush=True)
            try:
                PART_FUNCTIONS[name](device, ctx)
                status = "ok"
            except Exception as exc:  # noqa: BLE001 - one broken part must not stop the others
                status = f"error: {type(exc).__name__}: {exc}"
                ctx.set("traceback", traceback.format_exc()[-4000:])
            ctx.set("status", status)
            ctx.set("seconds", round(time.perf_counter() - t0, 1))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        watchdog.current = ""
        lines = finish()
        report.write(lines)
    print("\n".join(lines), flush=True)
    goals = report.data["goals"]
    return 1 if any(g["pass"] is False for g in goals) else 0


if __name__ == "__main__":
    raise SystemExit(main())

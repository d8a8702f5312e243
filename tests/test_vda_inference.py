"""Tests of the Video-Depth-Anything windowed inference and its streaming form.

The stitching tests use fake models, so they check windowing, keyframe substitution, padding,
scale/shift alignment and cross-fade independently of the network. The golden fixtures come from
the official code (see tests/fixtures/README.md of the shared fixtures).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_anything_v2.transform import IMAGENET_MEAN, IMAGENET_STD, network_input_size, prepare_images
from tests.helpers import load_golden
from video_depth_anything.inference import (
    VideoDepthStream,
    crossfade_weights,
    fit_scale_shift,
    infer_video_depth,
    padded_length,
    resolve_precision,
    stream_video_depth,
    video_input_size,
    window_starts,
)

# Written out here (not imported) so the tests check the module's constants too.
KEYFRAMES = [0, 12, 24, 25, 26, 27, 28, 29, 30, 31]


# ---------------------------------------------------------------------------------------------
# fake models


class ReplayModel(nn.Module):
    """Returns the k-th recorded window output on the k-th call and records the inputs."""

    def __init__(self, outputs: np.ndarray, metric: bool) -> None:
        super().__init__()
        self.outputs = torch.from_numpy(outputs)
        self.metric = metric
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return self.outputs[len(self.inputs) - 1][None].clone()


class MixModel(nn.Module):
    """Cheap deterministic stand-in for the network: depends on each frame, on its position in
    the window and on the whole window, so keyframe or ordering mistakes change the output."""

    def __init__(self, metric: bool = False) -> None:
        super().__init__()
        self.metric = metric
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        _, t, _, _, _ = x.shape
        per_frame = x[:, :, 0] * 0.7 + x[:, :, 1] * 0.2 - x[:, :, 2] * 0.4
        context = x.mean(dim=(1, 2))[:, None]
        position = torch.arange(t, dtype=x.dtype).view(1, t, 1, 1)
        return F.softplus(1.5 * per_frame + 0.3 * context + 0.05 * position - 0.5)


def _identity_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is uniformly grey with value 2 i, so its network input encodes i."""
    values = (2 * np.arange(n)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, height, width, 3)).copy()


def _decode_identity(window_input: torch.Tensor) -> list[int]:
    """Frame ids of a (1, T, 3, h, w) input built from :func:`_identity_frames`."""
    red = window_input[0, :, 0].mean(dim=(-1, -2)).double()
    values = (red * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255.0
    return [int(v) // 2 for v in torch.round(values).tolist()]


def _random_video(n: int, seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    """Small random video with a slow brightness drift (so windows need different scale/shift)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, size=(1, height, width, 3))
    noise = rng.integers(0, 40, size=(n, height, width, 3))
    drift = (np.arange(n) % 17)[:, None, None, None]
    return (base + noise + drift).clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# plain transcription of the official algorithm (whole video at once), independent of the stream


def _reference_infer(model, frames: np.ndarray, input_size: int, output_size=None):
    n, h, w, _ = frames.shape
    out_h, out_w = output_size or (h, w)
    ratio = max(h, w) / min(h, w)
    if ratio > 1.78:
        input_size = round(int(input_size * 1.777 / ratio) / 14) * 14
    size = network_input_size(h, w, input_size)
    total = n + (22 - n % 22) % 22 + 10
    padded = np.concatenate([frames, np.repeat(frames[-1:], total - n, axis=0)])
    inputs = prepare_images(padded, size)
    depth_list, previous = [], None
    for start in range(0, n, 22):
        current = inputs[start : start + 32].clone()
        if previous is not None:
            current[:10] = previous[KEYFRAMES]
        with torch.no_grad():
            depth = model(current[None]).float()
        depth = F.interpolate(
            depth.flatten(0, 1).unsqueeze(1), size=(out_h, out_w), mode="bilinear", align_corners=True
        )
        depth_list += [d[0].numpy() for d in depth]
        previous = current
    aligned, ref = [], []
    weights = [0.0] + [i * (1.0 / 7) for i in range(1, 7)] + [1.0]
    for base in range(0, len(depth_list), 32):
        if not aligned:
            aligned += depth_list[:32]
            ref = [depth_list[base + 0], depth_list[base + 12]]
            continue
        if model.metric:
            scale, shift = 1.0, 0.0
        else:
            p = np.concatenate(depth_list[base : base + 2])
            t = np.concatenate(ref)
            a00, a01, a11 = np.sum(p * p), np.sum(p), np.sum(np.ones_like(p))
            b0, b1 = np.sum(p * t), np.sum(t)
            det = a00 * a11 - a01 * a01
            scale, shift = ((a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det) if det != 0 else (1, 0)

        def fix(d):
            d = d * scale + shift
            d[d < 0] = 0
            return d

        post = [fix(depth_list[base + i]) for i in range(2, 10)]
        aligned[-8:] = [a * (1 - wt) + b * wt for a, b, wt in zip(aligned[-8:], post, weights)]
        aligned += [fix(depth_list[base + i]) for i in range(10, 32)]
        ref = [ref[0], fix(depth_list[base + 12])]
    return np.stack(aligned[:n])


# ---------------------------------------------------------------------------------------------
# helpers


def test_window_layout_helpers():
    assert [padded_length(n) for n in (1, 10, 22, 23, 32, 33, 44, 45)] == [32, 32, 32, 54, 54, 54, 54, 76]
    assert window_starts(45) == [0, 22, 44]
    assert window_starts(44) == [0, 22]
    assert window_starts(1) == [0]
    for n in range(1, 120):  # the last window always ends exactly at the padded length
        assert window_starts(n)[-1] + 32 == padded_length(n)
    with pytest.raises(ValueError):
        padded_length(0)


def test_video_input_size_wide_aspect_rule():
    assert video_input_size(48, 64, 56) == 56  # 4:3, unchanged
    assert video_input_size(1080, 1920, 518) == 518  # 16:9 is below the 1.78 threshold
    assert video_input_size(1920, 1080, 518) == 518  # portrait, same ratio
    # 4:1 -> int(518 * 1.777 / 4) = 230 -> round(16.43) * 14 = 224
    assert video_input_size(100, 400, 518) == 224
    # 2.48:1 -> int(371.16) = 371 -> 371 / 14 = 26.5 rounds half to even -> 26 * 14 = 364
    assert video_input_size(100, 248, 518) == 364


def test_crossfade_weights():
    w = crossfade_weights(8)
    assert len(w) == 8 and w[0] == 0.0 and w[-1] == 1.0
    assert w[1:-1] == [i * (1.0 / 7) for i in range(1, 7)]


def test_fit_scale_shift_hand_computed():
    p = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert fit_scale_shift(p, 2.0 * p + 1.0) == (2.0, 1.0)
    # p = [0, 1, 2], t = [1, 1, 4]: normal equations [[5, 3], [3, 3]] x = [9, 6] -> (1.5, 0.5)
    assert fit_scale_shift(np.array([0, 1, 2], np.float32), np.array([1, 1, 4], np.float32)) == (1.5, 0.5)
    # constant prediction: singular system -> identity
    assert fit_scale_shift(np.full((3, 3), 2.0, np.float32), np.ones((3, 3), np.float32)) == (1.0, 0.0)


def test_resolve_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(cpu) == "fp32"
    assert resolve_precision(cuda) == "fp16"
    assert resolve_precision(cpu, fp32=True) == "fp32"
    assert resolve_precision(cpu, fp32=False) == "bf16"  # torch.autocast('cpu') default dtype
    assert resolve_precision(cuda, fp32=False) == "fp16"
    assert resolve_precision(cpu, precision="BF16") == "bf16"
    with pytest.raises(ValueError, match="contradicts"):
        resolve_precision(cpu, fp32=True, precision="fp16")
    with pytest.raises(ValueError):
        resolve_precision(cpu, precision="int8")


# ---------------------------------------------------------------------------------------------
# stitching against the official goldens, with the recorded window outputs


@pytest.mark.parametrize("metric", [False, True])
def test_stitching_reproduces_golden_with_recorded_windows(metric):
    relative = load_golden("golden_vda_vits_infer_video")
    golden = load_golden("golden_vda_metric_vits_infer_video") if metric else relative
    frames = _identity_frames(45)
    model = ReplayModel(relative["window_outputs"], metric=metric)

    depth, fps = infer_video_depth(model, frames, 30, input_size=56, device="cpu", fp32=True)

    assert fps == 30
    assert depth.shape == (45, 48, 64) and depth.dtype == np.float32
    # The network outputs are replayed, so only resizing and stitching remain: they follow the
    # official operation order in float32, hence far below the fixture tolerance of 1e-4.
    assert np.abs(depth - golden["output"]).max() <= 1e-6

    # windowing and keyframe substitution: 3 windows of 32 frames of 56x70
    assert [tuple(x.shape) for x in model.inputs] == [(1, 32, 3, 56, 70)] * 3
    ids = [_decode_identity(x) for x in model.inputs]
    padded = [min(i, 44) for i in range(76)]
    assert ids[0] == padded[0:32]
    assert ids[1] == [ids[0][k] for k in KEYFRAMES] + padded[32:54]
    assert ids[2] == [ids[1][k] for k in KEYFRAMES] + padded[54:76]
    assert ids[2][:2] == [0, 34]


def test_metric_and_relative_agree_up_to_frame_24():
    relative = load_golden("golden_vda_vits_infer_video")
    frames = _identity_frames(45)
    rel, _ = infer_video_depth(ReplayModel(relative["window_outputs"], False), frames, 30, input_size=56, fp32=True)
    met, _ = infer_video_depth(ReplayModel(relative["window_outputs"], True), frames, 30, input_size=56, fp32=True)
    np.testing.assert_array_equal(rel[:25], met[:25])  # cross-fade weight of the new window is 0 at 24
    assert np.abs(rel[25:] - met[25:]).max() > 0.01


def test_streaming_reproduces_golden_with_recorded_windows():
    golden = load_golden("golden_vda_vits_infer_video")
    stream = VideoDepthStream(ReplayModel(golden["window_outputs"], False), input_size=56, device="cpu")
    out = []
    for i, frame in enumerate(golden["frames"]):
        emitted = stream.push(frame)
        out += emitted
        assert len(emitted) == (24 if i == 31 else 0)  # the first window runs once 32 frames are in
    out += stream.flush()
    assert len(out) == 45 and stream.frames_emitted == 45 and stream.windows_run == 3
    assert np.abs(np.stack(out) - golden["output"]).max() <= 1e-6


@pytest.mark.parametrize("metric", [False, True])
def test_stitching_hand_computed(metric):
    """Two windows of per-frame constant depth, so every output value can be worked out by hand.

    Window 0: a_0 = 1, a_12 = 3, else 2. Window 1: b_0 = 1, b_1 = 2, then 0.25 / 1.5 alternating.
    Relative: the fit of (b_0, b_1) onto the references (a_0, a_12) is exact: scale 2, shift -1,
    so 0.25 -> -0.5 -> clamped to 0 and 1.5 -> 2. Metric: scale 1, shift 0.
    """
    a = np.full(32, 2.0, np.float32)
    a[0], a[12] = 1.0, 3.0
    b = np.where(np.arange(32) % 2 == 0, 0.25, 1.5).astype(np.float32)
    b[0], b[1] = 1.0, 2.0
    outputs = np.broadcast_to(np.stack([a, b])[:, :, None, None], (2, 32, 14, 14)).copy()
    n = 40  # windows at 0 and 22; frames 24..31 cross-faded, 32..39 from window 1 only
    depth, _ = infer_video_depth(ReplayModel(outputs, metric), np.zeros((n, 4, 4, 3), np.uint8), 30, input_size=14)

    fixed = {0.25: 0.25, 1.5: 1.5} if metric else {0.25: 0.0, 1.5: 2.0}
    expected = list(a[:24])
    for i in range(8):  # cross-fade: old window weight 1 - i/7, new window weight i/7
        post = fixed[float(b[i + 2])]
        expected.append(2.0 * (1 - i / 7) + post * (i / 7))
    expected += [fixed[float(b[p])] for p in range(10, 18)]
    assert depth.shape == (n, 4, 4)
    expected = np.broadcast_to(np.float32(expected)[:, None, None], (n, 4, 4))
    np.testing.assert_allclose(depth, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# the real network (pf-v1 procedural weights) against the official goldens


@pytest.mark.parametrize("metric", [False, True])
@pytest.mark.slow
def test_real_model_reproduces_infer_video_goldens(pf_v1_vda_vits, metric):
    relative = load_golden("golden_vda_vits_infer_video")
    golden = load_golden("golden_vda_metric_vits_infer_video") if metric else relative
    model = pf_v1_vda_vits[metric]
    windows: list[torch.Tensor] = []
    hook = model.register_forward_hook(lambda module, args, out: windows.append(out.detach().clone()))
    try:
        depth, fps = model.infer_video_depth(relative["frames"], 30, input_size=56, device="cpu", fp32=True)
    finally:
        hook.remove()
    assert fps == 30 and depth.shape == (45, 48, 64) and depth.dtype == np.float32
    # Fixture tolerance (README): float noise of the official graph is <= 1.5e-5; structural
    # mistakes move the outputs by >= 0.28.
    assert len(windows) == 3
    assert np.abs(torch.cat(windows).numpy() - relative["window_outputs"]).max() <= 1e-4
    assert np.abs(depth - golden["output"]).max() <= 1e-4

    # the stream, fed one frame at a time, gives bit-identical results
    stream = VideoDepthStream(model, input_size=56, device="cpu", precision="fp32")
    out = [d for frame in relative["frames"] for d in stream.push(frame)] + stream.flush()
    np.testing.assert_array_equal(np.stack(out), depth)


# ---------------------------------------------------------------------------------------------
# streaming == batch == plain reference


@pytest.mark.parametrize("n", [1, 10, 22, 23, 32, 33, 45, 54, 100])
@pytest.mark.parametrize("metric", [False, True])
def test_streaming_equals_batch(n, metric):
    frames = _random_video(n, seed=n)
    batch, _ = infer_video_depth(MixModel(metric), frames, -1, input_size=28, device="cpu")
    assert batch.shape == (n, 12, 16) and batch.dtype == np.float32

    reference = _reference_infer(MixModel(metric), frames, input_size=28)
    # Same float32 operations in the same order; only the batch size of the bicubic resize differs.
    np.testing.assert_allclose(batch, reference, rtol=0, atol=1e-6)

    model = MixModel(metric)
    stream = VideoDepthStream(model, input_size=28, device="cpu")
    single = []
    for i, frame in enumerate(frames, start=1):
        single += stream.push(frame)
        final = 0 if i < 32 else 24 + 22 * ((i - 32) // 22)
        assert stream.frames_pushed == i and stream.frames_emitted == final == len(single)
    single += stream.flush()
    assert model.calls == len(window_starts(n))
    np.testing.assert_array_equal(np.stack(single), batch)

    rng = np.random.default_rng(n)
    stream = VideoDepthStream(MixModel(metric), input_size=28, device="cpu")
    chunked, start = [], 0
    while start < n:
        size = int(rng.integers(1, 40))
        chunked += stream.push(frames[start : start + size])
        start += size
    chunked += stream.flush()
    np.testing.assert_array_equal(np.stack(chunked), batch)

    generated = list(stream_video_depth(MixModel(metric), iter(torch.from_numpy(frames)), input_size=28))
    np.testing.assert_array_equal(np.stack(generated), batch)


@pytest.mark.parametrize("metric", [False, True])
def test_push_prepared_equals_push(metric):
    """Frames prepared once outside (e.g. shared with DA-V2) give bit-identical output; float frames
    (downscaled by the converter) are not modified by either path."""
    frames = torch.from_numpy(_random_video(57, seed=5)).to(torch.float32)
    kept = frames.clone()
    plain = VideoDepthStream(MixModel(metric), input_size=28, device="cpu", output="torch")
    ref = [d for f in frames for d in plain.push(f)] + plain.flush()
    stream = VideoDepthStream(MixModel(metric), input_size=28, device="cpu", output="torch")
    size = stream.network_size_for(12, 16)
    assert size == plain.network_size
    out = []
    for i, f in enumerate(frames):
        if i % 3:
            out += stream.push(f)
        else:
            out += stream.push_prepared(prepare_images(f, size), (12, 16))
    out += stream.flush()
    assert torch.equal(torch.stack(out), torch.stack(ref))
    assert torch.equal(frames, kept)
    stream = VideoDepthStream(MixModel(metric), input_size=28, device="cpu")
    with pytest.raises(ValueError, match="prepared frames"):
        stream.push_prepared(torch.zeros(1, 3, 14, 14), (12, 16))
    stream.push(frames[0])
    with pytest.raises(ValueError, match="same size"):
        stream.push_prepared(prepare_images(frames[0], size), (13, 16))


def test_output_size_and_torch_output():
    frames = _random_video(40, seed=3)
    reference = _reference_infer(MixModel(), frames, input_size=28, output_size=(25, 33))
    stream = VideoDepthStream(MixModel(), input_size=28, device="cpu", output_size=(25, 33), output="torch")
    out = [d for f in frames for d in stream.push(f)] + stream.flush()
    assert all(isinstance(d, torch.Tensor) and d.shape == (25, 33) and d.dtype == torch.float32 for d in out)
    np.testing.assert_allclose(torch.stack(out).numpy(), reference, rtol=0, atol=1e-6)
    depth, _ = infer_video_depth(MixModel(), frames, 30, input_size=28, output_size=(25, 33))
    np.testing.assert_array_equal(depth, torch.stack(out).numpy())


def test_wide_video_uses_reduced_input_size():
    frames = np.zeros((3, 10, 40, 3), np.uint8)  # 4:1 -> input_size 56 becomes int(24.9) -> 28
    model = MixModel()
    stream = VideoDepthStream(model, input_size=56, device="cpu")
    stream.push(frames)
    assert stream.network_size == network_input_size(10, 40, 28) == (28, 112)
    assert len(stream.flush()) == 3


# ---------------------------------------------------------------------------------------------
# bounded memory


def _run_and_track(n: int) -> tuple[int, int, int]:
    stream = VideoDepthStream(MixModel(), input_size=14, device="cpu")
    max_frames = max_bytes = max_lag = 0
    for frame in _random_video(n, seed=0, height=8, width=8):
        stream.push(frame)
        max_frames = max(max_frames, stream.retained_frames())
        max_bytes = max(max_bytes, stream.retained_bytes())
        max_lag = max(max_lag, stream.frames_pushed - stream.frames_emitted)
    before = stream.frames_emitted
    assert len(stream.flush()) == n - before
    assert stream.retained_frames() == 0 and stream.retained_bytes() == 0
    return max_frames, max_bytes, max_lag


def test_retained_state_does_not_grow_with_video_length():
    short, long = _run_and_track(100), _run_and_track(300)
    assert short == long
    max_frames, max_bytes, max_lag = long
    # at most 31 frames waiting for the first window; afterwards <= 21 waiting + 10 keyframe
    # inputs + 8 open depth frames + 2 reference depth frames
    assert max_frames <= 41
    assert max_lag <= 31
    one_input = 3 * 14 * 14 * 4
    one_depth = 8 * 8 * 4
    assert max_bytes <= 31 * one_input + 10 * one_input + 8 * one_depth + 2 * one_depth


def test_flush_pads_and_emits_exactly_the_video_length():
    for n in (1, 31, 32, 33, 53, 54, 55):
        stream = VideoDepthStream(MixModel(), input_size=14, device="cpu")
        pushed = [d for f in _random_video(n, seed=n, height=8, width=8) for d in stream.push(f)]
        rest = stream.flush()
        assert len(pushed) + len(rest) == n and stream.frames_emitted == n
        assert stream.windows_run == len(window_starts(n))
        assert stream.flush() == []


# ---------------------------------------------------------------------------------------------
# precision and errors


class AutocastProbe(nn.Module):
    metric = False

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        flat = x.mean(2).flatten(2)  # (1, T, h*w)
        eye = torch.eye(flat.shape[-1])
        return (flat @ eye).view(x.shape[0], x.shape[1], x.shape[3], x.shape[4])  # bf16 under autocast


def test_precision_selects_autocast_and_output_is_float32():
    frames = _random_video(5, seed=1)
    probe = AutocastProbe()
    depth, _ = infer_video_depth(probe, frames, 30, input_size=14, device="cpu", precision="bf16")
    assert probe.seen == [(True, torch.bfloat16)] and depth.dtype == np.float32
    probe = AutocastProbe()
    exact, _ = infer_video_depth(probe, frames, 30, input_size=14, device="cpu", fp32=True)
    assert probe.seen[0][0] is False
    assert 0 < np.abs(depth - exact).max() < 0.05  # bf16 has an 8-bit mantissa


def test_errors():
    frames = _random_video(3, seed=1)
    with pytest.raises(ValueError, match="no frames"):
        infer_video_depth(MixModel(), frames[:0], 30)
    with pytest.raises(ValueError, match="shape"):
        infer_video_depth(MixModel(), frames[0], 30)
    stream = VideoDepthStream(MixModel(), input_size=14)
    stream.push(frames[0])
    with pytest.raises(ValueError, match="same size"):
        stream.push(np.zeros((10, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        stream.push(np.zeros((12, 16), np.uint8))
    stream.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        stream.push(frames[0])
    with pytest.raises(ValueError, match="metric"):
        VideoDepthStream(lambda x: x, input_size=14)
    on_meta = nn.Linear(2, 2, device="meta")
    on_meta.metric = False
    with pytest.raises(ValueError, match="move it first"):
        VideoDepthStream(on_meta, device="cpu")
    with pytest.raises(ValueError, match="output_size"):
        VideoDepthStream(MixModel(), output_size=(0, 4))

    class WrongShape(MixModel):
        def forward(self, x):
            return super().forward(x)[:, :, :-1]

    with pytest.raises(ValueError, match="returned shape"):
        infer_video_depth(WrongShape(), frames, 30, input_size=14)

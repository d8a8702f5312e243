"""video_metric_convert.py / convert_pipeline: end to end on tiny synthetic clips.

The networks are the real vits architectures with procedural pf-v1 weights written to a temporary
folder once per session (the relative and the metric Video-Depth-Anything share their keys, so one
file serves both), run at ``--input_size 28``. The exactness of the streaming rolling fit (which
DA-V2 statistics meet which VDA frame, despite VDA's lag) is checked with cheap stand-in networks
against an independent numpy implementation of the original formula.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mvda.apps.convert as cp
import video_metric_convert
from depth_codec import DepthVideoReader, depth_step
from video_depth_anything.inference import infer_video_depth
from mvda.io.video import VideoReader, VideoWriter
from tests.helpers import REPO, one_line_error, synthetic_frames

H, W = 36, 48


# Tiny tensors: thread start-up and contention on a shared 2-core machine dominate, so the networks run
# single-threaded (identical results, far less noisy timing).
pytestmark = pytest.mark.usefixtures("one_thread")


def write_clip(path: Path, n: int, fps: int = 24, height: int = H, width: int = W, seed: int = 0) -> Path:
    """Lossless FFV1 clip (so the frames the pipeline decodes are exactly the ones generated)."""
    with VideoWriter(path, width, height, fps, codec="ffv1", pix_fmt="bgr0") as writer:
        for frame in synthetic_frames(n, height, width, seed):
            writer.write(frame)
    return path


def read_depth(path: Path) -> tuple[np.ndarray, DepthVideoReader]:
    with DepthVideoReader(path) as reader:
        depth = np.stack(list(reader))
    return depth, reader


@pytest.fixture(scope="session")
def checkpoints(procedural_checkpoints) -> dict[str, Path]:
    """The shared pf-v1 vits checkpoints (``tests/conftest.py``)."""
    return procedural_checkpoints


@pytest.fixture(scope="session")
def clip24(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "clip24.mkv", 24)


def cli_args(checkpoints: dict[str, Path], *extra: str) -> list[str]:
    return [
        "--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28", "--device", "cpu",
        "--vda_checkpoint", str(checkpoints["vda"]), "--metric_checkpoint", str(checkpoints["dav2"]),
        "--no_progress", "--fov", "off", *extra,
    ]


def check_depth_video(path: Path, frames: int, fps: Fraction, height: int, width: int, max_depth: float) -> np.ndarray:
    depth, reader = read_depth(path)
    assert depth.shape == (frames, height, width)
    assert reader.fps == fps
    assert float(reader.info.tag("max_depth")) == max_depth
    assert np.isfinite(depth).all()
    assert depth.min() > 0 and depth.max() <= max_depth
    return depth


# ---------------------------------------------------------------------------------------------------
# end to end with the real architectures (procedural weights)


def test_default_output_folder_is_relative_to_cwd(tmp_path, monkeypatch, checkpoints, clip24, capsys):
    monkeypatch.chdir(tmp_path)
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip24)))
    assert code == 0
    out = tmp_path / "outputs" / "clip24_depth.mkv"
    depth = check_depth_video(out, 24, Fraction(24), H, W, 6.0)
    assert depth.std() > 0  # not a constant image
    line = capsys.readouterr().out
    assert "clip24.mkv: 24 frames 48x36" in line and "frames/s" in line and "clipped to max_depth" in line
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["clip24_depth.mkv"]  # no temp files left


def test_two_windows_max_depth_and_odd_source_size(tmp_path, checkpoints):
    clip = write_clip(tmp_path / "odd.mkv", 40, fps=30, height=35, width=47, seed=3)
    code = video_metric_convert.main(cli_args(
        checkpoints, "--input_video", str(clip), "--output_dir", str(tmp_path / "o"), "--max_depth", "12.5"))
    assert code == 0
    check_depth_video(tmp_path / "o" / "odd_depth.mkv", 40, Fraction(30), 35, 47, 12.5)


def test_same_result_from_root_and_from_video_depth_anything_folder(tmp_path, checkpoints, clip24):
    """The symlinked copy inside Video-Depth-Anything/ behaves identically (two processes with the
    same environment; default ./outputs relative to each cwd)."""
    script_link = REPO / "Video-Depth-Anything" / "video_metric_convert.py"
    assert script_link.is_symlink()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    work = tmp_path / "root_cwd"
    work.mkdir()
    args = cli_args(checkpoints, "--input_video", str(clip24), "--max_len", "12")
    runs = [
        (REPO / "video_metric_convert.py", work, work / "outputs"),
        (Path("video_metric_convert.py"), REPO / "Video-Depth-Anything", tmp_path / "vda_out"),
    ]
    results = []
    for script, cwd, out_dir in runs:
        extra = [] if out_dir.parent == cwd else ["--output_dir", str(out_dir)]
        proc = subprocess.run([sys.executable, str(script), *args, *extra], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        results.append(check_depth_video(out_dir / "clip24_depth.mkv", 12, Fraction(24), H, W, 6.0))
    np.testing.assert_array_equal(results[0], results[1])


def test_global_fit_two_passes_removes_temp_file(tmp_path, checkpoints):
    clip = write_clip(tmp_path / "g.mkv", 30, seed=5)
    out_dir = tmp_path / "out"
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(out_dir),
                                              "--fit", "global"))
    assert code == 0
    check_depth_video(out_dir / "g_depth.mkv", 30, Fraction(24), H, W, 6.0)
    assert sorted(p.name for p in out_dir.iterdir()) == ["g_depth.mkv"]


def test_global_fit_deletes_temp_file_on_error(tmp_path, checkpoints, monkeypatch):
    clip = write_clip(tmp_path / "g.mkv", 30, seed=5)
    out_dir = tmp_path / "out"

    def boom(*args, **kwargs):
        raise ValueError("constant")

    monkeypatch.setattr(cp.depth_fit, "robust_scale_shift", boom)
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(out_dir),
                                              "--fit", "global"))
    assert code == 2
    assert list(out_dir.iterdir()) == []  # neither the temporary store nor a partial output


def test_vda_metric_model(tmp_path, checkpoints, clip24):
    code = video_metric_convert.main(cli_args(
        checkpoints, "--input_video", str(clip24), "--output_dir", str(tmp_path), "--model", "vda-metric",
        "--max_depth", "20"))
    assert code == 0
    depth = check_depth_video(tmp_path / "clip24_depth.mkv", 24, Fraction(24), H, W, 20.0)
    _, reader = read_depth(tmp_path / "clip24_depth.mkv")
    assert reader.info.tag("mvda_model") == "vda-metric"
    assert depth.max() > 1.0  # pf-v1 VDA outputs reach several "metres"


def test_target_fps_max_len_and_max_res(tmp_path, checkpoints):
    clip = write_clip(tmp_path / "c.mkv", 30, fps=24, height=48, width=64)
    out = tmp_path / "o"
    # 30 frames at 24 fps resampled to 12 fps -> 15 frames; inference downscaled to 32x24, output 64x48.
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(out),
                                              "--target_fps", "12", "--max_res", "32")) == 0
    check_depth_video(out / "c_depth.mkv", 15, Fraction(12), 48, 64, 6.0)
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(out),
                                              "--max_len", "7", "--metric_every", "3",
                                              "--precision", "bf16")) == 0
    check_depth_video(out / "c_depth.mkv", 7, Fraction(24), 48, 64, 6.0)


def test_batch_folder_with_broken_file_and_skip_existing(tmp_path, checkpoints, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(folder / "a.mkv", 8, seed=1)
    write_clip(folder / "c.mkv", 8, seed=2)
    (folder / "b.mp4").write_bytes(b"this is not a video" * 100)
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(folder), "--output_dir", str(out)))
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_depth.mkv", "c_depth.mkv"]
    check_depth_video(out / "c_depth.mkv", 8, Fraction(24), H, W, 6.0)
    text = capsys.readouterr().out
    assert "b.mp4: FAILED:" in text and "2 converted, 0 skipped, 1 failed" in text
    # output folders are not inputs: the *_depth.mkv files of a previous run in the folder are ignored
    assert [p.name for p in cp.collect_inputs([folder])] == ["a.mkv", "b.mp4", "c.mkv"]

    before = (out / "a_depth.mkv").stat().st_mtime_ns
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(folder / "a.mkv"),
                                              str(folder / "c.mkv"), "--output_dir", str(out), "--skip_existing"))
    assert code == 0
    assert (out / "a_depth.mkv").stat().st_mtime_ns == before
    assert "0 converted, 2 skipped, 0 failed" in capsys.readouterr().out

    # Ray's flags without --ray say that they do nothing (one warning line), and the batch runs here.
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(folder / "a.mkv"),
                                              "--output_dir", str(out), "--skip_existing", "--ray_workers", "2",
                                              "--ray_cpus_per_worker", "1"))
    assert code == 0
    err = capsys.readouterr().err
    assert "--ray_cpus_per_worker, --ray_workers only apply with --ray" in err


# ---------------------------------------------------------------------------------------------------
# errors: one line, non-zero exit, no output


def test_missing_input(tmp_path, checkpoints, capsys):
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(tmp_path / "nope.mp4"),
                                              "--output_dir", str(tmp_path / "out")))
    assert code == 2
    one_line_error(capsys, "nope.mp4", "no such file")
    assert not list((tmp_path / "out").iterdir())


def test_unreadable_input_zero_frames_and_unwritable_output(tmp_path, checkpoints, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = tmp_path / "out"
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(bad), "--output_dir", str(out))) == 2
    one_line_error(capsys, "bad.mp4", "not a readable video")

    empty = tmp_path / "empty.avi"  # a readable container with a video stream but no frames
    VideoWriter(empty, W, H, 24, codec="mpeg4", pix_fmt="yuv420p").close()
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(empty), "--output_dir", str(out))) == 2
    one_line_error(capsys, "empty.avi", "no frame")
    assert list(out.iterdir()) == []

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    clip = write_clip(tmp_path / "c.mkv", 4)
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip),
                                              "--output_dir", str(blocker / "out"))) == 2
    one_line_error(capsys, "output folder")


def test_decode_error_mid_stream_leaves_no_output(tmp_path, checkpoints, capsys):
    clip = write_clip(tmp_path / "c.mkv", 30)
    data = bytearray(clip.read_bytes())
    start, size = int(len(data) * 0.4), int(len(data) * 0.2)
    data[start:start + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    clip.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(out))) == 2
    one_line_error(capsys, "c.mkv", "decode error after frame")
    assert list(out.iterdir()) == []


def test_missing_checkpoints(tmp_path, checkpoints, clip24, capsys, monkeypatch):
    out = tmp_path / "out"
    args = cli_args(checkpoints, "--input_video", str(clip24), "--output_dir", str(out))
    args[args.index("--vda_checkpoint") + 1] = str(tmp_path / "missing.pth")
    assert video_metric_convert.main(args) == 2
    one_line_error(capsys, "missing.pth", "does not exist")
    # no explicit path, nothing in the default folder, offline: names repo id, file and install command
    import video_depth_anything.hub as vda_hub

    spec = vda_hub.VDA_CHECKPOINTS[("vitb", False)]
    monkeypatch.setitem(vda_hub.VDA_CHECKPOINTS, ("vitb", False), dataclasses.replace(spec, local_dir=tmp_path / "none"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    args = cli_args(checkpoints, "--input_video", str(clip24), "--output_dir", str(out), "--encoder", "vitb")
    del args[args.index("--vda_checkpoint"):args.index("--vda_checkpoint") + 2]
    assert video_metric_convert.main(args) == 2
    one_line_error(capsys, "depth-anything/Video-Depth-Anything-Base", "video_depth_anything_vitb.pth",
                           "install_mvda.sh")
    assert list(out.iterdir()) == []


def test_bad_device_is_a_one_line_error(tmp_path, checkpoints, clip24, capsys):
    if torch.cuda.is_available():
        device = "cuda:99"
    else:
        device = "cuda"
    args = cli_args(checkpoints, "--input_video", str(clip24), "--output_dir", str(tmp_path))
    args[args.index("--device") + 1] = device
    assert video_metric_convert.main(args) == 2
    one_line_error(capsys, device)


# ---------------------------------------------------------------------------------------------------
# the rolling fit in the streaming pipeline is the original formula, frame for frame


class StubVDA(nn.Module):
    """Cheap relative "network": a smooth function of each input frame (non-negative, like VDA)."""

    metric = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, T, 3, h, w) -> (1, T, h, w)
        return F.relu(x[:, :, 0] * 0.7 - x[:, :, 2] * 0.3 + 2.0)


class StubDAV2:
    """Metric "network" whose scale changes strongly from frame to frame (so pairing DA-V2 statistics
    with the wrong VDA frame changes the result). Records the frames it was called on."""

    def __init__(self) -> None:
        self.calls = 0

    def infer_images(self, images, input_size=518, output_size=None, precision="fp32", batch_size=4, device=None):
        x = torch.as_tensor(images).to(torch.float32)
        self.calls += int(x.shape[0])
        level = x.mean(dim=(1, 2, 3), keepdim=True)[..., 0]  # (K, 1, 1)
        depth = 0.5 + x[..., 1] / 255.0 * (level / 64.0) + x[..., 0] / 510.0
        if output_size is not None and tuple(output_size) != tuple(depth.shape[-2:]):
            depth = F.interpolate(depth[:, None], size=tuple(output_size), mode="bilinear", align_corners=True)[:, 0]
        return depth


def rolling_by_hand(relative: np.ndarray, metric: list[np.ndarray | None], max_depth: float, min_depth: float,
                    min_history: int = 10, max_history: int = 100) -> np.ndarray:
    """Independent numpy transcription of the original rolling fit (metric[i] None: no DA-V2)."""
    history: list[tuple[float, float, float]] = []
    out = []
    current = None
    for r, m in zip(relative.astype(np.float64), metric):
        if m is not None:
            inv = 1.0 / m.astype(np.float64)
            history.append((np.std(inv) / np.std(r), np.mean(inv), np.mean(r)))
            s, a, b = history[0] if len(history) < min_history else np.mean(np.array(history), axis=0)
            current = (s, a, b)
            if len(history) > max_history:
                history.pop(0)
        s, a, b = current
        inverse = (r - b) * s + a
        with np.errstate(divide="ignore"):
            depth = np.where(inverse < 1.0 / max_depth, max_depth, 1.0 / np.where(inverse > 0, inverse, 1.0))
        out.append(np.clip(depth, min_depth, max_depth))
    return np.stack(out)


@pytest.mark.parametrize("every", [1, 3])
def test_streaming_rolling_fit_matches_original_formula(tmp_path, every):
    n = 57  # 3 windows (starts 0, 22, 44): the lag between DA-V2 and VDA varies along the clip
    clip = write_clip(tmp_path / "s.mkv", n, height=20, width=30, seed=7)
    with VideoReader(clip) as reader:
        frames = np.stack(list(reader))
    dav2 = StubDAV2()
    options = cp.ConvertOptions(input_size=28, metric_every=every, max_depth=6.0, progress=False, dav2_batch=2)
    result = cp.convert_video(clip, tmp_path / "out", cp.Models(vda=StubVDA(), dav2=dav2), options)
    assert result.frames == n and dav2.calls == len(range(0, n, every)) == result.metric_frames

    relative, _ = infer_video_depth(StubVDA(), frames, -1, input_size=28, device="cpu", precision="fp32")
    metric = [StubDAV2().infer_images(f[None])[0].numpy() if i % every == 0 else None for i, f in enumerate(frames)]
    # metric_every 3: history limits ceil(10/3) = 4 and ceil(100/3) = 34 entries (same span of frames)
    limits = (10, 100) if every == 1 else (4, 34)
    expected = rolling_by_hand(relative, metric, 6.0, cp.near_limit(6.0), *limits)
    assert expected.min() < expected.max()  # a non-trivial depth range
    depth, _ = read_depth(result.output)
    # Packed depth is truncated to steps of depth_step (0.093 mm at 6 m); float32 vs float64 arithmetic
    # adds far less. A wrong pairing or a history rule off by one moves values by centimetres.
    np.testing.assert_allclose(depth, expected, atol=depth_step(6.0) * 1.01 + 1e-5, rtol=0)


def test_stage_timer_and_summary(tmp_path):
    clip = write_clip(tmp_path / "s.mkv", 10, height=20, width=30)
    timer = cp.StageTimer(torch.device("cpu"))
    options = cp.ConvertOptions(input_size=28, progress=False)
    result = cp.convert_video(clip, tmp_path, cp.Models(vda=StubVDA(), dav2=StubDAV2()), options, timer=timer)
    assert set(result.timings) == {"decode", "cuts", "vda", "dav2", "fit", "encode"}  # cuts: scene cut detection
    assert all(v >= 0 for v in result.timings.values())
    line = result.summary_line()
    assert line.startswith("s.mkv: 10 frames 30x20 @ 24 fps") and "depth " in line and str(result.output) in line


# ---------------------------------------------------------------------------------------------------
# pure helpers


def test_selection_count_and_expected_frames():
    assert [cp.selection_count(j, Fraction(30), Fraction(10)) for j in range(7)] == [1, 0, 0, 1, 0, 0, 1]
    assert [cp.selection_count(j, Fraction(24), None) for j in range(3)] == [1, 1, 1]
    # 24 -> 60 fps: output frame k shows source frame floor(k * 24 / 60)
    counts = [cp.selection_count(j, Fraction(24), Fraction(60)) for j in range(4)]
    assert counts == [3, 2, 3, 2]
    shown = [j for j, c in enumerate(counts) for _ in range(c)]
    assert shown == [k * 24 // 60 for k in range(10)]
    assert cp.expected_output_frames(30, Fraction(24), Fraction(12), -1) == 15
    assert cp.expected_output_frames(31, Fraction(24), Fraction(12), -1) == 16  # frames 0, 2, ..., 30
    assert cp.expected_output_frames(30, Fraction(24), None, 7) == 7
    assert cp.expected_output_frames(None, Fraction(24), None, -1) is None


def test_inference_size():
    assert cp.inference_size(2160, 3840, 1440) == (810, 1440)
    assert cp.inference_size(1440, 1080, 1440) == (1440, 1080)
    assert cp.inference_size(1000, 3000, -1) == (1000, 3000)
    assert cp.inference_size(101, 203, 100) == (50, 100)


def test_clamp_metric_depth_counts():
    d = torch.tensor([0.0, 0.5, 7.0, float("nan"), 3.0])
    out, c = cp.clamp_metric_depth(d, max_depth=6.0, min_depth=0.01)
    assert out.tolist() == pytest.approx([0.01, 0.5, 6.0, 6.0, 3.0])
    assert (c.far, c.nonpositive, c.near) == (2, 1, 1)


def test_collect_inputs_rejects_colliding_names_and_empty_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    (tmp_path / "b" / "x.mkv").write_bytes(b"")
    with pytest.raises(cp.UserError, match="x_depth.mkv"):
        cp.collect_inputs([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "c").mkdir()
    with pytest.raises(cp.UserError, match="no video files"):
        cp.collect_inputs([tmp_path / "c"])
    assert cp.collect_inputs([tmp_path / "a" / "x.mp4", tmp_path / "a"]) == [tmp_path / "a" / "x.mp4"]


def test_even_sampler_stays_bounded_and_even():
    sampler = cp._EvenSampler(expected=10, target=4)  # estimate far too small: 1000 frames arrive
    kept_max = 0
    for i in range(1000):
        if sampler.take(i):
            sampler.drop_surplus()
        kept_max = max(kept_max, len(sampler.kept))
    assert kept_max <= 9 and len(sampler.kept) >= 4
    gaps = np.diff(sampler.kept)
    assert (gaps == gaps[0]).all() and sampler.kept[0] == 0


def test_keyframe_feature_cache_matches_the_plain_network(checkpoints):
    """Encoding each frame once gives the plain stream's result (3 windows, keyframes reused twice)."""
    from video_depth_anything.hub import load_video_depth_anything
    from video_depth_anything.inference import VideoDepthStream
    from video_depth_anything.keyframe_cache import KeyframeFeatureCache

    model = load_video_depth_anything("vits", checkpoint=checkpoints["vda"], device="cpu")
    frames = synthetic_frames(45, 24, 32, seed=11)

    def run(m) -> np.ndarray:
        stream = VideoDepthStream(m, input_size=28, device="cpu", precision="fp32")
        out = [d for f in frames for d in stream.push(f)] + stream.flush()
        return np.stack(out)

    cached = KeyframeFeatureCache(model)
    plain_depth, cached_depth = run(model), run(cached)
    assert cached.frames_reused == 20 and cached.frames_encoded == 3 * 32 - 20
    # outputs O(1-10); only the encoder batch sizes differ (observed: bit-identical on this CPU)
    np.testing.assert_allclose(cached_depth, plain_depth, atol=1e-4, rtol=0)
    # a clip whose first frames are not the stored keyframes is encoded from scratch
    x = torch.randn(1, 32, 3, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(cached(x).numpy(), model(x).numpy(), atol=1e-4, rtol=0)
    assert cached.frames_reused == 20


def test_bundled_sample_clip(tmp_path, checkpoints):
    """assets/big_buck_bunny_3s.mp4 (640x360, 25 fps, H.264 with audio): depth at the source size."""
    sample = REPO / "assets" / "big_buck_bunny_3s.mp4"
    with VideoReader(sample) as reader:
        height, width, fps = reader.height, reader.width, reader.fps
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(sample), "--output_dir", str(tmp_path),
                                              "--max_len", "30", "--metric_every", "2"))
    assert code == 0
    check_depth_video(tmp_path / "big_buck_bunny_3s_depth.mkv", 30, fps, height, width, 6.0)


def test_bad_inputs_are_reported_before_the_networks_load(tmp_path, clip24, capsys):
    """A missing file fails at once (no checkpoint lookup, no download attempt)."""
    calls = []

    def models():
        calls.append(1)
        raise AssertionError("the networks must not be loaded")

    options = cp.ConvertOptions(input_size=28, progress=False)
    with pytest.raises(cp.UserError, match="no such file"):
        cp.convert_batch([tmp_path / "missing.mp4"], tmp_path / "out", models, options)
    assert calls == []
    # in a batch the bad file is listed as failed and the good one is still converted
    results = cp.convert_batch([tmp_path / "missing.mp4", clip24], tmp_path / "out",
                               lambda: cp.Models(vda=StubVDA(), dav2=StubDAV2()), options, report=lambda _: None)
    assert [r.status for r in results] == ["failed", "ok"]
    assert "no such file" in results[0].error and results[1].frames == 24


def test_emulated_cpu_precision_is_warned_about(checkpoints, monkeypatch, caplog):
    import mvda.device as device_helpers

    parser = video_metric_convert.build_parser()
    monkeypatch.setattr(device_helpers, "cpu_has_native", lambda name: name != "bf16")  # a CPU without bf16
    with caplog.at_level("WARNING"):
        options = cp.options_from_args(
            parser.parse_args(cli_args(checkpoints, "--input_video", "x.mp4", "--precision", "bf16")))
    assert options.precision == "bf16"
    assert [r.getMessage() for r in caplog.records if "no native bf16 support" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING"):
        cp.options_from_args(
            parser.parse_args(cli_args(checkpoints, "--input_video", "x.mp4", "--precision", "fp16")))
        cp.options_from_args(parser.parse_args(cli_args(checkpoints, "--input_video", "x.mp4")))
    assert not [r for r in caplog.records if "native" in r.getMessage()]


# ---------------------------------------------------------------------------------------------------
# the frame loop: SIGTERM leaves nothing behind; --max_len


class TerminatingDAV2(StubDAV2):
    """StubDAV2 that sends SIGTERM to its own process on its ``at``-th call (as `kill PID` would)."""

    def __init__(self, at: int, watch: Path) -> None:
        super().__init__()
        self.at = at
        self.watch = watch
        self.seen: list[str] = []  # files in ``watch`` when the signal was sent

    def infer_images(self, images, *args, **kwargs):
        if self.calls + 1 >= self.at:
            import signal

            self.seen = sorted(p.name for p in self.watch.iterdir())
            os.kill(os.getpid(), signal.SIGTERM)
        return super().infer_images(images, *args, **kwargs)


# rolling: DA-V2 on every frame, the 40th; global: on every 2nd frame (32 of 60), the 20th is frame 38. Both
# after VDA's first window (32 frames), so frames are already in the depth writer / the float16 store.
@pytest.mark.parametrize("fit, at", [("rolling", 40), ("global", 20)])
def test_sigterm_leaves_no_partial_output_and_no_store(tmp_path, checkpoints, capsys, monkeypatch, fit, at):
    clip = write_clip(tmp_path / "t.mkv", 60, seed=3)
    out = tmp_path / "out"
    dav2 = TerminatingDAV2(at=at, watch=out)
    monkeypatch.setattr(cp, "load_models", lambda *a, **k: cp.Models(vda=StubVDA(), dav2=dav2))
    code = video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(out),
                                              "--fit", fit))
    assert code == 143
    assert dav2.calls == at - 1  # stopped there, not later
    assert any(name.endswith(".f16") for name in dav2.seen) == (fit == "global")  # the store was there
    assert any(name.startswith(".") and "t_depth" in name and not name.endswith(".f16") for name in dav2.seen)
    assert "terminated by SIGTERM; no output was finalised" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no depth video, no hidden temporary file, no .f16 store


def test_max_len_zero_is_rejected_and_minus_one_means_all(tmp_path, checkpoints, capsys):
    clip = write_clip(tmp_path / "m.mkv", 6)
    with pytest.raises(SystemExit) as exc:
        video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(tmp_path),
                                           "--max_len", "0"))
    assert exc.value.code == 2
    one_line_error(capsys, "--max_len", "must be > 0 (or -1 for all frames), got 0")
    parser = video_metric_convert.build_parser()
    assert parser.parse_args(["--input_video", "x", "--max_len", "-1"]).max_frames is None
    assert parser.parse_args(["--input_video", "x", "--max_frames", "5"]).max_frames == 5
    assert video_metric_convert.main(cli_args(checkpoints, "--input_video", str(clip), "--output_dir", str(tmp_path),
                                              "--max_len", "-1")) == 0
    check_depth_video(tmp_path / "m_depth.mkv", 6, Fraction(24), H, W, 6.0)

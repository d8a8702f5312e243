"""The field of view in the converter (``--fov auto|off``, ``--xfov``, ``--fov_encoder``/``--fov_checkpoint``)
and ``--model vda+moge2``, end to end with procedural weights: the toy MoGe-2 configuration with pf-v1
weights (tests/test_moge2.py) and the vits VDA / DA-V2 (tests/conftest.py), on tiny clips.

The toy checkpoint stores ``num_tokens_range [100, 300]`` in its model_config (as a released file
stores its own), so MoGe-2 runs at 100 tokens here: the converter takes the lowest trained level for
the field of view and clamps the anchor's tokens into that range.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import pytest
import torch

import moge2.hub
import stero_rerender
import video_metric_convert
from depth_codec import TAG_SCENE_CUTS, DepthVideoReader
from moge2 import MoGeModel
from mvda import fov
from mvda.apps.metric_anchor import MoGeMetricDepth, anchor_num_tokens
from mvda.apps.video_fov import keyframes_of
from mvda.io.video import VideoReader, probe_video
from mvda.ops.geometry import intrinsics_from_fov
from tests.helpers import one_line_error, read_frames, synthetic_frames, write_lossless_video
from tests.procedural import procedural_state_dict
from tests.test_moge2 import TOY, entries, manifests

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 36, 48
PROG = "video_metric_convert.py"


def toy_config() -> dict:
    return {**manifests()[TOY]["config"], "num_tokens_range": [100, 300]}


@pytest.fixture(scope="module")
def moge_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("moge") / "model.pt"
    torch.save({"model_config": toy_config(), "model": procedural_state_dict(entries(TOY))}, path)
    return path


@pytest.fixture(scope="module")
def toy_moge(moge_checkpoint) -> MoGeModel:
    from moge2 import load_moge2

    return load_moge2("vits-normal", checkpoint=moge_checkpoint)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """50 distinct frames: keyframe_count(50) = 2 keyframes, frames 12 and 37. Seed 5: the toy weights find a
    positive focal length in the keyframes used here (in others they find none: such frames are skipped)."""
    return write_lossless_video(tmp_path_factory.mktemp("clips") / "clip.mkv", synthetic_frames(50, H, W, seed=5))


def convert(ck, clip, out, *extra: str) -> int:
    """video_metric_convert.py at input 28 with the procedural vits VDA (and DA-V2 unless vda+moge2)."""
    dav2 = [] if "vda+moge2" in extra else ["--metric_encoder", "vits", "--metric_checkpoint", str(ck["dav2"])]
    return video_metric_convert.main([
        "--input_video", str(clip), "--output_dir", str(out), "--encoder", "vits", "--input_size", "28",
        "--device", "cpu", "--vda_checkpoint", str(ck["vda"]), "--no_progress", *dav2, *extra])


def tags(path) -> tuple[str | None, str | None]:
    info = probe_video(path)
    return info.tag("xfov"), info.tag("yfov")


def expected_fov(model, frames: list[np.ndarray]) -> tuple[float, float]:
    """The median FOV of ``frames`` by ``model`` at its lowest level, yfov from the aspect ratio."""
    est = fov.estimate_fov(frames, model, torch.device("cpu"), num_tokens=100)
    return est.xfov, intrinsics_from_fov(H, W, xfov=est.xfov).yfov


def test_keyframes_are_read_by_seeking_and_match_the_decoded_stream(clip):
    frames = read_frames(clip)
    with VideoReader(clip) as reader:
        got = keyframes_of(reader, [0, 12, 37, 49], fps=24)
        assert [f.shape for f in got] == [(H, W, 3)] * 4
        for k, f in zip([0, 12, 37, 49], got):
            np.testing.assert_array_equal(f, frames[k])
        small = keyframes_of(reader, [5], fps=24, max_side=24)[0]
    assert small.shape == (18, 24, 3) and small.dtype == np.uint8
    assert fov.keyframe_indices(50, fov.keyframe_count(50)) == [12, 37]


def test_fov_auto_writes_moge_median_of_the_keyframes(tmp_path, procedural_checkpoints, moge_checkpoint, toy_moge,
                                                      clip, capsys):
    out = tmp_path / "out"
    assert convert(procedural_checkpoints, clip, out, "--fov_checkpoint", str(moge_checkpoint), "-v") == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "median of 2 keyframe(s)" in err
    frames = read_frames(clip)
    xfov, yfov = expected_fov(toy_moge, [frames[12], frames[37]])
    got = tags(out / "clip_depth.mkv")
    assert float(got[0]) == pytest.approx(xfov, rel=1e-5) and float(got[1]) == pytest.approx(yfov, rel=1e-5)
    # Another keyframe choice gives another value: the tag really comes from these frames.
    other = expected_fov(toy_moge, [frames[0], frames[49]])
    assert abs(other[0] - xfov) > 1e-3


def test_given_fov_is_written_and_moge_does_not_run(tmp_path, procedural_checkpoints, clip, capsys):
    # --xfov given: the (missing) MoGe-2 checkpoint is not even looked at.
    assert convert(procedural_checkpoints, clip, tmp_path, "--xfov", "62.5",
                   "--fov_checkpoint", str(tmp_path / "missing.pt"), "--max_frames", "3") == 0
    assert capsys.readouterr().err.strip() == ""
    xfov, yfov = tags(tmp_path / "clip_depth.mkv")
    assert float(xfov) == 62.5 and float(yfov) == pytest.approx(intrinsics_from_fov(H, W, xfov=62.5).yfov, rel=1e-5)
    # --fov off: no tag, no MoGe-2.
    assert convert(procedural_checkpoints, clip, tmp_path, "--fov", "off", "--fov_checkpoint",
                   str(tmp_path / "missing.pt"), "--max_frames", "3") == 0
    assert capsys.readouterr().err.strip() == ""
    assert tags(tmp_path / "clip_depth.mkv") == (None, None)


def fov_warnings(err: str) -> list[str]:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith(f"{PROG}: warning: ") for line in lines), err
    return lines


def test_missing_or_bad_moge_checkpoint_is_one_warning_and_no_tag(tmp_path, procedural_checkpoints, clip, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # No local MoGe-2 file either (whatever this checkout holds in MoGe/checkpoints).
    monkeypatch.setattr(moge2.hub, "MOGE2_CHECKPOINTS", {
        name: dataclasses.replace(spec, local_dir=tmp_path / "none")
        for name, spec in moge2.hub.MOGE2_CHECKPOINTS.items()})
    # Not downloadable (offline, no local file): one warning, the conversion succeeds without tags.
    assert convert(procedural_checkpoints, clip, tmp_path / "a", "--max_frames", "3") == 0
    (line,) = fov_warnings(capsys.readouterr().err)
    assert "no field of view estimate" in line and "moge-2-vits-normal" in line and "--fov off" in line
    assert "`bash install_mvda.sh --moge vits`" in line  # the command that fetches MoGe-2, not the default one
    assert tags(tmp_path / "a" / "clip_depth.mkv") == (None, None)
    # Corrupt file, and a file that is not a MoGe checkpoint: one warning each, no tag.
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 10)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {}}, wrong)
    for path in (corrupt, wrong):
        assert convert(procedural_checkpoints, clip, tmp_path / path.stem, "--max_frames", "3",
                       "--fov_checkpoint", str(path)) == 0
        (line,) = fov_warnings(capsys.readouterr().err)
        assert str(path) in line and "no field of view estimate" in line
        assert tags(tmp_path / path.stem / "clip_depth.mkv") == (None, None)
    # Two videos: still one warning (MoGe-2 is loaded once for the batch).
    second = write_lossless_video(tmp_path / "b.mkv", synthetic_frames(3, H, W, seed=4))
    assert video_metric_convert.main([
        "--input_video", str(clip), str(second), "--output_dir", str(tmp_path / "batch"), "--encoder", "vits",
        "--metric_encoder", "vits", "--input_size", "28", "--device", "cpu", "--max_frames", "3",
        "--vda_checkpoint", str(procedural_checkpoints["vda"]), "--metric_checkpoint",
        str(procedural_checkpoints["dav2"]), "--no_progress", "--fov_checkpoint", str(corrupt)]) == 0
    assert len(fov_warnings(capsys.readouterr().err)) == 1


def test_fov_tag_round_trip_through_stereo_and_viewer(tmp_path, procedural_checkpoints, moge_checkpoint, clip,
                                                      capsys):
    out = tmp_path / "out"
    assert convert(procedural_checkpoints, clip, out, "--fov_checkpoint", str(moge_checkpoint),
                   "--max_frames", "20") == 0  # 20 frames: one keyframe, frame 10
    depth = out / "clip_depth.mkv"
    xfov, yfov = tags(depth)
    assert xfov is not None and yfov is not None
    capsys.readouterr()
    assert stero_rerender.main(["--video", str(depth), "--color_video", str(clip), "--output",
                                str(tmp_path / "s.mkv"), "--lossless", "--no_progress", "-v"]) == 0
    assert f"using the field of view in the file's tags (xfov {float(xfov):g}, yfov {float(yfov):g}" in \
        capsys.readouterr().err
    assert float(probe_video(tmp_path / "s.mkv").tag("xfov")) == pytest.approx(float(xfov), rel=1e-5)
    view = importlib.import_module("3d_view_depthfile")
    assert view.main(["--video", str(depth), "--render", str(tmp_path / "v.mp4"), "--no_progress", "-v",
                      "--max_frames", "1"]) == 0
    assert f"using the field of view in the file's tags (xfov {float(xfov):g}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# --model vda+moge2


def test_anchor_tokens_follow_the_input_size_within_the_trained_range():
    assert anchor_num_tokens(360, 640, 518, (1200, 3600)) == math.floor(37 ** 2 * 640 / 360)
    assert anchor_num_tokens(640, 360, 518, (1200, 3600)) == anchor_num_tokens(360, 640, 518, (1200, 3600))
    assert anchor_num_tokens(360, 640, 1036, (1200, 3600)) == 3600
    assert anchor_num_tokens(360, 640, 28, (100, 300)) == 100


def test_moge_metric_depth_is_moge_depth_with_the_fixed_fov(toy_moge):
    frames = torch.from_numpy(synthetic_frames(2, H, W, seed=5))
    image = frames.permute(0, 3, 1, 2).float() / 255.0
    anchor = MoGeMetricDepth(toy_moge, fov_x=55.0)
    depth = anchor.infer_images(frames, input_size=28, output_size=(H, W), precision="fp32", batch_size=1,
                                device=torch.device("cpu"))
    with torch.inference_mode():
        want = toy_moge.infer(image, num_tokens=100, fov_x=55.0)
        free = toy_moge.infer(image, num_tokens=100)
    assert depth.shape == (2, H, W)
    torch.testing.assert_close(depth, want["depth"], rtol=1e-5, atol=0)
    assert not torch.allclose(depth, free["depth"], rtol=1e-3)  # the FOV is really fixed
    # Another output size: the inverse depth is resized.
    small = anchor.infer_images(frames, input_size=28, output_size=(18, 24), precision="fp32", batch_size=2,
                                device=torch.device("cpu"))
    inverse = torch.nn.functional.interpolate(1.0 / want["depth"][:, None], size=(18, 24), mode="bilinear",
                                              align_corners=False)[:, 0]
    torch.testing.assert_close(small, 1.0 / inverse, rtol=1e-5, atol=0)


@pytest.mark.parametrize("fit", ["rolling", "global"])
def test_vda_moge2_end_to_end(tmp_path, procedural_checkpoints, moge_checkpoint, toy_moge, clip, fit, capsys,
                              monkeypatch):
    seen: list[float | None] = []
    infer = MoGeModel.infer

    def spy(self, image, *args, **kwargs):
        seen.append(kwargs.get("fov_x"))
        return infer(self, image, *args, **kwargs)

    monkeypatch.setattr(MoGeModel, "infer", spy)
    out = tmp_path / fit
    extra = ["--metric_every", "4"] if fit == "rolling" else []
    assert convert(procedural_checkpoints, clip, out, "--model", "vda+moge2", "--fit", fit, "--max_frames", "8",
                   "--fov_checkpoint", str(moge_checkpoint), *extra) == 0
    assert "warning" not in capsys.readouterr().err
    with DepthVideoReader(out / "clip_depth.mkv") as reader:
        depth = np.stack(list(reader))
        info = reader.info
    assert depth.shape == (8, H, W) and np.isfinite(depth).all() and depth.min() > 0
    assert info.tag("mvda_model") == "vda+moge2" and info.tag("mvda_fit") == fit
    xfov = float(info.tag("xfov"))
    # The first call estimates the FOV (free), every anchor frame then has it fixed to the estimate.
    assert seen[0] is None and len(seen) > 1 and all(v == pytest.approx(xfov, rel=1e-5) for v in seen[1:])
    assert len(seen) - 1 == (2 if fit == "rolling" else 8)
    # Not the DA-V2 result: MoGe-2 really is the anchor.
    assert convert(procedural_checkpoints, clip, tmp_path / "dav2", "--fit", fit, "--max_frames", "8",
                   "--fov", "off", *extra) == 0
    with DepthVideoReader(tmp_path / "dav2" / "clip_depth.mkv") as reader:
        assert not np.allclose(np.stack(list(reader)), depth, rtol=1e-2)


def test_vda_moge2_given_fov_and_errors(tmp_path, procedural_checkpoints, moge_checkpoint, clip, capsys,
                                        monkeypatch):
    seen: list[float | None] = []
    infer = MoGeModel.infer
    monkeypatch.setattr(MoGeModel, "infer",
                        lambda self, image, *a, **k: (seen.append(k.get("fov_x")), infer(self, image, *a, **k))[1])
    assert convert(procedural_checkpoints, clip, tmp_path, "--model", "vda+moge2", "--max_frames", "4",
                   "--metric_every", "4", "--xfov", "70", "--fov_checkpoint", str(moge_checkpoint)) == 0
    assert seen == [70.0] and float(tags(tmp_path / "clip_depth.mkv")[0]) == 70.0
    capsys.readouterr()
    # MoGe-2 is this model's metric network: a missing checkpoint is an error, not a warning.
    assert convert(procedural_checkpoints, clip, tmp_path / "x", "--model", "vda+moge2",
                   "--fov_checkpoint", str(tmp_path / "missing.pt")) == 2
    one_line_error(capsys, "missing.pt", prog=PROG)
    assert convert(procedural_checkpoints, clip, tmp_path / "x", "--model", "vda+moge2", "--fov", "off",
                   "--fov_checkpoint", str(moge_checkpoint)) == 2
    one_line_error(capsys, "--model vda+moge2", "--fov auto", prog=PROG)
    assert not (tmp_path / "x" / "clip_depth.mkv").exists()


# ---------------------------------------------------------------------------------------------------
# keyframes per shot


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory):
    """A 40-frame panning shot, then a 10-frame shot (24 fps): spread keyframes (12, 37) both fall in the first."""
    from tests.test_scene_cuts import panning_clip

    frames = np.concatenate([panning_clip(40, seed=4), synthetic_frames(10, H, W, seed=7)])
    return write_lossless_video(tmp_path_factory.mktemp("two") / "two.mkv", frames)


@pytest.fixture
def keyframes_seen(monkeypatch) -> list[tuple[list[int], float]]:
    """Records the (output frame indices, fps) of every keyframe read for MoGe-2."""
    seen: list[tuple[list[int], float]] = []
    module = importlib.import_module("mvda.apps.video_fov")
    real = module.keyframes_of

    def recording(reader, indices, fps, *args, **kwargs):
        seen.append((list(indices), float(fps)))
        return real(reader, indices, fps, *args, **kwargs)

    monkeypatch.setattr(module, "keyframes_of", recording)
    return seen


@pytest.mark.parametrize("cuts, extra, want, tag", [
    ("auto", [], [20, 45], "40"),  # shot_keyframes([40], 50, 2): the middle of each shot
    ("file", [], [20, 45], "40"),
    ("off", [], [12, 37], None),  # spread as without cuts: both in the first shot
    ("auto", ["--max_frames", "45"], [20, 42], "40"),  # the second shot is 5 frames long here
    ("file", ["--target_fps", "12"], [10, 22], "20"),  # 25 output frames, the cut (source frame 40) is output 20
    # At 12 fps the detector finds no cut (the panning scores about 0.7 per frame, the cut 1.11: under 2.5 times
    # its neighbours' mean), in the pre-scan as in the conversion: one shot, keyframe_count(25) = 1 keyframe.
    ("auto", ["--target_fps", "12"], [12], None),
])
def test_fov_auto_takes_a_keyframe_in_every_shot(tmp_path, procedural_checkpoints, moge_checkpoint, two_shots,
                                                 keyframes_seen, cuts, extra, want, tag):
    if cuts == "file":
        (tmp_path / "cuts.txt").write_text("40\n")  # a source frame number
        cuts = str(tmp_path / "cuts.txt")
    assert convert(procedural_checkpoints, two_shots, tmp_path / "out", "--fov_checkpoint", str(moge_checkpoint),
                   "--scene_cuts", cuts, *extra) == 0
    fps = 12.0 if "--target_fps" in extra else 24.0
    assert keyframes_seen == [(want, fps)]
    # The pre-scan (auto) found the cuts the conversion found.
    assert probe_video(tmp_path / "out" / "two_depth.mkv").tag(TAG_SCENE_CUTS) == tag


def test_no_pre_scan_when_moge_does_not_run(tmp_path, procedural_checkpoints, two_shots, keyframes_seen,
                                            monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    convert_module = importlib.import_module("mvda.apps.convert")
    scans: list[object] = []
    real = convert_module.prescan_cuts
    monkeypatch.setattr(convert_module, "prescan_cuts", lambda *a: scans.append(a) or real(*a))
    missing = str(tmp_path / "missing.pt")
    for extra in (["--xfov", "60"], ["--fov", "off"], ["--fov_checkpoint", missing]):
        assert convert(procedural_checkpoints, two_shots, tmp_path / "out", "--max_frames", "3", *extra) == 0
    assert scans == [] and keyframes_seen == []

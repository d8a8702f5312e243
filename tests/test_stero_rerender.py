"""stero_rerender.py end to end: outputs, formats, audio, mismatched inputs and one-line errors."""

from __future__ import annotations

import os
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import stero_rerender
from mvda.apps import stereo as stereo_app
from mvda.errors import UserError
from mvda.ops.anaglyph import anaglyph
from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.stereo_comfort import DEFAULT_EDGE_DILATION, DEFAULT_EDGE_SHARPEN, comfort_disparity
from mvda.ops.stereo_warp import pack_stereo, render_stereo
from mvda.io.video import VideoWriter, probe_video
from tests.helpers import (REPO, one_line_error, read_depth_frames, read_frames, rolled_noise_frames,
                           write_depth_video, write_lossless_video)

SAMPLE = REPO / "assets" / "big_buck_bunny_3s.mp4"
PROG = "stero_rerender.py"  # its error lines start "PROG: error: "


def box_depth(h: int, w: int, i: int) -> np.ndarray:
    """A wall at 4 m with a box at 1.2 m that moves right by 2 px per frame."""
    z = np.full((h, w), 4.0)
    z[h // 4: 3 * h // 4, w // 4 + 2 * i: w // 2 + 2 * i] = 1.2
    return z


def write_depth(path: Path, h: int, w: int, frames: int, max_depth: float = 6.0) -> list[np.ndarray]:
    """``frames`` box_depth frames at 25 fps; returns them."""
    depths = [box_depth(h, w, i) for i in range(frames)]
    write_depth_video(path, depths, fps=25, max_depth=max_depth)
    return depths


def write_colour(path: Path, h: int, w: int, frames: int, fps=25) -> list[np.ndarray]:
    """A lossless (FFV1) colour clip with a moving pattern; returns its frames."""
    colour = rolled_noise_frames(frames, h, w)
    write_lossless_video(path, colour, fps=fps)
    return colour


def expected_views(colour: np.ndarray, depth_m: np.ndarray, xfov: float, ipd_mm: float = 63.0, far: float = 6.0,
                   **comfort):
    """The eyes the CLI should render for one frame (depth decoded from the 6 m packed format);
    ``comfort``: :func:`comfort_disparity`'s settings (default: the CLI's defaults)."""
    h, w = colour.shape[:2]
    fx = intrinsics_from_fov(h, w, xfov=xfov).fx
    comfort.setdefault("edge_dilation", DEFAULT_EDGE_DILATION)
    comfort.setdefault("edge_sharpen", DEFAULT_EDGE_SHARPEN)
    fill = comfort.pop("fill", "smooth")
    disp = comfort_disparity(torch.from_numpy(depth_m.astype(np.float32)), fx, ipd_mm / 1000, far, **comfort)
    return render_stereo(colour, disp.numpy(), fill=fill)


def no_leftovers(folder: Path, expected: set[str]) -> None:
    """Only the expected files are in ``folder`` (no partial outputs, no hidden temporary files)."""
    assert {p.name for p in folder.iterdir()} == expected


# ------------------------------------------------------------------------------------------------
# the bundled sample clip: H.264 + AAC in, H.264 + AAC out
# ------------------------------------------------------------------------------------------------
def test_sample_clip_sbs_with_audio(tmp_path, capsys):
    assert SAMPLE.is_file(), "the bundled sample clip assets/big_buck_bunny_3s.mp4 is missing"
    info = probe_video(SAMPLE)
    assert info.has_audio
    depth_path = tmp_path / "bunny_depth.mkv"
    write_depth(depth_path, info.height, info.width, frames=6)
    code = stero_rerender.main(["--video", str(depth_path), "--color_video", str(SAMPLE), "--xfov", "47.5",
                                "--max_frames", "5", "--no_progress"])
    assert code == 0
    out = Path(str(depth_path) + "_stereo.mp4")
    assert out.is_file()
    result = probe_video(out)
    assert (result.width, result.height) == (2 * info.width, info.height)
    assert result.codec == "h264" and result.fps == Fraction(25) and result.has_audio
    frames = read_frames(out)
    assert len(frames) == 5
    # The left half of a frame is the left eye rendered from the decoded colour frame.
    colour = read_frames(SAMPLE)[:5]
    depth = read_depth_frames(depth_path)
    views = expected_views(colour[3], depth[3], 47.5)
    err = frames[3].astype(float) - np.concatenate([views.left, views.right], axis=1)
    psnr = 10 * np.log10(255**2 / np.mean(err**2))
    assert psnr > 30, psnr  # H.264 at crf 18
    printed = capsys.readouterr().out
    assert "wrote 5 frames" in printed and str(out) in printed and "fps" in printed
    no_leftovers(tmp_path, {depth_path.name, out.name})


def test_audio_stays_in_sync_length(tmp_path):
    info = probe_video(SAMPLE)
    depth_path = tmp_path / "d.mkv"
    write_depth(depth_path, info.height // 2, info.width // 2, frames=25)  # half size: resized
    out = tmp_path / "out.mkv"
    assert stero_rerender.main(["--video", str(depth_path), "--color_video", str(SAMPLE), "--yfov", "30",
                                "--format", "half-sbs", "--output", str(out), "--no_progress"]) == 0
    import av

    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (info.width, info.height)
        last_audio = 0.0
        for packet in container.demux(audio):
            if packet.pts is not None:
                last_audio = float((packet.pts + (packet.duration or 0)) * packet.time_base)
    # 25 frames at 25 fps = 1 s of video; the copied audio stops with it (to within one AAC packet).
    assert 0.95 <= last_audio <= 1.1, last_audio


# ------------------------------------------------------------------------------------------------
# synthetic lossless clips: exact comparisons
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, size", [("sbs", (96, 24)), ("half-sbs", (48, 24)), ("tb", (48, 48)),
                                       ("half-tb", (48, 24)), ("anaglyph", (48, 24))])
def test_formats_lossless_exact(tmp_path, fmt, size):
    h, w = 24, 48
    colour = write_colour(tmp_path / "c.mkv", h, w, 3)
    write_depth(tmp_path / "d.mkv", h, w, 3)
    depth = read_depth_frames(tmp_path / "d.mkv")
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "70", "--pupillary_distance", "200", "--format", fmt, "--lossless",
                                "--infill_mask", "--no_progress"]) == 0
    out = tmp_path / "d.mkv_stereo.mkv"
    mask_out = tmp_path / "d.mkv_stereo_mask.mkv"
    assert probe_video(out).codec == "ffv1"
    frames, masks = read_frames(out), read_frames(mask_out, pix_fmt="gray")
    assert len(frames) == len(masks) == 3
    for i in range(3):
        views = expected_views(colour[i], depth[i], 70.0, ipd_mm=200.0)
        assert frames[i].shape[:2] == (size[1], size[0])
        if fmt == "anaglyph":  # the default method: Dubois (tests/test_stereo_formats.py checks the others)
            expected = anaglyph(torch.from_numpy(views.left), torch.from_numpy(views.right), "dubois").numpy()
        else:
            expected = pack_stereo(views.left, views.right, fmt)
        np.testing.assert_array_equal(frames[i], expected)
        if fmt == "anaglyph":
            expected_mask = views.left_filled | views.right_filled
        else:
            # A half-format pixel is filled when either of the two pixels it averages was.
            expected_mask = pack_stereo(views.left_filled[..., None].astype(np.uint8) * 255,
                                        views.right_filled[..., None].astype(np.uint8) * 255, fmt)[..., 0] > 0
        assert expected_mask.any()
        np.testing.assert_array_equal(masks[i], expected_mask.astype(np.uint8) * 255)


def test_without_colour_video_uses_the_depth_frames(tmp_path):
    write_depth(tmp_path / "d.mkv", 20, 30, 2)
    assert stero_rerender.main(["--depth_video", str(tmp_path / "d.mkv"), "--xfov", "60", "--no_progress"]) == 0
    result = probe_video(tmp_path / "d.mkv_stereo.mp4")
    assert (result.width, result.height, result.num_frames) == (60, 20, 2)
    assert not result.has_audio


def test_mismatched_inputs_warn_and_shorter_wins(tmp_path, capsys):
    write_colour(tmp_path / "c.mkv", 24, 32, 5)
    write_depth(tmp_path / "d.mkv", 12, 16, 3)        # half the size, fewer frames
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--no_progress"]) == 0
    err = capsys.readouterr().err
    assert "resized" in err and err.count("resized") == 1
    assert "ended after 3 frames" in err
    result = probe_video(tmp_path / "d.mkv_stereo.mp4")
    assert (result.width, result.height, result.num_frames) == (64, 24, 3)
    # And the other way round: a longer depth video.
    write_depth(tmp_path / "d2.mkv", 24, 32, 6)
    assert stero_rerender.main(["--video", str(tmp_path / "d2.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--no_progress"]) == 0
    assert "colour video c.mkv ended after 5 frames" in capsys.readouterr().err
    assert probe_video(tmp_path / "d2.mkv_stereo.mp4").num_frames == 5


def test_max_frames_gives_no_length_warning(tmp_path, capsys):
    write_colour(tmp_path / "c.mkv", 16, 16, 4)
    write_depth(tmp_path / "d.mkv", 16, 16, 6)
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--max_frames", "2", "--no_progress"]) == 0
    assert "ended" not in capsys.readouterr().err
    assert probe_video(tmp_path / "d.mkv_stereo.mp4").num_frames == 2


def test_odd_sizes_are_padded_for_h264(tmp_path, capsys):
    write_colour(tmp_path / "c.mkv", 15, 21, 2)
    write_depth(tmp_path / "d.mkv", 15, 21, 2)
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--format", "tb", "--output", str(tmp_path / "o.mp4"),
                                "--no_progress"]) == 0
    assert "even" in capsys.readouterr().err
    result = probe_video(tmp_path / "o.mp4")
    assert (result.width, result.height) == (22, 30)   # 21x30 padded to 22x30
    # Lossless keeps the exact size.
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--format", "tb", "--lossless", "--no_progress"]) == 0
    result = probe_video(tmp_path / "d.mkv_stereo.mkv")
    assert (result.width, result.height) == (21, 30)


# ------------------------------------------------------------------------------------------------
# errors: exit code 2, one line, no output
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--xfov", "0"], "argument --xfov: must be a finite number > 0, got 0"),
    (["--xfov", "180"], "argument --xfov: must be between 0 and 180 degrees (exclusive), got 180"),
    (["--yfov", "-5"], "argument --yfov: must be a finite number > 0, got -5"),
    (["--xfov", "nan"], "argument --xfov: must be a finite number > 0, got nan"),
])
def test_bad_fov_flags(tmp_path, capsys, extra, message):
    # The shared --xfov / --yfov flags (mvda.cli.add_fov_args) reject these while parsing: usage + one error line.
    write_colour(tmp_path / "c.mkv", 8, 8, 1)
    write_depth(tmp_path / "d.mkv", 8, 8, 1)
    with pytest.raises(SystemExit) as exit_info:
        stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                             *extra, "--no_progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == f"stero_rerender.py: error: {message}"
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})


def test_fov_required(tmp_path, capsys):
    write_colour(tmp_path / "c.mkv", 8, 8, 1)
    write_depth(tmp_path / "d.mkv", 8, 8, 1)
    code = stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--no_progress"])
    assert code == 2
    one_line_error(capsys, "field of view", prog=PROG, alone=True)
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})


def test_other_aspect_ratio_is_an_error(tmp_path, capsys):
    # The one pairing policy (mvda.io.pairing): a colour video with another aspect ratio is another clip.
    write_colour(tmp_path / "c.mkv", 24, 48, 2)
    write_depth(tmp_path / "d.mkv", 24, 32, 2)
    code = stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--infill_mask", "--no_progress"])
    assert code == 2
    one_line_error(capsys, "another aspect ratio", "48x24", prog=PROG, alone=True)
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})


def test_missing_files(tmp_path, capsys):
    write_depth(tmp_path / "d.mkv", 8, 8, 1)
    assert stero_rerender.main(["--video", str(tmp_path / "nope.mkv"), "--xfov", "60"]) == 2
    assert "nope.mkv: no such file" in capsys.readouterr().err
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "x.mp4"),
                                "--xfov", "60"]) == 2
    one_line_error(capsys, "x.mp4: no such file", prog=PROG, alone=True)
    no_leftovers(tmp_path, {"d.mkv"})


def test_colour_video_as_depth(tmp_path, capsys):
    write_colour(tmp_path / "c.mkv", 16, 16, 2)
    code = stero_rerender.main(["--video", str(tmp_path / "c.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--infill_mask", "--no_progress"])
    assert code == 2
    one_line_error(capsys, "does not look like an RGB-packed depth video", prog=PROG, alone=True)
    no_leftovers(tmp_path, {"c.mkv"})


def test_output_flags_checked(tmp_path, capsys):
    write_depth(tmp_path / "d.mkv", 8, 8, 1)
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--xfov", "60", "--lossless",
                                "--output", str(tmp_path / "o.mp4")]) == 2
    assert ".mkv" in capsys.readouterr().err
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--xfov", "60",
                                "--output", str(tmp_path / "d.mkv")]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--xfov", "60", "--device", "tpu"]) == 2
    no_leftovers(tmp_path, {"d.mkv"})


def test_help_uses_the_docstring(capsys):
    with pytest.raises(SystemExit) as exit_info:
        stero_rerender.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Render a stereo 3D video" in out and "--pupillary_distance" in out and "--depth_video" in out


def test_failure_mid_video_leaves_no_output(tmp_path, capsys, monkeypatch):
    # An error while rendering frame 3 (main thread) and one while encoding frame 3 (encoder
    # thread): exit code 2, one line, and neither the video nor the mask appears.
    write_colour(tmp_path / "c.mkv", 16, 16, 6)
    write_depth(tmp_path / "d.mkv", 16, 16, 6)
    argv = ["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"), "--xfov", "60",
            "--infill_mask", "--no_progress"]
    calls = {"pack": 0, "write": 0}
    real_pack = stereo_app.StereoPacker.pack

    def failing_pack(*args, **kwargs):
        calls["pack"] += 1
        if calls["pack"] == 3:
            raise UserError("simulated render failure")
        return real_pack(*args, **kwargs)

    monkeypatch.setattr(stereo_app.StereoPacker, "pack", failing_pack)
    assert stero_rerender.main(argv) == 2
    assert "simulated render failure" in capsys.readouterr().err
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})
    monkeypatch.setattr(stereo_app.StereoPacker, "pack", real_pack)

    real_write = VideoWriter.write

    def failing_write(self, frame):
        calls["write"] += 1
        if calls["write"] == 3:
            raise UserError("simulated disk full")
        return real_write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", failing_write)
    assert stero_rerender.main(argv) == 2
    assert one_line_error(capsys, prog=PROG, alone=True).endswith("simulated disk full")
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})


def test_sigterm_mid_video_leaves_no_output(tmp_path, capsys, monkeypatch):
    # SIGTERM while rendering frame 2: exit code 143 (128 + 15), one line, neither output nor a hidden
    # temporary file left behind.
    write_colour(tmp_path / "c.mkv", 16, 16, 6)
    write_depth(tmp_path / "d.mkv", 16, 16, 6)
    real_render = stereo_app.StereoWarper.render
    calls = {"render": 0}

    def render(self, *args, **kwargs):
        calls["render"] += 1
        if calls["render"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_render(self, *args, **kwargs)

    monkeypatch.setattr(stereo_app.StereoWarper, "render", render)
    code = stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--infill_mask", "--no_progress"])
    assert code == 143
    err = capsys.readouterr().err.strip()
    assert err == "stero_rerender.py: terminated by SIGTERM; no output was finalised"
    assert calls["render"] == 2
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})

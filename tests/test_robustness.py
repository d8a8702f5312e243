"""Issue 12 from the command line: damaged depth files, colour passed as depth, rotated phone video,
variable frame rate. Every input is made in the test."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import rgb_depth_to_greyscale
import stero_rerender
from mvda.io.video import VideoReader, VideoWriter, probe_video
from tests.helpers import (one_line_error, read_frames, write_depth_video, write_lossless_video, write_portrait_clip,
                           write_vfr_clip)


def ramp_depth(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    return (np.linspace(0.5, 5.0, h * w, dtype=np.float32).reshape(h, w) + 0.05 * i).astype(np.float32)


def write_depth(path: Path, n: int = 10, h: int = 48, w: int = 64) -> Path:
    """``n`` ramp frames (0.5..5 m, 5 cm further each frame) at 10 fps."""
    return write_depth_video(path, (ramp_depth(i, h, w) for i in range(n)), fps=10)


def damage(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    for k in range(8):
        data[len(data) // 2 + 13 * k] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_damaged_depth_file_stops_grey_and_stereo_naming_the_frame(tmp_path, capsys):
    bad = damage(write_depth(tmp_path / "good_depth.mkv"), tmp_path / "bad_depth.mkv")
    assert rgb_depth_to_greyscale.main(["--video", str(bad), "--no_progress"]) == 2
    one_line_error(capsys, "is damaged", "--skip_damaged", "frame ", alone=True)
    assert stero_rerender.main(["--video", str(bad), "--xfov", "60", "--no_progress"]) == 2
    one_line_error(capsys, "is damaged", alone=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_depth.mkv", "good_depth.mkv"]


def test_skip_damaged_leaves_out_the_frames_and_counts_them(tmp_path, capsys):
    bad = damage(write_depth(tmp_path / "good_depth.mkv"), tmp_path / "bad_depth.mkv")
    out = tmp_path / "g.mkv"
    assert rgb_depth_to_greyscale.main(["--video", str(bad), "--output", str(out), "--no_progress",
                                        "--skip_damaged"]) == 0
    err = capsys.readouterr().err
    assert "left out 1 damaged frame(s)" in err
    assert probe_video(out).num_frames == 9
    # Stereo with a colour video: the colour frame of the damaged depth frame goes too, so the rest stay paired.
    colour = tmp_path / "c.mkv"
    write_lossless_video(colour, [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)], fps=10)
    stereo = tmp_path / "s.mkv"
    assert stero_rerender.main(["--video", str(bad), "--color_video", str(colour), "--xfov", "60", "--lossless",
                                "--output", str(stereo), "--no_progress", "--skip_damaged"]) == 0
    frames = read_frames(stereo)
    levels = [int(np.median(f[:, 64:])) for f in frames]  # the colour level of each right-eye frame
    assert len(frames) == 9 and 80 not in levels  # frame 4 (level 80) is the damaged one
    assert levels == [20 * i for i in range(10) if i != 4]


def test_colour_video_with_a_fade_in_is_not_taken_for_depth(tmp_path, capsys):
    rng = np.random.default_rng(3)
    clip = tmp_path / "fade.mkv"
    black = [np.zeros((32, 32, 3), np.uint8)] * 3
    write_lossless_video(clip, black + [rng.integers(0, 256, (32, 32, 3), np.uint8) for _ in range(9)], fps=10)
    for main, extra in ((rgb_depth_to_greyscale.main, []), (stero_rerender.main, ["--xfov", "60"])):
        assert main(["--video", str(clip), "--no_progress", *extra]) == 2
        one_line_error(capsys, "does not look like an RGB-packed depth video", alone=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fade.mkv"]


def test_monochrome_h264_is_not_taken_for_depth(tmp_path, capsys):
    clip = tmp_path / "mono.mp4"
    yy, xx = np.mgrid[0:32, 0:32]
    with VideoWriter(clip, 32, 32, 10) as writer:
        for i in range(6):
            writer.write(np.repeat(((xx * 8 + i) % 256).astype(np.uint8)[..., None], 3, axis=2))
    assert rgb_depth_to_greyscale.main(["--video", str(clip), "--no_progress"]) == 2
    one_line_error(capsys, "monochrome", alone=True)


def test_rotated_phone_video_is_shown_upright_in_stereo(tmp_path):
    colour = tmp_path / "portrait.mp4"
    write_portrait_clip(colour, n=4, dark=60, bright=230)
    depth = write_depth(tmp_path / "portrait_depth.mkv", n=4, h=64, w=32)  # depth at the displayed size
    out = tmp_path / "s.mkv"
    assert stero_rerender.main(["--video", str(depth), "--color_video", str(colour), "--xfov", "40", "--lossless",
                                "--output", str(out), "--no_progress"]) == 0
    info = probe_video(out)
    assert (info.height, info.width) == (64, 64)  # side by side of two 64-high, 32-wide eyes
    with VideoReader(out) as reader:
        left = next(iter(reader))[:, :32]
    # The stored frame's bright left strip is at the top once upright (turned clockwise).
    assert left[:10].mean() > 180 and left[-30:].mean() < 100


def test_variable_frame_rate_stereo_keeps_picture_and_sound_in_sync(tmp_path):
    colour = tmp_path / "phone.mp4"
    times = write_vfr_clip(colour, (48, 64), audio_seconds=3)
    depth = write_depth(tmp_path / "phone_depth.mkv", n=40)
    out = tmp_path / "s.mp4"
    assert stero_rerender.main(["--video", str(depth), "--color_video", str(colour), "--xfov", "60",
                                "--output", str(out), "--no_progress"]) == 0
    with VideoReader(out) as reader:
        assert len(list(reader)) == 40
        got = reader.times
    assert got[30] == pytest.approx(1.0, abs=0.002)  # not 30/13.3 s as a constant-rate re-timing would put it
    assert np.allclose(got, times, atol=0.002)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        audio_end = float(audio.duration * audio.time_base) if audio.duration else None
    assert audio_end is not None and audio_end == pytest.approx(times[-1] + 1 / 30, abs=0.1)


@pytest.mark.parametrize("extra", [["--xfov", "1e-9"], ["--xfov", "60", "--pupillary_distance", "1e9"]])
def test_stereo_refuses_settings_whose_views_do_not_overlap(tmp_path, capsys, extra):
    depth = write_depth(tmp_path / "d_depth.mkv", n=3)
    assert stero_rerender.main(["--video", str(depth), "--no_progress", *extra]) == 2
    one_line_error(capsys, "barely overlap", "pupillary distance", alone=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d_depth.mkv"]


@pytest.mark.parametrize("main,argv,message", [
    ("stereo", ["--xfov", "60", "--max_depth", "1e-30"], "--max_depth: must be between"),
    ("view", ["--xfov", "60", "--x", "nan", "--render", "v.mp4"], "--x: must be a finite number"),
    ("grey", ["--max_frames", "0"], "--max_frames: must be > 0 (or -1 for all frames)"),
])
def test_bad_numbers_are_refused_with_one_line(tmp_path, capsys, main, argv, message):
    import importlib

    module = {"stereo": stero_rerender, "grey": rgb_depth_to_greyscale,
              "view": importlib.import_module("3d_view_depthfile")}[main]
    depth = write_depth(tmp_path / "d_depth.mkv", n=2)
    with pytest.raises(SystemExit) as exc:
        module.main(["--video", str(depth), *[str(tmp_path / a) if a.endswith(".mp4") else a for a in argv]])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_variable_frame_rate_conversion_keeps_each_frames_time(tmp_path, procedural_checkpoints):
    import video_metric_convert

    colour = tmp_path / "phone.mp4"
    times = write_vfr_clip(colour, (48, 64), audio_seconds=3)
    out = tmp_path / "out"
    ck = procedural_checkpoints
    assert video_metric_convert.main([
        "--input_video", str(colour), "--output_dir", str(out), "--encoder", "vits", "--metric_encoder", "vits",
        "--input_size", "28", "--vda_checkpoint", str(ck["vda"]), "--metric_checkpoint", str(ck["dav2"]),
        "--no_progress", "--fov", "off"]) == 0
    with VideoReader(out / "phone_depth.mkv") as reader:
        assert len(list(reader)) == 40
        got = reader.times
    assert got[30] == pytest.approx(1.0, abs=0.002)  # depth frame i carries colour frame i's time
    assert np.allclose(got, times, atol=0.002)


class _StubReader:
    """What convert's frame source reads: frames in order, their times, and the stream's properties."""

    def __init__(self, times: list[float], vfr: bool, fps) -> None:
        from types import SimpleNamespace

        self._times = times
        self.times: list[float] = []
        self.fps = Fraction(fps)
        self.height, self.width = 2, 2
        self.path = Path("stub.mp4")
        self.info = SimpleNamespace(vfr=vfr, num_frames=len(times))

    def __iter__(self):
        for i, t in enumerate(self._times):
            self.times.append(t)
            yield np.full((2, 2, 3), i, np.uint8)


def test_target_fps_picks_frames_by_time():
    """--target_fps on a variable-rate video: output frame k shows the source frame on screen at k / fps."""
    import mvda.apps.convert as cp

    times = [i / 30 for i in range(30)] + [1.0 + i / 5 for i in range(10)]  # 30 at 30 fps, then 10 at 5 fps
    options = cp.ConvertOptions(target_fps=10, max_depth=6.0, progress=False)
    source = cp._FrameSource(_StubReader(times, vfr=True, fps=Fraction(40, 3)), options, cp.StageTimer(enabled=False))
    shown = [int(frame[0, 0, 0]) for frame in source]
    expected = [max(j for j, t in enumerate(times) if t <= k / 10 + 1e-9) for k in range(30)]
    assert shown == expected
    assert shown[10] == 30 and shown[12] == 31  # at 1.0 s and 1.2 s: the first frames of the slow part
    # A constant-rate source gives the exact index formula, as before.
    cfr = cp._FrameSource(_StubReader([i / 30 for i in range(9)], vfr=False, fps=30), options,
                          cp.StageTimer(enabled=False))
    assert [int(f[0, 0, 0]) for f in cfr] == [0, 3, 6]


def test_too_narrow_video_and_bad_target_fps_are_one_line_errors(tmp_path, capsys, procedural_checkpoints):
    import video_metric_convert

    thin = tmp_path / "thin.mkv"
    with VideoWriter(thin, 2000, 50, 10, codec="ffv1", pix_fmt="bgr0") as writer:
        for i in range(2):
            writer.write(np.full((50, 2000, 3), 40 * i, np.uint8))
    ck = procedural_checkpoints
    argv = ["--input_video", str(thin), "--output_dir", str(tmp_path / "out"), "--encoder", "vits",
            "--metric_encoder", "vits", "--vda_checkpoint", str(ck["vda"]), "--metric_checkpoint", str(ck["dav2"]),
            "--no_progress", "--fov", "off"]
    assert video_metric_convert.main([*argv, "--input_size", "28"]) == 2
    assert "too narrow for the networks" in one_line_error(capsys, alone=True)
    assert not list((tmp_path / "out").iterdir())
    for bad in ("inf", "1e300", "nan", "0"):
        with pytest.raises(SystemExit) as exc:
            video_metric_convert.main([*argv, "--target_fps", bad])
        assert exc.value.code == 2
        assert "--target_fps: must be a frame rate" in capsys.readouterr().err


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, procedural_checkpoints):
    """ENOSPC while writing the --fit global store or a --png16 frame: one line, no traceback, no leftovers."""
    import video_metric_convert

    clip = tmp_path / "clip.mkv"
    with VideoWriter(clip, 64, 48, 10, codec="ffv1", pix_fmt="bgr0") as writer:
        for i in range(6):
            writer.write(np.full((48, 64, 3), 30 * i, np.uint8))

    def no_space(self, data):
        raise OSError(28, "No space left on device")

    import mvda.apps.convert as cp

    original = cp._StoreSink.write

    def failing(self, r):
        self.store = type("S", (), {"write": no_space, "name": str(tmp_path / "out" / ".clip.vda.f16"),
                                    "flush": lambda s: None})()
        return original(self, r)

    monkeypatch.setattr(cp._StoreSink, "write", failing)
    ck = procedural_checkpoints
    out = tmp_path / "out"
    assert video_metric_convert.main(["--input_video", str(clip), "--output_dir", str(out), "--fit", "global",
                                      "--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28",
                                      "--vda_checkpoint", str(ck["vda"]), "--metric_checkpoint", str(ck["dav2"]),
                                      "--no_progress", "--fov", "off"]) == 2
    line = one_line_error(capsys, alone=True)
    assert "No space left on device" in line and "--fit rolling" in line
    assert list(out.iterdir()) == []
    # --png16 on a full disk
    import mvda.apps.grey as grey

    depth = write_depth(tmp_path / "d_depth.mkv", n=3)
    monkeypatch.setattr(grey.Path, "write_bytes", no_space)
    assert rgb_depth_to_greyscale.main(["--video", str(depth), "--png16", str(tmp_path / "png"),
                                        "--no_progress"]) == 2
    assert "No space left on device" in one_line_error(capsys, alone=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "d_depth.mkv", "out"]


def test_precision_defaults_follow_the_official_code(monkeypatch):
    """On CUDA: Video-Depth-Anything under fp16 autocast, Depth-Anything-V2 in float32; --precision sets both."""
    import torch

    import mvda.apps.convert as cp
    import video_metric_convert

    monkeypatch.setattr("mvda.device.resolve_device", lambda name: torch.device("cuda"))
    parse = video_metric_convert.build_parser().parse_args
    options = cp.options_from_args(parse(["--input_video", "x.mp4"]))
    assert (options.precision, options.metric_precision) == ("fp16", "fp32")
    options = cp.options_from_args(parse(["--input_video", "x.mp4", "--precision", "bf16"]))
    assert (options.precision, options.metric_precision) == ("bf16", "bf16")
    options = cp.options_from_args(parse(["--input_video", "x.mp4", "--fp32"]))
    assert (options.precision, options.metric_precision) == ("fp32", "fp32")


def test_max_len_negative_and_two_png16_runs_into_one_folder(tmp_path, capsys):
    import video_metric_convert

    with pytest.raises(SystemExit) as exc:
        video_metric_convert.main(["--input_video", "x.mp4", "--max_len", "-5"])
    assert exc.value.code == 2 and "must be > 0 (or -1 for all frames), got -5" in capsys.readouterr().err
    depth = write_depth(tmp_path / "d_depth.mkv", n=2)
    png = tmp_path / "png"
    assert rgb_depth_to_greyscale.main(["--video", str(depth), "--png16", str(png), "--no_progress"]) == 0
    first = sorted(p.name for p in png.iterdir())
    assert first == ["frame_000000.png", "frame_000001.png"]
    capsys.readouterr()
    assert rgb_depth_to_greyscale.main(["--video", str(depth), "--png16", str(png), "--no_progress"]) == 2
    assert "already exists and is not empty" in one_line_error(capsys, alone=True)
    assert sorted(p.name for p in png.iterdir()) == first  # the first run's frames are kept as they were


def test_field_of_view_travels_in_the_depth_file(tmp_path, capsys, procedural_checkpoints):
    """--xfov given to the converter is written into the depth file's tags; stereo and the viewer use it
    when no --xfov/--yfov is given (and say so with -v), and an untagged file without a FOV is one line."""
    import importlib

    import video_metric_convert

    clip = write_lossless_video(tmp_path / "clip.mkv", [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(4)])
    ck = procedural_checkpoints
    out = tmp_path / "out"
    assert video_metric_convert.main([
        "--input_video", str(clip), "--output_dir", str(out), "--encoder", "vits", "--metric_encoder", "vits",
        "--input_size", "28", "--vda_checkpoint", str(ck["vda"]), "--metric_checkpoint", str(ck["dav2"]),
        "--xfov", "50", "--no_progress"]) == 0
    depth = out / "clip_depth.mkv"
    info = probe_video(depth)
    assert float(info.tag("xfov")) == pytest.approx(50.0) and 0 < float(info.tag("yfov")) < 50
    capsys.readouterr()
    assert stero_rerender.main(["--video", str(depth), "--output", str(tmp_path / "s.mkv"), "--lossless",
                                "--no_progress", "-v"]) == 0
    assert "using the field of view in the file's tags (xfov 50" in capsys.readouterr().err
    assert probe_video(tmp_path / "s.mkv").tag("xfov") == "50"  # the stereo output records what it used
    view = importlib.import_module("3d_view_depthfile")
    assert view.main(["--video", str(depth), "--render", str(tmp_path / "v.mp4"), "--no_progress",
                      "--max_frames", "1"]) == 0
    untagged = write_depth(tmp_path / "plain_depth.mkv", n=2)
    for main in (stero_rerender.main, view.main):
        assert main(["--video", str(untagged), "--no_progress"]) == 2
        assert "field-of-view tags" in one_line_error(capsys, alone=True)

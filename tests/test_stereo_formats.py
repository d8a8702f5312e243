"""stero_rerender.py output side end to end: VR180, metadata in the files, player names, codecs, anaglyphs."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import stero_rerender
from mvda.apps import stereo_output
from mvda.apps.stereo_output import PLAYER_SUFFIXES, level_warning, player_name
from mvda.io.spatial_meta import SpatialMetadata, read_matroska_projection, read_mp4_spatial_metadata
from mvda.io.video import probe_video
from mvda.ops.anaglyph import anaglyph
from mvda.ops.geometry import intrinsics_from_fov
from mvda.ops.stereo_warp import pack_stereo
from mvda.ops.vr180 import VR180Projector
from tests.helpers import one_line_error, read_depth_frames, read_frames
from tests.test_spatial_meta import AV_STEREO3D_SIDEBYSIDE, AV_STEREO3D_TOPBOTTOM, side_data
from tests.test_stero_rerender import expected_views, no_leftovers, write_colour, write_depth

PROG = "stero_rerender.py"
H, W = 24, 32
VR180 = SpatialMetadata("left-right", (0.0, 0.0, 0.25, 0.25))


@pytest.fixture
def clip(tmp_path) -> Path:
    write_colour(tmp_path / "c.mkv", H, W, 3)
    write_depth(tmp_path / "d.mkv", H, W, 3)
    return tmp_path


def render(folder: Path, *extra: str) -> int:
    return stero_rerender.main(["--video", str(folder / "d.mkv"), "--color_video", str(folder / "c.mkv"),
                                "--xfov", "90", "--no_progress", *extra])


def test_vr180_lossless_exact_with_projection_and_stereo_mode(clip):
    assert render(clip, "--format", "vr180", "--lossless", "--infill_mask") == 0
    out, mask_out = clip / "d.mkv_stereo.mkv", clip / "d.mkv_stereo_mask.mkv"
    # fx = 16 px (90 degrees over 32 px): each eye 2 * round(pi * 16 / 2) = 50 px square, side by side.
    info = probe_video(out)
    assert (info.width, info.height) == (100, 50)
    assert read_matroska_projection(out) == VR180
    assert read_matroska_projection(mask_out) == VR180
    found, _ = side_data(out)
    assert found["stereo3d"] == AV_STEREO3D_SIDEBYSIDE and found["spherical"][4:] == (1 << 30, 0, 1 << 30, 0)
    colour, depth = read_frames(clip / "c.mkv"), read_depth_frames(clip / "d.mkv")
    proj = VR180Projector(intrinsics_from_fov(H, W, xfov=90.0), 50)
    frames, masks = read_frames(out), read_frames(mask_out, pix_fmt="gray")
    for i in range(3):
        views = expected_views(colour[i], depth[i], 90.0)
        left, right = (proj.project(torch.from_numpy(v)).numpy() for v in (views.left, views.right))
        np.testing.assert_array_equal(frames[i], np.concatenate([left, right], axis=1))
        mask = np.concatenate([proj.project(torch.from_numpy(m)).numpy()
                               for m in (views.left_filled, views.right_filled)], axis=1)
        np.testing.assert_array_equal(masks[i] > 0, mask)
    # Beyond the 90-degree field of view (e.g. the sphere's sides and poles) the eyes are black.
    assert (frames[0][:, :5] == 0).all() and (frames[0][:3] == 0).all() and (frames[0][:, 50:55] == 0).all()
    assert frames[0][25, 25].any() and frames[0][25, 75].any()


def test_vr180_mp4_hevc_with_player_name(clip):
    # (x265 is given frames of at least 64 x 64 px in the tests: on smaller ones this libx265 build
    # sometimes corrupts its heap.)
    assert render(clip, "--format", "vr180", "--codec", "hevc", "--player_names", "--vr180_size", "64") == 0
    out = clip / "d.mkv_stereo_180_LR.mp4"
    no_leftovers(clip, {"c.mkv", "d.mkv", out.name})
    info = probe_video(out)
    assert (info.codec, info.width, info.height) == ("hevc", 128, 64)
    assert read_mp4_spatial_metadata(out) == VR180
    found, frames = side_data(out)
    assert found["stereo3d"] == AV_STEREO3D_SIDEBYSIDE
    assert found["spherical"][4:] == (1 << 30, 0, 1 << 30, 0)
    assert len(frames) == 3
    with av.open(str(out)) as container:  # tagged hvc1 (Apple's players need it), parameter sets complete
        assert container.streams.video[0].codec_context.codec_tag == "hvc1"
    data = out.read_bytes()
    hvcc = data[data.index(b"hvcC") + 4:]
    assert hvcc[23] == 0x80 | 32  # the first array (after the 22-byte record and its count): VPS, complete


@pytest.mark.parametrize("fmt, stereo, side", [("sbs", "left-right", AV_STEREO3D_SIDEBYSIDE),
                                                ("half-tb", "top-bottom", AV_STEREO3D_TOPBOTTOM)])
def test_flat_layouts_carry_stereo_mode_in_mp4_and_mkv(clip, fmt, stereo, side):
    assert render(clip, "--format", fmt) == 0
    mp4 = clip / "d.mkv_stereo.mp4"  # the default name is unchanged without --player_names
    assert read_mp4_spatial_metadata(mp4) == SpatialMetadata(stereo)
    assert side_data(mp4)[0] == {"stereo3d": side}
    assert render(clip, "--format", fmt, "--lossless") == 0
    mkv = clip / "d.mkv_stereo.mkv"
    assert read_matroska_projection(mkv) == SpatialMetadata(stereo)
    assert side_data(mkv)[0] == {"stereo3d": side}


@pytest.mark.parametrize("fmt, side", [("half-sbs", AV_STEREO3D_SIDEBYSIDE), ("tb", AV_STEREO3D_TOPBOTTOM)])
def test_h264_frame_packing_sei(tmp_path, fmt, side):
    # The H.264 stream itself says how it is packed (3D TVs read it): a Matroska file without
    # StereoMode still decodes with the stereo side data, which then comes from the SEI.
    from mvda.io.video import VideoWriter

    with VideoWriter(tmp_path / "a.mkv", 64, 32, 10, **stereo_output.encoder_settings("h264", 18, "fast", fmt)) as w:
        for _ in range(2):
            w.write(np.zeros((32, 64, 3), np.uint8))
    assert read_matroska_projection(tmp_path / "a.mkv") is None
    assert side_data(tmp_path / "a.mkv")[0] == {"stereo3d": side}
    for other in ("vr180", "anaglyph"):
        assert "x264-params" not in stereo_output.encoder_settings("h264", 18, "fast", other)["options"]


def test_player_names_for_every_layout(clip):
    for fmt, suffix in PLAYER_SUFFIXES.items():
        assert render(clip, "--format", fmt, "--player_names", "--lossless", "--max_frames", "1") == 0
        assert (clip / f"d.mkv_stereo{suffix}.mkv").is_file(), fmt
    assert render(clip, "--format", "half-sbs", "--player_names", "--output", str(clip / "movie.mp4"),
                  "--infill_mask", "--max_frames", "1") == 0
    assert (clip / "movie_3dh.mp4").is_file() and (clip / "movie_3dh_mask.mp4").is_file()
    assert player_name(Path("a/movie_LR.mp4"), "sbs") == Path("a/movie_LR.mp4")  # not doubled
    assert player_name(Path("x_depth.mkv_stereo.mp4"), "tb") == Path("x_depth.mkv_stereo_TB.mp4")


def test_anaglyph_is_dubois_by_default_and_444(clip):
    assert render(clip, "--format", "anaglyph") == 0
    out = clip / "d.mkv_stereo.mp4"
    info = probe_video(out)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv444p")
    assert read_mp4_spatial_metadata(out) is None  # players show an anaglyph as a plain video
    for method in ("color", "gray"):
        assert render(clip, "--format", "anaglyph", "--anaglyph_method", method, "--lossless") == 0
        frames = read_frames(clip / "d.mkv_stereo.mkv")
        assert probe_video(clip / "d.mkv_stereo.mkv").tag("anaglyph_method") == method
        colour, depth = read_frames(clip / "c.mkv"), read_depth_frames(clip / "d.mkv")
        views = expected_views(colour[0], depth[0], 90.0)
        expected = anaglyph(torch.from_numpy(views.left), torch.from_numpy(views.right), method).numpy()
        np.testing.assert_array_equal(frames[0], expected)
        if method == "color":
            np.testing.assert_array_equal(frames[0], pack_stereo(views.left, views.right, "anaglyph"))


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_444_keeps_one_pixel_colour_detail(tmp_path, codec):
    # Alternating red / cyan columns: 4:2:0 would average each pair of columns into grey; 4:4:4 keeps them.
    from mvda.io.video import VideoWriter

    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, 0::2] = (255, 0, 0)
    frame[:, 1::2] = (0, 255, 255)
    settings = stereo_output.encoder_settings(codec, 10, "fast", "anaglyph", frames=2)
    with VideoWriter(tmp_path / "a.mp4", 64, 64, 10, **settings) as writer:
        for _ in range(2):
            writer.write(frame)
    decoded = read_frames(tmp_path / "a.mp4")
    assert probe_video(tmp_path / "a.mp4").pix_fmt == "yuv444p"
    assert np.abs(decoded[0].astype(int) - frame).max() < 40


def test_hevc_clips_of_one_or_two_frames(tmp_path):
    # libx265 through FFmpeg gives the first packet of a 1-2 frame clip a garbage DTS about half the
    # time when B-frames are on; without them (what encoder_settings does for short clips) it never does.
    write_colour(tmp_path / "c.mkv", 64, 64, 2)
    write_depth(tmp_path / "d.mkv", 64, 64, 2)
    for frames in ("1", "2", "1", "2", "1", "2"):
        assert render(tmp_path, "--codec", "hevc", "--format", "half-sbs", "--max_frames", frames) == 0
        assert len(read_frames(tmp_path / "d.mkv_stereo.mp4")) == int(frames)
    assert "bframes=0" in stereo_output.encoder_settings("hevc", 18, "fast", "sbs", 3)["options"]["x265-params"]
    assert "bframes" not in stereo_output.encoder_settings("hevc", 18, "fast", "sbs", 4)["options"]["x265-params"]


def test_level_warning(clip, capsys, monkeypatch):
    assert level_warning(7680, 2160, "h264") is not None  # 4K side by side: 64800 macroblocks
    assert level_warning(4096, 2304, "h264") is None  # exactly 36864
    assert level_warning(3840, 2160, "h264") is None
    assert level_warning(7680, 2160, "hevc") is None
    monkeypatch.setattr(stereo_output, "H264_MAX_MACROBLOCKS", 5)  # the 64 x 24 test frame has 8
    assert render(clip) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "exceeds level 5.2" in line]
    assert len(lines) == 1 and "--codec hevc" in lines[0] and "half-sbs" in lines[0], err
    assert level_warning(64, 24, "hevc") is None


def test_missing_encoder_is_one_line(clip, capsys, monkeypatch):
    monkeypatch.setitem(stereo_output.CODECS, "hevc", "libnot_an_encoder")
    assert render(clip, "--codec", "hevc") == 2
    one_line_error(capsys, "--codec hevc", "libnot_an_encoder", "--codec h264", prog=PROG)
    no_leftovers(clip, {"c.mkv", "d.mkv"})


def test_hevc_refuses_tiny_frames(clip, capsys):
    assert render(clip, "--codec", "hevc", "--format", "half-sbs") == 2  # 32 x 24
    one_line_error(capsys, "--codec hevc", "32x24", "--codec h264", prog=PROG)
    no_leftovers(clip, {"c.mkv", "d.mkv"})


def test_bad_vr180_size_is_rejected(clip, capsys):
    with pytest.raises(SystemExit):
        render(clip, "--format", "vr180", "--vr180_size", "0")
    assert "--vr180_size" in capsys.readouterr().err


def test_decoders_read_the_metadata_written_by_the_cli_with_av(clip):
    # Plain PyAV on the CLI's MP4: the first frame carries the stereo side data twice, from the st3d
    # box and from the H.264 frame-packing SEI, both top-bottom.
    assert render(clip, "--format", "tb") == 0
    with av.open(str(clip / "d.mkv_stereo.mp4")) as container:
        frame = next(container.decode(video=0))
        kinds = [struct.unpack_from("<i", bytes(sd))[0] for sd in frame.side_data if sd.type.name == "STEREO3D"]
        assert kinds == [AV_STEREO3D_TOPBOTTOM] * 2

"""3d_view_depthfile.py / mvda.apps.view: frame source, geometry, --render, errors, and the real window.

The scene: a blue plane 3 m away with a red box face 1.5 m away that moves 2 px to the right every
frame (64x48 pixels, 6 frames, 60 degree horizontal FOV, lossless FFV1 colour). The viewer looks from
1 m above and 2 m behind the camera, so the plane and the box fill a large part of the image.

The window test starts its own Xvfb server, takes a screenshot of the real Open3D window with
ImageMagick's ``import`` and drives it with ``xdotool``. Set MVDA_WRITE_ARTIFACTS=1 to refresh
tests/artifacts/viewer_screenshot.png from it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from mvda.apps import view as depth_viewer
from mvda.errors import UserError
from mvda.io.pairing import check_pair, needs_resize
from mvda.io.video import VideoReader, probe_video
from mvda.ops import depth_mesh
from mvda.ops.geometry import intrinsics_from_fov
from tests.helpers import REPO, read_frames, write_depth_video, write_lossless_video

viewer_cli = importlib.import_module("3d_view_depthfile")

ARTIFACT = REPO / "tests" / "artifacts" / "viewer_screenshot.png"
W, H, N = 64, 48, 6
BLUE, RED = (0, 0, 255), (255, 0, 0)


def scene_frame(i: int, w: int = W, h: int = H) -> tuple[np.ndarray, np.ndarray]:
    """Depth (metres) and colour of frame ``i``: blue plane at 3 m, red box face (half the width and
    height of the image) at 1.5 m, 2 px further right in every frame."""
    depth = np.full((h, w), 3.0)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = BLUE
    x0 = w // 4 + 2 * i
    depth[h // 4: 3 * h // 4, x0: x0 + w // 2] = 1.5
    rgb[h // 4: 3 * h // 4, x0: x0 + w // 2] = RED
    return depth, rgb


def write_scene(folder: Path, n: int = N, w: int = W, h: int = H, color_size=None) -> tuple[Path, Path]:
    depth_path, color_path = folder / "scene_depth.mkv", folder / "scene.mkv"
    cw, ch = color_size or (w, h)
    depths, colours = zip(*(scene_frame(i, w, h) for i in range(n)))
    if (cw, ch) != (w, h):
        colours = [depth_viewer.resize_rgb(rgb, ch, cw) for rgb in colours]
    write_depth_video(depth_path, depths, fps=10, max_depth=6.0)
    write_lossless_video(color_path, colours, fps=10)
    return depth_path, color_path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    return write_scene(tmp_path_factory.mktemp("scene"))


def color_share(img: np.ndarray, color, tol: int = 40) -> float:
    """Fraction of pixels within ``tol`` (per channel) of ``color``."""
    return float(np.all(np.abs(img.astype(int) - np.array(color)) <= tol, axis=-1).mean())


def assert_scene_visible(img: np.ndarray, min_geometry: float, min_pure: float) -> None:
    """Many pixels show geometry (not the white background), and at least ``min_pure`` of those have
    the colour video's blue or red (H.264 4:2:0 at 64x48 blurs the colour edges, so renders get a lower
    ``min_pure`` than lossless screenshots)."""
    white = color_share(img, (255, 255, 255), tol=10)
    blue, red = color_share(img, BLUE), color_share(img, RED)
    assert 1.0 - white >= min_geometry, f"only {1 - white:.1%} of the image shows geometry"
    assert blue >= 0.5 * min_geometry and red >= 0.02, (blue, red)
    assert blue + red >= min_pure * (1.0 - white), ("geometry is not in the colours of the colour video",
                                                    blue, red, 1.0 - white)


# --------------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------------
def test_colour_size_rules(scene):
    """The viewer follows mvda.io.pairing: same size as is, same aspect ratio (within 1 %) resized."""
    info = probe_video(scene[0])

    def sized(width, height):
        return dataclasses.replace(info, width=width, height=height)

    check_pair(sized(64, 48), sized(64, 48))
    assert not needs_resize(sized(64, 48), sized(64, 48))
    for depth, colour in (((1280, 720), (1920, 1080)), ((1280, 720), (854, 480))):  # 854x480: 0.06 % off
        check_pair(sized(*depth), sized(*colour))
        assert needs_resize(sized(*depth), sized(*colour))
    with pytest.raises(UserError, match="aspect"):
        check_pair(sized(1280, 720), sized(640, 480))


def test_resize_rgb_keeps_flat_colours():
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = RED
    rgb[:, 32:] = BLUE
    small = depth_viewer.resize_rgb(rgb, 24, 32)
    assert small.shape == (24, 32, 3) and small.dtype == np.uint8
    assert np.abs(small[:, :15].astype(int) - RED).max() <= 2
    assert np.abs(small[:, 17:].astype(int) - BLUE).max() <= 2


def test_window_and_render_sizes():
    # (height, width) in, (height, width) out
    assert depth_viewer.window_size(720, 1280) == (720, 1280)
    assert depth_viewer.window_size(1080, 1920) == (720, 1280)
    assert depth_viewer.window_size(48, 64) == (480, 640)
    assert depth_viewer.window_size(1920, 1080) == (720, 405)  # portrait: limited by the height
    assert depth_viewer.render_size(49, 65) == (48, 64)


def test_display_problem_reads_the_environment(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert depth_viewer.display_problem({}) == depth_viewer.NO_DISPLAY_MESSAGE
    assert depth_viewer.display_problem({"DISPLAY": ""}) == depth_viewer.NO_DISPLAY_MESSAGE
    # set, but nothing answers there (Open3D would silently fall back to an invisible context)
    assert "cannot connect to display ':31999'" in depth_viewer.display_problem({"DISPLAY": ":31999"})
    assert "cannot connect" in depth_viewer.display_problem({"WAYLAND_DISPLAY": "no-such-socket",
                                                             "XDG_RUNTIME_DIR": "/nonexistent"})
    monkeypatch.setattr(sys, "platform", "darwin")
    assert depth_viewer.display_problem({}) is None


def test_default_pose_is_behind_and_above_looking_at_the_median_depth():
    depth = np.full((4, 4), 3.0, np.float32)
    depth[0, 0] = 0.0  # invalid pixels do not count
    pose = depth_viewer.resolve_pose(depth)
    np.testing.assert_allclose(pose.eye, [0.0, 1.0, 2.0])  # viewer frame: +z is behind the camera
    np.testing.assert_allclose(pose.target, [0.0, 0.0, -3.0])
    custom = depth_viewer.resolve_pose(depth, x=1.0, tz=5.0)
    np.testing.assert_allclose(custom.eye, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(custom.target, [0.0, 0.0, -5.0])
    with pytest.raises(UserError, match="camera pose"):
        depth_viewer.resolve_pose(depth, x=0.0, y=0.0, z=3.0)  # eye == target


# --------------------------------------------------------------------------------------------------
# frame source
# --------------------------------------------------------------------------------------------------
def test_frame_source_steps_back_through_its_buffer_and_reopens_beyond_it(scene):
    depth_path, color_path = scene
    with depth_viewer.FrameSource(depth_path, color_path, history_bytes=1) as source:
        assert source.history_len == 2 and source.max_depth == 6.0
        assert (source.height, source.width) == (H, W)
        frames = [source.get(i) for i in range(N)]
        for i, frame in enumerate(frames):
            depth, rgb = scene_frame(i)
            assert frame.index == i
            np.testing.assert_allclose(frame.depth, depth, atol=1e-3)  # packed step is 0.09 mm
            np.testing.assert_array_equal(frame.color, rgb)
        assert source.get(N - 2) is frames[N - 2]  # still buffered: same object, no decoding
        again = source.get(1)  # beyond the buffer: decoded again from the start
        assert again is not frames[1]
        np.testing.assert_array_equal(again.depth, frames[1].depth)
        np.testing.assert_array_equal(again.color, frames[1].color)
        assert source.get(N) is None and source.length == N and source.num_frames == N
        assert source.get(-1) is None
        assert source.get(N - 1).index == N - 1  # still usable after hitting the end


def test_frame_source_max_frames_and_no_colour(scene):
    with depth_viewer.FrameSource(scene[0], max_frames=3) as source:
        assert source.get(2).color is None
        assert source.get(3) is None and source.length == 3


def test_frame_source_resizes_same_aspect_colour(tmp_path):
    depth_path, color_path = write_scene(tmp_path, n=2, color_size=(128, 96))
    with depth_viewer.FrameSource(depth_path, color_path) as source:
        frame = source.get(0)
        assert frame.color.shape == (H, W, 3)
        assert color_share(frame.color, RED, tol=8) > 0.1 and color_share(frame.color, BLUE, tol=8) > 0.5


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------
def test_geometry_builder_mesh_point_cloud_and_depth_colours(scene):
    intr = intrinsics_from_fov(H, W, xfov=60.0)
    with depth_viewer.FrameSource(scene[0], scene[1]) as source:
        frame = source.get(0)
    full = depth_viewer.GeometryBuilder(intr, 6.0)
    mesh = full.update(frame)
    assert len(mesh.triangles) == 2 * (H - 1) * (W - 1) and len(mesh.vertices) == W * H
    np.testing.assert_allclose(np.asarray(mesh.vertices), depth_mesh.mesh_vertices(frame.depth, intr))
    np.testing.assert_allclose(np.asarray(mesh.vertex_colors)[0], [0, 0, 1])  # blue corner
    cut = depth_viewer.GeometryBuilder(intr, 6.0, remove_edges=True).update(frame)
    expected = int(depth_mesh.edge_triangle_mask(frame.depth).sum())
    assert len(cut.triangles) == expected < 2 * (H - 1) * (W - 1)
    # The box covers rows 12..35 and columns 16..47. Cells that mix box and plane pixels: rows 11..35 x
    # columns 15..47 minus the inner rows 12..34 x columns 16..46, i.e. 25 * 33 - 23 * 31 = 112 cells;
    # both their triangles go, except at the top-left and bottom-right corner cells, where the cell's
    # diagonal (b-d) keeps one triangle entirely on the plane.
    assert 2 * (H - 1) * (W - 1) - expected == 2 * 112 - 2
    pcd = depth_viewer.GeometryBuilder(intr, 6.0, point_cloud=True).update(
        depth_viewer.Frame(0, frame.depth, None))
    assert len(pcd.points) == W * H
    colors = np.asarray(pcd.colors)
    np.testing.assert_allclose(colors, depth_mesh.depth_colors(frame.depth, 6.0))


def test_geometry_builder_point_cloud_skips_invalid_pixels_and_follows_the_count():
    intr = intrinsics_from_fov(H, W, xfov=60.0)
    builder = depth_viewer.GeometryBuilder(intr, 6.0, point_cloud=True)
    depth, rgb = scene_frame(0)
    depth = depth.astype(np.float32)
    holes = depth.copy()
    holes[:5, :] = 0.0  # 5 rows without depth
    expected = depth_mesh.mesh_vertices(depth, intr)
    for d, n in ((depth, W * H), (holes, W * (H - 5)), (depth, W * H)):
        pcd = builder.update(depth_viewer.Frame(0, d, rgb))
        assert len(pcd.points) == len(pcd.colors) == n == builder.visible_count
        np.testing.assert_allclose(np.asarray(pcd.points), expected[W * H - n:])
        np.testing.assert_allclose(np.asarray(pcd.colors), rgb.reshape(-1, 3)[W * H - n:] / 255.0)


# --------------------------------------------------------------------------------------------------
# command line: errors
# --------------------------------------------------------------------------------------------------
def run_main(argv, capsys) -> tuple[int, str]:
    code = viewer_cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_missing_files_are_one_line_errors(tmp_path, scene, capsys):
    code, err = run_main(["--video", tmp_path / "nope_depth.mkv", "--xfov", 48, "--render",
                          tmp_path / "o.mp4"], capsys)
    assert code == 2 and "nope_depth.mkv: no such file" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    code, err = run_main(["--depth_video", scene[0], "--color_video", tmp_path / "nope.mkv", "--xfov", 48,
                          "--render", tmp_path / "o.mp4"], capsys)
    assert code == 2 and "nope.mkv: no such file" in err and err.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists()


def test_no_display_is_a_one_line_error(scene, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    code, err = run_main(["--video", scene[0], "--color_video", scene[1], "--xfov", 48], capsys)
    assert code == 2
    assert err == "3d_view_depthfile.py: error: no display: use --render out.mp4 or run under xvfb-run\n"
    monkeypatch.setenv("DISPLAY", ":31999")
    code, err = run_main(["--video", scene[0], "--xfov", 48], capsys)
    assert code == 2 and err.startswith("3d_view_depthfile.py: error: cannot connect to display ':31999'")
    assert err.count("\n") == 1


def test_fov_required_and_bad_flags(scene, tmp_path, capsys):
    code, err = run_main(["--video", scene[0], "--render", tmp_path / "o.mp4"], capsys)
    assert code == 2 and "--xfov or --yfov" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse checks the shared --xfov type
        run_main(["--video", scene[0], "--xfov", 200, "--render", tmp_path / "o.mp4"], capsys)
    assert exit_info.value.code == 2 and "between 0 and 180" in capsys.readouterr().err
    code, err = run_main(["--video", scene[0], "--xfov", 48, "--render", tmp_path / "o.gif"], capsys)
    assert code == 2 and ".mp4" in err
    code, err = run_main(["--video", scene[0], "--xfov", 48, "--edge_threshold", 0.1, "--render",
                          tmp_path / "o.mp4"], capsys)
    assert code == 2 and "--remove_edges" in err
    code, err = run_main(["--video", scene[0], "--xfov", 48, "--draw_frame", 99, "--render",
                          tmp_path / "o.mp4"], capsys)
    assert code == 2 and "past the end" in err
    assert not any(tmp_path.iterdir())


def test_colour_video_of_another_aspect_ratio_is_an_error(tmp_path, capsys):
    depth_path, color_path = write_scene(tmp_path, n=2, color_size=(64, 64))
    code, err = run_main(["--video", depth_path, "--color_video", color_path, "--xfov", 48,
                          "--render", tmp_path / "o.mp4"], capsys)
    assert code == 2 and "aspect" in err and err.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists()


def test_colour_video_passed_as_depth_is_an_error(scene, tmp_path, capsys):
    code, err = run_main(["--video", scene[1], "--xfov", 48, "--render", tmp_path / "o.mp4"], capsys)
    assert code == 2 and "does not look like an RGB-packed depth video" in err


# --------------------------------------------------------------------------------------------------
# command line: --render
# --------------------------------------------------------------------------------------------------
ORIGINAL_CAMERA = ["--x", 0, "--y", 0, "--z", 0, "--tx", 0, "--ty", 0, "--tz", 3]


def color_share_mask(img: np.ndarray, color, tol: int = 40) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(color)) <= tol, axis=-1)


def assert_reproduces_colour_video(frames: list[np.ndarray], min_match: float = 0.8) -> None:
    """Seen from the original camera with its own FOV, each rendered frame is the colour frame again,
    except along the box outline and the image border (half a pixel of background) and where H.264
    4:2:0 blurs colour edges: 85.7 % of the pixels match at 64x48 with either backend."""
    for i, frame in enumerate(frames):
        match = np.abs(frame.astype(int) - scene_frame(i)[1]).max(axis=-1) <= 60
        assert match.mean() >= min_match, (i, match.mean())


def test_render_writes_every_frame_showing_the_scene(scene, tmp_path, capsys):
    out = tmp_path / "render.mp4"
    code, err = run_main(["--video", scene[0], "--color_video", scene[1], "--xfov", 60, "--remove_edges",
                          "--render", out, "--render_backend", "legacy"], capsys)
    assert code == 0, err
    frames = read_frames(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    for frame in frames:
        assert_scene_visible(frame, min_geometry=0.25, min_pure=0.6)
    # the box moves right: the red pixels' mean column grows from the first to the last frame
    cols = [np.nonzero(color_share_mask(f, RED))[1].mean() for f in frames]
    assert cols[-1] > cols[0] + 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_render_from_the_original_camera_reproduces_the_colour_video(scene, tmp_path, capsys):
    out = tmp_path / "original_view.mkv"
    code, err = run_main(["--video", scene[0], "--color_video", scene[1], "--xfov", 60, "--remove_edges",
                          *ORIGINAL_CAMERA, "--render", out, "--render_backend", "legacy"], capsys)
    assert code == 0, err
    frames = read_frames(out)
    assert len(frames) == N
    assert_reproduces_colour_video(frames)


def test_render_bundled_sample_clip_with_a_synthetic_depth(tmp_path, capsys):
    """The 640x360 Big Buck Bunny clip with a 320x180 ground-like depth (1.5 m at the bottom row to
    7.5 m at the top): the colour is resized to the depth (same aspect ratio, with a warning), all
    75 frames are rendered at 320x180, and seen from the original camera each frame is the clip's
    frame again (mean absolute difference 3.5-4.2 levels measured; a blank or wrong frame is ~50+)."""
    clip = REPO / "assets" / "big_buck_bunny_3s.mp4"
    assert clip.exists(), "the sample clip assets/big_buck_bunny_3s.mp4 is missing"
    w, h = 320, 180
    depth_path = tmp_path / "bunny_depth.mkv"
    rows = np.arange(h, dtype=np.float64)[:, None].repeat(w, axis=1)
    write_depth_video(depth_path, [1.5 + 6.0 * (1.0 - rows / (h - 1))] * 75, fps=25, max_depth=10.0)
    out = tmp_path / "bunny_render.mp4"
    code, err = run_main(["--video", depth_path, "--color_video", clip, "--xfov", 60, *ORIGINAL_CAMERA,
                          "--render", out], capsys)
    assert code == 0, err
    assert "resizing the colour frames" in err
    frames = read_frames(out)
    assert len(frames) == 75 and frames[0].shape == (h, w, 3)
    with VideoReader(clip) as reader:
        for frame, colour in zip(frames, reader):
            expected = depth_viewer.resize_rgb(colour, h, w).astype(int)
            assert np.abs(frame.astype(int) - expected).mean() < 8.0
            assert frame.std() > 30.0  # not blank


def test_render_point_cloud_coloured_by_depth_from_a_chosen_pose(scene, tmp_path, capsys):
    out = tmp_path / "points.mp4"
    code, err = run_main(["--video", scene[0], "--xfov", 60, "--point_cloud", "--point_size", 6,
                          *ORIGINAL_CAMERA,
                          "--max_frames", 2, "--render", out], capsys)
    assert code == 0, err
    frames = read_frames(out)
    assert len(frames) == 2
    # From the original camera's own position with its FOV the points cover almost all of the image,
    # coloured by depth: the plane at 3 m is the colour map's middle (green), the box (1.5 m) orange.
    far = depth_mesh.depth_colors(np.array([[3.0]]), 6.0)[0] * 255
    near = depth_mesh.depth_colors(np.array([[1.5]]), 6.0)[0] * 255
    img = frames[0]
    assert color_share(img, far) > 0.5 and color_share(img, near) > 0.1


def test_render_draw_frame_starts_later(scene, tmp_path, capsys):
    out = tmp_path / "later.mp4"
    code, err = run_main(["--video", scene[0], "--color_video", scene[1], "--xfov", 60,
                          "--draw_frame", 2, "--max_frames", 5, "--render", out], capsys)
    assert code == 0, err
    assert len(read_frames(out)) == 3


def test_render_stops_where_a_shorter_colour_video_ends(tmp_path, capsys):
    depth_path, _ = write_scene(tmp_path, n=N)
    short_dir = tmp_path / "short"
    short_dir.mkdir()
    _, short_color = write_scene(short_dir, n=3)
    out = tmp_path / "short.mp4"
    code, err = run_main(["--video", depth_path, "--color_video", short_color, "--xfov", 60, "--render",
                          out], capsys)
    assert code == 0, err
    assert "the colour video scene.mkv ended after 3 frames, before the depth video" in err  # pairing's words
    assert len(read_frames(out)) == 3


def test_render_interrupted_leaves_no_file(scene, tmp_path, capsys, monkeypatch):
    calls = []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((H, W, 3), np.uint8)

    monkeypatch.setattr(depth_viewer.LegacyRenderer, "render", interrupt)
    out = tmp_path / "cut.mp4"
    code, err = run_main(["--video", scene[0], "--xfov", 60, "--render", out,
                          "--render_backend", "legacy"], capsys)
    assert code == 130 and not out.exists()
    assert not [p for p in tmp_path.iterdir()]


def test_render_terminated_by_sigterm_leaves_nothing(scene, tmp_path, capsys, monkeypatch):
    """SIGTERM during the frame loop (here: while frame 2 renders): exit 143, no "wrote" line, no file
    and no temporary file."""
    calls = []

    def terminate(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return np.zeros((H, W, 3), np.uint8)

    monkeypatch.setattr(depth_viewer.LegacyRenderer, "render", terminate)
    out = tmp_path / "cut.mp4"
    code = viewer_cli.main([str(a) for a in ["--video", scene[0], "--xfov", 60, "--render", out,
                                             "--render_backend", "legacy", "--no_progress"]])
    captured = capsys.readouterr()
    assert code == 143 and len(calls) == 2
    assert captured.out == ""
    assert captured.err == "3d_view_depthfile.py: terminated by SIGTERM; no output was finalised\n"
    assert not out.exists() and not list(tmp_path.iterdir())


def test_render_reports_what_it_wrote(scene, tmp_path, capsys):
    out = tmp_path / "two.mp4"
    code = viewer_cli.main([str(a) for a in ["--video", scene[0], "--xfov", 60, "--max_frames", 2,
                                             "--no_progress", "--render", out]])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""  # --no_progress: no bar
    assert captured.out.startswith(f"3d_view_depthfile.py: wrote 2 frames ({W}x{H}) in ")
    assert captured.out.rstrip().endswith(f"fps) to {out}") and captured.out.count("\n") == 1


def test_private_runtime_dir_only_when_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with depth_viewer.private_runtime_dir():
        folder = Path(os.environ["XDG_RUNTIME_DIR"])
        assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    assert "XDG_RUNTIME_DIR" not in os.environ and not folder.exists()
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/not/valid")
    with depth_viewer.private_runtime_dir():
        assert os.environ["XDG_RUNTIME_DIR"].startswith("/")
    assert os.environ["XDG_RUNTIME_DIR"] == "relative/not/valid"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with depth_viewer.private_runtime_dir():
        assert os.environ["XDG_RUNTIME_DIR"] == str(tmp_path)


def test_render_with_filament_offscreen_renderer_in_a_subprocess(scene, tmp_path):
    # Filament's OffscreenRenderer aborts the process without a Vulkan/GL driver, so it runs in a child.
    assert depth_viewer.probe_offscreen_renderer(), "Open3D's OffscreenRenderer does not work here"
    out = tmp_path / "filament.mp4"
    proc = subprocess.run(
        [sys.executable, str(REPO / "3d_view_depthfile.py"), "--video", str(scene[0]), "--color_video",
         str(scene[1]), "--xfov", "60", "--remove_edges", "--max_frames", "2", "--render", str(out),
         "--render_backend", "filament", *map(str, ORIGINAL_CAMERA)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_env_without_display(),
    )
    assert proc.returncode == 0, proc.stderr
    frames = read_frames(out)
    assert len(frames) == 2 and frames[0].shape == (H, W, 3)
    assert_reproduces_colour_video(frames)


def _env_without_display() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return env


# --------------------------------------------------------------------------------------------------
# the real window under Xvfb
# --------------------------------------------------------------------------------------------------
def _start_xvfb() -> tuple[subprocess.Popen, str]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    return proc, f":{number}"


def _xdotool(env, *args: str, timeout: float = 30) -> str:
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def _screenshot(env, window: str, path: Path) -> np.ndarray:
    geo = dict(line.split("=", 1) for line in _xdotool(env, "getwindowgeometry", "--shell", window).split())
    x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    subprocess.run(["import", "-window", "root", "-crop", f"{w}x{h}+{x}+{y}", "+repage", str(path)],
                   env=env, check=True, timeout=30)
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _settled_screenshot(env, window: str, path: Path, timeout: float = 30.0) -> np.ndarray:
    """A screenshot of a picture that has stopped changing: screenshots are taken until two in a row
    are identical (the window may still be drawing what its status line already announced)."""
    deadline = time.monotonic() + timeout
    previous = _screenshot(env, window, path)
    while True:
        time.sleep(0.1)
        current = _screenshot(env, window, path)
        if np.array_equal(current, previous):
            return current
        assert time.monotonic() < deadline, f"the window kept changing for {timeout:.0f} s"
        previous = current


def test_viewer_window_under_xvfb_shows_the_scene_and_obeys_keys(scene, tmp_path):
    for tool in ("Xvfb", "xdotool", "import"):
        assert shutil.which(tool), f"{tool} is needed (apt-get install xvfb xdotool imagemagick)"
    xvfb, display = _start_xvfb()
    env = dict(_env_without_display(), DISPLAY=display)
    stderr_path = tmp_path / "viewer.err"
    viewer = None
    try:
        with open(stderr_path, "w") as stderr:
            viewer = subprocess.Popen(
                [sys.executable, str(REPO / "3d_view_depthfile.py"), "--video", str(scene[0]),
                 "--color_video", str(scene[1]), "--xfov", "60", "--remove_edges", "--draw_frame", "2"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            )
            # --onlyvisible: wait until the window is mapped (focusing an unmapped window is an X error)
            window = _xdotool(env, "search", "--sync", "--onlyvisible", "--name",
                              "scene_depth.mkv - depth viewer", timeout=120).split()[0]
            _xdotool(env, "windowfocus", "--sync", window)

            def wait_for(what: str, status_ok=lambda s: True, picture_ok=None, timeout: float = 60.0):
                """Poll until the viewer's status line passes ``status_ok`` and then (with ``picture_ok``)
                until a settled screenshot, taken after that status line, passes ``picture_ok``.
                Returns that screenshot (None without ``picture_ok``)."""
                deadline = time.monotonic() + timeout
                while True:
                    status = stderr_path.read_text()  # read before the screenshot: the picture is newer
                    if status_ok(status):
                        if picture_ok is None:
                            return None
                        img = _settled_screenshot(env, window, tmp_path / "shot.png")
                        if picture_ok(img):
                            return img
                    assert viewer.poll() is None, f"viewer exited: {status}"
                    assert time.monotonic() < deadline, f"timed out waiting for {what}: {status[-300:]}"
                    time.sleep(0.3)

            first = wait_for("frame 2", lambda s: "frame 2/" in s, lambda img: color_share(img, RED) > 0.01)
            assert first.shape == (480, 640, 3)  # 64x48 video -> 640x480 window
            assert_scene_visible(first, min_geometry=0.25, min_pure=0.95)
            if os.environ.get("MVDA_WRITE_ARTIFACTS") == "1":
                ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp_path / "shot.png", ARTIFACT)

            _xdotool(env, "key", "Right")
            stepped = wait_for("frame 3", lambda s: "frame 3/" in s,
                               lambda img: not np.array_equal(img, first))
            assert_scene_visible(stepped, min_geometry=0.25, min_pure=0.95)
            _xdotool(env, "key", "Left")
            back = wait_for("back to frame 2",
                            lambda s: s.rstrip().endswith("paused  [space play/pause, left/right step, "
                                                          "r reset view, q quit]")
                            and "frame 2/" in s.rsplit("frame 3/", 1)[-1],
                            lambda img: True)
            np.testing.assert_array_equal(back, first)  # same frame, same view: same picture
            # orbit with the mouse (Open3D's left-drag rotation), then "r" puts the camera back
            _xdotool(env, "mousemove", "--window", window, "320", "240", "mousedown", "1",
                     "mousemove", "--window", window, "360", "250", "mousemove", "--window", window,
                     "400", "260", "mouseup", "1")
            wait_for("the mouse orbit", picture_ok=lambda img: not np.array_equal(img, first))
            _xdotool(env, "key", "r")
            wait_for("the view reset", picture_ok=lambda img: np.array_equal(img, first))
            _xdotool(env, "key", "space")
            wait_for("playing", lambda s: "playing" in s.rsplit("frame 2/", 1)[-1])
            _xdotool(env, "key", "q")
            assert viewer.wait(timeout=60) == 0
    finally:
        if viewer is not None and viewer.poll() is None:
            viewer.kill()
            viewer.wait()
        xvfb.terminate()
        xvfb.wait(timeout=30)

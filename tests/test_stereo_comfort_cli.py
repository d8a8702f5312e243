"""stero_rerender.py's comfort flags end to end (lossless FFV1, exact comparisons with the library):
--convergence, --max_disparity, --edge_sharpen, --edge_dilation, --fill, --edge_zoom, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stero_rerender
from mvda.ops.stereo_comfort import crop_zoom, edge_strip_width, zoom_margin
from tests.helpers import read_depth_frames, read_frames
from tests.test_stero_rerender import expected_views, no_leftovers, write_colour, write_depth

H, W = 24, 48


def render_cli(tmp_path, *extra: str) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(colour frames, depth frames, stereo frames, mask frames) of a 3-frame lossless sbs run."""
    colour = write_colour(tmp_path / "c.mkv", H, W, 3)
    write_depth(tmp_path / "d.mkv", H, W, 3)
    depth = read_depth_frames(tmp_path / "d.mkv")
    assert stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "70", "--pupillary_distance", "200", "--lossless", "--infill_mask",
                                "--no_progress", *extra]) == 0
    frames = read_frames(tmp_path / "d.mkv_stereo.mkv")
    masks = read_frames(tmp_path / "d.mkv_stereo_mask.mkv", pix_fmt="gray")
    return colour, depth, frames, masks


def test_comfort_flags_render_what_the_library_renders(tmp_path):
    colour, depth, frames, masks = render_cli(tmp_path, "--convergence", "2", "--max_disparity", "3",
                                              "--edge_sharpen", "1", "--edge_dilation", "3", "--fill", "row")
    for i in range(3):
        views = expected_views(colour[i], depth[i], 70.0, ipd_mm=200.0, convergence_m=2.0,
                               max_parallax_px=0.03 * W, edge_sharpen=1, edge_dilation=3, fill="row")
        np.testing.assert_array_equal(frames[i], np.concatenate([views.left, views.right], axis=1))
        filled = np.concatenate([views.left_filled, views.right_filled], axis=1)
        np.testing.assert_array_equal(masks[i], filled.astype(np.uint8) * 255)
    # The convergence really moved the wall (4 m) behind the screen: the default output differs.
    defaults = expected_views(colour[0], depth[0], 70.0, ipd_mm=200.0)
    assert not np.array_equal(frames[0][:, :W], defaults.left)


def test_edge_zoom_percent_crops_both_eyes_alike(tmp_path):
    colour, depth, frames, masks = render_cli(tmp_path, "--edge_zoom", "10")
    margin = round(0.10 * W)
    for i in range(3):
        views = expected_views(colour[i], depth[i], 70.0, ipd_mm=200.0)
        left = crop_zoom(torch.from_numpy(views.left), margin).numpy()
        right = crop_zoom(torch.from_numpy(views.right), margin).numpy()
        np.testing.assert_array_equal(frames[i], np.concatenate([left, right], axis=1))


def test_edge_zoom_auto_hides_the_first_frames_edge_strips(tmp_path):
    # A wide baseline (1 m: the wall at 4 m moves 4.3 px per eye) for strips worth hiding.
    colour, depth, frames, masks = render_cli(tmp_path, "--edge_zoom", "--pupillary_distance", "1000")
    views = expected_views(colour[0], depth[0], 70.0, ipd_mm=1000.0)
    strip = edge_strip_width(torch.from_numpy(np.stack([views.left_filled, views.right_filled])))
    assert strip >= 2                                    # there is something to hide
    margin = zoom_margin(strip, W)
    left = crop_zoom(torch.from_numpy(views.left), margin).numpy()
    np.testing.assert_array_equal(frames[0][:, :W], left)
    # No filled pixel touches the left or right edge of either eye any more.
    mask = masks[0] > 0
    for eye in (mask[:, :W], mask[:, W:]):
        assert not eye[:, 0].any() and not eye[:, -1].any()


def test_crop_zoom_and_strip_width_by_hand():
    filled = torch.zeros(2, 3, 10, dtype=torch.bool)
    filled[0, 1, :3] = True                              # a 3-px strip at the left edge of row 1
    filled[1, 2, -4:] = True                             # a 4-px strip at the right edge of row 2
    filled[0, 0, 4:8] = True                             # an inner hole: not a frame-edge strip
    assert edge_strip_width(filled) == 4
    assert zoom_margin(4, 100) == 5 and zoom_margin(0, 100) == 0 and zoom_margin(80, 100) == 25
    img = torch.arange(40, dtype=torch.float32).view(4, 10, 1)
    out = crop_zoom(img, 1)                              # crops 1 column each side and round(0.4) = 0 rows
    assert out.shape == img.shape
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [1, 11, 21, 31])        # first kept column
    np.testing.assert_allclose(out[:, -1, 0].numpy(), [8, 18, 28, 38])       # last kept column
    np.testing.assert_array_equal(crop_zoom(img, 0).numpy(), img.numpy())
    with pytest.raises(ValueError):
        crop_zoom(img, 5)


@pytest.mark.parametrize("extra, message", [
    (["--max_disparity", "0"], "argument --max_disparity: must be a finite number > 0, got 0"),
    (["--max_disparity", "80"], "argument --max_disparity: must be a percentage of the width, more than 0 and at "
                                "most 50, got 80"),
    (["--convergence", "-1"], "argument --convergence: must be a finite number > 0, got -1"),
    (["--edge_dilation", "-1"], "argument --edge_dilation: must be >= 0, got -1"),
    (["--edge_zoom", "30"], "argument --edge_zoom: must be a percentage per side, more than 0 and at most 20, got 30"),
    (["--fill", "blur"], "argument --fill: invalid choice: 'blur'"),   # the list's quoting varies with Python
])
def test_bad_comfort_flags(tmp_path, capsys, extra, message):
    write_colour(tmp_path / "c.mkv", 8, 8, 1)
    write_depth(tmp_path / "d.mkv", 8, 8, 1)
    with pytest.raises(SystemExit) as exit_info:
        stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                             "--xfov", "60", *extra, "--no_progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"stero_rerender.py: error: {message}")
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})


def test_convergence_too_close_is_refused(tmp_path, capsys):
    # 1 mm: every point is far behind the screen by most of the frame; refused before writing anything.
    write_colour(tmp_path / "c.mkv", 8, 16, 1)
    write_depth(tmp_path / "d.mkv", 8, 16, 1)
    code = stero_rerender.main(["--video", str(tmp_path / "d.mkv"), "--color_video", str(tmp_path / "c.mkv"),
                                "--xfov", "60", "--convergence", "0.001", "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--convergence 0.001 m" in err and "convergence distance" in err
    no_leftovers(tmp_path, {"c.mkv", "d.mkv"})

"""python -m mvda.fov: MoGe-2's field of view of a video or an image, from the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvda import fov
from tests.helpers import REPO, one_line_error
from tests.test_moge2 import TOY, entries, manifests
from tests.procedural import procedural_state_dict

SAMPLE = REPO / "assets" / "big_buck_bunny_3s.mp4"


def test_fov_from_normalised_intrinsics():
    # f = 0.5 image widths -> 2 atan(1) = 90 degrees; f = 1 -> 2 atan(0.5) = 53.13 degrees.
    k = np.array([[0.5, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]])
    x, y = fov.fov_from_intrinsics(k)
    assert x == pytest.approx(90.0) and y == pytest.approx(math.degrees(2 * math.atan(0.5)))
    with pytest.raises(ValueError):
        fov.fov_from_intrinsics(np.zeros((3, 3)))


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """A released-style MoGe-2 file ({'model_config', 'model'}) with the toy configuration's pf-v1 weights."""
    path = tmp_path_factory.mktemp("moge") / "model.pt"
    torch.save({"model_config": manifests()[TOY]["config"], "model": procedural_state_dict(entries(TOY))}, path)
    return path


def test_video_fov_printed_as_the_median_of_spread_frames(toy_checkpoint, capsys):
    assert fov.main([str(SAMPLE), "--frames", "3", "--fov_checkpoint", str(toy_checkpoint), "--num_tokens", "100",
                     "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("xfov ") and "median of 3 frame(s)" in out and "--xfov" in out
    xfov, yfov = float(out.split()[1]), float(out.split()[3])
    assert 0 < xfov < 180 and 0 < yfov < 180


def test_missing_file_and_missing_checkpoint_are_one_line(tmp_path, capsys, monkeypatch):
    assert fov.main([str(tmp_path / "nope.mp4"), "--fov_checkpoint", str(tmp_path / "m.pt")]) == 2
    one_line_error(capsys, "no such file", alone=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fov.main([str(SAMPLE), "--fov_checkpoint", str(tmp_path / "missing.pt"), "--frames", "1"]) == 2
    assert "missing.pt" in one_line_error(capsys, alone=True)


def test_shot_keyframes_share_the_budget_by_shot_length():
    # 22 + 26 frames, 4 keyframes: one each, the spare 2 shared 0.92 / 1.08 -> floors 0 / 1, the last one to
    # the larger remainder (the first shot): 2 + 2, each keyframe_indices of its own shot.
    assert fov.shot_keyframes([22], 48, 4) == [5, 16, 22 + 6, 22 + 19]
    # 2 + 10 frames, 10 keyframes: spare 8 shared 1.33 / 6.67 -> 1 / 6, the last to the second shot: 2 + 8.
    assert fov.shot_keyframes([2], 12, 10) == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    # Shots of 10, 10, 40 and 40 frames, 6 keyframes: spare 2 -> 0.2, 0.2, 0.8, 0.8: the two 40-frame shots.
    assert fov.shot_keyframes([10, 20, 60], 100, 6) == [5, 15, 30, 50, 70, 90]


def test_shot_keyframes_more_shots_than_budget_takes_the_longest_middles():
    assert fov.shot_keyframes([10, 20, 60], 100, 2) == [40, 80]
    assert fov.shot_keyframes([10, 20, 60], 100, 3) == [5, 40, 80]  # 10 and 10 frames: the earlier one
    assert fov.shot_keyframes([2, 4, 6], 8, 2) == [1, 3]


def test_shot_keyframes_edge_cases():
    for frames, count in [(100, 4), (50, 2), (3, 5), (1, 1), (7, 16)]:
        assert fov.shot_keyframes([], frames, count) == fov.keyframe_indices(frames, count)
    # Cuts at 0, repeated, at or past the end are ignored.
    assert fov.shot_keyframes([0, 50, 50, 100, 120], 100, 1) == [25]
    assert fov.shot_keyframes([0, 50, 50, 100, 120], 100, 2) == [25, 75]
    assert fov.shot_keyframes([5], 0, 4) == [] and fov.shot_keyframes([5], 10, 0) == []


def test_shot_keyframe_count_one_per_shot_within_the_cost_bound():
    assert fov.shot_keyframe_count(100, 1) == 5 == fov.keyframe_count(100)  # fewer shots: as without cuts
    assert fov.shot_keyframe_count(100, 9) == 9  # one per shot
    assert fov.shot_keyframe_count(100, 40) == 12  # one per 8 frames at most: 100 // 8
    assert fov.shot_keyframe_count(10_000, 40) == 16  # MAX_KEYFRAMES
    assert fov.shot_keyframe_count(5, 2) == 1  # a 5-frame clip keeps its one keyframe

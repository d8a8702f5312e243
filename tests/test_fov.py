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

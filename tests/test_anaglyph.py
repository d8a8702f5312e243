"""Anaglyph methods: hand-computed matrix rows on pure colours."""

from __future__ import annotations

import pytest
import torch

from mvda.ops.anaglyph import ANAGLYPH_METHODS, anaglyph


def solid(rgb, h=2, w=3) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).expand(h, w, 3).clone()


def test_dubois_pure_red_pair_gives_the_first_matrix_columns():
    # left = right = (255, 0, 0): out = first column of L + first column of R
    # R = 0.456 - 0.043 = 0.413, G = -0.040 + 0.378 = 0.338, B = -0.015 - 0.072 = -0.087 -> 0
    out = anaglyph(solid((255, 0, 0)), solid((255, 0, 0)), "dubois")
    assert out[0, 0].tolist() == [round(0.413 * 255), round(0.338 * 255), 0]  # [105, 86, 0]
    assert out.shape == (2, 3, 3) and out.dtype == torch.uint8


def test_dubois_white_right_eye_only():
    # left black, right white: column sums of R: R = -0.133 -> 0, G = 1.094 -> 1, B = 1.041 -> 1
    out = anaglyph(solid((0, 0, 0)), solid((255, 255, 255)), "dubois")
    assert out[1, 2].tolist() == [0, 255, 255]
    # left white, right black: L sums: R = 1.132 -> 1, G = -0.094 -> 0, B = -0.041 -> 0
    out = anaglyph(solid((255, 255, 255)), solid((0, 0, 0)), "dubois")
    assert out[0, 0].tolist() == [255, 0, 0]


def test_simple_methods():
    left, right = solid((200, 100, 50)), solid((10, 20, 30))
    assert anaglyph(left, right, "color")[0, 0].tolist() == [200, 20, 30]
    luma_l = 0.299 * 200 + 0.587 * 100 + 0.114 * 50  # 124.2
    luma_r = 0.299 * 10 + 0.587 * 20 + 0.114 * 30  # 18.15
    assert anaglyph(left, right, "half-color")[0, 0].tolist() == [round(luma_l), 20, 30]
    assert anaglyph(left, right, "gray")[0, 0].tolist() == [round(luma_l), round(luma_r), round(luma_r)]


def test_float_images_and_errors():
    left = torch.tensor([[[1.0, 0.0, 0.0]]])
    out = anaglyph(left, left, "dubois")
    assert out.dtype == torch.float32
    assert out[0, 0].tolist() == pytest.approx([0.413, 0.338, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="choose one of"):
        anaglyph(left, left, "purple")
    with pytest.raises(ValueError, match="colour"):
        anaglyph(torch.zeros(2, 2, 1), torch.zeros(2, 2, 1))
    assert set(ANAGLYPH_METHODS) == {"dubois", "color", "half-color", "gray"}

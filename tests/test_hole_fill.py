"""The coarse background colour field of the smooth hole fill (mvda/ops/hole_fill.py)."""

from __future__ import annotations

import numpy as np
import torch

from mvda.ops.hole_fill import background_field, background_sums, sample_field


def test_uniform_image_gives_its_colour_everywhere():
    colour = torch.tensor([10.0, 120.0, 250.0])[:, None, None].expand(3, 20, 31).contiguous()
    disparity = torch.linspace(0.0, 3.0, 31).expand(20, 31).contiguous()     # a gentle slant
    sums = background_sums(colour, disparity, 6, 3, 4.0, (2, 3))
    assert sums.shape == (5, 4, 6)                                           # ceil(20 / 6), ceil(31 / 6)
    field = background_field(sums, 0.75, 4.0, 1)
    np.testing.assert_allclose(field.numpy(), colour[:, :4, :6].numpy(), rtol=1e-5)


def test_counts_and_sums_by_hand():
    # 4 x 4 image, one block of 4 sampled every 2nd pixel: samples (0, 0), (0, 2), (2, 0), (2, 2).
    # Disparities 1, 9, 2, 3 at those: the farthest is 1; tolerance 2 keeps 1, 2 and 3 (not 9).
    colour = torch.zeros(1, 4, 4)
    colour[0, 0, 0], colour[0, 0, 2], colour[0, 2, 0], colour[0, 2, 2] = 10.0, 200.0, 20.0, 30.0
    disparity = torch.zeros(4, 4)
    disparity[0, 0], disparity[0, 2], disparity[2, 0], disparity[2, 2] = 1.0, 9.0, 2.0, 3.0
    sums = background_sums(colour, disparity, 4, 1, 2.0, 2)
    np.testing.assert_allclose(sums[:, 0, 0].numpy(), [60.0, 3.0, 1.0])      # colour sum, count, far


def test_foreground_colour_does_not_reach_the_background_next_to_it():
    # A grey wall (d = 2) with a wide red box (d = 12) in columns 36-89: blocks of the wall and the
    # blocks of the box near its edges give the wall's colour; the box's colour stays inside it.
    h, w = 36, 120
    colour = torch.zeros(3, h, w)
    colour[:] = 100.0
    colour[0, :, 36:90], colour[1:, :, 36:90] = 250.0, 0.0
    disparity = torch.full((h, w), 2.0)
    disparity[:, 36:90] = 12.0
    field = background_field(background_sums(colour, disparity, 6, 3, 4.0, (2, 3)), 0.75, 4.0, 1)
    wall_and_edges = torch.zeros(field.shape[2], dtype=torch.bool)
    wall_and_edges[:7] = True                  # blocks 0-5: wall; 6: the box's first block
    wall_and_edges[14:] = True                 # 14: the box's last block; 15-19: wall
    near = field[:, :, wall_and_edges]
    assert not torch.isnan(near).any()
    np.testing.assert_allclose(near.numpy(), 100.0, atol=1e-3)


def test_no_background_gives_nan():
    # No background sample anywhere (counts of zero): NaN, which the fill skips (keeps its own value).
    sums = torch.zeros(5, 3, 3)
    field = background_field(sums, 0.75, 4.0, 1)
    assert torch.isnan(field).all()


def test_sample_field_bilinear_and_clamped():
    field = torch.tensor([[[0.0, 40.0], [80.0, 120.0]]])                    # 1 channel, 2 x 2 blocks of 4 px
    # Block centres are at pixels 1.5 and 5.5; halfway between them (3.5) is the mean.
    rows = torch.tensor([1.5, 1.5, 3.5, 5.5, -10.0, 100.0])
    cols = torch.tensor([1.5, 3.5, 3.5, 5.5, -10.0, 100.0])
    out = sample_field(field, rows, cols, 4)
    assert out.shape == (6, 1)
    np.testing.assert_allclose(out[:, 0].numpy(), [0.0, 20.0, 60.0, 120.0, 0.0, 120.0], atol=1e-4)

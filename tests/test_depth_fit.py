"""depth_fit: the rolling fit (hand-computed), the clamping and the robust global fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvda.ops.depth_fit import (
    AffineFit,
    FitEntry,
    MapStats,
    RollingFit,
    RollingParams,
    apply_affine,
    apply_rolling,
    fit_entry,
    inverse_depth_stats,
    inverse_to_depth,
    map_stats,
    relative_stats,
    robust_scale_shift,
    sample_grid,
)

# Frame A: r = [0, 1, 2, 3] (mean 1.5, std sqrt(1.25)); 1/m = [1, 3, 5, 7] (mean 4, std 2 sqrt(1.25))
# -> s = 2, a = 4, b = 1.5, and the fitted inverse (r - 1.5) * 2 + 4 = [1, 3, 5, 7] reproduces 1/m.
R_A = np.array([[0.0, 1.0], [2.0, 3.0]])
M_A = 1.0 / np.array([[1.0, 3.0], [5.0, 7.0]])
# Frame B: r = [1, 1, 3, 3] (mean 2, std 1); 1/m = [2, 2, 2, 6] (mean 3, std sqrt(3)) -> s = sqrt(3).
R_B = np.array([[1.0, 1.0], [3.0, 3.0]])
M_B = 1.0 / np.array([[2.0, 2.0], [2.0, 6.0]])


def test_stats_by_hand():
    assert map_stats(R_A) == MapStats(1.5, math.sqrt(1.25))
    s = inverse_depth_stats(M_A)
    assert s.mean == pytest.approx(4.0, abs=1e-12) and s.std == pytest.approx(2 * math.sqrt(1.25), abs=1e-12)
    s = inverse_depth_stats(M_B)
    assert s.mean == pytest.approx(3.0, abs=1e-12) and s.std == pytest.approx(math.sqrt(3.0), abs=1e-12)
    # torch tensors give the same (population std, not torch's default unbiased std)
    t = relative_stats(torch.tensor(R_B, dtype=torch.float32))
    assert t.mean == pytest.approx(2.0, abs=1e-7) and t.std == pytest.approx(1.0, abs=1e-7)
    t = inverse_depth_stats(torch.tensor(M_A, dtype=torch.float32))
    assert t.mean == pytest.approx(4.0, rel=1e-6) and t.std == pytest.approx(2 * math.sqrt(1.25), rel=1e-6)


def test_inverse_depth_stats_guards_zero_depth():
    s = inverse_depth_stats(np.array([0.0, 1.0]), min_depth=0.5)  # 1/[0.5, 1] = [2, 1]
    assert s == MapStats(1.5, 0.5)


def test_fit_entry_by_hand_and_degenerate():
    e = fit_entry(inverse_depth_stats(M_A), relative_stats(R_A))
    assert (e.s, e.a, e.b) == pytest.approx((2.0, 4.0, 1.5), abs=1e-12)
    assert fit_entry(MapStats(1.0, 1.0), MapStats(5.0, 0.0)) is None  # constant VDA map
    assert fit_entry(MapStats(float("nan"), 1.0), MapStats(5.0, 1.0)) is None


def test_rolling_first_frames_use_first_entry_then_history_mean():
    fit = RollingFit()
    p1 = fit.fit_frame(inverse_depth_stats(M_A), relative_stats(R_A))
    assert (p1.s, p1.a, p1.b) == pytest.approx((2.0, 4.0, 1.5), abs=1e-12)
    np.testing.assert_allclose(apply_rolling(R_A, p1), [[1.0, 3.0], [5.0, 7.0]], atol=1e-12)
    # frame B: history has 2 entries (< 10), so frame A's values are used on frame B's r:
    p2 = fit.fit_frame(inverse_depth_stats(M_B), relative_stats(R_B))
    assert p2 == p1
    np.testing.assert_allclose(apply_rolling(R_B, p2), [[3.0, 3.0], [7.0, 7.0]], atol=1e-12)
    # 8 more frames B -> 10 entries (1 x A, 9 x B): means s = (2 + 9 sqrt 3)/10, a = (4 + 27)/10, b = (1.5 + 18)/10
    for _ in range(7):
        fit.fit_frame(inverse_depth_stats(M_B), relative_stats(R_B))
    assert len(fit.history) == 9 and fit.params == p1
    p10 = fit.fit_frame(inverse_depth_stats(M_B), relative_stats(R_B))
    assert p10.s == pytest.approx((2 + 9 * math.sqrt(3)) / 10, abs=1e-12)
    assert p10.a == pytest.approx(3.1, abs=1e-12)
    assert p10.b == pytest.approx(1.95, abs=1e-12)
    inverse = apply_rolling(R_B, p10)
    np.testing.assert_allclose(inverse[0, 0], (1 - 1.95) * p10.s + 3.1, atol=1e-12)
    depth, counts = inverse_to_depth(inverse, max_depth=6.0, min_depth=1e-3)
    np.testing.assert_allclose(depth, 1.0 / inverse, rtol=1e-12)
    assert (counts.far, counts.near) == (0, 0)


def test_rolling_history_cap_drops_after_fitting():
    fit = RollingFit()
    seen = [fit.update(FitEntry(s=float(k), a=0.0, b=0.0)).s for k in range(1, 104)]
    assert seen[:9] == [1.0] * 9  # fewer than 10 entries: the first one
    assert seen[9] == pytest.approx(5.5)  # mean of 1..10
    assert seen[100] == pytest.approx(51.0)  # k = 101: mean of 1..101 (101 entries), then 1 dropped
    assert seen[101] == pytest.approx(52.0)  # k = 102: mean of 2..102, not 52.5 (3..102)
    assert seen[102] == pytest.approx(53.0)
    assert len(fit.history) == 100 and fit.history[0].s == 4.0


def test_rolling_frames_without_metric_keep_current_params():
    fit = RollingFit()
    p = fit.fit_frame(inverse_depth_stats(M_A), relative_stats(R_A))
    assert fit.fit_frame(None, relative_stats(R_B)) == p
    assert fit.fit_frame(MapStats(3.0, 1.0), MapStats(2.0, 0.0)) == p  # constant VDA map: no entry
    assert len(fit.history) == 1
    fresh = RollingFit()
    with pytest.raises(ValueError):
        fresh.fit_frame(None, relative_stats(R_A))
    # degenerate first frame: flat depth 1 / mean(1/m)
    p0 = fresh.fit_frame(MapStats(0.5, 0.1), MapStats(2.0, 0.0))
    assert p0 == RollingParams(0.0, 0.5, 2.0) and len(fresh.history) == 0
    np.testing.assert_allclose(apply_rolling(R_A, p0), 0.5)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_inverse_to_depth_clamps_and_counts(backend):
    inv = np.array([-1.0, 0.0, np.nan, np.inf, 0.1, 0.2, 0.5, 1e9], dtype=np.float32)
    x = inv if backend == "numpy" else torch.from_numpy(inv)
    depth, c = inverse_to_depth(x, max_depth=6.0, min_depth=0.01)
    depth = np.asarray(depth)
    # -1, 0, nan, inf -> far (non-positive or non-finite); 0.1 < 1/6 -> far; 0.2 -> 5 m; 0.5 -> 2 m; 1e9 -> near
    np.testing.assert_allclose(depth, [6, 6, 6, 6, 6, 5, 2, 0.01], rtol=1e-6)
    assert depth.dtype == np.float32
    assert (c.far, c.nonpositive, c.near) == (5, 4, 1)
    assert np.isfinite(depth).all() and depth.min() > 0 and depth.max() <= 6.0


def test_inverse_to_depth_rejects_bad_limits():
    with pytest.raises(ValueError):
        inverse_to_depth(np.ones(2), max_depth=1.0, min_depth=2.0)


def test_apply_affine():
    np.testing.assert_allclose(apply_affine(np.array([0.0, 1.0, 2.0]), AffineFit(2.0, 0.5)), [0.5, 2.5, 4.5])


def test_robust_scale_shift_exact_without_outliers():
    x = np.linspace(0.0, 5.0, 50)
    fit, inliers = robust_scale_shift(x, 0.3 * x + 0.2)
    assert fit.scale == pytest.approx(0.3, abs=1e-12) and fit.shift == pytest.approx(0.2, abs=1e-12)
    assert inliers.sum() >= 40


def test_robust_scale_shift_ignores_outliers_that_ols_does_not():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 10.0, 1000)
    y = 0.25 * x + 0.1
    bad = rng.choice(1000, 100, replace=False)  # 10 % gross outliers (e.g. sky, wrong metric pixels)
    y[bad] = rng.uniform(5.0, 50.0, 100)
    ols = np.polyfit(x, y, 1)
    assert abs(ols[0] - 0.25) > 0.05  # plain least squares is pulled away ...
    fit, inliers = robust_scale_shift(x, y, keep=0.8)
    assert fit.scale == pytest.approx(0.25, abs=1e-9)  # ... the trimmed fit recovers the line exactly
    assert fit.shift == pytest.approx(0.1, abs=1e-9)
    assert not inliers[bad].any()


def test_robust_scale_shift_ignores_nonfinite_and_rejects_degenerate():
    x = np.array([0.0, 1.0, 2.0, np.nan, 3.0])
    y = np.array([1.0, 3.0, 5.0, 1.0, np.inf])
    fit, inliers = robust_scale_shift(x, y, keep=1.0)
    assert (fit.scale, fit.shift) == pytest.approx((2.0, 1.0))
    assert inliers.tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError):
        robust_scale_shift(np.ones(10), np.arange(10.0))
    with pytest.raises(ValueError):
        robust_scale_shift(np.array([1.0]), np.array([2.0]))


def test_sample_grid():
    rows, cols = sample_grid(4, 6, 6)  # stride 2, offset 1: rows {1, 3}, cols {1, 3, 5}
    assert rows.tolist() == [1, 1, 1, 3, 3, 3] and cols.tolist() == [1, 3, 5, 1, 3, 5]
    rows, cols = sample_grid(3, 3, 100)  # every pixel
    assert len(rows) == 9
    rows, cols = sample_grid(480, 640, 4096)
    assert 2048 < len(rows) <= 4096 and rows.max() < 480 and cols.max() < 640

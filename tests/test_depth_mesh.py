"""Vectorised grid mesh, discontinuity removal, colours and the viewer camera (pure numpy)."""

import numpy as np
import pytest

from mvda.ops import depth_mesh as dm
from mvda.ops.geometry import Intrinsics, intrinsics_from_fov


def test_triangle_indices_by_hand_on_a_2x3_grid():
    # vertices:  0 1 2
    #            3 4 5
    expected = np.array([[0, 3, 1], [1, 3, 4], [1, 4, 2], [2, 4, 5]], dtype=np.int32)
    tris = dm.grid_triangles(2, 3)
    np.testing.assert_array_equal(tris, expected)
    assert tris.dtype == np.int32


@pytest.mark.parametrize("h, w", [(2, 2), (3, 5), (48, 64), (720, 1280)])
def test_triangle_count_and_every_cell_covered(h, w):
    tris = dm.grid_triangles(h, w)
    assert tris.shape == (2 * (h - 1) * (w - 1), 3) == (dm.num_grid_triangles(h, w), 3)
    assert tris.min() == 0 and tris.max() == h * w - 1
    if h * w <= 5000:  # each cell's two triangles together use exactly its four corners
        r, c = np.divmod(np.arange((h - 1) * (w - 1)), w - 1)
        corners = np.stack([r * w + c, r * w + c + 1, (r + 1) * w + c, (r + 1) * w + c + 1], axis=1)
        pairs = np.sort(np.concatenate([tris[0::2], tris[1::2]], axis=1), axis=1)
        uniq = [np.unique(p) for p in pairs]
        np.testing.assert_array_equal(np.stack(uniq), np.sort(corners, axis=1))


def test_triangles_are_cached_per_resolution_and_read_only():
    assert dm.grid_triangles(4, 6) is dm.grid_triangles(4, 6)
    assert dm.grid_triangles(4, 6) is not dm.grid_triangles(6, 4)
    with pytest.raises(ValueError):
        dm.grid_triangles(4, 6)[0, 0] = 1
    with pytest.raises(ValueError):
        dm.grid_triangles(1, 6)


def test_vertices_in_viewer_frame_and_normals_face_the_camera():
    intr = intrinsics_from_fov(3, 5, xfov=60.0)
    depth = np.full((3, 5), 2.0, dtype=np.float32)
    depth[0, 0] = 2.5  # not planar, still facing the camera
    verts = dm.mesh_vertices(depth, intr)
    assert verts.shape == (15, 3) and verts.dtype == np.float64
    # principal point (row 1, col 2) lands on the optical axis, which is -z in the viewer frame
    np.testing.assert_allclose(verts[1 * 5 + 2], [0.0, 0.0, -2.0], atol=1e-7)
    # the top-left pixel is left (x < 0) and up (y > 0) in the viewer frame
    assert verts[0, 0] < 0 and verts[0, 1] > 0 and verts[0, 2] == pytest.approx(-2.5)
    tris = dm.grid_triangles(3, 5)
    p0, p1, p2 = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)
    to_camera = -(p0 + p1 + p2) / 3.0  # the original camera is at the origin
    assert np.all(np.einsum("ij,ij->i", normals, to_camera) > 0)


def test_mesh_vertices_fills_the_given_buffer():
    intr = intrinsics_from_fov(2, 4, xfov=60.0)
    out = np.zeros((8, 3))
    res = dm.mesh_vertices(np.ones((2, 4), np.float32), intr, out=out)
    assert res is out and np.all(out[:, 2] == -1.0)
    with pytest.raises(ValueError):
        dm.mesh_vertices(np.ones((2, 4), np.float32), intr, out=np.zeros((8, 3), np.float32))


def test_remove_edges_drops_exactly_the_triangles_across_a_marked_step():
    h, w = 4, 6
    depth = np.ones((h, w), dtype=np.float32)
    depth[:, 3:] = 2.0  # discontinuity between columns 2 and 3
    keep = dm.edge_triangle_mask(depth)
    tris = dm.grid_triangles(h, w)
    assert keep.shape == (len(tris),) and keep.dtype == bool
    side = (np.arange(h * w) % w) >= 3  # vertex is on the far side
    kept_sides = side[tris[keep]]
    assert np.all(kept_sides.all(axis=1) | (~kept_sides).all(axis=1)), "a kept triangle spans the step"
    # dropped: the 2 triangles of each of the 3 cells in column 2; everything else stays
    assert keep.sum() == len(tris) - 2 * (h - 1)
    cell_col = (np.arange(len(tris)) // 2) % (w - 1)
    np.testing.assert_array_equal(keep, cell_col != 2)


def test_remove_edges_threshold_is_a_relative_jump():
    depth = np.ones((2, 2), dtype=np.float32)
    depth[1, 1] = 1.05  # in triangle (b, d, e) only
    np.testing.assert_array_equal(dm.edge_triangle_mask(depth, threshold=0.06), [True, True])
    np.testing.assert_array_equal(dm.edge_triangle_mask(depth, threshold=0.04), [True, False])
    # scale invariant: the same relative jump far away is treated the same
    np.testing.assert_array_equal(dm.edge_triangle_mask(depth * 40, threshold=0.04), [True, False])
    assert dm.edge_triangle_mask(np.ones((5, 7), np.float32) * 3).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_invalid_depth_drops_its_six_triangles(bad):
    depth = np.full((4, 5), 2.0, dtype=np.float32)
    depth[1, 2] = bad
    keep = dm.edge_triangle_mask(depth)
    assert (~keep).sum() == 6
    tris = dm.grid_triangles(4, 5)
    assert not np.any(tris[keep] == 1 * 5 + 2)


def test_point_mask_valid_and_flying_pixels():
    depth = np.full((5, 5), 2.0, dtype=np.float32)
    depth[0, 0] = 0.0
    depth[2, 2] = 1.0  # an isolated "flying" pixel in front of the surface
    valid = dm.point_mask(depth)
    assert valid.shape == (25,) and valid.sum() == 24 and not valid[0]
    no_flying = dm.point_mask(depth, threshold=0.05)
    assert not no_flying[0] and not no_flying[2 * 5 + 2]
    assert no_flying.sum() == 23  # all the surface's pixels stay
    # both sides of a step keep their points
    step = np.ones((4, 6), np.float32)
    step[:, 3:] = 2.0
    assert dm.point_mask(step, threshold=0.05).all()


def test_vertex_and_depth_colors():
    rgb = np.array([[[255, 0, 0], [0, 128, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(dm.vertex_colors(rgb), [[1, 0, 0], [0, 128 / 255, 1]], rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        dm.vertex_colors(rgb.astype(np.float32))
    depth = np.array([[0.0, 6.0, 3.0, np.nan], [12.0, -1.0, 1e-3, 6.0]], dtype=np.float32)
    col = dm.depth_colors(depth, max_depth=6.0)
    assert col.shape == (8, 3) and col.min() >= 0 and col.max() <= 1
    np.testing.assert_allclose(col[0], [0.5, 0.5, 0.5])  # 0 m: no valid depth -> grey
    np.testing.assert_allclose(col[6], dm._COLORMAP_ANCHORS[0], atol=1e-3)  # near: red
    np.testing.assert_allclose(col[1], dm._COLORMAP_ANCHORS[-1])  # max_depth: far colour
    np.testing.assert_allclose(col[4], dm._COLORMAP_ANCHORS[-1])  # beyond: clipped
    np.testing.assert_allclose(col[2], dm._COLORMAP_ANCHORS[3])  # middle anchor at max_depth / 2
    np.testing.assert_allclose(col[3], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(col[5], [0.5, 0.5, 0.5])


def test_pose_frame_to_viewer_frame():
    np.testing.assert_array_equal(dm.pose_to_viewer((1.0, 2.0, 3.0)), [1.0, 2.0, -3.0])


def test_look_at_extrinsic_maps_eye_to_origin_and_target_to_the_axis():
    eye = dm.pose_to_viewer((0.0, 1.0, -2.0))
    target = dm.pose_to_viewer((0.0, 0.0, 3.0))
    ext = dm.look_at_extrinsic(eye, target)
    rot = ext[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(ext @ np.append(eye, 1.0), [0, 0, 0, 1], atol=1e-12)
    dist = np.linalg.norm(target - eye)
    np.testing.assert_allclose(ext @ np.append(target, 1.0), [0, 0, dist, 1], atol=1e-12)
    # image "down" is world down-ish, image "right" is world +x (we look forward into the scene)
    np.testing.assert_allclose(rot[0], [1, 0, 0], atol=1e-12)
    assert rot[1, 1] < 0


def test_look_at_from_the_original_camera_is_the_camera_itself():
    # At the origin looking down the optical axis the viewer camera equals the original one:
    # a back-projected pixel projects back to the same pixel.
    intr = Intrinsics(width=8, height=6, fx=5.0, fy=5.0, cx=3.5, cy=2.5)
    ext = dm.look_at_extrinsic(np.zeros(3), dm.pose_to_viewer((0, 0, 1)))
    depth = np.linspace(1, 3, 48, dtype=np.float32).reshape(6, 8)
    verts = dm.mesh_vertices(depth, intr)
    cam = verts @ ext[:3, :3].T + ext[:3, 3]
    uvw = cam @ intr.matrix().T
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    np.testing.assert_allclose(u, np.tile(np.arange(8), 6), atol=1e-5)
    np.testing.assert_allclose(v, np.repeat(np.arange(6), 8), atol=1e-5)


def test_look_at_degenerate_poses_raise():
    with pytest.raises(ValueError, match="same point"):
        dm.look_at_extrinsic(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="straight up or down"):
        dm.look_at_extrinsic(np.zeros(3), np.array([0.0, 5.0, 0.0]))


def test_select_rows_and_kept_triangles_match_boolean_indexing():
    rng = np.random.default_rng(0)
    for dtype in (np.int32, np.float64):
        arr = rng.integers(0, 100, (50, 3)).astype(dtype)
        mask = rng.random(50) > 0.4
        out = dm.select_rows(arr, mask)
        assert out.dtype == dtype and out.flags.c_contiguous
        np.testing.assert_array_equal(out, arr[mask])
    np.testing.assert_array_equal(dm.select_rows(arr, np.zeros(50, bool)), np.empty((0, 3)))
    depth = np.ones((4, 6), np.float32)
    depth[:, 3:] = 2.0
    np.testing.assert_array_equal(dm.kept_triangles(depth),
                                  dm.grid_triangles(4, 6)[dm.edge_triangle_mask(depth)])
    with pytest.raises(ValueError):
        dm.select_rows(arr, mask[:10])

"""MoGe-2 network (moge2): state_dict layout, pf-v1 goldens of forward/infer, the focal/shift solver,
camera recovery on a synthetic scene, and strict checkpoint loading.

The goldens come from upstream microsoft/MoGe (07444410, ``moge/model/v2.py``) run on CPU in float32
with pf-v1 procedural weights (tests/fixtures/moge2/README.md). Tolerances are the README's suggested
ones, each about 10x upstream's own float noise (1 thread vs 2, float32 vs float64, input +-1e-6:
max 3.8e-5 for points, 8.3e-5 for normals, 7.5e-6 for the mask) and far below every structural
mistake it probed (>= 0.14 relative on points). Point maps are compared by per-pixel ||dp|| / ||p||
because the 'exp' remap makes absolute errors scale with e^z. A wrong LayerNorm eps falls below
these tolerances, so the eps values are checked directly.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import scipy
import torch
import torch.nn as nn

import moge2
from depth_anything_v2.hub import CheckpointError, load_strict
from moge2 import MoGeModel, fov_x_from_focal, load_moge2, postprocess, recover_focal_shift, token_grid
from moge2.geometry import (focal_from_fov_x, normalized_view_plane_uv, solve_optimal_focal_shift,
                            solve_optimal_shift, solver_samples)
from moge2.hub import MOGE2_CHECKPOINT_DIR, MOGE2_CHECKPOINTS, checkpoint_path, read_checkpoint
from moge2.model import num_tokens_for_level
from tests.procedural import fill_problems, layout_problems, procedural_state_dict, procedural_tensor, read_manifests

FIXTURES = Path(__file__).parent / "fixtures" / "moge2"

# Tolerances of tests/fixtures/moge2/README.md ("Measured float noise and suggested tolerances").
TOL_POINTS_REL = 3e-4     # per-pixel ||dp|| / ||p||; noise <= 3.8e-5
TOL_DEPTH_REL = 3e-4      # |d depth| / depth; noise <= 1.5e-5
TOL_NORMAL = 5e-4         # max abs; noise <= 8.3e-5
TOL_MASK = 1e-4           # probability, max abs; noise <= 7.5e-6
TOL_SCALE_REL = 1e-5      # metric scale, relative; noise <= 2.1e-7
TOL_FEATURES = 2e-4       # encoder output map (+-8.5); noise <= 2.4e-5
TOL_CLS = 2e-5            # class token; noise <= 1.8e-6
TOL_HEAD = 3e-4           # raw head outputs (+-14); noise <= 4.1e-5
TOL_INTRINSICS = 1e-6     # with the golden focal; noise <= 7.7e-9
TOL_SOLVER_REL = 1e-4     # focal/shift from our forward output; noise <= 6.1e-6
TOL_SOLVER_EXACT = 1e-6   # well-posed solver golden: "any correct least-squares solver matches to ~1e-6"

#: scipy >= 1.16 runs MINPACK lm as the goldens did (x_scale='jac', scipy's own finite differences);
#: older scipy stops the ill-posed procedural fits elsewhere (README: 2399.89 instead of 2239.285).
SCIPY_AS_GOLDENS = tuple(int(p) for p in scipy.__version__.split(".")[:2]) >= (1, 16)

TOY = "moge2_toy"
VITL_NORMAL = "moge2_vitl_normal"


@lru_cache(maxsize=None)
def manifests() -> dict:
    return read_manifests(FIXTURES / "manifests_moge2.json.gz")


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"golden_moge2_{name}.npz") as z:
        return {k: z[k] for k in z.files if k != "meta_json"}


def entries(name: str) -> list[dict]:
    return [{"key": e[0], "shape": e[1], "kind": e[3]} for e in manifests()[name]["entries"]]


@pytest.fixture(scope="module")
def toy() -> MoGeModel:
    model = MoGeModel(**manifests()[TOY]["config"])
    model.load_state_dict(procedural_state_dict(entries(TOY)), strict=True)
    return model.eval()


def point_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest per-pixel ||ours - ref|| / ||ref||."""
    return float((np.linalg.norm(ours - ref, axis=-1) / np.linalg.norm(ref, axis=-1)).max())


def max_abs(ours, ref) -> float:
    return float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).max())


def forward_with_intermediates(model: MoGeModel, image: np.ndarray, num_tokens: int) -> tuple[dict, dict]:
    """``model(image, num_tokens)`` without gradients, and what forward hooks recorded: the encoder output
    and each head's finest level (before the resize)."""
    seen: dict = {}
    hooks = [model.encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("encoder", o))]
    for head in ("points", "normal", "mask"):
        hooks.append(getattr(model, f"{head}_head").register_forward_hook(
            lambda m, i, o, head=head: seen.__setitem__(head, o[-1])))
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(image), num_tokens=num_tokens)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


# -- configuration and layout --------------------------------------------------------------------------

def third_party_config(width: int, layers: list[int]) -> dict:
    """The vits/vitb configs two third-party code bases use (README "Configurations")."""
    head = {"dim_in": [width, 256, 128, 64, 32], "dim_out": [None, None, None, None, 3],
            "dim_res_blocks": [width, 256, 128, 64, 32], "num_res_blocks": [0, 1, 1, 1, 0],
            "res_block_in_norm": "none", "res_block_hidden_norm": "none",
            "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"]}
    backbone = {384: "dinov2_vits14", 768: "dinov2_vitb14"}[width]
    return {
        "encoder": {"backbone": backbone, "intermediate_layers": layers, "dim_out": width},
        "neck": {**head, "dim_in": [width + 2, 2, 2, 2, 2], "dim_out": None, "num_res_blocks": [0, 1, 1, 1, 0]},
        "points_head": head, "normal_head": head, "mask_head": {**head, "dim_out": [None, None, None, None, 1]},
        "scale_head": {"dims": [width, width, width, 1]}, "remap_output": "exp", "num_tokens_range": [1200, 3600],
    }


def numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [TOY, VITL_NORMAL])
def test_state_dict_layout_matches_manifest(name):
    man = manifests()[name]
    with torch.device("meta"):  # the vitl model would allocate 1.3 GB
        model = MoGeModel(**man["config"])
    assert layout_problems(model, man) == []
    assert numel(model) == man["parameter_numel"]
    assert [k for k, _ in model.named_buffers()] == ["encoder.image_mean", "encoder.image_std"]


def test_parameter_counts_of_the_released_sizes():
    with torch.device("meta"):
        vitl_normal = MoGeModel(**manifests()[VITL_NORMAL]["config"])
        vitl = MoGeModel(**{k: v for k, v in manifests()[VITL_NORMAL]["config"].items() if k != "normal_head"})
        vits = MoGeModel(**third_party_config(384, [5, 11]))
        vitb = MoGeModel(**third_party_config(768, [5, 11]))
    assert numel(vitl_normal) == 330_901_544  # README: 331M (moge-2-vitl-normal)
    assert numel(vitl) == 326_209_221         # 326M (moge-2-vitl)
    assert numel(vits) == 35_103_656          # 35M
    assert numel(vitb) == 104_743_592         # 104M
    assert not hasattr(vitl, "normal_head")


def test_encoder_details():
    with torch.device("meta"):
        model = MoGeModel(**manifests()[TOY]["config"])
    norms = [m for m in model.encoder.backbone.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1 and all(m.eps == 1e-6 for m in norms)
    assert not any(isinstance(m, (nn.GroupNorm, nn.BatchNorm2d, nn.InstanceNorm2d)) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(m.padding_mode == "replicate" for m in convs)
    assert model.encoder.backbone.pos_embed.shape == (1, 1 + 37 * 37, 384)


def test_pf_v1_fill_matches_manifest_including_image_norm_buffers():
    man = manifests()[TOY]
    state = procedural_state_dict(entries(TOY))
    assert fill_problems(state, man) == []
    assert torch.equal(state["encoder.image_mean"], torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    assert torch.equal(state["encoder.image_std"], torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    # the buffers hold exactly what the model constructs, so a fresh model already matches them
    fresh = MoGeModel(**man["config"]).state_dict()
    assert torch.equal(fresh["encoder.image_mean"], state["encoder.image_mean"])
    assert torch.equal(fresh["encoder.image_std"], state["encoder.image_std"])
    # the sinusoid buffers of the other networks are unchanged
    assert procedural_tensor("x.pos_encoder.pe", (1, 4, 6), is_buffer=True).shape == (1, 4, 6)


@pytest.mark.slow
def test_pf_v1_fill_matches_vitl_manifest():
    man = manifests()[VITL_NORMAL]
    problems = []
    for key, shape, _, kind, _ in man["entries"]:  # one tensor at a time: no 1.3 GB state_dict
        problems += fill_problems({key: procedural_tensor(key, shape, kind == "buffer")},
                                  {"entries": [e for e in man["entries"] if e[0] == key]})
    assert problems == []


def test_meta_model_loads_pf_v1_strictly_by_assignment():
    with torch.device("meta"):
        model = MoGeModel(**manifests()[TOY]["config"])
    load_strict(model, procedural_state_dict(entries(TOY)), source=TOY, assign=True)
    assert not any(t.is_meta for t in model.state_dict().values())


# -- token grid and uv -----------------------------------------------------------------------------------

@pytest.mark.parametrize("hw, num_tokens, grid", [
    ((120, 180), 64, (7, 10)), ((96, 64), 150, (15, 10)), ((96, 128), 100, (9, 12)), ((216, 320), 1200, (28, 42)),
])
def test_token_grid(hw, num_tokens, grid):
    assert token_grid(*hw, num_tokens) == grid


def test_num_tokens_for_resolution_level():
    assert num_tokens_for_level(9) == 3600 and num_tokens_for_level(0) == 1200
    assert num_tokens_for_level(4, [1200, 3600]) == int(1200 + 4 / 9 * 2400)


def test_view_plane_uv_is_pixel_centres_in_half_diagonals():
    uv = normalized_view_plane_uv(width=4, height=3)
    diag = math.hypot(4, 3)
    assert uv.shape == (3, 4, 2)
    assert torch.allclose(uv[0, :, 0], torch.tensor([-1.5, -0.5, 0.5, 1.5]) * 2 / diag)
    assert torch.allclose(uv[:, 0, 1], torch.tensor([-1.0, 0.0, 1.0]) * 2 / diag)


# -- forward goldens ---------------------------------------------------------------------------------------

def test_forward_golden_landscape_with_intermediates(toy):
    g = golden("toy_forward")
    out, seen = forward_with_intermediates(toy, g["image"], num_tokens=64)
    features, cls_token = seen["encoder"]
    assert features.shape == (1, 128, 7, 10)
    assert max_abs(features, g["encoder_features"]) < TOL_FEATURES
    assert max_abs(cls_token, g["encoder_cls_token"]) < TOL_CLS
    for head in ("points", "normal", "mask"):
        assert seen[head].shape == g[f"{head}_head_out"].shape  # 16 x the token grid
        assert max_abs(seen[head], g[f"{head}_head_out"]) < TOL_HEAD, head
    check_forward(out, g)


def test_forward_golden_portrait_batch_of_two_upsampled(toy):
    g = golden("toy_forward_portrait_b2")
    out, seen = forward_with_intermediates(toy, g["image"], num_tokens=150)
    assert max_abs(seen["encoder"][0], g["encoder_features"]) < TOL_FEATURES
    assert max_abs(seen["encoder"][1], g["encoder_cls_token"]) < TOL_CLS
    check_forward(out, g)


def check_forward(out: dict, g: dict) -> None:
    assert set(out) == {"points", "normal", "mask", "metric_scale"}
    for key in ("points", "normal", "mask", "metric_scale"):
        assert out[key].shape == g[key].shape and out[key].dtype == torch.float32, key
    assert point_error(out["points"].numpy(), g["points"]) < TOL_POINTS_REL
    assert max_abs(out["normal"], g["normal"]) < TOL_NORMAL
    assert max_abs(out["mask"], g["mask"]) < TOL_MASK
    assert np.abs(out["metric_scale"].numpy() / g["metric_scale"] - 1).max() < TOL_SCALE_REL


# -- infer goldens --------------------------------------------------------------------------------------------

def infer_golden(name: str) -> dict[str, np.ndarray]:
    g = golden(name)
    if name == "toy_infer_fov55":  # image and forward_* are stored once (bit-identical, see the README)
        base = golden("toy_infer")
        g.update({k: v for k, v in base.items() if k == "image" or k.startswith("forward_")})
    return g


def check_infer(out: dict, g: dict, forward_mask: np.ndarray) -> None:
    """Compare infer outputs; the bool mask may differ only where the probability is within 1e-4 of 0.5."""
    assert set(out) == {"points", "depth", "intrinsics", "mask", "normal"}
    assert out["intrinsics"].shape == (3, 3) and out["points"].shape == g["points"].shape
    mask = out["mask"].numpy()
    undecided = np.abs(forward_mask - 0.5) < 1e-4
    assert not np.any((mask != g["mask"]) & ~undecided)
    both = mask & g["mask"]
    assert np.isinf(out["points"].numpy()[~mask]).all() and np.isinf(out["depth"].numpy()[~mask]).all()
    assert (out["normal"].numpy()[~mask] == 0).all()
    assert np.isfinite(out["depth"].numpy()[mask]).all()
    assert point_error(out["points"].numpy()[both], g["points"][both]) < TOL_POINTS_REL
    depth, ref = out["depth"].numpy()[both], g["depth"][both]
    assert (np.abs(depth - ref) / np.abs(ref)).max() < TOL_DEPTH_REL
    assert max_abs(out["normal"].numpy()[both], g["normal"][both]) < TOL_NORMAL
    assert max_abs(out["intrinsics"], g["intrinsics"]) < max(TOL_INTRINSICS, TOL_SOLVER_REL * np.abs(g["intrinsics"]).max())


@pytest.mark.parametrize("name, fov_x", [("toy_infer", None), ("toy_infer_fov55", 55.0)])
def test_infer_golden_forward_and_postprocessing(toy, name, fov_x):
    g = infer_golden(name)
    image = torch.from_numpy(g["image"])
    # (1) the forward() outputs inside infer
    with torch.no_grad():
        fwd = toy(image[None], num_tokens=100)
    assert point_error(fwd["points"].numpy(), g["forward_points"]) < TOL_POINTS_REL
    assert max_abs(fwd["normal"], g["forward_normal"]) < TOL_NORMAL
    assert max_abs(fwd["mask"], g["forward_mask"]) < TOL_MASK
    assert np.abs(fwd["metric_scale"].numpy() / g["forward_metric_scale"] - 1).max() < TOL_SCALE_REL
    # (2) post-processing of the golden forward outputs with the golden focal and shift
    stored = {k: torch.from_numpy(g[f"forward_{k}"]) for k in ("points", "normal", "mask", "metric_scale")}
    with torch.no_grad():
        post = postprocess(stored, *image.shape[-2:], fov_x=fov_x,
                           focal=torch.from_numpy(g["focal"]), shift=torch.from_numpy(g["shift"]))
    post = {k: v.squeeze(0) for k, v in post.items()}
    assert np.array_equal(post["mask"].numpy(), g["mask"])
    assert max_abs(post["intrinsics"], g["intrinsics"]) < TOL_INTRINSICS
    check_infer(post, g, g["forward_mask"][0])


@pytest.mark.skipif(not SCIPY_AS_GOLDENS, reason="scipy < 1.16 stops MINPACK lm elsewhere on the ill-posed procedural fit")
@pytest.mark.parametrize("name, fov_x", [("toy_infer", None), ("toy_infer_fov55", 55.0)])
def test_infer_golden_end_to_end(toy, name, fov_x):
    g = infer_golden(name)
    image = torch.from_numpy(g["image"])
    with torch.no_grad():
        fwd = toy(image[None], num_tokens=100)
    given = None if fov_x is None else focal_from_fov_x(fov_x, 128 / 96)[None]
    if given is not None:
        assert given.dtype == torch.float32 and given.item() == g["focal"][0]  # float32 as upstream
    focal, shift = recover_focal_shift(fwd["points"], fwd["mask"] > 0.5, focal=given)
    if fov_x is None:
        assert shift.item() == 0.0 == g["shift"][0]  # MINPACK rejects its first step: shift exactly 0
        assert abs(focal.item() / g["focal"][0] - 1) < TOL_SOLVER_REL
    else:
        assert abs(shift.item() / g["shift"][0] - 1) < TOL_SOLVER_REL
    out = toy.infer(image, num_tokens=100, fov_x=fov_x, use_fp16=False)
    check_infer(out, g, fwd["mask"][0].numpy())


@pytest.mark.slow
def test_infer_batch_and_missing_heads(toy):
    image = torch.from_numpy(infer_golden("toy_infer")["image"])
    out = toy.infer(torch.stack([image, image.flip(-1)]), num_tokens=48, use_fp16=False)
    assert out["intrinsics"].shape == (2, 3, 3) and out["points"].shape == (2, 96, 128, 3)
    assert out["mask"].dtype == torch.bool and out["depth"].dtype == torch.float32
    config = {k: v for k, v in manifests()[TOY]["config"].items() if k != "normal_head"}
    no_normal = MoGeModel(**config)
    no_normal.load_state_dict(procedural_state_dict(no_normal), strict=True)
    out = no_normal.eval().infer(image, num_tokens=48, use_fp16=False, apply_mask=False)
    assert set(out) == {"points", "depth", "intrinsics", "mask"}
    assert torch.isfinite(out["depth"]).all()


def test_infer_under_bf16_autocast_returns_float32(toy):
    image = torch.from_numpy(infer_golden("toy_infer")["image"])
    out = toy.infer(image, num_tokens=48, precision="bf16")
    assert all(v.dtype in (torch.float32, torch.bool) for v in out.values())
    assert next(toy.parameters()).dtype == torch.float32


# -- the focal / shift solver -------------------------------------------------------------------------------------

def test_solver_golden_well_posed():
    g = golden("solver")
    points, mask = torch.from_numpy(g["points"])[None], torch.from_numpy(g["mask"])[None]
    (uv, xyz), = solver_samples(points, mask)
    assert np.array_equal(uv, g["uv_lr"]) and np.array_equal(xyz, g["xyz_lr"])  # legacy 'nearest' downsample
    shift, focal = solve_optimal_focal_shift(g["uv_lr"], g["xyz_lr"])
    assert shift.dtype == np.float32 and focal.dtype == np.float32
    assert abs(shift - g["np_shift"][0]) < TOL_SOLVER_EXACT and abs(focal - g["np_focal"][0]) < TOL_SOLVER_EXACT
    focal, shift = recover_focal_shift(points, mask)
    assert focal.shape == (1,) and shift.dtype == torch.float32
    assert abs(focal.item() - g["focal"][0]) < TOL_SOLVER_EXACT and abs(shift.item() - g["shift"][0]) < TOL_SOLVER_EXACT
    focal, shift = recover_focal_shift(points, None)
    assert abs(focal.item() - g["focal_nomask"][0]) < TOL_SOLVER_EXACT
    assert abs(shift.item() - g["shift_nomask"][0]) < TOL_SOLVER_EXACT
    given = torch.tensor([1.2])
    focal, shift = recover_focal_shift(points, mask, focal=given)
    assert focal is not None and focal.item() == given.item()
    assert abs(shift.item() - g["shift_given_focal"][0]) < TOL_SOLVER_EXACT
    # upstream's truth: focal 1.2 (horizontal FOV 67.380 deg), shift 0.7; recovered 67.390 deg
    assert abs(fov_x_from_focal(float(g["focal"][0]), 128 / 96) - 67.380) < 0.02


def render_affine_point_map(height: int, width: int, fov_x_deg: float, shift: float, seed: int = 0) -> torch.Tensor:
    """Camera-space points of a smooth random surface seen with ``fov_x_deg``, z reduced by ``shift``."""
    gen = torch.Generator().manual_seed(seed)
    focal = focal_from_fov_x(fov_x_deg, width / height).item()
    uv = normalized_view_plane_uv(width, height, dtype=torch.float64)
    coarse = torch.rand(1, 1, 4, 5, generator=gen, dtype=torch.float64)
    depth = 1.5 + 2.0 * torch.nn.functional.interpolate(coarse, (height, width), mode="bicubic", align_corners=True)[0, 0]
    xy = uv / focal * depth[..., None]
    return torch.cat([xy, (depth - shift)[..., None]], dim=-1).float()


@pytest.mark.parametrize("fov_x, shift", [(60.0, 0.8), (40.0, -0.5), (90.0, 1.2)])
def test_synthetic_point_map_gives_back_its_fov(fov_x, shift):
    # depths 1.5..3.5; the affine z (depth - shift) stays positive, as the 'exp' remap guarantees
    height, width = 90, 160
    points = render_affine_point_map(height, width, fov_x, shift)
    focal, got_shift = recover_focal_shift(points[None])
    assert abs(fov_x_from_focal(focal.item(), width / height) - fov_x) < 0.1
    assert abs(got_shift.item() - shift) < 1e-2
    # the same through infer's post-processing: intrinsics fx (image widths) -> fov_x = 2 atan(0.5 / fx)
    mask = torch.ones(1, height, width)
    out = postprocess({"points": points[None], "mask": mask, "metric_scale": torch.tensor([2.0])}, height, width)
    fx = out["intrinsics"][0, 0, 0].item()
    assert abs(math.degrees(2 * math.atan(0.5 / fx)) - fov_x) < 0.1
    # projection forced: metric points = 2 x the true camera-space points
    truth = points.clone()
    truth[..., 2] += shift
    assert (out["points"][0] - 2 * truth).abs().max() < 2e-2 * truth[..., 2].max()


def test_solver_with_known_focal_and_too_few_samples():
    points = render_affine_point_map(48, 64, 50.0, 0.3)
    focal = focal_from_fov_x(50.0, 64 / 48)
    (uv, xyz), = solver_samples(points[None])
    assert abs(float(solve_optimal_shift(uv, xyz, focal.numpy())) - 0.3) < 1e-3
    points = render_affine_point_map(96, 128, 50.0, 0.3)
    single = torch.zeros(1, 96, 128, dtype=torch.bool)
    single[0, 0, 0] = True  # larger than 64x64: the nearest downsample samples it once
    focal, shift = recover_focal_shift(points[None], single)  # < 2 samples: focal 1, shift 0
    assert focal.item() == 1.0 and shift.item() == 0.0


# -- checkpoints ---------------------------------------------------------------------------------------------------

def test_checkpoint_table_is_pinned():
    got = {name: (s.repo_id, s.filename) for name, s in MOGE2_CHECKPOINTS.items()}
    assert got == {
        "vitl-normal": ("Ruicheng/moge-2-vitl-normal", "model.pt"),
        "vitb-normal": ("Ruicheng/moge-2-vitb-normal", "model.pt"),
        "vits-normal": ("Ruicheng/moge-2-vits-normal", "model.pt"),
        "vitl": ("Ruicheng/moge-2-vitl", "model.pt"),
    }
    assert MOGE2_CHECKPOINT_DIR == Path(moge2.__file__).resolve().parents[1] / "checkpoints"
    assert MOGE2_CHECKPOINTS["vitl"].local_path == MOGE2_CHECKPOINT_DIR / "moge-2-vitl" / "model.pt"
    with pytest.raises(ValueError, match="vitl-normal"):
        moge2.checkpoint_spec("vitg")


@pytest.fixture
def toy_checkpoint(tmp_path) -> tuple[Path, dict, dict]:
    config = manifests()[TOY]["config"]
    state = procedural_state_dict(entries(TOY))
    path = tmp_path / "model.pt"
    torch.save({"model_config": config, "model": state}, path)
    return path, config, state


def test_checkpoint_round_trip_builds_from_stored_config(toy_checkpoint):
    path, config, state = toy_checkpoint
    got_config, got_state = read_checkpoint(path)
    assert got_config == config and list(got_state) == list(state)
    model = load_moge2("vitl-normal", checkpoint=path)  # the architecture comes from the file, not the name
    assert isinstance(model, MoGeModel) and not model.training
    assert model.encoder.backbone.embed_dim == 384
    loaded = model.state_dict()
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    same = MoGeModel.from_pretrained(path)  # upstream's entry point, also strict
    assert all(torch.equal(same.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_checkpoint_with_bad_keys_is_refused_with_the_keys_listed(tmp_path, toy_checkpoint, change):
    _, config, state = toy_checkpoint
    state = dict(state)
    if change == "missing":
        del state["neck.res_blocks.1.0.layers.2.weight"]
        key = "neck.res_blocks.1.0.layers.2.weight"
    else:
        state["neck.extra.weight"] = torch.zeros(2)
        key = "neck.extra.weight"
    path = tmp_path / "bad.pt"
    torch.save({"model_config": config, "model": state}, path)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")) as info:
        load_moge2(checkpoint=path)
    assert (info.value.missing if change == "missing" else info.value.unexpected) == [key]


def test_plain_state_dict_or_bad_config_is_refused(tmp_path, toy_checkpoint):
    _, config, state = toy_checkpoint
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    with pytest.raises(CheckpointError, match="model_config"):
        load_moge2(checkpoint=plain)
    bad = tmp_path / "badconfig.pt"
    torch.save({"model_config": {**config, "encoder": {**config["encoder"], "backbone": "dinov2_vitg14"}}, "model": state}, bad)
    with pytest.raises(CheckpointError, match="unusable model_config"):
        load_moge2(checkpoint=bad)


def test_missing_checkpoint_without_download_names_the_repository(monkeypatch, tmp_path):
    import dataclasses

    import moge2.hub as hub

    spec = dataclasses.replace(hub.MOGE2_CHECKPOINTS["vits-normal"], local_dir=tmp_path / "none")
    monkeypatch.setitem(hub.MOGE2_CHECKPOINTS, "vits-normal", spec)
    with pytest.raises(CheckpointError, match="Ruicheng/moge-2-vits-normal"):
        checkpoint_path("vits-normal", download=False)


def test_network_package_never_imports_mvda():
    code = "import sys, moge2; bad = [m for m in sys.modules if m.split('.')[0] == 'mvda']; assert not bad, bad"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)

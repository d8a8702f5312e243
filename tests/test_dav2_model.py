"""Depth-Anything-V2 metric network: state_dict layout, pf-v1 goldens, encoder details, preprocessing.

Goldens come from the official code run on CPU in float32 with pf-v1 procedural weights
(tests/fixtures/README.md). Tolerance 1e-4 absolute: outputs are O(1-15) metres; the README measured
upstream's own float noise (1 thread vs 2 threads, float32 vs float64) at <= 1.6e-5, and every
structural mistake it tried moved the outputs by >= 0.28.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_anything_v2 import DepthAnythingV2, MODEL_CONFIGS
from depth_anything_v2.blocks import FeatureFusionBlock
from mvda.device import (autocast_context, cpu_has_native, default_precision, precision_dtype,
                                     precision_warning, resolve_device)
from depth_anything_v2.checkpoint import load_strict
from tests.helpers import load_golden
from tests.procedural import procedural_state_dict, procedural_tensor, fill_problems, layout_problems
from depth_anything_v2.transform import network_input_size, prepare_images

TOL = 1e-4


def check_manifest(model: nn.Module, name: str, manifests: dict) -> None:
    """Layout equals the upstream manifest exactly; pf-v1 weights built from the manifest load with
    strict=True and every tensor's float64 sum equals the manifest's fill_sum (rel 1e-9: 12 stored digits)."""
    man = manifests[name]
    assert layout_problems(model, man) == []
    entries = [{"key": e[0], "shape": e[1], "kind": e[3]} for e in man["entries"]]
    load_strict(model, procedural_state_dict(entries), source=name, assign=any(p.is_meta for p in model.parameters()))
    assert fill_problems(model.state_dict(), man) == []
    assert not any(t.is_meta for t in model.state_dict().values())


@pytest.fixture(scope="module")
def model() -> DepthAnythingV2:
    m = DepthAnythingV2(**MODEL_CONFIGS["vits"], max_depth=20.0)
    m.load_state_dict(procedural_state_dict(m), strict=True)
    return m.eval()


# -- layout ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder", ["vits", pytest.param("vitb", marks=pytest.mark.slow),
                                     pytest.param("vitl", marks=pytest.mark.slow)])
def test_state_dict_matches_manifest_and_loads_pf_v1(encoder, network_manifests):
    name = f"dav2_metric_{encoder}"
    assert network_manifests[name]["config"] == MODEL_CONFIGS[encoder]
    with torch.device("meta"):  # no 1.3 GB random init for vitl; keys/shapes/dtypes are the same
        model = DepthAnythingV2(**MODEL_CONFIGS[encoder], max_depth=20.0)
    check_manifest(model, name, network_manifests)


def test_real_construction_matches_meta_construction():
    with torch.device("meta"):
        meta = DepthAnythingV2(**MODEL_CONFIGS["vits"])
    real = DepthAnythingV2(**MODEL_CONFIGS["vits"])
    assert [(k, v.shape, v.dtype) for k, v in meta.state_dict().items()] == [
        (k, v.shape, v.dtype) for k, v in real.state_dict().items()
    ]


def test_procedural_fill_matches_readme_rules():
    # hand-checkable pieces of the pf-v1 rules
    bias = procedural_tensor("a.bias", (4,))
    g = torch.Generator().manual_seed(__import__("zlib").crc32(b"a.bias"))
    assert torch.equal(bias, 0.1 * torch.randn(4, generator=g))
    w = procedural_tensor("conv.weight", (2, 3, 2, 2))
    g = torch.Generator().manual_seed(__import__("zlib").crc32(b"conv.weight"))
    assert torch.allclose(w, torch.randn(2, 3, 2, 2, generator=g) / math.sqrt(12))
    pe = procedural_tensor("x.pos_encoder.pe", (1, 3, 4), is_buffer=True)
    expected = torch.tensor([[0, 1, 0, 1],
                             [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                             [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]], dtype=torch.float32)
    assert torch.allclose(pe[0], expected, atol=1e-6)


# -- goldens ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_forward_and_intermediate_features_match_golden(model):
    z = load_golden("golden_dav2_metric_vits_forward")
    x = torch.from_numpy(z["input"])
    with torch.inference_mode():
        out = model(x)
        feats = model.pretrained.get_intermediate_layers(x, [2, 5, 8, 11], return_class_token=True)
    assert out.shape == (1, 70, 98)
    assert np.abs(out.numpy() - z["output"]).max() <= TOL
    assert len(feats) == 4
    for i, (tokens, cls) in enumerate(feats):
        assert tokens.shape == (1, 35, 384) and cls.shape == (1, 384)
        assert np.abs(tokens.numpy() - z[f"feat{i}_tokens"]).max() <= TOL
        assert np.abs(cls.numpy() - z[f"feat{i}_cls"]).max() <= TOL


@pytest.mark.slow
def test_infer_image_matches_golden_bgr(model):
    z = load_golden("golden_dav2_metric_vits_infer_image")
    bgr = z["image_bgr"]
    out = model.infer_image(bgr, 70)
    assert out.shape == (60, 80) and out.dtype == np.float32
    assert np.abs(out - z["output"]).max() <= TOL
    # the channel order matters: the same pixels read as RGB give a clearly different map
    swapped = model.infer_image(np.ascontiguousarray(bgr[:, :, ::-1]), 70)
    assert np.abs(swapped - z["output"]).max() > 0.05


@pytest.mark.slow
def test_infer_images_batches_rgb_on_device(model):
    z = load_golden("golden_dav2_metric_vits_infer_image")
    rgb = torch.from_numpy(np.ascontiguousarray(z["image_bgr"][:, :, ::-1]))
    batch = torch.stack([rgb, rgb.flip(1), rgb])
    out = model.infer_images(batch, input_size=70, batch_size=2)
    assert out.shape == (3, 60, 80) and out.dtype == torch.float32
    assert np.abs(out[0].numpy() - z["output"]).max() <= TOL
    assert torch.allclose(out[2], out[0], atol=1e-5)
    assert not torch.allclose(out[1], out[0], atol=1e-2)
    small = model.infer_images(batch[:1], input_size=70, output_size=(30, 40))
    ref = F.interpolate(torch.from_numpy(model.infer_image(z["image_bgr"], 70))[None, None], (30, 40), mode="bilinear",
                        align_corners=True)
    assert small.shape == (1, 30, 40)
    # output_size resizes the network output directly (one interpolation), close to resizing twice
    assert (small - ref[0]).abs().max() < 0.5


def test_infer_prepared_equals_infer_images(model):
    z = load_golden("golden_dav2_metric_vits_infer_image")
    rgb = torch.from_numpy(np.ascontiguousarray(z["image_bgr"][:, :, ::-1]))
    batch = torch.stack([rgb, rgb.flip(1), rgb])
    x = prepare_images(batch, network_input_size(60, 80, 70))
    for n, step in ((3, 2), (1, 4), (3, 4)):
        ref = model.infer_images(batch[:n], input_size=70, output_size=(45, 61), batch_size=step)
        out = model.infer_prepared(x[:n], (45, 61), batch_size=step)
        assert out.shape == (n, 45, 61) and torch.equal(out, ref)
    assert model.infer_images(batch[:0], input_size=70).shape == (0, 60, 80)


@pytest.mark.slow
def test_bf16_autocast_error_against_fp32_golden(model):
    """bf16 autocast on CPU: measured max |err| 0.16 m, mean 0.03 m on outputs of 1.6..14.6 m."""
    z = load_golden("golden_dav2_metric_vits_forward")
    with torch.inference_mode(), autocast_context(torch.device("cpu"), "bf16"):
        out = model(torch.from_numpy(z["input"])).float().numpy()
    err = np.abs(out - z["output"])
    assert err.max() < 0.5 and err.mean() < 0.1
    assert err.max() > TOL  # it really ran in reduced precision


# -- encoder details the tolerance cannot see ------------------------------------------------------------

def test_encoder_layernorm_eps_is_1e_6(model):
    norms = [m for m in model.pretrained.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1
    assert all(m.eps == 1e-6 for m in norms)


def test_mlp_gelu_is_exact_and_attention_scale(model):
    blk = model.pretrained.blocks[0]
    x = torch.randn(1, 5, 384)
    with torch.inference_mode():
        ref = blk.mlp.fc2(F.gelu(blk.mlp.fc1(x), approximate="none"))
        assert torch.allclose(blk.mlp(x), ref, atol=1e-6)
        # attention written out: softmax(q k^T / sqrt(64)) v
        qkv = blk.attn.qkv(x).reshape(1, 5, 3, 6, 64).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1) @ v
        ref = blk.attn.proj(att.transpose(1, 2).reshape(1, 5, 384))
        assert torch.allclose(blk.attn(x), ref, atol=1e-5)


def test_pos_embed_resampling(model):
    enc = model.pretrained
    # 518x518 (37x37 patches): the stored table itself
    assert enc.interpolate_pos_encoding(1 + 37 * 37, 518, 518, torch.float32) is enc.pos_embed
    # non-square: bicubic with scale (n + 0.1) / 37 -> (H//14, W//14) grid, class position untouched
    pe = enc.interpolate_pos_encoding(1 + 5 * 7, 70, 98, torch.float32)
    assert pe.shape == (1, 36, 384)
    assert torch.equal(pe[:, 0], enc.pos_embed[:, 0])
    grid = enc.pos_embed[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
    by_scale = F.interpolate(grid, scale_factor=(5.1 / 37, 7.1 / 37), mode="bicubic", align_corners=False)
    assert torch.allclose(pe[0, 1:], by_scale[0].permute(1, 2, 0).reshape(35, 384), atol=1e-6)
    # the offset/scale detail is observable: resampling by output size gives other numbers
    by_size = F.interpolate(grid, size=(5, 7), mode="bicubic", align_corners=False)
    assert (by_size[0].permute(1, 2, 0).reshape(35, 384) - pe[0, 1:]).abs().max() > 1e-2
    # square but not 518: resampled too; same token count at other aspect ratio also resampled
    assert enc.interpolate_pos_encoding(1 + 4, 28, 28, torch.float32).shape == (1, 5, 384)
    # a constant table stays constant (bicubic weights sum to 1)
    with torch.no_grad():
        saved = enc.pos_embed.clone()
        enc.pos_embed.fill_(0.25)
        try:
            assert torch.allclose(enc.interpolate_pos_encoding(1 + 20, 56, 70, torch.float32), torch.tensor(0.25), atol=1e-6)
        finally:
            enc.pos_embed.copy_(saved)


@pytest.mark.slow
def test_get_intermediate_layers_variants(model):
    x = torch.randn(2, 3, 28, 42)
    with torch.inference_mode():
        pairs = model.pretrained.get_intermediate_layers(x, [2, 11], return_class_token=True)
        last2 = model.pretrained.get_intermediate_layers(x, 2)
        maps = model.pretrained.get_intermediate_layers(x, [11], reshape=True)
        full = model.pretrained.forward_features(x)
    assert pairs[1][0].shape == (2, 6, 384) and pairs[1][1].shape == (2, 384)
    assert torch.allclose(last2[1], pairs[1][0]) and torch.allclose(full[:, 1:], pairs[1][0], atol=1e-6)
    assert torch.allclose(full[:, 0], pairs[1][1], atol=1e-6)
    assert maps[0].shape == (2, 384, 2, 3)
    assert torch.equal(maps[0][:, :, 1, 2], pairs[1][0][:, 5])
    with pytest.raises(ValueError, match="out of range"):
        model.pretrained.get_intermediate_layers(x, [12])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.zeros(1, 3, 30, 28))


def test_fusion_block_conv_before_upsample_equals_official_order():
    torch.manual_seed(0)
    block = FeatureFusionBlock(8).eval()
    a, b = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 5, 6)
    with torch.inference_mode():
        got = block(a, b, size=(9, 13))
        ref = block.resConfUnit2(a + block.resConfUnit1(b))
        ref = block.out_conv(F.interpolate(ref, size=(9, 13), mode="bilinear", align_corners=True))
        got2 = block(a)
        ref2 = block.out_conv(F.interpolate(block.resConfUnit2(a), scale_factor=2, mode="bilinear", align_corners=True))
    assert got.shape == (2, 8, 9, 13) and torch.allclose(got, ref, atol=1e-5)
    assert got2.shape == (2, 8, 10, 12) and torch.allclose(got2, ref2, atol=1e-5)
    # ResidualConvUnit does not modify its input in place
    x = torch.randn(1, 8, 3, 3)
    x0 = x.clone()
    block.resConfUnit1(x)
    assert torch.equal(x, x0)


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="not supported"):
        DepthAnythingV2(**MODEL_CONFIGS["vits"], use_bn=True)
    with pytest.raises(ValueError, match="unknown encoder"):
        DepthAnythingV2(encoder="vitg")


# -- preprocessing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "hw, size, expected",
    [((60, 80), 70, (70, 98)), ((48, 64), 56, (56, 70)), ((518, 518), 518, (518, 518)),
     ((1080, 1920), 518, (518, 924)), ((1920, 1080), 518, (924, 518)), ((100, 101), 56, (56, 56)),
     ((100, 120), 56, (56, 70))],
)
def test_network_input_size(hw, size, expected):
    # e.g. 1080x1920: scale 518/1080 -> width 920.9 -> 924 (nearest multiple of 14);
    # 100x120 at 56: width 67.2 -> 70; 100x101 at 56: width 56.56 -> 56.
    assert network_input_size(*hw, size) == expected


def test_network_input_size_rounds_up_below_minimum():
    # 100x100 at 48: 48/14 = 3.43 rounds to 3 -> 42 < 48, so it is rounded up instead -> 56
    assert network_input_size(100, 100, 48) == (56, 56)
    # 43x43 at 50: 50/14 = 3.57 rounds to 4 -> 56 >= 50, kept
    assert network_input_size(43, 43, 50) == (56, 56)
    # round half to even, as np.round: 100x250 at 70 -> width 175/14 = 12.5 -> 12 -> 168
    assert network_input_size(100, 250, 70) == (70, 168)


def test_prepare_images_values():
    img = np.zeros((1, 4, 6, 3), np.uint8)
    img[..., 0] = 255
    img[..., 2] = 51
    x = prepare_images(img, (4, 6))
    assert x.shape == (1, 3, 4, 6) and x.dtype == torch.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    for c in range(3):
        assert torch.allclose(x[0, c], torch.tensor(expected[c]), atol=1e-6)
    # bicubic resize of a constant image stays constant; numpy and tensor input agree
    y = prepare_images(torch.from_numpy(img[0]), (7, 5))
    assert y.shape == (1, 3, 7, 5)
    assert torch.allclose(y[0, 0], torch.tensor(expected[0]), atol=1e-5)
    ramp = np.tile(np.arange(0, 250, 10, dtype=np.uint8)[None, :, None], (3, 1, 3))
    a = prepare_images(ramp, (6, 50))
    b = F.interpolate(torch.from_numpy(ramp).permute(2, 0, 1)[None].float() / 255, size=(6, 50), mode="bicubic",
                      align_corners=False)
    assert torch.allclose(a[0, 1], (b[0, 1] - 0.456) / 0.224, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        prepare_images(np.zeros((4, 4)), (4, 4))


# -- device helpers ---------------------------------------------------------------------------------------

def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_precision_helpers():
    assert default_precision(torch.device("cpu")) == "fp32"
    assert default_precision("cuda") == "fp16"
    assert precision_dtype("bf16") is torch.bfloat16 and precision_dtype("fp32") is None
    with pytest.raises(ValueError, match="unknown precision"):
        precision_dtype("int8")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast_context(torch.device("cpu"), "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast_context(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16


def test_precision_warning_only_for_emulated_cpu_precisions():
    assert cpu_has_native("fp32")
    with pytest.raises(ValueError, match="unknown precision"):
        cpu_has_native("int8")
    calls = []

    def native(name):  # a CPU with bf16 but without fp16
        calls.append(name)
        return name == "bf16"

    assert precision_warning("cpu", "fp32", native) is None
    assert precision_warning("cpu", "bf16", native) is None
    msg = precision_warning(torch.device("cpu"), "fp16", native)
    assert msg is not None and "no native fp16 support" in msg and "slower than fp32" in msg
    assert precision_warning("cuda", "fp16", native) is None  # only CPUs are checked
    assert calls == ["bf16", "fp16"]


@pytest.mark.slow
def test_head_chunking_does_not_change_results(model):
    x = torch.randn(3, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    head = model.depth_head
    saved = (head.frame_chunk, head.chunk_elements)
    with torch.inference_mode():
        ref = model(x)
        assert head.fine_chunk(3, 3, 4) == 3  # small maps: one chunk under the default budget
        try:
            head.frame_chunk = 1
            assert head.fine_chunk(3, 3, 4) == 1
            chunked = model(x)
            head.frame_chunk, head.chunk_elements = None, 32 * 42 * 56 * 2  # budget of two images
            assert head.fine_chunk(3, 3, 4) == 2
            budget = model(x)
        finally:
            head.frame_chunk, head.chunk_elements = saved
    assert torch.allclose(chunked, ref, atol=1e-5) and torch.allclose(budget, ref, atol=1e-5)

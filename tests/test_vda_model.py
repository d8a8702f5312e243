"""Video-Depth-Anything network: state_dict layout, pf-v1 forward goldens, temporal head details.

Tolerance 1e-4 absolute on outputs of 0..6.6 (see tests/fixtures/README.md: upstream float noise
<= 1.5e-5, structural mistakes >= 0.28; GEGLU with tanh-GELU 8e-4; eps mistakes only 3e-5 to 6e-5,
which is why eps values are checked directly below).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mvda.device import autocast_context
from depth_anything_v2.dinov2 import DinoVisionTransformer
from depth_anything_v2.checkpoint import load_strict
from tests.helpers import load_golden
from tests.procedural import fill_problems, layout_problems, procedural_state_dict
from video_depth_anything import MODEL_CONFIGS, VideoDepthAnything
from video_depth_anything.motion_module import GEGLU, TemporalAttention, TemporalModule

import video_depth_anything.inference as vda_inference


TOL = 1e-4


@pytest.fixture
def model(pf_v1_vda_vits) -> VideoDepthAnything:
    return pf_v1_vda_vits[False]


@pytest.fixture(scope="module")
def golden32():
    return load_golden("golden_vda_vits_forward")


# -- layout ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder", ["vits", pytest.param("vitb", marks=pytest.mark.slow),
                                     pytest.param("vitl", marks=pytest.mark.slow)])
def test_state_dict_matches_manifests_and_loads_pf_v1(encoder, network_manifests):
    """Relative and metric manifests (identical layouts) against models built with metric False/True:
    exact layout, strict pf-v1 load, fill sums. The pf-v1 state is built once for both."""
    manifests = network_manifests
    man = manifests[f"vda_{encoder}"]
    state = procedural_state_dict([{"key": e[0], "shape": e[1], "kind": e[3]} for e in man["entries"]])
    for metric in (False, True):
        name = f"vda_metric_{encoder}" if metric else f"vda_{encoder}"
        assert manifests[name]["config"] == MODEL_CONFIGS[encoder]
        with torch.device("meta"):  # no random init of up to 1.5 GB
            model = VideoDepthAnything(**MODEL_CONFIGS[encoder], metric=metric)
        assert layout_problems(model, manifests[name]) == []
        load_strict(model, state, source=name, assign=True)
        assert fill_problems(model.state_dict(), manifests[name]) == []
        assert not any(t.is_meta for t in model.state_dict().values())
        assert model.metric is metric
        del model


def test_encoder_is_the_depth_anything_v2_one(model):
    assert type(model.pretrained) is DinoVisionTransformer


def test_positional_tables_are_persistent_sinusoids(model):
    tables = {k: v for k, v in model.state_dict().items() if k.endswith("pos_encoder.pe")}
    assert len(tables) == 8
    for key, pe in tables.items():
        assert pe.shape[:2] == (1, 32)
        d = pe.shape[2]
        t = 5
        i = 3
        w = math.exp(2 * i * (-math.log(10000.0) / d))
        assert pe[0, t, 2 * i].item() == pytest.approx(math.sin(t * w), abs=1e-6)
        assert pe[0, t, 2 * i + 1].item() == pytest.approx(math.cos(t * w), abs=1e-6)
    fresh = VideoDepthAnything(**MODEL_CONFIGS["vits"]).state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in tables.items())  # built, not just loaded


# -- goldens ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_forward_t32_matches_golden(model, golden32):
    with torch.inference_mode():
        out = model(torch.from_numpy(golden32["input"]))
    assert out.shape == (1, 32, 56, 56)
    assert np.abs(out.numpy() - golden32["output"]).max() <= TOL


@pytest.mark.slow
def test_forward_t8_matches_golden(model):
    z = load_golden("golden_vda_vits_forward_t8")
    with torch.inference_mode():
        out = model(torch.from_numpy(z["input"]))
    assert out.shape == (1, 8, 56, 56)
    assert np.abs(out.numpy() - z["output"]).max() <= TOL


@pytest.mark.slow
def test_chunking_does_not_change_results(model, golden32):
    x = torch.from_numpy(golden32["input"][:, :12])
    with torch.inference_mode():
        ref = model(x)
        saved = (model.encoder_chunk, model.head.frame_chunk,
                 [m.temporal_transformer.max_chunk_elements for m in model.head.motion_modules])
        try:
            model.encoder_chunk, model.head.frame_chunk = 5, 3
            for m in model.head.motion_modules:
                m.temporal_transformer.max_chunk_elements = 12 * 64 * 7  # a few positions per chunk
            out = model(x)
        finally:
            model.encoder_chunk, model.head.frame_chunk = saved[0], saved[1]
            for m, v in zip(model.head.motion_modules, saved[2]):
                m.temporal_transformer.max_chunk_elements = v
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.slow
def test_batch_of_clips_equals_clips_one_by_one(model, golden32):
    x = torch.from_numpy(golden32["input"][:, :4])
    pair = torch.cat([x, x.flip(1)])
    with torch.inference_mode():
        both = model(pair)
        one = model(x)
        two = model(x.flip(1))
    assert both.shape == (2, 4, 56, 56)
    assert torch.allclose(both[0], one[0], atol=1e-5) and torch.allclose(both[1], two[0], atol=1e-5)
    # frames interact through time: a reversed clip is not the reversed output
    assert not torch.allclose(two[0], one[0].flip(0), atol=1e-3)


@pytest.mark.slow
def test_bf16_autocast_error_against_fp32_golden(model, golden32):
    """bf16 autocast on CPU: measured max |err| 0.13, mean 0.02 on outputs of 0..6.6; output float32
    because output_conv2 runs in float32 as in the official head."""
    with torch.inference_mode(), autocast_context(torch.device("cpu"), "bf16"):
        out = model(torch.from_numpy(golden32["input"]))
    assert out.dtype == torch.float32
    err = np.abs(out.numpy() - golden32["output"])
    assert err.max() < 0.4 and err.mean() < 0.06
    assert err.max() > TOL


@pytest.mark.slow
def test_infer_video_depth_delegates_to_inference(model):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 20, 30, 3), dtype=np.uint8)
    depth, fps = model.infer_video_depth(frames, 24, input_size=28, device="cpu", fp32=True)
    direct, fps2 = vda_inference.infer_video_depth(model, frames, 24, input_size=28, device="cpu", fp32=True)
    assert fps == fps2 == 24 and depth.shape == (3, 20, 30)
    np.testing.assert_array_equal(depth, direct)


# -- temporal head details the tolerance cannot see ---------------------------------------------------------

def test_normalisation_eps(model):
    group_norms = [m for m in model.head.modules() if isinstance(m, nn.GroupNorm)]
    assert len(group_norms) == 4
    assert all(m.eps == 1e-6 and m.num_groups == 32 and m.affine for m in group_norms)
    temporal_ln = [m for m in model.head.motion_modules.modules() if isinstance(m, nn.LayerNorm)]
    assert len(temporal_ln) == 4 * 3  # norms.0, norms.1, ff_norm per module
    assert all(m.eps == 1e-5 for m in temporal_ln)  # nn.LayerNorm default, as upstream
    encoder_ln = [m for m in model.pretrained.modules() if isinstance(m, nn.LayerNorm)]
    assert len(encoder_ln) == 25 and all(m.eps == 1e-6 for m in encoder_ln)


def test_geglu_uses_exact_gelu():
    torch.manual_seed(0)
    geglu = GEGLU(2, 3)
    x = torch.randn(4, 2)
    with torch.no_grad():
        hidden, gate = geglu.proj(x).chunk(2, dim=-1)
        # exact GELU: g * Phi(g) with the normal CDF through erf
        exact = hidden * gate * 0.5 * (1 + torch.erf(gate / math.sqrt(2)))
        tanh = hidden * F.gelu(gate, approximate="tanh")
        got = geglu(x)
    assert torch.allclose(got, exact, atol=1e-6)
    assert not torch.allclose(got, tanh, atol=1e-6)


def test_temporal_attention_against_written_out_formula():
    torch.manual_seed(0)
    attn = TemporalAttention(16, heads=8, temporal_max_len=32).eval()
    x = torch.randn(3, 5, 16)  # 3 positions, 5 frames
    with torch.no_grad():
        y = x + attn.pos_encoder.pe[:, :5]
        q = attn.to_q(y).reshape(3, 5, 8, 2).transpose(1, 2)
        k = attn.to_k(y).reshape(3, 5, 8, 2).transpose(1, 2)
        v = attn.to_v(y).reshape(3, 5, 8, 2).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) * 2 ** -0.5, dim=-1)
        ref = attn.to_out[0]((w @ v).transpose(1, 2).reshape(3, 5, 16))
        got = attn(x)
    assert torch.allclose(got, ref, atol=1e-6)
    assert attn.to_q.bias is None and attn.to_out[0].bias is not None
    with pytest.raises(ValueError, match="exceed"):
        attn(torch.zeros(1, 33, 16))


def test_motion_module_frame_major_and_5d_forms_agree():
    torch.manual_seed(0)
    mm = TemporalModule(32).eval()
    x = torch.randn(2, 32, 6, 3, 4)  # (B, C, T, h, w)
    with torch.no_grad():
        five = mm(x)
        frames = mm.forward_frames(x.transpose(1, 2).reshape(12, 32, 3, 4), 6)
    assert five.shape == x.shape
    assert torch.allclose(frames.reshape(2, 6, 32, 3, 4).transpose(1, 2), five, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of num_frames"):
        mm.forward_frames(torch.zeros(5, 32, 2, 2), 2)


def test_motion_module_reference_layout():
    """The official implementation rearranges (B*T, hw, C) tokens to (B*hw, T, C) around each attention;
    our single (B, hw, T, C) layout must give the same numbers."""
    torch.manual_seed(1)
    mm = TemporalModule(32).eval()
    tt = mm.temporal_transformer
    b, c, t, h, w = 1, 32, 4, 2, 3
    x = torch.randn(b, c, t, h, w)
    with torch.no_grad():
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        tokens = tt.norm(frames).permute(0, 2, 3, 1).reshape(b * t, h * w, c)
        tokens = tt.proj_in(tokens)
        blk = tt.transformer_blocks[0]
        for attn, norm in zip(blk.attention_blocks, blk.norms):
            seq = norm(tokens).reshape(b, t, h * w, c).transpose(1, 2).reshape(b * h * w, t, c)
            out = attn(seq).reshape(b, h * w, t, c).transpose(1, 2).reshape(b * t, h * w, c)
            tokens = out + tokens
        tokens = blk.ff(blk.ff_norm(tokens)) + tokens
        tokens = tt.proj_out(tokens).reshape(b * t, h, w, c).permute(0, 3, 1, 2)
        ref = (tokens + frames).reshape(b, t, c, h, w).transpose(1, 2)
        got = mm(x)
    assert torch.allclose(got, ref, atol=1e-5)


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="ape"):
        VideoDepthAnything(**MODEL_CONFIGS["vits"], pe="rope")
    with pytest.raises(ValueError, match="shape"):
        VideoDepthAnything(**MODEL_CONFIGS["vits"])(torch.zeros(1, 3, 28, 28))


@pytest.mark.slow
def test_encode_and_head_compose_to_forward(model, golden32):
    """``encode`` and ``head`` are public (the convert pipeline reuses keyframe features): composed as in
    ``forward`` they give the same output."""
    x = torch.from_numpy(golden32["input"][0, :6])
    with torch.inference_mode():
        saved = model.encoder_chunk
        try:
            model.encoder_chunk = 4
            feats = model.encode(x)
        finally:
            model.encoder_chunk = saved
        direct = model.pretrained.get_intermediate_layers(x, [2, 5, 8, 11], return_class_token=True)
        depth = F.relu(model.head(feats, 4, 4, 6)).squeeze(1)
        ref = model(x[None])[0]
    assert len(feats) == 4
    for (t, c), (t2, c2) in zip(feats, direct):
        assert t.shape == (6, 16, 384) and c.shape == (6, 384)
        assert torch.allclose(t, t2, atol=1e-5) and torch.allclose(c, c2, atol=1e-5)
    assert depth.shape == (6, 56, 56) and torch.allclose(depth, ref, atol=1e-5)


@pytest.mark.slow
def test_linear_layers_get_contiguous_inputs(model):
    """Performance guard: a strided 3-D input makes F.linear expand its weight into a batched matmul
    (one weight copy per row). Every Linear of the network must see a contiguous input."""
    seen: list[tuple[str, bool]] = []
    handles = [
        mod.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, args[0].is_contiguous())))
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear)
    ]
    try:
        x = torch.randn(1, 3, 3, 28, 42)
        with torch.inference_mode():
            model(x)
            with autocast_context(torch.device("cpu"), "bf16"):
                model(x)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) > 100
    assert [name for name, ok in seen if not ok] == []

"""Checkpoint tables (depth_anything_v2.hub, video_depth_anything.hub) and the one generic strict
checkpoint loader they share (depth_anything_v2.checkpoint).

Checkpoints are pf-v1 procedural state_dicts written to tmp_path; the hub is only ever reached in
offline mode against a cache directory under tmp_path, so these tests never touch the network.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mvda.device import resolve_device

import depth_anything_v2
import depth_anything_v2.checkpoint as generic
import depth_anything_v2.hub as dav2_hub
import video_depth_anything
import video_depth_anything.hub as vda_hub
from depth_anything_v2 import DepthAnythingV2
from depth_anything_v2.dpt import MODEL_CONFIGS as DAV2_CONFIGS
from depth_anything_v2.checkpoint import CheckpointError, read_state_dict, resolve_checkpoint
from depth_anything_v2.hub import load_depth_anything_v2_metric
from tests.procedural import procedural_state_dict
from video_depth_anything import VideoDepthAnything, load_video_depth_anything
from video_depth_anything.video_depth import MODEL_CONFIGS as VDA_CONFIGS


@pytest.fixture(scope="module")
def vda_vits_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        model = VideoDepthAnything(**VDA_CONFIGS["vits"])
    return procedural_state_dict(model)  # the state of the procedural_checkpoints["vda"] file


def _assert_state_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(state)
    for key, value in state.items():
        assert torch.equal(got[key], value), key


# -- tables -------------------------------------------------------------------------------------------

def test_vda_checkpoint_table_is_pinned():
    expected = {
        ("vits", False): ("depth-anything/Video-Depth-Anything-Small", "video_depth_anything_vits.pth"),
        ("vitb", False): ("depth-anything/Video-Depth-Anything-Base", "video_depth_anything_vitb.pth"),
        ("vitl", False): ("depth-anything/Video-Depth-Anything-Large", "video_depth_anything_vitl.pth"),
        ("vits", True): ("depth-anything/Metric-Video-Depth-Anything-Small", "metric_video_depth_anything_vits.pth"),
        ("vitb", True): ("depth-anything/Metric-Video-Depth-Anything-Base", "metric_video_depth_anything_vitb.pth"),
        ("vitl", True): ("depth-anything/Metric-Video-Depth-Anything-Large", "metric_video_depth_anything_vitl.pth"),
    }
    got = {k: (s.repo_id, s.filename) for k, s in vda_hub.VDA_CHECKPOINTS.items()}
    assert got == expected
    assert vda_hub.checkpoint_spec("vitb", metric=True).filename == "metric_video_depth_anything_vitb.pth"


def test_dav2_metric_checkpoint_table_is_pinned():
    sizes = {"vits": "Small", "vitb": "Base", "vitl": "Large"}
    names = {"hypersim": "Hypersim", "vkitti": "VKITTI"}
    for (dataset, encoder), spec in dav2_hub.DAV2_METRIC_CHECKPOINTS.items():
        assert spec.repo_id == f"depth-anything/Depth-Anything-V2-Metric-{names[dataset]}-{sizes[encoder]}"
        assert spec.filename == f"depth_anything_v2_metric_{dataset}_{encoder}.pth"
        assert spec.max_depth == {"hypersim": 20.0, "vkitti": 80.0}[dataset]
    assert len(dav2_hub.DAV2_METRIC_CHECKPOINTS) == 6
    assert dav2_hub.checkpoint_spec("vits", "vkitti").repo_id == "depth-anything/Depth-Anything-V2-Metric-VKITTI-Small"
    with pytest.raises(ValueError, match="hypersim"):
        dav2_hub.checkpoint_spec("vits", "nyu")
    with pytest.raises(ValueError, match="encoder"):
        vda_hub.checkpoint_spec("vitg")


def test_default_dirs_come_from_package_location_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vda_root = Path(video_depth_anything.__file__).resolve().parents[1]
    dav2_root = Path(depth_anything_v2.__file__).resolve().parents[1]
    assert vda_root.name == "Video-Depth-Anything" and dav2_root.name == "Depth-Anything-V2"
    assert vda_hub.checkpoint_spec("vits").local_path == vda_root / "checkpoints" / "video_depth_anything_vits.pth"
    assert dav2_hub.checkpoint_spec("vitl", "hypersim").local_path == (
        dav2_root / "metric_depth" / "checkpoints" / "depth_anything_v2_metric_hypersim_vitl.pth"
    )


def test_one_generic_loader_serves_both_tables():
    # Each network keeps its own table; the generic names stay importable from the old places.
    for name in ("CheckpointError", "CheckpointSpec", "resolve_checkpoint", "download_checkpoint", "hub_unreachable",
                 "read_state_dict", "remap_state_dict", "load_strict", "build_from_checkpoint", "INSTALL_COMMAND"):
        assert getattr(dav2_hub, name) is getattr(generic, name), name
    assert vda_hub.CheckpointError is generic.CheckpointError is depth_anything_v2.CheckpointError
    specs = list(dav2_hub.DAV2_METRIC_CHECKPOINTS.values()) + list(vda_hub.VDA_CHECKPOINTS.values())
    assert all(type(spec) is generic.CheckpointSpec for spec in specs)
    assert {spec.family for spec in specs} == {"dav2_metric", "vda", "vda_metric"}


def test_networks_never_import_mvda():
    code = ("import sys, depth_anything_v2, depth_anything_v2.hub, video_depth_anything, video_depth_anything.inference; "
            "sys.exit(sorted(m for m in sys.modules if m == 'mvda' or m.startswith('mvda.')) != [])")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(root / d) for d in ("Depth-Anything-V2", "Video-Depth-Anything"))}
    assert subprocess.run([sys.executable, "-c", code], cwd=root / "tests", env=env).returncode == 0


def test_cli_treats_the_generic_checkpoint_error_as_a_user_error():
    from mvda.cli import _user_error_types

    assert generic.CheckpointError in _user_error_types()


# -- loading ------------------------------------------------------------------------------------------

def test_load_vda_from_explicit_path(procedural_checkpoints, vda_vits_state):
    model = load_video_depth_anything("vits", metric=True, checkpoint=procedural_checkpoints["vda"], device="cpu")
    assert isinstance(model, VideoDepthAnything) and model.metric and not model.training
    assert model.device.type == "cpu"
    _assert_state_equal(model, vda_vits_state)


def test_load_strips_module_prefix_and_unwraps_model_dict(tmp_path, vda_vits_state):
    prefixed = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in vda_vits_state.items()}, prefixed)
    _assert_state_equal(load_video_depth_anything("vits", checkpoint=prefixed), vda_vits_state)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": dict(vda_vits_state), "epoch": 3}, wrapped)
    _assert_state_equal(load_video_depth_anything("vits", checkpoint=wrapped), vda_vits_state)


def test_load_dav2_metric_sets_max_depth(procedural_checkpoints):
    path = procedural_checkpoints["dav2"]
    loaded = load_depth_anything_v2_metric("vits", dataset="vkitti", checkpoint=path)
    assert loaded.max_depth == 80.0
    with torch.device("meta"):
        model = DepthAnythingV2(**DAV2_CONFIGS["vits"])
    _assert_state_equal(loaded, procedural_state_dict(model))
    assert load_depth_anything_v2_metric("vits", "hypersim", checkpoint=path).max_depth == 20.0
    assert load_depth_anything_v2_metric("vits", "hypersim", checkpoint=path, max_depth=10).max_depth == 10.0


def test_bad_checkpoint_lists_missing_unexpected_and_mismatched_keys(tmp_path, vda_vits_state):
    state = dict(vda_vits_state)
    del state["head.scratch.output_conv1.bias"]
    state["head.extra.weight"] = torch.zeros(3)
    state["pretrained.norm.weight"] = torch.zeros(5)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_video_depth_anything("vits", checkpoint=path)
    err = info.value
    msg = str(err)
    assert "\n" not in msg
    assert "1 missing keys [head.scratch.output_conv1.bias]" in msg
    assert "1 unexpected keys [head.extra.weight]" in msg
    assert "pretrained.norm.weight (5,) vs model (384,)" in msg
    assert err.missing == ["head.scratch.output_conv1.bias"]
    assert err.unexpected == ["head.extra.weight"]
    assert err.mismatched == ["pretrained.norm.weight"]


def test_wrong_encoder_or_family_is_rejected(procedural_checkpoints):
    with pytest.raises(CheckpointError, match=r"does not match VideoDepthAnything\('vitb'\).*shape mismatches"):
        load_video_depth_anything("vitb", checkpoint=procedural_checkpoints["vda"])
    with pytest.raises(CheckpointError, match=r"DepthAnythingV2\('vits'\).*missing keys.*unexpected keys") as info:
        load_depth_anything_v2_metric("vits", checkpoint=procedural_checkpoints["vda"])
    with torch.device("meta"):
        head_keys = [k for k in DepthAnythingV2(**DAV2_CONFIGS["vits"]).state_dict() if k.startswith("depth_head.")]
    assert info.value.missing == head_keys  # the encoder keys are shared, the head has another name
    assert "\n" not in str(info.value)
    assert "... (" in str(info.value)  # long lists are cut


def test_unreadable_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(junk)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_state_dict(notdict)
    with pytest.raises(CheckpointError, match="absent.pth does not exist"):
        load_video_depth_anything("vits", checkpoint=tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="is not a file.*video_depth_anything_vits.pth"):
        load_video_depth_anything("vits", checkpoint=tmp_path)


def _isolate(monkeypatch, tmp_path, metric: bool = True, encoder: str = "vitl"):
    """Point the VDA spec at an empty local dir and the HF cache at tmp_path, offline."""
    key = (encoder, metric)
    spec = dataclasses.replace(vda_hub.VDA_CHECKPOINTS[key], local_dir=tmp_path / "local")
    monkeypatch.setitem(vda_hub.VDA_CHECKPOINTS, key, spec)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return spec


def test_missing_checkpoint_offline_gives_one_line_message(tmp_path, monkeypatch):
    spec = _isolate(monkeypatch, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_video_depth_anything("vitl", metric=True)
    msg = str(info.value)
    assert "\n" not in msg
    for part in ("depth-anything/Metric-Video-Depth-Anything-Large", "metric_video_depth_anything_vitl.pth",
                 str(spec.local_path), "bash install_mvda.sh", "offline"):
        assert part in msg, part


def test_missing_checkpoint_without_download(tmp_path, monkeypatch):
    key = ("vkitti", "vits")
    spec = dataclasses.replace(dav2_hub.DAV2_METRIC_CHECKPOINTS[key], local_dir=tmp_path)
    monkeypatch.setitem(dav2_hub.DAV2_METRIC_CHECKPOINTS, key, spec)
    with pytest.raises(CheckpointError, match="downloading is disabled.*Depth-Anything-V2-Metric-VKITTI-Small"):
        load_depth_anything_v2_metric("vits", "vkitti", download=False)


def test_default_local_dir_is_used(tmp_path, monkeypatch, vda_vits_state):
    spec = _isolate(monkeypatch, tmp_path, metric=False, encoder="vits")
    spec.local_dir.mkdir()
    torch.save(vda_vits_state, spec.local_path)
    assert vda_hub.checkpoint_path("vits") == spec.local_path
    _assert_state_equal(load_video_depth_anything("vits"), vda_vits_state)


def test_offline_mode_uses_the_hf_home_cache(tmp_path, monkeypatch, vda_vits_state):
    spec = _isolate(monkeypatch, tmp_path, metric=False, encoder="vits")
    # Hugging Face cache layout: HF_HOME/hub/models--org--name/{refs/main, snapshots/<rev>/<file>}
    repo_dir = tmp_path / "hf" / "hub" / ("models--" + spec.repo_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(rev)
    snap = repo_dir / "snapshots" / rev
    snap.mkdir(parents=True)
    torch.save(vda_vits_state, snap / spec.filename)
    path = resolve_checkpoint(spec)
    assert path == snap / spec.filename
    _assert_state_equal(load_video_depth_anything("vits"), vda_vits_state)


def test_loaded_model_runs(procedural_checkpoints):
    model = load_video_depth_anything("vits", checkpoint=procedural_checkpoints["vda"], device=resolve_device("auto"))
    x = torch.zeros(1, 2, 3, 28, 28, device=model.device)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (1, 2, 28, 28) and torch.isfinite(out).all()

"""benchmarks/gpu_check.py (issue 16) on the CPU: its pieces, and the whole quick run (slow).

The GPU figures themselves need a CUDA machine (see the script's header); here the CPU path of every part
runs on tiny sizes, and the report's structure and the golden / fp16 / warp checks are verified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gpu_check as gc

REPO = Path(__file__).resolve().parents[1]


def test_warp_scenes_are_valid_and_cpu_configurations_agree():
    scenes = gc.warp_scenes(24, 32)
    assert set(scenes) == {"fronto_plane", "slanted_plane", "box_before_wall", "soft_box_before_wall", "random_edges"}
    for colour, depth in scenes.values():
        assert colour.shape == (24, 32, 3) and colour.dtype == np.uint8
        assert depth.shape == (24, 32) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and depth.min() > 0.5 and depth.max() < 20
        res = gc.compare_warp(colour, depth, torch.device("cpu"))
        assert res["max_colour_diff"] == 0 and res["differing_pixels"] == 0 and res["filled_mask_differences"] == 0
        assert res["disparity_px"][1] > 1  # the eyes really move
    # the slanted plane spans a range of depths, the box scene two
    assert np.ptp(scenes["slanted_plane"][1]) > 1.0
    assert set(np.unique(scenes["box_before_wall"][1])) == {1.5, 4.0}


def test_budget_gives_correctness_parts_all_but_the_reserve_and_splits_the_rest():
    budget = gc.Budget(100.0, list(gc.PARTS))
    left = budget.begin("goldens")
    later = sum(gc.RESERVE[p] for p in gc.PARTS[1:])
    assert left == pytest.approx(100.0 * (1 - later), abs=0.5)
    left = budget.begin("convert")
    shares = sum(gc.SHARES[p] for p in ("convert", "networks", "stereo"))
    assert left == pytest.approx(100.0 * gc.SHARES["convert"] / shares, abs=0.5)
    assert budget.begin("stereo") == pytest.approx(100.0, abs=0.5)  # the last part gets what is left
    assert budget.left() == pytest.approx(100.0, abs=0.5)


def _cuda_report(fps_l: float, ratio: float) -> dict:
    return {
        "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "quick": False, "torch": "2.11", "cuda": "13.0",
        "parts": {
            "goldens": {"errors": {"a": {"max": 2e-5, "mean": 1e-6}}, "max_error": 2e-5, "pass": True, "status": "ok"},
            "convert": {"status": "ok", "pairs": {"vitl/vitl": {
                "short": {"fps": 20.0, "frames": 60, "size": [1080, 1920], "input_size": 518, "precision": "fp16",
                          "peak_memory_mib": 1000.0, "stages_fraction": {"decode": 0.1, "vda": 0.6}},
                "long": {"fps": fps_l, "frames": 600, "size": [1080, 1920], "input_size": 518, "precision": "fp16",
                         "peak_memory_mib": 1000.0 * ratio, "gpu_busy_fraction": 0.9, "gpu_busy_method": "pynvml"},
                "memory_ratio_long_vs_short": ratio}}},
            "stereo": {"status": "error: boom"},
        },
    }


def test_goals_pass_and_fail_on_a_cuda_report():
    goals = {g["goal"]: g for g in gc.evaluate_goals(_cuda_report(30.0, 1.05))}
    assert goals["goldens float32, TF32 off"]["pass"] is True
    assert goals["conversion vitl/vitl >= 25 frames/s"]["pass"] is True
    assert "30.00 frames/s" in goals["conversion vitl/vitl >= 25 frames/s"]["detail"]
    assert "GPU busy 90 %" in goals["conversion vitl/vitl >= 25 frames/s"]["detail"]
    memory = [g for g in goals.values() if g["goal"].startswith("peak memory")]
    assert len(memory) == 1 and memory[0]["pass"] is True
    goals = gc.evaluate_goals(_cuda_report(20.0, 1.2))
    assert [g["pass"] for g in goals] == [True, False, False]
    lines = gc.summary_lines(_cuda_report(20.0, 1.2))
    assert lines[0].startswith("GPU check on NVIDIA H100 80GB HBM3 (cuda")
    assert sum(line.startswith("FAIL") for line in lines) == 2
    assert "NOTE part stereo: error: boom" in lines
    cpu = {**_cuda_report(30.0, 1.05), "device": "cpu"}
    assert [g["pass"] for g in gc.evaluate_goals(cpu)] == [True, None, None]  # speed goals: CUDA only


def test_official_fp16_emulation_only_acts_under_autocast():
    from tests.procedural import procedural_state_dict
    from video_depth_anything import MODEL_CONFIGS, VideoDepthAnything

    model = VideoDepthAnything(**MODEL_CONFIGS["vits"])
    model.load_state_dict(procedural_state_dict(model), strict=True)
    model.eval()
    x = torch.from_numpy(np.load(gc.FIXTURES / "golden_vda_vits_forward_t8.npz")["input"][:, :2])
    with torch.inference_mode():
        ours = model(x)
        seen: dict = {}
        with gc.official_fp16(model, seen):
            same = model(x)
        assert torch.equal(ours, same) and seen == {"head": "torch.float32", "motion": "torch.float32"}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours_bf16 = model(x)
            with gc.official_fp16(model, seen):
                official_bf16 = model(x)
    assert seen["head"] == "torch.bfloat16" and official_bf16.dtype == torch.bfloat16
    assert ours_bf16.dtype == torch.float32  # ours keeps the head output in float32
    diff = (official_bf16.float() - ours_bf16).abs().max().item()
    assert 0 < diff < 0.5
    # the patches are gone afterwards
    assert all("forward_frames" not in vars(m.temporal_transformer) for m in model.head.motion_modules)
    assert not model.head._forward_hooks


def test_bad_arguments():
    assert gc.main(["--only", "goldens,bogus", "--out", "/nonexistent/never"]) == 2
    assert gc.main(["--budget_s", "0", "--out", "/nonexistent/never"]) == 2


@pytest.mark.slow
def test_quick_cpu_run_writes_report_and_goldens_pass(tmp_path):
    """The whole quick CPU run (about 2 minutes on a loaded 2-core VM), as the issue's command runs it."""
    out = tmp_path / "gc"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out),
                           "--workdir", str(tmp_path / "work")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    summary = (out / "gpu_check.txt").read_text().splitlines()
    assert summary[0].startswith("GPU check on CPU") and summary == report["summary"]
    assert report["device"] == "cpu" and report["quick"] is True and report["issue"] == 16
    assert list(report["parts"]) == list(gc.PARTS)
    for name, part in report["parts"].items():
        assert part["status"] == "ok", (name, part.get("traceback"))
        assert part["seconds"] >= 0
    goldens = report["parts"]["goldens"]
    assert set(goldens["errors"]) == set(gc.GOLDEN_NAMES) and goldens["pass"] is True
    assert all(e["max"] <= gc.GOLDEN_TOL for e in goldens["errors"].values())
    fp16 = report["parts"]["fp16"]
    assert fp16["pass"] is True and fp16["official_style"] and fp16["ours_minus_official_style"]
    assert fp16["official_style_dtypes"]["head"] == "torch.float16" and fp16["ours_dtypes"]["head"] == "torch.float32"
    warp = report["parts"]["stereo_warp"]
    assert warp["pass"] is True and warp["max_colour_diff"] == 0 and len(warp["scenes"]) == 6
    pair = report["parts"]["convert"]["pairs"]["vits/vits"]
    assert pair["short"]["frames"] == 8 and pair["long"]["frames"] == 36
    assert set(pair["short"]["stages_seconds"]) >= {"decode", "vda", "dav2", "fit", "encode"}
    assert pair["long"]["gpu_busy_fraction"] is None and pair["long"]["fps"] > 0
    rows = report["parts"]["networks"]["rows"]
    assert [(r["model"], r["impl"]) for r in rows] == [("vda", "ours"), ("vda", "reference"), ("dav2", "ours"),
                                                       ("dav2", "reference")]
    assert all(r["max_abs_diff_ours_vs_reference"] < 1e-4 for r in rows if r["impl"] == "reference")
    stereo = report["parts"]["stereo"]
    assert stereo["render"]["median_fps"] > 0 and stereo["io"]["frames"] == 6
    goals = {g["goal"]: g["pass"] for g in report["goals"]}
    assert goals["goldens float32, TF32 off"] is True
    assert all(v is None for k, v in goals.items() if "frames/s" in k or "reference" in k)  # not a GPU


def test_busy_sampler_uses_nvml_else_reports_why(monkeypatch):
    class Rates:
        gpu = 50

    class FakeNvml:
        @staticmethod
        def nvmlInit():
            pass

        @staticmethod
        def nvmlDeviceGetHandleByIndex(index):
            return index

        @staticmethod
        def nvmlDeviceGetUtilizationRates(handle):
            return Rates()

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml)
    with gc.BusySampler(torch.device("cuda:0"), interval=0.01) as sampler:
        import time

        time.sleep(0.1)
    assert sampler.method == "pynvml" and sampler.fraction == 0.5 and len(sampler.samples) >= 2
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi either
    with gc.BusySampler(torch.device("cuda:0")) as sampler:
        pass
    assert sampler.method is None and sampler.fraction is None
    assert "pynvml" in sampler.error and "nvidia-smi" in sampler.error
    with gc.BusySampler(torch.device("cpu")) as sampler:
        pass
    assert sampler.fraction is None and sampler.error == "not a CUDA device"


def test_watchdog_stops_the_run_and_writes_what_it_has(tmp_path):
    out = tmp_path / "gc"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--budget_s", "4",
                           "--only", "goldens,stereo_warp", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert "overall budget of 4 s spent during part" in report["stopped"]
    assert "stopped by the budget" in [p.get("status") for p in report["parts"].values()]
    summary = (out / "gpu_check.txt").read_text()
    assert summary.startswith("GPU check on CPU") and "NOTE overall budget" in summary

"""Smoke test of benchmarks/bench_fov.py at tiny settings: it runs and prints each figure it reports."""

from __future__ import annotations

import pytest

from tests.helpers import run_module


@pytest.mark.slow
def test_bench_fov_runs_and_reports_every_figure():
    proc = run_module("benchmarks.bench_fov", "--encoders", "vits", "--tokens", "100", "--repeats", "1",
                      "--input_size", "28", "--threads", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "MoGe-2 vits: 35.1M parameters" in out and "MoGe-2 vits 100 tokens per keyframe:" in out
    assert "read: seek 16 keyframes:" in out and "read: decode all 75 frames:" in out
    assert "DA-V2 vitl metric at input 28 per frame" in out
    assert "share of a default conversion, at most, MoGe-2 vits 100 tokens: 10 frames (1 keyframes)" in out

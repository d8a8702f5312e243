"""Smoke test of benchmarks/bench_networks.py on tiny inputs: it runs, writes its JSON rows, and its
upstream-equivalent reference computation agrees with our optimised networks (float32, pf-v1 weights)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_module

MODULE = "benchmarks.bench_networks"  # run from the repo root: it imports tests.procedural


@pytest.mark.slow
def test_bench_networks_runs_and_matches_reference(tmp_path):
    out = tmp_path / "rows.json"
    proc = run_module(MODULE, "--models", "vda,dav2", "--encoders", "vits", "--input_size", "42", "--frames", "3",
                      "--repeat", "1", "--warmup", "0", "--device", "cpu", "--reference", "--json", out, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [(r["model"], r["impl"]) for r in rows] == [
        ("vda", "ours"), ("vda", "reference"), ("dav2", "ours"), ("dav2", "reference")
    ]
    for row in rows:
        assert row["seconds_per_frame"] > 0 and row["frames_per_second"] > 0
    for row in rows[1::2]:
        # same weights and inputs: only float rounding separates the two implementations
        assert row["max_abs_diff_ours_vs_reference"] < 1e-4


def test_bench_networks_rejects_bad_sizes():
    proc = run_module(MODULE, "--input_size", "50", timeout=120)
    assert proc.returncode == 2 and "multiples of 14" in proc.stderr

"""Smoke test of benchmarks/bench_convert.py on a tiny synthetic clip: the sweep (child processes) and
the side-by-side comparison run, and the JSON report holds consistent figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE = ["-m", "benchmarks.bench_convert"]  # run from the repo root: it imports tests.procedural


def test_bench_convert_sweep_and_comparison(tmp_path):
    out = tmp_path / "report.json"
    cmd = [sys.executable, *MODULE, "--height", "36", "--width", "48", "--lengths", "4", "6",
           "--input_size", "28", "--compare_frames", "5", "--compare_size", "28", "--presets", "every4_fp32",
           "--threads", "1", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["frames"] for r in report["sweep"]] == [4, 6]
    assert report["rss_ratio"] == report["sweep"][1]["peak_rss_mib"] / report["sweep"][0]["peak_rss_mib"]
    for res in report["sweep"]:
        assert res["size"] == [36, 48] and res["peak_rss_mib"] > 0
        assert set(res["timings"]) >= {"decode", "vda", "dav2", "fit", "encode"}
    compare = report["compare"]
    assert report["compare_models"] == {"encoder": "vits", "metric_encoder": "vits"}
    assert set(compare["runs"]) == {"original", "fast", "every4_fp32"}
    runs = {p: rs[0] for p, rs in compare["runs"].items()}
    assert runs["original"]["metric_frames"] == 5 and runs["fast"]["metric_frames"] == 2  # frames 0 and 4
    best = compare["best_seconds_per_frame"]
    assert compare["speedup"] == best["original"] / best["fast"]
    # every4_fp32 runs the same networks in the same precision on frames 0 and 4: the output differs
    # from the original only through the fit's statistics, and both stay finite.
    diff = compare["relative_difference_per_preset"]["every4_fp32"]
    assert 0 <= diff["median"] < 0.5 and diff["p95"] >= diff["median"]
    assert 0 <= compare["relative_difference"]["median"] < 0.5


def test_bench_convert_overlap_smoke(tmp_path):
    out = tmp_path / "report.json"
    cmd = [sys.executable, *MODULE, "--overlap", "--overlap_height", "36", "--overlap_width", "48",
           "--overlap_frames", "6", "--threads", "1", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "overlap ratio" in proc.stdout
    overlap = json.loads(out.read_text())["overlap"]
    best = overlap["best"]
    assert overlap["size"] == [36, 48] and overlap["input_size"] == 14 and best["frames"] == 6
    assert overlap["ratio"] == best["convert"] / best["baseline"] > 0
    assert set(best["timings"]) >= {"decode", "vda", "dav2", "fit", "encode"}
    assert best["decode_only"] > 0 and best["baseline_depth"] > 0

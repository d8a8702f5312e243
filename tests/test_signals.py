"""SIGTERM and SIGHUP (what `docker stop`, systemd and `timeout` send) end every script like Ctrl-C:
exit 143 / 129, one line on stderr, and nothing half-written left behind.

Each script runs as a real subprocess on an input long enough to still be running when its hidden
temporary output appears; then the signal is sent from outside, as those tools do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, rolled_noise_frames, write_depth_video, write_lossless_video

SIGNALS = [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")]


def _depth_ramps(frames: int, h: int = 96, w: int = 128):
    """``frames`` depth frames (metres): a ramp that moves right by 1 px a frame, deeper towards the bottom."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (1.0 + 4.0 * (xx + i) % w / w + yy / h for i in range(frames))


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or ".partial-" in p.name
                  or p.suffix == ".f16")


def _run_and_signal(argv: list[str], folder: Path, signum: int, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Start ``argv``, wait for a hidden temporary output in ``folder``, send ``signum``, wait."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(REPO / "Depth-Anything-V2"), str(REPO / "Video-Depth-Anything")]))
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not _hidden(folder):
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"{argv[0]} ended (exit {proc.returncode}) before writing anything:\n{err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{argv[0]} wrote no temporary output within {timeout} s")
            time.sleep(0.02)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _check(result: subprocess.CompletedProcess, code: int, name: str, folder: Path, keep: set[str]) -> None:
    assert result.returncode == code, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and "frame/s" not in line
             and "%|" not in line]
    assert lines[-1].endswith(f"terminated by {name}; no output was finalised"), lines
    assert "Traceback" not in result.stderr
    left = sorted(p.name for p in folder.iterdir())
    assert set(left) == keep, left


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, procedural_checkpoints) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("signal_inputs")
    return {
        **procedural_checkpoints,
        "colour": write_lossless_video(folder / "clip.mkv", rolled_noise_frames(400, 48, 64), fps=25),
        "depth": write_depth_video(folder / "clip_depth.mkv", _depth_ramps(400), fps=25),
    }


@pytest.mark.slow
@pytest.mark.parametrize("fit", ["rolling", "global"])
@pytest.mark.parametrize("signum,code,name", SIGNALS[:1])
def test_convert(inputs, tmp_path, fit, signum, code, name):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["video_metric_convert.py", "--input_video", str(inputs["colour"]), "--output_dir", str(out),
            "--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28", "--fit", fit,
            "--vda_checkpoint", str(inputs["vda"]), "--metric_checkpoint", str(inputs["dav2"]), "--no_progress",
            "--fov", "off"]
    _check(_run_and_signal(argv, out, signum), code, name, out, set())


@pytest.mark.parametrize("signum,code,name", SIGNALS)
def test_stereo(inputs, tmp_path, signum, code, name):
    argv = ["stero_rerender.py", "--video", str(inputs["depth"]), "--xfov", "60", "--infill_mask",
            "--output", str(tmp_path / "s.mp4"), "--no_progress"]
    _check(_run_and_signal(argv, tmp_path, signum), code, name, tmp_path, set())


@pytest.mark.parametrize("signum,code,name", SIGNALS)
def test_grey(inputs, tmp_path, signum, code, name):
    argv = ["rgb_depth_to_greyscale.py", "--video", str(inputs["depth"]), "--bit16",
            "--output", str(tmp_path / "g.mkv"), "--png16", str(tmp_path / "png")]
    _check(_run_and_signal(argv, tmp_path, signum), code, name, tmp_path, set())


@pytest.mark.parametrize("signum,code,name", SIGNALS[:1])
def test_view_render(inputs, tmp_path, signum, code, name):
    argv = ["3d_view_depthfile.py", "--video", str(inputs["depth"]), "--xfov", "60",
            "--render", str(tmp_path / "v.mp4")]
    _check(_run_and_signal(argv, tmp_path, signum), code, name, tmp_path, set())

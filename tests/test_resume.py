"""--resume: parts in {output}.parts/, continued after an interruption, joined into the same file an
uninterrupted run writes (frame for frame); a changed source or changed settings are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mvda.apps.resume as resume
import video_metric_convert
from depth_codec import TAG_SCENE_CUTS
from mvda.io.video import VideoReader
from tests.helpers import REPO, one_line_error, synthetic_frames, terminate, write_lossless_video
from tests.test_scene_cuts import panning_clip

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 36, 48
FPS = 24
#: Parts of at most one second inside a shot: 24 frames, so a part ends after the window that passes them.
PART = ["--part_seconds", "1"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Two shots: 70 frames (several windows, so parts end inside the shot) and 30."""
    frames = np.concatenate([panning_clip(70, seed=2), synthetic_frames(30, H, W, seed=7)])
    return write_lossless_video(tmp_path_factory.mktemp("resume") / "two.mkv", frames, fps=FPS)


def args(checkpoints, clip: Path, out: Path, *extra: str) -> list[str]:
    return ["--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28", "--device", "cpu",
            "--vda_checkpoint", str(checkpoints["vda"]), "--metric_checkpoint", str(checkpoints["dav2"]),
            "--no_progress", "--input_video", str(clip), "--output_dir", str(out), *extra]


def packed(path: Path) -> np.ndarray:
    """The depth file's frames as stored (packed RGB), exactly."""
    with VideoReader(path) as reader:
        return np.stack(list(reader))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, procedural_checkpoints, clip) -> np.ndarray:
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (one_thread): the same arithmetic, the same bits
    try:
        assert video_metric_convert.main(args(procedural_checkpoints, clip, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return packed(out / "two_depth.mkv")


def test_uninterrupted_resume_run_equals_a_plain_run(tmp_path, procedural_checkpoints, clip, reference, capsys):
    assert video_metric_convert.main(args(procedural_checkpoints, clip, tmp_path, "--resume", *PART)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two_depth.mkv"]  # the parts folder is gone
    np.testing.assert_array_equal(packed(tmp_path / "two_depth.mkv"), reference)
    with VideoReader(tmp_path / "two_depth.mkv") as reader:
        assert reader.info.tag(TAG_SCENE_CUTS) == "70"
        assert reader.fps == FPS
    assert ", 2 shots ->" in capsys.readouterr().out


def stop_after_first_part(monkeypatch) -> None:
    """Make the next run stop (as Ctrl-C) right after its first part is recorded (``monkeypatch.undo()``
    lets the following run finish)."""
    original = resume.PartsFolder.finish_part

    def stop(self, *a, **k):
        original(self, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(resume.PartsFolder, "finish_part", stop)


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, procedural_checkpoints, clip, reference, monkeypatch,
                                                       stop_after):
    """Stopped (Ctrl-C) right after part ``stop_after`` was recorded: part 1 ends inside the first shot
    (frames 0-23: the first window's), part 2 at the cut (24-69), part 3 at the end (70-99, before the
    join); the resumed run converts the rest and joins."""
    original = resume.PartsFolder.finish_part
    seen = []
    stop = [True]

    def finish_then_stop(self, *a, **k):
        original(self, *a, **k)
        seen.append(self.parts[-1])
        if stop[0] and len(self.parts) == stop_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume.PartsFolder, "finish_part", finish_then_stop)
    assert video_metric_convert.main(args(procedural_checkpoints, clip, tmp_path, "--resume", *PART)) == 130
    folder = tmp_path / "two_depth.mkv.parts"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["parts"]) == stop_after
    assert not (tmp_path / "two_depth.mkv").exists()
    if stop_after == 1:  # inside the shot: the keyframe features are kept, their inputs once (the stream's)
        state = torch.load(folder / "state.pt", weights_only=True)
        assert state["keyframes"]["inputs"] == "prev_keyframes"
        assert len(state["keyframes"]["features"]) == 4 and state["stream"]["prev_keyframes"].shape[0] == 10
    stop[0] = False
    assert video_metric_convert.main(args(procedural_checkpoints, clip, tmp_path, "--resume", *PART)) == 0
    np.testing.assert_array_equal(packed(tmp_path / "two_depth.mkv"), reference)
    assert not folder.exists()
    starts = [p.start for p in seen]
    assert starts == [0, 24, 70]  # a part ends after a second of video (at a window's end), and at the cut


def test_changed_source_or_settings_are_refused(tmp_path, procedural_checkpoints, clip, monkeypatch, capsys):
    source = tmp_path / "two.mkv"
    source.write_bytes(clip.read_bytes())

    def stop(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(resume.PartsFolder, "finish_part", stop)
    out = tmp_path / "out"
    assert video_metric_convert.main(args(procedural_checkpoints, source, out, "--resume", *PART)) == 130
    monkeypatch.undo()
    assert (out / "two_depth.mkv.parts" / "manifest.json").is_file()
    capsys.readouterr()
    assert video_metric_convert.main(args(procedural_checkpoints, source, out, "--resume", "--max_depth", "9",
                                          *PART)) == 2
    one_line_error(capsys, "cannot resume two_depth.mkv: settings differ", "max_depth")
    write_lossless_video(source, synthetic_frames(20, H, W, seed=1), fps=FPS)
    assert video_metric_convert.main(args(procedural_checkpoints, source, out, "--resume", *PART)) == 2
    one_line_error(capsys, "cannot resume two_depth.mkv: the source video changed")
    assert not (out / "two_depth.mkv").exists()


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the conversion ended (exit {proc.returncode}) too early:\n{proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("fit", ["rolling", "global"])
def test_sigterm_at_several_points_then_resume(tmp_path, procedural_checkpoints, clip, reference, global_reference,
                                               fit):
    """The real thing: the script as a process, SIGTERM while part 1 is written, then after part 2 is
    recorded (``--fit global``: after the first pass's first save, then after the first part); each
    rerun with --resume goes on from the parts; the end result equals an uninterrupted run."""
    out = tmp_path / "out"
    argv = [sys.executable, "video_metric_convert.py",
            *args(procedural_checkpoints, clip, out, "--resume", "--fit", fit, *PART)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(REPO), str(REPO / "Depth-Anything-V2"), str(REPO / "Video-Depth-Anything")]))
    folder = out / "two_depth.mkv.parts"

    def parts_recorded() -> int:
        try:
            return len(json.loads((folder / "manifest.json").read_text())["parts"])
        except (OSError, ValueError):
            return -1

    if fit == "rolling":
        points = (lambda: any(".partial-" in p.name for p in folder.glob("*")) if folder.exists() else False,
                  lambda: parts_recorded() >= 2)
    else:
        points = (lambda: (folder / "pass1.pt").is_file(), lambda: parts_recorded() >= 1)
    for ready in points:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(ready, proc)
        finally:
            err = terminate(proc)
        assert proc.returncode == 143, err[-2000:]
        assert not (out / "two_depth.mkv").exists()
        assert not [p for p in folder.iterdir() if ".partial-" in p.name]  # the unfinished part was removed
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(packed(out / "two_depth.mkv"), reference if fit == "rolling" else global_reference)
    assert sorted(p.name for p in out.iterdir()) == ["two_depth.mkv"]


def test_variable_frame_rate_resume_keeps_the_frame_times(tmp_path, procedural_checkpoints, monkeypatch):
    """A phone's variable-rate clip (40 frames: 30 at 30 fps, 10 at 5 fps), stopped after its first part
    and resumed: the same depth frames at the same times as a plain run."""
    from tests.helpers import write_vfr_clip

    clip = tmp_path / "phone.mp4"
    times = write_vfr_clip(clip, size=(H, W))
    plain = tmp_path / "plain"
    assert video_metric_convert.main(args(procedural_checkpoints, clip, plain)) == 0
    stop_after_first_part(monkeypatch)
    out = tmp_path / "resumed"
    half = ["--part_seconds", "0.5"]  # 15 frames: the first part ends after the first window (24 frames)
    assert video_metric_convert.main(args(procedural_checkpoints, clip, out, "--resume", *half)) == 130
    manifest = json.loads((out / "phone_depth.mkv.parts" / "manifest.json").read_text())
    assert [p["frames"] for p in manifest["parts"]] == [24]
    monkeypatch.undo()
    assert video_metric_convert.main(args(procedural_checkpoints, clip, out, "--resume", *half)) == 0
    np.testing.assert_array_equal(packed(out / "phone_depth.mkv"), packed(plain / "phone_depth.mkv"))
    for path in (plain / "phone_depth.mkv", out / "phone_depth.mkv"):
        with VideoReader(path) as reader:
            list(reader)
            np.testing.assert_allclose(reader.times, times, atol=1.5e-3)


def test_vda_metric_resume(tmp_path, procedural_checkpoints, clip, monkeypatch):
    """--model vda-metric (no DA-V2, no fit): stopped inside the first shot, resumed, the same frames."""
    metric = ["--model", "vda-metric", "--max_len", "60"]
    plain = tmp_path / "plain"
    assert video_metric_convert.main(args(procedural_checkpoints, clip, plain, *metric)) == 0
    stop_after_first_part(monkeypatch)
    out = tmp_path / "resumed"
    assert video_metric_convert.main(args(procedural_checkpoints, clip, out, "--resume", *PART, *metric)) == 130
    monkeypatch.undo()
    assert video_metric_convert.main(args(procedural_checkpoints, clip, out, "--resume", *PART, *metric)) == 0
    np.testing.assert_array_equal(packed(out / "two_depth.mkv"), packed(plain / "two_depth.mkv"))


@pytest.fixture(scope="module")
def global_reference(tmp_path_factory, procedural_checkpoints, clip) -> np.ndarray:
    out = tmp_path_factory.mktemp("global_reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert video_metric_convert.main(args(procedural_checkpoints, clip, out, "--fit", "global")) == 0
    finally:
        torch.set_num_threads(threads)
    return packed(out / "two_depth.mkv")


def stop_at(monkeypatch, cls, method: str, count: int) -> list:
    """Make ``cls.method`` raise KeyboardInterrupt (as Ctrl-C) right after its ``count``-th call; returns
    the list of calls so far (``monkeypatch.undo()`` lets the next run finish)."""
    original = getattr(cls, method)
    calls = []

    def stop(self, *a, **k):
        original(self, *a, **k)
        calls.append(a)
        if len(calls) == count:
            raise KeyboardInterrupt

    monkeypatch.setattr(cls, method, stop)
    return calls


@pytest.mark.parametrize("where", ["pass1-in-shot", "pass1-at-cut", "pass1-done", "pass2-part"])
def test_global_fit_interrupted_then_resumed_equals_uninterrupted(tmp_path, procedural_checkpoints, clip,
                                                                   global_reference, monkeypatch, where):
    """--fit global --resume, stopped (Ctrl-C) in the first pass after its first save (inside the first
    shot: a second of video), after its second (at the cut), after its last (the pass done, nothing
    written yet), or in the second pass after its first part: the resumed run gives the plain run's
    frames, and the first pass's files live in the parts folder until the end."""
    folder = tmp_path / "two_depth.mkv.parts"
    if where.startswith("pass1"):
        stop_at(monkeypatch, resume.PartsFolder, "save_pass1",
                        {"pass1-in-shot": 1, "pass1-at-cut": 2, "pass1-done": 3}[where])
    else:
        stop_at(monkeypatch, resume.PartsFolder, "finish_part", 1)
    run = args(procedural_checkpoints, clip, tmp_path, "--resume", "--fit", "global", *PART)
    assert video_metric_convert.main(run) == 130
    assert (folder / "pass1.f16").is_file() and (folder / "pass1.pt").is_file()
    assert not (tmp_path / "two_depth.mkv").exists()
    state = torch.load(folder / "pass1.pt", weights_only=True)
    if where == "pass1-in-shot":  # the first window's 24 frames stored, the state saved with them
        assert state["written"] == 24 and not state.get("complete")
        assert (folder / "pass1.f16").stat().st_size >= 24 * 2 * 28 * 42
    elif where == "pass1-at-cut":
        assert state["written"] == 70 and state["shot_starts"] == [0, 70] and len(state["fits"]) == 1
    elif where == "pass1-done":
        assert state["complete"] and state["written"] == 100 and len(state["fits"]) == 2
    else:
        assert json.loads((folder / "manifest.json").read_text())["parts"][0]["frames"] == 24
    monkeypatch.undo()
    assert video_metric_convert.main(run) == 0
    np.testing.assert_array_equal(packed(tmp_path / "two_depth.mkv"), global_reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two_depth.mkv"]
    with VideoReader(tmp_path / "two_depth.mkv") as reader:
        assert reader.info.tag(TAG_SCENE_CUTS) == "70"

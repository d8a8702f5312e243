"""video_metric_convert.py --ray: a batch on Ray workers writes what the serial run writes.

One local Ray runtime with 2 CPUs serves this module (started with the code the command line uses,
:class:`RayConnection`; a batch in a process that already has Ray keeps that connection). Workers get
one core each, so two videos run at once, single-threaded like the serial reference run here. The
networks are the vits architectures with procedural weights at ``--input_size 28`` (tests/conftest.py).
The interruption tests run the script as a real subprocess with its own ``--ray local`` runtime.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import mvda.apps.convert as cp
import video_metric_convert
from mvda.apps.ray_batch import VideoWorker, WorkerPlan, plan_workers, results_table, worker_temporaries
from mvda.errors import UserError
from mvda.io.video import VideoWriter, forget_temporary
from tests.helpers import REPO, one_line_error, rolled_noise_frames, synthetic_frames, write_lossless_video

pytestmark = pytest.mark.usefixtures("one_thread")  # the serial reference, like the one-core workers


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Two good clips of different lengths, a file that is no video (fails on the driver) and a video
    too narrow for the networks (fails in its worker)."""
    folder = tmp_path_factory.mktemp("ray_clips")
    for name, n, seed in (("a.mkv", 24, 1), ("b.mkv", 30, 2)):
        with VideoWriter(folder / name, 48, 36, 24, codec="ffv1", pix_fmt="bgr0") as writer:
            for frame in synthetic_frames(n, 36, 48, seed):
                writer.write(frame)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)
    with VideoWriter(folder / "thin.mkv", 2000, 50, 10, codec="ffv1", pix_fmt="bgr0") as writer:
        for i in range(2):
            writer.write(np.full((50, 2000, 3), 40 * i, np.uint8))
    return folder


def cli(checkpoints: dict[str, Path], *extra: str) -> list[str]:
    return ["--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28", "--device", "cpu",
            "--vda_checkpoint", str(checkpoints["vda"]), "--metric_checkpoint", str(checkpoints["dav2"]),
            "--fov", "off", *extra]


def ray_cli(checkpoints: dict[str, Path], *extra: str) -> list[str]:
    return cli(checkpoints, "--ray", "local", "--ray_cpus_per_worker", "1", *extra)


# ---------------------------------------------------------------------------------------------------
# pure parts


def test_plan_workers():
    nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 4.0}]
    assert plan_workers(nodes, "auto", 4, jobs=10) == WorkerPlan(3, 1, 1)  # one per GPU
    assert plan_workers(nodes, "cuda", 4, jobs=2) == WorkerPlan(2, 1, 1)  # no more workers than videos
    assert plan_workers(nodes, "cpu", 4, jobs=10) == WorkerPlan(7, 4, 0)  # --device cpu: per 4 cores
    assert plan_workers(nodes, "cpu", 4, jobs=10, limit=2) == WorkerPlan(2, 4, 0)  # --ray_workers
    assert plan_workers([{"CPU": 2.0}], "auto", 1, jobs=5) == WorkerPlan(2, 1, 0)
    assert plan_workers([{"CPU": 2.0}], "auto", 8, jobs=5) == WorkerPlan(1, 2, 0)  # fits the largest node
    with pytest.raises(UserError, match="no CPU"):
        plan_workers([{"CPU": 0.0}], "auto", 4, jobs=1)


def test_worker_temporaries_are_the_names_the_writers_use(tmp_path):
    """A killed worker's leftovers are found by the names the writer and the global fit really use."""
    from mvda.io.video import _temp_path_for

    output = tmp_path / "clip_depth.mkv"
    ours = [_temp_path_for(output), cp._temp_store_path(output)]
    others = [tmp_path / f".clip_depth.partial-{os.getpid() + 1}-abcdef.mkv", tmp_path / ".other_depth.vda-1.f16",
              tmp_path / "clip_depth.mkv"]
    try:
        for path in ours + others:
            path.write_bytes(b"x")
        assert worker_temporaries(output, os.getpid()) == sorted(ours)
    finally:
        for path in ours:
            forget_temporary(path)


def test_results_table():
    rows = [("video", "result", "frames", "node"), ("a.mkv", "ok", "24", "10.0.0.1"), ("bb.mp4", "failed", "-", "-")]
    assert results_table(rows) == ["video   result  frames  node",
                                   "a.mkv   ok          24  10.0.0.1",
                                   "bb.mp4  failed       -  -"]


def test_without_ray_one_line_says_how_to_install(tmp_path, capsys, monkeypatch, procedural_checkpoints, clips):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where it is not installed
    code = video_metric_convert.main(ray_cli(procedural_checkpoints, "--input_video", str(clips / "a.mkv"),
                                             "--output_dir", str(tmp_path / "out")))
    assert code == 2
    one_line_error(capsys, "install_mvda.sh --ray", alone=True)


def test_base_install_does_not_import_ray():
    code = ("import sys, video_metric_convert, mvda.apps.convert; "
            "sys.exit(any(m == 'ray' or m == 'mvda.apps.ray_batch' for m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(REPO / "Depth-Anything-V2"), str(REPO / "Video-Depth-Anything")]))
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, timeout=120).returncode == 0


# ---------------------------------------------------------------------------------------------------
# on the local runtime


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_batch_writes_the_serial_bytes_and_a_broken_file_fails_alone(ray_runtime, tmp_path, capsys, clips,
                                                                      procedural_checkpoints):
    serial, spread = tmp_path / "serial", tmp_path / "ray"
    assert video_metric_convert.main(cli(procedural_checkpoints, "--input_video", str(clips),
                                         "--output_dir", str(serial), "--no_progress")) == 1
    serial_out = capsys.readouterr().out
    assert video_metric_convert.main(ray_cli(procedural_checkpoints, "--input_video", str(clips),
                                             "--output_dir", str(spread))) == 1
    captured = capsys.readouterr()
    names = ["a_depth.mkv", "b_depth.mkv"]
    assert sorted(p.name for p in spread.iterdir()) == names  # nothing else: no temporaries
    for name in names:
        assert (spread / name).read_bytes() == (serial / name).read_bytes(), name
    lines = captured.out.splitlines()
    # the summary: a line per video (in the order they end), the table, then the batch line as the serial run's
    assert lines[-1] == serial_out.splitlines()[-1] == (
        f"2 converted, 0 skipped, 2 failed: {clips / 'broken.mp4'}, {clips / 'thin.mkv'}")

    def untimed(line: str) -> str:
        return re.sub(r" in [0-9.]+ s \([0-9.]+ frames/s\)", "", line)

    assert sorted(untimed(line) for line in lines[:4]) == sorted(
        untimed(line.replace(str(serial), str(spread))) for line in serial_out.splitlines()[:4])
    assert any(line.startswith("thin.mkv: FAILED:") and "too narrow for the networks" in line for line in lines)
    table = lines[4:9]
    assert table[0].split() == ["video", "result", "frames", "seconds", "node", "worker"]
    rows = {row.split()[0]: row.split() for row in table[1:]}
    assert rows["a.mkv"][1:3] == ["ok", "24"] and rows["b.mkv"][1:3] == ["ok", "30"]
    assert rows["a.mkv"][-2:] == ["1", "cpu"]  # ran on a one-core worker
    assert rows["broken.mp4"][1:] == ["failed", "-", "-", "-", "-"]  # failed on the driver, never sent
    assert rows["thin.mkv"][1] == "failed" and rows["thin.mkv"][-2:] == ["1", "cpu"]  # failed in a worker
    assert "Traceback" not in captured.err
    assert "3/3 videos" in captured.err and "54/54" in captured.err  # one overall bar: videos and frames


def test_skip_existing(ray_runtime, tmp_path, capsys, clips, procedural_checkpoints):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_depth.mkv").write_bytes(b"kept as it is")
    argv = ray_cli(procedural_checkpoints, "--input_video", str(clips / "a.mkv"), str(clips / "b.mkv"),
                   "--output_dir", str(out), "--skip_existing", "--no_progress")
    assert video_metric_convert.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"a.mkv: skipped, {out / 'a_depth.mkv'} exists (--skip_existing)"
    assert lines[1].startswith("b.mkv: 30 frames 48x36")
    assert lines[-1] == "1 converted, 1 skipped, 0 failed"
    assert (out / "a_depth.mkv").read_bytes() == b"kept as it is"
    assert sorted(p.name for p in out.iterdir()) == ["a_depth.mkv", "b_depth.mkv"]


def test_a_single_video_that_fails_is_a_one_line_error(ray_runtime, tmp_path, capsys, clips, procedural_checkpoints):
    """As in the serial run: one input's own error is the command's error (exit 2), nothing written."""
    out = tmp_path / "out"
    assert video_metric_convert.main(ray_cli(procedural_checkpoints, "--input_video", str(clips / "thin.mkv"),
                                             "--output_dir", str(out), "--no_progress")) == 2
    one_line_error(capsys, "thin.mkv", "too narrow for the networks", alone=True)
    assert list(out.iterdir()) == []


def test_a_worker_without_its_checkpoint_refuses_the_job(ray_runtime, tmp_path, capsys, clips,
                                                         procedural_checkpoints):
    """Each worker loads the networks itself, with the serial run's checkpoint resolution; a missing file
    is one line naming the node and the file, and nothing is converted."""
    missing = tmp_path / "nowhere" / "video_depth_anything_vits.pth"
    out = tmp_path / "out"
    argv = ray_cli(procedural_checkpoints, "--input_video", str(clips / "a.mkv"), str(clips / "b.mkv"),
                   "--output_dir", str(out), "--no_progress", "--vda_checkpoint", str(missing))
    assert video_metric_convert.main(argv) == 2
    one_line_error(capsys, "worker on node ", str(missing), alone=True)
    assert list(out.iterdir()) == []


def test_a_worker_that_cannot_write_the_output_folder_refuses(ray_runtime, tmp_path, procedural_checkpoints):
    """Each worker proves it can create files in --output_dir (here a path under a file, as a folder
    that a node does not mount would be) and refuses with one line."""
    import ray

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    args = video_metric_convert.build_parser().parse_args(ray_cli(procedural_checkpoints, "--input_video", "x"))
    worker = ray.remote(VideoWorker).options(num_cpus=1).remote(args, str(blocked / "out"), None, 1, False)
    try:
        info = ray.get(worker.setup.remote(), timeout=120)
    finally:
        ray.kill(worker)
    assert info.error.startswith(f"--output_dir is not writable from node {info.node} (")
    assert "shared storage" in info.error and "\n" not in info.error


# ---------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM (a real process with its own local runtime)


def _session_folders(processes: list[psutil.Process]) -> set[str]:
    """The local runtimes' session folders (``/tmp/mvda-ray-*``) named on the processes' command lines."""
    found = set()
    for p in processes:
        with contextlib.suppress(psutil.Error):
            match = re.search(r"(/\S*?mvda-ray-[^/\s]+)", " ".join(p.cmdline()))
            if match:
                found.add(match.group(1))
    return found


def _processes_of(session: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if session in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
    return found


def _run_and_signal(argv: list[str], folder: Path, send, early: bool = False) -> tuple[
        subprocess.CompletedProcess, list[psutil.Process], set[str]]:
    """Start the script in its own session (as a terminal runs it), wait for a worker's hidden
    temporary output in ``folder`` (``early``: for Ray's first process, i.e. while Ray starts), call
    ``send(proc)``; returns the result, the processes the script had started (Ray's) and the local
    runtime's session folders named on their command lines."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(REPO / "Depth-Anything-V2"), str(REPO / "Video-Depth-Anything")]))
    proc = subprocess.Popen([sys.executable, "video_metric_convert.py", *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not (_session_folders(psutil.Process(proc.pid).children(recursive=True)) if early else
                   [name for name in hidden(folder) if ".partial-" in name]):
            if proc.poll() is not None:
                pytest.fail(f"ended (exit {proc.returncode}) before writing anything:\n{proc.communicate()[1][-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no temporary output within 240 s")
            time.sleep(0.05)
        started = psutil.Process(proc.pid).children(recursive=True)
        sessions = _session_folders(started)
        send(proc)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), started, sessions


@pytest.mark.slow
@pytest.mark.parametrize("how, code, last", [
    ("ctrl-c", 130, "interrupted; no output was finalised"),
    ("sigterm", 143, "terminated by SIGTERM; no output was finalised"),
    ("sigterm-while-ray-starts", 143, "terminated by SIGTERM; no output was finalised"),
])
def test_interrupt_leaves_nothing_and_stops_the_local_runtime(tmp_path, procedural_checkpoints, how, code, last):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(3):  # long enough to be mid-video when the signal comes
        write_lossless_video(inputs / f"long{k}.mkv", rolled_noise_frames(400, 48, 64, seed=k), fps=25)
    out = tmp_path / "out"
    out.mkdir()
    argv = ray_cli(procedural_checkpoints, "--input_video", str(inputs), "--output_dir", str(out), "--no_progress")

    def send(proc):
        if how == "ctrl-c":  # a terminal sends SIGINT to the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)

    result, started, sessions = _run_and_signal(argv, out, send, early=how.endswith("while-ray-starts"))
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"video_metric_convert.py: {last}"
    assert list(out.iterdir()) == []  # no output, no temporary
    assert started and len(sessions) == 1  # Ray's processes, in a session folder of their own ...
    session = sessions.pop()
    _, alive = psutil.wait_procs(started, timeout=30)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []  # ... all ended,
    deadline = time.monotonic() + 30
    while _processes_of(session) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_of(session) == []  # also those started after the signal,
    assert not Path(session).exists()  # and the folder is gone

"""video_metric_convert.py --ray with --ray_split_seconds: a long video split at its scene cuts, the pieces
converted on two workers and joined, gives the serial run's file.

One local Ray runtime with 2 CPUs serves this module (workers of one core each, single-threaded like the
serial reference run here); the networks are the vits architectures with procedural weights at
``--input_size 28`` (tests/conftest.py), MoGe-2 the toy one of tests/test_fov_convert.py. The clip has
three shots (22, 26 and 24 frames at 24 fps), so ``--ray_split_seconds 1`` gives the pieces 0-47 (with
the cut at 22 inside) and 48-71, ``0.5`` one piece per shot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import video_metric_convert
from depth_codec import TAG_SCENE_CUTS
from mvda.apps import ray_batch, ray_split
from mvda.apps.ray_split import piece_part_path, plan_pieces, worth_planning
from mvda.io.remux import video_content
from mvda.io.video import probe_video
from tests.helpers import REPO, read_depth_frames, synthetic_frames, terminate, write_lossless_video
from tests.test_fov_convert import moge_checkpoint  # noqa: F401  (a fixture)
from tests.test_scene_cuts import panning_clip

pytestmark = pytest.mark.usefixtures("one_thread")  # the serial reference, like the one-core workers

H, W = 36, 48


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("split_clips")
    frames = np.concatenate([panning_clip(22, seed=4), synthetic_frames(26, H, W, seed=7), panning_clip(24, seed=9)])
    return write_lossless_video(folder / "shots.mkv", frames)


def cli(checkpoints: dict[str, Path], clip: Path, out: Path, *extra: str) -> list[str]:
    return ["--encoder", "vits", "--metric_encoder", "vits", "--input_size", "28", "--device", "cpu",
            "--vda_checkpoint", str(checkpoints["vda"]), "--metric_checkpoint", str(checkpoints["dav2"]),
            "--input_video", str(clip), "--output_dir", str(out), "--no_progress", *extra]


def ray_flags(seconds: str) -> list[str]:
    return ["--ray", "local", "--ray_cpus_per_worker", "1", "--ray_split_seconds", seconds]


# ---------------------------------------------------------------------------------------------------
# pure parts


def test_plan_pieces_groups_whole_shots():
    # shots of 10 s at 10 fps: [0, 100) [100, 250) [250, 400) [400, 700) [700, 1000)
    cuts = [100, 250, 400, 700]
    assert plan_pieces(cuts, 1000, 10.0, 20.0) == [(0, 250), (250, 700), (700, 1000)]
    assert plan_pieces(cuts, 1000, 10.0, 40.0) == [(0, 400), (400, 1000)]
    assert plan_pieces(cuts, 1000, 10.0, 15.0) == [(0, 250), (250, 400), (400, 700), (700, 1000)]
    assert plan_pieces(cuts, 1000, 10.0, 10.0) == [(0, 100), (100, 250), (250, 400), (400, 700), (700, 1000)]
    assert plan_pieces(cuts, 800, 10.0, 20.0) == [(0, 250), (250, 800)]  # the short tail joins the last piece
    assert plan_pieces(cuts, 1000, 10.0, 30.0) == [(0, 400), (400, 700), (700, 1000)]
    assert plan_pieces(cuts, 1000, 10.0, 70.0) == [(0, 1000)]  # 700-999 is too short: it joins 0-699
    assert plan_pieces(cuts, 1000, 10.0, 80.0) == [(0, 1000)]  # no cut after 800 frames: one piece
    assert plan_pieces([], 1000, 10.0, 20.0) == [(0, 1000)]
    assert plan_pieces([0, 100, 1000, 1200], 1000, 10.0, 5.0) == [(0, 100), (100, 1000)]  # cuts outside ignored
    assert plan_pieces(cuts, 1000, 10.0, 0.0) == [(0, 1000)]  # 0: never split
    assert worth_planning(600, 10.0, 30.0) and not worth_planning(599, 10.0, 30.0)
    assert not worth_planning(None, 10.0, 30.0) and not worth_planning(10**6, 10.0, 0.0)


def test_piece_files_are_worker_temporaries(tmp_path):
    output = tmp_path / "clip_depth.mkv"
    part = piece_part_path(output, 48, 123)
    assert part.parent == tmp_path and part.name.startswith(".")
    partial = part.with_name(f".{part.stem}.partial-123-abcdef.mkv")  # the part's own atomic writer
    other = piece_part_path(output, 48, 124)
    for path in (part, partial, other):
        path.write_bytes(b"x")
    assert ray_batch.worker_temporaries(output, 123) == sorted([part, partial])


# ---------------------------------------------------------------------------------------------------
# on the local runtime


def lines_without_times(text: str) -> list[str]:
    return [re.sub(r" in [0-9.]+ s \([0-9.]+ frames/s\)", "", line) for line in text.splitlines()]


@pytest.mark.parametrize("fit, seconds, extra", [
    ("rolling", "1", ["--xfov", "60"]),  # two pieces, the first holding a cut
    ("global", "0.5", []),  # a piece per shot: three pieces on two workers
    ("global", "1", ["--fov", "auto"]),  # MoGe-2's field of view, estimated once for the whole video
    ("rolling", "0.25", ["--target_fps", "30"]),  # frames selected by time: 90 frames, cuts at 28 and 60
])
def test_split_video_is_the_serial_file(ray_runtime, tmp_path, capsys, procedural_checkpoints, three_shots,
                                        moge_checkpoint, fit, seconds, extra):  # noqa: F811
    fov = "--fov" in extra or "--xfov" in extra  # given or estimated, else none
    if "--fov" in extra:
        extra = [*extra, "--fov_checkpoint", str(moge_checkpoint)]
    elif not fov:
        extra = [*extra, "--fov", "off"]
    serial, spread = tmp_path / "serial", tmp_path / "ray"
    assert video_metric_convert.main(cli(procedural_checkpoints, three_shots, serial, "--fit", fit, *extra)) == 0
    serial_out = capsys.readouterr().out
    argv = cli(procedural_checkpoints, three_shots, spread, "--fit", fit, *extra, "-v", *ray_flags(seconds))
    argv.remove("--no_progress")  # the overall bar counts the pieces' frames
    assert video_metric_convert.main(argv) == 0
    captured = capsys.readouterr()
    name = "shots_depth.mkv"
    assert sorted(p.name for p in spread.iterdir()) == [name]  # no piece left
    cuts = "28,60" if "--target_fps" in extra else "22,48"
    assert probe_video(serial / name).tag(TAG_SCENE_CUTS) == cuts
    pieces = {"1": 2, "0.5": 3, "0.25": 3}[seconds]
    assert f"split into {pieces} pieces" in captured.err
    expected, got = read_depth_frames(serial / name), read_depth_frames(spread / name)
    assert len(got) == len(expected) == (90 if "--target_fps" in extra else 72)
    assert "1/1 videos" in captured.err and f"{len(got)}/{len(got)}" in captured.err
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    for tag in (TAG_SCENE_CUTS, "xfov", "yfov", "max_depth", "mvda_fit"):
        assert probe_video(spread / name).tag(tag) == probe_video(serial / name).tag(tag), tag
    if fov:
        assert probe_video(spread / name).tag("xfov") is not None
    assert_same_content(spread / name, serial / name)
    summary = lines_without_times(captured.out)[0]
    assert summary == lines_without_times(serial_out.replace(str(serial), str(spread)))[0]
    table = captured.out.splitlines()[1:3]
    assert table[1].split()[:3] == ["shots.mkv", "ok", str(len(got))]
    assert f"{pieces} pieces on 1 cpu" in table[1]


def write_vfr_shots(path: Path) -> list[float]:
    """The three shots as a phone's variable-rate clip (H.264 in MP4): 40 frames at 30 fps, then 32 at
    10 fps; returns the frame times."""
    import av
    from fractions import Fraction

    frames = np.concatenate([panning_clip(22, seed=4), synthetic_frames(26, H, W, seed=7), panning_clip(24, seed=9)])
    times = [i / 30 for i in range(40)] + [40 / 30 + i / 10 for i in range(32)]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.codec_context.time_base = Fraction(1, 90000)
        for frame, t in zip(frames, times):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = round(t * 90000), Fraction(1, 90000)
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return times


def test_split_variable_rate_video_with_a_cut_list(ray_runtime, tmp_path, capsys, procedural_checkpoints):
    """A variable-rate source keeps its frames' times (the pieces' packets carry them into the join), and
    ``--scene_cuts FILE`` (a frame number and a time) is placed on the frames as in the serial run."""
    clip = tmp_path / "vfr.mp4"
    times = write_vfr_shots(clip)
    assert probe_video(clip).vfr
    (tmp_path / "cuts.txt").write_text(f"22\n{times[48]:.3f}s\n")
    extra = ["--fit", "global", "--fov", "off", "--scene_cuts", str(tmp_path / "cuts.txt")]
    serial, spread = tmp_path / "serial", tmp_path / "ray"
    assert video_metric_convert.main(cli(procedural_checkpoints, clip, serial, *extra)) == 0
    assert video_metric_convert.main(cli(procedural_checkpoints, clip, spread, *extra, "-v", *ray_flags("0.5"))) == 0
    assert "split into 3 pieces" in capsys.readouterr().err
    name = "vfr_depth.mkv"
    assert sorted(p.name for p in spread.iterdir()) == [name]
    assert probe_video(serial / name).tag(TAG_SCENE_CUTS) == "22,48"
    expected = packet_times(serial / name)
    assert len(set(np.diff(expected))) > 1  # variable rate kept
    assert packet_times(spread / name) == expected
    assert_same_content(spread / name, serial / name)


def assert_same_content(joined: Path, serial: Path) -> None:
    """The same container tags and the same video packets (bytes and times) as the serial run's file.
    (Not the same file bytes: the serial run writes its file once, with the cut list in room reserved
    in the header; the pieces are joined by a remux, whose header is laid out differently.)"""
    (tags_a, packets_a), (tags_b, packets_b) = video_content(joined), video_content(serial)
    assert tags_a == tags_b
    assert len(packets_a) == len(packets_b) and packets_a == packets_b


def packet_times(path: Path) -> list[int]:
    """The presentation times (stream time base) of a video's packets."""
    import av

    with av.open(str(path)) as container:
        return [p.pts for p in container.demux(container.streams.video[0]) if p.pts is not None]


def test_a_failing_piece_fails_its_video_alone(ray_runtime, tmp_path, capsys, procedural_checkpoints, three_shots,
                                               monkeypatch):
    """The second piece of the split video fails (its frames never come, as if the file changed); the
    video fails with one line naming the frames, its other pieces are removed, the other video is
    converted, and nothing else is left in the output folder."""
    clips = tmp_path / "in"
    clips.mkdir()
    (clips / "shots.mkv").symlink_to(three_shots)
    write_lossless_video(clips / "short.mkv", synthetic_frames(12, H, W, seed=3))
    real = ray_split.plan_pieces

    def beyond_the_end(cuts, frames, fps, seconds):  # the driver's plan: the last piece asks for 8 more frames
        pieces = real(cuts, frames, fps, seconds)
        return [*pieces[:-1], (pieces[-1][0], pieces[-1][1] + 8)]

    monkeypatch.setattr(ray_batch, "plan_pieces", beyond_the_end)
    out = tmp_path / "out"
    assert video_metric_convert.main(cli(procedural_checkpoints, clips, out, "--fov", "off",
                                         *ray_flags("0.5"))) == 1
    lines = capsys.readouterr().out.splitlines()
    failed = next(line for line in lines if line.startswith("shots.mkv: FAILED: "))
    assert "frames 48-79: " in failed and "were to be converted" in failed
    assert any(line.startswith("short.mkv: 12 frames") for line in lines)
    assert lines[-1] == f"1 converted, 0 skipped, 1 failed: {clips / 'shots.mkv'}"
    assert sorted(p.name for p in out.iterdir()) == ["short_depth.mkv"]  # no piece, no partial


def test_a_failing_piece_stops_the_running_pieces_of_its_video(ray_runtime, tmp_path, capsys,
                                                              procedural_checkpoints, monkeypatch):
    """The plan gives a long piece (the whole video) and a piece past its end, which fails at once
    ("no frames"); the worker on the long piece learns that its video was given up and stops."""
    clips = tmp_path / "in"
    clips.mkdir()
    write_lossless_video(clips / "long.mkv", np.concatenate(
        [panning_clip(30, seed=4), synthetic_frames(150, H, W, seed=7), synthetic_frames(150, H, W, seed=0)]))
    write_lossless_video(clips / "short.mkv", synthetic_frames(12, H, W, seed=3))
    monkeypatch.setattr(ray_batch, "plan_pieces", lambda cuts, frames, fps, seconds: [(0, frames),
                                                                                     (frames + 100, frames + 101)])
    out = tmp_path / "out"
    assert video_metric_convert.main(cli(procedural_checkpoints, clips, out, "--fov", "off", "-v",
                                         *ray_flags("0.5"))) == 1
    captured = capsys.readouterr()
    failed = next(line for line in captured.out.splitlines() if line.startswith("long.mkv: FAILED: "))
    assert "frames 430-430: " in failed and "no frames decoded" in failed
    assert "long.mkv: frames 0-329 stopped" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["short_depth.mkv"]


@pytest.mark.slow
def test_sigterm_while_pieces_run_leaves_nothing(tmp_path, procedural_checkpoints):
    """A real process with its own local runtime: SIGTERM once a piece is finished and others run; the
    finished piece (never joined) and the running ones' temporaries are removed, exit 143."""
    clip = write_lossless_video(tmp_path / "long.mkv", np.concatenate(
        [panning_clip(30, seed=4), synthetic_frames(150, H, W, seed=7), synthetic_frames(150, H, W, seed=0)]))
    out = tmp_path / "out"
    out.mkdir()
    argv = cli(procedural_checkpoints, clip, out, "--fov", "off", *ray_flags("0.5"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(REPO / "Depth-Anything-V2"), str(REPO / "Video-Depth-Anything")]))
    proc = subprocess.Popen([sys.executable, "video_metric_convert.py", *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    finished_piece = re.compile(r"^\.long_depth\.piece-[0-9]+-[0-9]+\.mkv$")
    deadline = time.monotonic() + 240
    try:
        while not any(finished_piece.match(p.name) for p in out.iterdir()):
            if proc.poll() is not None:
                pytest.fail(f"ended (exit {proc.returncode}) before a piece was done:\n{proc.communicate()[1][-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no finished piece within 240 s")
            time.sleep(0.05)
    finally:
        err = terminate(proc)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == "video_metric_convert.py: terminated by SIGTERM; no output was finalised"
    assert list(out.iterdir()) == []  # neither the output nor a piece nor a partial


# ---------------------------------------------------------------------------------------------------
# seeking to a piece's start


def write_h264(path: Path, frames: np.ndarray, gop: int = 5) -> Path:
    """H.264 in MP4 with a key frame every ``gop`` frames and B-frames (frames decoded out of order)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24, options={"g": str(gop), "bf": "2", "keyint_min": str(gop),
                                                             "sc_threshold": "0"})
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["ffv1", "h264"])
def test_reader_seek_gives_the_frames_and_times_of_a_decode_from_the_start(tmp_path, kind):
    from mvda.io.video import VideoReader

    frames = np.concatenate([panning_clip(22, seed=4), synthetic_frames(26, H, W, seed=7)])
    clip = (write_h264(tmp_path / "c.mp4", frames) if kind == "h264" else
            write_lossless_video(tmp_path / "c.mkv", frames))
    with VideoReader(clip) as reader:
        decoded = list(reader.indexed())
        times = list(reader.times)
    assert len(decoded) == 48
    for index in (1, 7, 22, 23, 47):  # key frames and frames between them
        with VideoReader(clip) as reader:
            assert reader.seek(index, times[index])
            got = list(reader.indexed())
            assert [i for i, _ in got] == list(range(index, 48))
            for (_, a), (_, b) in zip(got, decoded[index:]):
                np.testing.assert_array_equal(a, b)
            assert reader.times == times[index:]
    with VideoReader(clip) as reader:  # no frame has that time: declined, the reader starts from frame 0
        assert not reader.seek(22, times[22] + 1e-6)
        assert [i for i, _ in reader.indexed()] == list(range(48))
        assert reader.times == times


def test_a_piece_seeks_to_its_start_and_converts_as_the_whole_video(tmp_path, procedural_checkpoints, monkeypatch):
    """convert_video of a piece, in this process: the reader seeks to the piece's first frame (found by
    its exact time) and the piece's frames are the whole video's, bit for bit; without an anchor (or when
    the seek declines) it decodes from the start and gives the same frames."""
    import mvda.apps.convert as cp
    from mvda.io.video import VideoReader

    frames = np.concatenate([panning_clip(22, seed=4), synthetic_frames(26, H, W, seed=7), panning_clip(24, seed=9)])
    clip = write_h264(tmp_path / "shots.mp4", frames, gop=7)  # the cuts fall inside groups of pictures
    args = video_metric_convert.build_parser().parse_args(cli(procedural_checkpoints, clip, tmp_path / "whole",
                                                              "--fov", "off"))
    options = cp.options_from_args(args)
    models = cp.load_models("vda+dav2", "vits", "vits", "hypersim", options.device,
                            vda_checkpoint=procedural_checkpoints["vda"],
                            metric_checkpoint=procedural_checkpoints["dav2"])
    whole = cp.convert_video(clip, tmp_path / "whole", models, options)
    assert whole.cuts == [22, 48]
    expected = read_depth_frames(whole.output)
    plan = cp.plan_video(clip, models, options)
    assert plan.cuts == (22, 48) and plan.frames == 72 and [a[:2] for a in plan.anchors] == [(22, 22), (48, 48)]
    seeks: list[bool] = []
    real_seek = VideoReader.seek

    def spy(self, index, time):
        seeks.append(real_seek(self, index, time))
        return seeks[-1]

    monkeypatch.setattr(VideoReader, "seek", spy)
    for anchor in (plan.anchors[0][1:], None):
        part = tmp_path / f"part-{anchor is None}.mkv"
        piece = cp.VideoPiece(22, 72, plan.cuts, None, part, anchor)
        result = cp.convert_video(clip, tmp_path / "whole", models, options, piece=piece)
        assert result.frames == 50
        for a, b in zip(read_depth_frames(part), expected[22:]):
            np.testing.assert_array_equal(a, b)
    assert seeks == [True]  # the anchored piece seeked; the other decoded from the start

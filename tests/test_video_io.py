"""video_io: streaming PyAV reader/writer, atomic output, audio copy, one-line errors."""

from __future__ import annotations

import inspect
import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mvda.errors import UserError
from mvda.io.video import (
    AtomicFolder,
    VideoDecodeError,
    VideoReader,
    VideoWriter,
    atomic_output_path,
    ensure_writable_dir,
    probe_video,
)
from tests.helpers import write_lossless_video, write_portrait_clip, write_vfr_clip


def ramp_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Distinct frames: frame i has a horizontal ramp plus 7 * i in red, a constant in blue."""
    x = np.linspace(0, 200, w).astype(np.uint8)[None, :].repeat(h, axis=0)
    frames = []
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[..., 0] = (x.astype(int) + 7 * i) % 256
        f[..., 1] = x
        f[..., 2] = 40 + i
        frames.append(f)
    return frames


def make_av_source(path: Path, audio_codec: str, seconds: float = 2.0, fps: int = 25,
                   rate: int = 48000, size: tuple[int, int] = (64, 48)) -> None:
    """A video with an H.264 picture and a 440 Hz stereo sine wave (AAC or PCM) of ``seconds``."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
    a = out.add_stream(audio_codec, rate=rate, layout="stereo")
    sample_fmt = a.codec_context.codec.audio_formats[0].name
    resampler = av.AudioResampler(format=sample_fmt, layout="stereo", rate=rate)
    for i, rgb in enumerate(ramp_frames(int(seconds * fps), size[1], size[0])):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        out.mux(v.encode(frame))
    total, chunk = int(seconds * rate), 1024
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        for resampled in resampler.resample(frame):
            out.mux(a.encode(resampled))
    out.mux(v.encode(None))
    out.mux(a.encode(None))
    out.close()


def audio_seconds(path: Path) -> float:
    """Decoded audio length of the first audio stream, in seconds."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(frame.samples for frame in c.decode(stream))
        return samples / stream.codec_context.sample_rate


def copy_video(src: Path, dst: Path, **kwargs) -> int:
    with VideoReader(src) as reader, VideoWriter(dst, reader.width, reader.height, reader.fps,
                                                 audio_from=src, **kwargs) as writer:
        for rgb in reader:
            writer.write(rgb)
    return writer.frames_written


# --- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(25), Fraction(24000, 1001)])
def test_lossless_round_trip_frames_size_fps(tmp_path, fps):
    frames = ramp_frames(12)
    path = tmp_path / "lossless.mkv"
    with VideoWriter(path, 64, 48, fps, codec="ffv1", pix_fmt="bgr0") as writer:
        for f in frames:
            writer.write(f)
    assert writer.frames_written == 12
    info = probe_video(path)
    assert (info.width, info.height, info.codec, info.fps) == (64, 48, "ffv1", fps)
    assert info.num_frames == 12  # estimated from the Matroska duration
    with VideoReader(path) as reader:
        got = list(reader)
        assert reader.frames_read == 12
    assert len(got) == 12
    for g, f in zip(got, frames):
        np.testing.assert_array_equal(g, f)  # FFV1 is lossless


def test_h264_mp4_round_trip(tmp_path):
    frames = ramp_frames(30)
    path = tmp_path / "lossy.mp4"
    with VideoWriter(path, 64, 48, 30000 / 1001, options={"crf": "12"}) as writer:
        for f in frames:
            writer.write(f)
    info = probe_video(path)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.fps == Fraction(30000, 1001)  # a float fps snaps to the NTSC fraction
    assert info.num_frames == 30  # the MP4 sample count
    with VideoReader(path) as reader:
        got = list(reader)
    assert len(got) == 30 and got[0].shape == (48, 64, 3) and got[0].dtype == np.uint8
    # Lossy (4:2:0 chroma, crf 12): the mean error of a smooth ramp stays within a few levels.
    err = np.mean([np.abs(g.astype(int) - f.astype(int)).mean() for g, f in zip(got, frames)])
    assert err < 3.0


def test_gray16_round_trip(tmp_path):
    frame = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21 % 65536).astype(np.uint16)
    path = tmp_path / "g16.mkv"
    with VideoWriter(path, 64, 48, 10, codec="ffv1", pix_fmt="gray16le", input_format="gray16le") as w:
        w.write(frame)
    with VideoReader(path, pix_fmt="gray16le") as reader:
        (got,) = list(reader)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, frame)


def test_metadata_tags(tmp_path):
    path = tmp_path / "tags.mkv"
    with VideoWriter(path, 16, 16, 10, codec="ffv1", pix_fmt="bgr0", metadata={"max_depth": 7.5}) as w:
        w.write(np.zeros((16, 16, 3), np.uint8))
    info = probe_video(path)
    assert info.tag("MAX_DEPTH") == info.tag("max_depth") == "7.5"
    assert info.tag("missing") is None


# --- streaming -------------------------------------------------------------------------------------
def test_reader_is_a_lazy_generator(tmp_path):
    path = tmp_path / "s.mkv"
    write_lossless_video(path, ramp_frames(10), fps=25)
    with VideoReader(path) as reader:
        it = iter(reader)
        assert inspect.isgenerator(it)
        first = next(it)
        assert reader.frames_read == 1  # nothing decoded ahead into a list
        np.testing.assert_array_equal(first, ramp_frames(1)[0])
        assert sum(1 for _ in it) == 9


def test_max_frames_stops_early(tmp_path):
    path = tmp_path / "m.mkv"
    write_lossless_video(path, ramp_frames(10), fps=25)
    with VideoReader(path, max_frames=4) as reader:
        assert reader.num_frames == 4
        got = list(reader)
        assert reader.frames_read == 4
    assert len(got) == 4
    np.testing.assert_array_equal(got[3], ramp_frames(4)[3])


# --- audio -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("src_name, codec, dst_name", [
    ("src.mp4", "aac", "out.mp4"),
    ("src.mp4", "aac", "out.mkv"),
    ("src.mkv", "pcm_s16le", "out.mkv"),
])
def test_audio_is_copied_alongside(tmp_path, src_name, codec, dst_name):
    src, dst = tmp_path / src_name, tmp_path / dst_name
    make_av_source(src, codec, seconds=2.0)
    assert copy_video(src, dst) == 50
    info = probe_video(dst)
    assert info.has_audio
    with av.open(str(dst)) as c:
        assert c.streams.audio[0].codec_context.name == codec
    # Audio is cut at the end of the video, give or take one audio packet (1024 samples = 21 ms for
    # AAC; PCM packets of the source are up to 4096 samples = 85 ms).
    assert audio_seconds(dst) == pytest.approx(2.0, abs=0.09)


def test_audio_is_cut_to_a_shorter_video(tmp_path):
    src, dst = tmp_path / "src.mp4", tmp_path / "short.mp4"
    make_av_source(src, "aac", seconds=2.0)
    with VideoReader(src, max_frames=25) as reader, VideoWriter(dst, 64, 48, reader.fps,
                                                               audio_from=src) as writer:
        for rgb in reader:
            writer.write(rgb)
    assert audio_seconds(dst) == pytest.approx(1.0, abs=0.05)


def test_audio_that_does_not_fit_the_container_is_dropped_with_warning(tmp_path, caplog):
    src, dst = tmp_path / "src.mkv", tmp_path / "out.mp4"
    make_av_source(src, "pcm_s16le", seconds=0.4)
    with caplog.at_level(logging.WARNING, logger="mvda"):
        assert copy_video(src, dst) == 10
    assert "cannot be copied into a .mp4 file" in caplog.text
    assert not probe_video(dst).has_audio


def test_source_without_audio_writes_video_only(tmp_path):
    src = tmp_path / "silent.mkv"
    write_lossless_video(src, ramp_frames(3), fps=25)
    dst = tmp_path / "out.mp4"
    assert copy_video(src, dst) == 3
    assert not probe_video(dst).has_audio


# --- errors: one line, a UserError, never a traceback ----------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file; check the path"):
        VideoReader(tmp_path / "nope.mp4")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="is a folder, expected a video file"):
        probe_video(tmp_path)


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 20)
    with pytest.raises(VideoDecodeError, match="not a readable video"):
        VideoReader(path)
    assert issubclass(VideoDecodeError, UserError)


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.mka"
    with av.open(str(path), "w", format="matroska") as out:
        a = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
    with pytest.raises(VideoDecodeError, match="contains no video stream"):
        probe_video(path)


def test_truncated_mp4_is_a_decode_error(tmp_path):
    path = tmp_path / "t.mp4"
    with VideoWriter(path, 64, 48, 25) as w:
        for f in ramp_frames(20):
            w.write(f)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: lost
    with pytest.raises(VideoDecodeError, match="not a readable video"):
        with VideoReader(path) as reader:
            list(reader)


def test_corrupt_packet_is_a_decode_error(tmp_path):
    path = tmp_path / "c.mp4"
    with VideoWriter(path, 64, 48, 25) as w:
        for f in ramp_frames(20):
            w.write(f)
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    pos, size = packets[5]
    data[pos:pos + size] = b"\xff" * size  # the sixth frame's H.264 data is garbage
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match=r"decode error after frame \d+ .*truncated or corrupt"):
        with VideoReader(path) as reader:
            list(reader)


def test_truncated_mkv_with_no_decodable_frame_is_an_error(tmp_path):
    path = tmp_path / "e.mkv"
    with VideoWriter(path, 64, 48, 25) as w:  # H.264 in Matroska
        for f in ramp_frames(20):
            w.write(f)
    path.write_bytes(path.read_bytes()[:600])  # header and part of the first key frame only
    with pytest.raises(VideoDecodeError, match="no frame could be decoded"):
        with VideoReader(path) as reader:
            list(reader)


def test_truncated_mkv_warns_with_frame_count(tmp_path, caplog):
    path = tmp_path / "half.mkv"
    write_lossless_video(path, ramp_frames(30), fps=25)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with VideoReader(path) as reader:
            n = sum(1 for _ in reader)
    assert 0 < n < 30
    assert f"ended after {n} of the 30 frames" in caplog.text


# --- writer: atomic output and argument errors ----------------------------------------------------
def test_writer_is_atomic(tmp_path):
    path = tmp_path / "atomic.mp4"
    writer = VideoWriter(path, 64, 48, 25)
    writer.write(ramp_frames(1)[0])
    hidden = [p for p in os.listdir(tmp_path) if p.startswith(".atomic.partial-")]
    assert len(hidden) == 1 and not path.exists()
    writer.close()
    assert os.listdir(tmp_path) == ["atomic.mp4"]


def test_exception_inside_writer_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="writer expects 64x48"):
        with VideoWriter(tmp_path / "bad.mp4", 64, 48, 25) as w:
            w.write(ramp_frames(1)[0])
            w.write(np.zeros((10, 10, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_abort_leaves_no_file(tmp_path):
    w = VideoWriter(tmp_path / "a.mkv", 64, 48, 25, codec="ffv1", pix_fmt="bgr0")
    w.write(ramp_frames(1)[0])
    w.abort()
    assert os.listdir(tmp_path) == []


def test_atomic_output_path(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_output_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError):
        with atomic_output_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert target.read_text() == "done" and os.listdir(target.parent) == ["out.txt"]


def test_atomic_folder(tmp_path):
    """Folders follow the files' rule: hidden ``.NAME.partial-...`` next to the target, moved or removed."""
    target = tmp_path / "sub" / "frames"
    with AtomicFolder(target) as folder:
        assert folder.temp_path.parent == target.parent and folder.temp_path.name.startswith(".frames.partial-")
        (folder.temp_path / "a.txt").write_text("done")
        assert not target.exists()
    assert os.listdir(target.parent) == ["frames"] and (target / "a.txt").read_text() == "done"
    with pytest.raises(UserError, match="frames folder .* already exists and is not empty"):
        AtomicFolder(target, label="frames folder")
    with pytest.raises(KeyboardInterrupt):
        with AtomicFolder(tmp_path / "other") as folder:
            (folder.temp_path / "nested").mkdir()
            (folder.temp_path / "nested" / "b.txt").write_text("half")
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["sub"]
    (tmp_path / "empty").mkdir()  # an existing empty folder is replaced
    folder = AtomicFolder(tmp_path / "empty")
    (folder.temp_path / "c.txt").write_text("x")
    assert folder.close() == tmp_path / "empty" and os.listdir(tmp_path / "empty") == ["c.txt"]
    folder.abort()  # after close: nothing to do
    assert os.listdir(tmp_path / "empty") == ["c.txt"]


def test_writer_argument_errors(tmp_path):
    with pytest.raises(UserError, match="needs even frame sizes"):
        VideoWriter(tmp_path / "odd.mp4", 63, 48, 25)
    with pytest.raises(UserError, match="frame rate must be > 0"):
        VideoWriter(tmp_path / "z.mkv", 64, 48, 0)
    with pytest.raises(UserError, match="is a folder"):
        VideoWriter(tmp_path, 64, 48, 25)
    with pytest.raises(UserError, match="cannot write"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, 25, options={"preset": "no-such-preset"})
    assert os.listdir(tmp_path) == []


def test_bad_encoder_option_with_audio_is_one_error_without_audio_warning(tmp_path, caplog):
    src = tmp_path / "src.mp4"
    make_av_source(src, "aac", seconds=0.2)
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with pytest.raises(UserError, match="cannot write"):
            VideoWriter(tmp_path / "x.mp4", 64, 48, 25, options={"preset": "no-such-preset"}, audio_from=src)
    assert "audio" not in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["src.mp4"]


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot create output folder"):
        VideoWriter(tmp_path / "file" / "out.mp4", 64, 48, 25)
    with pytest.raises(UserError, match="cannot create output folder"):
        ensure_writable_dir(tmp_path / "file" / "deeper")
    assert ensure_writable_dir(tmp_path / "new" / "folder").is_dir()


def test_display_rotation_is_applied_on_decode(tmp_path):
    """A phone's portrait video: landscape frames plus a display matrix; frames come out as displayed."""
    path = write_portrait_clip(tmp_path / "portrait.mp4", n=3, dark=0, bright=255)  # white on the stored left
    info = probe_video(path)
    assert (info.rotation, info.height, info.width) == (-90, 64, 32)
    with VideoReader(path) as reader:
        frames = list(reader)
    assert frames[0].shape == (64, 32, 3)
    # Turned clockwise, the stored left edge is at the top.
    assert frames[0][:12].mean() > 200 and frames[0][-40:].mean() < 40


def test_variable_frame_rate_is_detected_and_kept(tmp_path):
    src = tmp_path / "vfr.mp4"
    times = write_vfr_clip(src)
    assert probe_video(src).vfr
    with VideoReader(src) as reader:
        frames = list(reader)
        read_times = reader.times
    assert len(frames) == 40 and np.allclose(read_times, times, atol=1e-3)
    assert read_times[30] == pytest.approx(1.0, abs=1e-3)
    # A vfr writer puts every frame at the time it is given.
    out = tmp_path / "out.mkv"
    with VideoWriter(out, 48, 32, probe_video(src).fps, codec="ffv1", pix_fmt="bgr0", vfr=True) as writer:
        for frame, t in zip(frames, read_times):
            writer.write(frame, time=t)
    with VideoReader(out) as reader:
        list(reader)
        assert np.allclose(reader.times, times, atol=1.5e-3)  # Matroska stores milliseconds
    assert not probe_video(tmp_path / "out.mkv").vfr  # only MP4/MOV sample tables are read
    sample = Path(__file__).resolve().parents[1] / "assets" / "big_buck_bunny_3s.mp4"
    assert probe_video(sample).vfr is False  # constant rate, B-frames (decode order) included


def test_damage_watch_restores_pyav_logging(tmp_path):
    """Reading a depth file with damage checks routes FFmpeg's log through Python only meanwhile: left on,
    a threaded decoder that logs while its container closes can deadlock (seen with a corrupt H.264)."""
    import av.logging

    from depth_codec import DepthVideoReader, DepthVideoWriter

    before = av.logging.get_level()
    path = tmp_path / "d_depth.mkv"
    with DepthVideoWriter(path, 16, 8, 10) as writer:
        for i in range(3):
            writer.write(np.full((8, 16), 1.0 + i, np.float32))
    with DepthVideoReader(path) as reader:
        assert len(list(reader)) == 3
        assert av.logging.get_level() == before

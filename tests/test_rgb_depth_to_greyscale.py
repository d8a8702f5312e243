"""rgb_depth_to_greyscale.py (mvda.apps.grey): values of the 8-bit, 16-bit, inverse and PNG outputs, its
errors, and interruptions (SIGTERM / SIGHUP leave nothing behind).

Hand computation: a packed pixel decodes to depth = code / (255**4 / max_depth) with
code = high << 24 | B << 16, so max_depth cancels in the greyscale value:
    8-bit  grey = rint(depth * 255 / max_depth)   = rint(code / 255**3)   (255**3 = 16_581_375)
    16-bit grey = rint(depth * 65025 / max_depth) = rint(code / 65025)
(float32 arithmetic; none of the values below lies within 0.001 of a .5 tie).
"""

from __future__ import annotations

import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import rgb_depth_to_greyscale as tool
from depth_codec import DepthVideoWriter
from mvda.apps import grey
from mvda.io.video import probe_video
from tests.helpers import one_line_error, original_pack, read_frames, write_lossless_video

# (R, G, B) codes and their greyscale values (see the module docstring for the rule):
CODES = [
    (0, 0, 0),  # code 0
    (64, 64, 0),  # 2**30 = 1_073_741_824: /255**3 = 64.756 -> 65;  /65025 = 16512.75 -> 16513
    (128, 128, 0),  # 2**31: 129.512 -> 130;  33025.51 -> 33026
    (252, 252, 5),  # 4_228_186_112 (the code of max_depth): 254.996 -> 255;  65024.008 -> 65024
    (255, 255, 255),  # 4_294_901_760, beyond max_depth: 259.02 -> clipped 255;  66050.0 -> 65025
    (100, 101, 200),  # R != G: high = uint8(100.5) = 100; 1_690_828_800: 101.97 -> 102;  26002.75 -> 26003
    (10, 10, 128),  # 176_160_768: 10.624 -> 11;  2709.12 -> 2709
]
GREY8 = [0, 65, 130, 255, 255, 102, 11]
GREY16 = [0, 16513, 33026, 65024, 65025, 26003, 2709]
PROG = "rgb_depth_to_greyscale.py"  # its error lines start "PROG: error: "


def packed_frame(shift: int = 0) -> np.ndarray:
    """(2, 7, 3) frame: row 0 holds CODES, row 1 the same rolled by ``shift``."""
    row = np.array(CODES, np.uint8)
    return np.stack([row, np.roll(row, shift, axis=0)])


def expected(values: list[int], shift: int = 0) -> np.ndarray:
    row = np.array(values)
    return np.stack([row, np.roll(row, shift)])


def write_ours(path: Path, n: int = 3, max_depth: float = 6.0) -> Path:
    with DepthVideoWriter(path, 7, 2, 24, max_depth=max_depth) as writer:
        for i in range(n):
            writer.write_packed(packed_frame(i))
    return path


def read_png16(path: Path) -> np.ndarray:
    """A minimal, independent PNG reader for 16-bit greyscale (colour type 0), all five filters."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    width, height, bit_depth, colour_type = header[:4]
    assert (bit_depth, colour_type) == (16, 0)
    raw, bpp, stride = zlib.decompress(idat), 2, 2 * width
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return np.frombuffer(b"".join(rows), dtype=">u2").reshape(height, width).astype(np.uint16)


def test_default_output_path():
    # The original tool's name: the whole input name plus _grey_depth.mkv (users' batch scripts expect it).
    assert grey.default_output_path("outputs/clip_depth.mkv") == Path("outputs/clip_depth.mkv_grey_depth.mkv")
    assert grey.default_output_path("/a/b/x.mkv") == Path("/a/b/x.mkv_grey_depth.mkv")


def test_encode_png16_round_trip(tmp_path):
    image = np.array([[0, 1, 256, 65025], [513, 4000, 65535, 7]], np.uint16)
    (tmp_path / "p.png").write_bytes(grey.encode_png16(image))
    np.testing.assert_array_equal(read_png16(tmp_path / "p.png"), image)


def test_8bit_from_our_writer(tmp_path, capsys):
    src = write_ours(tmp_path / "clip_depth.mkv")
    assert tool.main(["--video", str(src)]) == 0
    out = tmp_path / "clip_depth.mkv_grey_depth.mkv"
    assert "clip_depth.mkv_grey_depth.mkv (3 frames, max_depth 6 m)" in capsys.readouterr().out
    frames = read_frames(out, "gray")
    assert len(frames) == 3 and frames[0].dtype == np.uint8
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, expected(GREY8, i))
    info = probe_video(out)
    assert (info.codec, info.pix_fmt) == ("ffv1", "gray")
    assert info.tag("depth_encoding") == "grey8-linear-v1" and info.tag("max_depth") == "6.0"
    assert sorted(os.listdir(tmp_path)) == ["clip_depth.mkv", "clip_depth.mkv_grey_depth.mkv"]


def test_16bit_inverse_with_alias(tmp_path):
    src = write_ours(tmp_path / "c_depth.mkv", n=2, max_depth=12.0)
    out = tmp_path / "sub" / "inv16.mkv"
    assert tool.main(["--depth_video", str(src), "--bit16", "--inverse", "--output", str(out)]) == 0
    frames = read_frames(out, "gray16le")
    assert len(frames) == 2 and frames[0].dtype == np.uint16
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, 65025 - expected(GREY16, i))
    info = probe_video(out)
    assert info.tag("depth_encoding") == "grey16-linear-inverse-v1" and info.tag("max_depth") == "12.0"


def test_8bit_inverse(tmp_path):
    src = write_ours(tmp_path / "c_depth.mkv", n=1)
    assert tool.main(["--video", str(src), "--inverse"]) == 0
    (frame,) = read_frames(tmp_path / "c_depth.mkv_grey_depth.mkv", "gray")
    np.testing.assert_array_equal(frame, 255 - expected(GREY8))


def test_file_packed_by_the_original_formula(tmp_path):
    metres = np.array([[0.0, 0.5, 1.5, 2.0, 4.2, 6.0]])
    # v = uint32(m * 255**4 / 6); code = v with the low 16 bits dropped, e.g. 1.5 m: (63, 63, 1),
    # code 1_057_030_144 -> /255**3 = 63.748 -> 64, /65025 = 16255.75 -> 16256.
    grey8 = [[0, 21, 64, 85, 178, 255]]  # 21.248, 63.748, 84.996, 178.498, 254.996
    grey16 = [[0, 5418, 16256, 21674, 45517, 65024]]  # 5418.25, 16255.75, 21674.0, 45516.9, 65024.0
    src = write_lossless_video(tmp_path / "old_depth.mkv", [original_pack(metres, 6.0)] * 2, fps=30)
    assert tool.main(["--video", str(src)]) == 0
    frames = read_frames(tmp_path / "old_depth.mkv_grey_depth.mkv", "gray")
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[1], grey8)
    out16 = tmp_path / "old16.mkv"
    assert tool.main(["--video", str(src), "--bit16", "--output", str(out16)]) == 0
    np.testing.assert_array_equal(read_frames(out16, "gray16le")[0], grey16)
    assert probe_video(out16).tag("max_depth") == "6.0"  # no tag in the source: the 6 m default


def test_png16_sequence(tmp_path):
    src = write_ours(tmp_path / "c_depth.mkv", n=3)
    pngs = tmp_path / "png16"
    assert tool.main(["--video", str(src), "--png16", str(pngs), "--inverse"]) == 0
    assert sorted(os.listdir(pngs)) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    for i in range(3):
        np.testing.assert_array_equal(read_png16(pngs / f"frame_{i:06d}.png"), 65025 - expected(GREY16, i))
    # Only the PNGs: no video unless --output is given too.
    assert sorted(os.listdir(tmp_path)) == ["c_depth.mkv", "png16"]


def test_png16_and_video_together_with_max_frames(tmp_path):
    src = write_ours(tmp_path / "c_depth.mkv", n=3)
    out = tmp_path / "g.mkv"
    assert tool.main(["--video", str(src), "--png16", str(tmp_path / "p"), "--output", str(out),
                      "--max_frames", "2"]) == 0
    assert sorted(os.listdir(tmp_path / "p")) == ["frame_000000.png", "frame_000001.png"]
    assert len(read_frames(out, "gray")) == 2
    np.testing.assert_array_equal(read_png16(tmp_path / "p" / "frame_000001.png"), expected(GREY16, 1))


def test_max_depth_flag_overrides_tag_with_warning(tmp_path, capsys):
    src = write_ours(tmp_path / "c_depth.mkv", n=1, max_depth=6.0)
    out = tmp_path / "g.mkv"
    assert tool.main(["--video", str(src), "--max_depth", "3", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: c_depth.mkv: --max_depth 3 overrides the file's max_depth tag 6" in err
    assert probe_video(out).tag("max_depth") == "3.0"
    # The scale cancels: grey values are the same codes, now meaning 3 m at full scale.
    np.testing.assert_array_equal(read_frames(out, "gray")[0], expected(GREY8))


def test_missing_file(tmp_path, capsys):
    assert tool.main(["--video", str(tmp_path / "nope_depth.mkv")]) == 2
    one_line_error(capsys, "no such file", prog=PROG)
    assert os.listdir(tmp_path) == []


def test_not_a_video(tmp_path, capsys):
    bogus = tmp_path / "notes_depth.mkv"
    bogus.write_text("not a video\n" * 50)
    assert tool.main(["--video", str(bogus)]) == 2
    one_line_error(capsys, "not a readable video", prog=PROG)
    assert os.listdir(tmp_path) == ["notes_depth.mkv"]


def test_colour_video_passed_as_depth(tmp_path, capsys):
    rng = np.random.default_rng(0)
    colour = write_lossless_video(tmp_path / "holiday.mkv",
                                 [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(2)], fps=30)
    assert tool.main(["--video", str(colour), "--png16", str(tmp_path / "p"), "--output",
                      str(tmp_path / "g.mkv")]) == 2
    one_line_error(capsys, "does not look like an RGB-packed depth video", prog=PROG)
    assert os.listdir(tmp_path) == ["holiday.mkv"]  # no partial video, no PNG folder, no temp files


def test_greyscale_video_passed_as_depth(tmp_path, capsys):
    src = write_ours(tmp_path / "c_depth.mkv", n=1)
    assert tool.main(["--video", str(src)]) == 0
    grey = tmp_path / "c_depth.mkv_grey_depth.mkv"
    assert tool.main(["--video", str(grey)]) == 2
    one_line_error(capsys, "greyscale depth video", prog=PROG)


def test_unwritable_output(tmp_path, capsys):
    src = write_ours(tmp_path / "c_depth.mkv", n=1)
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert tool.main(["--video", str(src), "--output", str(tmp_path / "blocker" / "g.mkv")]) == 2
    one_line_error(capsys, "cannot create output folder", prog=PROG)
    assert tool.main(["--video", str(src), "--png16", str(tmp_path / "blocker" / "pngs")]) == 2
    one_line_error(capsys, "cannot create output folder", prog=PROG)
    assert sorted(os.listdir(tmp_path)) == ["blocker", "c_depth.mkv"]


def test_bad_output_arguments(tmp_path, capsys):
    src = write_ours(tmp_path / "c_depth.mkv", n=1)
    assert tool.main(["--video", str(src), "--output", str(tmp_path / "g.mp4")]) == 2
    one_line_error(capsys, "give an --output ending in .mkv", prog=PROG)
    assert tool.main(["--video", str(src), "--output", str(src)]) == 2
    one_line_error(capsys, "is the input video", prog=PROG)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert tool.main(["--video", str(src), "--png16", str(full)]) == 2
    one_line_error(capsys, "already exists and is not empty", prog=PROG)
    assert sorted(os.listdir(tmp_path)) == ["c_depth.mkv", "full"]


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "examples:" in out and "--depth_video" in out and "65025 - v" in out


def test_bad_flag_values_exit_non_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--video", "x.mkv", "--max_depth", "-1"])
    assert exit_info.value.code == 2
    assert "must be a finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_mid_run_leaves_nothing(tmp_path, monkeypatch, capsys, signum, code):
    """A signal on frame 2 (in the step): exit 128 + signum, no video, no hidden partial file, no PNG folder."""
    src = write_ours(tmp_path / "c_depth.mkv", n=5)
    real, calls = grey.depth_to_grey, []

    def depth_to_grey(depth, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 2 + 1:  # frame 2 (two conversions per frame: video and PNGs)
            os.kill(os.getpid(), signum)
        return real(depth, *args, **kwargs)

    monkeypatch.setattr(grey, "depth_to_grey", depth_to_grey)
    argv = ["--video", str(src), "--output", str(tmp_path / "g.mkv"), "--png16", str(tmp_path / "p")]
    assert tool.main(argv) == code
    err = capsys.readouterr().err
    assert f"terminated by {signal.Signals(signum).name}; no output was finalised" in err
    assert "Traceback" not in err
    assert 2 * 2 + 1 <= len(calls) < 5 * 2  # stopped mid-run
    assert os.listdir(tmp_path) == ["c_depth.mkv"]  # also no .g.partial-*.mkv, no .p.partial-* folder
    assert signal.getsignal(signum) is signal.SIG_DFL  # handlers restored


def test_no_progress_prints_no_bar(tmp_path, capsys):
    src = write_ours(tmp_path / "c_depth.mkv", n=2)
    assert tool.main(["--video", str(src), "--output", str(tmp_path / "a.mkv")]) == 0
    assert "greyscale" in capsys.readouterr().err  # the bar, by default
    assert tool.main(["--video", str(src), "--output", str(tmp_path / "b.mkv"), "--no_progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "b.mkv (2 frames, max_depth 6 m)" in captured.out


def test_png_folder_abort_removes_partial_folder(tmp_path):
    pngs = grey.PngSequence(tmp_path / "p")
    pngs.write(np.zeros((2, 3), np.uint16))
    (partial,) = [p for p in tmp_path.iterdir()]
    assert partial.name.startswith(".p.partial-") and partial.is_dir()
    pngs.abort()
    assert os.listdir(tmp_path) == []


def test_png_folder_replaces_an_empty_folder(tmp_path):
    (tmp_path / "p").mkdir()
    pngs = grey.PngSequence(tmp_path / "p")
    pngs.write(np.full((2, 3), 7, np.uint16))
    assert pngs.close() == tmp_path / "p"
    assert os.listdir(tmp_path) == ["p"] and os.listdir(tmp_path / "p") == ["frame_000000.png"]
    np.testing.assert_array_equal(read_png16(tmp_path / "p" / "frame_000000.png"), np.full((2, 3), 7))


@pytest.mark.parametrize("max_depth", [6.0, 20.0, 0.7])
@pytest.mark.parametrize("bit16", [False, True])
def test_every_code_matches_the_original_arithmetic(max_depth, bit16):
    """Every packed code up to max_depth gives the original tool's grey value exactly: the float32 depth
    times the Python float ``full / max_depth`` (a float32 product), rounded half to even."""
    from depth_codec import depth_to_grey, unpack_depth

    codes = np.arange(65536, dtype=np.uint32)
    rgb = np.stack([codes >> 8, codes >> 8, codes & 255], -1).astype(np.uint8)[None]  # (1, 65536, 3)
    depth = unpack_depth(rgb, max_depth)[0]
    depth = depth[depth <= max_depth]
    full = 65025 if bit16 else 255
    original = np.clip(np.rint(depth.astype(np.float32) * np.float32(full / max_depth)), 0, full)
    got = depth_to_grey(depth[None], max_depth, bit16=bit16)[0]
    np.testing.assert_array_equal(got.astype(np.int64), original.astype(np.int64))
    if bit16 and max_depth == 6.0:
        # The two-step float32 arithmetic used before differs on a few codes: this test would catch it.
        two_step = np.rint(depth * np.float32(full) / np.float32(max_depth))
        assert 0 < int((two_step != original).sum()) < 100


def test_replacing_an_existing_output_says_so(tmp_path, capsys):
    src = write_ours(tmp_path / "clip_depth.mkv")
    assert tool.main(["--video", str(src), "--no_progress"]) == 0
    assert "replaced" not in capsys.readouterr().err
    assert tool.main(["--video", str(src), "--bit16", "--no_progress"]) == 0  # same name, as in the original
    err = capsys.readouterr().err
    assert "clip_depth.mkv_grey_depth.mkv exists and will be replaced" in err and err.count("\n") == 1

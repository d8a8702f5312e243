"""depth_codec: the original tool's RGB packing, bit for bit, and the self-describing depth videos.

Expected values are worked out by hand in the comments (max_depth = 6 m unless stated):
  full scale 255**4 = 4_228_250_625;  scale = 255**4 / 6 = 704_708_437.5  (float32: 704_708_416)
  v = uint32(d * 255**4 / max_depth);  R = G = v >> 24;  B = (v >> 16) & 255
  depth = float32(high << 24 | B << 16) / float32(scale)
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import numpy as np
import pytest

from mvda.errors import UserError
from depth_codec import (
    DEFAULT_MAX_DEPTH,
    ENCODING_NAME,
    FULL_SCALE,
    DepthVideoReader,
    DepthVideoWriter,
    depth_step,
    depth_to_grey,
    looks_like_packed_depth,
    pack_depth,
    resolve_max_depth,
    sanitize_depth,
    unpack_depth,
)
from mvda.io.video import VideoWriter, probe_video
from tests.helpers import original_pack, original_unpack, read_depth_frames, write_lossless_video


def listdir(path) -> list[str]:
    return sorted(os.listdir(path))


# --- pack / unpack arithmetic ----------------------------------------------------------------------
def test_constants():
    assert FULL_SCALE == 4_228_250_625
    # one code step is 65536 / scale = 65536 * 6 / 255**4 m = 0.0000930 m
    assert depth_step(6.0) == pytest.approx(9.2997e-5, rel=1e-4)


@pytest.mark.parametrize(
    "depth, expected",
    [
        (0.0, (0, 0, 0)),
        (9e-5, (0, 0, 0)),  # v = 63_423 < 65_536: below one step
        (1e-4, (0, 0, 1)),  # v = 70_470 = 1 * 65536 + 4934
        (0.25, (10, 10, 128)),  # v = 176_177_109 = 10 * 2**24 + 128 * 65536 + 25_109
        (3.0, (126, 126, 2)),  # v = 2_114_125_312 = 126 * 2**24 + 2 * 65536 + 64_000
        (5.9999, (252, 252, 4)),  # v = 4_228_180_154 = 252 * 2**24 + 4 * 65536 + 59_578
        (6.0, (252, 252, 5)),  # v = 255**4 = 252 * 2**24 + 5 * 65536 + 64_513
    ],
)
def test_pack_hand_vectors(depth, expected):
    rgb = pack_depth(np.array([[depth]]), 6.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 1, 3)
    assert tuple(int(c) for c in rgb[0, 0]) == expected


def test_pack_other_max_depth():
    # max_depth 10: v(3 m) = 1_268_475_187 = 75 * 2**24 + 155 * 65536 + ...; v(10 m) = 255**4
    rgb = pack_depth(np.array([[3.0, 10.0]]), 10.0)
    np.testing.assert_array_equal(rgb[0], [[75, 75, 155], [252, 252, 5]])


@pytest.mark.parametrize(
    "rgb, expected",
    [
        ((0, 0, 0), 0.0),
        ((0, 0, 1), 9.299732482759282e-05),  # 65536 / 704_708_416
        ((126, 126, 2), 2.9999077320098877),  # (126 * 2**24 + 2 * 65536) / 704_708_416
        ((252, 252, 5), 5.999908447265625),  # 4_228_186_112 / 704_708_416 (max_depth's code)
        ((255, 255, 255), 6.094579696655273),  # 4_294_901_760 / 704_708_416: largest code
        # R != G (compression damage): high = uint8((R + G) / 2), float division truncated
        ((127, 128, 0), 3.023529052734375),  # 127.5 -> 127: 127 * 2**24 / 704_708_416
        ((255, 0, 0), 3.023529052734375),  # 127.5 -> 127
        ((0, 1, 9), 0.000836975930724293),  # 0.5 -> 0; 9 * 65536 / 704_708_416
        ((200, 201, 7), 4.76211404800415),  # 200.5 -> 200
    ],
)
def test_unpack_hand_vectors(rgb, expected):
    depth = unpack_depth(np.array([[rgb]], dtype=np.uint8), 6.0)
    assert depth.dtype == np.float32 and depth.shape == (1, 1)
    assert depth[0, 0] == np.float32(expected)  # exact: float32 arithmetic as the original


def test_unpack_other_max_depth():
    # max_depth 10: float32(255**4 / 10) = 422_825_056; (252 * 2**24 + 5 * 65536) / that = 9.99984741
    depth = unpack_depth(np.array([[[252, 252, 5]]], dtype=np.uint8), 10.0)
    assert depth[0, 0] == np.float32(9.999847412109375)


def test_pack_rejects_unsanitized_depth():
    for bad in (np.nan, -0.1, 6.5, np.inf):
        with pytest.raises(ValueError):
            pack_depth(np.array([[bad]]), 6.0)


def test_unpack_rejects_non_rgb():
    with pytest.raises(ValueError):
        unpack_depth(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        unpack_depth(np.zeros((4, 4, 3), np.float32))


@pytest.mark.parametrize("max_depth", [6.0, 10.0, 80.0])
def test_matches_original_formula_on_random_depth(max_depth):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0, max_depth, size=(37, 53))
    depth[0, :4] = [0.0, max_depth, max_depth * (1 - 1e-9), depth_step(max_depth)]
    ours = pack_depth(depth, max_depth)
    theirs = original_pack(depth, max_depth)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(unpack_depth(theirs, max_depth), original_unpack(theirs, max_depth))
    # Quantisation only truncates: decoded <= true and within one step (plus float32 rounding).
    decoded = unpack_depth(ours, max_depth).astype(np.float64)
    err = depth - decoded
    assert err.min() >= -1e-6 * max_depth and err.max() <= depth_step(max_depth) * (1 + 1e-6)


def test_unpack_matches_original_on_damaged_frames():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(29, 31, 3), dtype=np.uint8)  # R != G almost everywhere
    np.testing.assert_array_equal(unpack_depth(rgb, 6.0), original_unpack(rgb, 6.0))


# --- sanitising ------------------------------------------------------------------------------------
def test_sanitize_counts_and_maps():
    d = np.array([[1.0, 7.0, np.nan, -2.0], [np.inf, -np.inf, 6.0, 6.0000001]])
    out, clipped, invalid = sanitize_depth(d, 6.0)
    np.testing.assert_array_equal(out, [[1.0, 6.0, 0.0, 0.0], [0.0, 0.0, 6.0, 6.0]])
    assert (clipped, invalid) == (2, 4)  # 7.0 and 6.0000001 clipped; nan, -2, inf, -inf invalid


def test_looks_like_packed_depth():
    packed = pack_depth(np.linspace(0, 6, 100).reshape(10, 10), 6.0)
    assert looks_like_packed_depth(packed)
    colour = np.random.default_rng(2).integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
    assert not looks_like_packed_depth(colour)


def test_resolve_max_depth(caplog):
    assert resolve_max_depth(None, None) == DEFAULT_MAX_DEPTH == 6.0  # original files: no tag
    assert resolve_max_depth("12.5", None) == 12.5
    with caplog.at_level(logging.WARNING, logger="mvda"):
        assert resolve_max_depth("12.5", 12.5) == 12.5
        assert not caplog.records
        assert resolve_max_depth("12.5", 20.0, "x.mkv") == 20.0
        assert "overrides the file's max_depth tag 12.5" in caplog.text
        caplog.clear()
        assert resolve_max_depth("banana", None, "x.mkv") == 6.0
        assert "unreadable max_depth tag" in caplog.text


# --- greyscale conversion (rgb_depth_to_greyscale.py) ---------------------------------------------
def test_depth_to_grey_8bit():
    d = np.array([[0.0, 1.5, 3.0, 6.0, 7.0, np.nan]])
    # rint(d * 255 / 6): 0, 63.75 -> 64, 127.5 -> 128 (half to even), 255, 297.5 -> clipped 255, nan -> 0
    np.testing.assert_array_equal(depth_to_grey(d, 6.0), [[0, 64, 128, 255, 255, 0]])
    assert depth_to_grey(d, 6.0).dtype == np.uint8
    np.testing.assert_array_equal(depth_to_grey(d, 6.0, inverse=True), [[255, 191, 127, 0, 0, 255]])


def test_depth_to_grey_16bit():
    d = np.array([[0.0, 1.5, 3.0, 6.0, 7.0]])
    # rint(d * 65025 / 6): 0, 16256.25 -> 16256, 32512.5 -> 32512 (half to even), 65025, clipped 65025
    out = depth_to_grey(d, 6.0, bit16=True)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 16256, 32512, 65025, 65025]])
    np.testing.assert_array_equal(depth_to_grey(d, 6.0, bit16=True, inverse=True),
                                  [[65025, 48769, 32513, 0, 0]])


# --- depth video files -----------------------------------------------------------------------------
def test_lossless_file_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    h, w = 17, 33  # odd sizes on purpose: FFV1 takes any size
    depths = [rng.uniform(0, 6.0, size=(h, w)) for _ in range(3)]
    raw = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    raw[..., 1] = raw[..., 0]  # any R = G frame, including codes above max_depth
    path = tmp_path / "clip_depth.mkv"
    with DepthVideoWriter(path, w, h, Fraction(30000, 1001), max_depth=6.0) as writer:
        for d in depths:
            writer.write(d)
        writer.write_packed(raw)
    assert listdir(tmp_path) == ["clip_depth.mkv"]
    info = probe_video(path)
    assert (info.codec, info.width, info.height, info.fps) == ("ffv1", w, h, Fraction(30000, 1001))
    with DepthVideoReader(path) as reader:
        packed = list(reader.packed_frames())
    assert len(packed) == 4
    for got, d in zip(packed, depths):
        np.testing.assert_array_equal(got, pack_depth(d, 6.0))
    np.testing.assert_array_equal(packed[3], raw)
    decoded = read_depth_frames(path)
    for got, d in zip(decoded, depths):
        np.testing.assert_array_equal(got, unpack_depth(pack_depth(d, 6.0), 6.0))


def test_metadata_tags_round_trip(tmp_path, caplog):
    path = tmp_path / "tagged.mkv"
    depth = np.full((8, 10), 2.0)
    with DepthVideoWriter(path, 10, 8, 25, max_depth=8.0) as writer:
        writer.write(depth)
    info = probe_video(path)
    assert info.tag("max_depth") == "8.0" and info.tag("depth_encoding") == ENCODING_NAME
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with DepthVideoReader(path) as reader:
            assert reader.tagged and reader.max_depth == 8.0
            frame = next(iter(reader))
        assert not caplog.records
    assert abs(float(frame[0, 0]) - 2.0) <= depth_step(8.0)
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with DepthVideoReader(path, max_depth=8.0) as reader:  # agrees: no warning
            next(iter(reader))
        assert not caplog.records
        with DepthVideoReader(path, max_depth=4.0) as reader:  # disagrees: the flag wins, warned
            assert reader.max_depth == 4.0
            halved = next(iter(reader))
        assert "--max_depth 4 overrides the file's max_depth tag 8" in caplog.text
    # The same codes scaled by 4 / 8 (exactly: float32 division by twice the scale).
    np.testing.assert_allclose(halved, frame / 2, rtol=1e-6)


def test_original_file_without_tags_decodes_with_6m(tmp_path, caplog):
    rng = np.random.default_rng(4)
    depths = [rng.uniform(0, 6.0, size=(12, 16)) for _ in range(2)]
    packed = [original_pack(d, 6.0) for d in depths]
    path = tmp_path / "original_depth.mkv"
    write_lossless_video(path, packed)
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with DepthVideoReader(path) as reader:
            assert not reader.tagged and reader.max_depth == 6.0
            decoded = list(reader)
    assert not caplog.records
    for got, rgb in zip(decoded, packed):
        np.testing.assert_array_equal(got, original_unpack(rgb, 6.0))


def test_original_file_with_other_max_depth_flag(tmp_path, caplog):
    depth = np.random.default_rng(5).uniform(0, 20.0, size=(6, 8))
    packed = original_pack(depth, 20.0)
    path = tmp_path / "outdoor_depth.mkv"
    write_lossless_video(path, [packed])
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with DepthVideoReader(path, max_depth=20.0) as reader:  # no tag: nothing to disagree with
            got = next(iter(reader))
    assert not caplog.records
    np.testing.assert_array_equal(got, original_unpack(packed, 20.0))


def test_clipping_beyond_max_depth_is_counted_and_warned(tmp_path, caplog):
    depth = np.full((4, 5), 3.0)
    depth[0, :3] = [6.5, 100.0, 7.0]  # 3 pixels beyond 6 m, twice -> 6 clipped
    path = tmp_path / "clip.mkv"
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with DepthVideoWriter(path, 5, 4, 10, max_depth=6.0) as writer:
            writer.write(depth)
            writer.write(depth)
    assert writer.stats.clipped == 6 and writer.stats.invalid == 0
    assert "6 depth pixels beyond max_depth 6 m were clipped" in caplog.text
    with DepthVideoReader(path) as reader:
        frame = next(iter(reader))
    # Clipped, never rescaled: the rest of the frame keeps its metres.
    np.testing.assert_array_equal(frame[0, :3], [np.float32(5.999908447265625)] * 3)
    assert abs(float(frame[2, 2]) - 3.0) <= depth_step(6.0)


def test_invalid_depth_is_written_as_zero_with_warning(tmp_path, caplog):
    depth = np.full((4, 5), 2.0, dtype=np.float32)
    depth[1, :3] = [np.nan, np.inf, -1.0]
    path = tmp_path / "bad.mkv"
    with caplog.at_level(logging.WARNING, logger="mvda"):
        with DepthVideoWriter(path, 5, 4, 10) as writer:
            writer.write(depth)
    assert writer.stats.invalid == 3 and writer.stats.clipped == 0
    assert "3 depth pixels were NaN, infinite or negative and were written as 0" in caplog.text
    with DepthVideoReader(path) as reader:
        frame = next(iter(reader))
    np.testing.assert_array_equal(frame[1, :3], [0.0, 0.0, 0.0])
    assert np.isfinite(frame).all()


def test_colour_video_passed_as_depth_raises(tmp_path):
    rng = np.random.default_rng(6)
    path = tmp_path / "colour.mkv"
    write_lossless_video(path, [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)])
    with pytest.raises(UserError, match="does not look like an RGB-packed depth video"):
        DepthVideoReader(path)  # judged when opened, before any output exists


def test_greyscale_video_passed_as_depth_raises(tmp_path):
    path = tmp_path / "grey.mkv"
    with VideoWriter(path, 8, 8, 10, codec="ffv1", pix_fmt="gray16le", input_format="gray16le") as w:
        w.write(np.zeros((8, 8), np.uint16))
    with pytest.raises(UserError, match="greyscale depth video"):
        DepthVideoReader(path)


def test_exception_inside_writer_leaves_nothing(tmp_path):
    path = tmp_path / "crash_depth.mkv"
    with pytest.raises(RuntimeError, match="boom"):
        with DepthVideoWriter(path, 4, 4, 10) as writer:
            writer.write(np.ones((4, 4)))
            assert listdir(tmp_path) != []  # the hidden temporary file exists while writing
            assert not path.exists()
            raise RuntimeError("boom")
    assert listdir(tmp_path) == []


def test_keyboard_interrupt_inside_writer_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with DepthVideoWriter(tmp_path / "x.mkv", 4, 4, 10) as writer:
            writer.write(np.ones((4, 4)))
            raise KeyboardInterrupt
    assert listdir(tmp_path) == []


def test_writer_to_unwritable_folder_raises_cli_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(UserError, match="cannot create output folder"):
        DepthVideoWriter(blocker / "out_depth.mkv", 4, 4, 10)
    assert listdir(tmp_path) == ["not_a_folder"]


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(UserError, match=r"\.mkv"):
        DepthVideoWriter(tmp_path / "depth.mp4", 4, 4, 10)
    with pytest.raises(UserError, match="max_depth"):
        DepthVideoWriter(tmp_path / "depth.mkv", 4, 4, 10, max_depth=0.0)
    assert listdir(tmp_path) == []


# --- damaged files, colour judged over the whole file (issue 12) -------------------------------------
def _ramp_depth(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    return (np.linspace(0.5, 5.0, h * w, dtype=np.float32).reshape(h, w) + 0.05 * i).astype(np.float32)


def _damaged_copy(src, dst, flips: int = 8) -> None:
    data = bytearray(open(src, "rb").read())
    for k in range(flips):  # bytes in the middle of the file: inside a frame's slices, not the header
        data[len(data) // 2 + 13 * k] ^= 0xFF
    open(dst, "wb").write(bytes(data))


def test_damaged_depth_file_fails_naming_the_frame(tmp_path):
    good, bad = tmp_path / "good_depth.mkv", tmp_path / "bad_depth.mkv"
    with DepthVideoWriter(good, 64, 48, 10, max_depth=6.0) as writer:
        for i in range(10):
            writer.write(_ramp_depth(i))
    _damaged_copy(good, bad)
    with DepthVideoReader(bad) as reader:
        with pytest.raises(UserError, match=r"frame \d+ is damaged"):
            list(reader)
    # --skip_damaged: the damaged frame is left out and counted; every other frame decodes exactly.
    with DepthVideoReader(bad, skip_damaged=True) as reader:
        indexed = list(reader.indexed_packed_frames())
        assert len(reader.damaged_frames) >= 1
    kept = [i for i, _ in indexed]
    assert len(kept) + len(reader.damaged_frames) == 10 and not set(kept) & set(reader.damaged_frames)
    with DepthVideoReader(good) as reader:
        clean = list(reader.packed_frames())
    for i, rgb in indexed:
        assert np.array_equal(rgb, clean[i])


def test_truncated_depth_file_is_an_error(tmp_path):
    good, cut = tmp_path / "good_depth.mkv", tmp_path / "cut_depth.mkv"
    with DepthVideoWriter(good, 64, 48, 10, max_depth=6.0) as writer:
        for i in range(20):
            writer.write(_ramp_depth(i))
    data = open(good, "rb").read()
    open(cut, "wb").write(data[: len(data) * 6 // 10])
    with DepthVideoReader(cut) as reader:
        with pytest.raises(UserError, match="frames its container declares|damaged|decode error"):
            list(reader)


def test_colour_video_with_a_black_first_frame_is_refused(tmp_path):
    rng = np.random.default_rng(7)
    frames = [np.zeros((16, 16, 3), np.uint8)] * 3 + [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)] * 7
    path = tmp_path / "fade_in.mkv"
    write_lossless_video(path, frames)
    with pytest.raises(UserError, match="does not look like an RGB-packed depth video"):
        DepthVideoReader(path)


def test_monochrome_h264_is_refused_and_a_real_original_file_accepted(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32]
    grey = [np.repeat(((xx * 8 + i) % 256).astype(np.uint8)[..., None], 3, axis=2) for i in range(6)]
    mono = tmp_path / "mono.mp4"
    with VideoWriter(mono, 32, 32, 10, codec="libx264", pix_fmt="yuv420p") as writer:
        for frame in grey:
            writer.write(frame)
    with pytest.raises(UserError, match="monochrome"):
        DepthVideoReader(mono)
    original = tmp_path / "original_depth.mkv"
    write_lossless_video(original, [pack_depth(_ramp_depth(i, 32, 32)) for i in range(6)])
    with DepthVideoReader(original) as reader:
        assert len(list(reader)) == 6

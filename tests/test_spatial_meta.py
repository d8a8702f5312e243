"""Stereo / spherical metadata written into finished MP4 and Matroska files, read back by parsing the
boxes / elements ourselves and with PyAV (FFmpeg's demuxers turn them into frame side data)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest

from mvda.io import spatial_meta as sm
from mvda.io import ebml
from mvda.io.spatial_meta import (SpatialMetadata, flat_metadata, read_matroska_projection, read_mp4_spatial_metadata,
                                  st3d_box, sv3d_box, vr180_metadata, write_matroska_spatial,
                                  write_mp4_spatial_metadata)

# FFmpeg enums (libavutil/stereo3d.h, spherical.h)
AV_STEREO3D_SIDEBYSIDE, AV_STEREO3D_TOPBOTTOM = 1, 2
AV_SPHERICAL_EQUIRECTANGULAR_TILE = 2


def stripe_frames(n: int = 4, h: int = 32, w: int = 64) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, 8 * i: 8 * i + 8] = 255
        frames.append(f)
    return frames


def encode(path: Path, frames, options: dict | None = None, stream_tags: dict | None = None,
           codec: str = "libx264") -> Path:
    """Encode ``frames`` with PyAV directly (container ``options`` such as movflags=faststart)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for key, value in (stream_tags or {}).items():
            stream.metadata[key] = value
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def side_data(path: Path) -> tuple[dict, list[np.ndarray]]:
    """FFmpeg's view: {"stereo3d": type, "spherical": (projection, yaw, pitch, roll, left, top, right, bottom)}
    from the first decoded frame's side data, and all frames."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    found = {}
    for sd in frames[0].side_data:
        raw = bytes(sd)
        if sd.type.name == "STEREO3D":
            found["stereo3d"] = struct.unpack_from("<i", raw)[0]  # AVStereo3D.type
        elif sd.type.name == "SPHERICAL":
            found["spherical"] = struct.unpack_from("<i3i4I", raw)  # projection, yaw, pitch, roll, bounds l t r b
    return found, [f.to_ndarray(format="rgb24") for f in frames]


def top_level(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [b.kind for b in sm._boxes(data, 0, len(data))]


def test_box_bytes_by_hand():
    assert st3d_box("left-right") == bytes.fromhex("0000000d") + b"st3d" + bytes(4) + b"\x02"
    assert st3d_box("top-bottom")[-1] == 1 and st3d_box("mono")[-1] == 0
    box = sv3d_box((0.0, 0.0, 0.25, 0.25), tool="t")
    # sv3d(8) [svhd(8+4+2) proj(8) [prhd(8+4+12) equi(8+4+16)]] = 8 + 14 + 8 + 24 + 28 = 82
    assert len(box) == 82 and struct.unpack(">I4s", box[:8]) == (82, b"sv3d")
    assert box[8:22] == struct.pack(">I4s", 14, b"svhd") + bytes(4) + b"t\0"
    equi = box[-28:]
    assert equi[:8] == struct.pack(">I4s", 28, b"equi")
    assert struct.unpack(">4I", equi[12:]) == (0, 0, 0x40000000, 0x40000000)  # a quarter of 2^32 each side


@pytest.mark.parametrize("options", [{}, {"movflags": "faststart"}], ids=["moov-at-end", "faststart"])
def test_mp4_vr180_boxes_read_back(tmp_path, options):
    frames = stripe_frames()
    path = encode(tmp_path / "v.mp4", frames, options)
    order = top_level(path)
    assert (order.index(b"moov") < order.index(b"mdat")) == bool(options)  # both layouts really occur
    before, decoded_before = side_data(path)
    assert before == {}
    write_mp4_spatial_metadata(path, vr180_metadata())
    assert read_mp4_spatial_metadata(path) == SpatialMetadata("left-right", (0.0, 0.0, 0.25, 0.25))
    found, decoded = side_data(path)
    assert found["stereo3d"] == AV_STEREO3D_SIDEBYSIDE
    assert found["spherical"] == (AV_SPHERICAL_EQUIRECTANGULAR_TILE, 0, 0, 0, 0x40000000, 0, 0x40000000, 0)
    # The media is untouched (chunk offsets moved with the grown moov in the fast-start file).
    assert len(decoded) == len(frames)
    for a, b in zip(decoded, decoded_before):
        np.testing.assert_array_equal(a, b)
    assert top_level(path) == order


def test_mp4_rewriting_replaces_the_boxes(tmp_path):
    path = encode(tmp_path / "v.mp4", stripe_frames(2))
    write_mp4_spatial_metadata(path, vr180_metadata())
    size = path.stat().st_size
    write_mp4_spatial_metadata(path, flat_metadata("tb"))  # replaces st3d and drops sv3d
    assert read_mp4_spatial_metadata(path) == SpatialMetadata("top-bottom")
    assert path.stat().st_size == size - 82 - len(sm.TOOL_NAME) + 1
    found, _ = side_data(path)
    assert found == {"stereo3d": AV_STEREO3D_TOPBOTTOM}
    # st3d sits right after the codec configuration box
    moov = path.read_bytes()
    _, _, entry = sm._video_sample_entry(moov[moov.index(b"moov") - 4:])
    kinds = [b.kind for b in sm._boxes(moov[moov.index(b"moov") - 4:], entry.body + 78, entry.end)]
    assert kinds[kinds.index(b"avcC") + 1] == b"st3d"


def test_mp4_without_video_or_boxes(tmp_path):
    path = encode(tmp_path / "v.mp4", stripe_frames(2))
    assert read_mp4_spatial_metadata(path) is None
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x08free")
    with pytest.raises(ValueError, match="moov"):
        write_mp4_spatial_metadata(bad, vr180_metadata())


def crc_ok(path: Path) -> dict[int, bool]:
    """{level-1 element id: its CRC-32 child matches its payload} for the elements before the first Cluster."""
    data = path.read_bytes()
    header = ebml.element_at(data, 0, len(data))
    segment = ebml.element_at(data, header.end, len(data))
    out = {}
    for el in ebml.elements(data, segment.body, segment.end, stop_at=0x1F43B675):
        first = ebml.element_at(data, el.body, el.end) if el.size and el.id != 0xEC else None  # not the Void
        if first is not None and first.id == 0xBF:
            out[el.id] = zlib.crc32(data[first.end:el.end]) == int.from_bytes(data[first.body:first.end], "little")
    return out


def test_matroska_stereo_mode_tag_and_projection(tmp_path):
    frames = stripe_frames()
    path = encode(tmp_path / "v.mkv", frames, stream_tags=sm.matroska_stream_tags(vr180_metadata()))
    crcs = crc_ok(path)
    assert crcs and all(crcs.values())  # FFmpeg's own CRC-32s pass this check
    assert read_matroska_projection(path) == SpatialMetadata("left-right")  # StereoMode from the muxer
    length = path.stat().st_size
    write_matroska_spatial(path, vr180_metadata())
    assert path.stat().st_size == length
    assert read_matroska_projection(path) == SpatialMetadata("left-right", (0.0, 0.0, 0.25, 0.25))
    assert crc_ok(path) == crcs  # SeekHead and Tracks CRC-32s recomputed
    found, decoded = side_data(path)
    assert found["stereo3d"] == AV_STEREO3D_SIDEBYSIDE
    assert found["spherical"] == (AV_SPHERICAL_EQUIRECTANGULAR_TILE, 0, 0, 0, 0x40000000, 0, 0x40000000, 0)
    assert len(decoded) == len(frames)
    with av.open(str(path)) as container:  # the SeekHead still points at the right elements (Cues: seeking)
        container.seek(0)
        assert len(list(container.decode(video=0))) == len(frames)
    write_matroska_spatial(path, vr180_metadata())  # again: replaced, not doubled
    assert read_matroska_projection(path).equirect_bounds == (0.0, 0.0, 0.25, 0.25)
    assert side_data(path)[0]["spherical"][0] == AV_SPHERICAL_EQUIRECTANGULAR_TILE
    write_matroska_spatial(path, flat_metadata("tb"))  # Projection removed, StereoMode replaced: the Void grows
    assert read_matroska_projection(path) == SpatialMetadata("top-bottom")
    assert crc_ok(path) == crcs
    found, decoded = side_data(path)
    assert found == {"stereo3d": AV_STEREO3D_TOPBOTTOM} and len(decoded) == len(frames)


def test_matroska_stereo_mode_written_into_an_untagged_file(tmp_path):
    path = encode(tmp_path / "v.mkv", stripe_frames(3))
    assert read_matroska_projection(path) is None
    write_matroska_spatial(path, flat_metadata("sbs"))
    assert read_matroska_projection(path) == SpatialMetadata("left-right")
    assert side_data(path)[0] == {"stereo3d": AV_STEREO3D_SIDEBYSIDE}
    assert all(crc_ok(path).values())


@pytest.mark.parametrize("fmt, expected", [("sbs", AV_STEREO3D_SIDEBYSIDE), ("half-tb", AV_STEREO3D_TOPBOTTOM)])
def test_matroska_flat_stereo_mode(tmp_path, fmt, expected):
    path = encode(tmp_path / "v.mkv", stripe_frames(2), stream_tags=sm.matroska_stream_tags(flat_metadata(fmt)))
    assert read_matroska_projection(path) == flat_metadata(fmt)
    assert side_data(path)[0] == {"stereo3d": expected}


def test_metadata_values():
    assert flat_metadata("anaglyph") is None
    assert flat_metadata("half-sbs") == SpatialMetadata("left-right")
    with pytest.raises(ValueError):
        SpatialMetadata("sideways")
    with pytest.raises(ValueError):
        SpatialMetadata("mono", (0.0, 0.0, 0.5, 0.5))


def test_stereo_tag_shows_and_sets(tmp_path, capsys):
    from mvda import stereo_tag

    mp4 = encode(tmp_path / "old.mp4", stripe_frames(3))
    mkv = encode(tmp_path / "old.mkv", stripe_frames(3))
    assert stereo_tag.main([str(mp4), str(mkv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{mp4}: no stereo metadata (players show it as a flat video)",
                   f"{mkv}: no stereo metadata (players show it as a flat video)"]
    assert stereo_tag.main(["--set", "vr180", str(mp4), str(mkv)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{p}: left-right, equirectangular 180 x 180 degrees" for p in (mp4, mkv)]
    assert side_data(mp4)[0]["spherical"][4:] == (1 << 30, 0, 1 << 30, 0)
    assert side_data(mkv)[0]["spherical"][4:] == (1 << 30, 0, 1 << 30, 0)
    assert stereo_tag.main(["--set", "half-tb", str(mkv)]) == 0
    assert capsys.readouterr().out.strip() == f"{mkv}: top-bottom"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mkv", "old.mp4"]  # no temporary copies left


def test_stereo_tag_errors_are_one_line(tmp_path, capsys):
    from mvda import stereo_tag
    from tests.helpers import one_line_error

    assert stereo_tag.main([str(tmp_path / "missing.mp4")]) == 2
    one_line_error(capsys, "missing.mp4", "no such file", prog=stereo_tag.PROG)
    avi = tmp_path / "x.avi"
    avi.write_bytes(b"RIFF")
    assert stereo_tag.main(["--set", "sbs", str(avi)]) == 2
    one_line_error(capsys, "x.avi", ".mp4", prog=stereo_tag.PROG)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0\0\0\x10ftypisom\0\0\0\0")
    assert stereo_tag.main(["--set", "sbs", str(junk)]) == 2
    one_line_error(capsys, "junk.mp4", "cannot write its metadata", prog=stereo_tag.PROG)
    assert junk.read_bytes() == b"\0\0\0\x10ftypisom\0\0\0\0"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4", "x.avi"]

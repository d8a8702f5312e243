"""mvda.io.ebml: a container tag reserved when the file is written and filled in place at the end."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from depth_codec import DepthVideoReader, DepthVideoWriter
from mvda.io import ebml
from mvda.io.video import VideoReader


def depth_file(path: Path, tags: dict[str, str]) -> Path:
    with DepthVideoWriter(path, 32, 24, 24, metadata=tags) as writer:
        for k in range(3):
            writer.write(np.full((24, 32), 1.0 + k, np.float32))
    return path


def level1(data: bytes) -> list[ebml.Element]:
    header = ebml.element_at(data, 0, len(data))
    segment = ebml.element_at(data, header.end, len(data))
    return ebml.elements(data, segment.body, segment.end)


def crc_ok(data: bytes, el: ebml.Element) -> bool:
    first = ebml.element_at(data, el.body, el.end)
    assert first.id == ebml.CRC32
    return int.from_bytes(data[first.body:first.end], "little") == zlib.crc32(data[first.end:el.end])


@pytest.mark.parametrize("value", ["48,120,977", "7"])
def test_fill_reserved_tag_in_place(tmp_path, value):
    path = depth_file(tmp_path / "d_depth.mkv", {"before": "1", "scene_cuts": ebml.reserve_tag(64), "after": "2"})
    old = path.read_bytes()
    assert ebml.fill_reserved_tag(path, "scene_cuts", value)
    new = path.read_bytes()
    assert len(new) == len(old)
    tags = next(e for e in level1(new) if e.id == ebml.TAGS)
    assert crc_ok(new, tags)
    # Only the tag's bytes and the Tags element's CRC changed; the frames are untouched.
    changed = np.flatnonzero(np.frombuffer(old, np.uint8) != np.frombuffer(new, np.uint8))
    assert tags.start <= changed.min() and changed.max() < tags.end
    with VideoReader(path) as reader:
        assert reader.info.tag("scene_cuts") == value
        assert reader.info.tag("before") == "1" and reader.info.tag("after") == "2"
    with DepthVideoReader(path) as reader:
        np.testing.assert_allclose(np.stack(list(reader))[:, 0, 0], [1.0, 2.0, 3.0], atol=1e-3)


def test_empty_value_removes_the_tag(tmp_path):
    path = depth_file(tmp_path / "d_depth.mkv", {"scene_cuts": ebml.reserve_tag(40), "after": "2"})
    assert ebml.fill_reserved_tag(path, "SCENE_CUTS", "")
    data = path.read_bytes()
    assert crc_ok(data, next(e for e in level1(data) if e.id == ebml.TAGS))
    with VideoReader(path) as reader:
        assert reader.info.tag("scene_cuts") is None
        assert reader.info.tag("after") == "2"


def test_a_value_longer_than_the_room_or_no_placeholder_leaves_the_file_alone(tmp_path):
    path = depth_file(tmp_path / "d_depth.mkv", {"scene_cuts": ebml.reserve_tag(20)})
    old = path.read_bytes()
    assert not ebml.fill_reserved_tag(path, "scene_cuts", "1" * 21)
    assert not ebml.fill_reserved_tag(path, "other", "1")
    assert path.read_bytes() == old
    plain = depth_file(tmp_path / "p_depth.mkv", {"scene_cuts": "12"})  # a real value, not a placeholder
    assert not ebml.fill_reserved_tag(plain, "scene_cuts", "1")
    text = tmp_path / "t.mkv"
    text.write_bytes(b"not a video at all")
    assert not ebml.fill_reserved_tag(text, "scene_cuts", "1")

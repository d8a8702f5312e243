"""Stereo-layout and spherical (VR180) metadata that players read, written into finished video files.

MP4 / MOV (Google's Spherical Video V2 RFC): boxes inside the video track's sample entry
(``moov/trak/mdia/minf/stbl/stsd/avc1`` or ``hvc1`` ...), placed right after the codec configuration box:

* ``st3d`` (FullBox, version 0): one byte ``stereo_mode``: 0 mono, 1 top-bottom (left eye on top),
  2 left-right (left eye on the left).
* ``sv3d`` (Box) holding ``svhd`` (FullBox: a NUL-terminated UTF-8 name of the tool) and ``proj`` (Box)
  holding ``prhd`` (FullBox: yaw, pitch, roll as 16.16 fixed-point degrees) and ``equi`` (FullBox: the
  fractions of the full 360 x 180 degree equirectangular image cropped away at the top, bottom, left and
  right, as 0.32 fixed point). A 180-degree half-sphere crops a quarter from the left and from the right:
  bounds (0, 0, 0x40000000, 0x40000000).

FFmpeg's MP4 muxer writes none of these from PyAV, so :func:`write_mp4_spatial_metadata` edits the
finished file: it inserts the boxes, grows every parent box (sample entry, stsd, stbl, minf, mdia, trak,
moov) by the inserted size and, when the ``moov`` box lies before the media data (a "fast start" file),
moves every chunk offset (``stco`` / ``co64``) by the same amount. When ``moov`` is at the end (how
FFmpeg writes by default) only ``moov`` is rewritten in place.

Matroska: the stereo mode is the ``StereoMode`` element, which FFmpeg's Matroska muxer writes from the
stream tag ``stereo_mode`` (:func:`matroska_stream_tags`); the projection is the ``Projection`` element
(ID 0x7670) inside the track's ``Video`` element: ``ProjectionType`` (0x7671) 1 = equirectangular and
``ProjectionPrivate`` (0x7672) = the ``equi`` box's payload (version, flags and the four bounds).
:func:`write_matroska_spatial` inserts both into a finished file (see there).
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from mvda.io import ebml

__all__ = ["SpatialMetadata", "flat_metadata", "vr180_metadata", "st3d_box", "sv3d_box", "mp4_box",
           "write_mp4_spatial_metadata", "read_mp4_spatial_metadata", "matroska_stream_tags",
           "write_matroska_spatial", "read_matroska_projection", "write_spatial_metadata",
           "projection_element"]

#: st3d stereo_mode values.
ST3D_MODES = {"mono": 0, "top-bottom": 1, "left-right": 2}
#: FFmpeg's names for Matroska StereoMode values (the ``stereo_mode`` stream tag).
MATROSKA_STEREO_TAGS = {"mono": "mono", "left-right": "left_right", "top-bottom": "top_bottom"}
TOOL_NAME = "metric video depth anything"

# Codec configuration boxes after which st3d/sv3d go.
_CONFIG_BOXES = {b"avcC", b"hvcC", b"av1C", b"vpcC", b"esds", b"glbl"}
# Bytes of a VisualSampleEntry's fixed fields after its 8-byte header, before its child boxes.
_VISUAL_SAMPLE_ENTRY_FIELDS = 78


@dataclass(frozen=True)
class SpatialMetadata:
    """How a player should present a video: ``stereo`` ("mono", "left-right", "top-bottom") and, for a
    spherical (equirectangular) video, ``equirect_bounds``: the fractions (top, bottom, left, right) of
    the full 360 x 180 degree sphere that the frame does not cover (None: a flat video)."""

    stereo: str
    equirect_bounds: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.stereo not in ST3D_MODES:
            raise ValueError(f"unknown stereo mode {self.stereo!r}; choose one of {', '.join(ST3D_MODES)}")
        if self.equirect_bounds is not None:
            t, b, left, r = self.equirect_bounds
            if min(self.equirect_bounds) < 0 or t + b >= 1 or left + r >= 1:
                raise ValueError(f"equirectangular bounds {self.equirect_bounds} must be >= 0 and leave some "
                                 "of the sphere")


def flat_metadata(fmt: str) -> SpatialMetadata | None:
    """The metadata of a flat stereo layout of :mod:`mvda.ops.stereo_warp` (None for an anaglyph, which
    players show as an ordinary video)."""
    stereo = {"sbs": "left-right", "half-sbs": "left-right", "tb": "top-bottom", "half-tb": "top-bottom"}.get(fmt)
    return None if stereo is None else SpatialMetadata(stereo)


def vr180_metadata() -> SpatialMetadata:
    """Side-by-side 180 x 180 degree equirectangular eyes: a quarter of the sphere's width cropped on each side."""
    return SpatialMetadata("left-right", (0.0, 0.0, 0.25, 0.25))


# ------------------------------------------------------------------------------------------------
# MP4 boxes
# ------------------------------------------------------------------------------------------------
def mp4_box(kind: bytes, payload: bytes, full: bool = False) -> bytes:
    """A box: 32-bit size, four-character type, (version 0 and flags 0 for a FullBox), payload."""
    body = (b"\0\0\0\0" if full else b"") + payload
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _fixed_0_32(fraction: float) -> int:
    return min(0xFFFFFFFF, round(fraction * 2 ** 32))


def st3d_box(stereo: str) -> bytes:
    """The 13-byte ``st3d`` box of a stereo mode ("mono", "left-right", "top-bottom")."""
    return mp4_box(b"st3d", bytes([ST3D_MODES[stereo]]), full=True)


def _equi_payload(bounds: tuple[float, float, float, float]) -> bytes:
    """The equi box's bounds (top, bottom, left, right) as four 0.32 fixed-point numbers."""
    return struct.pack(">4I", *(_fixed_0_32(b) for b in bounds))


def sv3d_box(bounds: tuple[float, float, float, float], tool: str = TOOL_NAME) -> bytes:
    """An ``sv3d`` box for an equirectangular projection with the given crop ``bounds`` (fractions
    top, bottom, left, right) and the default pose (yaw = pitch = roll = 0)."""
    svhd = mp4_box(b"svhd", tool.encode("utf-8") + b"\0", full=True)
    prhd = mp4_box(b"prhd", struct.pack(">3i", 0, 0, 0), full=True)
    equi = mp4_box(b"equi", _equi_payload(bounds), full=True)
    return mp4_box(b"sv3d", svhd + mp4_box(b"proj", prhd + equi))


def _spatial_boxes(meta: SpatialMetadata) -> bytes:
    boxes = st3d_box(meta.stereo)
    if meta.equirect_bounds is not None:
        boxes += sv3d_box(meta.equirect_bounds)
    return boxes


@dataclass
class _Box:
    kind: bytes
    start: int  # offset of the box's first byte
    header: int  # 8, or 16 with a 64-bit size
    size: int  # whole box, header included

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def body(self) -> int:
        return self.start + self.header


def _box_at(head: bytes | bytearray, offset: int, pos: int, end: int) -> _Box:
    """The box whose header starts at ``head[offset:]``, which lies at ``pos`` in a parent ending at
    ``end`` (size 1: a 64-bit size follows the type; size 0: up to ``end``)."""
    size, kind = struct.unpack_from(">I4s", head, offset)
    header = 8
    if size == 1:
        size, header = struct.unpack_from(">Q", head, offset + 8)[0], 16
    elif size == 0:
        size = end - pos
    if size < header or pos + size > end:
        raise ValueError(f"malformed MP4 box {kind!r} at offset {pos}")
    return _Box(kind, pos, header, size)


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[_Box]:
    """The boxes laid out one after another in ``data[start:end]``."""
    out = []
    pos = start
    while pos + 8 <= end:
        out.append(_box_at(data, pos, pos, end))
        pos = out[-1].end
    return out


def _child(data: bytes | bytearray, parent: _Box, kind: bytes) -> _Box | None:
    """The first child box of type ``kind`` of a plain container box (None if there is none)."""
    for box in _boxes(data, parent.body, parent.end):
        if box.kind == kind:
            return box
    return None


def _top_level_boxes(f) -> list[_Box]:
    """The file's top-level boxes, reading only their headers."""
    f.seek(0, os.SEEK_END)
    length = f.tell()
    out, pos = [], 0
    while pos + 8 <= length:
        f.seek(pos)
        out.append(_box_at(f.read(16), 0, pos, length))
        pos = out[-1].end
    return out


def _video_sample_entry(moov: bytes | bytearray) -> tuple[list[_Box], _Box, _Box]:
    """(ancestors from moov down to stsd, the stsd box, the first video sample entry) in ``moov`` bytes."""
    root = _Box(b"moov", 0, *_header_and_size(moov))
    for trak in _boxes(moov, root.body, root.end):
        if trak.kind != b"trak":
            continue
        mdia = _child(moov, trak, b"mdia")
        hdlr = _child(moov, mdia, b"hdlr") if mdia else None
        if hdlr is None or bytes(moov[hdlr.body + 8: hdlr.body + 12]) != b"vide":
            continue
        minf = _child(moov, mdia, b"minf")
        stbl = _child(moov, minf, b"stbl") if minf else None
        stsd = _child(moov, stbl, b"stsd") if stbl else None
        if stsd is None:
            break
        entries = _boxes(moov, stsd.body + 8, stsd.end)  # version/flags and entry_count first
        if not entries:
            break
        return [root, trak, mdia, minf, stbl, stsd], stsd, entries[0]
    raise ValueError("no video track with a sample description in this MP4 file")


def _header_and_size(data: bytes | bytearray) -> tuple[int, int]:
    size = struct.unpack_from(">I", data, 0)[0]
    if size == 1:
        return 16, struct.unpack_from(">Q", data, 8)[0]
    return 8, (len(data) if size == 0 else size)


def _grow(data: bytearray, box: _Box, delta: int) -> None:
    """Add ``delta`` to the size field of ``box`` (32 or 64 bit) in ``data``."""
    new = box.size + delta
    if box.header == 16:
        struct.pack_into(">Q", data, box.start + 8, new)
    elif new < 2 ** 32:
        struct.pack_into(">I", data, box.start, new)
    else:
        raise ValueError(f"MP4 box {box.kind!r} would exceed 4 GiB")


def _shift_chunk_offsets(moov: bytearray, delta: int) -> None:
    """Add ``delta`` to every chunk offset (stco / co64) of every track in ``moov`` bytes."""
    root = _Box(b"moov", 0, *_header_and_size(moov))
    for trak in _boxes(moov, root.body, root.end):
        if trak.kind != b"trak":
            continue
        mdia = _child(moov, trak, b"mdia")
        minf = _child(moov, mdia, b"minf") if mdia else None
        stbl = _child(moov, minf, b"stbl") if minf else None
        if stbl is None:
            continue
        for table in _boxes(moov, stbl.body, stbl.end):
            if table.kind not in (b"stco", b"co64"):
                continue
            count = struct.unpack_from(">I", moov, table.body + 4)[0]
            fmt, width = (">I", 4) if table.kind == b"stco" else (">Q", 8)
            for i in range(count):
                at = table.body + 8 + i * width
                value = struct.unpack_from(fmt, moov, at)[0] + delta
                if table.kind == b"stco" and value >= 2 ** 32:
                    raise ValueError("chunk offset beyond 4 GiB in a 32-bit stco table")
                struct.pack_into(fmt, moov, at, value)


def _spliced_moov(moov: bytes, boxes: bytes) -> bytearray:
    """``moov`` with ``boxes`` in its video sample entry (after the codec configuration; replacing any
    st3d / sv3d already there) and every parent's size grown to match."""
    data = bytearray(moov)
    ancestors, _, entry = _video_sample_entry(data)
    children_start = entry.body + _VISUAL_SAMPLE_ENTRY_FIELDS
    children = _boxes(data, children_start, entry.end)
    old = [c for c in children if c.kind in (b"st3d", b"sv3d")]
    for box in reversed(old):  # drop earlier spatial boxes (so writing twice gives one set)
        del data[box.start:box.end]
    removed = sum(b.size for b in old)
    kept = [c for c in children if c.kind not in (b"st3d", b"sv3d")]
    at = children_start
    for c in kept:  # offsets of kept boxes shift when earlier spatial boxes were removed
        shift = sum(b.size for b in old if b.start < c.start)
        if c.kind in _CONFIG_BOXES:
            at = c.end - shift
    data[at:at] = boxes
    delta = len(boxes) - removed
    for box in ancestors + [entry]:
        _grow(data, box, delta)
    return data


def _hev1_to_hvc1(moov: bytearray) -> None:
    """Rename an ``hev1`` video sample entry to ``hvc1`` and mark its parameter-set arrays (VPS, SPS, PPS)
    complete, in place: Apple's players play HEVC only as ``hvc1``. Valid when no parameter sets are sent
    in-band, which holds for FFmpeg's libx265 in MP4 (it puts them in the hvcC box only)."""
    _, _, entry = _video_sample_entry(moov)
    if entry.kind != b"hev1":
        return
    hvcc = next((b for b in _boxes(moov, entry.body + _VISUAL_SAMPLE_ENTRY_FIELDS, entry.end) if b.kind == b"hvcC"),
                None)
    if hvcc is None:
        return
    pos = hvcc.body + 22  # the fixed part of HEVCDecoderConfigurationRecord
    arrays = moov[pos]
    pos += 1
    for _ in range(arrays):
        if moov[pos] & 0x3F in (32, 33, 34):  # VPS, SPS, PPS
            moov[pos] |= 0x80  # array_completeness
        count = struct.unpack_from(">H", moov, pos + 1)[0]
        pos += 3
        for _ in range(count):
            pos += 2 + struct.unpack_from(">H", moov, pos)[0]
    if pos > hvcc.end:
        raise ValueError("malformed hvcC box")
    moov[entry.start + 4:entry.start + 8] = b"hvc1"


def _copy_range(src, dst, start: int, end: int, chunk: int = 1 << 22) -> None:
    src.seek(start)
    left = end - start
    while left > 0:
        block = src.read(min(chunk, left))
        if not block:
            raise ValueError("file ended early while copying")
        dst.write(block)
        left -= len(block)


def write_mp4_spatial_metadata(path: str | os.PathLike, meta: SpatialMetadata, hvc1: bool = True) -> None:
    """Insert ``st3d`` (and ``sv3d`` for a spherical ``meta``) into the video track of the MP4/MOV file
    ``path``, in place; with ``hvc1`` an HEVC track tagged ``hev1`` becomes ``hvc1`` (see
    :func:`_hev1_to_hvc1`). Raises ValueError when the file is not a well-formed MP4 with a video track."""
    from mvda.io.video import forget_temporary, register_temporary

    path = Path(path)
    boxes = _spatial_boxes(meta)
    with open(path, "r+b") as f:
        top = _top_level_boxes(f)
        moovs = [b for b in top if b.kind == b"moov"]
        if len(moovs) != 1:
            raise ValueError(f"{path.name}: expected one moov box, found {len(moovs)}")
        moov_box = moovs[0]
        f.seek(moov_box.start)
        moov = f.read(moov_box.size)
        new = _spliced_moov(moov, boxes)
        if hvc1:
            _hev1_to_hvc1(new)
        delta = len(new) - len(moov)
        media_after = any(b.kind == b"mdat" and b.start > moov_box.start for b in top)
        if moov_box.end == top[-1].end and not media_after:
            f.seek(moov_box.start)  # the last box: rewrite it in place
            f.write(new)
            f.truncate()
            return
        if media_after:
            _shift_chunk_offsets(new, delta)
        length = top[-1].end
        tmp = register_temporary(path.with_name(f".{path.name}.meta-{os.getpid()}"))
        try:
            with open(tmp, "wb") as out:
                _copy_range(f, out, 0, moov_box.start)
                out.write(new)
                _copy_range(f, out, moov_box.end, length)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            forget_temporary(tmp)
            raise
    os.replace(tmp, path)
    forget_temporary(tmp)


def read_mp4_spatial_metadata(path: str | os.PathLike) -> SpatialMetadata | None:
    """The st3d / sv3d metadata of the MP4's video track, parsed from the boxes (None: neither box)."""
    with open(path, "rb") as f:
        moov_box = next((b for b in _top_level_boxes(f) if b.kind == b"moov"), None)
        if moov_box is None:
            raise ValueError(f"{Path(path).name}: no moov box")
        f.seek(moov_box.start)
        moov = f.read(moov_box.size)
    _, _, entry = _video_sample_entry(moov)
    children = {b.kind: b for b in _boxes(moov, entry.body + _VISUAL_SAMPLE_ENTRY_FIELDS, entry.end)}
    if b"st3d" not in children and b"sv3d" not in children:
        return None
    stereo = "mono"
    if b"st3d" in children:
        code = moov[children[b"st3d"].body + 4]
        stereo = {v: k for k, v in ST3D_MODES.items()}.get(code, f"unknown {code}")
    bounds = None
    if b"sv3d" in children:
        proj = _child(moov, children[b"sv3d"], b"proj")
        equi = _child(moov, proj, b"equi") if proj else None
        if equi is None:
            raise ValueError("sv3d box without proj/equi")
        raw = struct.unpack_from(">4I", moov, equi.body + 4)
        bounds = tuple(v / 2 ** 32 for v in raw)
    return SpatialMetadata(stereo, bounds)


# ------------------------------------------------------------------------------------------------
# Matroska
# ------------------------------------------------------------------------------------------------
def matroska_stream_tags(meta: SpatialMetadata | None) -> dict[str, str]:
    """Stream tags from which FFmpeg's Matroska muxer writes the ``StereoMode`` element."""
    return {} if meta is None else {"stereo_mode": MATROSKA_STEREO_TAGS[meta.stereo]}


_TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _VIDEO, _STEREO_MODE = 0x1654AE6B, 0xAE, 0x83, 0xE0, 0x53B8
_PROJECTION, _PROJECTION_TYPE, _PROJECTION_PRIVATE = 0x7670, 0x7671, 0x7672
_MATROSKA_STEREO_MODES = {0: "mono", 1: "left-right", 3: "top-bottom"}


def projection_element(bounds: tuple[float, float, float, float]) -> bytes:
    """The Matroska ``Projection`` element of an equirectangular projection with crop ``bounds``."""
    private = b"\0\0\0\0" + _equi_payload(bounds)  # equi FullBox version/flags + bounds
    return ebml.ebml(_PROJECTION, ebml.ebml(_PROJECTION_TYPE, b"\x01") + ebml.ebml(_PROJECTION_PRIVATE, private))


def _video_track_path(data: bytes | bytearray, tracks: ebml.Element) -> tuple[ebml.Element, ebml.Element]:
    """(the video TrackEntry, its Video element) inside ``tracks``."""
    for entry in ebml.elements(data, tracks.body, tracks.end):
        if entry.id != _TRACK_ENTRY:
            continue
        children = ebml.elements(data, entry.body, entry.end)
        kinds = [ebml.uint(data, c) for c in children if c.id == _TRACK_TYPE]
        video = next((c for c in children if c.id == _VIDEO), None)
        if kinds == [1] and video is not None:
            return entry, video
    raise ValueError("no video track in this Matroska file")


def _matroska_elements(meta: SpatialMetadata) -> bytes:
    """The Video-element children that carry ``meta``: StereoMode (unless mono) and, when spherical, Projection."""
    code = {v: k for k, v in _MATROSKA_STEREO_MODES.items()}[meta.stereo]
    out = ebml.ebml(_STEREO_MODE, bytes([code])) if code else b""
    if meta.equirect_bounds is not None:
        out += projection_element(meta.equirect_bounds)
    return out


def write_matroska_spatial(path: str | os.PathLike, meta: SpatialMetadata, head_bytes: int = 1 << 20) -> None:
    """Write ``meta`` into the video track of the Matroska file ``path``: its ``StereoMode`` and (for a
    spherical ``meta``) ``Projection`` elements replace any already in the track's ``Video`` element.

    The file keeps its length and every element after ``Tracks`` keeps its position: the inserted bytes
    are taken from the ``Void`` element FFmpeg's muxer reserves after the ``SeekHead`` (the elements
    between that Void and the end of ``Tracks`` move towards the start by as many bytes, and their
    ``SeekHead`` entries and the CRC-32s of ``SeekHead`` and ``Tracks`` are updated). Raises ValueError
    when the file has no such room or no video track.
    """
    with open(path, "r+b") as f:
        head = bytearray(f.read(head_bytes))
        ebml_header = ebml.element_at(head, 0, len(head))
        segment = ebml.element_at(head, ebml_header.end, len(head))
        if segment.id != ebml.SEGMENT:
            raise ValueError("not a Matroska file (no Segment)")
        base = segment.body  # SeekHead positions are relative to here
        level1 = ebml.elements(head, segment.body, min(segment.end, len(head)), stop_at=ebml.CLUSTER)
        tracks = next((e for e in level1 if e.id == _TRACKS), None)
        seekhead = next((e for e in level1 if e.id == ebml.SEEKHEAD), None)
        if tracks is None or tracks.end > len(head):
            raise ValueError("no Tracks element near the start of the file")
        # The new Tracks: the elements appended to the video track's Video element (old ones removed).
        added = _matroska_elements(meta)
        region = bytearray(head[tracks.start:tracks.end])
        local = ebml.element_at(region, 0, len(region))
        entry, video = _video_track_path(region, local)
        old = [c for c in ebml.elements(region, video.body, video.end) if c.id in (_PROJECTION, _STEREO_MODE)]
        removed = sum(c.end - c.start for c in old)
        for c in reversed(old):
            del region[c.start:c.end]
        region[video.end - removed:video.end - removed] = added
        grow = len(added) - removed
        for el in (video, entry, local):
            ebml.set_size(region, el, el.size + grow)
        local = ebml.element_at(region, 0, len(region))
        ebml.refresh_crc(region, local)
        # Shrink the Void by as much as Tracks grew; what lies between them moves towards the start.
        void = next((e for e in level1 if e.id == ebml.VOID and e.end <= tracks.start
                     and e.header + e.size - grow >= 2), None)
        if void is None:
            raise ValueError(f"no reserved space ({grow} bytes) before Tracks for the stereo/projection elements")
        if seekhead is not None and seekhead.start >= void.start:
            raise ValueError("SeekHead after the reserved space: not the layout FFmpeg writes")
        total = void.header + void.size - grow
        width = void.size_width if total - 1 - void.size_width >= 0 else 1
        new_void = bytes([ebml.VOID]) + ebml.size_vint(total - 1 - width, width) + bytes(total - 1 - width)
        middle = head[void.end:tracks.start]
        if len(new_void) + len(middle) + len(region) != tracks.end - void.start:
            raise ValueError("internal error: the rewritten Matroska header changed length")
        head[void.start:tracks.end] = new_void + middle + region
        if seekhead is not None:
            for seek in ebml.elements(head, seekhead.body, seekhead.end):
                if seek.id != ebml.SEEK:
                    continue
                pos_el = next((c for c in ebml.elements(head, seek.body, seek.end) if c.id == ebml.SEEK_POS), None)
                if pos_el is None:
                    continue
                value = ebml.uint(head, pos_el)
                if void.end <= base + value <= tracks.start:
                    head[pos_el.body:pos_el.end] = (value - grow).to_bytes(pos_el.size, "big")
            ebml.refresh_crc(head, seekhead)
        f.seek(0)
        f.write(head[:tracks.end])  # the file's length and everything after Tracks are unchanged


def read_matroska_projection(path: str | os.PathLike, head_bytes: int = 1 << 20) -> SpatialMetadata | None:
    """StereoMode and Projection of the Matroska file's video track, parsed from the elements (None:
    neither element)."""
    with open(path, "rb") as f:
        head = f.read(head_bytes)
    ebml_header = ebml.element_at(head, 0, len(head))
    segment = ebml.element_at(head, ebml_header.end, len(head))
    level1 = ebml.elements(head, segment.body, min(segment.end, len(head)), stop_at=ebml.CLUSTER)
    tracks = next((e for e in level1 if e.id == _TRACKS), None)
    if tracks is None:
        raise ValueError("no Tracks element")
    _, video = _video_track_path(head, tracks)
    children = {c.id: c for c in ebml.elements(head, video.body, video.end)}
    if _STEREO_MODE not in children and _PROJECTION not in children:
        return None
    mode = ebml.uint(head, children[_STEREO_MODE]) if _STEREO_MODE in children else 0
    stereo = _MATROSKA_STEREO_MODES.get(mode, f"unknown {mode}")
    bounds = None
    if _PROJECTION in children:
        proj = {c.id: c for c in ebml.elements(head, children[_PROJECTION].body, children[_PROJECTION].end)}
        private = proj.get(_PROJECTION_PRIVATE)
        raw = struct.unpack_from(">4I", head, private.body + 4) if private is not None else (0, 0, 0, 0)
        bounds = tuple(v / 2 ** 32 for v in raw)
    return SpatialMetadata(stereo, bounds)


def write_spatial_metadata(path: str | os.PathLike, meta: SpatialMetadata) -> None:
    """Write ``meta`` into the finished video ``path``: st3d/sv3d boxes for MP4/MOV, StereoMode/Projection
    elements for Matroska."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mp4", ".mov"):
        write_mp4_spatial_metadata(path, meta)
    elif suffix in (".mkv", ".webm"):
        write_matroska_spatial(path, meta)
    else:
        raise ValueError(f"cannot write stereo metadata into {suffix or 'this'} files")

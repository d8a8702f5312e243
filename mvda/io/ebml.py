"""Matroska files edited in place: the EBML element primitives, and a container tag whose room was
reserved when the file was written, filled once its value is known.

EBML (RFC 8794): every element is an ID (a variable-length integer that keeps its length marker), a
size (a variable-length integer) and the payload; master elements hold elements. A Matroska file is
the EBML header and one ``Segment``, whose level-1 children (``SeekHead``, ``Info``, ``Tracks``, ``Tags``,
``Cluster`` ...) FFmpeg's muxer writes with a ``CRC-32`` first child. A ``Void`` element is filler that
readers skip. A ``String`` payload may end in NUL bytes, which readers drop (FFmpeg pads its own
``DURATION`` tag so), so a string can shrink in place.

:func:`reserve_tag` gives a placeholder value for a global tag that reserves its room in the header
(written before the first frame); :func:`fill_reserved_tag` writes the real value there at the end, or
turns the tag into a ``Void`` when the value is empty, without moving a byte of the rest of the file.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

__all__ = ["Element", "vint", "size_vint", "element_at", "elements", "ebml", "uint", "set_size", "refresh_crc",
           "void_element", "RESERVED_MARK", "reserve_tag", "fill_reserved_tag"]

SEGMENT, SEEKHEAD, SEEK, SEEK_ID, SEEK_POS = 0x18538067, 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
CLUSTER, VOID, CRC32 = 0x1F43B675, 0xEC, 0xBF
TAGS, TAG, SIMPLE_TAG, TAG_NAME, TAG_STRING = 0x1254C367, 0x7373, 0x67C8, 0x45A3, 0x4487

#: How a reserved tag's placeholder value starts.
RESERVED_MARK = "mvda-reserved:"
#: Bytes of the file read to find the reserved tag (the header up to the first Cluster).
HEAD_BYTES = 1 << 21


@dataclass
class Element:
    """An element found at byte ``start``: ``header`` bytes of ID and size, then ``size`` bytes of payload."""

    id: int
    start: int
    header: int  # ID and size bytes
    size: int  # payload bytes
    size_width: int  # bytes of the size field

    @property
    def body(self) -> int:
        return self.start + self.header

    @property
    def end(self) -> int:
        return self.body + self.size


def vint(data: bytes | bytearray, pos: int, keep_marker: bool) -> tuple[int, int]:
    """(value, width) of the EBML variable-length integer at ``pos`` (IDs keep their length marker)."""
    first = data[pos]
    width, mask = 1, 0x80
    while width <= 8 and not first & mask:
        width, mask = width + 1, mask >> 1
    if width > 8:
        raise ValueError(f"malformed EBML number at offset {pos}")
    value = first if keep_marker else first & (mask - 1)
    for i in range(1, width):
        value = (value << 8) | data[pos + i]
    return value, width


def size_vint(value: int, width: int) -> bytes:
    """``value`` as an EBML size of exactly ``width`` bytes (ValueError when it does not fit)."""
    if value >= (1 << (7 * width)) - 1:
        raise ValueError(f"EBML size {value} does not fit in {width} bytes")
    return ((1 << (7 * width)) | value).to_bytes(width, "big")


def element_at(data: bytes | bytearray, pos: int, end: int) -> Element:
    """The element at ``pos`` inside a parent ending at ``end``."""
    ident, id_width = vint(data, pos, keep_marker=True)
    size, width = vint(data, pos + id_width, keep_marker=False)
    if size == (1 << (7 * width)) - 1:  # unknown size (live streams): up to the parent's end
        size = end - pos - id_width - width
    return Element(ident, pos, id_width + width, size, width)


def elements(data: bytes | bytearray, start: int, end: int, stop_at: int | None = None) -> list[Element]:
    """The elements from ``start`` to ``end`` (up to the first one with ID ``stop_at``)."""
    out, pos = [], start
    while pos < end:
        el = element_at(data, pos, end)
        if el.id == stop_at:
            break
        out.append(el)
        pos = el.end
    return out


def ebml(ident: int, payload: bytes) -> bytes:
    """The element ``ident`` holding ``payload`` (the shortest size field)."""
    id_bytes = ident.to_bytes((ident.bit_length() + 7) // 8, "big")
    width = 1
    while len(payload) >= (1 << (7 * width)) - 1:
        width += 1
    return id_bytes + size_vint(len(payload), width) + payload


def uint(data: bytes | bytearray, el: Element) -> int:
    """An unsigned integer element's value."""
    return int.from_bytes(data[el.body:el.end], "big")


def set_size(data: bytearray, el: Element, new_size: int) -> None:
    """Rewrite ``el``'s size field (same width) to ``new_size``."""
    at = el.start + el.header - el.size_width
    data[at:at + el.size_width] = size_vint(new_size, el.size_width)


def refresh_crc(data: bytearray, parent: Element) -> None:
    """Recompute a level-1 element's CRC-32 child (if it has one) over the rest of its payload."""
    first = element_at(data, parent.body, parent.end)
    if first.id == CRC32 and first.size == 4:
        crc = zlib.crc32(bytes(data[first.end:parent.end])) & 0xFFFFFFFF
        data[first.body:first.end] = crc.to_bytes(4, "little")


def void_element(total: int) -> bytes:
    """A ``Void`` element of exactly ``total`` bytes (at least 2).

    >>> void_element(2), len(void_element(300))
    (b'\\xec\\x80', 300)
    """
    if total < 2:
        raise ValueError("a Void element takes at least 2 bytes")
    width = 1
    while total - 1 - width >= (1 << (7 * width)) - 1:
        width += 1
    return bytes([VOID]) + size_vint(total - 1 - width, width) + bytes(total - 1 - width)


def reserve_tag(room: int) -> str:
    """A placeholder value that reserves ``room`` bytes (at least the mark's length) for a container
    tag, to be replaced by :func:`fill_reserved_tag`."""
    return RESERVED_MARK + "." * max(0, int(room) - len(RESERVED_MARK))


def fill_reserved_tag(path: str | os.PathLike, name: str, value: str) -> bool:
    """Write ``value`` into the global tag ``name`` (case-insensitive) of the Matroska file ``path``, whose
    value is a :func:`reserve_tag` placeholder: the value padded with NUL bytes to the reserved room, or,
    for an empty ``value``, the whole tag turned into a ``Void`` (no tag at all). The ``Tags`` element's
    CRC-32 is updated; nothing else in the file moves.

    Returns:
        False, with the file unchanged, when the value is longer than the room or no such placeholder
        is found in the file's header; True when written.
    """
    encoded = value.encode("utf-8")
    with open(path, "r+b") as f:
        head = bytearray(f.read(HEAD_BYTES))
        try:
            found = _reserved_tag(head, name)
        except (ValueError, IndexError):  # not Matroska, or a header beyond HEAD_BYTES
            return False
        if found is None:
            return False
        tags, simple, string = found
        if len(encoded) > string.size:
            return False
        if encoded:
            head[string.body:string.end] = encoded + bytes(string.size - len(encoded))
        else:
            head[simple.start:simple.end] = void_element(simple.end - simple.start)
        refresh_crc(head, tags)
        f.seek(tags.start)
        f.write(head[tags.start:tags.end])
    return True


def _reserved_tag(head: bytearray, name: str) -> tuple[Element, Element, Element] | None:
    """(Tags, SimpleTag, TagString) of the global tag ``name`` holding a placeholder, or None."""
    header = element_at(head, 0, len(head))
    segment = element_at(head, header.end, len(head))
    if segment.id != SEGMENT:
        raise ValueError("not a Matroska file")
    mark = RESERVED_MARK.encode()
    for tags in elements(head, segment.body, min(segment.end, len(head)), stop_at=CLUSTER):
        if tags.id != TAGS or tags.end > len(head):
            continue
        for tag in elements(head, tags.body, tags.end):
            if tag.id != TAG:
                continue
            for simple in elements(head, tag.body, tag.end):
                if simple.id != SIMPLE_TAG:
                    continue
                children = elements(head, simple.body, simple.end)
                names = [bytes(head[c.body:c.end]).decode("utf-8", "replace") for c in children if c.id == TAG_NAME]
                string = next((c for c in children if c.id == TAG_STRING), None)
                if (names and names[0].lower() == name.lower() and string is not None
                        and bytes(head[string.body:string.body + len(mark)]) == mark):
                    return tags, simple, string
    return None

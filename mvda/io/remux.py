"""Join video files losslessly (packets copied, nothing re-encoded), e.g. the parts of a resumable
conversion, or one file given new container tags.

Only for files written alike by :class:`mvda.io.video.VideoWriter` (one video stream, the same codec
and settings, intra-only such as FFV1): the packets of each part follow those of the previous one. A
constant-rate stream is renumbered frame by frame (frame ``i`` of the result at ``i / fps``); a
variable-rate stream (``vfr``) keeps its packets' times, which are already absolute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fractions import Fraction

import av

from mvda.errors import UserError
from mvda.io.video import atomic_output_path

__all__ = ["join_videos", "video_content"]


def join_videos(parts: Sequence[str | os.PathLike], output: str | os.PathLike, fps: Fraction,
                metadata: Mapping[str, str] | None = None, vfr: bool = False) -> int:
    """Write the video packets of ``parts``, in order, into ``output`` (atomically), without decoding.

    Args:
        parts: video files with one video stream each, encoded alike (the first one's stream is the
            template of the output's).
        output: the joined file (its container from the extension, e.g. ``.mkv``).
        fps: the frame rate of a constant-rate result (frame ``i`` at ``i / fps``).
        metadata: container tags added to (or replacing) the first part's.
        vfr: keep each packet's own time instead of renumbering.

    Returns:
        The number of video packets (frames) written.

    Raises:
        UserError: a part that cannot be read, or an unwritable output (nothing is left at ``output``).
    """
    if not parts:
        raise ValueError("join_videos needs at least one part")
    frames = 0
    with atomic_output_path(output) as tmp:
        try:
            first = av.open(str(parts[0]))
        except (av.error.FFmpegError, OSError) as exc:
            raise UserError(f"cannot read {parts[0]}: {exc}") from None
        # bitexact: no random segment UID or date, so the same parts give the same file (as the writer's)
        with first, av.open(str(tmp), mode="w", format="matroska" if str(output).endswith(".mkv") else None,
                            options={"fflags": "+bitexact"}) as out:
            added = {str(k): str(v) for k, v in (metadata or {}).items()}
            replaced = {k.lower() for k in added}  # Matroska tag names come back in capitals
            tags = {**{k: v for k, v in first.metadata.items() if k.lower() not in replaced}, **added}
            for key, value in tags.items():
                out.metadata[key] = str(value)
            template = first.streams.video[0]
            stream = out.add_stream_from_template(template)
            for part in parts:
                try:
                    source = first if part is parts[0] else av.open(str(part))
                except (av.error.FFmpegError, OSError) as exc:
                    raise UserError(f"cannot read {part}: {exc}") from None
                try:
                    video = source.streams.video[0]
                    for packet in source.demux(video):
                        if packet.dts is None:  # the demuxer's flush packet
                            continue
                        if not vfr:
                            pts = round(Fraction(frames) / Fraction(fps) / video.time_base)
                            packet.pts = packet.dts = pts
                        packet.stream = stream
                        out.mux(packet)
                        frames += 1
                finally:
                    if source is not first:
                        source.close()
    return frames


def video_content(path: str | os.PathLike) -> tuple[dict[str, str], list[tuple[int, bytes]]]:
    """What a lossless join keeps of a file: its container tags (names in lower case) and its video
    packets as ``(pts, bytes)``. Two files with equal content hold the same frames at the same times
    with the same tags, whatever their container headers' layout."""
    with av.open(str(path)) as container:
        tags = {k.lower(): v for k, v in container.metadata.items()}
        packets = [(int(p.pts), bytes(p)) for p in container.demux(container.streams.video[0]) if p.pts is not None]
    return tags, packets

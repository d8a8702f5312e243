"""``video_metric_convert.py --resume``: a conversion kept as finished parts, continued after an interruption.

The parts live in ``{output}.parts/`` next to the output::

    manifest.json      settings, the source's identity, the finished parts (file, first frame, frames,
                       depth range), the cuts found so far
    part-00000.mkv     lossless FFV1 depth, the same format as the output
    part-00001.mkv ...
    state.pt           the state after the last finished part (torch.save): Video-Depth-Anything's
                       stream (overlap frames, alignment references, keyframe features), DA-V2
                       statistics of frames not written yet, the rolling fit's history, counters

With ``--fit global`` the parts are written by the second pass, and the first pass keeps its own files:

    pass1.f16          Video-Depth-Anything's frames at network size, float16 (the global fit's store)
    pass1.pt           the first pass's state after the frames stored so far (saved at each cut and every
                       PART_SECONDS inside a shot): the stream, the current shot's DA-V2 and VDA samples,
                       the fits of the shots before it; once the pass is complete, every shot's fit

A part ends at each scene cut and, inside a shot, at the first window boundary after
:data:`PART_SECONDS` of video. Each finished part is written atomically, then the state, then the
manifest (atomically), so that whatever interrupts the run, the manifest names only complete parts whose
state is on disk. Rerunning with ``--resume`` checks the source and the settings, decodes up to the
state's frame (cut detection sees every frame again, so its decisions are the same), restores the state
and goes on with the next part. At the end the parts are joined losslessly (packets copied, see
:func:`mvda.io.remux.join_videos`) into the output, and the folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mvda.errors import UserError
from mvda.io.remux import join_videos

__all__ = ["PART_SECONDS", "MANIFEST", "Part", "PartsFolder", "parts_folder_for", "source_identity"]

#: Longest part inside a shot, in seconds of video (``--part_seconds``, hidden, changes it).
PART_SECONDS: float = 120.0
#: The manifest's file name.
MANIFEST = "manifest.json"
_STATE = "state.pt"
_PASS1_STATE = "pass1.pt"
_STORE = "pass1.f16"
_VERSION = 1
#: Bytes of the source hashed for its identity.
HEAD_BYTES = 1 << 20


def parts_folder_for(output: Path) -> Path:
    """``{output}.parts`` next to the output."""
    return output.with_name(output.name + ".parts")


def source_identity(path: Path) -> dict[str, Any]:
    """Size, modification time (ns) and SHA-256 of the first MiB of ``path``."""
    stat = path.stat()
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


@dataclass
class Part:
    """One finished part: ``file`` in the folder, output frames ``[start, start + frames)``."""

    file: str
    start: int
    frames: int
    depth_min: float
    depth_max: float


@dataclass
class PartsFolder:
    """The parts folder of one output (see the module docstring)."""

    path: Path
    settings: dict[str, Any]
    source: dict[str, Any]
    parts: list[Part] = field(default_factory=list)

    @classmethod
    def open(cls, output: Path, settings: dict[str, Any], source: dict[str, Any], resume: bool) -> "PartsFolder":
        """The folder for ``output``: continued when ``resume`` and it holds a manifest (which must match
        ``settings`` and ``source``, else UserError), otherwise started empty (an old one is replaced)."""
        path = parts_folder_for(output)
        manifest = path / MANIFEST
        if resume and manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
                parts = [Part(**p) for p in data["parts"]]
                old_settings, old_source = data["settings"], data["source"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UserError(f"cannot resume from {path}: its manifest is unreadable ({exc}); delete the folder "
                                "to start again") from None
            if old_source != source:
                raise UserError(f"cannot resume {output.name}: the source video changed since {path} was written "
                                "(size, time or content); delete the folder or run without --resume")
            if old_settings != json.loads(json.dumps(settings)):
                changed = sorted(k for k in set(settings) | set(old_settings)
                                 if json.dumps(settings.get(k)) != json.dumps(old_settings.get(k)))
                raise UserError(f"cannot resume {output.name}: settings differ from those of {path} "
                                f"({', '.join(changed)}); use the same options, or delete the folder")
            missing = [p.file for p in parts if not (path / p.file).is_file()]
            if missing or (parts and not (path / _STATE).is_file()):
                raise UserError(f"cannot resume from {path}: {', '.join(missing) or _STATE} is missing; delete the "
                                "folder to start again")
            return cls(path, settings, source, parts)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        folder = cls(path, settings, source, [])
        folder._write_manifest()
        return folder

    # -- progress -------------------------------------------------------------------------------------
    @property
    def frames_done(self) -> int:
        """Output frames in finished parts."""
        return self.parts[-1].start + self.parts[-1].frames if self.parts else 0

    def next_part_path(self) -> Path:
        return self.path / f"part-{len(self.parts):05d}.mkv"

    def load_state(self) -> dict[str, Any] | None:
        """The state after the last finished part (None before the first)."""
        if not self.parts:
            return None
        return torch.load(self.path / _STATE, map_location="cpu", weights_only=True)

    @property
    def store_path(self) -> Path:
        """The global fit's first-pass store (float16 frames)."""
        return self.path / _STORE

    def load_pass1(self) -> dict[str, Any] | None:
        """The global fit's first-pass state (None before its first save)."""
        path = self.path / _PASS1_STATE
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def save_pass1(self, state: dict[str, Any]) -> None:
        """Replace the first-pass state atomically (after the store's frames it counts were flushed)."""
        self._save(state, _PASS1_STATE)

    def _save(self, state: dict[str, Any], name: str) -> None:
        tmp = self.path / f".{name}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path / name)

    def finish_part(self, frames: int, depth_min: float, depth_max: float, state: dict[str, Any]) -> None:
        """Record the part just written at :meth:`next_part_path` (``frames`` frames) and the state after
        it: state file first, then the manifest, each replaced atomically."""
        part = Part(self.next_part_path().name, self.frames_done, frames, depth_min, depth_max)
        self._save(state, _STATE)
        self.parts.append(part)
        self._write_manifest()

    def _write_manifest(self) -> None:
        data = {"version": _VERSION, "settings": self.settings, "source": self.source,
                "parts": [vars(p) for p in self.parts]}
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path / MANIFEST)

    # -- the end --------------------------------------------------------------------------------------
    def join(self, output: Path, fps: Any, metadata: dict[str, str], vfr: bool) -> int:
        """Join the parts losslessly into ``output`` (atomically) with ``metadata`` added to the tags;
        returns the frames written."""
        return join_videos([self.path / p.file for p in self.parts], output, fps, metadata=metadata, vfr=vfr)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class PartSink:
    """The depth writer of a resumable conversion, as a :func:`mvda.frames.run_frames` sink (encode
    thread): frames go into the current part; an output that carries a state (its last element, the
    step's snapshot after that frame) ends the part: the part is closed, ``encode_state()`` (the fit's
    history and counters, which live on this thread) is added to the snapshot and the folder records both.

    Args:
        folder: the parts folder.
        open_writer: ``path -> DepthVideoWriter`` for a new part.
        finish: step output -> depth in metres (the per-pixel fit).
        encode_state: the encode thread's share of the state, taken after the part's last frame.
        times: output frame times (variable frame rate), consumed in order; None for constant rate.
        on_frame: called after each frame is written (a batch's progress), or None.
    """

    def __init__(self, folder: PartsFolder, open_writer: Any, finish: Any, encode_state: Any,
                 times: Any = None, on_frame: Any = None) -> None:
        self.folder = folder
        self.open_writer = open_writer
        self.finish = finish
        self.encode_state = encode_state
        self.times = times
        self.on_frame = on_frame
        self.writer = None
        self.frames = 0  # in the current part

    def write(self, output: Any) -> None:
        if self.writer is None:
            self.writer = self.open_writer(self.folder.next_part_path())
            self.frames = 0
        depth = self.finish(output)
        time = self.times.popleft() if self.times is not None else None
        self.writer.write(depth.detach().to("cpu", torch.float32).numpy(), time=time)
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame()
        if output[-1] is not None:
            self._end_part(output[-1])

    def _end_part(self, snapshot: dict[str, Any]) -> None:
        writer, self.writer = self.writer, None
        writer.close()
        self.folder.finish_part(self.frames, writer.stats.min_depth, writer.stats.max_depth,
                                {**snapshot, **self.encode_state()})

    def close(self) -> None:
        if self.writer is not None:  # the last part: nothing is left to continue
            self._end_part({"complete": True})

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

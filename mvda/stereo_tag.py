"""Show or set the stereo-layout / VR180 metadata players read in MP4, MOV and Matroska files.

Prints, per file, the layout its metadata declares (MP4: st3d/sv3d boxes; Matroska: StereoMode and
Projection elements), e.g. "left-right, equirectangular 180 x 180 degrees". With --set the metadata of
a layout is written into the files (stereo videos rendered before stero_rerender.py wrote metadata):
each file is rewritten through a hidden copy and replaced only when that succeeded.

example:
  python -m mvda.stereo_tag outputs/clip_depth.mkv_stereo.mp4
  python -m mvda.stereo_tag --set vr180 old_vr180_render.mp4
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mvda.cli import run_cli
from mvda.errors import UserError
from mvda.io.spatial_meta import (SpatialMetadata, flat_metadata, read_matroska_projection, read_mp4_spatial_metadata,
                                  vr180_metadata, write_spatial_metadata)

__all__ = ["describe", "read_layout", "build_parser", "main"]

PROG = "python -m mvda.stereo_tag"
LAYOUTS = ("sbs", "half-sbs", "tb", "half-tb", "vr180")
_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


def describe(meta: SpatialMetadata | None) -> str:
    """One line for a file's metadata."""
    if meta is None:
        return "no stereo metadata (players show it as a flat video)"
    text = meta.stereo
    if meta.equirect_bounds is not None:
        t, b, left, r = meta.equirect_bounds
        text += f", equirectangular {360 * (1 - left - r):g} x {180 * (1 - t - b):g} degrees"
    return text


def read_layout(path: Path) -> SpatialMetadata | None:
    """The file's stereo / spherical metadata (raises UserError for unsupported or unreadable files)."""
    _check(path)
    try:
        if path.suffix.lower() in (".mp4", ".mov"):
            return read_mp4_spatial_metadata(path)
        return read_matroska_projection(path)
    except (ValueError, IndexError, OSError) as exc:
        raise UserError(f"{path}: cannot read its metadata ({exc})") from None


def _check(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if path.suffix.lower() not in _SUFFIXES:
        raise UserError(f"{path}: only {', '.join(_SUFFIXES)} files carry this metadata")


def _set(path: Path, layout: str) -> None:
    from mvda.io.video import atomic_output_path

    _check(path)
    meta = vr180_metadata() if layout == "vr180" else flat_metadata(layout)
    with atomic_output_path(path) as tmp:
        shutil.copyfile(path, tmp)
        try:
            write_spatial_metadata(tmp, meta)
        except (ValueError, IndexError) as exc:
            raise UserError(f"{path}: cannot write its metadata ({exc})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="FILE", help="MP4, MOV or Matroska videos")
    parser.add_argument("--set", choices=LAYOUTS, default=None, metavar="LAYOUT",
                        help=f"write the metadata of this layout ({', '.join(LAYOUTS)}) into the files")
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    return parser


def _run(args: argparse.Namespace) -> int:
    for name in args.paths:
        path = Path(name)
        if args.set is not None:
            _set(path, args.set)
        print(f"{path}: {describe(read_layout(path))}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _run(args), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())

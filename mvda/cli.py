"""Small shared pieces of the command-line scripts: user-facing errors, logging and progress bars.

Every script follows the same shape::

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        return run_cli("script.py", lambda: _run(args))

`run_cli` turns the errors a user can fix (:class:`UserError`, missing/bad checkpoints, Ctrl-C) into one
line on stderr and a non-zero exit code, without a traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import math
import logging
import sys
from typing import Callable

from tqdm import tqdm

from mvda.errors import UserError

__all__ = [
    "run_cli",
    "progress_bar",
    "positive_int",
    "positive_float",
    "non_negative_int",
    "non_negative_float",
    "EXIT_USER_ERROR",
    "EXIT_INTERRUPTED",
]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("mvda")


def _user_error_types() -> tuple[type[BaseException], ...]:
    """UserError plus the networks' checkpoint errors (missing or mismatched weights are user errors).

    Evaluated when an exception reaches :func:`run_cli`; a checkpoint error can only have been raised
    if its module was imported, so it is looked up in ``sys.modules`` and scripts that never load a
    network do not pay for importing torch.
    """
    types: list[type[BaseException]] = [UserError]
    # The one CheckpointError of the networks' generic checkpoint loader (video_depth_anything.hub uses it too).
    error = getattr(sys.modules.get("depth_anything_v2.checkpoint"), "CheckpointError", None)
    if isinstance(error, type) and issubclass(error, BaseException):
        types.append(error)
    return tuple(types)


class _OneLineFormatter(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        if record.levelno >= logging.ERROR:
            level = "error"
        return f"{self.prog}: {level}: {record.getMessage()}"


def configure_logging(prog: str, verbose: bool = False) -> None:
    """Send the project's log records to stderr as ``prog: warning: message`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(prog))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


def run_cli(prog: str, body: Callable[[], int | None], verbose: bool = False) -> int:
    """Run ``body`` and map user errors to a one-line message and exit code.

    Returns ``body``'s exit code (0 when it returns None), 2 for a :class:`UserError` or checkpoint
    error, 130 for Ctrl-C, 143 for SIGTERM and 129 for SIGHUP (temporary outputs are
    removed by whatever was writing them: the frame loop, ``with`` blocks).
    """
    # Restore the logger afterwards so that a script's main() called from Python (tests, notebooks)
    # leaves logging as it found it.
    saved = (list(log.handlers), log.level, log.propagate)
    configure_logging(prog, verbose)
    from mvda.frames import Interrupted, signals_raise
    from mvda.io.video import discard_temporaries

    finished = False
    try:
        with signals_raise():
            code = body()
            finished = True
    except _user_error_types() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was finalised", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        print(f"{prog}: terminated by {exc}; no output was finalised", file=sys.stderr)
        return exc.exit_code
    finally:
        if not finished:
            discard_temporaries()  # a signal between creating a temporary file and guarding it
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]
    return 0 if code is None else int(code)


def progress_bar(total: int | None = None, desc: str = "", unit: str = "frame", **kwargs) -> tqdm:
    """A tqdm bar on stderr with the project's defaults (rate and ETA shown, no output when disabled)."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("leave", True)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **kwargs)


def _parse(text: str, kind: type) -> int | float:
    """``int(text)`` or ``float(text)``; argparse's error (one line) when it is not such a number."""
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    value = _parse(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _parse(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _parse(text, float)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _parse(text, float)
    if not (0.0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


# --------------------------------------------------------------------------------------------------
# Shared flags: each declared (and validated) once, added to the scripts' parsers by these helpers.
# --------------------------------------------------------------------------------------------------
def finite_float(text: str) -> float:
    """argparse type: any finite number (no nan / inf)."""
    value = _parse(text, float)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


#: The range of --max_depth (metres) that the packed format can represent in float32 arithmetic.
MAX_DEPTH_RANGE = (1e-3, 1e5)


def max_depth_metres(text: str) -> float:
    """argparse type for ``--max_depth``: metres within :data:`MAX_DEPTH_RANGE`."""
    value = positive_float(text)
    low, high = MAX_DEPTH_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g} metres, got {text}")
    return value


#: The highest output frame rate accepted (frames per second).
MAX_FPS = 1000.0


def frame_rate(text: str) -> float:
    """argparse type for ``--target_fps``: frames per second in (0, 1000], or -1 for the source rate."""
    value = _parse(text, float)
    if value == -1:
        return value
    if not (0 < value <= MAX_FPS):  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a frame rate between 0 and {MAX_FPS:g} (or -1 for the source "
                                         f"rate), got {text}")
    return value


def fov_degrees(text: str) -> float:
    """argparse type: a field of view in degrees, strictly between 0 and 180."""
    value = positive_float(text)
    if not value < 180.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 180 degrees (exclusive), got {text}")
    return value


def frame_limit(text: str) -> int | None:
    """argparse type for ``--max_frames`` / ``--max_len``: N > 0 frames, or -1 for all (the original's value)."""
    value = _parse(text, int)
    if value == -1:
        return None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (or -1 for all frames), got {value}")
    return value


def add_fov_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--xfov`` / ``--yfov`` (degrees; with one of them the other follows from the aspect ratio)."""
    parser.add_argument("--xfov", type=fov_degrees, default=None,
                        help="horizontal field of view of the camera in degrees (fractions allowed)" + (
                            note or "; default: the depth file's xfov/yfov tags"))
    parser.add_argument("--yfov", type=fov_degrees, default=None,
                        help="vertical field of view in degrees; with only one of the two, the other follows "
                             "from the aspect ratio")


#: ``--fov_encoder`` choices (MoGe-2 sizes).
FOV_ENCODERS: tuple[str, ...] = ("vits", "vitb", "vitl")


def add_fov_model_args(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--fov_encoder`` / ``--fov_checkpoint``: the MoGe-2 that estimates the field of view."""
    parser.add_argument("--fov_encoder", choices=FOV_ENCODERS, default="vits",
                        help="MoGe-2 size for the field of view (default vits)" + note)
    parser.add_argument("--fov_checkpoint", default=None, metavar="PATH",
                        help="local MoGe-2 model.pt (default: MoGe/checkpoints/moge-2-<enc>-normal/model.pt, "
                             "then the hub)")


def add_max_depth_arg(parser: argparse.ArgumentParser, reader: bool = True, default: float = 6.0,
                      note: str = "") -> None:
    """``--max_depth`` (metres): a reader's decode scale (default: the file's tag) or a writer's full scale.

    ``note`` is appended to the help text (what else the value means to this script).
    """
    if reader:
        parser.add_argument("--max_depth", type=max_depth_metres, default=None, metavar="M",
                            help="full scale of the depth video in metres (default: its max_depth tag, "
                                 "else 6)" + note)
    else:
        parser.add_argument("--max_depth", type=max_depth_metres, default=default, metavar="M",
                            help=f"full scale of the packed output in metres; farther depth is clipped "
                                 f"(default {default:g})" + note)


def add_frame_limit_arg(parser: argparse.ArgumentParser, alias: str | None = None) -> None:
    """``--max_frames N`` (and an alias such as the converter's original ``--max_len``); -1: all frames."""
    names = ["--max_frames"] + ([alias] if alias else [])
    parser.add_argument(*names, dest="max_frames", type=frame_limit, default=None, metavar="N",
                        help="use at most the first N frames (default: all; -1 also means all)")


def add_device_args(parser: argparse.ArgumentParser, precision: bool = True) -> None:
    """``--device`` (and ``--precision`` / ``--fp32`` for the scripts that run networks)."""
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, cuda:N, mps or cpu")
    if precision:
        parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                            help="network precision, both networks (default: as the official code: on CUDA fp16 for "
                                 "Video-Depth-Anything and fp32 for Depth-Anything-V2; fp32 elsewhere)")
        parser.add_argument("--fp32", action="store_true", help="run the networks in float32 (overrides --precision)")


def add_report_args(parser: argparse.ArgumentParser) -> None:
    """``--no_progress`` and ``--verbose``, the same in every script."""
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")


def add_damage_arg(parser: argparse.ArgumentParser) -> None:
    """``--skip_damaged``: leave out damaged frames of a depth video instead of stopping at the first."""
    parser.add_argument("--skip_damaged", action="store_true",
                        help="leave out frames of the depth video whose checksum fails (a damaged file) and report "
                             "how many, instead of stopping with an error at the first")

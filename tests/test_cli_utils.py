"""cli_utils: one-line user errors, exit codes, argparse types, logging left as found."""

from __future__ import annotations

import argparse
import logging

import pytest

from mvda.errors import UserError
from mvda.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, non_negative_int, positive_float, positive_int, progress_bar, run_cli


def test_run_cli_maps_user_error_to_one_line(capsys):
    def body():
        raise UserError("input.mp4: no such file;\n  check the path")

    assert run_cli("tool.py", body) == EXIT_USER_ERROR == 2
    err = capsys.readouterr().err
    assert err == "tool.py: error: input.mp4: no such file; check the path\n"


def test_run_cli_interrupt_and_codes(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_cli("tool.py", interrupted) == EXIT_INTERRUPTED == 130
    assert "interrupted" in capsys.readouterr().err
    assert run_cli("tool.py", lambda: None) == 0
    assert run_cli("tool.py", lambda: 3) == 3


def test_run_cli_keeps_tracebacks_for_bugs():
    def bug():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_cli("tool.py", bug)


def test_run_cli_warnings_go_to_stderr_and_logging_is_restored(capsys, caplog):
    log = logging.getLogger("mvda")
    before = (list(log.handlers), log.level, log.propagate)
    assert run_cli("tool.py", lambda: log.warning("%d pixels clipped", 5)) == 0
    assert capsys.readouterr().err == "tool.py: warning: 5 pixels clipped\n"
    assert (list(log.handlers), log.level, log.propagate) == before
    with caplog.at_level(logging.WARNING, logger="mvda"):  # pytest still sees later warnings
        log.warning("seen")
    assert "seen" in caplog.text


@pytest.mark.parametrize("func, good, bad", [
    (positive_int, [("3", 3), ("1", 1)], ["0", "-2", "1.5", "x"]),
    (non_negative_int, [("0", 0), ("7", 7)], ["-1", "x"]),
    (positive_float, [("2.5", 2.5), ("1e-3", 1e-3)], ["0", "-1", "nan", "inf", "x"]),
])
def test_argparse_types(func, good, bad):
    for text, value in good:
        assert func(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            func(text)


def test_progress_bar_goes_to_stderr(capsys):
    with progress_bar(total=3, desc="frames", mininterval=0) as bar:
        bar.update(3)
    assert bar.n == 3
    out, err = capsys.readouterr()
    assert out == "" and "frames" in err and "3/3" in err


def test_checkpoint_errors_are_user_errors(capsys):
    from depth_anything_v2.checkpoint import CheckpointError

    def body():
        raise CheckpointError("checkpoint x.pth not found; run bash install_mvda.sh")

    assert run_cli("tool.py", body) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "tool.py: error: checkpoint x.pth not found; run bash install_mvda.sh\n"

"""The one exception for errors the user can fix (bad input, missing file, unwritable folder, ...).

Raised anywhere in :mod:`mvda`; the scripts' :func:`mvda.cli.run_cli` reports it as one line on
stderr with exit status 2, without a traceback. Anything else reaching the scripts is a bug and keeps
its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error caused by the user's input or environment, reported as one line (no traceback)."""

"""Errors that mean "the user asked for something we cannot do": the commands print them as one line, no traceback.

Every command (fit, evaluate, predict, compare, bench) ends a UserError the same way, through `exit_with`; it lives
here, with the errors, so that a command need not import another command's module to print one.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """An invalid flag, config value or hyper-parameter combination."""


class DataError(UserError):
    """A missing, malformed or unreadable dataset, or a failed download."""


class CheckpointError(UserError):
    """A file that is not a checkpoint of this kit, or of another model."""


class TrainingError(UserError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def one_line(error: BaseException) -> str:
    """The message of an error, without the worker traceback DataLoader wraps around errors raised in workers."""
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in text:
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return " ".join(lines)


def exit_with(error: BaseException, code: int = 2) -> NoReturn:
    """End a command on a user's mistake: one `error: ...` line on stderr and exit status 2 (argparse's), no
    traceback."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    raise SystemExit(code)

"""One error hierarchy for every command, and its exit codes.

  BadInputError      -> exit 2: an argument, flag or gin binding is wrong
                        (the message says which and what to use instead)
  MissingInputError  -> exit 3: data, weights or a run's files are missing
  DamagedInputError  -> exit 3: ... or present but unreadable (the message
                        says how to get or repair them)
  DivergedError      -> exit 1: training produced a non-finite loss (the
                        message names the step; lower the learning rates)
  anything else      -> a traceback: a bug, never reported as bad input

`exit_on_errors()` wraps a binary's main; library code raises these
exceptions (or subclasses) and never calls sys.exit. The subclasses keep the
built-in bases (ValueError, FileNotFoundError, FloatingPointError) that
callers caught before this hierarchy existed.
"""

import contextlib
import sys

from absl import app
from absl import flags
from absl import logging

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3


class PPCDError(Exception):
    """Base of the errors a command reports as a message, not a traceback."""


class BadInputError(PPCDError, ValueError):
    """An argument or configuration the user gave is wrong."""


class OutputExistsError(BadInputError, FileExistsError):
    """An output would replace existing files without --overwrite."""


class MissingInputError(PPCDError, FileNotFoundError):
    """Data, weights or a run's files are missing."""


class DamagedInputError(MissingInputError, ValueError):
    """Data, weights or a run's files exist but cannot be read."""


class DivergedError(PPCDError, FloatingPointError):
    """Training produced a non-finite loss."""


def exit_status(error):
    """The exit status a command ends with for `error`, or None for a bug."""
    if isinstance(error, MissingInputError):
        return EXIT_MISSING
    if isinstance(error, BadInputError):
        return EXIT_BAD_INPUT
    if isinstance(error, DivergedError):
        return EXIT_DIVERGED
    return None


@contextlib.contextmanager
def exit_on_errors():
    """Ends the command with `exit_status(error)` and the message on stderr
    for the errors of this hierarchy; anything else propagates (a traceback:
    a bug)."""
    try:
        yield
    except PPCDError as error:
        status = exit_status(error)
        if status is None:
            raise
        message = one_message(error)
        logging.error("%s", message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(status)


def one_message(error):
    """The error's message without the lines gin appends on the way out
    of a configurable ("  In call to configurable 'X' (...)")."""
    return "\n".join(line for line in str(error).splitlines()
                     if not line.startswith("  In call to configurable "))


def parse_flags(argv):
    """absl flags parser for `run`: a wrong, unknown or missing flag is bad
    input (exit 2) with absl's message, not absl's default exit 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}\nPass --helpshort or --helpfull to see help "
              "on flags.", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def run(main):
    """`app.run(main)` for every binary: flag errors exit 2 (see
    `parse_flags`); main's `app.UsageError(..., exitcode=2)` likewise."""
    app.run(main, flags_parser=parse_flags)

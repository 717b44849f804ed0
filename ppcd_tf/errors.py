"""One error hierarchy for every command, and its exit codes.

  BadInputError      -> exit 2: an argument, flag or gin binding is wrong
                        (the message says which and what to use instead)
  MissingInputError  -> exit 3: data, weights or a run's files are missing or
                        damaged (the message says how to get or repair them)
  anything else      -> a traceback: a bug, never reported as bad input

`exit_on_errors()` wraps a binary's main; library code raises these
exceptions (or subclasses) and never calls sys.exit.
"""

import contextlib
import sys

from absl import logging

EXIT_BAD_INPUT = 2
EXIT_MISSING = 3


class PPCDError(Exception):
    """Base of the errors a command reports as a message, not a traceback."""


class BadInputError(PPCDError, ValueError):
    """An argument or configuration the user gave is wrong."""


class MissingInputError(PPCDError, FileNotFoundError):
    """Data, weights or a run's files are missing or damaged."""


@contextlib.contextmanager
def exit_on_errors(bad_input=(), missing=()):
    """Turns MissingInputError (and `missing`) into exit status 3 and
    BadInputError (and `bad_input`) into exit status 2, printing the message
    to stderr. Other exceptions propagate (a traceback: a bug)."""
    try:
        yield
    except (MissingInputError,) + tuple(missing) as error:
        _report(error)
        sys.exit(EXIT_MISSING)
    except (BadInputError,) + tuple(bad_input) as error:
        _report(error)
        sys.exit(EXIT_BAD_INPUT)


def _report(error):
    logging.error("%s", error)
    print(f"error: {error}", file=sys.stderr)

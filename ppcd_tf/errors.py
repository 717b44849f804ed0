"""One error hierarchy for every command, and its exit codes.

  BadInputError      -> exit 2: an argument, flag or gin binding is wrong
                        (the message says which and what to use instead)
  MissingInputError  -> exit 3: data, weights or a run's files are missing
  DamagedInputError  -> exit 3: ... or present but unreadable (the message
                        says how to get or repair them)
  DivergedError      -> exit 1: training produced a non-finite loss (the
                        message names the step; lower the learning rates)
  a resource fault   -> exit 4: no space left, a quota, a read-only file
                        system, a permission taken away, out of memory
                        (OSError / TensorFlow errors that say so, MemoryError)
  anything else      -> a traceback: a bug, never reported as bad input

`exit_on_errors()` wraps a binary's main; library code raises these
exceptions (or subclasses) and never calls sys.exit. The subclasses keep the
built-in bases (ValueError, FileNotFoundError, FloatingPointError) that
callers caught before this hierarchy existed.
"""

import contextlib
import errno
import os
import sys

from absl import app
from absl import flags

EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3
EXIT_RESOURCE = 4

# What the machine refused, by errno and by the text TensorFlow's file
# system errors carry (they are not OSErrors).
_RESOURCE_ERRNOS = {errno.ENOSPC: "no space left on the device",
                    errno.EDQUOT: "disk quota exceeded",
                    errno.EROFS: "the file system is read-only",
                    errno.EACCES: "permission denied",
                    errno.EPERM: "operation not permitted",
                    errno.ENOMEM: "out of memory"}
_RESOURCE_PHRASES = {"No space left on device": "no space left on the device",
                     "Disk quota exceeded": "disk quota exceeded",
                     "Read-only file system": "the file system is read-only",
                     "Permission denied": "permission denied"}


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


def machine_memory_bytes():
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(num_bytes, what, fix, memory_bytes=None):
    """Refuses up front (BadInputError, exit 2) a request whose arrays
    alone need more than this machine's physical memory, instead of an
    out-of-memory kill after minutes of set-up.

    Args:
      num_bytes: what the request's arrays need at once.
      what: the request, for the message ("--num_samples 2000000000").
      fix: the sentence that ends the message (how to ask less).
      memory_bytes: the memory to compare with (default: the machine's).
    """
    memory = machine_memory_bytes() if memory_bytes is None else memory_bytes
    if num_bytes > memory:
        gib = 2.0 ** 30
        raise BadInputError(
            f"{what} needs {num_bytes / gib:,.1f} GiB at once, more than "
            f"this machine's {memory / gib:,.1f} GiB of memory; {fix}")


def resource_fault(error):
    """What the machine refused ("no space left on the device", ...) when
    `error` is a resource fault, else None."""
    if isinstance(error, MemoryError):
        return "out of memory"
    if isinstance(error, OSError) and error.errno in _RESOURCE_ERRNOS:
        return _RESOURCE_ERRNOS[error.errno]
    text = str(error)
    for phrase, fault in _RESOURCE_PHRASES.items():
        if phrase in text:
            return fault
    return None


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
    for the errors of this hierarchy, with EXIT_RESOURCE and one line for a
    resource fault (`resource_fault`); anything else propagates (a
    traceback: a bug)."""
    try:
        yield
    except PPCDError as error:
        status = exit_status(error)
        if status is None:
            raise
        # One line on stderr (absl's log would print it a second time).
        print(f"error: {one_message(error)}", file=sys.stderr)
        sys.exit(status)
    except Exception as error:  # pylint: disable=broad-except
        fault = resource_fault(error)
        if fault is None:
            raise  # a bug: its traceback
        where = (str(error).strip().splitlines() or [repr(error)])[0]
        print(f"error: {fault} ({where}). Free space or memory, or choose "
              "another output, and run the command again: finished "
              "outputs and checkpoints are complete, an unfinished one was "
              "not written.", file=sys.stderr)
        sys.exit(EXIT_RESOURCE)


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

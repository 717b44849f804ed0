"""Atomic output directories and the command-line error convention."""

import contextlib
import os
import shutil
import sys

from absl import logging

EXIT_BAD_INPUT = 2
EXIT_MISSING = 3


@contextlib.contextmanager
def staged_directory(output_dir):
    """Yields a fresh temporary sibling of `output_dir`; when the block
    succeeds it replaces `output_dir` (renamed into place), when it fails it
    is removed and `output_dir` is left as it was."""
    output_dir = os.path.normpath(output_dir)
    tmp = f"{output_dir}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


@contextlib.contextmanager
def exit_on_errors(bad_input, missing):
    """Turns `missing` exceptions into exit status 3 and `bad_input` ones
    into exit status 2, printing the message (what to change) to stderr."""
    try:
        yield
    except missing as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_MISSING)
    except bad_input as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

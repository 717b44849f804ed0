"""Atomic outputs: files (`write_json`, `write_text`) and directories."""

import contextlib
import os
import json
import shutil

import tensorflow as tf

from ppcd_tf.errors import EXIT_BAD_INPUT, EXIT_MISSING  # noqa: F401
from ppcd_tf.errors import exit_on_errors  # noqa: F401


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


def write_text(path, text):
    """Writes `text` to `path` atomically (a temporary sibling renamed into
    place; local paths and tf.io.gfile's remote file systems alike), creating
    the parent directory; a failed write leaves `path` as it was."""
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def write_json(path, content):
    """Writes `content` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(content, indent=2, sort_keys=True,
                                default=list) + "\n")

"""Atomic outputs: files (`write_json`, `write_text`) and directories."""

import contextlib
import json
import os
import shutil
import uuid

import tensorflow as tf


@contextlib.contextmanager
def staged_directory(output_dir):
    """Yields a fresh temporary sibling of `output_dir`; when the block
    succeeds it replaces `output_dir` (renamed into place), when it fails it
    is removed and `output_dir` is left as it was."""
    output_dir = os.path.normpath(output_dir)
    tmp = temporary_sibling(output_dir)
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def temporary_sibling(path, suffix=""):
    """A fresh temporary name next to `path` (unique per process and call,
    so concurrent writers never share one), ending in `suffix`."""
    return f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def write_with(path, write_fn, suffix=""):
    """Atomically creates `path` with `write_fn(temporary_path)`: the
    function writes a temporary sibling, which is renamed into place (local
    paths and tf.io.gfile's remote file systems alike). The parent directory
    is created; a failed write leaves `path` as it was and no temporary file.
    `suffix` ends the temporary name (for writers that pick a format by
    extension, e.g. matplotlib's savefig or np.savez)."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    tmp = temporary_sibling(path, suffix)
    try:
        write_fn(tmp)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    def write(tmp):
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(data)
    write_with(path, write)


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, content):
    """Writes `content` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(content, indent=2, sort_keys=True,
                                default=list) + "\n")

"""Atomic outputs (files: `write_json`, `write_text`; directories) and the
one reader of the JSON artefacts (`read_json`) with its clear errors."""

import contextlib
import json
import os
import shutil
import tempfile
import uuid

from ppcd_tf import lazy
from ppcd_tf.errors import BadInputError
from ppcd_tf.errors import DamagedInputError
from ppcd_tf.errors import MissingInputError
from ppcd_tf.errors import OutputExistsError

# tf.io.gfile, imported on first use (commands import this module to check
# their flags before they need TensorFlow).
tf = lazy.load("tensorflow")

# The package's shipped assets (teacher, students, classifier).
ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "assets")


def _refuse_existing(output_dir):
    raise OutputExistsError(
        f"{output_dir} exists; choose another output directory or pass "
        "--overwrite to replace it.")


def _resolved(path):
    """`path` absolute with every symlink followed (also those of a path
    that does not exist yet, through its existing parents)."""
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _within(inner, outer):
    """Whether resolved path `inner` equals `outer` or lies under it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_apart(flag, path, inputs, directory=True):
    """Refuses an output `path` (given as `flag`) that would overwrite,
    alter or delete what the command reads.

    Paths are compared resolved (absolute, symlinks followed), so the same
    directory reached through a link or `..` counts as the same. An output
    `directory` may not equal, lie inside or contain any input; an output
    file may not equal an input nor contain one (an existing directory
    holding it). Remote (`scheme://`) paths and unset inputs are skipped.

    Args:
      flag: the output's flag, for the message (`--output`).
      path: the output path.
      inputs: {flag: path or None} of everything the command reads.
      directory: whether the output is a directory the command writes (or
        replaces with --overwrite) as a whole.

    Raises:
      BadInputError naming both flags and both paths.
    """
    if not path or "://" in os.fspath(path):
        return
    output = _resolved(path)
    for input_flag, input_path in inputs.items():
        if not input_path or "://" in os.fspath(input_path):
            continue
        source = _resolved(input_path)
        if output == source:
            relation = "is the same path as"
        elif _within(source, output):
            relation = "contains"
        elif directory and _within(output, source):
            relation = "is inside"
        else:
            continue
        raise BadInputError(
            f"{flag} {path} {relation} {input_flag} {input_path}: writing "
            f"it would alter or delete the input. Choose an {flag} outside "
            f"{input_path}.")


def check_output_location(flag, path, directory=False, inputs=None):
    """Refuses, before any work, an output `path` (given as `flag`) that
    cannot be created: one under an existing file, or whose nearest
    existing directory (`path` itself first when it is an output
    `directory`) is not writable; with `inputs` ({flag: path}), also one
    that overlaps what the command reads (`check_apart`). Remote
    (`scheme://`) paths pass."""
    if "://" in os.fspath(path):
        return
    if inputs:
        check_apart(flag, path, inputs, directory=directory)
    parent = os.path.abspath(path)
    if not directory:
        parent = os.path.dirname(parent)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise BadInputError(f"{flag} {path} is under {parent}, which is a "
                            "file; choose another path.")
    try:  # a probe, not os.access: root, read-only mounts, immutable dirs
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise BadInputError(f"{flag} {path}: {parent} is not writable "
                            f"({error.strerror}); choose another path."
                            ) from error


@contextlib.contextmanager
def staged_directory(output_dir, overwrite=False):
    """Yields a fresh temporary sibling of `output_dir`; when the block
    succeeds it is renamed into place, when it fails it is removed and
    `output_dir` is left as it was.

    An existing non-empty `output_dir` is replaced only with `overwrite`
    (checked before the block runs and again at the rename, so a directory
    another process wrote meanwhile is never silently replaced); the old
    one is put back if the replacement fails.
    """
    output_dir = os.path.normpath(output_dir)
    if os.path.islink(output_dir):
        # Replace the directory the link names; the link itself stays.
        output_dir = os.path.realpath(output_dir)
    if not overwrite and os.path.isdir(output_dir) and os.listdir(
            output_dir):
        _refuse_existing(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputExistsError(f"{output_dir} is a file, not a directory.")
    parent = os.path.dirname(output_dir) or "."
    os.makedirs(parent, exist_ok=True)
    remove_stale_siblings(output_dir)
    tmp = temporary_sibling(output_dir)
    os.makedirs(tmp)
    old = temporary_sibling(output_dir, ".old")
    try:
        yield tmp
        if overwrite and os.path.exists(output_dir):
            os.rename(output_dir, old)
            try:
                os.rename(tmp, output_dir)
            except BaseException:
                os.rename(old, output_dir)
                raise
        else:
            try:
                os.rename(tmp, output_dir)
            except OSError:
                _refuse_existing(output_dir)
    finally:
        for leftover in (tmp, old):
            if os.path.exists(leftover):
                shutil.rmtree(leftover)


_TEMPORARY_MARK = ".tmp-"


def temporary_sibling(path, suffix=""):
    """A fresh temporary name next to `path` (unique per process and call,
    so concurrent writers never share one), ending in `suffix`:
    `<path>.tmp-<pid>-<random>`."""
    return f"{path}{_TEMPORARY_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}" \
        f"{suffix}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_siblings(path):
    """Removes the temporary siblings of `path` (`temporary_sibling`) that
    a killed writer left: those whose process is gone. Returns their paths.
    Those of live processes (a concurrent writer) are kept."""
    parent = os.path.dirname(os.path.normpath(path)) or "."
    prefix = os.path.basename(os.path.normpath(path)) + _TEMPORARY_MARK
    removed = []
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale = os.path.join(parent, name)
            if os.path.isdir(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.remove(stale)
            removed.append(stale)
    return removed


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


def read_json(path, what, missing_fix, damaged_fix=None,
              missing_error=MissingInputError,
              damaged_error=DamagedInputError):
    """The parsed content of the JSON file `path` (a local path or a
    tf.io.gfile URL), with the errors every reader of an artefact gives.

    Args:
      path: the file.
      what: what the errors call it, before the path: the flag that gave it
        (`--train_steps`) or words (`the pruning structure`); may be "".
      missing_fix: the sentence that ends the error when `path` does not
        exist: what to give or run instead.
      damaged_fix: the sentence that ends the error when `path` is not valid
        JSON (or not UTF-8); `missing_fix` when None.
      missing_error, damaged_error: the exception classes raised (subclasses
        of MissingInputError for a run directory's or an export's own).

    Returns:
      The parsed JSON value.
    """
    subject = f"{what} {path}" if what else f"{path}"
    if not tf.io.gfile.exists(path):
        raise missing_error(f"{subject} does not exist; {missing_fix}")
    if tf.io.gfile.isdir(path):
        raise missing_error(f"{subject} is a directory, not a JSON file; "
                            f"{missing_fix}")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise damaged_error(
            f"{subject} is not valid JSON ({error}); "
            f"{missing_fix if damaged_fix is None else damaged_fix}"
        ) from error


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string",
               int: "an integer", float: "a number", bool: "true or false",
               type(None): "null"}


def _has_type(value, kinds):
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not an integer here
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _field(content, dotted):
    """(value, present) of a dotted field of nested dicts."""
    value = content
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def check_fields(content, path, fields, fix,
                 error=DamagedInputError):
    """Checks the shape of a parsed JSON artefact before anyone reads it.

    Args:
      content: the parsed JSON value.
      path: the file, for the message.
      fields: {dotted field name: type or tuple of types}; a name ending in
        "?" may be absent. Parents come before their children
        ("dataset": dict, then "dataset.resolution": int).
      fix: the sentence that ends the message (how to get a good file).
      error: the exception class raised (exit 3 by default).

    Raises:
      `error` naming the file, the field, what it must be and what it is.
    """
    if not isinstance(content, dict):
        raise error(f"{path} must hold a JSON object, got "
                    f"{_TYPE_NAMES.get(type(content), type(content).__name__)}"
                    f"; {fix}")
    for name, kinds in fields.items():
        optional = name.endswith("?")
        name = name.rstrip("?")
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        value, present = _field(content, name)
        if not present:
            if optional:
                continue
            raise error(f"{path}: field {name!r} is missing; {fix}")
        if not _has_type(value, kinds):
            wanted = " or ".join(
                _TYPE_NAMES.get(k, k.__name__) for k in kinds
                if not (k is int and float in kinds))  # a number covers it
            got = _TYPE_NAMES.get(type(value), type(value).__name__)
            raise error(f"{path}: field {name!r} must be {wanted}, got "
                        f"{got} ({json.dumps(value)[:40]}); {fix}")

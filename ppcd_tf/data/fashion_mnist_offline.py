"""Offline preparation of tfds `fashion_mnist` from Debian's package files.

Debian's package `dataset-fashion-mnist` installs the four original
Fashion-MNIST IDX files in `/usr/share/datasets/fashion-mnist/`, recompressed:
only the 10-byte gzip header differs from upstream (no FNAME field, another
mtime). The deflate stream, CRC and length are identical, so rewriting the
header to the upstream one (flags FNAME, upstream mtime, XFL 0, OS 3 = Unix,
file name without `.gz`) yields byte-exact upstream files. These are placed in
the tfds manual dir, where tfds's download manager uses a file named like the
registered `filename` of a URL instead of downloading it, after checking its
size and sha256 against the checksums registered in the installed
`tensorflow_datasets` package. Nothing here ever reaches the network.

This module also holds the small pieces shared by `ppcd_tf.data.sources`:
`DataNotFoundError`, the default data dir, the manual dir convention and the
cross-process preparation lock.
"""

import contextlib
import fcntl
import hashlib
import os
import struct

import tensorflow_datasets as tfds
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
BUILDER_NAME = "fashion_mnist"
UPSTREAM_URL = "https://github.com/zalandoresearch/fashion-mnist"

# Upstream gzip header fields (RFC 1952).
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_METHOD_DEFLATE = 8
_GZIP_FLAG_FHCRC = 0x02
_GZIP_FLAG_FEXTRA = 0x04
_GZIP_FLAG_FNAME = 0x08
_GZIP_FLAG_FCOMMENT = 0x10
_GZIP_FIXED_HEADER_BYTES = 10
_GZIP_FHCRC_BYTES = 2
_UPSTREAM_XFL = 0
_UPSTREAM_OS_UNIX = 3
_UPSTREAM_MTIME_TRAIN = 1504176606
_UPSTREAM_MTIME_TEST = 1504176627

# File name -> upstream gzip mtime.
UPSTREAM_FILES = {
    "train-images-idx3-ubyte.gz": _UPSTREAM_MTIME_TRAIN,
    "train-labels-idx1-ubyte.gz": _UPSTREAM_MTIME_TRAIN,
    "t10k-images-idx3-ubyte.gz": _UPSTREAM_MTIME_TEST,
    "t10k-labels-idx1-ubyte.gz": _UPSTREAM_MTIME_TEST,
}

_DEFAULT_DATA_DIR = "~/tensorflow_datasets"
_DATA_DIR_ENV = "TFDS_DATA_DIR"
# tfds's defaults: download dir `<data_dir>/downloads`, manual dir
# `<download_dir>/manual` (DatasetBuilder._make_download_manager).
_DOWNLOADS_SUBDIR = "downloads"
_MANUAL_SUBDIR = "manual"
_LOCK_FILE_NAME = ".ppcd_prepare.lock"
_HASH_CHUNK_BYTES = 1 << 20


class DataNotFoundError(errors.MissingInputError):
    """The requested data is not on disk and will not be downloaded."""


def default_data_dir():
    """Returns `$TFDS_DATA_DIR` or `~/tensorflow_datasets`, user-expanded."""
    return os.path.expanduser(
        os.environ.get(_DATA_DIR_ENV) or _DEFAULT_DATA_DIR)


def manual_dir_for(data_dir):
    """Returns tfds's default manual dir, `<data_dir>/downloads/manual`."""
    return os.path.join(data_dir, _DOWNLOADS_SUBDIR, _MANUAL_SUBDIR)


@contextlib.contextmanager
def preparation_lock(data_dir):
    """Holds an exclusive `fcntl` lock on a file in `data_dir`.

    Serialises dataset preparation between processes that share `data_dir`.
    The lock is released when the block exits or the process dies.

    Args:
        data_dir: directory of the tfds data (created if missing).

    Yields:
        None.
    """
    os.makedirs(data_dir, exist_ok=True)
    lock_path = os.path.join(data_dir, _LOCK_FILE_NAME)
    with open(lock_path, "a") as lock_file:
        logging.info("Waiting for the preparation lock %s", lock_path)
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def sha256_of_file(path):
    """Returns the hex sha256 digest of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _deflate_offset(data, name):
    """Returns the offset of the deflate stream in gzip bytes `data`."""
    if (len(data) < _GZIP_FIXED_HEADER_BYTES
            or data[:2] != _GZIP_MAGIC
            or data[2] != _GZIP_METHOD_DEFLATE):
        raise errors.DamagedInputError(f"{name} is not a gzip (deflate) file.")
    flags = data[3]
    offset = _GZIP_FIXED_HEADER_BYTES
    if flags & _GZIP_FLAG_FEXTRA:
        (extra_len,) = struct.unpack_from("<H", data, offset)
        offset += 2 + extra_len
    for flag in (_GZIP_FLAG_FNAME, _GZIP_FLAG_FCOMMENT):
        if flags & flag:
            offset = data.index(b"\0", offset) + 1
    if flags & _GZIP_FLAG_FHCRC:
        offset += _GZIP_FHCRC_BYTES
    return offset


def upstream_gzip_bytes(data, file_name, mtime):
    """Rewrites the gzip header of `data` to the upstream Fashion-MNIST one.

    Args:
        data: bytes of a gzip file whose deflate stream is the upstream one.
        file_name: the `.gz` file name, e.g. `train-images-idx3-ubyte.gz`;
            the FNAME field holds it without `.gz`.
        mtime: the upstream gzip mtime (seconds since the epoch).

    Returns:
        The bytes of the file with the upstream header. Idempotent.
    """
    inner_name = file_name[:-len(".gz")].encode("latin-1")
    header = (_GZIP_MAGIC
              + bytes([_GZIP_METHOD_DEFLATE, _GZIP_FLAG_FNAME])
              + struct.pack("<I", mtime)
              + bytes([_UPSTREAM_XFL, _UPSTREAM_OS_UNIX])
              + inner_name + b"\0")
    return header + data[_deflate_offset(data, file_name):]


def _registered_checksums(builder):
    """Returns {file name: (size, sha256)} registered for `builder`'s urls."""
    return {
        info.filename: (info.size, info.checksum)
        for info in builder.url_infos.values()
    }


def _missing_files_message(source_dir, missing, manual_dir):
    return (
        f"Fashion-MNIST source files missing from {source_dir}: "
        f"{', '.join(missing)}. Install them with `apt-get install -y "
        f"{DEBIAN_PACKAGE}` (it puts them in {DEBIAN_DIR}), or put the four "
        f"upstream files ({', '.join(sorted(UPSTREAM_FILES))}, from "
        f"{UPSTREAM_URL}) in {source_dir} or in {manual_dir}.")


def _is_valid_copy(path, size, checksum):
    return (os.path.isfile(path) and os.path.getsize(path) == size
            and sha256_of_file(path) == checksum)


def write_upstream_files(source_dir, manual_dir, checksums):
    """Writes header-fixed, checksum-verified copies into `manual_dir`.

    A file already in `manual_dir` with the registered checksum is kept, so
    upstream files put there by hand need no `source_dir`.

    Args:
        source_dir: directory with the four (Debian or upstream) `.gz` files.
        manual_dir: destination, tfds's manual dir.
        checksums: {file name: (size, sha256)} registered in tfds.

    Raises:
        DataNotFoundError: a source file is missing, or does not match the
            registered checksum after the header rewrite.
    """
    todo = {}
    for name in sorted(UPSTREAM_FILES):
        target = os.path.join(manual_dir, name)
        if _is_valid_copy(target, *checksums[name]):
            logging.info("Upstream file already in place: %s", target)
        else:
            todo[name] = target
    missing = [name for name in todo
               if not os.path.isfile(os.path.join(source_dir, name))]
    if missing:
        raise DataNotFoundError(
            _missing_files_message(source_dir, missing, manual_dir))
    os.makedirs(manual_dir, exist_ok=True)
    for name, target in todo.items():
        size, checksum = checksums[name]
        source = os.path.join(source_dir, name)
        with open(source, "rb") as f:
            fixed = upstream_gzip_bytes(f.read(), name, UPSTREAM_FILES[name])
        actual = hashlib.sha256(fixed).hexdigest()
        if len(fixed) != size or actual != checksum:
            raise DataNotFoundError(
                f"{source} is not the upstream Fashion-MNIST file even "
                f"after the gzip header rewrite (size {len(fixed)}, sha256 "
                f"{actual}; tfds expects size {size}, sha256 {checksum}). "
                f"Reinstall it with `apt-get install --reinstall -y "
                f"{DEBIAN_PACKAGE}` or put the upstream file from "
                f"{UPSTREAM_URL} in {manual_dir}.")
        files.write_bytes(target, fixed)
        logging.info("Wrote upstream %s (sha256 %s)", target, actual)


def prepare_fashion_mnist(data_dir=None, source_dir=DEBIAN_DIR):
    """Prepares tfds `fashion_mnist` in `data_dir` without any download.

    Returns at once if the dataset is already prepared. Otherwise writes
    byte-exact upstream copies of the four files in `source_dir` into tfds's
    manual dir `<data_dir>/downloads/manual` and runs tfds's own builder,
    which checks them against its registered checksums. Two processes doing
    this on the same `data_dir` are serialised by a file lock.

    Args:
        data_dir: tfds data dir; `$TFDS_DATA_DIR` or `~/tensorflow_datasets`
            if None.
        source_dir: directory with the four `.gz` files, Debian-recompressed
            or upstream.

    Returns:
        The prepared `tfds.core.DatasetBuilder`.

    Raises:
        DataNotFoundError: the source files are missing or corrupt.
    """
    data_dir = data_dir or default_data_dir()
    builder = tfds.builder(BUILDER_NAME, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    manual_dir = manual_dir_for(data_dir)
    with preparation_lock(data_dir):
        # Another process may have finished while this one waited.
        builder = tfds.builder(BUILDER_NAME, data_dir=data_dir)
        if builder.is_prepared():
            logging.info("%s was prepared by another process.", BUILDER_NAME)
            return builder
        write_upstream_files(
            source_dir, manual_dir, _registered_checksums(builder))
        logging.info("Preparing %s in %s from %s", BUILDER_NAME, data_dir,
                     manual_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir))
    return builder

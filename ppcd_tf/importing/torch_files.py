"""Reads torch weight files (`torch.save(state_dict)`) without torch.

Both formats torch writes: the zip format (torch >= 1.6: `archive/data.pkl`
plus one raw file per storage) and the legacy pickle format (torch < 1.6, as
the 2019 BigGAN-PyTorch releases were saved: magic number, protocol,
system-info pickles, the object pickle, then the raw storages). Every pickle
in either format goes through a restricted unpickler that resolves only the
few torch names a state dict of plain tensors needs; anything else a file
names is refused before it could run (a downloaded file is untrusted).
"""

import collections
import pickle
import zipfile

import numpy as np

from ppcd_tf import errors

# Legacy (non-zip) torch.save format: these two pickles come first
# (torch/serialization.py, MAGIC_NUMBER and PROTOCOL_VERSION).
_LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL_VERSION = 1001
# Each legacy storage record starts with its element count as int64.
_LEGACY_COUNT_DTYPE = np.dtype("<i8")

_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # bit patterns, widened below
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_BFLOAT16_SHIFT = 16  # bfloat16 = the high 16 bits of a float32


class _StorageType:
    """Stand-in for a torch storage class (torch.FloatStorage etc.)."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _StorageRef:
    """A storage named by the pickle; its bytes are attached later."""

    def __init__(self, key, storage_type, numel, view_offset=0):
        self.key = key
        self.storage_type = storage_type
        self.numel = numel
        self.view_offset = view_offset  # elements (legacy storage views)


class _TensorRef:
    """A tensor of the pickle, materialised once its storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2 without torch."""
    del requires_grad, backward_hooks, metadata
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """torch._utils._rebuild_parameter: a Parameter is its data here."""
    del requires_grad, backward_hooks
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict, refusing every other global."""

    def __init__(self, file, legacy):
        super().__init__(file)
        self._legacy = legacy
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"Refusing to load {module}.{name} from a torch weights file "
            "(only state dicts of plain tensors are supported).")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}")
        if self._legacy:
            # ('storage', type, root_key, location, numel, view_metadata)
            _, storage_type, key, _, numel, view = pid
        else:
            # ('storage', type, key, location, numel)
            _, storage_type, key, _, numel = pid
            view = None
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(
                f"Unsupported storage type {storage_type!r}")
        root = self.storages.get(key)
        if root is None:
            root = _StorageRef(key, storage_type, int(numel))
            self.storages[key] = root
        if view is None:
            return root
        _, view_offset, view_size = view
        return _StorageRef(key, storage_type, int(view_size),
                           view_offset=int(view_offset))


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (numbers, strings, lists, dicts): the
    legacy format's header pickles. Every global and persistent id is
    refused, so no code named by the file can run."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"Refusing to load {module}.{name} from a torch weights file "
            "header (headers hold plain data only).")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(
            f"Unexpected persistent id {pid!r} in a torch file header.")


def _load_plain(f):
    return _PlainUnpickler(f).load()


def _materialise(ref, buffers, name):
    """numpy copy of a tensor: strided view of its storage's flat array."""
    flat = buffers[ref.storage.key]
    numel = int(np.prod(ref.size)) if ref.size else 1
    start = ref.storage.view_offset + ref.offset
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if numel and (start < 0 or last >= ref.storage.view_offset +
                  ref.storage.numel or last >= flat.size):
        raise errors.DamagedInputError(
            f"Tensor {name!r} reaches past its storage.")
    itemsize = flat.dtype.itemsize
    array = np.lib.stride_tricks.as_strided(
        flat[start:], shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride), writeable=False)
    array = np.array(array, order="C")  # contiguous copy owning memory
    if ref.storage.storage_type.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << _BFLOAT16_SHIFT).view(np.float32)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _flat(raw, storage, name):
    dtype = storage.storage_type.dtype
    if len(raw) < storage.numel * dtype.itemsize:
        raise errors.DamagedInputError(f"Storage {name!r} is truncated.")
    return np.frombuffer(raw, dtype=dtype, count=storage.numel)


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise errors.DamagedInputError(
                f"{path}: no single data.pkl in the archive.")
        prefix = pkl[0][:-len("data.pkl")]
        if prefix + "byteorder" in names and archive.read(
                prefix + "byteorder").strip() != b"little":
            raise errors.DamagedInputError(
                f"{path}: big-endian files are not supported.")
        with archive.open(pkl[0]) as f:
            unpickler = _RestrictedUnpickler(f, legacy=False)
            result = unpickler.load()
        buffers = {
            key: _flat(archive.read(f"{prefix}data/{key}"), storage, key)
            for key, storage in unpickler.storages.items()}
    return result, buffers


def _load_legacy(path):
    with open(path, "rb") as f:
        if _load_plain(f) != _LEGACY_MAGIC_NUMBER:
            raise errors.DamagedInputError(f"{path}: not a torch weights file.")
        if _load_plain(f) != _LEGACY_PROTOCOL_VERSION:
            raise errors.DamagedInputError(
                f"{path}: unsupported torch protocol version.")
        sys_info = _load_plain(f)
        if not sys_info.get("little_endian", True):
            raise errors.DamagedInputError(
                f"{path}: big-endian files are not supported.")
        unpickler = _RestrictedUnpickler(f, legacy=True)
        result = unpickler.load()
        keys = _load_plain(f)
        buffers = {}
        for key in keys:
            storage = unpickler.storages[key]
            count = np.frombuffer(f.read(_LEGACY_COUNT_DTYPE.itemsize),
                                  _LEGACY_COUNT_DTYPE)
            if count.size != 1 or int(count[0]) != storage.numel:
                raise errors.DamagedInputError(
                    f"{path}: corrupt storage record {key!r}.")
            raw = f.read(storage.numel * storage.storage_type.dtype.itemsize)
            buffers[key] = _flat(raw, storage, key)
    return result, buffers


def read_torch_state_dict(path):
    """Reads a torch `state_dict` file without torch.

    Args:
      path: a file written by `torch.save(model.state_dict(), path)`, in the
        zip format (torch >= 1.6) or the legacy pickle format.

    Returns:
      dict name -> numpy array (shape and dtype as the torch tensor; strides
      and storage offsets resolved; C-contiguous copies), in file order.

    Raises:
      errors.DamagedInputError (a ValueError): not a readable state dict of
        plain tensors (anything else the file names is refused before it
        could run: every pickle goes through a restricted unpickler).
    """
    try:
        if zipfile.is_zipfile(path):
            result, buffers = _load_zip(path)
        else:
            result, buffers = _load_legacy(path)
    except errors.PPCDError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile,
            KeyError, TypeError, AttributeError, ValueError,
            IndexError) as error:
        # ValueError: e.g. "unsupported pickle protocol" of a newer writer.
        raise errors.DamagedInputError(
            f"{path} is not a readable torch state dict ({error}).") from error
    if not isinstance(result, dict):
        raise errors.DamagedInputError(
            f"{path}: holds a {type(result).__name__}, "
            "not a state dict.")
    state = {}
    for name, value in result.items():
        if not isinstance(value, _TensorRef):
            raise errors.DamagedInputError(
                f"{path}: entry {name!r} is not a tensor.")
        state[name] = _materialise(value, buffers, name)
    return state



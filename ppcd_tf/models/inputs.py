"""The input checks every serving entry point applies before a value reaches
a graph: labels are integers in range, never converted into something
plausible (a float array truncated, an int64 wrapped into int32).

Numpy only (and ppcd_tf.errors, which needs absl), so the ONNX runner can
use it without TensorFlow. The errors (`InvalidInputError`) are ValueErrors
and BadInputErrors: the commands report them as bad input (exit 2).
"""

import numpy as np

from ppcd_tf.errors import BadInputError


class InvalidInputError(BadInputError):
    """A label or z array that the generator must not be given."""


INT32_LIMIT = 2**31


def checked_labels(labels, num_classes=None, name="labels"):
    """`labels` as an int32 array [N], refused unless every entry is an
    integer in [0, num_classes) (in int32's range when `num_classes` is
    None: the graph checks the class range, this check that nothing wraps).

    Args:
      labels: a sequence, numpy array or eager tensor of shape [N]; any
        integer dtype. Floats (even 1.0), booleans and strings are refused.
      num_classes: the generator's number of classes, or None.
      name: what the error calls the argument.

    Returns:
      np.ndarray int32 [N].

    Raises:
      InvalidInputError naming the argument, the offending value and the
      valid range.
    """
    if hasattr(labels, "numpy"):
        labels = labels.numpy()
    array = np.asarray(labels)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(
            f"{name} must be integers (class ids), got dtype {array.dtype}"
            f"{_example(array)}; convert them explicitly (e.g. "
            "np.asarray(labels, np.int64)) after checking they are whole.")
    if array.ndim != 1:
        raise InvalidInputError(
            f"{name} must have shape [batch], got {list(array.shape)}.")
    low, limit = ((-INT32_LIMIT, INT32_LIMIT) if num_classes is None
                  else (0, num_classes))
    outside = (array < low) | (array >= limit)
    if outside.any():
        raise InvalidInputError(
            f"{name} must be in [{low}, {limit}), got "
            f"{array[outside][0]} at index {int(np.argmax(outside))}.")
    return array.astype(np.int32)


def checked_class(value, num_classes, name):
    """One class id (an int, or a whole-number string from a flag) checked
    like `checked_labels`; returns int."""
    return int(checked_labels(np.asarray([value]), num_classes, name)[0])


def _example(array):
    flat = array.reshape(-1)
    return f" (first value {flat[0]!r})" if flat.size else ""

"""Inputs are checked for what they are, never converted into something
plausible: labels are integers in range at every entry point."""

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import inputs


@pytest.mark.parametrize("labels, phrase", [
    (np.array([1.5, 1.9]), "must be integers"),
    (np.array([1.0, 2.0]), "must be integers"),   # whole floats too
    ([0.0], "must be integers"),
    (np.array([True, False]), "must be integers"),
    (np.array(["1"]), "must be integers"),
    (np.array([2**32 + 1], np.int64), r"must be in \[0, 10\)"),
    (np.array([3, -1]), r"got -1 at index 1"),
    (np.array([10]), r"must be in \[0, 10\)"),
    (np.zeros((2, 2), np.int32), r"shape \[batch\]"),
    (tf.constant([0.5]), "must be integers"),
])
def test_bad_labels_are_refused_not_converted(labels, phrase):
    with pytest.raises(errors.BadInputError, match=phrase):
        inputs.checked_labels(labels, 10)


def test_good_labels_become_int32_unchanged():
    for labels in ([0, 9, 3], np.array([0, 9, 3], np.int64),
                   np.array([0, 9, 3], np.uint8), tf.constant([0, 9, 3])):
        result = inputs.checked_labels(labels, 10)
        assert result.dtype == np.int32
        np.testing.assert_array_equal(result, [0, 9, 3])


def test_without_a_class_count_only_wrapping_is_refused():
    # (the TFLite runner: its graph checks the class range itself)
    np.testing.assert_array_equal(
        inputs.checked_labels(np.array([-1, 12]), None), [-1, 12])
    with pytest.raises(errors.BadInputError, match="must be in"):
        inputs.checked_labels(np.array([2**31], np.int64), None)


def test_one_class_id():
    assert inputs.checked_class(7, 10, "--class") == 7
    with pytest.raises(errors.BadInputError, match="--class must be in"):
        inputs.checked_class(10, 10, "--class")


def test_artefact_fields_are_checked_with_the_file_and_the_field():
    from ppcd_tf import files
    schema = {"generator": dict, "generator.dim_z": int,
              "dataset?": dict, "ratio": float, "names": (list, type(None))}
    good = {"generator": {"dim_z": 120}, "ratio": 1, "names": None}
    files.check_fields(good, "models.json", schema, "fix it.")
    for content, phrase in (
            ([], "must hold a JSON object, got a list"),
            ({"ratio": 1.0, "names": []}, "field 'generator' is missing"),
            (dict(good, generator={"dim_z": True}),
             "field 'generator.dim_z' must be an integer, got true or false"),
            (dict(good, generator={"dim_z": 1.5}),
             "field 'generator.dim_z' must be an integer, got a number"),
            (dict(good, dataset=[]), "field 'dataset' must be an object"),
            (dict(good, names="a"), "must be a list or null, got a string")):
        with pytest.raises(errors.DamagedInputError) as caught:
            files.check_fields(content, "models.json", schema, "fix it.")
        assert str(caught.value).startswith("models.json")
        assert phrase in str(caught.value)
        assert str(caught.value).endswith("fix it.")

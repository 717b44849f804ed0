"""ONNX and TFLite exports: equal to the SavedModel, invalid inputs fail
inside the converted graphs, and generator.onnx runs in a process that has
onnxruntime but no TensorFlow."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ppcd_tf import errors
from ppcd_tf.exporting import pipeline
from ppcd_tf.exporting import portable
from ppcd_tf.exporting import saved_model
from tests import helpers

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

TFLITE_BATCH = 6
NUM_CLASSES = 10


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The tiny teacher exported with both converted models."""
    output = str(tmp_path_factory.mktemp("portable") / "export")
    report = pipeline.export_run(
        helpers.tiny_teacher_dir(), output, formats=("onnx", "tflite"),
        tflite_batch=TFLITE_BATCH)
    return output, report


def _inputs(batch, dim_z, seed=0):
    rng = np.random.RandomState(seed)
    z = rng.randn(batch, dim_z).astype(np.float32)
    labels = (np.arange(batch) % NUM_CLASSES).astype(np.int32)
    return z, labels


def test_files_metadata_and_report(export):
    output, report = export
    for name in (portable.ONNX_FILE, portable.TFLITE_FILE):
        assert os.path.getsize(os.path.join(output, name)) > 10_000
    metadata = saved_model.read_metadata(output)
    assert metadata["portable"] == report["portable"]
    onnx = report["portable"]["onnx"]
    assert onnx["opset"] == portable.DEFAULT_ONNX_OPSET
    assert onnx["verified_max_abs_diff"] <= pipeline.DEFAULT_TOLERANCE
    tflite = report["portable"]["tflite"]
    assert tflite["batch"] == TFLITE_BATCH
    assert tflite["quantization"] == "none"
    assert tflite["max_abs_diff"] <= pipeline.TFLITE_TOLERANCE
    # The SavedModel's size does not count the converted models.
    assert report["saved_model_bytes"] == saved_model.directory_bytes(output) - (
        onnx["bytes"] + tflite["bytes"])
    assert saved_model.saved_model_bytes(output) == report["saved_model_bytes"]
    text = pipeline.format_report(report)
    assert "ONNX: generator.onnx (opset 15" in text
    assert "TFLite: generator.tflite (batch 6" in text


def test_onnx_equals_the_saved_model(export):
    from ppcd_tf.exporting import onnx_runtime
    output, _ = export
    generator = onnx_runtime.OnnxGenerator(
        os.path.join(output, portable.ONNX_FILE))
    loaded = saved_model.load_export(output)
    assert (generator.dim_z, generator.num_classes) == (loaded.dim_z,
                                                        NUM_CLASSES)
    assert generator.metadata["dim_z"] == loaded.dim_z
    inputs = generator.session.get_inputs()
    assert [i.name for i in inputs] == ["z", "labels"]
    assert inputs[0].shape[1] == loaded.dim_z
    z, labels = _inputs(7, loaded.dim_z)
    images = generator.generate(z, labels)
    np.testing.assert_allclose(images, loaded.generate(z, labels).numpy(),
                               atol=pipeline.DEFAULT_TOLERANCE, rtol=0)
    assert images.shape == (7, 32, 32, 3)


@pytest.mark.parametrize("case", ["label -1", "label 10", "nan z", "inf z"])
def test_onnx_invalid_rows_fail_in_the_check(export, case):
    output, _ = export
    session = onnxruntime.InferenceSession(
        os.path.join(output, portable.ONNX_FILE),
        providers=["CPUExecutionProvider"])
    dim_z = session.get_inputs()[0].shape[1]
    z, labels = _inputs(4, dim_z)
    if case == "label -1":
        labels[2] = -1
    elif case == "label 10":
        labels[2] = NUM_CLASSES
    else:
        z[1, 3] = np.nan if case == "nan z" else np.inf
    with pytest.raises(Exception, match=portable.CHECK_NAME):
        session.run(["images"], {"z": z, "labels": labels})


def test_onnx_wrong_shapes_and_types_are_refused(export):
    from ppcd_tf.exporting import onnx_runtime
    output, _ = export
    generator = onnx_runtime.OnnxGenerator(
        os.path.join(output, portable.ONNX_FILE))
    z, labels = _inputs(2, generator.dim_z)
    # By onnxruntime itself (the declared input shapes and types) ...
    with pytest.raises(Exception, match="invalid dimensions for input: z"):
        generator.session.run(["images"], {"z": z[:, :5], "labels": labels})
    with pytest.raises(Exception, match="Unexpected input data type"):
        generator.session.run(["images"], {
            "z": z, "labels": labels.astype(np.float32)})
    # ... and with a message by the runner.
    with pytest.raises(ValueError, match=rf"\[batch, {generator.dim_z}\]"):
        generator.generate(z[:, :5], labels)
    with pytest.raises(ValueError, match="labels must be integers"):
        generator.generate(z, labels.astype(np.float32))
    with pytest.raises(ValueError, match="one per row"):
        generator.generate(z, labels[:1])


@pytest.mark.parametrize("prop, value, phrase", [
    ("ppcd_tf.metadata", "{not json", "is not valid JSON"),
    ("dim_z", "twelve", "'dim_z' must be a positive integer"),
    ("max_batch", "0", "'max_batch' must be a positive integer"),
])
def test_onnx_hand_edited_metadata_names_the_field(export, tmp_path, prop,
                                                   value, phrase):
    import onnx
    from ppcd_tf import errors
    from ppcd_tf.exporting import onnx_runtime
    output, _ = export
    model = onnx.load(os.path.join(output, "generator.onnx"))
    for entry in model.metadata_props:
        if entry.key == prop:
            entry.value = value
    edited = str(tmp_path / "edited.onnx")
    onnx.save(model, edited)
    with pytest.raises(errors.DamagedInputError) as caught:
        onnx_runtime.OnnxGenerator(edited)
    assert str(caught.value).startswith(edited)
    assert phrase in str(caught.value)


def test_onnx_runs_in_a_process_without_tensorflow(export, tmp_path):
    output, _ = export
    loaded = saved_model.load_export(output)
    z, labels = _inputs(5, loaded.dim_z, seed=3)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "labels.npy", labels)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        sys.modules["tensorflow"] = None  # any import of it fails
        from ppcd_tf.exporting.onnx_runtime import OnnxGenerator
        generator = OnnxGenerator({os.path.join(output, 'generator.onnx')!r})
        images = generator.generate(np.load({str(tmp_path / 'z.npy')!r}),
                                    np.load({str(tmp_path / 'labels.npy')!r}))
        np.save({str(tmp_path / 'images.npy')!r}, images)
        print(json.dumps({{"tensorflow_loaded": any(
            m.startswith("tensorflow") and sys.modules[m] is not None
            for m in sys.modules)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script],
                            env=helpers.python_env(), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "tensorflow_loaded": False}
    np.testing.assert_allclose(np.load(tmp_path / "images.npy"),
                               loaded.generate(z, labels).numpy(),
                               atol=pipeline.DEFAULT_TOLERANCE, rtol=0)


def test_tflite_equals_the_saved_model_and_checks_inputs(export):
    output, _ = export
    runner = portable.TFLiteGenerator.from_file(
        os.path.join(output, portable.TFLITE_FILE))
    loaded = saved_model.load_export(output)
    assert (runner.batch, runner.dim_z) == (TFLITE_BATCH, loaded.dim_z)
    z, labels = _inputs(TFLITE_BATCH, loaded.dim_z, seed=5)
    np.testing.assert_allclose(runner.generate(z, labels),
                               loaded.generate(z, labels).numpy(),
                               atol=pipeline.TFLITE_TOLERANCE, rtol=0)
    for bad_z, bad_labels in (
            (z, np.where(np.arange(TFLITE_BATCH) == 1, -1, labels)),
            (z, np.where(np.arange(TFLITE_BATCH) == 1, NUM_CLASSES, labels)),
            (np.where(np.arange(TFLITE_BATCH)[:, None] == 0, np.nan, z),
             labels)):
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            runner.generate(bad_z, bad_labels)
    with pytest.raises(errors.BadInputError, match="takes z"):
        runner.generate(z[:2], labels[:2])


def test_tflite_from_an_export_equals_it_and_checks_inputs(export):
    """export_to_tflite converts a SavedModel export without its run (the
    shipped students' case), at any batch, with the input check in front
    (the SavedModel's asserts do not survive conversion)."""
    from ppcd_tf.exporting import conversion
    output, _ = export
    loaded = saved_model.load_export(output)
    model, difference = conversion.checked_tflite(loaded, 3)
    assert difference <= pipeline.TFLITE_TOLERANCE
    assert difference == portable.max_tflite_difference(model, loaded)
    runner = portable.TFLiteGenerator(model)
    assert runner.batch == 3
    z, labels = _inputs(3, runner.dim_z, seed=7)
    with pytest.raises(RuntimeError, match="gather index out of bounds"):
        runner.generate(z, np.array([0, NUM_CLASSES, 1], np.int32))
    with pytest.raises(errors.BadInputError, match="--tflite_batch"):
        portable.export_to_tflite(loaded, 0)


def test_add_tflite_copies_an_export_and_leaves_it_as_it_was(export,
                                                             tmp_path):
    from ppcd_tf.exporting import conversion
    output, _ = export
    before = {name: os.path.getsize(os.path.join(root, name))
              for root, _, names in os.walk(output) for name in names}
    copy = str(tmp_path / "with_tflite")
    report = conversion.add_tflite(output, copy, 2)
    after = {name: os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(output) for name in names}
    assert after == before  # the source is untouched
    record = saved_model.read_metadata(copy)["portable"]["tflite"]
    assert record == report["portable"]["tflite"]
    assert record["batch"] == 2 and record["checked_against"] == (
        "the export's serving_default")
    assert record["max_abs_diff"] <= pipeline.TFLITE_TOLERANCE
    # The other converted model and the SavedModel come along unchanged.
    assert saved_model.read_metadata(copy)["portable"]["onnx"] == (
        saved_model.read_metadata(output)["portable"]["onnx"])
    runner = portable.TFLiteGenerator.from_file(
        os.path.join(copy, portable.TFLITE_FILE))
    z, labels = _inputs(2, runner.dim_z, seed=3)
    np.testing.assert_allclose(
        runner.generate(z, labels),
        saved_model.load_export(copy).generate(z, labels).numpy(),
        atol=pipeline.TFLITE_TOLERANCE, rtol=0)
    with pytest.raises(errors.OutputExistsError):
        conversion.add_tflite(output, copy, 2)


def test_quantized_tflite_is_smaller_and_close(export):
    from ppcd_tf.runs import run_dir
    generator, _, _ = run_dir.restore_teacher(helpers.tiny_teacher_dir())
    output, report = export
    sizes = {}
    for quantization in ("dynamic_range", "float16"):
        model = portable.to_tflite(generator, 4, saved_model.MAX_BATCH,
                                          quantization)
        sizes[quantization] = len(model)
        difference = pipeline.check_tflite(model, generator, quantization)
        assert 0 < difference < 0.5, (quantization, difference)
    assert sizes["float16"] < report["portable"]["tflite"]["bytes"]
    assert sizes["dynamic_range"] < sizes["float16"]


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(formats=("onnx",), onnx_opset=21), "--onnx_opset 21"),
    (dict(formats=("tflite",), tflite_batch=0), "--tflite_batch"),
    (dict(formats=("tflite",), tflite_quantization="int4"),
     "--tflite_quantization"),
    (dict(formats=("pdf",)), "Unknown export format"),
])
def test_bad_options_refused_before_any_work(tmp_path, kwargs, pattern):
    # The run does not exist: the options are checked first.
    with pytest.raises(errors.BadInputError, match=pattern):
        pipeline.export_run(str(tmp_path / "no_run"),
                             str(tmp_path / "out"), **kwargs)
    assert not os.path.exists(tmp_path / "out")


def test_portable_throughput_rows(export):
    from ppcd_tf.workflows import benchmark
    output, report = export
    result = benchmark.portable_throughput(output, repeats=2, warmup=1)
    assert result["batch_size"] == TFLITE_BATCH  # the TFLite model's
    rows = {row["runtime"]: row for row in result["rows"]}
    assert list(rows) == ["SavedModel (TensorFlow)", "TFLite",
                          "ONNX (onnxruntime)"]
    base = rows["SavedModel (TensorFlow)"]
    assert base["vs_saved_model"] == 1.0
    assert base["bytes"] == report["saved_model_bytes"]
    for row in rows.values():
        np.testing.assert_allclose(
            row["vs_saved_model"],
            base["seconds_per_batch"] / row["seconds_per_batch"])
        np.testing.assert_allclose(row["images_per_sec"],
                                   TFLITE_BATCH / row["seconds_per_batch"])
    assert rows["TFLite"]["bytes"] == report["portable"]["tflite"]["bytes"]
    assert len(benchmark.portable_markdown(result).splitlines()) == 5


def test_evaluation_reads_the_converted_models(export):
    from ppcd_tf.metrics import evaluation
    output, _ = export
    loaded = saved_model.load_export(output)
    z, labels = _inputs(2 * TFLITE_BATCH + 1, loaded.dim_z, seed=7)
    expected = loaded.generate(z, labels).numpy()
    for name, atol in ((portable.ONNX_FILE,
                        pipeline.DEFAULT_TOLERANCE),
                       (portable.TFLITE_FILE,
                        pipeline.TFLITE_TOLERANCE)):
        source = evaluation.load_source(
            None, None, portable=os.path.join(output, name))
        assert (source.dim_z, source.num_classes) == (loaded.dim_z,
                                                      NUM_CLASSES)
        # Any count of rows (TFLite: fixed batches, the last one padded).
        np.testing.assert_allclose(source.generate(z, labels), expected,
                                   atol=atol, rtol=0)
    with pytest.raises(errors.BadInputError, match="exactly one of"):
        evaluation.load_source(output, None, portable=os.path.join(
            output, portable.ONNX_FILE))

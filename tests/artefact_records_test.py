"""The records the tools read back (a teacher's `teacher.json`, a stored
evaluation of the sweep tools, a compression-curve run's sweep record) are
checked for their fields: a hand-edited file is named with the field, never
a TypeError or KeyError from deep inside a tool."""

import json
import os
import time

import pytest

from ppcd_tf import errors
from ppcd_tf.metrics import evaluation
from ppcd_tf.workflows import teachers
from tests import helpers

SHIPPED_RECORD = os.path.join(helpers.REPO_ROOT, "ppcd_tf", "assets",
                              "teacher_fashion_mnist32", teachers.RECORD_FILE)


def _teacher_dir(tmp_path, edit=None):
    """A directory holding the shipped teacher's record, edited by `edit`
    (a function of the parsed record returning the content to write)."""
    directory = tmp_path / "teacher"
    directory.mkdir()
    with open(SHIPPED_RECORD) as f:
        record = json.load(f)
    content = edit(record) if edit else record
    (directory / teachers.RECORD_FILE).write_text(json.dumps(content))
    return str(directory)


def test_the_shipped_teacher_record_passes_its_schema(tmp_path):
    record = teachers.read_record(_teacher_dir(tmp_path))
    assert record["generator_params"] == 394242
    assert record["evaluation"]["summary"]["fid"]["mean"] == pytest.approx(
        1.0617, abs=1e-4)


def _set(record, dotted, value):
    target = record
    *parents, last = dotted.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    return record


@pytest.mark.parametrize("edit, phrase", [
    (lambda r: [r], "must hold a JSON object, got a list"),
    (lambda r: _set(r, "generator_params", "394242"),
     "field 'generator_params' must be an integer, got a string"),
    (lambda r: _set(r, "step", 5000.5),
     "field 'step' must be an integer, got a number"),
    (lambda r: _set(r, "evaluation", [1]),
     "field 'evaluation' must be an object, got a list"),
    (lambda r: _set(r, "evaluation.summary.fid.mean", "1.06"),
     "field 'evaluation.summary.fid.mean' must be a number"),
])
def test_a_hand_edited_teacher_record_names_the_field(tmp_path, edit,
                                                       phrase):
    path = _teacher_dir(tmp_path, edit)
    with pytest.raises(errors.DamagedInputError) as caught:
        teachers.read_record(path)
    message = str(caught.value)
    assert message.startswith(os.path.join(path, teachers.RECORD_FILE))
    assert phrase in message
    assert "tools/ship_teacher.py" in message


def test_an_imported_teacher_record_without_a_command_passes(tmp_path):
    """Every field is optional: an imported teacher records its source."""
    path = _teacher_dir(tmp_path, lambda r: {
        "discriminator": "/weights/D.pth", "ema": True, "step": 1,
        "generator_params": 10, "discriminator_params": 20})
    assert teachers.read_record(path)["ema"] is True


def _stored_result(params=1234):
    summary = {key: {"mean": value, "std": 0.01} for key, value in
               (("fid", 1.1), ("intra_fid", 2.5), ("class_accuracy", 0.88))}
    return {"computed": {"num_samples_per_seed": 2000, "seeds": [0, 1]},
            "summary": summary, "generator": {"params": params}}


@pytest.fixture
def export_with_result(tmp_path):
    """(export directory, its result path): metadata written before the
    result, so a readable result is current."""
    export = tmp_path / "student_export"
    metadata = export / "assets.extra" / "metadata.json"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("{}")
    time.sleep(0.05)
    return str(export), tmp_path / "student_export.eval.json"


def test_a_sweep_reads_back_a_whole_result(export_with_result):
    export, output = export_with_result
    output.write_text(json.dumps(_stored_result()))
    read = evaluation.read_current_result(
        str(output), export, 2000, ["0", "1"],
        fields=evaluation.SWEEP_RESULT_FIELDS)
    assert read == _stored_result()


@pytest.mark.parametrize("edit, field", [
    (lambda r: r.pop("generator"), "'generator' is missing"),
    (lambda r: r["generator"].update(params="1234"),
     "'generator.params' must be an integer"),
    (lambda r: r["summary"].pop("intra_fid"), "'summary.intra_fid' is"),
    (lambda r: r["summary"]["class_accuracy"].update(std=None),
     "'summary.class_accuracy.std' must be a number, got null"),
    (lambda r: r["computed"].update(seeds="0,1"),
     "'computed.seeds' must be a list"),
])
def test_a_hand_edited_result_is_evaluated_again_with_a_warning(
        export_with_result, edit, field, caplog):
    """A rerun of a sweep meets a result it cannot use: it warns naming the
    file and the field and evaluates again (read back as None)."""
    export, output = export_with_result
    result = _stored_result()
    edit(result)
    output.write_text(json.dumps(result))
    read = evaluation.read_current_result(
        str(output), export, 2000, ["0", "1"],
        fields=evaluation.SWEEP_RESULT_FIELDS)
    assert read is None
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING"]
    assert any(str(output) in w and field in w for w in warnings), warnings


# The body of a child process that loads tools/compression_curve.py.
_SWEEP_RECORD_DRIVER = r"""
from ppcd_tf import errors
directory = sys.argv[2]
tool.demo.train_command = lambda *args, **kwargs: sys.exit("trained")
try:
    tool._train(directory, "teacher", 2.0, "ppcd", 1800)
except errors.DamagedInputError as error:
    print("DAMAGED", error)
"""


@pytest.mark.parametrize("content, phrase", [
    ([1800], "must hold a JSON object, got a list"),
    ({"steps": "1800", "train_seconds": 10.0},
     "field 'steps' must be an integer, got a string"),
    ({"steps": 0, "interrupted_seconds": "10"},
     "field 'interrupted_seconds' must be a number"),
])
def test_a_hand_edited_sweep_record_names_the_field(tmp_path, content,
                                                     phrase):
    directory = tmp_path / "ppcd_2x"
    directory.mkdir()
    (directory / "curve_record.json").write_text(json.dumps(content))
    result = helpers.run_tool_driver("compression_curve.py",
                                     _SWEEP_RECORD_DRIVER, [directory])
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("DAMAGED " + str(directory / "curve_record.json"))
    assert phrase in line
    assert f"remove {directory} to train that run again." in line


"""The compression-quality curve's rows, table, plot and equal-time steps."""

import json
import os
import subprocess
import sys

import pytest

from ppcd_tf.workflows import compression_curve
from tests import helpers

REFERENCE = {"fid": {"mean": 1.0}, "class_accuracy": {"mean": 0.9}}


def _record(method, target, params, fid, accuracy, steps=1000,
            seconds=600.0, seed=None):
    record = {"method": method, "target_compression": target,
              "params": params, "teacher_params": 400, "steps": steps,
              "train_seconds": seconds, "fid": fid,
              "class_accuracy": accuracy}
    if seed is not None:
        record["train_seed"] = seed
    return record


def test_equal_time_steps():
    # A run twice as fast gets twice the steps, within [steps, 4 x steps].
    assert compression_curve.equal_time_steps(1000, 300.0, 600.0) == 2000
    assert compression_curve.equal_time_steps(1000, 900.0, 600.0) == 1000
    assert compression_curve.equal_time_steps(1000, 10.0, 600.0) == 4000
    with pytest.raises(ValueError):
        compression_curve.equal_time_steps(1000, 0.0, 600.0)


def test_rows_are_ratios_to_the_teacher_sorted_by_method_and_compression():
    rows = compression_curve.curve_rows([
        _record("no_masks", 2, 200, 1.5, 0.85),
        _record("ppcd", 4, 100, 1.2, 0.89),
        _record("ppcd", 2, 200, 1.05, 0.895),
    ], REFERENCE)
    assert [(r["method"], r["compression"]) for r in rows] == [
        ("ppcd", 2.0), ("ppcd", 4.0), ("no_masks", 2.0)]
    assert rows[0]["fid_ratio"] == pytest.approx(1.05)
    assert rows[0]["accuracy_drop_points"] == pytest.approx(0.5)
    assert rows[2]["accuracy_drop_points"] == pytest.approx(5.0)


def test_table_and_plot(tmp_path):
    rows = compression_curve.curve_rows([
        _record("ppcd", 2, 200, 1.05, 0.895),
        _record("uniform_pruning", 2, 199, 1.3, 0.88)], REFERENCE)
    table = compression_curve.render_markdown(rows, REFERENCE)
    assert ("| ppcd | 2x | 0 | 2.00x | 200 | 1,000 | 10.0 | 1.050 | 1.05 |"
            in table)
    assert "uniform_pruning" in table
    # One seed per run: no table over seeds.
    assert "Over training seeds" not in table
    path = str(tmp_path / "curve.png")
    compression_curve.plot(rows, path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curve.png"]


@pytest.mark.parametrize("flag, message", [
    ("--methods=ppcd,bogus", "Unknown --methods"),
    ("--ratios=2,1", "must all be > 1"),
])
def test_the_tool_refuses_bad_flags(tmp_path, flag, message):
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO_ROOT, "tools",
                                      "compression_curve.py"), flag,
         f"--output_dir={tmp_path / 'curve'}"],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not os.path.exists(tmp_path / "curve")


# The body of a child process that loads tools/compression_curve.py.
_CHARGE_DRIVER = r"""
directory = sys.argv[2]
tool.HEARTBEAT_SECONDS = 0.2
sleep = [sys.executable, "-c", "import time; time.sleep(1.0)"]
tool.demo.train_command = lambda *args, **kwargs: sleep
seen = []
real_write = tool.files.write_json
def spy(path, data):
    seen.append(dict(data))
    real_write(path, data)
tool.files.write_json = spy
steps, first = tool._train(directory, "teacher", 2.0, "ppcd", 1800)
# Asked for fewer steps than a longer, equal-time run trained: its own.
again = tool._train(directory, "teacher", 2.0, "ppcd", 1000)
print(json.dumps({"steps": steps, "first": first, "again": again,
                  "seen": seen}))
"""


def test_an_interrupted_run_is_charged_for_every_attempt(tmp_path):
    """Equal wall-clock needs every second a run trained: a run killed
    mid-way keeps the time of that attempt (the heartbeat writes it into the
    record) and adds it to the resumed attempt's."""
    directory = tmp_path / "ppcd_2x"
    directory.mkdir()
    record_path = directory / "curve_record.json"
    # A first attempt that was killed after 100 s of training to 1,800 steps.
    record_path.write_text(json.dumps({
        "steps": 0, "train_seconds": 0.0, "interrupted_seconds": 100.0,
        "training_to": 1800}))
    result = helpers.run_tool_driver("compression_curve.py", _CHARGE_DRIVER,
                                     [directory])
    assert result.returncode == 0, result.stderr[-2000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    seconds = output["first"]
    assert 101.0 <= seconds < 110.0
    heartbeats = [d for d in output["seen"] if "interrupted_seconds" in d]
    assert heartbeats, output["seen"]
    assert all(100.0 < d["interrupted_seconds"] < seconds
               for d in heartbeats)
    assert json.loads(record_path.read_text()) == {
        "steps": 1800, "train_seconds": seconds}
    assert output["steps"] == 1800
    # Finished: asking again (for fewer steps) trains nothing and returns
    # the steps and the time the run has.
    assert output["again"] == [1800, seconds]


def _curve_file(path, records, reference=REFERENCE):
    rows = compression_curve.curve_rows(records, reference)
    path.write_text(json.dumps({"reference": reference, "rows": rows}))
    return str(path)


def test_read_curve_round_trips_the_records(tmp_path):
    records = [_record("ppcd", 4, 100, 0.96, 0.882),
               dict(_record("uniform_pruning", 4, 99, 0.97, 0.8775),
                    source="transcribed")]
    reference, read = compression_curve.read_curve(
        _curve_file(tmp_path / "curve.json", records), "--earlier_curves")
    assert reference == REFERENCE
    by_method = {r["method"]: r for r in read}
    assert by_method["uniform_pruning"]["source"] == "transcribed"
    for record in records:
        for key in compression_curve.RECORD_KEYS:
            assert by_method[record["method"]][key] == record[key]


def test_read_curve_refuses_missing_and_damaged_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compression_curve.read_curve(str(tmp_path / "no.json"), "--flag")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        compression_curve.read_curve(str(bad), "--flag")
    rowless = tmp_path / "rowless.json"
    rowless.write_text(json.dumps({"reference": REFERENCE,
                                   "rows": [{"method": "ppcd"}]}))
    with pytest.raises(ValueError, match="a row without"):
        compression_curve.read_curve(str(rowless), "--flag")


def test_merge_keeps_the_later_record_of_a_method_and_ratio():
    old = _record("ppcd", 4, 100, 1.5, 0.80)
    other = _record("ppcd", 8, 50, 2.0, 0.70)
    new = _record("ppcd", 4.0, 101, 0.9, 0.89)
    merged = compression_curve.merge_records([old, other], [new])
    assert sorted((r["target_compression"], r["fid"]) for r in merged) == [
        (4.0, 0.9), (8, 2.0)]


def test_references_of_different_protocols_are_refused():
    same = {"fid": {"mean": 1.0004}, "class_accuracy": {"mean": 0.9}}
    compression_curve.check_same_reference(REFERENCE, same, "x")
    other = {"fid": {"mean": 1.2}, "class_accuracy": {"mean": 0.9}}
    with pytest.raises(ValueError, match="different protocols"):
        compression_curve.check_same_reference(REFERENCE, other, "x")


def test_the_tool_redraws_the_curve_of_earlier_sweeps(tmp_path):
    """--ratios= with --earlier_curves trains nothing: the merged records
    (the later sweep's record wins) become curve.json, .md and .png."""
    first = _curve_file(tmp_path / "first.json", [
        _record("ppcd", 4, 100, 1.5, 0.80),
        _record("uniform_pruning", 4, 99, 1.2, 0.85)])
    second = _curve_file(tmp_path / "second.json", [
        _record("ppcd", 4, 100, 0.96, 0.882),
        _record("ppcd", 8, 50, 1.24, 0.86)])
    out = tmp_path / "curve"
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO_ROOT, "tools",
                                      "compression_curve.py"), "--ratios=",
         f"--earlier_curves={first},{second}", f"--output_dir={out}"],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["curve.json", "curve.md",
                                       "curve.png"]
    rows = json.loads((out / "curve.json").read_text())["rows"]
    assert [(r["method"], r["target_compression"], r["fid"])
            for r in rows] == [("ppcd", 4, 0.96), ("ppcd", 8, 1.24),
                               ("uniform_pruning", 4, 1.2)]
    assert "| ppcd | 8x | 0 | 8.00x | 50 |" in (out / "curve.md").read_text()


def test_the_tool_refuses_an_earlier_curve_of_another_protocol(tmp_path):
    first = _curve_file(tmp_path / "first.json",
                        [_record("ppcd", 4, 100, 1.5, 0.80)])
    other_reference = {"fid": {"mean": 2.0}, "class_accuracy": {"mean": 0.9}}
    second = _curve_file(tmp_path / "second.json",
                         [_record("ppcd", 8, 50, 1.24, 0.86)],
                         other_reference)
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO_ROOT, "tools",
                                      "compression_curve.py"), "--ratios=",
         f"--earlier_curves={first},{second}",
         f"--output_dir={tmp_path / 'curve'}"],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "different protocols" in result.stderr
    assert not os.path.exists(tmp_path / "curve")


def test_run_names_and_bindings_of_training_seeds():
    # Seed 0 keeps the name (and the recipe) of sweeps before seeds.
    assert compression_curve.run_name("ppcd", 12.0, 0) == "ppcd_12x"
    assert compression_curve.seed_bindings(0) == []
    assert compression_curve.run_name("uniform_pruning", 5.2, 2) == \
        "uniform_pruning_5.2x_seed2"
    assert compression_curve.seed_bindings(2) == [
        "Trainer.seed = 2", "ImageDataset.seed = 2"]


def test_training_seeds_are_kept_apart_and_summarised():
    """Records of one (method, ratio) with different training seeds all
    stay (a later sweep replaces only its own seed); the summary gives
    their mean and sample standard deviation, the table a line over seeds."""
    earlier = [_record("ppcd", 8, 50, 1.40, 0.86),
               _record("ppcd", 8, 50, 1.10, 0.88, seed=1)]
    current = [_record("ppcd", 8, 50, 1.20, 0.87, seed=1),
               _record("ppcd", 8, 50, 1.00, 0.88, seed=2),
               _record("uniform_pruning", 8, 50, 1.50, 0.85, seed=0)]
    merged = compression_curve.merge_records(earlier, current)
    rows = compression_curve.curve_rows(merged, REFERENCE)
    assert [(r["method"], compression_curve.train_seed(r), r["fid"])
            for r in rows] == [("ppcd", 0, 1.40), ("ppcd", 1, 1.20),
                               ("ppcd", 2, 1.00),
                               ("uniform_pruning", 0, 1.50)]
    summary = compression_curve.seed_summary(rows)
    assert [(e["method"], e["train_seeds"]) for e in summary] == [
        ("ppcd", [0, 1, 2]), ("uniform_pruning", [0])]
    ppcd, uniform = summary
    assert ppcd["fid_ratio"]["mean"] == pytest.approx(1.2)
    assert ppcd["fid_ratio"]["std"] == pytest.approx(0.2)
    assert ppcd["accuracy_drop_points"]["mean"] == pytest.approx(
        100 * (0.9 - (0.86 + 0.87 + 0.88) / 3))
    assert ppcd["compression"] == {"mean": pytest.approx(8.0), "std": 0.0}
    assert uniform["fid_ratio"] == {"mean": pytest.approx(1.5), "std": 0.0}
    table = compression_curve.render_markdown(rows, REFERENCE)
    assert "| ppcd | 8x | 2 | 8.00x | 50 | 1,000 | 10.0 | 1.000 |" in table
    assert "| ppcd | 8x | 3 | 8.00x | 1.20 ± 0.20 | 3.0 ± 1.0 |" in table
    assert "| uniform_pruning | 8x | 1 | 8.00x | 1.50 ± 0.00 |" in table


def test_the_plot_draws_error_bars_over_training_seeds(tmp_path):
    rows = compression_curve.curve_rows([
        _record("ppcd", 8, 50, 1.2, 0.87, seed=s) for s in range(3)] + [
        _record("ppcd", 4, 100, 1.0, 0.89)], REFERENCE)
    path = str(tmp_path / "curve.png")
    compression_curve.plot(rows, path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


"""Bad input to the scripts under tools/: each invocation ends at once with
the exit code of ppcd_tf.errors (2: a wrong flag, 3: missing or damaged
input), a one-line `error: ...` message naming the problem and no
traceback, before any training, feature extraction or timing, and writes
nothing."""

import os
import shutil
import subprocess
import sys

import pytest

from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER = os.path.join(ROOT, "ppcd_tf", "assets", "teacher_fashion_mnist32")
STUDENT = os.path.join(ROOT, "ppcd_tf", "assets",
                       "student_fashion_mnist32_5x")


def _fixtures(tmp_path):
    """{name: path} of the fixtures in tmp_path (the shipped artefacts are
    only read)."""
    paths = {"tmp": str(tmp_path), "teacher": TEACHER, "student": STUDENT}
    afile = tmp_path / "afile.txt"
    afile.write_text("not a directory\n")
    paths["afile"] = str(afile)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json\n")
    paths["bad_json"] = str(bad)
    (tmp_path / "empty_dir").mkdir()
    paths["empty_dir"] = str(tmp_path / "empty_dir")
    nonempty = tmp_path / "nonempty_dir"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("keep\n")
    paths["nonempty_dir"] = str(nonempty)
    no_pb = tmp_path / "export_no_saved_model_pb"
    shutil.copytree(STUDENT, no_pb)
    os.remove(no_pb / "saved_model.pb")
    paths["no_pb"] = str(no_pb)
    paths["missing"] = str(tmp_path / "does_not_exist")
    return paths


def _listing(tmp_path):
    return sorted(os.path.relpath(os.path.join(d, name), tmp_path)
                  for d, dirs, names in os.walk(tmp_path)
                  for name in dirs + names)


def _run(script, args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", f"{script}.py")]
        + args, cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120)


CASES = [
    # benchmark
    ("benchmark", ["--exports", "{no_pb},{student}"], 3, "saved_model.pb"),
    ("benchmark", ["--exports", "{student},{student}", "--repeats", "0"], 2,
     "--repeats must be >= 1"),
    ("benchmark", ["--gen_batch", "0"], 2, "--gen_batch must be >= 1"),
    ("benchmark", ["--output", "{afile}/child.json"], 2,
     "which is a file"),
    ("benchmark", ["--compare_dir", "{empty_dir}", "--seeds", "0,x"], 2,
     "--seeds"),
    # latency_table
    ("latency_table", ["--teacher_dir", "{teacher}", "--output",
                       "{tmp}/table.json", "--check_exports", "{missing}"],
     3, "--check_exports"),
    ("latency_table", ["--teacher_dir", "{teacher}", "--output",
                       "{afile}/child.json"], 2, "which is a file"),
    # compression_curve
    ("compression_curve", ["--ratios", "", "--output_dir", "{tmp}/out"], 2,
     "--ratios"),
    ("compression_curve", ["--teacher_eval", "{missing}.json",
                           "--output_dir", "{tmp}/out"], 3,
     "--teacher_eval"),
    ("compression_curve", ["--teacher_eval", "{bad_json}", "--output_dir",
                           "{tmp}/out"], 3, "not valid JSON"),
    ("compression_curve", ["--output_dir", "{afile}/child"], 2,
     "which is a file"),
    ("compression_curve", ["--ppcd_steps", "0", "--output_dir",
                           "{tmp}/out"], 2, "--ppcd_steps must be >= 1"),
    ("compression_curve", ["--validate_every", "-1", "--output_dir",
                           "{tmp}/out"], 2, "--validate_every must be >= 0"),
    ("compression_curve", ["--cut_step", "0", "--output_dir",
                           "{tmp}/out"], 2, "--cut_step must be >= 1"),
    ("compression_curve", ["--num_samples", "0", "--output_dir",
                           "{tmp}/out"], 2, "--num_samples must be >= 2"),
    ("compression_curve", ["--train_seeds", "0,x", "--output_dir",
                           "{tmp}/out"], 2, "--train_seeds must be integers"),
    ("compression_curve", ["--train_seeds", "0,-1", "--output_dir",
                           "{tmp}/out"], 2, "integers >= 0"),
    ("compression_curve", ["--train_seeds", "1,1", "--output_dir",
                           "{tmp}/out"], 2, "names a seed twice"),
    # ablations
    ("ablations", ["--ablations", "magic", "--output_dir", "{tmp}/out"], 2,
     "no_class_aware"),
    ("ablations", ["--baseline_export", "{missing}", "--output_dir",
                   "{tmp}/out"], 3, "--baseline_export"),
    ("ablations", ["--num_samples", "0", "--output_dir", "{tmp}/out"], 2,
     "--num_samples must be >= 2"),
    ("ablations", ["--output_dir", "{afile}/child"], 2, "which is a file"),
    ("ablations", ["--cut_step", "0", "--output_dir", "{tmp}/out"], 2,
     "--cut_step must be >= 1"),
    ("ablations", ["--validate_every", "-5", "--output_dir", "{tmp}/out"], 2,
     "--validate_every must be >= 0"),
    # checkpoint_curve
    ("checkpoint_curve", ["--model_dir", "{empty_dir}", "--reference",
                          "{bad_json}"], 3, "not valid JSON"),
    ("checkpoint_curve", ["--model_dir", "{teacher}", "--num_samples", "0"],
     2, "--num_samples must be >= 2"),
    ("checkpoint_curve", ["--model_dir", "{missing}"], 3, "does not exist"),
    # profile_generation
    ("profile_generation", [], 2, "--exports is required"),
    ("profile_generation", ["--exports", "{student}", "--batches", "0"], 2,
     "--batches takes positive integers"),
    ("profile_generation", ["--exports", "{student}", "--calls", "0"], 2,
     "--calls must be >= 1"),
    ("profile_generation", ["--exports", "{no_pb}"], 3, "saved_model.pb"),
    ("profile_generation", ["--exports", "{student}", "--output",
                            "{afile}/child.json"], 2, "which is a file"),
    # ship_teacher
    ("ship_teacher", ["--model_dir", "{missing}", "--output", "{tmp}/slim"],
     3, "--model_dir"),
    ("ship_teacher", ["--model_dir", "{teacher}", "--output",
                      "{nonempty_dir}"], 2, "--overwrite"),
    ("ship_teacher", ["--model_dir", "{teacher}", "--output",
                      "{afile}/child"], 2, "which is a file"),
    ("ship_teacher", ["--model_dir", "{teacher}", "--output", "{tmp}/slim",
                      "--num_samples", "0"], 2,
     "--num_samples must be >= 2"),
]




@pytest.fixture(scope="module")
def script_results(tmp_path_factory):
    """script -> (listing of its fixtures before, [result of each of its
    CASES]): a script's cases run in one process (tests/cli_batch.py), each
    in a fresh flag state, against one set of fixtures."""
    cache = {}

    def results(script):
        if script not in cache:
            tmp = tmp_path_factory.mktemp(script)
            paths = _fixtures(tmp)
            before = _listing(tmp)
            request = {
                "script": os.path.join(ROOT, "tools", f"{script}.py"),
                "watch": str(tmp),
                "cases": [[arg.format(**paths) for arg in args]
                          for name, args, _, _ in CASES if name == script]}
            cache[script] = before, helpers.run_cli_batch(request,
                                                          timeout=300)
        return cache[script]

    return results


@pytest.mark.parametrize("script, index, args, status, phrase",
                         list(helpers.numbered(CASES)))
def test_bad_input_fails_fast(script_results, script, index, args, status,
                              phrase):
    before, results = script_results(script)
    result = results[index]
    assert "Traceback" not in result["stderr"], result["stderr"]
    assert result["status"] == status, result["stderr"]
    assert phrase in result["stderr"], result["stderr"]
    assert "error: " in result["stderr"], result["stderr"]
    assert result["listing"] == before  # nothing written, nothing left


def test_the_batch_runner_sees_what_a_process_sees(script_results,
                                                   tmp_path):
    """Two ship_teacher cases (exit 3 and 2) in a process of their own too:
    the same exit status and `error: ...` line as from tests/cli_batch.py."""
    paths = _fixtures(tmp_path)
    _, batched = script_results("ship_teacher")
    cases = [args for name, args, _, _ in CASES if name == "ship_teacher"]
    for args, result in list(zip(cases, batched))[:2]:
        alone = _run("ship_teacher", [arg.format(**paths) for arg in args])
        assert alone.returncode == result["status"], alone.stderr
        error_line = [line for line in alone.stderr.splitlines()
                      if line.startswith("error: ")]
        assert error_line, alone.stderr
        # Paths differ (other fixture directories); the wording does not.
        first_words = error_line[0].split()[:2]
        assert " ".join(first_words) in result["stderr"], (alone.stderr,
                                                          result["stderr"])


def test_failed_stage_ends_with_its_status(tmp_path):
    """A training subprocess that fails (here at once, on a malformed gin
    binding) ends the tool with its exit status and a message naming the
    run, not a traceback."""
    result = _run("compression_curve", [
        "--teacher_eval", os.path.join(TEACHER, "eval.json"),
        "--ratios", "2", "--methods", "ppcd",
        "--output_dir", str(tmp_path / "out"),
        "--gin_param", "not a binding"])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert (f"ppcd_tf.train of {tmp_path / 'out' / 'ppcd_2x'} failed with "
            "exit status 2") in result.stderr, result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_output_dir_refused(tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        result = _run("compression_curve",
                      ["--output_dir", str(read_only / "out")])
    finally:
        read_only.chmod(0o755)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert "not writable" in result.stderr, result.stderr

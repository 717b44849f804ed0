"""Runs one command-line script several times in one Python process.

  python tests/cli_batch.py < request.json > results.json

request: {"script": path of a tools/ script, or "module": a command module
such as "ppcd_tf.evaluate"; "watch": a directory; "cases": [[arg, ...],
...]}. For each case the script's `main` runs through `ppcd_tf.errors.run`,
as `python <script> <args>` does (a module's `run_main`, as `python -m
<module> <args>` does), with the flags reset to their defaults and gin's
configuration cleared first; stderr is captured. results: one entry per case,
{"status": the exit status, "stderr": what it wrote there (an uncaught
exception's traceback and absl's log lines included), "stdout", "listing":
the files under "watch" after the case (none without "watch"), "seconds":
the case's wall time}.

The tests of bad input (tests/tools_cli_test.py, tests/reliability_test.py)
use it so that a script's
cases share one interpreter start and one TensorFlow import (~4 s each on
2 cores) while the exit status, the message and the absence of a traceback
are the ones a user sees.
"""

import contextlib
import io
import json
import os
import runpy
import sys
import time
import traceback

from absl import flags


def _listing(directory):
    return sorted(os.path.relpath(os.path.join(d, name), directory)
                  for d, dirs, names in os.walk(directory)
                  for name in dirs + names)


def _run_case(entry_point, program, args):
    import gin
    flags.FLAGS.unparse_flags()
    gin.clear_config()
    # --logtostderr: absl's log lines reach the case's captured stderr, as
    # they reach a process's stderr (without it, below the error level they
    # would go to the batch's own), so "no Traceback" covers them too.
    sys.argv = [program, "--logtostderr"] + list(args)
    stderr, stdout = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(
            stdout):
        try:
            entry_point()
        except SystemExit as exit_:
            code = exit_.code
            status = code if isinstance(code, int) else (0 if code is None
                                                         else 1)
        except BaseException:  # pylint: disable=broad-except
            traceback.print_exc(file=stderr)
            status = 1
    return status, stderr.getvalue(), stdout.getvalue()


def main():
    from ppcd_tf import errors
    request = json.load(sys.stdin)
    # Defines the program's flags and functions without running it.
    if "module" in request:
        program = request["module"]
        namespace = runpy.run_module(program, run_name="cli_batch_target")
        entry_point = namespace["run_main"]
    else:
        program = request["script"]
        sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
        namespace = runpy.run_path(program, run_name="cli_batch_target")
        entry_point = lambda: errors.run(namespace["main"])  # noqa: E731
    results = []
    for args in request["cases"]:
        start = time.monotonic()
        status, stderr, stdout = _run_case(entry_point, program, args)
        results.append({"status": status, "stderr": stderr,
                        "stdout": stdout,
                        "seconds": time.monotonic() - start,
                        "listing": (_listing(request["watch"])
                                    if request.get("watch") else [])})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

"""The house rule (docs/overview.md, "Layout: the rule"), checked on the
imports of the package itself (read as text, nothing imported; a module
named by `lazy.load("ppcd_tf....")` counts as imported):

  * a top-level module of ppcd_tf is a command or part of the small ground
    (errors, files, config, configurables, defaults, lazy);
  * no library imports a command, and the ground imports only the ground;
  * no two subpackages import each other.
"""

import ast
import itertools
import os

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "ppcd_tf")
GROUND = {"errors", "files", "config", "configurables", "defaults", "lazy"}
COMMANDS = {"train", "export", "evaluate", "sample", "report", "demo",
            "import_teacher", "time_training", "train_classifier"}
SUBPACKAGES = {"training", "runs", "exporting", "reporting", "workflows",
               "metrics", "importing", "models", "pruning", "distill",
               "data"}


def _modules():
    """{dotted module name under ppcd_tf: path}."""
    found = {}
    for root, _, names in os.walk(PACKAGE_DIR):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, PACKAGE_DIR)[:-3]
                found[relative.replace(os.sep, ".")] = path
    return found


def _imports(path):
    """The ppcd_tf modules (dotted, without the 'ppcd_tf.') `path` imports,
    at any depth of the file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    targets = set()
    for node in ast.walk(tree):
        if _is_lazy_load(node):
            names = [node.args[0].value]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names.append(node.module)
        else:
            continue
        for name in names:
            if name.startswith("ppcd_tf."):
                targets.add(name[len("ppcd_tf."):])
    return targets


def _is_lazy_load(node):
    """`lazy.load("name")` (ppcd_tf/lazy.py): an import on first use."""
    return (isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "lazy" and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str))


def test_lazy_loads_count_as_imports():
    assert "exporting.pipeline" in IMPORTS["export"]
    assert "training.trainer" in IMPORTS["train"]


def _room(module):
    """The folder (subpackage) or top-level module a dotted name lives in."""
    return module.split(".")[0]


IMPORTS = {module: _imports(path) for module, path in _modules().items()}


def test_top_level_modules_are_commands_or_ground():
    top = {m for m in IMPORTS if "." not in m and m != "__init__"}
    assert top <= COMMANDS | GROUND, sorted(top - COMMANDS - GROUND)
    folders = {_room(m) for m in IMPORTS if "." in m} - {"__init__"}
    assert folders == SUBPACKAGES, sorted(folders ^ SUBPACKAGES)


def test_no_library_imports_a_command():
    offenders = sorted(
        (module, target) for module, targets in IMPORTS.items()
        if _room(module) not in COMMANDS for target in targets
        if _room(target) in COMMANDS)
    assert not offenders, offenders


def test_the_ground_imports_only_the_ground():
    offenders = sorted(
        (module, target) for module, targets in IMPORTS.items()
        if module in GROUND for target in targets
        if _room(target) not in GROUND)
    assert not offenders, offenders


def test_no_two_subpackages_import_each_other():
    arrows = {(_room(module), _room(target))
              for module, targets in IMPORTS.items() for target in targets
              if _room(module) in SUBPACKAGES
              and _room(target) in SUBPACKAGES
              and _room(module) != _room(target)}
    both_ways = sorted((a, b) for a, b in itertools.combinations(
        sorted(SUBPACKAGES), 2) if (a, b) in arrows and (b, a) in arrows)
    assert not both_ways, both_ways


MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60  # of code: the docstring does not count


def _code_lines(function):
    body = function.body
    if (body and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_class_over_300_and_no_function_over_60_lines():
    too_long = []
    for module, path in _modules().items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_long.append((module, node.name, lines))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _code_lines(node)
                if lines > MAX_FUNCTION_LINES:
                    too_long.append((module, node.name, lines))
    assert not too_long, too_long

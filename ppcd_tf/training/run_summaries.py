"""What TensorBoard shows about a run beside its curves.

  * the HParams dashboard: the run's settings (`hyperparameters`), written
    when training starts, so that `tensorboard --logdir runs/curve` compares
    a sweep's runs in one table and in parallel coordinates; its metrics are
    the run's scalars (validation FID and accuracy, pruning ratios, losses),
    which the dashboard finds by itself;
  * the Custom Scalars dashboard of a PPCD run (`write_pruning_layout`):
    the kept channels of every layer in one chart, and the live parameter
    ratio beside the bound and the desired ratio in another;
  * text: the operative gin configuration (`run/operative_config`) and, for
    a PPCD run, the cut (`pruning/cut`: kept / total channels per layer,
    parameters and MACs);
  * the run's final figures as scalars `final/*` when training ends
    (`write_run_end`: the best quick validation, and for a PPCD student its
    parameter and MAC compression), so the HParams table shows them beside
    the settings of the same run.

The settings are the scalar values of gin's operative configuration (every
parameter of every configurable the run called, defaults included) of the
configurables that make a run what it is (`HPARAM_CONFIGURABLES`), plus the
macros (TARGET_PARAM_RATIO, NUM_STEPS, ...).
"""

import ast
import re

import gin
import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar
from tensorboard.plugins.hparams import api as hparams_api

# Configurables whose parameters are the run's settings in the HParams
# dashboard (the rest of the operative configuration is in the text).
HPARAM_CONFIGURABLES = (
    "Trainer", "PPCDTrainer", "TrainLoop", "GanSteps", "ImageDataset",
    "build_generator", "PruningPhase", "PruningBudget", "CompactPhase",
    "RetrainSchedule", "DistillationWeights", "BoundSchedule")
# Of the optimizers (scoped: `generator/Adam.learning_rate`), only these.
OPTIMIZERS = ("Adam", "AdamW", "SGD")
OPTIMIZER_SETTINGS = ("learning_rate", "beta_1", "beta_2")
# A binding line of gin's operative configuration: `Name.param = value` or a
# macro `NAME = value` (scopes kept in the name: `scope/Name.param`).
_BINDING = re.compile(r"^([A-Za-z_][\w./]*)\s*=\s*(.+)$")
# Text summaries show markdown; a config is shown as a code block.
_CODE_INDENT = "    "


def operative_settings(config_text):
    """{name: value} of the one-line scalar bindings (bool, int, float,
    str) in gin configuration text, a binding to a scalar macro
    (`%NUM_STEPS`) taking the macro's value; lists, dicts, configurable
    references and multi-line values are left out."""
    settings, macro_uses = {}, {}
    for line in config_text.splitlines():
        match = _BINDING.match(line.strip())
        if not match:
            continue
        name, text = match.group(1), match.group(2).strip()
        if re.fullmatch(r"%[A-Za-z_]\w*", text):
            macro_uses[name] = text[1:]
            continue
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, (bool, int, float, str)):
            settings[name] = value
    for name, macro in macro_uses.items():
        if macro in settings:
            settings[name] = settings[macro]
    return settings


def _is_run_setting(name):
    if "." not in name:
        return name.isupper()  # a macro
    configurable, parameter = name.split("/")[-1].rsplit(".", 1)
    if configurable in OPTIMIZERS:
        return parameter in OPTIMIZER_SETTINGS
    return configurable in HPARAM_CONFIGURABLES


def hyperparameters(config_text):
    """The run's settings for the HParams dashboard: the scalar bindings of
    `config_text` (gin's operative configuration) that belong to
    HPARAM_CONFIGURABLES, the optimizers' OPTIMIZER_SETTINGS, and the
    macros."""
    return {name: value
            for name, value in operative_settings(config_text).items()
            if _is_run_setting(name)}


def write_run_start(run_name, step):
    """Writes (to the default summary writer) the run's settings as an
    HParams session named `run_name` and the operative configuration as
    text. Call after the trainer was built (so gin knows every parameter)."""
    config_text = gin.operative_config_str()
    hparams_api.hparams(hyperparameters(config_text), trial_id=run_name)
    tf.summary.text("run/operative_config", _code_block(config_text),
                    step=step)


# The scalar tag of a final figure (`write_run_end`).
FINAL_PREFIX = "final/"


def write_run_end(figures, step):
    """Writes (to the default summary writer) the run's final figures
    {name: number} as scalars `final/<name>` at `step`, the step training
    ended at; None values are left out."""
    for name, value in figures.items():
        if value is not None:
            tf.summary.scalar(FINAL_PREFIX + name, float(value), step=step)


def _code_block(text):
    return "\n".join(_CODE_INDENT + line for line in text.splitlines())


def cut_table(rows, params, teacher_params, macs, teacher_macs):
    """The cut as a markdown table.

    Args:
      rows: [(layer name, kept channels, channels before the cut)].
      params, teacher_params: G parameters of the student and the teacher.
      macs, teacher_macs: multiply-accumulates per image, the same.

    Returns:
      markdown text: one line per layer, then the totals and their ratios.
    """
    lines = ["| layer | kept | of | fraction |", "|---|---:|---:|---:|"]
    for name, kept, total in rows:
        lines.append(f"| {name} | {kept} | {total} | {kept / total:.2f} |")
    lines += ["", f"G parameters: {params:,} of {teacher_params:,} "
              f"({teacher_params / params:.2f}x fewer); MACs per image: "
              f"{macs:,} of {teacher_macs:,} "
              f"({teacher_macs / macs:.2f}x fewer)."]
    return "\n".join(lines)


# Custom Scalars charts of a PPCD run: (title, tag regular expressions).
PRUNING_CHARTS = (
    ("kept channels, every layer", (r"kept_channels/.*",)),
    ("live parameter ratio, bound and desired ratio",
     (r"pruning/param_ratio", r"pruning/bound", r"pruning/desired_ratio",
      r"pruning/.*_target_ratio")),
    ("budget multipliers", (r"pruning/budget_lambda.*",)))


def pruning_layout():
    """The Custom Scalars layout of PRUNING_CHARTS (category 'pruning')."""
    charts = [layout_pb2.Chart(
        title=title,
        multiline=layout_pb2.MultilineChartContent(tag=list(tags)))
        for title, tags in PRUNING_CHARTS]
    return layout_pb2.Layout(category=[layout_pb2.Category(
        title="pruning", chart=charts)])


def write_pruning_layout(step):
    """Writes `pruning_layout` to the default summary writer."""
    tf.summary.experimental.write_raw_pb(
        custom_scalar.pb(pruning_layout()).SerializeToString(), step=step)


def write_cut(table, step):
    """Writes the cut's table (`cut_table`) as text at `step`."""
    tf.summary.text("pruning/cut", table, step=step)

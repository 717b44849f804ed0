"""Gin parsing and config files shared by the command-line tools."""

import os
import re
import tokenize

import gin
import tensorflow as tf

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files

DEFAULT_GIN_SEARCH_PATH = defaults.GIN_SEARCH_PATH
class ConfigError(errors.BadInputError):
    """A gin file or binding that cannot be used."""


# Settings that moved from the trainers to their parts on 2026-12-06
# (docs/commands.md, "Where each setting lives"): {(old, name): new}.
MOVED_SETTINGS = {
    **{("Trainer", name): "TrainLoop" for name in (
        "num_steps", "steps_per_loop", "log_every", "sample_every",
        "checkpoint_every", "max_checkpoints", "validator",
        "validate_every")},
    **{("Trainer", name): "GanSteps" for name in (
        "global_batch_size", "d_steps_per_g_step", "accumulation_steps",
        "loss", "mixed_precision", "jit_compile", "g_optimizer_cls",
        "d_optimizer_cls", "ema_decay", "ema_start_step")},
    **{("Trainer", name): "SampleGrid" for name in (
        "sample_classes", "max_sample_classes", "samples_per_class")},
    **{("PPCDTrainer", name): "PruningBudget" for name in (
        "target_param_ratio", "target_params", "target_mac_ratio",
        "target_latency_ratio", "latency_table", "width_multiple",
        "min_channels", "min_channel_fraction", "harden_rule")},
    **{("PPCDTrainer", name): "PruningPhase" for name in (
        "prune_end_fraction", "bound_schedule", "mask_init",
        "mask_function", "mask_optimizer_cls", "prune_attention",
        "budget_surrogate_width", "budget_ramp_fraction",
        "budget_lambda_rate", "budget_lambda_max", "use_masks")},
    **{("PPCDTrainer", name): "CompactPhase" for name in (
        "train_compact_after_cut", "carry_optimizer_state",
        "compaction_tolerance", "compaction_rounding_factor", "retrain")},
}
_UNKNOWN_PARAMETER = re.compile(
    r"Configurable '(\w+)' doesn't have a parameter named '(\w+)'")


WHERE_SETTINGS_LIVE = '(docs/commands.md, "Where each setting lives")'


def moved_binding(configurable, name):
    """'Part.name', where the setting `configurable.name` lives since it
    moved, or None when it did not move."""
    part = MOVED_SETTINGS.get((configurable, name))
    return None if part is None else f"{part}.{name}"


def _moved_hint(message):
    """' It moved: bind X.name instead.' for a setting that moved."""
    match = _UNKNOWN_PARAMETER.search(message)
    new = match and moved_binding(match.group(1), match.group(2))
    if not new:
        return ""
    return f" The setting moved: bind {new} instead {WHERE_SETTINGS_LIVE}."


def resolve_gin_files(gin_files, search_path=(DEFAULT_GIN_SEARCH_PATH,)):
    """Paths of gin files given relative to the cwd or a search directory."""
    resolved = []
    for name in gin_files:
        candidates = [name] + [os.path.join(p, name) for p in search_path]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise ConfigError(
                f"Gin file {name!r} not found (looked in the working "
                f"directory and {list(search_path)}). Available files are "
                f"under {DEFAULT_GIN_SEARCH_PATH}.")
        resolved.append(found)
    return resolved


def parse_gin(gin_files, gin_params, search_path=(DEFAULT_GIN_SEARCH_PATH,)):
    """Parses gin files and bindings; raises ConfigError with a clear message.

    Returns the resolved file paths.
    """
    for path in search_path:
        gin.add_config_file_search_path(path)
    resolved = resolve_gin_files(gin_files, search_path)
    try:
        gin.parse_config_files_and_bindings(resolved, gin_params)
    except (SyntaxError, tokenize.TokenError) as error:
        text = getattr(error, "text", None)
        where = f" in {text.strip()!r}" if text else ""
        raise ConfigError(
            f"Malformed gin binding or file: {getattr(error, 'msg', error)}"
            f"{where}. Bindings look like \"TrainLoop.num_steps = 100\".") \
            from error
    except (ValueError, KeyError, ImportError, AttributeError) as error:
        # Gin appends the whole config to some messages: keep the first line.
        first = str(error).strip().splitlines()[0] if str(error).strip() \
            else repr(error)
        first = first.removesuffix(" in config string:")
        hint = ""
        if "No bindings specified for" in first and "gin.macro" in first:
            hint = (" A macro is used but never set: a stage file needs a "
                    "data and a model file before it (e.g. --gin_file "
                    "data/fashion_mnist32.gin --gin_file model/biggan32.gin "
                    "--gin_file stage/teacher.gin).")
        hint = hint or _moved_hint(first)
        raise ConfigError(f"Invalid gin configuration: {first}{hint}") \
            from error
    return resolved


def configure_logical_cpus(count):
    """Splits the first physical CPU into `count` logical devices.

    Must run before TensorFlow initialises its devices.
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def write_config(model_dir, gin_files, gin_params):
    """Writes the parsed config as <model_dir>/config.gin (atomically)."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, "config.gin")
    header = ["# Config of this run (files in order, then bindings).",
              "# Files: " + ", ".join(gin_files)]
    header += [f"# Binding: {p}" for p in gin_params]
    files.write_text(path, "\n".join(header) + "\n\n" + gin.config_str())

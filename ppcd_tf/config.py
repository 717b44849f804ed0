"""Gin parsing and config files shared by the command-line tools."""

import os
import tokenize

import gin
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files

DEFAULT_GIN_SEARCH_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


class ConfigError(errors.BadInputError):
    """A gin file or binding that cannot be used."""


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
            f"{where}. Bindings look like \"Trainer.num_steps = 100\".") \
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

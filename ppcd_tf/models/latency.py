"""A generator's serving latency predicted from a measured per-layer table.

The generator's inference graph is split into terms, each depending on one to
three prunable widths (mask keys of `ppcd_tf.pruning.channel_masks`):

  linear                      stream0
  block{i}.pre                stream{i-1}          CBN + ReLU + upsample
  block{i}.conv1              stream{i-1}, hidden{i}
  block{i}.mid                hidden{i}            CBN + ReLU
  block{i}.conv2              hidden{i}, stream{i}
  block{i}.shortcut           stream{i-1}, stream{i}   1x1 conv, upsample, add
  attention{i}.qk             stream{i}, attention{i}_qk   theta, phi, pool
  attention{i}.value          stream{i}, attention{i}_value  g, pool, o, add
  attention{i}.scores         attention{i}_qk       matmul + softmax
  attention{i}.mix            attention{i}_value    matmul
  output                      stream{n}            BN + ReLU + conv + tanh

A `LatencyTable` holds, for each term, its seconds per batch measured on a
grid of widths (`ppcd_tf.workflows.latency_table` measures it on the serving
machine), plus a constant offset (what the measured full generator costs
beyond the sum of its terms at full width, if anything: embedding, reshapes,
per-call overhead). The
prediction is the offset plus every term multilinearly interpolated at the
kept widths (constant beyond the grid's ends), a piecewise-linear function
of the counts that accepts straight-through count tensors, so the budget's
gradient reaches the masks as it does through the parameter polynomial.
"""

import dataclasses
import itertools
import json

import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.models import generator as generator_lib

TABLE_FORMAT = "ppcd_tf latency table v1"


@dataclasses.dataclass(frozen=True)
class Term:
    """One term: seconds per batch on a grid of its axes' widths.

    Attributes:
      name: e.g. 'block2.conv1'.
      axes: mask keys its cost depends on.
      grid: per axis, the increasing widths measured.
      seconds: nested lists, seconds[i][j]... at grid[0][i], grid[1][j], ...
    """

    name: str
    axes: tuple
    grid: tuple
    seconds: list

    def value_at(self, index):
        value = self.seconds
        for i in index:
            value = value[i]
        return float(value)


def _clip01(x):
    if tf.is_tensor(x):
        return tf.clip_by_value(x, 0.0, 1.0)
    return min(1.0, max(0.0, float(x)))


def _hat_weights(grid, x):
    """Weights of the grid points in the linear interpolation at `x` (they
    sum to 1; constant extrapolation beyond the ends)."""
    if len(grid) == 1:
        return [1.0]
    ramps = [_clip01((x - grid[j]) / float(grid[j + 1] - grid[j]))
             for j in range(len(grid) - 1)]
    weights = [1.0 - ramps[0]]
    for j in range(1, len(grid) - 1):
        weights.append(ramps[j - 1] - ramps[j])
    weights.append(ramps[-1])
    return weights


def term_names(channels):
    """[(name, axes)] of a generator with this ChannelConfig."""
    stream = generator_lib.stream_mask_name
    hidden = generator_lib.hidden_mask_name
    names = [("linear", (stream(0),))]
    for i in range(1, channels.num_blocks + 1):
        names += [(f"block{i}.pre", (stream(i - 1),)),
                  (f"block{i}.conv1", (stream(i - 1), hidden(i))),
                  (f"block{i}.mid", (hidden(i),)),
                  (f"block{i}.conv2", (hidden(i), stream(i))),
                  (f"block{i}.shortcut", (stream(i - 1), stream(i)))]
        if i in channels.attention:
            qk, value = generator_lib.attention_mask_names(i)
            names += [(f"attention{i}.qk", (stream(i), qk)),
                      (f"attention{i}.value", (stream(i), value)),
                      (f"attention{i}.scores", (qk,)),
                      (f"attention{i}.mix", (value,))]
    names.append(("output", (stream(channels.num_blocks),)))
    return names


def generator_record(channels, shape):
    """What a table records of the generator it was measured for: its
    ChannelConfig dict and `complexity.GeneratorShape` fields."""
    return {"channels": channels.to_dict(),
            "num_classes": shape.num_classes,
            "shared_dim": shape.shared_dim,
            "z_chunk_size": shape.z_chunk_size,
            "image_channels": shape.image_channels}


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """Measured per-term latencies of one generator at one batch size.

    Attributes:
      terms: list of Term.
      offset_seconds: what the measured full generator costs beyond the sum
        of its terms (>= 0).
      batch_size: the batch the seconds are for.
      generator: {"channels": ChannelConfig dict, "num_classes",
        "shared_dim", "z_chunk_size", "image_channels"} it was measured for.
      measured_full_seconds: the full generator's measured seconds/batch.
      device: where it was measured (free text).
    """

    terms: list
    offset_seconds: float
    batch_size: int
    generator: dict
    measured_full_seconds: float
    device: str = ""

    def predict(self, widths):
        """Predicted seconds per batch at {mask key: kept width} (every axis
        of every term must be present; numbers or scalar tensors)."""
        total = self.offset_seconds
        for term in self.terms:
            weights = [_hat_weights(grid, widths[axis])
                       for axis, grid in zip(term.axes, term.grid)]
            for index in itertools.product(*(range(len(g))
                                             for g in term.grid)):
                weight = 1.0
                for axis_weights, i in zip(weights, index):
                    weight = weight * axis_weights[i]
                total = total + weight * term.value_at(index)
        return total

    def check_matches(self, channels, shape):
        """Raises BadInputError unless the table was measured for a
        generator of this ChannelConfig and `complexity.GeneratorShape`."""
        wanted = generator_record(channels, shape)
        recorded = json.loads(json.dumps(self.generator))
        if json.loads(json.dumps(wanted)) != recorded:
            raise errors.BadInputError(
                f"The latency table was measured for a different generator "
                f"({recorded}) than this run's ({wanted}); measure one for "
                "this teacher with tools/latency_table.py.")

    def to_json(self):
        return {"format": TABLE_FORMAT, "batch_size": self.batch_size,
                "device": self.device, "generator": self.generator,
                "measured_full_seconds": self.measured_full_seconds,
                "offset_seconds": self.offset_seconds,
                "terms": [{"name": t.name, "axes": list(t.axes),
                           "grid": [list(g) for g in t.grid],
                           "seconds": t.seconds} for t in self.terms]}

    def write(self, path):
        files.write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data):
        if data.get("format") != TABLE_FORMAT:
            raise errors.DamagedInputError(
                f"Not a latency table (format {data.get('format')!r}, "
                f"expected {TABLE_FORMAT!r}); write one with "
                "tools/latency_table.py.")
        terms = [Term(t["name"], tuple(t["axes"]),
                      tuple(tuple(int(w) for w in g) for g in t["grid"]),
                      t["seconds"]) for t in data["terms"]]
        return cls(terms=terms, offset_seconds=float(data["offset_seconds"]),
                   batch_size=int(data["batch_size"]),
                   generator=data["generator"],
                   measured_full_seconds=float(
                       data["measured_full_seconds"]),
                   device=data.get("device", ""))

    @classmethod
    def read(cls, path):
        """Reads a table written by `write`; clear errors when missing or
        damaged."""
        measure = ("measure one on the serving machine with `python "
                   "tools/latency_table.py --teacher_dir DIR --output PATH` "
                   "and bind PruningBudget.latency_table.")
        if not path:
            raise errors.MissingInputError(f"No latency table given: "
                                           f"{measure}")
        again = "measure it again with tools/latency_table.py."
        data = files.read_json(path, "the latency table",
                               missing_fix=measure, damaged_fix=again)
        try:
            return cls.from_json(data)
        except (ValueError, KeyError, TypeError) as e:
            raise errors.DamagedInputError(
                f"The latency table {path} is unreadable ({e}); {again}"
                ) from e

"""Every width of a BigGAN-deep generator, and the masks PPCD puts on them.

A `DeepWidths` holds the widths that `biggan_deep.DeepGenerator` builds, so
the same class builds the released teacher (`full_widths`: multiples of ch
from the configuration's layer table), the masked student and the compact
generator that surgery cuts from it:

  * `stream[0]`: the first linear's output channels (the 4x4 map); `stream[i]`
    block i's output channels (blocks are 1-based, as in `block{i}`);
  * `inner[i - 1]`: (a, b, c), block i's bottleneck widths: the outputs of
    its 1x1 conv0 and its 3x3 conv1 and conv2;
  * `attention`: {p: (qk, value)} for the self-attention after block p
    (p = 0: on the linear's output), which reads and writes stream p;
  * `rgb`: output channels of `conv_to_rgb` (the released weights: ch, of
    which the first `image_channels` are used; a compact generator keeps
    only those);
  * `skips[i - 1]`: how block i's skip picks its channels: None takes the
    first stream[i] input channels (the released block, and a compact one
    whose kept channels line up); otherwise one input index per output
    channel, -1 for a channel whose input was pruned (it adds zero).

Where the masks go (PPCD on the deep blocks; keys from `mask_widths`): the
skip carries stream channels through every block whose width does not
change, so all streams of one width run share one mask, the *stage* mask
`stage{k}` (stage 0: the linear's output and the blocks at the first width;
a new stage begins at every block that halves the width). A stage mask
multiplies the block outputs of its stage (both summands), the output of an
attention on its streams, and again each of its streams after the next
block's bn0 (or the output BN: a zeroed channel is not zero after a BN).
`inner{i}_{j}` (j = 0, 1, 2) multiplies block i's bottleneck widths after
bn1, bn2, bn3. Where the width halves, the skip takes input channel c to
output channel c: an output channel may be kept while its input was pruned
(its skip adds zero, `skips` -1) and the other way round, so stage masks are
independent of each other.
"""

import collections
import dataclasses
import json

from ppcd_tf import errors

# The bottleneck's inner width is the block's input width / this.
REDUCTION = 4
# BigGAN's self-attention inner widths: theta/phi C // 8, g C // 2.
ATTENTION_QK_DIVISOR = 8
ATTENTION_VALUE_DIVISOR = 2
# Number of bottleneck widths (conv0, conv1, conv2 outputs) per block.
INNER_PER_BLOCK = 3


def stage_mask_name(stage):
    """Mask key of stage `stage` (0-based; see the module docstring)."""
    return f"stage{stage}"


def inner_mask_name(block, position):
    """Mask key of bottleneck width `position` (0, 1, 2) of block `block`."""
    return f"inner{block}_{position}"


def attention_mask_names(position):
    """Mask keys (qk, value) of the self-attention after block `position`."""
    return f"attention{position}_qk", f"attention{position}_value"


def stages_of(layer_table):
    """Stage index of every stream (len = blocks + 1) of a layer table of
    (upsample, in multiplier, out multiplier) rows: a new stage begins at a
    block whose out multiplier differs from its in multiplier."""
    stages = [0]
    for _, in_mult, out_mult in layer_table:
        stages.append(stages[-1] + (1 if out_mult != in_mult else 0))
    return tuple(stages)


@dataclasses.dataclass(frozen=True)
class DeepWidths:
    """The widths of a BigGAN-deep generator (see the module docstring)."""

    stream: tuple
    inner: tuple
    attention: dict
    rgb: int
    skips: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "stream", tuple(int(c) for c in self.stream))
        object.__setattr__(self, "inner", tuple(
            tuple(int(c) for c in widths) for widths in self.inner))
        object.__setattr__(self, "attention", {
            int(k): (int(v[0]), int(v[1]))
            for k, v in sorted(dict(self.attention).items(),
                               key=lambda kv: int(kv[0]))})
        object.__setattr__(self, "rgb", int(self.rgb))
        skips = tuple(None if s is None else tuple(int(c) for c in s)
                      for s in self.skips) or (None,) * len(self.inner)
        object.__setattr__(self, "skips", skips)
        self._check()

    def _check(self):
        blocks = len(self.inner)
        if len(self.stream) != blocks + 1 or len(self.skips) != blocks:
            raise errors.BadInputError(
                f"DeepWidths: {blocks} blocks need {blocks + 1} stream widths "
                f"and {blocks} skips, got {len(self.stream)} and "
                f"{len(self.skips)}.")
        flat = [w for widths in self.inner for w in widths]
        if any(len(w) != INNER_PER_BLOCK for w in self.inner):
            raise errors.BadInputError(
                f"DeepWidths.inner holds (a, b, c) per block, got "
                f"{self.inner}.")
        values = list(self.stream) + flat + [self.rgb]
        values += [w for pair in self.attention.values() for w in pair]
        if min(values) < 1:
            raise errors.BadInputError(
                f"DeepWidths must all be >= 1, got {self.to_dict()}.")
        for block, skip in enumerate(self.skips, start=1):
            self._check_skip(block, skip)
        for position in self.attention:
            if not 0 <= position < blocks:
                raise errors.BadInputError(
                    f"Attention after block {position}, but it must sit "
                    f"before one of the {blocks} blocks.")

    def _check_skip(self, block, skip):
        width_in, width_out = self.stream[block - 1], self.stream[block]
        if skip is None:
            if width_out > width_in:
                raise errors.BadInputError(
                    f"Block {block} widens its stream ({width_in} -> "
                    f"{width_out}); its skip can only keep input channels.")
            return
        if len(skip) != width_out or not all(-1 <= c < width_in
                                             for c in skip):
            raise errors.BadInputError(
                f"Block {block}'s skip needs one input index (or -1) in "
                f"[0, {width_in}) per output channel ({width_out}), got "
                f"{skip}.")

    @property
    def num_blocks(self):
        return len(self.inner)

    def to_dict(self):
        return {"stream": list(self.stream),
                "inner": [list(w) for w in self.inner],
                "attention": {str(k): list(v)
                              for k, v in self.attention.items()},
                "rgb": self.rgb,
                "skips": [None if s is None else list(s)
                          for s in self.skips]}

    @classmethod
    def from_dict(cls, data):
        return cls(stream=data["stream"], inner=data["inner"],
                   attention={int(k): tuple(v) for k, v
                              in data.get("attention", {}).items()},
                   rgb=data["rgb"], skips=data.get("skips") or ())

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)


def full_widths(layer_table, ch, attention_position=None, bottom_multiplier=None):
    """The released architecture's DeepWidths.

    Args:
      layer_table: (upsample, in multiplier, out multiplier) per block
        (`biggan_deep.DEEP_LAYERS[resolution]`).
      ch: the channel unit.
      attention_position: the self-attention sits after this many blocks
        (None: no attention).
      bottom_multiplier: the linear's output multiplier (default: the first
        block's input multiplier).
    """
    first = layer_table[0][1] if bottom_multiplier is None else bottom_multiplier
    stream = [first * ch] + [out * ch for _, _, out in layer_table]
    inner = [(in_mult * ch // REDUCTION,) * INNER_PER_BLOCK
             for _, in_mult, _ in layer_table]
    if min(w for widths in inner for w in widths) < 1:
        raise errors.BadInputError(
            f"ch={ch}: a block's input width / {REDUCTION} leaves no "
            "bottleneck channel; use a larger ch.")
    attention = {}
    if attention_position is not None:
        width = stream[attention_position]
        attention[attention_position] = (width // ATTENTION_QK_DIVISOR,
                                          width // ATTENTION_VALUE_DIVISOR)
    return DeepWidths(stream=stream, inner=inner, attention=attention,
                      rgb=ch)


def mask_widths(widths, stages, prune_attention=True):
    """Ordered {mask key: full width} of a masked DeepWidths.

    Args:
      widths: the DeepWidths of the generator being pruned (full widths).
      stages: the stage of every stream (`stages_of`).
      prune_attention: whether the attention's inner widths get masks.
    """
    masks = collections.OrderedDict()
    for stream, stage in enumerate(stages):
        masks.setdefault(stage_mask_name(stage), widths.stream[stream])
    for block, inner in enumerate(widths.inner, start=1):
        for position, width in enumerate(inner):
            masks[inner_mask_name(block, position)] = width
    if prune_attention:
        for position, (qk, value) in widths.attention.items():
            qk_name, value_name = attention_mask_names(position)
            masks[qk_name] = qk
            masks[value_name] = value
    return masks

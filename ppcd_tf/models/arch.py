"""Per-resolution BigGAN architecture tables and the channel configs built from them.

Structure is data: a `ChannelConfig` holds every width of a generator (the
residual stream between blocks, the hidden width inside each block, the inner
widths of each self-attention layer), so the same `Generator` class builds the
dense teacher, the masked student and the compact pruned generator.

Stable names (used by masks, feature taps, weight transfer and gin):
  * `block1` .. `blockN`: generator residual blocks, in order;
  * `attention{i}`: a self-attention layer placed after `block{i}`;
  * stream `0` is the output of the first linear layer (the 4x4 input of
    `block1`), stream `i` the output of `block{i}`.

Tables follow BigGAN-PyTorch's `G_arch` / `D_arch` (channel multipliers of
`ch`, one upsampling / downsampling per block, attention at the listed output
resolutions).
"""

import dataclasses
import json

from ppcd_tf import errors

# Generator: residual stream multipliers, stream[0] is the first linear's output
# width; block i maps stream[i-1] -> stream[i] and doubles the resolution.
_G_STREAM_MULTIPLIERS = {
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
}

# Discriminator: output multipliers per block, downsampling flags and the
# resolution at each block's output (where attention may be placed).
_D_TABLE = {
    32: dict(out=(4, 4, 4, 4), downsample=(True, True, False, False),
             resolution=(16, 16, 16, 16)),
    64: dict(out=(1, 2, 4, 8, 16), downsample=(True,) * 4 + (False,),
             resolution=(32, 16, 8, 4, 4)),
    128: dict(out=(1, 2, 4, 8, 16, 16), downsample=(True,) * 5 + (False,),
              resolution=(64, 32, 16, 8, 4, 4)),
    256: dict(out=(1, 2, 4, 8, 8, 16, 16), downsample=(True,) * 6 + (False,),
              resolution=(128, 64, 32, 16, 8, 4, 4)),
}

SUPPORTED_RESOLUTIONS = tuple(sorted(_G_STREAM_MULTIPLIERS))

# BigGAN's self-attention inner widths: theta/phi C // 8, g C // 2.
ATTENTION_QK_DIVISOR = 8
ATTENTION_VALUE_DIVISOR = 2


def parse_attention(attention):
    """'64' / '32_64' / '' / '0' / None / int / iterable -> set of resolutions."""
    if attention is None:
        return set()
    if isinstance(attention, int):
        values = [attention]
    elif isinstance(attention, str):
        values = [int(a) for a in attention.split("_") if a.strip()]
    else:
        values = [int(a) for a in attention]
    return {v for v in values if v > 0}


def _check_resolution(resolution):
    if resolution not in _G_STREAM_MULTIPLIERS:
        raise errors.BadInputError(
            f"Unsupported resolution {resolution}; BigGAN tables exist for "
            f"{SUPPORTED_RESOLUTIONS}.")


@dataclasses.dataclass(frozen=True)
class ChannelConfig:
    """Every width of a BigGAN generator.

    Attributes:
      resolution: output image side (bottom_width * 2**num_blocks).
      stream: residual stream widths, len num_blocks + 1; stream[0] is the
        first linear's output (channels of the [bottom, bottom] input map).
      hidden: conv1 output width inside each block, len num_blocks.
      attention: {block index (1-based): (qk_width, value_width)} for each
        self-attention layer placed after that block. Its output width is the
        stream width of that block.
      bottom_width: spatial side of the first linear's output map.
    """

    resolution: int
    stream: tuple
    hidden: tuple
    attention: dict = dataclasses.field(default_factory=dict)
    bottom_width: int = 4

    def __post_init__(self):
        object.__setattr__(self, "stream", tuple(int(c) for c in self.stream))
        object.__setattr__(self, "hidden", tuple(int(c) for c in self.hidden))
        object.__setattr__(self, "attention", {
            int(k): (int(v[0]), int(v[1]))
            for k, v in sorted(dict(self.attention).items(),
                               key=lambda kv: int(kv[0]))})
        num_blocks = len(self.hidden)
        if num_blocks < 1:
            raise errors.BadInputError(
                "ChannelConfig needs at least one block.")
        if len(self.stream) != num_blocks + 1:
            raise errors.BadInputError(
                f"ChannelConfig.stream must have num_blocks + 1 = "
                f"{num_blocks + 1} entries, got {len(self.stream)}.")
        if min(self.stream + self.hidden) < 1:
            raise errors.BadInputError(
                f"ChannelConfig widths must be >= 1, got stream="
                f"{self.stream}, hidden={self.hidden}.")
        if self.bottom_width * 2 ** num_blocks != self.resolution:
            raise errors.BadInputError(
                f"bottom_width {self.bottom_width} * 2**{num_blocks} blocks "
                f"!= resolution {self.resolution}.")
        for block, widths in self.attention.items():
            if not 1 <= block <= num_blocks:
                raise errors.BadInputError(
                    f"Attention after block {block}, but blocks "
                    f"are 1..{num_blocks}.")
            if min(widths) < 1:
                raise errors.BadInputError(
                    f"Attention widths must be >= 1, got "
                    f"{widths} after block {block}.")

    @property
    def num_blocks(self):
        return len(self.hidden)

    def block_names(self):
        return [f"block{i}" for i in range(1, self.num_blocks + 1)]

    def to_dict(self):
        return {
            "resolution": self.resolution,
            "bottom_width": self.bottom_width,
            "stream": list(self.stream),
            "hidden": list(self.hidden),
            "attention": {str(k): list(v) for k, v in self.attention.items()},
        }

    @classmethod
    def from_dict(cls, data):
        return cls(resolution=int(data["resolution"]),
                   stream=data["stream"], hidden=data["hidden"],
                   attention={int(k): tuple(v)
                              for k, v in data.get("attention", {}).items()},
                   bottom_width=int(data.get("bottom_width", 4)))

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    def to_id(self):
        """Short readable ID, e.g. 'r32_s256-256-256-256_h256-256-256_a2:32:128'."""
        parts = [f"r{self.resolution}",
                 "s" + "-".join(map(str, self.stream)),
                 "h" + "-".join(map(str, self.hidden))]
        if self.attention:
            parts.append("a" + ",".join(f"{k}:{q}:{v}" for k, (q, v)
                                        in self.attention.items()))
        return "_".join(parts)


def generator_channels(resolution, ch, attention="64",
                       stream_multipliers=None, hidden_multipliers=None):
    """The BigGAN generator's ChannelConfig for (resolution, ch, attention).

    Args:
      resolution: 32, 64, 128 or 256.
      ch: base width (BigGAN-PyTorch's G_ch; 96 for the 128 reference model).
      attention: output resolutions of the blocks followed by self-attention
        ('64', '32_64', '' for none).
      stream_multipliers: optional override of the table's stream multipliers
        (len num_blocks + 1), for custom widths.
      hidden_multipliers: optional hidden multipliers (default: the block's
        output multiplier, as in BigGAN).
    """
    _check_resolution(resolution)
    multipliers = tuple(stream_multipliers or _G_STREAM_MULTIPLIERS[resolution])
    num_blocks = len(_G_STREAM_MULTIPLIERS[resolution]) - 1
    if len(multipliers) != num_blocks + 1:
        raise errors.BadInputError(
            f"stream_multipliers for resolution {resolution} need "
            f"{num_blocks + 1} entries, got {len(multipliers)}.")
    stream = [int(round(m * ch)) for m in multipliers]
    hidden_mult = tuple(hidden_multipliers or multipliers[1:])
    if len(hidden_mult) != num_blocks:
        raise errors.BadInputError(
            f"hidden_multipliers need {num_blocks} entries, "
            f"got {len(hidden_mult)}.")
    hidden = [int(round(m * ch)) for m in hidden_mult]
    bottom_width = resolution // 2 ** num_blocks
    wanted = parse_attention(attention)
    attn = {}
    for i in range(1, num_blocks + 1):
        if bottom_width * 2 ** i in wanted:
            width = stream[i]
            attn[i] = (max(1, width // ATTENTION_QK_DIVISOR),
                       max(1, width // ATTENTION_VALUE_DIVISOR))
    unknown = wanted - {bottom_width * 2 ** i for i in range(1, num_blocks + 1)}
    if unknown:
        raise errors.BadInputError(
            f"Attention resolutions {sorted(unknown)} do not exist in the "
            f"{resolution}x{resolution} generator (block outputs: "
            f"{[bottom_width * 2 ** i for i in range(1, num_blocks + 1)]}).")
    return ChannelConfig(resolution=resolution, stream=stream, hidden=hidden,
                         attention=attn, bottom_width=bottom_width)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Widths of a BigGAN discriminator.

    Attributes:
      resolution: input image side.
      out: output width of each DBlock.
      downsample: whether each DBlock halves the resolution.
      attention: {block index (1-based): (qk_width, value_width)}.
    """

    resolution: int
    out: tuple
    downsample: tuple
    attention: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "out", tuple(int(c) for c in self.out))
        object.__setattr__(self, "downsample",
                           tuple(bool(d) for d in self.downsample))
        if len(self.out) != len(self.downsample):
            raise errors.BadInputError(
                "DiscriminatorConfig.out and .downsample differ "
                "in length.")

    def to_dict(self):
        return {"resolution": self.resolution, "out": list(self.out),
                "downsample": list(self.downsample),
                "attention": {str(k): list(v)
                              for k, v in self.attention.items()}}

    @classmethod
    def from_dict(cls, data):
        return cls(resolution=int(data["resolution"]), out=data["out"],
                   downsample=data["downsample"],
                   attention={int(k): tuple(v)
                              for k, v in data.get("attention", {}).items()})


def discriminator_channels(resolution, ch, attention="64"):
    """The BigGAN discriminator's config for (resolution, ch, attention)."""
    _check_resolution(resolution)
    table = _D_TABLE[resolution]
    out = [m * ch for m in table["out"]]
    wanted = parse_attention(attention)
    attn = {}
    for i, res in enumerate(table["resolution"], start=1):
        if res in wanted:
            width = out[i - 1]
            attn[i] = (max(1, width // ATTENTION_QK_DIVISOR),
                       max(1, width // ATTENTION_VALUE_DIVISOR))
    unknown = wanted - set(table["resolution"])
    if unknown:
        raise errors.BadInputError(
            f"Attention resolutions {sorted(unknown)} do not exist in the "
            f"{resolution}x{resolution} discriminator (block outputs: "
            f"{list(table['resolution'])}).")
    return DiscriminatorConfig(resolution=resolution, out=out,
                               downsample=table["downsample"], attention=attn)

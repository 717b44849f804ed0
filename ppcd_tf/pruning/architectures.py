"""What pruning needs to know about a generator family, behind one interface.

PPCD prunes two generator families: BigGAN (`models.generator.Generator`, its
widths a `models.arch.ChannelConfig`) and BigGAN-deep
(`models.biggan_deep.DeepGenerator`, its widths a
`models.deep_widths.DeepWidths`). The budget, the controller, the cut and
the run records go through `of(generator)`, which returns the family's
`Architecture`:

  * `mask_widths(prune_attention)`: {mask key: full width};
  * `live_parameters(kept)`, `live_macs(kept)`: the parameter and MAC
    polynomials at {mask key: kept count} (numbers or tensors; missing keys
    keep the full width);
  * `macs(generator)`: a built generator's MACs per image;
  * `widths_config(generator)` / `with_widths(config, widths)`: a generator's
    widths as the dict its config holds, and a config with other widths;
  * `uniform_widths(counts)`: the widths dict of a generator keeping the
    first `counts` channels of every mask (the uniformly thinner student);
  * `masked_batch_norms(generator)`: {mask key: [BatchNormalization]}, the
    BatchNorms whose input carries that mask's channels: in training a
    closed channel's weights are zeroed (`keep`) and the mask zeroes it, so
    it feeds them a constant and their standing variance of it collapses to
    ~0 (the cut resets those statistics when it reopens the channel);
  * `build_compact`, `compare`, `kept_indices`: the surgery and its check;
    `kept_widths(compact)`: a compact generator's {mask key: kept count}.

BigGAN-deep note: a compact deep generator keeps only the `image_channels`
outputs of `conv_to_rgb` that images use, so its live polynomials count
those alone (for a released 128x128 generator the other 125 of 128 outputs
are 0.3 % of its parameters).
"""

from ppcd_tf import errors
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import complexity
from ppcd_tf.models import deep_complexity
from ppcd_tf.models import deep_widths
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import deep_surgery
from ppcd_tf.pruning import surgery


class _Architecture:
    """What both families share: the config key of their widths."""

    config_key = None

    def with_widths(self, config, widths):
        """`config` (a generator's) with other widths (a widths dict)."""
        return dict(config, **{self.config_key: widths})


class BigGANArchitecture(_Architecture):
    """BigGAN (`Generator`): masks per stream, hidden width and attention."""

    kind = "biggan"
    config_key = "channels"

    def __init__(self, generator):
        self.channels = generator.channels
        self.shape = complexity.GeneratorShape.of(generator)

    def mask_widths(self, prune_attention=True):
        return channel_masks.mask_widths(self.channels, prune_attention)

    def live_parameters(self, kept):
        return budget_lib.live_parameters(self.channels, self.shape, kept)

    def live_macs(self, kept):
        return budget_lib.live_macs(self.channels, self.shape, kept)

    def macs(self, generator):
        return complexity.generator_macs(generator.channels, self.shape)

    @staticmethod
    def widths_config(generator):
        return generator.channels.to_dict()

    def uniform_widths(self, counts):
        return budget_lib.kept_channel_config(self.channels,
                                              counts).to_dict()

    @staticmethod
    def describe(generator):
        return generator.channels.to_id()

    def kept_widths(self, compact):
        """{mask key: kept count} of a compact generator of this family."""
        return channel_masks.mask_widths(compact.channels,
                                         prune_attention=True)

    @staticmethod
    def masked_batch_norms(generator):
        """{mask key: [keras BatchNormalization]}: stream i feeds block
        i+1's bn1 (the last stream the output BN), block i's hidden width
        its bn2; the attention widths feed none."""
        norms = {}
        for i, block in enumerate(generator.blocks):
            norms.setdefault(generator_lib.stream_mask_name(i), []).append(
                block.bn1.bn)
            norms[generator_lib.hidden_mask_name(i + 1)] = [block.bn2.bn]
        last = generator_lib.stream_mask_name(len(generator.blocks))
        norms.setdefault(last, []).append(generator.output_bn)
        return norms

    build_compact = staticmethod(surgery.build_compact)
    compare = staticmethod(surgery.compare)
    kept_indices = staticmethod(surgery.kept_indices)


class DeepArchitecture(_Architecture):
    """BigGAN-deep (`DeepGenerator`): stage masks, three bottleneck widths
    per block, the attention's (`models.deep_widths`)."""

    kind = "biggan_deep"
    config_key = "widths"

    def __init__(self, generator):
        self.widths = generator.widths
        self.stages = generator.stages
        self.image_channels = generator.image_channels
        self.shape = deep_complexity.DeepShape.of(
            generator, biggan_deep.DEEP_LAYERS[generator.resolution])

    def mask_widths(self, prune_attention=True):
        return deep_widths.mask_widths(self.widths, self.stages,
                                       prune_attention)

    def _kept_widths(self, kept):
        """(stream, inner, attention) at {mask key: kept count}."""
        stream = [kept.get(deep_widths.stage_mask_name(stage), width)
                  for stage, width in zip(self.stages, self.widths.stream)]
        inner = [tuple(kept.get(deep_widths.inner_mask_name(block, j),
                                widths[j])
                       for j in range(deep_widths.INNER_PER_BLOCK))
                 for block, widths in enumerate(self.widths.inner, start=1)]
        attention = {}
        for position, (qk, value) in self.widths.attention.items():
            qk_name, value_name = deep_widths.attention_mask_names(position)
            attention[position] = (kept.get(qk_name, qk),
                                   kept.get(value_name, value))
        return stream, inner, attention

    def live_parameters(self, kept):
        stream, inner, attention = self._kept_widths(kept)
        return deep_complexity.deep_generator_parameters(
            self.widths, self.shape, stream=stream, inner=inner,
            attention=attention, rgb=self.image_channels)

    def live_macs(self, kept):
        stream, inner, attention = self._kept_widths(kept)
        return deep_complexity.deep_generator_macs(
            self.widths, self.shape, stream=stream, inner=inner,
            attention=attention, rgb=self.image_channels)

    def macs(self, generator):
        return deep_complexity.deep_generator_macs(generator.widths,
                                                   self.shape)

    @staticmethod
    def widths_config(generator):
        return generator.widths.to_dict()

    def uniform_widths(self, counts):
        """Every mask keeps its first `counts[key]` channels."""
        stream, inner, attention = self._kept_widths(counts)
        stream = [int(c) for c in stream]
        skips = [deep_surgery.skip_index(range(stream[block - 1]),
                                         range(stream[block]))
                 for block in range(1, len(stream))]
        return deep_widths.DeepWidths(
            stream=stream, inner=[tuple(int(c) for c in w) for w in inner],
            attention={p: (int(q), int(v)) for p, (q, v) in
                       attention.items()},
            rgb=self.image_channels, skips=skips).to_dict()

    @staticmethod
    def describe(generator):
        widths = generator.widths
        return "deep_s" + "-".join(map(str, widths.stream)) + "_i" + "-".join(
            "/".join(map(str, w)) for w in widths.inner)

    def kept_widths(self, compact):
        """{mask key: kept count} of a compact generator of this family."""
        return deep_widths.mask_widths(compact.widths, self.stages)

    @staticmethod
    def masked_batch_norms(generator):
        """{mask key: [keras BatchNormalization]}: a stage feeds the bn0 of
        each block it enters (the last stage the output BN), a block's
        inner width j its bn{j+1}; the attention widths feed none."""
        norms = {}
        for index, block in enumerate(generator.blocks):
            key = deep_widths.stage_mask_name(generator.stages[index])
            norms.setdefault(key, []).append(block.bn0.bn)
            for j in range(deep_widths.INNER_PER_BLOCK):
                norms[deep_widths.inner_mask_name(index + 1, j)] = [
                    block.bns[j + 1].bn]
        last = deep_widths.stage_mask_name(generator.stages[-1])
        norms.setdefault(last, []).append(generator.output_bn)
        return norms

    build_compact = staticmethod(deep_surgery.build_compact)
    compare = staticmethod(deep_surgery.compare)
    kept_indices = staticmethod(deep_surgery.kept_indices)


def of(generator):
    """The `Architecture` of a built (or configured) generator."""
    if isinstance(generator, biggan_deep.DeepGenerator):
        return DeepArchitecture(generator)
    if hasattr(generator, "channels"):
        return BigGANArchitecture(generator)
    raise errors.BadInputError(
        f"{type(generator).__name__} is neither a BigGAN nor a BigGAN-deep "
        "generator: nothing here knows how to prune it.")

"""The inference-time graph (ppcd_tf.exporting.graph): frozen spectral norms
and folded BatchNorms compute the trained generator's images (within float
rounding), no power iteration runs at serving time, and the exporter writes,
checks and records the prepared graph (optionally XLA-compiled)."""

import json
import os

import numpy as np
import tensorflow as tf

from ppcd_tf.exporting import graph
from ppcd_tf.exporting import pipeline
from ppcd_tf.exporting import saved_model
from ppcd_tf.models import arch
from ppcd_tf.models import generator as generator_lib
from tests import helpers

TOLERANCE = 1e-5


def _generator(attention="16", seed=0):
    """A tiny generator with non-trivial BatchNorm statistics and output BN
    scale / shift (as after training)."""
    tf.keras.utils.set_random_seed(seed)
    g = generator_lib.Generator(arch.generator_channels(32, 4, attention), 3,
                                dim_z=16, shared_dim=8, image_channels=1,
                                # Not orthogonal: sigma then depends on u.
                                kernel_initializer="glorot_normal")
    g.build()
    rng = np.random.default_rng(seed)
    for variable in g.non_trainable_variables:
        if "moving_mean" in variable.path:
            variable.assign(rng.normal(0, 0.5, variable.shape))
        elif "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.3, 2.0, variable.shape))
    g.output_bn.gamma.assign(rng.uniform(0.5, 1.5, g.output_bn.gamma.shape))
    for attention in g.attentions.values():  # not the identity of init
        attention.gamma.assign(0.7)
    g.output_bn.beta.assign(rng.normal(0, 0.3, g.output_bn.beta.shape))
    return g


def _copy(g):
    copy = generator_lib.Generator.from_config(dict(g.get_config()))
    copy.build()
    copy.set_weights(g.get_weights())
    return copy


class PrepareTest(tf.test.TestCase):

    def test_frozen_and_folded_equal_the_trained_generator(self):
        g = _generator()
        z, labels = graph.reference_batch(g)
        reference = g(z, labels, training=False)
        served = _copy(g)
        record = graph.prepare(served, fold_batch_norm=True)
        self.assertEqual(record["batch_norms_folded"],
                         ["block1.bn2", "block2.bn2", "block3.bn2",
                          "output_bn"])
        # The bn1 statistics (random, as every BN's here) in the gains.
        self.assertEqual(record["batch_norm_statistics_merged"],
                         ["block1.bn1", "block2.bn1", "block3.bn1"])
        self.assertGreater(record["spectral_norms_frozen"], 20)
        self.assertLess(graph.max_difference(reference, served, z,
                                                     labels), TOLERANCE)
        # Preparing twice changes nothing.
        again = graph.prepare(served, fold_batch_norm=True)
        self.assertEqual(again, {"spectral_norms_frozen": 0,
                                 "batch_norms_folded": [],
                                 "batch_norm_statistics_merged": []})
        self.assertLess(graph.max_difference(reference, served, z,
                                                     labels), TOLERANCE)

    def test_no_power_iteration_at_serving_time(self):
        """The frozen copy no longer reads the power-iteration vectors."""
        g = _generator()
        served = _copy(g)
        graph.prepare(served, fold_batch_norm=False)
        z, labels = graph.reference_batch(g)
        before_served = served(z, labels, training=False)
        before_trained = g(z, labels, training=False)
        for model in (g, served):
            for variable in model.non_trainable_variables:
                if "sn_u" in variable.path:
                    variable.assign(tf.random.normal(variable.shape))
        self.assertAllEqual(served(z, labels, training=False),
                            before_served)
        self.assertGreater(float(tf.reduce_max(tf.abs(
            g(z, labels, training=False) - before_trained))), 1e-3)

    def test_output_bn_after_attention_is_not_folded(self):
        g = _generator(attention="32")  # attention after the last block
        z, labels = graph.reference_batch(g)
        reference = g(z, labels, training=False)
        served = _copy(g)
        record = graph.prepare(served)
        self.assertNotIn("output_bn", record["batch_norms_folded"])
        self.assertLess(graph.max_difference(reference, served, z,
                                                     labels), TOLERANCE)

    def test_misuse_is_refused(self):
        g = _generator()
        with self.assertRaisesRegex(ValueError, "Freeze"):
            graph.fold_batch_norms(g)
        graph.prepare(g)
        z, labels = graph.reference_batch(g)
        with self.assertRaisesRegex(ValueError, "train"):
            g(z, labels, training=True)


class ExportedServingGraphTest(tf.test.TestCase):

    def test_export_records_and_xla_serves_the_same_images(self):
        teacher = helpers.tiny_teacher_dir()
        root = self.create_tempdir().full_path
        plain = helpers.tiny_teacher_export(fold_batch_norm=False)
        xla = os.path.join(root, "xla")
        report = pipeline.export_run(teacher, xla, jit_compile=True)
        self.assertTrue(report["serving_graph"]["jit_compile"])
        self.assertIn("block1.bn2",
                      report["serving_graph"]["batch_norms_folded"])
        with open(os.path.join(xla, "assets.extra", "metadata.json")) as f:
            metadata = json.load(f)
        self.assertEqual(metadata["serving_graph"],
                         json.loads(json.dumps(report["serving_graph"])))
        z = tf.random.stateless_normal((5, 16), (1, 2))
        labels = tf.constant([0, 1, 2, 0, 1], tf.int32)
        images = {path: saved_model.load_export(path).generate(z.numpy(),
                                                           labels.numpy())
                  for path in (plain, xla)}
        self.assertAllClose(images[plain], images[xla], atol=1e-4)


if __name__ == "__main__":
    tf.test.main()

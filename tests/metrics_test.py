"""Tests of ppcd_tf.metrics.gan_metrics against tensorflow-gan and NumPy/SciPy.

References:
  * tensorflow-gan 2.1.0 `tfgan.eval`:
    `frechet_classifier_distance_from_activations`,
    `kernel_classifier_distance_and_std_from_activations`,
    `classifier_score_from_logits` (imported through tests/tfgan_oracle.py).
  * A SciPy FID (`scipy.linalg.sqrtm(sigma1 @ sigma2)`), a dense NumPy KID and
    a SciPy Inception Score written independently here.
"""

import os

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
import tensorflow as tf

from ppcd_tf.metrics import gan_metrics as gm
from tests import tfgan_oracle

D = 64


def _gaussian_sets(n_real, n_fake, seed):
    """Two different correlated Gaussians in D dimensions."""
    rng = np.random.default_rng(seed)
    mix1 = rng.normal(size=(D, D)) / 8.0
    mix2 = rng.normal(size=(D, D)) / 8.0 + 0.5 * np.eye(D)
    real = rng.normal(size=(n_real, D)) @ mix1
    fake = rng.normal(size=(n_fake, D)) @ mix2 + 0.3
    return real, fake


def _scipy_fid(a, b):
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                 - 2.0 * np.trace(covmean))


def _dense_mmd2(x, y):
    """Unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, dense matrices."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    return (kxx.sum() / (m * (m - 1)) + kyy.sum() / (n * (n - 1))
            - 2.0 * kxy.mean())


def _scipy_is(logits):
    p = scipy.special.softmax(logits, axis=1)
    q = p.mean(axis=0)
    kl = scipy.stats.entropy(p.T, np.broadcast_to(q, p.shape).T)
    return float(np.exp(np.mean(kl)))


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


class _TfganTestCase(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tfgan = tfgan_oracle.import_tfgan()


class OracleTest(tf.test.TestCase):

    def test_import_is_idempotent_and_leaves_tf_clean(self):
        first = tfgan_oracle.import_tfgan()
        self.assertIs(first, tfgan_oracle.import_tfgan())
        self.assertTrue(hasattr(first.eval,
                                "frechet_classifier_distance_from_activations"))
        # The helper removes its own stubs after the import.
        for owner in (tf, tf.compat.v1):
            self.assertFalse(getattr(getattr(owner, "estimator", None),
                                     tfgan_oracle._STUB_MARK, False))


class FIDTest(_TfganTestCase):

    def setUp(self):
        super().setUp()
        self.real, self.fake = _gaussian_sets(500, 500, seed=0)
        self.real_rd, self.fake_rd = _gaussian_sets(50, 50, seed=1)

    def _tfgan_fid(self, a, b):
        fcd = self.tfgan.eval.frechet_classifier_distance_from_activations
        return float(fcd(tf.constant(a), tf.constant(b)))

    def test_matches_scipy_and_tfgan_well_conditioned(self):
        fid = gm.fid_from_activations(self.real, self.fake)
        self.assertGreater(fid, 1.0)
        self.assertLess(_rel(fid, _scipy_fid(self.real, self.fake)), 1e-6)
        self.assertLess(_rel(fid, self._tfgan_fid(self.real, self.fake)), 1e-3)

    def test_rank_deficient_is_finite_and_matches(self):
        fid = gm.fid_from_activations(self.real_rd, self.fake_rd)
        self.assertTrue(np.isfinite(fid))
        self.assertLess(_rel(fid, _scipy_fid(self.real_rd, self.fake_rd)),
                        1e-3)
        self.assertLess(
            _rel(fid, self._tfgan_fid(self.real_rd, self.fake_rd)), 1e-3)
        # n <= d uses the data-factor path; the covariance path agrees.
        via_stats = gm.frechet_distance(
            *gm.activation_statistics(self.real_rd),
            *gm.activation_statistics(self.fake_rd))
        self.assertLess(_rel(via_stats, fid), 1e-9)

    def test_self_distance_is_zero(self):
        self.assertLess(abs(gm.fid_from_activations(self.real, self.real)),
                        1e-6)
        self.assertLess(
            abs(gm.fid_from_activations(self.real_rd, self.real_rd)), 1e-6)

    def test_statistics_are_unbiased_covariance(self):
        mu, sigma = gm.activation_statistics(self.real)
        self.assertEqual(mu.dtype, np.float64)
        self.assertAllClose(mu, self.real.mean(axis=0), rtol=1e-12)
        self.assertAllClose(sigma, np.cov(self.real, rowvar=False, ddof=1),
                            rtol=1e-10, atol=1e-12)

    def test_frechet_distance_of_statistics(self):
        fid = gm.frechet_distance(*gm.activation_statistics(self.real),
                                  *gm.activation_statistics(self.fake))
        self.assertAllClose(fid, gm.fid_from_activations(self.real, self.fake),
                            rtol=1e-12)

    def test_diagonal_closed_form(self):
        a = np.array([1.0, 4.0, 0.0, 9.0])
        b = np.array([4.0, 1.0, 2.0, 9.0])
        mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, -2.0, 0.0])
        expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
        self.assertAllClose(gm.frechet_distance(mu1, np.diag(a), mu2,
                                                np.diag(b)), expected,
                            rtol=1e-12)

    def test_accepts_float32_tensors(self):
        fid = gm.fid_from_activations(tf.constant(self.real, tf.float32),
                                      tf.constant(self.fake, tf.float32))
        self.assertLess(
            _rel(fid, gm.fid_from_activations(self.real, self.fake)), 1e-4)

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "Feature dimensions differ"):
            gm.fid_from_activations(self.real, self.fake[:, :10])
        with self.assertRaisesRegex(ValueError, "at least 2 samples"):
            gm.fid_from_activations(self.real[:1], self.fake)
        with self.assertRaisesRegex(ValueError, "2-D"):
            gm.fid_from_activations(self.real[0], self.fake)
        bad = self.real.copy()
        bad[3, 4] = np.nan
        with self.assertRaisesRegex(ValueError, "NaN"):
            gm.fid_from_activations(bad, self.fake)
        with self.assertRaisesRegex(ValueError, "sigma1 must be"):
            gm.frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
        with self.assertRaisesRegex(ValueError, "Feature dimensions differ"):
            gm.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


class KIDTest(_TfganTestCase):

    def setUp(self):
        super().setUp()
        self.real, self.fake = _gaussian_sets(500, 450, seed=2)

    def _tfgan_kid(self, a, b, **kwargs):
        mean, stderr = (
            self.tfgan.eval.kernel_classifier_distance_and_std_from_activations(
                tf.constant(a), tf.constant(b), **kwargs))
        return float(mean), float(stderr)

    def test_default_matches_tfgan_default(self):
        # 500 <= 1024: tfgan's default is one block of all samples.
        kid = gm.kid_from_activations(self.real, self.fake)
        tf_mean, tf_stderr = self._tfgan_kid(self.real, self.fake)
        self.assertGreater(kid.mean, 0.0)
        self.assertLess(_rel(kid.mean, tf_mean), 1e-3)
        self.assertTrue(np.isnan(kid.std))
        self.assertTrue(np.isnan(tf_stderr))

    def test_all_samples_matches_dense_reference(self):
        kid = gm.kid_from_activations(self.real, self.fake, num_subsets=1)
        self.assertLess(_rel(kid.mean, _dense_mmd2(self.real, self.fake)),
                        1e-10)

    def test_blocks_match_tfgan(self):
        # max(500, 450) / 128 -> 4 blocks of uneven sizes on both sides.
        kid = gm.kid_from_activations(self.real, self.fake, max_block_size=128)
        tf_mean, tf_stderr = self._tfgan_kid(self.real, self.fake,
                                             max_block_size=128)
        self.assertLess(_rel(kid.mean, tf_mean), 1e-3)
        self.assertLess(_rel(kid.std / np.sqrt(4), tf_stderr), 1e-3)
        same = gm.kid_from_activations(self.real, self.fake, num_subsets=4)
        self.assertEqual(kid, same)

    def test_identical_distributions_near_zero(self):
        rng = np.random.default_rng(3)
        a = rng.normal(size=(1500, D))
        b = rng.normal(size=(1500, D))
        kid = gm.kid_from_activations(a, b, num_subsets=20, subset_size=300)
        self.assertGreater(kid.std, 0.0)
        self.assertLess(abs(kid.mean), kid.std)
        different = gm.kid_from_activations(a, b + 0.5, num_subsets=20,
                                            subset_size=300)
        self.assertGreater(different.mean, 10 * different.std)

    def test_random_subsets_are_seeded(self):
        kwargs = dict(num_subsets=5, subset_size=100)
        k0 = gm.kid_from_activations(self.real, self.fake, seed=0, **kwargs)
        self.assertEqual(
            k0, gm.kid_from_activations(self.real, self.fake, seed=0, **kwargs))
        self.assertNotEqual(
            k0, gm.kid_from_activations(self.real, self.fake, seed=1, **kwargs))

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "subset_size"):
            gm.kid_from_activations(self.real, self.fake, subset_size=451)
        with self.assertRaisesRegex(ValueError, "subset_size"):
            gm.kid_from_activations(self.real, self.fake, subset_size=1)
        with self.assertRaisesRegex(ValueError, ">= 2 samples per block"):
            gm.kid_from_activations(self.real[:5], self.fake[:5],
                                    num_subsets=3)
        with self.assertRaisesRegex(ValueError, "num_subsets"):
            gm.kid_from_activations(self.real, self.fake, num_subsets=0)
        with self.assertRaisesRegex(ValueError, "Feature dimensions differ"):
            gm.kid_from_activations(self.real, self.fake[:, 1:])


class InceptionScoreTest(_TfganTestCase):

    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(4)
        self.logits = rng.normal(size=(500, 10)) * 3.0

    def test_matches_tfgan_and_scipy(self):
        score = gm.inception_score_from_logits(self.logits)
        tf_score = float(self.tfgan.eval.classifier_score_from_logits(
            tf.constant(self.logits)))
        self.assertGreater(score.mean, 1.5)
        self.assertEqual(score.std, 0.0)
        self.assertLess(_rel(score.mean, tf_score), 1e-3)
        self.assertLess(_rel(score.mean, _scipy_is(self.logits)), 1e-10)

    def test_uniform_logits_score_one(self):
        score = gm.inception_score_from_logits(np.zeros((40, 7)))
        self.assertAllClose(score.mean, 1.0, rtol=1e-12)
        score = gm.inception_score_from_logits(
            np.tile(np.arange(7.0), (40, 1)))
        self.assertAllClose(score.mean, 1.0, rtol=1e-12)

    def test_confident_balanced_logits_score_k(self):
        k = 10
        labels = np.arange(200) % k
        for scale in (50.0, 1e4):  # 1e4: p underflows to exact zeros.
            logits = scale * np.eye(k)[labels]
            score = gm.inception_score_from_logits(logits)
            self.assertAllClose(score.mean, float(k), rtol=1e-9)

    def test_splits(self):
        score = gm.inception_score_from_logits(self.logits[:503],
                                               num_splits=5)
        parts = [_scipy_is(self.logits[i * 100:(i + 1) * 100])
                 for i in range(5)]  # remainder of 3 dropped
        self.assertAllClose(score.mean, np.mean(parts), rtol=1e-10)
        self.assertAllClose(score.std, np.std(parts), rtol=1e-8)

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "2-D"):
            gm.inception_score_from_logits(np.zeros(10))
        with self.assertRaisesRegex(ValueError, "num_splits"):
            gm.inception_score_from_logits(self.logits, num_splits=0)
        with self.assertRaisesRegex(ValueError, "splits"):
            gm.inception_score_from_logits(self.logits[:3], num_splits=4)


class IntraFIDTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(5)
        self.real = rng.normal(size=(120, 8))
        self.fake = rng.normal(size=(100, 8)) + 0.2
        self.real_labels = rng.integers(0, 3, size=120)
        self.fake_labels = rng.integers(0, 3, size=100)
        # Class 3: one real sample only; class 4: fake only.
        self.real_labels[0] = 3
        self.fake_labels[:5] = 4

    def test_per_class_equals_subset_fid(self):
        result = gm.intra_fid(self.real, self.real_labels, self.fake,
                              self.fake_labels)
        self.assertEqual(sorted(result.per_class), [0, 1, 2])
        for c, value in result.per_class.items():
            expected = gm.fid_from_activations(
                self.real[self.real_labels == c],
                self.fake[self.fake_labels == c])
            self.assertAllClose(value, expected, rtol=1e-12)
        self.assertAllClose(result.mean,
                            np.mean(list(result.per_class.values())))
        self.assertEqual(sorted(result.skipped), [3, 4])
        self.assertIn("1 real / 0 fake", result.skipped[3])
        self.assertIn("0 real / 5 fake", result.skipped[4])

    def test_classes_argument(self):
        result = gm.intra_fid(self.real, self.real_labels, self.fake,
                              self.fake_labels, classes=[1, 3])
        self.assertEqual(list(result.per_class), [1])
        self.assertEqual(list(result.skipped), [3])
        none = gm.intra_fid(self.real, self.real_labels, self.fake,
                            self.fake_labels, classes=[7])
        self.assertTrue(np.isnan(none.mean))

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "real_labels has"):
            gm.intra_fid(self.real, self.real_labels[:-1], self.fake,
                         self.fake_labels)
        with self.assertRaisesRegex(ValueError, "integer"):
            gm.intra_fid(self.real, self.real_labels.astype(float), self.fake,
                         self.fake_labels)
        with self.assertRaisesRegex(ValueError, "Feature dimensions differ"):
            gm.intra_fid(self.real, self.real_labels, self.fake[:, :4],
                         self.fake_labels)


class ClassAccuracyTest(tf.test.TestCase):

    def test_logits_and_predictions(self):
        labels = np.array([0, 1, 2, 1])
        logits = np.eye(3)[[0, 1, 1, 1]] + 0.1
        self.assertAllClose(gm.class_accuracy(logits, labels), 0.75)
        self.assertAllClose(gm.class_accuracy(np.array([0, 1, 2, 2]), labels),
                            0.75)
        self.assertAllClose(
            gm.class_accuracy(tf.constant(logits, tf.float32), labels), 0.75)

    def test_validation(self):
        with self.assertRaisesRegex(ValueError, "labels"):
            gm.class_accuracy(np.zeros((3, 2)), np.array([0, 1]))
        with self.assertRaisesRegex(ValueError, "integer"):
            gm.class_accuracy(np.array([0.2, 0.7]), np.array([0, 1]))
        with self.assertRaisesRegex(ValueError, "at least one"):
            gm.class_accuracy(np.zeros((0, 2)), np.zeros(0, np.int64))


class StatisticsIOTest(tf.test.TestCase):

    def test_round_trip(self):
        real, fake = _gaussian_sets(200, 200, seed=6)
        mu, sigma = gm.activation_statistics(real)
        meta = {"feature_network": "toy", "num_samples": np.int64(200),
                "resize": [299, 299]}
        directory = os.path.join(self.get_temp_dir(), "stats_rt")
        path = os.path.join(directory, "real_stats.npz")
        gm.save_statistics(path, mu, sigma, meta)
        gm.save_statistics(path, mu, sigma, meta)  # overwrite is fine
        self.assertEqual(os.listdir(directory), ["real_stats.npz"])
        mu2, sigma2, meta2 = gm.load_statistics(path)
        self.assertAllEqual(mu, mu2)
        self.assertAllEqual(sigma, sigma2)
        self.assertEqual(meta2, {"feature_network": "toy", "num_samples": 200,
                                 "resize": [299, 299]})
        self.assertEqual(
            gm.frechet_distance(mu2, sigma2, *gm.activation_statistics(fake)),
            gm.fid_from_activations(real, fake))

    def test_validation(self):
        directory = self.get_temp_dir()
        path = os.path.join(directory, "bad_stats.npz")
        with self.assertRaisesRegex(ValueError, "sigma must be"):
            gm.save_statistics(path, np.zeros(3), np.eye(4))
        with self.assertRaisesRegex(ValueError, "JSON"):
            gm.save_statistics(path, np.zeros(3), np.eye(3), {"x": object()})
        with self.assertRaisesRegex(ValueError, "dict"):
            gm.save_statistics(path, np.zeros(3), np.eye(3), ["x"])
        self.assertFalse(os.path.exists(path))
        other = os.path.join(directory, "other.npz")
        np.savez(other, mu=np.zeros(3))
        with self.assertRaisesRegex(ValueError, "missing"):
            gm.load_statistics(other)
        garbage = os.path.join(directory, "garbage.npz")
        with open(garbage, "wb") as f:
            f.write(b"not an npz")
        with self.assertRaises(ValueError):
            gm.load_statistics(garbage)


if __name__ == "__main__":
    tf.test.main()

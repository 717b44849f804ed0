"""Tests of ppcd_tf.data on the real offline Fashion-MNIST and small data.

Fashion-MNIST is prepared once per test session (about 10 s) from Debian's
`dataset-fashion-mnist` files into a session temp dir.
"""

import os
import time

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ppcd_tf import errors
from ppcd_tf.data import DataNotFoundError
from ppcd_tf.data import ImageDataset
from ppcd_tf.data import fashion_mnist_offline
from ppcd_tf.data import sources
from tests import helpers

RESOLUTION = 32
FMNIST_SIDE = 28
FMNIST_PAD = (RESOLUTION - FMNIST_SIDE) // 2
FMNIST_TRAIN = 60000
FMNIST_TEST = 10000
FMNIST_CLASSES = 10
BATCH = 16
NUM_BATCHES = 5
RESUME_BATCH = 3
FAST_FAIL_S = 5.0
# Fake data with few examples, so that 8 batches of 4 cross epoch bounds.
FAKE_EXAMPLES = 10
FAKE_BATCH = 4
FAKE_BATCHES = 8
CPUS = ["/cpu:0", "/cpu:1"]


@pytest.fixture(scope="session")
def fmnist_data_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    fashion_mnist_offline.prepare_fashion_mnist(data_dir)
    return data_dir


@pytest.fixture(scope="class")
def _fmnist(request, fmnist_data_dir):
    request.cls.data_dir = fmnist_data_dir


def _take(dataset, num):
    return [tuple(t.numpy() for t in element)
            for element in dataset.take(num)]


def _fmnist_builder(data_dir):
    return tfds.builder(fashion_mnist_offline.BUILDER_NAME, data_dir=data_dir)


@pytest.mark.usefixtures("_fmnist")
class FashionMnistOfflineTest(tf.test.TestCase):

    def test_manual_files_match_registered_checksums(self):
        builder = _fmnist_builder(self.data_dir)
        self.assertTrue(builder.is_prepared())
        manual_dir = fashion_mnist_offline.manual_dir_for(self.data_dir)
        registered = {i.filename: i for i in builder.url_infos.values()}
        self.assertCountEqual(registered,
                              fashion_mnist_offline.UPSTREAM_FILES)
        for name, info in registered.items():
            path = os.path.join(manual_dir, name)
            self.assertEqual(os.path.getsize(path), info.size)
            self.assertEqual(fashion_mnist_offline.sha256_of_file(path),
                             info.checksum)

    def test_header_rewrite_is_idempotent_on_upstream_files(self):
        manual_dir = fashion_mnist_offline.manual_dir_for(self.data_dir)
        name = "t10k-labels-idx1-ubyte.gz"
        with open(os.path.join(manual_dir, name), "rb") as f:
            upstream = f.read()
        mtime = fashion_mnist_offline.UPSTREAM_FILES[name]
        self.assertEqual(
            fashion_mnist_offline.upstream_gzip_bytes(upstream, name, mtime),
            upstream)

    def test_splits_and_class_names(self):
        builder = _fmnist_builder(self.data_dir)
        train, train_info = sources.load_split(
            "fashion_mnist", "train", data_dir=self.data_dir)
        test, test_info = sources.load_split(
            "fashion_mnist", "test", data_dir=self.data_dir)
        self.assertEqual(train_info.num_examples, FMNIST_TRAIN)
        self.assertEqual(test_info.num_examples, FMNIST_TEST)
        self.assertEqual(train_info.num_classes, FMNIST_CLASSES)
        self.assertEqual(train_info.image_channels, 1)
        self.assertEqual(train_info.class_names,
                         tuple(builder.info.features["label"].names))
        counted = test.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)
        self.assertEqual(int(counted), FMNIST_TEST)
        image, label = next(iter(train))
        self.assertEqual(image.shape, (FMNIST_SIDE, FMNIST_SIDE, 1))
        self.assertEqual(image.dtype, tf.uint8)
        self.assertEqual(label.dtype, tf.int64)

    def test_prepare_again_returns_at_once(self):
        start = time.monotonic()
        fashion_mnist_offline.prepare_fashion_mnist(self.data_dir)
        self.assertLess(time.monotonic() - start, FAST_FAIL_S)

    def test_missing_source_files(self):
        source_dir = self.get_temp_dir()
        present = "train-labels-idx1-ubyte.gz"
        with open(os.path.join(source_dir, present), "wb") as f:
            f.write(b"")
        data_dir = os.path.join(self.get_temp_dir(), "empty_tfds")
        with self.assertRaises(DataNotFoundError) as ctx:
            fashion_mnist_offline.prepare_fashion_mnist(
                data_dir, source_dir=source_dir)
        message = str(ctx.exception)
        self.assertIn("train-images-idx3-ubyte.gz", message)
        self.assertIn("t10k-labels-idx1-ubyte.gz", message)
        self.assertNotIn(present, message.split(". Install")[0])
        self.assertIn("apt-get install -y dataset-fashion-mnist", message)


@pytest.mark.usefixtures("_fmnist")
class PreprocessTest(tf.test.TestCase):

    def test_fashion_mnist_is_padded_with_background(self):
        dataset = ImageDataset("fashion_mnist", RESOLUTION,
                               data_dir=self.data_dir)
        self.assertEqual(dataset.image_channels, 1)
        image, _ = next(iter(dataset._source))
        out = dataset.preprocess(image).numpy()
        self.assertEqual(out.shape, (RESOLUTION, RESOLUTION, 1))
        self.assertEqual(out.dtype, np.float32)
        self.assertGreaterEqual(out.min(), -1.0)
        self.assertLessEqual(out.max(), 1.0)
        inner = slice(FMNIST_PAD, FMNIST_PAD + FMNIST_SIDE)
        border = np.ones_like(out, dtype=bool)
        border[inner, inner] = False
        np.testing.assert_array_equal(out[border], -1.0)
        expected = image.numpy().astype(np.float32) / 127.5 - 1.0
        np.testing.assert_array_equal(out[inner, inner], expected)

    def test_pixel_values_map_exactly(self):
        dataset = ImageDataset("fake", RESOLUTION, image_channels=1)
        image = np.zeros((FMNIST_SIDE, FMNIST_SIDE, 1), np.uint8)
        image[0, 0] = 255
        out = dataset.preprocess(tf.constant(image)).numpy()
        self.assertEqual(out[FMNIST_PAD, FMNIST_PAD, 0], 1.0)
        self.assertEqual(out[FMNIST_PAD + 1, FMNIST_PAD, 0], -1.0)

    def test_crop_and_resize_larger_images(self):
        rgb = ImageDataset("fake", RESOLUTION)
        self.assertEqual(rgb.image_channels, 3)
        large = tf.constant(np.full((40, 60, 3), 255, np.uint8))
        out = rgb.preprocess(large)
        self.assertEqual(out.shape, (RESOLUTION, RESOLUTION, 3))
        self.assertAllClose(out, tf.ones_like(out))

    def test_grey_tiled_to_rgb(self):
        dataset = ImageDataset("fashion_mnist", RESOLUTION,
                               data_dir=self.data_dir, image_channels=3)
        self.assertEqual(dataset.image_channels, 3)
        image, _ = next(iter(dataset._source))
        out = dataset.preprocess(image).numpy()
        self.assertEqual(out.shape, (RESOLUTION, RESOLUTION, 3))
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])

    def test_dynamic_shapes(self):
        dataset = ImageDataset("fake", RESOLUTION)
        fn = tf.function(dataset.preprocess, input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8)])
        for shape in [(20, 30, 3), (50, 70, 3)]:
            out = fn(tf.zeros(shape, tf.uint8))
            self.assertEqual(out.shape, (RESOLUTION, RESOLUTION, 3))
            self.assertAllEqual(out, -tf.ones_like(out))


@pytest.mark.usefixtures("_fmnist")
class ResumeTest(tf.test.TestCase):

    def _assert_batches_equal(self, got, want):
        self.assertEqual(len(got), len(want))
        for (gi, gl), (wi, wl) in zip(got, want):
            np.testing.assert_array_equal(gi, wi)
            np.testing.assert_array_equal(gl, wl)

    def test_fashion_mnist_resume(self):
        dataset = ImageDataset("fashion_mnist", RESOLUTION,
                               data_dir=self.data_dir)
        full = _take(dataset.batches(BATCH), NUM_BATCHES)
        images, labels = full[0]
        self.assertEqual(images.shape, (BATCH, RESOLUTION, RESOLUTION, 1))
        self.assertEqual(images.dtype, np.float32)
        self.assertEqual(labels.dtype, np.int32)
        resumed = _take(dataset.batches(
            BATCH, start_example=RESUME_BATCH * BATCH),
            NUM_BATCHES - RESUME_BATCH)
        self._assert_batches_equal(resumed, full[RESUME_BATCH:])

    def test_resume_across_epochs_ignores_global_seed(self):
        dataset = ImageDataset("fake", RESOLUTION,
                               fake_num_examples=FAKE_EXAMPLES)
        tf.random.set_seed(1)
        full = _take(dataset.batches(FAKE_BATCH), FAKE_BATCHES)
        tf.random.set_seed(2)
        resumed = _take(dataset.batches(
            FAKE_BATCH, start_example=RESUME_BATCH * FAKE_BATCH),
            FAKE_BATCHES - RESUME_BATCH)
        self._assert_batches_equal(resumed, full[RESUME_BATCH:])
        # Each epoch is a permutation of the split, in a new order.
        images = np.concatenate([b[0] for b in full])
        first, second = (images[:FAKE_EXAMPLES],
                         images[FAKE_EXAMPLES:2 * FAKE_EXAMPLES])
        self.assertFalse(np.array_equal(first, second))
        self.assertCountEqual([x.tobytes() for x in first],
                              [x.tobytes() for x in second])

    def test_seed_changes_order(self):
        first = _take(ImageDataset("fake", RESOLUTION, seed=0)
                      .batches(FAKE_BATCH), 1)[0][0]
        other = ImageDataset("fake", RESOLUTION, seed=1)
        self.assertFalse(np.array_equal(
            first, _take(other.batches(FAKE_BATCH), 1)[0][0]))


class DistributedTest(tf.test.TestCase):

    def test_per_replica_batches(self):
        strategy = helpers.two_replicas()
        dataset = ImageDataset("fake", RESOLUTION)
        global_batch = 2 * FAKE_BATCH
        images, labels = next(iter(
            dataset.make_distributed(strategy, global_batch)))
        replica_images = strategy.experimental_local_results(images)
        replica_labels = strategy.experimental_local_results(labels)
        self.assertLen(replica_images, len(CPUS))
        plain = _take(dataset.batches(FAKE_BATCH), len(CPUS))
        for i, (image, label) in enumerate(
                zip(replica_images, replica_labels)):
            self.assertEqual(image.shape,
                             (FAKE_BATCH, RESOLUTION, RESOLUTION, 3))
            self.assertEqual(label.shape, (FAKE_BATCH,))
            self.assertIn(CPUS[i][1:], image.device.lower())
            np.testing.assert_array_equal(image.numpy(), plain[i][0])

    def test_non_divisible_global_batch(self):
        strategy = helpers.two_replicas()
        dataset = ImageDataset("fake", RESOLUTION)
        with self.assertRaises(ValueError) as ctx:
            dataset.make_distributed(strategy, 7)
        self.assertIn("7", str(ctx.exception))
        self.assertIn("2 replicas", str(ctx.exception))


class ErrorsTest(tf.test.TestCase):

    def test_unknown_name(self):
        with self.assertRaises(ValueError) as ctx:
            sources.load_split("mnist", "train")
        for name in sources.VALID_NAMES:
            self.assertIn(name, str(ctx.exception))

    def test_absent_tfds_data_fails_fast(self):
        cases = {"cifar10": "cifar-10-binary.tar.gz",
                 "imagenet2012": "ILSVRC2012_img_train.tar"}
        for name, file_name in cases.items():
            data_dir = os.path.join(self.get_temp_dir(), name)
            start = time.monotonic()
            with self.assertRaises(DataNotFoundError) as ctx:
                sources.load_split(name, "train", data_dir=data_dir)
            self.assertLess(time.monotonic() - start, FAST_FAIL_S)
            message = str(ctx.exception)
            self.assertIn(file_name, message)
            self.assertIn(fashion_mnist_offline.manual_dir_for(data_dir),
                          message)

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            ImageDataset("fake", RESOLUTION, image_channels=2)
        with self.assertRaises(ValueError):
            ImageDataset("image_folder", RESOLUTION)


class ImageFolderTest(tf.test.TestCase):

    def _make_tree(self):
        root = os.path.join(self.get_temp_dir(), "folder")
        for class_index, class_name in enumerate(["cat", "dog"]):
            class_dir = os.path.join(root, "train", class_name)
            os.makedirs(class_dir, exist_ok=True)
            for i in range(3):
                shape = [20 + 10 * i, 24 + 12 * class_index, 3]
                image = tf.cast(tf.fill(shape, 40 * i), tf.uint8)
                tf.io.write_file(os.path.join(class_dir, f"{i}.png"),
                                 tf.io.encode_png(image))
        return root

    def test_load_and_preprocess(self):
        root = self._make_tree()
        dataset = ImageDataset("image_folder", RESOLUTION, image_folder=root,
                               shuffle_buffer=BATCH)
        self.assertEqual(dataset.num_classes, 2)
        self.assertEqual(dataset.num_examples, 6)
        self.assertEqual(dataset.class_names, ("cat", "dog"))
        images, labels = _take(dataset.batches(6), 1)[0]
        self.assertEqual(images.shape, (6, RESOLUTION, RESOLUTION, 3))
        self.assertCountEqual(labels.tolist(), [0, 0, 0, 1, 1, 1])
        self.assertBetween(float(images.min()), -1.0, 1.0)
        self.assertBetween(float(images.max()), -1.0, 1.0)

    def test_rgb_to_grey(self):
        dataset = ImageDataset("image_folder", RESOLUTION,
                               image_folder=self._make_tree(),
                               image_channels=1)
        images, _ = _take(dataset.batches(2), 1)[0]
        self.assertEqual(images.shape, (2, RESOLUTION, RESOLUTION, 1))

    def _add_unreadable(self, root):
        """A zero-byte PNG and a text file named .jpg among the images."""
        empty = os.path.join(root, "train", "cat", "empty.png")
        open(empty, "wb").close()
        text = os.path.join(root, "train", "dog", "notes.jpg")
        with open(text, "w") as f:
            f.write("not an image")
        return empty, text

    def test_unreadable_files_are_skipped_and_listed(self):
        root = self._make_tree()
        empty, text = self._add_unreadable(root)
        with self.assertLogs(level="WARNING") as logs:
            dataset = ImageDataset("image_folder", RESOLUTION,
                                   image_folder=root, shuffle_buffer=BATCH)
        message = "\n".join(logs.output)
        self.assertIn("2 unreadable image file(s)", message)
        self.assertIn(f"{empty} (empty file)", message)
        self.assertIn(f"{text} (not a JPG image)", message)
        self.assertEqual(dataset.num_examples, 6)
        # Two passes over the data: every batch is whole, no decode error.
        for images, labels in _take(dataset.batches(6), 2):
            self.assertEqual(images.shape, (6, RESOLUTION, RESOLUTION, 3))
            self.assertCountEqual(labels.tolist(), [0, 0, 0, 1, 1, 1])

    def test_unreadable_files_can_be_refused(self):
        root = self._make_tree()
        empty, text = self._add_unreadable(root)
        with self.assertRaises(errors.DamagedInputError) as ctx:
            ImageDataset("image_folder", RESOLUTION, image_folder=root,
                         unreadable_images="refuse")
        self.assertIn(empty, str(ctx.exception))
        self.assertIn(text, str(ctx.exception))
        with self.assertRaises(errors.BadInputError):
            ImageDataset("image_folder", RESOLUTION, image_folder=root,
                         unreadable_images="ignore")

    def test_missing_split(self):
        root = self._make_tree()
        with self.assertRaises(DataNotFoundError) as ctx:
            ImageDataset("image_folder", RESOLUTION, image_folder=root,
                         split="test")
        self.assertIn(os.path.join(root, "test"), str(ctx.exception))


class GinTest(tf.test.TestCase):

    def test_configured_by_gin(self):
        gin.parse_config([
            "ImageDataset.name = 'fake'",
            f"ImageDataset.resolution = {RESOLUTION}",
            "ImageDataset.fake_num_classes = 3",
        ])
        dataset = ImageDataset()
        self.assertEqual(dataset.num_classes, 3)
        self.assertEqual(dataset.resolution, RESOLUTION)

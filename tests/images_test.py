"""The image task's input pipelines: values, seeded epochs, resume position, replicas, eval coverage."""

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from harness.tasks import base
from harness.tasks import images
from harness.tasks import sources
from tests import testing

take = testing.take


class ImageTaskTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = testing.learnable_image_task(num_train=40, num_test=10)

  def test_batches_are_float_sequences_in_unit_range(self):
    inputs, labels = take(self.task.train_dataset(8, seed=0), 1)[0]
    self.assertEqual(inputs.shape, (8, 8, 8))
    self.assertEqual(inputs.dtype, np.float32)
    self.assertEqual(labels.shape, (8,))
    self.assertGreaterEqual(inputs.min(), 0.0)
    self.assertEqual(inputs.max(), 1.0)

  def test_each_epoch_is_a_seeded_permutation(self):
    batches = take(self.task.train_dataset(8, seed=3), 10)  # 5 steps per epoch, 2 epochs.
    first_epoch = np.concatenate([b[0] for b in batches[:5]])
    second_epoch = np.concatenate([b[0] for b in batches[5:]])
    expected = np.sort(self.task.train_images.reshape(40, -1) / 255.0, axis=0)
    np.testing.assert_allclose(np.sort(first_epoch.reshape(40, -1), axis=0), expected, rtol=1e-6)
    self.assertFalse(np.array_equal(first_epoch, second_epoch))
    again = take(self.task.train_dataset(8, seed=3), 10)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in again]),
                                  np.concatenate([b[0] for b in batches]))

  def test_start_step_continues_at_the_same_data_position(self):
    testing.assert_start_step_continues_the_stream(self.task, seed=1, start_step=7, count=5)

  def test_replica_batches_tile_the_global_batch(self):
    testing.assert_replica_batches_tile_the_global_batch(self.task)

  def test_eval_covers_the_test_split_once(self):
    seen = []
    for pipeline in range(2):
      for inputs, labels, index in take(self.task.eval_dataset(4, testing.InputContext(2, pipeline, 2)), 100):
        np.testing.assert_array_equal(labels, self.task.test_labels[index])
        seen.extend(index)
    self.assertEqual(sorted(seen), list(range(10)))

  def test_the_eval_subset_is_one_fixed_draw_for_every_run(self):
    subset = base.eval_subset(10_000, 2_000)
    self.assertLen(np.unique(subset), 2_000)
    np.testing.assert_array_equal(subset, np.sort(subset))  # Read in the split's order.
    self.assertTrue(np.all((subset >= 0) & (subset < 10_000)))
    np.testing.assert_array_equal(subset, base.eval_subset(10_000, 2_000))  # Every run, seed and resume.
    self.assertTrue(set(base.eval_subset(10_000, 500)) <= set(subset))  # A smaller one is part of it.
    self.assertIsNone(base.eval_subset(10_000, None))  # --eval_examples=all.
    self.assertIsNone(base.eval_subset(2_000, 2_000))  # No smaller than the split: the split.

  def test_eval_reads_only_the_subset_once_across_pipelines(self):
    subset = base.eval_subset(10, 4)
    testing.assert_eval_subset_reads_its_examples(self, self.task, subset)
    seen = []
    for pipeline in range(2):
      for _, labels, index in take(self.task.eval_dataset(2, testing.InputContext(2, pipeline, 2), subset), 100):
        np.testing.assert_array_equal(labels, self.task.test_labels[index])
        seen.extend(index)
    self.assertEqual(sorted(seen), subset.tolist())


class FigureTest(absltest.TestCase):
  """The eval figures read at a Time Series card's size and say what matters in words."""

  def test_confusion_matrix_of_ten_classes_names_the_most_frequent_confusion(self):
    confusion = np.diag(np.full(10, 900))
    confusion[6, 0], confusion[2, 4] = 120, 98
    image, (figure,) = testing.drawn(images.confusion_matrix_image, confusion, ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'), 'lstm 128 · fm')
    texts = testing.assert_card_sized(self, figure, image)
    self.assertIn('lstm 128 · fm\naccuracy 0.9764 of 9,218\nmost confused: Shirt → T-shirt/top (120)', texts)
    self.assertIn('Ankle boot 9', texts)
    self.assertNotIn('900', texts)  # Ten classes: no counts in 16-px cells.
    image, (figure,) = testing.drawn(images.confusion_matrix_image, np.array([[3, 1], [0, 4]]), ('a', 'b'))
    self.assertContainsSubset({'3', '1', '4'}, testing.assert_card_sized(self, figure, image))

  def test_worst_misclassified_grid(self):
    pictures = np.zeros([8, 28, 28], np.uint8)
    image, (figure,) = testing.drawn(images.misclassified_grid_image, pictures, np.arange(8), np.arange(8)[::-1],
                                     np.linspace(9, 2, 8), ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'), 'gru 64 · r')
    texts = testing.assert_card_sized(self, figure, image)
    self.assertIn('T-shirt/t… 9.0\n→ Sneaker', texts)
    self.assertIn('gru 64 · r\nworst misclassified: true, its loss → predicted', texts)


class ViewTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.data = testing.learnable_image_task(num_train=4, num_test=2, size=6)
    self.images = self.data.train_images  # [4, 6, 6] uint8.

  def task(self, view, permutation_seed=0):
    return images.ImageTask('tiny', sources.image_data((self.data.train_images, self.data.train_labels),
                                                       (self.data.test_images, self.data.test_labels),
                                                       self.data.class_names, 'tiny'), view, permutation_seed)

  def test_rows_and_pixels(self):
    rows = self.task('rows')._to_inputs(self.images).numpy()
    np.testing.assert_allclose(rows, self.images / 255.0, rtol=1e-6)
    pixels = self.task('pixels')._to_inputs(self.images).numpy()
    self.assertEqual(pixels.shape, (4, 36, 1))
    np.testing.assert_allclose(pixels[:, :, 0], self.images.reshape(4, 36) / 255.0, rtol=1e-6)  # Row-major.
    self.assertEqual((self.task('rows').num_features, self.task('pixels').num_features), (6, 1))

  def test_permuted_is_one_fixed_bijection_for_train_test_and_every_run(self):
    task = self.task('permuted', permutation_seed=4)
    permutation = task.permutation
    self.assertEqual(sorted(permutation.tolist()), list(range(36)))
    self.assertFalse(np.array_equal(permutation, np.arange(36)))
    np.testing.assert_array_equal(self.task('permuted', permutation_seed=4).permutation, permutation)
    self.assertFalse(np.array_equal(self.task('permuted', permutation_seed=5).permutation, permutation))
    inputs = task._to_inputs(self.images).numpy()[:, :, 0]
    np.testing.assert_allclose(inputs, self.images.reshape(4, 36)[:, permutation] / 255.0, rtol=1e-6)
    (test_inputs, _, _), = take(task.eval_dataset(2), 1)
    np.testing.assert_allclose(test_inputs[:, :, 0], self.data.test_images.reshape(2, 36)[:, permutation] / 255.0,
                               rtol=1e-6)


class BuildTest(absltest.TestCase):

  def test_loads_through_tfds_and_warns_when_state_would_cross_examples(self):
    config = testing.tiny_config(task='mnist', stateful=True, data_dir=testing.make_tempdir(self))
    with tfds.testing.mock_data(num_examples=12), self.assertLogs(level='WARNING') as logs:
      task = images.build(config)
    self.assertEqual(task.train_images.shape, (12, 28, 28))
    self.assertTrue(any('state crosses from one example into another' in line for line in logs.output))


if __name__ == '__main__':
  absltest.main()

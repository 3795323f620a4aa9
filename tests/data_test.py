"""Input pipelines, the IDX importer into tfds, and the offline fallbacks."""

import os
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from harness import data
from harness import idx
from tests import testing


def take(dataset, count):
  return [tuple(t.numpy() for t in element) for element in dataset.take(count)]


class _Context:
  """A stand-in tf.distribute.InputContext."""

  def __init__(self, pipelines, pipeline_id, replicas):
    self.num_input_pipelines = pipelines
    self.input_pipeline_id = pipeline_id
    self.num_replicas_in_sync = replicas

  def get_per_replica_batch_size(self, batch_size):
    return batch_size // self.num_replicas_in_sync


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
    full = take(self.task.train_dataset(8, seed=1), 12)
    resumed = take(self.task.train_dataset(8, seed=1, start_step=7), 5)
    for expected, actual in zip(full[7:], resumed):
      np.testing.assert_array_equal(expected[0], actual[0])
      np.testing.assert_array_equal(expected[1], actual[1])

  def test_replica_batches_tile_the_global_batch(self):
    full = take(self.task.train_dataset(8, seed=0), 2)
    per_pipeline = [take(self.task.train_dataset(8, seed=0, input_context=_Context(2, p, 4)), 4)
                    for p in range(2)]
    for step in range(2):
      pieces = [per_pipeline[p][step * 2 + r][1] for p in range(2) for r in range(2)]
      np.testing.assert_array_equal(np.concatenate(pieces), full[step][1])

  def test_eval_covers_the_test_split_once(self):
    seen = []
    for pipeline in range(2):
      for inputs, labels, index in take(self.task.eval_dataset(4, _Context(2, pipeline, 2)), 100):
        np.testing.assert_array_equal(labels, self.task.test_labels[index])
        seen.extend(index)
    self.assertEqual(sorted(seen), list(range(10)))


class SeriesTaskTest(absltest.TestCase):

  def test_windows_are_contiguous_across_batches(self):
    task = data.SeriesTask(num_streams=3, seq_len=5, seed=0)
    batches = take(task.train_dataset(3, seed=0), 4)
    inputs = np.concatenate([b[0] for b in batches], axis=1)
    targets = np.concatenate([b[1] for b in batches], axis=1)
    expected_inputs, expected_targets = task.windows(0, 4, tf.range(3))
    np.testing.assert_allclose(inputs, expected_inputs, atol=1e-6)
    np.testing.assert_allclose(targets, expected_targets, atol=1e-6)
    np.testing.assert_allclose(inputs ** 2 + targets ** 2, 1.0, atol=1e-5)  # sin and cos of the same x.

  def test_epoch_restarts_the_series_and_eval_follows_it(self):
    task = data.SeriesTask(num_streams=2, seq_len=4, seed=0)
    batches = take(task.train_dataset(2, seed=0, start_step=task.windows_per_epoch - 1), 2)
    np.testing.assert_allclose(batches[1][0], task.windows(0, 1, tf.range(2))[0], atol=1e-6)
    eval_inputs = {int(i[0]): x for x, _, i in take(task.eval_dataset(1), 100)}
    self.assertLen(eval_inputs, task.eval_windows * 2)
    np.testing.assert_allclose(eval_inputs[0], task.windows(task.windows_per_epoch, 1, tf.constant([0]))[0],
                               atol=1e-6)

  def test_carried_state_eval_reads_each_stream_from_the_start(self):
    task = data.SeriesTask(num_streams=2, seq_len=4, seed=0)
    (inputs, targets, index), = take(task.eval_dataset(2, carry_state=True), 1)
    total = (task.windows_per_epoch + task.eval_windows) * 4
    self.assertEqual(inputs.shape, (2, total, 1))
    self.assertEqual(targets.shape, (2, task.eval_windows * 4, 1))
    np.testing.assert_allclose(targets, task.windows(task.windows_per_epoch, task.eval_windows,
                                                     tf.range(2))[1], atol=1e-6)
    np.testing.assert_array_equal(index, [0, 1])


def write_idx_dir(directory, num_train=6, num_test=4, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, (images_file, labels_file), count in zip(data.IDX_FILES, data.IDX_FILES.values(),
                                                      (num_train, num_test)):
    images = rng.integers(0, 256, (count, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    idx.write_idx_gz(os.path.join(directory, images_file), images)
    idx.write_idx_gz(os.path.join(directory, labels_file), labels)
    arrays[split] = (images, labels)
  return arrays


class ImportAndFallbackTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.idx_dir = testing.make_tempdir(self)
    self.data_dir = testing.make_tempdir(self)

  def test_import_round_trips_through_tfds(self):
    arrays = write_idx_dir(self.idx_dir)
    data.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    for split, (images, labels) in arrays.items():
      loaded = tfds.as_numpy(tfds.load('fashion_mnist', split=split, data_dir=self.data_dir,
                                       download=False, batch_size=-1))
      order = np.lexsort(loaded['image'].reshape(len(labels), -1).T)
      expected_order = np.lexsort(images.reshape(len(labels), -1).T)
      np.testing.assert_array_equal(loaded['image'][order, ..., 0], images[expected_order])
      np.testing.assert_array_equal(loaded['label'][order], labels[expected_order])
    with mock.patch.object(data, '_host_reachable', return_value=False):
      task = data.load_image_task('fashion_mnist', self.data_dir)
    self.assertIn(f'imported from IDX files in {self.idx_dir}', task.source)
    self.assertEqual(task.train_images.shape, (6, 28, 28))
    self.assertEqual(task.class_names[0], 'T-shirt/top')

  def test_import_refuses_mismatched_counts(self):
    write_idx_dir(self.idx_dir)
    idx.write_idx_gz(os.path.join(self.idx_dir, 't10k-labels-idx1-ubyte.gz'), np.zeros(3, np.uint8))
    with self.assertRaisesRegex(data.UserError, 'holds 4 images but .* holds 3 labels'):
      data.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    self.assertFalse(os.path.exists(os.path.join(self.data_dir, 'fashion_mnist', '3.0.1', 'dataset_info.json')))

  def test_offline_mnist_falls_back_to_the_shipped_sample(self):
    with mock.patch.object(data, '_host_reachable', return_value=False):
      task = data.load_image_task('mnist', self.data_dir)
    self.assertIn('mnist_sample', task.source)
    self.assertIn('NOT full MNIST', task.source)
    self.assertEqual(task.train_images.shape, (8000, 28, 28))
    self.assertEqual(task.test_images.shape, (2000, 28, 28))
    self.assertEqual(sorted(set(task.test_labels.tolist())), list(range(10)))

  def test_offline_fashion_mnist_without_local_files_is_a_clear_error(self):
    with mock.patch.object(data, '_host_reachable', return_value=False), \
         mock.patch.dict(data.OFFLINE_IDX_DIRS, {'fashion_mnist': os.path.join(self.idx_dir, 'absent')}):
      with self.assertRaisesRegex(data.UserError, '--task=fashion_mnist: no data.*harness.data import'):
        data.load_image_task('fashion_mnist', self.data_dir)

  def test_tfds_mock_data_loads_through_tfds(self):
    with tfds.testing.mock_data(num_examples=12):
      task = data.load_image_task('mnist', self.data_dir)
    self.assertEqual(task.train_images.shape, (12, 28, 28))
    self.assertTrue(task.source.startswith('tfds:mnist'))


if __name__ == '__main__':
  absltest.main()

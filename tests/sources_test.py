"""tfds loading, the IDX importer into tfds, and the offline fallbacks."""

import fcntl
import os
import threading
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from harness.errors import UserError
from harness.tasks import idx
from harness.tasks import sources
from tests import testing


class ImportAndFallbackTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.idx_dir = testing.make_tempdir(self)
    self.data_dir = testing.make_tempdir(self)

  def test_import_round_trips_through_tfds(self):
    arrays = testing.write_idx_dir(self.idx_dir)
    sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    for split, (images, labels) in arrays.items():
      loaded = tfds.as_numpy(tfds.load('fashion_mnist', split=split, data_dir=self.data_dir,
                                       download=False, batch_size=-1))
      order = np.lexsort(loaded['image'].reshape(len(labels), -1).T)
      expected_order = np.lexsort(images.reshape(len(labels), -1).T)
      np.testing.assert_array_equal(loaded['image'][order, ..., 0], images[expected_order])
      np.testing.assert_array_equal(loaded['label'][order], labels[expected_order])
    with mock.patch.object(sources, 'host_reachable', return_value=False):
      data = sources.load_images('fashion_mnist', self.data_dir)
    self.assertIn(f'imported from IDX files in {self.idx_dir}', data.source)
    self.assertEqual(data.train_images.shape, (6, 28, 28))
    self.assertEqual(data.class_names[0], 'T-shirt/top')

  def test_a_process_that_finds_another_preparing_the_data_waits_and_reads_its_copy(self):
    testing.write_idx_dir(self.idx_dir)
    other = os.open(os.path.join(self.data_dir, '.harness-fashion_mnist.lock'), os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)  # The other process, mid-import.
    loaded = {}
    def load():
      with self.assertLogs('absl', 'INFO') as logs:
        loaded['data'] = sources.load_images('fashion_mnist', self.data_dir)
      loaded['log'] = '\n'.join(logs.output)
    with mock.patch.object(sources, 'host_reachable', return_value=False), \
         mock.patch.dict(sources.OFFLINE_IDX_DIRS, {'fashion_mnist': self.idx_dir}):
      waiting = threading.Thread(target=load)
      waiting.start()
      waiting.join(1.0)
      self.assertTrue(waiting.is_alive())
      sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
      os.close(other)
      waiting.join(60)
    self.assertIn('another process is preparing fashion_mnist', loaded['log'])
    self.assertNotIn('importing the IDX files', loaded['log'])  # It read the other's copy.
    self.assertEqual(loaded['data'].train_images.shape, (6, 28, 28))

  def test_import_says_how_far_it_is(self):
    testing.write_idx_dir(self.idx_dir, num_train=3, num_test=2)
    with mock.patch.object(sources, 'PROGRESS_SECONDS', 0.0), self.assertLogs('absl', 'INFO') as logs:
      sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    lines = [record.getMessage() for record in logs.records if record.getMessage().startswith('data: ')]
    self.assertRegex(lines[0], r'^data: fashion_mnist: 1 of 5 examples encoded in \d+ s; about \d+ s left$')
    self.assertLen(lines, 5)
    self.assertRegex(lines[-1], r"^data: fashion_mnist: 5 examples encoded in \d+ s; shuffling them into tfds's files")

  def test_import_refuses_mismatched_counts(self):
    testing.write_idx_dir(self.idx_dir)
    idx.write_idx_gz(os.path.join(self.idx_dir, 't10k-labels-idx1-ubyte.gz'), np.zeros(3, np.uint8))
    with self.assertRaisesRegex(UserError, 'holds 4 images but .* holds 3 labels'):
      sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    self.assertFalse(os.path.exists(os.path.join(self.data_dir, 'fashion_mnist', '3.0.1', 'dataset_info.json')))

  def test_import_of_no_examples_is_refused_and_a_failed_import_leaves_no_partial_dataset(self):
    testing.write_idx_dir(self.idx_dir, num_test=0)
    with self.assertRaisesRegex(UserError, 'the test files hold no examples'):
      sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    self.assertEqual(os.listdir(self.data_dir), [])
    testing.write_idx_dir(self.idx_dir)

    def write_half_then_fail(**kwargs):
      os.makedirs(os.path.join(kwargs['data_dir'], 'fashion_mnist', 'incomplete.x1_3.0.1'))
      raise OSError(28, 'No space left on device')

    with mock.patch.object(tfds.dataset_builders, 'store_as_tfds_dataset', side_effect=write_half_then_fail):
      with self.assertRaises(OSError):
        sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)
    self.assertEqual(os.listdir(self.data_dir), [])
    sources.import_idx('fashion_mnist', self.idx_dir, self.data_dir)  # Nothing in the way afterwards.

  def test_offline_mnist_falls_back_to_the_shipped_sample(self):
    with mock.patch.object(sources, 'host_reachable', return_value=False):
      data = sources.load_images('mnist', self.data_dir)
    self.assertIn('mnist_sample', data.source)
    self.assertIn('NOT full MNIST', data.source)
    self.assertEqual(data.train_images.shape, (8000, 28, 28))
    self.assertEqual(data.test_images.shape, (2000, 28, 28))
    self.assertEqual(sorted(set(data.test_labels.tolist())), list(range(10)))

  def test_offline_fashion_mnist_without_local_files_is_a_clear_error(self):
    with mock.patch.object(sources, 'host_reachable', return_value=False), \
         mock.patch.dict(sources.OFFLINE_IDX_DIRS, {'fashion_mnist': os.path.join(self.idx_dir, 'absent')}):
      with self.assertRaisesRegex(UserError, '--task=fashion_mnist: no data.*harness.data import'):
        sources.load_images('fashion_mnist', self.data_dir)

  def test_tfds_mock_data_loads_through_tfds(self):
    with tfds.testing.mock_data(num_examples=12):
      data = sources.load_images('mnist', self.data_dir)
    self.assertEqual(data.train_images.shape, (12, 28, 28))
    self.assertTrue(data.source.startswith('tfds:mnist'))


if __name__ == '__main__':
  absltest.main()

"""Sub-batch choice, checkpoints and signals."""

import os

from absl.testing import absltest
import tensorflow as tf

from harness import runtime
from tests import testing


class BatchSplitsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if tf.config.list_physical_devices('GPU'):
      self.skipTest('auto sub-batches are for CPU-only machines (a GPU gets 1)')

  def test_auto_splits_use_every_core_only_for_big_enough_sub_batches(self):
    cores = len(os.sched_getaffinity(0))
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=8)), 1)
    # Fused LSTMs: sub-batches of 16 or more; Keras's per-step loops: 64 or more.
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores)), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16)), 1)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, lstm_kernel='keras')), 1)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, units=(256,))), 1)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=64 * cores, units=(256,))), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, arch='gru')), 1)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=64 * cores, arch='gru')), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=256, batch_splits=4)), 4)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=256, strategy='mirrored')), 1)


if __name__ == '__main__':
  absltest.main()

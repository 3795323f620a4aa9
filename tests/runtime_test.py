"""Sub-batch choice, checkpoints and signals."""

import os
import types

from absl.testing import absltest
import tensorflow as tf

from harness import fused_ops
from harness import loop
from harness import runtime
from harness import steps
from harness.errors import UserError
from tests import testing


class BatchSplitsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if tf.config.list_physical_devices('GPU'):
      self.skipTest('auto sub-batches are for CPU-only machines (a GPU gets 1)')

  def test_auto_splits_use_every_core_only_for_big_enough_sub_batches(self):
    cores = len(os.sched_getaffinity(0))
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=8)), 1)
    # Fused LSTMs and GRUs: sub-batches of 16 or more; Keras's per-step loops: 64 or more.
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores)), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16)), 1)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, lstm_kernel='keras')), 1)
    # A wide LSTM is fused where the harness's op is built (Keras's loop where it is not).
    wide = cores if fused_ops.load() is not None else 1
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, units=(256,))), wide)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=64 * cores, units=(256,))), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, arch='gru')), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=16 * cores, arch='rnn')), 1)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=64 * cores, arch='rnn')), cores)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=256, batch_splits=4)), 4)
    self.assertEqual(runtime.batch_splits(testing.tiny_config(batch_size=256, strategy='mirrored')), 1)


class FaultsBeforeTheFolderTest(absltest.TestCase):
  """What must fail with one line before a run folder is claimed."""

  def test_item10_a_tf_config_tensorflow_cannot_read(self):
    for text, expected in (('{bad json', 'not valid JSON'), ('[]', 'give {"cluster"'),
                           ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
                            r"task index 3 is not one of the cluster's 1 worker addresses \(0..0\)"),
                           ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
                            "task type 'ps' is not a job")):
      with self.subTest(text=text):
        with self.assertRaisesRegex(UserError, f'^TF_CONFIG: {expected}'):
          runtime.check_tf_config(text)
    runtime.check_tf_config('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}')

  def test_item18_more_cpu_devices_than_sense(self):
    many = max(runtime.MAX_CPU_DEVICES, len(os.sched_getaffinity(0))) + 1
    with self.assertRaisesRegex(UserError, f'^--num_cpu_devices={many}: at most {many - 1} here'):
      runtime.make_strategy(testing.tiny_config(num_cpu_devices=many, strategy='mirrored'))

  def test_item11_an_unwritable_folder_is_one_line(self):
    error = tf.errors.PermissionDeniedError(None, None, 'runs/r/train/events.out; Permission denied')
    self.assertEqual(runtime.describe_fault(error, None), 'cannot write (runs/r/train/events.out; Permission '
                     'denied); make the run folder and everything in it writable')

  def test_item17_the_batch_checks(self):
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    with self.assertRaisesRegex(UserError, '^--batch_splits=16: must divide the per-replica batch of 8$'):
      steps.check_batch(testing.tiny_config(batch_size=16, batch_splits=16), two_replicas)
    with self.assertRaisesRegex(UserError, '^--batch_size=9: must divide evenly over 2 replicas$'):
      steps.check_batch(testing.tiny_config(batch_size=9), two_replicas)
    workdir = os.path.join(testing.make_tempdir(self), 'run')
    with self.assertRaisesRegex(UserError, '--batch_splits=16'):  # Before the run folder is claimed.
      loop.train_and_evaluate(testing.tiny_config(batch_size=16, batch_splits=16), workdir,
                              task=testing.learnable_image_task(), strategy=two_replicas)
    self.assertFalse(os.path.exists(workdir))

if __name__ == '__main__':
  absltest.main()

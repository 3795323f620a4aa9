"""The adding problem and the copy task: examples against hand-computed targets, baselines, exact resume."""

import math

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from harness.tasks import base
from harness.tasks import memory
from tests import testing

take = testing.take


class AddingTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = memory.AddingTask(seq_len=10, seed=3)

  def test_two_markers_one_in_each_half_and_the_target_is_their_sum(self):
    inputs, targets = (t.numpy() for t in self.task.generate(tf.constant([1, 2], tf.int64), 64))
    self.assertEqual(inputs.shape, (64, 10, 2))
    self.assertEqual(targets.shape, (64, 1))
    for values, markers, target in zip(inputs[..., 0], inputs[..., 1], targets[:, 0]):
      marked = np.flatnonzero(markers)
      self.assertLen(marked, 2)
      self.assertLess(marked[0], 5)
      self.assertGreaterEqual(marked[1], 5)
      self.assertAlmostEqual(target, values[marked].sum(), places=6)
      self.assertTrue(np.all((values >= 0) & (values < 1)))

  def test_the_baseline_is_the_mse_of_always_answering_one(self):
    _, test_targets = tf.function(self.task.test_examples)(tf.range(memory.TEST_EXAMPLES))
    targets = test_targets.numpy()[:, 0]
    self.assertAlmostEqual(float(np.mean((targets - 1.0) ** 2)), self.task.baselines['mse'], delta=0.01)
    self.assertAlmostEqual(self.task.baselines['mse'], 1 / 6)
    losses = self.task.per_example_loss(test_targets, tf.ones([memory.TEST_EXAMPLES, 1]))
    self.assertAlmostEqual(float(tf.reduce_mean(losses)), float(np.mean((targets - 1.0) ** 2)), places=5)

  def test_batches_are_a_function_of_seed_and_step_so_resume_is_exact(self):
    full = testing.assert_start_step_continues_the_stream(self.task, seed=5, start_step=4, count=2)
    self.assertFalse(np.array_equal(full[0][0], take(self.task.train_dataset(8, seed=6), 1)[0][0]))
    self.assertFalse(np.array_equal(full[0][0], full[1][0]))

  def test_replica_batches_tile_the_global_batch(self):
    testing.assert_replica_batches_tile_the_global_batch(self.task)

  def test_the_test_set_is_the_same_for_every_seed_and_batch_and_covered_once(self):
    first = [t.numpy() for t in self.task.test_examples(tf.range(6))]
    for other, batch in ((memory.AddingTask(10, seed=9).test_examples(tf.range(6)), first),
                         (self.task.test_examples(tf.constant([4, 5])), [t[4:] for t in first])):
      for mine, theirs in zip(batch, other):
        np.testing.assert_array_equal(mine, theirs.numpy())
    self.assertFalse(np.array_equal(first[0][0], first[0][1]))
    batches = take(self.task.eval_dataset(512), 10)
    indices = np.concatenate([i for _, _, i in batches])
    self.assertEqual(sorted(indices.tolist()), list(range(memory.TEST_EXAMPLES)))
    np.testing.assert_array_equal(batches[1][0][:6], self.task.test_examples(tf.range(512, 518))[0])
    # Never a training batch: the test seeds' steps are negative.
    self.assertFalse(np.array_equal(take(self.task.train_dataset(6, seed=memory._TEST_KEY), 1)[0][0], first[0]))
    self.assertEqual(self.task.probe_batch()[0].shape, (base.PROBE_SIZE, 10, 2))

  def test_a_subset_of_the_test_set_reads_its_own_sequences(self):
    self.assertEqual(self.task.num_test_examples, memory.TEST_EXAMPLES)
    testing.assert_eval_subset_reads_its_examples(self, self.task, base.eval_subset(memory.TEST_EXAMPLES, 6))


class AddingFigureTest(absltest.TestCase):

  def test_prediction_against_target_at_card_size(self):
    task = memory.AddingTask(seq_len=10, seed=3)
    targets = np.linspace(0, 2, 50)
    images, (figure,) = testing.drawn(task.eval_figures, {'target': targets, 'prediction': targets + 0.1}, None,
                                      'lru 8 · a')
    texts = testing.assert_card_sized(self, figure, images['prediction_vs_target'])
    self.assertIn('lru 8 · a\nT = 10: MSE 0.0100 (baseline 0.1667)', texts)
    self.assertContainsSubset({'test sequences', 'perfect', 'baseline 1'}, texts)


class CopyTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = memory.CopyTask(seq_len=5, seed=0)

  def test_symbols_then_blanks_then_the_delimiter_then_the_recall(self):
    inputs, targets = (t.numpy() for t in self.task.generate(tf.constant([4, 4], tf.int64), 16))
    self.assertEqual(inputs.shape, (16, 25, 10))
    self.assertEqual(targets.shape, (16, 25))
    ids = inputs.argmax(-1)
    np.testing.assert_array_equal(inputs.sum(-1), 1.0)  # One-hot.
    symbols = ids[:, :10]
    self.assertTrue(np.all((symbols >= 1) & (symbols <= 8)))
    np.testing.assert_array_equal(ids[:, 10:14], 0)  # T - 1 = 4 blanks.
    np.testing.assert_array_equal(ids[:, 14], memory.COPY_DELIMITER)
    np.testing.assert_array_equal(ids[:, 15:], 0)
    np.testing.assert_array_equal(targets[:, :15], 0)
    np.testing.assert_array_equal(targets[:, 15:], symbols)

  def test_baselines_and_the_memoryless_loss(self):
    self.assertAlmostEqual(self.task.baselines['loss'], 10 * math.log(8) / 25)
    self.assertAlmostEqual(self.task.baselines['accuracy'], 1 / 8)
    # Certain blanks while waiting, then a uniform guess among the 8 symbols: the baseline loss.
    logits = np.full([1, 25, 10], -1e9, np.float32)
    logits[0, :15, 0] = 0.0
    logits[0, 15:, 1:9] = 0.0
    _, targets = self.task.test_examples(tf.range(1))
    loss = self.task.per_example_loss(targets, tf.constant(logits))
    self.assertAlmostEqual(float(loss[0]), self.task.baselines['loss'], places=5)

  def test_accuracy_counts_only_the_recalled_symbols(self):
    _, targets = self.task.test_examples(tf.range(2))
    logits = tf.one_hot(targets, 10) * 10.0
    logits = tf.concat([tf.zeros_like(logits[:, :15]), logits[:, 15:]], axis=1)  # Wrong everywhere before.
    wrong_last = tf.concat([logits[:, :-1], tf.one_hot(tf.zeros([2, 1], tf.int32), 10) * 10.0], axis=1)
    np.testing.assert_allclose(self.task.train_metrics(targets, logits)['accuracy'], [1.0, 1.0])
    np.testing.assert_allclose(self.task.train_metrics(targets, wrong_last)['accuracy'], [0.9, 0.9])
    outputs = self.task.eval_outputs(targets, wrong_last)
    np.testing.assert_array_equal(outputs['symbols'], targets[:, -10:])
    results = {name: value.numpy() for name, value in outputs.items()}
    self.assertAlmostEqual(self.task.eval_metrics(results)['accuracy'], 0.9)

  def test_long_sequences_are_generated_as_they_are_read(self):
    for task, shapes in ((memory.CopyTask(seq_len=5000, seed=0), [(2, 5020, 10), (2, 5020)]),
                         (memory.AddingTask(seq_len=5000, seed=0), [(2, 5000, 2), (2, 1)])):
      inputs, targets, _ = take(task.eval_dataset(2), 1)[0]
      self.assertEqual([inputs.shape, targets.shape], shapes)
      self.assertEqual([v for v in vars(task).values() if isinstance(v, (np.ndarray, tf.Tensor))], [])

  def test_figures_draw_at_card_size(self):
    _, targets = self.task.test_examples(tf.range(8))
    recalled = targets[:, -10:].numpy()
    recalled[0, 0] = 0
    results = {'recalled': recalled, 'symbols': targets[:, -10:].numpy(), 'loss': np.zeros(8)}
    images, (figure,) = testing.drawn(self.task.eval_figures, results, None, 'lstm 8 · c')
    texts = testing.assert_card_sized(self, figure, images['recalled_symbols'])
    self.assertIn('lstm 8 · c\nT = 5: to recall (black), recalled below\n(green right, red wrong); these 6: 0.98', texts)


if __name__ == '__main__':
  absltest.main()

"""sin2cos: contiguous windows, epochs, evaluation with and without carried state."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from harness.tasks import base
from harness.tasks import series
from tests import testing

take = testing.take


class SeriesTaskTest(absltest.TestCase):

  def test_prediction_figure_at_card_size(self):
    steps = np.linspace(0, 6, 100)
    title = 'lstm 10 · s\nstateful: state carried from the series start\nMSE over these 5 windows 0.0100'
    image, (figure,) = testing.drawn(series.prediction_plot_image, np.cos(steps), np.cos(steps) + 0.1, 20, title)
    texts = testing.assert_card_sized(self, figure, image)
    self.assertContainsSubset({title, 'target cos', 'prediction'}, texts)

  def test_windows_are_contiguous_across_batches(self):
    task = series.SeriesTask(num_streams=3, seq_len=5, seed=0)
    batches = take(task.train_dataset(3, seed=0), 4)
    inputs = np.concatenate([b[0] for b in batches], axis=1)
    targets = np.concatenate([b[1] for b in batches], axis=1)
    expected_inputs, expected_targets = task.windows(0, 4, tf.range(3))
    np.testing.assert_allclose(inputs, expected_inputs, atol=1e-6)
    np.testing.assert_allclose(targets, expected_targets, atol=1e-6)
    np.testing.assert_allclose(inputs ** 2 + targets ** 2, 1.0, atol=1e-5)  # sin and cos of the same x.

  def test_epoch_restarts_the_series_and_eval_follows_it(self):
    task = series.SeriesTask(num_streams=2, seq_len=4, seed=0)
    batches = take(task.train_dataset(2, seed=0, start_step=task.windows_per_epoch - 1), 2)
    np.testing.assert_allclose(batches[1][0], task.windows(0, 1, tf.range(2))[0], atol=1e-6)
    eval_inputs = {int(i[0]): x for x, _, i in take(task.eval_dataset(1), 100)}
    self.assertLen(eval_inputs, task.eval_windows * 2)
    np.testing.assert_allclose(eval_inputs[0], task.windows(task.windows_per_epoch, 1, tf.constant([0]))[0],
                               atol=1e-6)

  def test_carried_state_eval_reads_each_stream_from_the_start(self):
    task = series.SeriesTask(num_streams=2, seq_len=4, seed=0)
    (inputs, targets, index), = take(series.SeriesTask(num_streams=2, seq_len=4, seed=0, carry_state=True).eval_dataset(2), 1)
    total = (task.windows_per_epoch + task.eval_windows) * 4
    self.assertEqual(inputs.shape, (2, total, 1))
    self.assertEqual(targets.shape, (2, task.eval_windows * 4, 1))
    np.testing.assert_allclose(targets, task.windows(task.windows_per_epoch, task.eval_windows,
                                                     tf.range(2))[1], atol=1e-6)
    np.testing.assert_array_equal(index, [0, 1])

  def test_a_subset_of_the_eval_windows_or_streams_reads_its_own(self):
    for carry_state, examples in ((False, 3 * 10), (True, 3)):  # Windows of every stream; streams from the start.
      with self.subTest(carry_state=carry_state):
        task = series.SeriesTask(num_streams=3, seq_len=4, seed=0, carry_state=carry_state)
        self.assertEqual(task.num_test_examples, examples)
        testing.assert_eval_subset_reads_its_examples(self, task, base.eval_subset(examples, 2))


if __name__ == '__main__':
  absltest.main()

"""The dict-based writer: what it writes is read back by TensorBoard's own loader."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import summary_v2 as histogram_summary

from harness import summaries
from tests import testing


class SummaryWriterTest(absltest.TestCase):

  def test_scalars_histograms_text_and_images_read_back(self):
    logdir = os.path.join(testing.make_tempdir(self), 'run')
    writer = summaries.SummaryWriter(logdir)
    writer.write_scalars(3, {'loss': 0.5, 'accuracy': 0.25})
    writer.write_histograms(3, {'weights/w': np.arange(10.0)})
    writer.write_texts(0, {'notes': '| a | b |'})
    figure, axes = summaries.subplots(figsize=(2, 1))
    axes.plot([0, 1])
    image = summaries.figure_to_image(figure)
    writer.write_images(3, {'plot': image})
    writer.close()
    events = testing.load_run(logdir)
    self.assertEqual(testing.scalar_series(events, '.', 'loss'), [(3, 0.5)])
    (step, histogram), = testing.tensor_series(events, '.', 'weights/w')
    self.assertEqual((step, histogram[:, 2].sum()), (3, 10))
    self.assertEqual(testing.tensor_series(events, '.', 'notes')[0][1].item().decode(), '| a | b |')
    (step, png), = testing.tensor_series(events, '.', 'plot')
    self.assertEqual((int(png[0]), int(png[1])), (image.shape[2], image.shape[1]))

  def test_histogram_buckets_are_tensorboards_own(self):
    rng = np.random.default_rng(0)
    for values in (rng.normal(size=(4, 7, 5)), rng.integers(0, 4, size=50).astype(np.float32), np.full(6, 2.5),
                   np.zeros(0), np.array([1e-9, 3e-9]), np.array([-1.0, 2.0])):
      with self.subTest(values=values.shape):
        expected = histogram_summary._buckets(tf.constant(values), 30).numpy()  # pylint: disable=protected-access
        np.testing.assert_allclose(summaries.histogram_buckets(values), expected, rtol=1e-12, atol=0)

  def test_histograms_leave_out_values_that_are_not_finite(self):
    buckets = summaries.histogram_buckets(np.array([0.0, np.nan, 1.0, np.inf]))
    self.assertEqual((buckets[0, 0], buckets[-1, 1], buckets[:, 2].sum()), (0.0, 1.0, 2.0))

  def test_histograms_are_read_as_histograms(self):
    logdir = os.path.join(testing.make_tempdir(self), 'run')
    writer = summaries.SummaryWriter(logdir)
    writer.write_histograms(4, {'gates/layer_0/input': tf.constant([[0.0, 0.5], [1.0, 1.0]])})
    writer.close()
    events = testing.load_run(logdir)
    self.assertEqual(events.SummaryMetadata('.', 'gates/layer_0/input').plugin_data.plugin_name, 'histograms')
    (step, histogram), = testing.tensor_series(events, '.', 'gates/layer_0/input')
    self.assertEqual((step, histogram.shape, histogram[-1].tolist()), (4, (30, 3), [29 / 30, 1.0, 2.0]))

  def test_a_disabled_writer_writes_nothing(self):
    logdir = os.path.join(testing.make_tempdir(self), 'run')
    writer = summaries.SummaryWriter(logdir, enabled=False)
    writer.write_scalars(1, {'loss': 1.0})
    writer.write_hparams({'a': 1}, trial_id='run')
    writer.close()
    self.assertFalse(os.path.exists(logdir))


if __name__ == '__main__':
  absltest.main()

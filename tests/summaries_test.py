"""The dict-based writer: what it writes is read back by TensorBoard's own loader."""

import os

from absl.testing import absltest
import numpy as np

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

  def test_a_disabled_writer_writes_nothing(self):
    logdir = os.path.join(testing.make_tempdir(self), 'run')
    writer = summaries.SummaryWriter(logdir, enabled=False)
    writer.write_scalars(1, {'loss': 1.0})
    writer.write_hparams({'a': 1}, trial_id='run')
    writer.close()
    self.assertFalse(os.path.exists(logdir))


if __name__ == '__main__':
  absltest.main()

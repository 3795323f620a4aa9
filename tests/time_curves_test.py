"""Eval metrics against training minutes: the mean over seeds against a hand computation, the figure, table, files."""

import json
import os
import shutil
import statistics
import tempfile

from absl.testing import absltest
from matplotlib import image as image_lib
import numpy as np

from harness import aggregate
from harness import summaries
from harness import time_curves
from harness import trials as trials_lib

from tests import testing

GRID = [('arch', ['rnn', 'gru']), ('view', ['pixels', 'permuted'])]  # No numeric axis: harness.curves draws nothing.
# Per seed: (minutes, accuracy) at steps 10 and 20 on the subset (eval_subset/), then 30 on the whole split (eval/).
SEED_CURVES = ([(1.0, 0.2), (2.0, 0.4), (3.0, 0.6)], [(1.5, 0.1), (2.5, 0.5), (3.5, 0.9)])
STEPS = (10, 20, 30)


def offset(trial):
  """Each group's curves apart from the others': gru higher by 0.05, permuted by 0.01."""
  values = dict(trial.values)
  return 0.05 * (values['arch'] == 'gru') + 0.01 * (values['view'] == 'permuted')


def write_trial(trial_dir, curve, shift):
  os.makedirs(trial_dir)
  folders = {'eval_subset': summaries.SummaryWriter(os.path.join(trial_dir, 'eval_subset')),
             'eval': summaries.SummaryWriter(os.path.join(trial_dir, 'eval'))}
  for step, (minutes, accuracy) in zip(STEPS, curve):
    writer = folders['eval' if step == STEPS[-1] else 'eval_subset']
    writer.write_scalars(step, {'Metrics/accuracy': accuracy + shift, time_curves.MINUTES_TAG: minutes})
  for writer in folders.values():
    writer.close()
  with open(os.path.join(trial_dir, 'metrics.json'), 'w') as f:
    json.dump({'step': 30, 'total_steps': 30, 'status': 'finished', 'eval_accuracy': curve[-1][1] + shift,
               'train_seconds': curve[-1][0] * 60}, f)


class TimeCurvesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    temporary = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, temporary, ignore_errors=True)
    cls.sweep_dir = os.path.join(temporary, 'sweep')
    os.makedirs(cls.sweep_dir)
    fixed = ['--task=fashion_mnist', '--time_budget=3']
    with open(os.path.join(cls.sweep_dir, 'sweep.json'), 'w') as f:
      json.dump({'grid': GRID, 'seeds': 2, 'fixed': fixed}, f)
    trials = trials_lib.make_trials(GRID, 2)
    for trial in trials:
      write_trial(os.path.join(cls.sweep_dir, trial.name), SEED_CURVES[trial.seed], offset(trial))
    cls.printed = aggregate.aggregate(cls.sweep_dir)
    results = {t.name: json.load(open(os.path.join(cls.sweep_dir, t.name, 'metrics.json'))) for t in trials}
    configs = trials_lib.check_trials(trials, fixed, cls.sweep_dir)
    # pylint: disable=protected-access
    whole = aggregate._eval_curves(cls.sweep_dir, trials, results, configs)
    subset = aggregate._eval_curves(cls.sweep_dir, trials, results, configs, 'eval_subset')
    minutes = aggregate._eval_minutes(cls.sweep_dir, trials, results)
    cls.lines = {line.label: line for line in time_curves.lines(GRID, trials, results, whole, subset, minutes,
                                                                'accuracy')}

  def test_the_mean_over_seeds_is_each_curve_linear_between_its_points_where_all_cover(self):
    line = self.lines['rnn, pixels']
    np.testing.assert_allclose(line.minutes, [1.5, 2.0, 2.5, 3.0])  # Both seeds' points from 1.5 to 3.0.
    seed_0, seed_1 = [0.3, 0.4, 0.5, 0.6], [0.1, 0.3, 0.5, 0.7]  # By hand, linear between the points.
    np.testing.assert_allclose(line.mean, [statistics.fmean(v) for v in zip(seed_0, seed_1)], rtol=1e-6)
    np.testing.assert_allclose(line.sd, [statistics.stdev(v) for v in zip(seed_0, seed_1)], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(line.finals, [(3.0, 0.6), (3.5, 0.9)], rtol=1e-6)  # The whole split's, at the end.
    np.testing.assert_allclose(self.lines['gru, permuted'].mean, line.mean + 0.06, rtol=1e-6)
    self.assertEqual(list(self.lines), ['rnn, pixels', 'rnn, permuted', 'gru, pixels', 'gru, permuted'])
    self.assertAlmostEqual(line.at(2.25), (0.45 + 0.4) / 2, places=6)
    self.assertTrue(np.isnan(line.at(3.2)))  # Beyond seed 0's last evaluation: no mean.

  def test_a_step_on_both_the_whole_split_and_the_subset_is_the_whole_splits(self):
    minutes, values = time_curves.trial_curve({5: 0.5, 10: 1.0, 15: 1.5}, {10: 0.9, 15: 0.95}, {5: 0.4, 10: 0.8})
    np.testing.assert_allclose(minutes, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(values, [0.4, 0.9, 0.95])
    minutes, mean, sd = time_curves.mean_curve([(np.array([1.0, 2.0]), np.array([0.1, 0.2])),
                                                (np.array([3.0, 4.0]), np.array([0.3, 0.4]))])
    self.assertEqual((len(minutes), len(mean), len(sd)), (0, 0, 0))  # No minute in common: no mean.

  def test_the_figure_colours_by_the_first_varied_flag_and_styles_by_the_rest(self):
    figure = time_curves.draw(list(self.lines.values()), 'accuracy', title_flags=['arch', 'view'])
    np.testing.assert_allclose(figure.get_size_inches() * 100, [640, 460])
    panel, = figure.axes
    means = {line.get_label(): line for line in panel.get_lines() if not line.get_label().startswith('_')}
    self.assertEqual(list(means), list(self.lines))
    self.assertEqual(means['rnn, pixels'].get_color(), means['rnn, permuted'].get_color())
    self.assertNotEqual(means['rnn, pixels'].get_color(), means['gru, pixels'].get_color())
    self.assertEqual((means['gru, pixels'].get_linestyle(), means['gru, permuted'].get_linestyle()), ('-', '--'))
    self.assertLen(panel.collections, 4)  # A ± sd band per group (two seeds each).
    self.assertIn('minutes of training', panel.get_xlabel())
    legend, = figure.legends
    self.assertEqual(legend.get_title().get_text(), 'arch, view')

  def test_the_png_tensorboard_image_and_table(self):
    png = image_lib.imread(os.path.join(self.sweep_dir, 'curves', 'accuracy_vs_train_minutes.png'))
    self.assertEqual(png.shape[:2], (460, 640))
    events = testing.load_run(self.sweep_dir)
    self.assertIn('curves/accuracy_vs_train_minutes', events.Runs()['sweep']['tensors'])
    image = testing.tensor_series(events, 'sweep', 'curves/accuracy_vs_train_minutes')[0][1]
    self.assertEqual(image[:2].tolist(), [b'640', b'460'])  # tf.summary.image: width, height, PNG.
    with open(os.path.join(self.sweep_dir, 'summary.md')) as f:
      summary = f.read()
    # The minutes every seed covers end at 3.0; before 1.5 (seed 1's first evaluation) no group has a mean.
    self.assertIn('| group | n | at 0.8 min | at 1.5 min | at 2.2 min | at 3.0 min | last (accuracy, minutes) |',
                  summary)
    self.assertIn('| rnn, pixels | 2/2 | — | 0.2000 | 0.4250 | 0.6500 | 0.7500 at 3.2 |', summary)
    self.assertIn('| gru, permuted | 2/2 | — | 0.2600 | 0.4850 | 0.7100 | 0.8100 at 3.2 |', summary)
    self.assertIn('| rnn, pixels | 2/2 |', self.printed)


if __name__ == '__main__':
  absltest.main()

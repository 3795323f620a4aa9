"""A metric against a numeric grid axis: numbers against a hand computation, the figure's objects, the tables, files."""

import json
import os
import shutil
import statistics
import tempfile

from absl.testing import absltest
from matplotlib import image as image_lib
import numpy as np

from harness import aggregate
from harness import curves
from harness import summaries
from harness import trials as trials_lib

from tests import testing

GRID = [('seq_len', ['10', '100']), ('arch', ['rnn', 'gru'])]
STEPS = (10, 20, 30, 40)
# (seq_len, arch) -> per seed, the eval MSE at STEPS. The threshold is 0.01.
CURVES = {
    ('10', 'rnn'): [[0.2, 0.1, 0.01, 0.009], [0.2, 0.05, 0.008, 0.007], [0.2, 0.009, 0.006, 0.005]],
    ('10', 'gru'): [[0.1, 0.009, 0.005, 0.006], [0.1, 0.05, 0.008, 0.004], [0.2, 0.15, 0.12, 0.11]],
    ('100', 'rnn'): [[0.17, 0.17, 0.16, 0.165], [0.17, 0.16, 0.17, 0.168], None],  # Seed 2 stopped early.
    ('100', 'gru'): [[0.17, 0.1, 0.01, 0.002], [0.17, 0.12, 0.008, 0.003], [0.17, 0.16, 0.009, 0.001]],
}
BASELINE = 1 / 6


def write_trial(trial_dir, curve):
  """A finished trial's metrics.json and eval events (a stopped one's metrics.json if `curve` is None)."""
  os.makedirs(trial_dir)
  metrics = {'step': 20, 'total_steps': 40, 'status': 'stopped'}
  if curve:
    metrics = {'step': 40, 'total_steps': 40, 'status': 'finished', 'eval_mse': curve[-1], 'eval_loss': curve[-1],
               'baseline_mse': BASELINE, 'baseline_loss': BASELINE, 'threshold_mse': 0.01}
    writer = summaries.SummaryWriter(os.path.join(trial_dir, 'eval'))
    for step, value in zip(STEPS, curve):
      writer.write_scalars(step, {'Metrics/loss': value})  # The MSE is the loss: written once.
    writer.close()
  with open(os.path.join(trial_dir, 'metrics.json'), 'w') as f:
    json.dump(metrics, f)


class CurvesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    temporary = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, temporary, ignore_errors=True)
    cls.sweep_dir = os.path.join(temporary, 'sweep')
    os.makedirs(cls.sweep_dir)
    with open(os.path.join(cls.sweep_dir, 'sweep.json'), 'w') as f:
      json.dump({'grid': GRID, 'seeds': 3, 'fixed': ['--task=adding', '--train_steps=40']}, f)
    for trial in trials_lib.make_trials(GRID, 3):
      write_trial(os.path.join(cls.sweep_dir, trial.name), CURVES[tuple(v for _, v in trial.values)][trial.seed])
    cls.printed = aggregate.aggregate(cls.sweep_dir)
    trials = trials_lib.make_trials(GRID, 3)
    results = {t.name: json.load(open(os.path.join(cls.sweep_dir, t.name, 'metrics.json'))) for t in trials}
    configs = trials_lib.check_trials(trials, ['--task=adding', '--train_steps=40'], cls.sweep_dir)
    cls.eval_curves = aggregate._eval_curves(cls.sweep_dir, trials, results, configs)  # pylint: disable=protected-access
    outcomes = {name: curves.outcomes(results[name], c) for name, c in cls.eval_curves.items()}
    cls.chart = next(c for c in curves.charts(GRID, trials, outcomes) if c.metric == 'mse')

  def test_final_best_and_threshold_steps_against_a_hand_computation(self):
    self.assertEqual(set(self.eval_curves), {t.name for t in trials_lib.make_trials(GRID, 3)} -
                     {'seq_len=100,arch=rnn,seed=2'})
    curve = self.eval_curves['seq_len=10,arch=gru,seed=1']['mse']  # Stored as float32.
    self.assertEqual(list(curve), list(STEPS))
    np.testing.assert_allclose(list(curve.values()), CURVES['10', 'gru'][1], rtol=1e-6)
    points = {(line, p.x_text): p for line, ps in self.chart.lines.items() for p in ps}
    gru = points[('gru',), '10']
    finals, bests = [0.006, 0.004, 0.11], [0.005, 0.004, 0.11]
    self.assertEqual((gru.n, gru.seeds, gru.reached), (3, 3, 2))
    np.testing.assert_allclose(gru.final, (statistics.fmean(finals), statistics.stdev(finals)))
    np.testing.assert_allclose(gru.best, (statistics.fmean(bests), statistics.stdev(bests)))
    np.testing.assert_allclose(gru.steps, (25.0, statistics.stdev([20, 30])))  # Seed 2 never reached 0.01.
    self.assertEqual(points[('gru',), '100'].steps, (30.0, 0.0))  # 0.01 itself counts as reached.
    rnn = points[('rnn',), '100']
    self.assertEqual((rnn.n, rnn.seeds, rnn.reached, rnn.steps), (2, 3, 0, None))
    np.testing.assert_allclose(rnn.best, (statistics.fmean([0.16, 0.16]), 0.0))
    self.assertAlmostEqual(rnn.baseline, BASELINE)
    self.assertEqual(rnn.threshold, 0.01)

  def test_a_rising_metric_is_best_at_its_highest_and_reaches_from_below(self):
    outcome = curves.outcomes({'eval_accuracy': 0.95, 'threshold_accuracy': 0.99},
                              {'accuracy': {5: 0.5, 10: 0.991, 15: 0.95}})['accuracy']
    self.assertEqual((outcome.final, outcome.best, outcome.steps), (0.95, 0.991, 10))
    self.assertIsNone(curves.outcomes({'eval_loss': 0.3}, {'loss': {5: 0.2}})['loss'].steps)

  def test_the_figure_has_a_line_per_category_the_baseline_the_threshold_and_log_axes(self):
    figure = curves.draw(self.chart)
    width, height = figure.get_size_inches() * 100
    self.assertEqual(width, 640)  # Pixels at TensorBoard's scale: legible at its image size.
    self.assertBetween(height, 700, 900)
    final, best, steps = figure.axes
    self.assertEqual([a.get_ylabel() for a in figure.axes], ['final mse', 'best mse', 'steps to mse ≤ 0.01'])
    self.assertEqual(steps.get_xlabel(), 'seq_len')
    self.assertEqual(steps.get_xscale(), 'log')  # 10 to 100: a decade.
    self.assertEqual([t.get_text() for t in steps.get_xticklabels()], ['10', '100'])
    self.assertEqual(final.get_yscale(), 'log')  # 0.004 to 0.17.
    self.assertIn('eval mse against seq_len', figure.get_suptitle())
    legend, = figure.legends
    self.assertEqual([t.get_text() for t in legend.get_texts()],
                     ['baseline', 'threshold mse ≤ 0.01', 'rnn', 'gru', 'not reached'])
    self.assertEqual(legend.get_title().get_text(), 'arch')
    bars = {c.get_label(): c for c in final.containers}
    self.assertEqual(set(bars), {'rnn', 'gru'})
    x, y = (np.asarray(data, float) for data in bars['gru'].lines[0].get_data())  # errorbar keeps objects.
    np.testing.assert_allclose(x, [10, 100])
    np.testing.assert_allclose(y, [statistics.fmean([0.006, 0.004, 0.11]), statistics.fmean([0.002, 0.003, 0.001])])
    baseline = next(line for line in final.get_lines() if line.get_label() == 'baseline')
    np.testing.assert_allclose(baseline.get_ydata(), [BASELINE, BASELINE])
    steps_bars = {c.get_label(): c for c in steps.containers}
    np.testing.assert_allclose(np.asarray(steps_bars['gru'].lines[0].get_ydata(), float), [25, 30])
    np.testing.assert_allclose(np.asarray(steps_bars['rnn'].lines[0].get_xdata(), float), [10])  # Not at 100:
    never = [line for line in steps.get_lines() if line.get_label() == 'not reached']
    self.assertLen(never, 1)
    np.testing.assert_allclose(never[0].get_xdata(), [100])  # ... an x at the top instead of a number,
    self.assertEqual([t.get_text() for t in steps.texts], ['2/3'])  # and k/n where some seeds did not.

  def test_the_table_rows_png_and_tensorboard_image(self):
    with open(os.path.join(self.sweep_dir, 'summary.md')) as f:
      summary = f.read()
    self.assertIn('| arch | seq_len | n | final mse | best mse | steps to mse ≤ 0.01 |', summary)
    self.assertIn('| gru | 10 | 3/3 | 0.0400 ± 0.0606 | 0.0397 ± 0.0609 | 25 ± 7 (2/3) |', summary)  # As above.
    self.assertIn('| rnn | 10 | 3/3 | 0.0070 ± 0.0020 | 0.0070 ± 0.0020 | 27 ± 6 |', summary)  # 30, 30, 20.
    self.assertIn('| rnn | 100 | 2/3 | 0.1665 ± 0.0021 | 0.1600 ± 0.0000 | not reached (0/2) |', summary)
    self.assertIn('| gru | 100 | 3/3 | 0.0020 ± 0.0010 | 0.0020 ± 0.0010 | 30 ± 0 |', summary)
    self.assertIn('| rnn | 2/3 |', summary)  # The summary table is still first.
    self.assertIn('| gru | 100 | 3/3 |', self.printed)
    png = image_lib.imread(os.path.join(self.sweep_dir, 'curves', 'mse_vs_seq_len.png'))
    self.assertEqual(png.shape[1], 640)
    self.assertTrue(os.path.exists(os.path.join(self.sweep_dir, 'curves', 'loss_vs_seq_len.png')))
    events = testing.load_run(self.sweep_dir)
    self.assertNotIn('.', events.Runs())  # The sweep's root holds no events: its own folder sweep/ does.
    self.assertContainsSubset({'curves/mse_vs_seq_len', 'curves/loss_vs_seq_len'}, events.Runs()['sweep']['tensors'])
    image = testing.tensor_series(events, 'sweep', 'curves/mse_vs_seq_len')[0][1]
    self.assertEqual(image[0], b'640')  # tf.summary.image: width, height, PNG.

  def test_axes_and_one_figure_per_value_of_a_second_numeric_flag(self):
    grid = [('arch', ['rnn', 'gru']), ('units', ['8', '16']), ('seq_len', ['10', '20', '40']),
            ('optimizer', ['adam']), ('learning_rate', ['1e-3', '1e-2'])]
    self.assertEqual(curves.axes_of(grid), ('units', ['seq_len', 'learning_rate'], ['arch']))
    self.assertEqual(curves.axes_of([('arch', ['rnn', 'gru']), ('units', ['8x16', '16x32'])]),
                     (None, [], ['arch', 'units']))
    trials = trials_lib.make_trials(grid, 1)
    outcomes = {t.name: {'loss': curves.Outcome(1.0, 1.0, None, None, None)} for t in trials}
    charts = curves.charts(grid, trials, outcomes)
    self.assertEqual([c.name for c in charts], [f'loss_vs_units,seq_len={s},learning_rate={r}'
                                                for s in ('10', '20', '40') for r in ('1e-3', '1e-2')])
    self.assertEqual(list(charts[0].lines), [('rnn',), ('gru',)])
    self.assertEqual([p.x for p in charts[0].lines['gru',]], [8, 16])
    self.assertEqual(curves.charts([('arch', ['rnn', 'gru'])], trials, outcomes), [])


if __name__ == '__main__':
  absltest.main()

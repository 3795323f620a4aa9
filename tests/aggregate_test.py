"""A sweep's aggregates from trials' files written by hand (fast; sweep_test runs real trials): its TensorBoard
views, the summary table's metrics and its baseline row."""

import json
import os

from absl.testing import absltest

from harness import aggregate
from harness import runs
from harness import summaries
from harness import trials as trials_lib
from harness.errors import UserError
from tests import testing


def finished(**metrics):
  return {'status': 'finished', 'step': 10, 'total_steps': 10, **metrics}


class AggregateTest(absltest.TestCase):

  def make_sweep(self, losses):
    """An adding sweep of arch=rnn,lstm x 2 seeds whose trials evaluated `losses` ({trial: {step: loss}})."""
    sweep_dir = os.path.join(testing.make_tempdir(self), 'cmp')
    os.makedirs(sweep_dir)
    runs.write_whole(os.path.join(sweep_dir, 'sweep.json'), json.dumps(
        {'grid': [['arch', ['rnn', 'lstm']]], 'seeds': 2, 'fixed': ['--task=adding', '--train_steps=4']}))
    for trial, series in losses.items():
      writer = summaries.SummaryWriter(os.path.join(sweep_dir, trial, 'eval'))
      for step, loss in series.items():
        writer.write_scalars(step, {'Metrics/loss': loss})
      writer.close()
      runs.write_whole(os.path.join(sweep_dir, trial, 'metrics.json'), json.dumps(
          {'step': 4, 'total_steps': 4, 'status': 'finished', 'eval_loss': series[4], 'eval_mse': series[4],
           'baseline_loss': 1 / 6, 'baseline_mse': 1 / 6}))
    return sweep_dir

  def test_a_folder_without_a_sweep_or_with_a_damaged_one_is_one_line(self):
    sweep_dir = testing.make_tempdir(self)
    with self.assertRaisesRegex(UserError, r'not a sweep folder \(no sweep.json\)$'):
      aggregate.aggregate(sweep_dir)
    runs.write_whole(os.path.join(sweep_dir, 'sweep.json'), '{"grid": []}')
    with self.assertRaisesRegex(UserError, r'sweep.json: has no "seeds"'):
      aggregate.aggregate(sweep_dir)
    self.assertEqual(os.listdir(sweep_dir), ['sweep.json'])

  def test_eval_means_one_baseline_and_a_summary_run_no_root_run(self):
    sweep_dir = self.make_sweep({f'arch={arch},seed={seed}': {2: 0.2 + seed, 4: 0.1 + seed}
                                 for arch in ('rnn', 'lstm') for seed in (0, 1)})
    aggregate.aggregate(sweep_dir)
    events = testing.load_run(sweep_dir)
    derived = {run for run in events.Runs() if not run.startswith('arch=')}
    self.assertEqual(derived, {'mean/arch=rnn', 'mean/arch=lstm', 'baseline', 'sweep'})  # None named '.'.
    self.assertEqual(set(events.PluginRunToTagToContent('scalars')['mean/arch=rnn']),
                     {'mean_sd/loss', 'mean_sd/loss.lower', 'mean_sd/loss.upper'})  # mse is the loss: once.
    means = testing.scalar_series(events, 'mean/arch=rnn', 'mean_sd/loss')
    self.assertEqual([s for s, _ in means], [2, 4])
    self.assertSequenceAlmostEqual([m for _, m in means], [0.7, 0.6], places=6)
    upper = testing.scalar_series(events, 'mean/arch=rnn', 'mean_sd/loss.upper')[-1][1]
    self.assertAlmostEqual(upper, 0.6 + 2 ** -0.5, places=5)
    self.assertEqual(set(events.PluginRunToTagToContent('scalars')['baseline']), {'Metrics/loss'})
    self.assertEqual([s for s, _ in testing.scalar_series(events, 'baseline', 'Metrics/loss')], [2, 4])
    self.assertEqual(set(events.PluginRunToTagToContent('hparams')), set())  # No experiment is declared.


class SummaryTableTest(absltest.TestCase):

  def test_a_loss_equal_to_the_mse_is_shown_once_and_a_loss_that_differs_is_kept(self):
    regression = {'a': finished(eval_loss=0.2, eval_mse=0.2), 'b': finished(eval_loss=0.1, eval_mse=0.1)}
    self.assertEqual(aggregate._markdown_metrics(['eval_loss', 'eval_mse'], regression), ['eval_mse'])
    classes = {'a': finished(eval_loss=0.2, eval_accuracy=0.2), 'b': finished(eval_loss=0.3, eval_accuracy=0.9)}
    self.assertEqual(aggregate._markdown_metrics(['eval_accuracy', 'eval_loss'], classes),
                     ['eval_accuracy', 'eval_loss'])

  def test_one_baseline_row_when_the_groups_share_it_else_one_per_group(self):
    trials = trials_lib.make_trials([('arch', ['rnn', 'gru'])], 1)
    groups = {}
    for trial in trials:
      groups.setdefault(trial.group, []).append(trial)
    shared = {t.name: finished(eval_mse=0.01, baseline_mse=1 / 6, baseline_loss=1 / 6) for t in trials}
    self.assertEqual(aggregate._baseline_rows(groups, shared, 1, ['eval_mse']),
                     ['| memoryless baseline |  | 0.1667 |  |'])
    differing = {t.name: finished(eval_mse=0.01, baseline_mse=0.1 * (i + 1)) for i, t in enumerate(trials)}
    self.assertEqual(aggregate._baseline_rows(groups, differing, 1, ['eval_mse']),
                     [f'| baseline of {trials[0].group} |  | 0.1000 |  |',
                      f'| baseline of {trials[1].group} |  | 0.2000 |  |'])
    self.assertEqual(aggregate._baseline_rows(groups, {t.name: finished(eval_mse=0.01) for t in trials}, 1,
                                              ['eval_mse']), [])


if __name__ == '__main__':
  absltest.main()

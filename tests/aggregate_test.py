"""A sweep's aggregates from trials' files written by hand (fast; sweep_test runs real trials): its TensorBoard
views, the summary table's metrics and its baseline row."""

import csv
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

  def make_sweep(self, losses, subset_losses=None):
    """An adding sweep of arch=rnn,lstm x 2 seeds whose trials evaluated `losses` ({trial: {step: loss}}), and
    `subset_losses` likewise on a subset of the test split."""
    sweep_dir = os.path.join(testing.make_tempdir(self), 'cmp')
    os.makedirs(sweep_dir)
    runs.write_whole(os.path.join(sweep_dir, 'sweep.json'), json.dumps(
        {'grid': [['arch', ['rnn', 'lstm']]], 'seeds': 2, 'fixed': ['--task=adding', '--train_steps=4']}))
    for trial, series in losses.items():
      writer = summaries.SummaryWriter(os.path.join(sweep_dir, trial, 'eval'))
      for step, loss in series.items():
        writer.write_scalars(step, {'Metrics/loss': loss})
      writer.close()
      if subset_losses:
        writer = summaries.SummaryWriter(os.path.join(sweep_dir, trial, runs.EVAL_SUBSET_FOLDER))
        for step, loss in subset_losses[trial].items():
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

  def test_the_subset_evaluations_have_their_own_means(self):
    trials = [f'arch={arch},seed={seed}' for arch in ('rnn', 'lstm') for seed in (0, 1)]
    sweep_dir = self.make_sweep({trial: {4: 0.1 + i} for i, trial in enumerate(trials)},
                                {trial: {1: 0.4 + i, 2: 0.3 + i} for i, trial in enumerate(trials)})
    aggregate.aggregate(sweep_dir)
    events = testing.load_run(sweep_dir)
    self.assertEqual({run for run in events.Runs() if run.startswith('mean')},
                     {'mean/arch=rnn', 'mean/arch=lstm', 'mean_subset/arch=rnn', 'mean_subset/arch=lstm'})
    (step, mean), = testing.scalar_series(events, 'mean/arch=rnn', 'mean_sd/loss')  # The whole split's, alone.
    self.assertEqual(step, 4)
    self.assertAlmostEqual(mean, 0.6, places=6)
    subset = testing.scalar_series(events, 'mean_subset/arch=rnn', 'mean_sd/loss')
    self.assertEqual([s for s, _ in subset], [1, 2])
    self.assertSequenceAlmostEqual([m for _, m in subset], [0.9, 0.8], places=6)
    self.assertEqual([s for s, _ in testing.scalar_series(events, 'baseline', 'Metrics/loss')], [1, 2, 4])


class SummaryTableTest(absltest.TestCase):

  def test_a_loss_equal_to_the_mse_is_shown_once_and_a_loss_that_differs_is_kept(self):
    regression = {'a': finished(eval_loss=0.2, eval_mse=0.2), 'b': finished(eval_loss=0.1, eval_mse=0.1)}
    self.assertEqual(aggregate._markdown_metrics(['eval_loss', 'eval_mse'], regression), ['eval_mse'])
    classes = {'a': finished(eval_loss=0.2, eval_accuracy=0.2), 'b': finished(eval_loss=0.3, eval_accuracy=0.9)}
    self.assertEqual(aggregate._markdown_metrics(['eval_accuracy', 'eval_loss'], classes),
                     ['eval_accuracy', 'eval_loss'])

  def test_each_group_says_what_its_trials_spent(self):
    sweep_dir = testing.make_tempdir(self)
    trials = trials_lib.make_trials([('arch', ['rnn', 'gru'])], 2)
    groups = {}
    for trial in trials:
      groups.setdefault(trial.group, []).append(trial)
    spent = [dict(params=1234, train_seconds=30.0, step=600, examples=30_000),
             dict(params=1234, train_seconds=30.0, step=500, examples=25_000),
             dict(params=5678, train_seconds=60.0, step=100, examples=5_000),
             dict(params=5678, train_seconds=60.0, step=100, examples=5_000)]
    results = {t.name: finished(eval_mse=0.1, total_steps=fields['step'], **fields) for t, fields in zip(trials, spent)}
    markdown = aggregate._write_summary(sweep_dir, groups, results, ['arch'], ['eval_mse'])
    self.assertEqual(markdown.splitlines()[0],
                     '| arch | n | mse | params | train minutes | steps | examples | examples/s |')
    # The seeds that agree show one value; those that differ, mean ± sd.
    self.assertEqual(markdown.splitlines()[2],
                     '| rnn | 2/2 | 0.1000 ± 0.0000 | 1,234 | 0.50 | 550 ± 71 | 27,500 ± 3,536 | 917 ± 118 |')
    self.assertEqual(markdown.splitlines()[3], '| gru | 2/2 | 0.1000 ± 0.0000 | 5,678 | 1.00 | 100 | 5,000 | 83 |')
    with open(os.path.join(sweep_dir, 'summary.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual(float(rows[0]['params_mean']), 1234)
    self.assertAlmostEqual(float(rows[0]['examples_per_sec_mean']), (1000 + 2500 / 3) / 2)  # The trials' mean.

  def test_one_baseline_row_when_the_groups_share_it_else_one_per_group(self):
    trials = trials_lib.make_trials([('arch', ['rnn', 'gru'])], 1)
    groups = {}
    for trial in trials:
      groups.setdefault(trial.group, []).append(trial)
    shared = {t.name: finished(eval_mse=0.01, baseline_mse=1 / 6, baseline_loss=1 / 6) for t in trials}
    spent = '  |' * len(aggregate.RUN_COLUMNS)  # Blank under what the trials spent.
    self.assertEqual(aggregate._baseline_rows(groups, shared, 1, ['eval_mse']),
                     [f'| memoryless baseline |  | 0.1667 |{spent}'])
    differing = {t.name: finished(eval_mse=0.01, baseline_mse=0.1 * (i + 1)) for i, t in enumerate(trials)}
    self.assertEqual(aggregate._baseline_rows(groups, differing, 1, ['eval_mse']),
                     [f'| baseline of {trials[0].group} |  | 0.1000 |{spent}',
                      f'| baseline of {trials[1].group} |  | 0.2000 |{spent}'])
    self.assertEqual(aggregate._baseline_rows(groups, {t.name: finished(eval_mse=0.01) for t in trials}, 1,
                                              ['eval_mse']), [])


if __name__ == '__main__':
  absltest.main()

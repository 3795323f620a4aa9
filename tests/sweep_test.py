"""Sweeps: trial folders and names, aggregates, resuming a sweep, failing trials, refusing a changed grid."""

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from absl.testing import absltest
import pytest
from tensorboard.plugins.hparams import plugin_data_pb2

from harness import runs
from harness.errors import UserError

from tests import testing

pytestmark = pytest.mark.slow  # Each sweep runs several trials in subprocesses.

FIXED = ['--task=sin2cos', '--units=4', '--batch_size=8', '--seq_len=5', '--train_steps=12', '--summary_every=4',
         '--eval_every=6', '--histogram_every=0']


def sweep_command(logdir, *args, fixed=FIXED):
  return [sys.executable, '-m', 'harness.sweep', '--name=cmp', f'--logdir={logdir}', *args, '--', *fixed]


class SweepTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')
    self.sweep_dir = os.path.join(self.logdir, 'cmp')

  def sweep(self, *args, fixed=FIXED):
    return subprocess.run(sweep_command(self.logdir, *args, fixed=fixed), capture_output=True, text=True,
                          cwd=testing.REPO_ROOT, timeout=600)

  def lock_free(self, workdir):
    lock = runs.RunLock(workdir)
    try:
      lock.acquire()
    except UserError:
      return False
    lock.release()
    return True

  def read_csv(self, name):
    with open(os.path.join(self.sweep_dir, name)) as f:
      return list(csv.DictReader(f))

  def test_a_grid_times_seeds_then_aggregates_that_match_the_trials(self):
    result = self.sweep('--grid=arch=rnn,gru', '--seeds=2', '--parallel=2')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    names = ['arch=rnn,seed=0', 'arch=rnn,seed=1', 'arch=gru,seed=0', 'arch=gru,seed=1']
    self.assertContainsSubset(names, os.listdir(self.sweep_dir))
    metrics = {}
    for name in names:
      with open(os.path.join(self.sweep_dir, name, 'metrics.json')) as f:
        metrics[name] = json.load(f)
      with open(os.path.join(self.sweep_dir, name, 'flags.txt')) as f:
        self.assertIn(f'--arch={name[5:8]}\n', f.read())
    rows = {row['trial']: row for row in self.read_csv('results.csv')}
    self.assertEqual(set(rows), set(names))
    self.assertAlmostEqual(float(rows['arch=gru,seed=1']['eval_mse']), metrics['arch=gru,seed=1']['eval_mse'])
    summary = {row['arch']: row for row in self.read_csv('summary.csv')}
    for arch in ('rnn', 'gru'):
      values = [metrics[f'arch={arch},seed={s}']['eval_mse'] for s in range(2)]
      self.assertEqual(summary[arch]['n'], '2')
      self.assertAlmostEqual(float(summary[arch]['eval_mse_mean']), statistics.fmean(values), places=6)
      self.assertAlmostEqual(float(summary[arch]['eval_mse_sd']), statistics.stdev(values), places=6)
    self.assertIn('| rnn | 2/2 |', result.stdout)
    with open(os.path.join(self.sweep_dir, 'summary.md')) as f:
      # sin2cos: its loss is its MSE, shown once.
      self.assertIn('| arch | n | mse | params | train minutes | steps | examples | examples/s |', f.read())
    self.assertRegex(result.stdout.splitlines()[-1],
                     rf'^harness.sweep: sweep folder {self.sweep_dir}; summary table {self.sweep_dir}/summary.md; '
                     rf'look inside with: \S*tensorboard --logdir {self.sweep_dir}$')

    events = testing.load_run(self.sweep_dir)
    # Runs are the folders with curves, and one for the sweep's text and layout; none is named '.'.
    self.assertEqual(set(events.Runs()), {f'{name}/{split}' for name in names for split in ('train', 'eval')}
                     | {'mean/arch=rnn', 'mean/arch=gru', 'sweep'})
    for arch in ('rnn', 'gru'):
      means = testing.scalar_series(events, f'mean/arch={arch}', 'mean_sd/loss')
      trials = [dict(testing.scalar_series(events, f'arch={arch},seed={s}/eval', 'Metrics/loss')) for s in range(2)]
      self.assertEqual([step for step, _ in means], [6, 12])
      for step, mean in means:
        self.assertAlmostEqual(mean, statistics.fmean(t[step] for t in trials), places=5)
      upper = dict(testing.scalar_series(events, f'mean/arch={arch}', 'mean_sd/loss.upper'))
      self.assertAlmostEqual(upper[12] - dict(means)[12], statistics.stdev(t[12] for t in trials), places=5)
    content = events.PluginRunToTagToContent('hparams')
    self.assertEqual(sorted(content), sorted(f'{name}/eval' for name in names))  # Sessions; no experiment declared.
    start = plugin_data_pb2.HParamsPluginData.FromString(content[f'{names[0]}/eval']['_hparams_/session_start_info'])
    self.assertEqual(start.session_start_info.group_name, f'cmp/{names[0]}')  # Two sweeps' trials never merge.
    self.assertNotIn('view', start.session_start_info.hparams)  # Not an image task: no dummy value.
    end = plugin_data_pb2.HParamsPluginData.FromString(content[f'{names[0]}/eval']['_hparams_/session_end_info'])
    self.assertEqual(end.session_end_info.status, 1)  # STATUS_SUCCESS.
    layout = events.PluginRunToTagToContent('custom_scalars')['sweep']
    self.assertIn('custom_scalars__config__', layout)

  def test_a_rerun_finishes_only_what_is_left_and_a_failing_trial_is_isolated(self):
    process = subprocess.Popen(sweep_command(self.logdir, '--grid=learning_rate=0.01,0.02', '--parallel=1'),
                               cwd=testing.REPO_ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    first = os.path.join(self.sweep_dir, 'learning_rate=0.01,seed=0', 'metrics.json')
    deadline = time.time() + 300
    while not os.path.exists(first) and time.time() < deadline:
      time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # Its running trial gets SIGTERM: it checkpoints and stops.
    process.wait()
    second = os.path.join(self.sweep_dir, 'learning_rate=0.02,seed=0')
    deadline = time.time() + 120
    while os.path.exists(os.path.join(second, runs.LOCK_FILE)) and not self.lock_free(second):
      self.assertLess(time.time(), deadline, f'{second} is still locked 120 s after the sweep was killed')
      time.sleep(0.2)
    with open(first) as f:
      finished = f.read()
    again = self.sweep('--grid=learning_rate=0.01,0.02', '--parallel=1')
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn('1 of 2 trials already finished', again.stderr)
    with open(first) as f:
      self.assertEqual(f.read(), finished)  # Not run again.
    self.assertEqual(len(self.read_csv('results.csv')), 2)
    self.assertTrue(os.path.exists(os.path.join(self.sweep_dir, 'curves', 'mse_vs_learning_rate.png')))
    with open(os.path.join(self.sweep_dir, 'summary.md')) as f:  # A numeric axis: the metric against it.
      self.assertIn('| learning_rate | n | final mse | best mse |\n|---|---|---|---|\n| 0.01 | 1/1 |', f.read())

    changed = self.sweep('--grid=learning_rate=0.01,0.05', '--parallel=1')
    self.assertEqual(changed.returncode, 2)
    self.assertIn('holds a sweep with another grid', changed.stderr.strip().splitlines()[-1])

    failing = subprocess.run(sweep_command(os.path.join(self.logdir, 'other'), '--grid=learning_rate=0.01,1e30',
                                           fixed=FIXED + ['--optimizer=sgd', '--lr_schedule=constant']),
                             capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=600)
    self.assertEqual(failing.returncode, 1, failing.stderr[-3000:])
    self.assertRegex(failing.stderr, r'trial learning_rate=1e30,seed=0 failed: harness.train: error: loss became '
                                     r'non-finite .*\(log: .*logs/learning_rate=1e30,seed=0.log\)')
    rows = {row['trial']: row for row in csv.DictReader(open(os.path.join(self.logdir, 'other', 'cmp', 'results.csv')))}
    self.assertEqual((rows['learning_rate=0.01,seed=0']['status'], rows['learning_rate=1e30,seed=0']['status']),
                     ('finished', 'failed'))
    with open(os.path.join(self.logdir, 'other', 'cmp', 'summary.md')) as f:  # No finished seed: no figure.
      self.assertRegex(f.read(), r'\n\| 1e30 \| 0/1 \|( — \|)+\n')

  def test_budgets_are_axes_and_the_summary_says_what_each_trial_spent(self):
    fixed = ['--task=sin2cos', '--batch_size=8', '--seq_len=5', '--summary_every=50', '--histogram_every=0']
    result = self.sweep('--grid=param_budget=400,800', '--grid=time_budget=0.02,0.04', '--parallel=2', fixed=fixed)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    summary = {(row['param_budget'], row['time_budget']): row for row in self.read_csv('summary.csv')}
    for param_budget, units in (('400', '9'), ('800', '13')):  # LSTM(9): 406 parameters, LSTM(13): 794.
      for time_budget in ('0.02', '0.04'):
        name = f'param_budget={param_budget},time_budget={time_budget},seed=0'
        with open(os.path.join(self.sweep_dir, name, 'metrics.json')) as f:
          metrics = json.load(f)
        with open(os.path.join(self.sweep_dir, name, 'flags.txt')) as f:
          self.assertIn(f'--units={units}\n', f.read())
        self.assertLessEqual(abs(metrics['params'] - int(param_budget)), 0.02 * int(param_budget))
        self.assertGreaterEqual(metrics['train_seconds'], 60 * float(time_budget))
        self.assertEqual(metrics['examples'], 8 * metrics['step'])
        row = summary[param_budget, time_budget]
        self.assertEqual(float(row['params_mean']), metrics['params'])
        self.assertEqual(float(row['steps_mean']), metrics['step'])
        self.assertAlmostEqual(float(row['train_minutes_mean']), metrics['train_seconds'] / 60)
        self.assertAlmostEqual(float(row['examples_per_sec_mean']), metrics['examples'] / metrics['train_seconds'])
    with open(os.path.join(self.sweep_dir, 'summary.md')) as f:
      self.assertRegex(f.read(), r'\| 400 \| 0\.02 \| 1/1 \| \d\.\d{4} ± 0\.0000 \| 406 \| 0\.0\d \| [\d,]+ \| '
                                 r'[\d,]+ \| [\d,]+ \|')

  def test_commands_for_a_cluster_and_bad_input(self):
    listed = self.sweep('--grid=arch=rnn,gru', '--seeds=2', '--print_commands')
    self.assertEqual(listed.returncode, 0, listed.stderr)
    commands = listed.stdout.strip().splitlines()
    self.assertLen(commands, 4)
    self.assertIn('--run_name=arch=gru,seed=1', commands[-1])
    self.assertIn('--seed=1', commands[-1])
    one = self.sweep('--grid=arch=rnn,gru', '--trial_index=1')
    self.assertEqual(one.returncode, 0, one.stderr[-3000:])
    self.assertEqual(sorted(n for n in os.listdir(self.sweep_dir) if n.startswith('arch')), ['arch=gru,seed=0'])
    for args, expected in ((['--grid=seed=1,2'], 'seed is not a flag a sweep can vary'),
                           (['--grid=arch=rnn,transformer'], 'trial arch=transformer,seed=0: '),
                           (['--grid=arch=rnn', '--trial_index=5'], '--trial_index=5: the sweep has 1 trials')):
      with self.subTest(args=args):
        bad = self.sweep(*args)
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn(expected, bad.stderr.strip().splitlines()[-1])


if __name__ == '__main__':
  absltest.main()

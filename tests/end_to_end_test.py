"""`python -m harness.train` as a subprocess: runs, kills, resumes, real data."""

import json
import os
import re
import signal
import subprocess
import sys

from absl.testing import absltest
import pytest

from harness.tasks import sources
from tests import testing

pytestmark = pytest.mark.slow  # Each test starts TensorFlow in subprocesses.

TINY_FLAGS = [*testing.TINY_FLAGS, '--batch_size=16', '--histogram_every=10']


def read_json(path):
  with open(path) as f:
    return json.load(f)


class EndToEndTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = testing.make_tempdir(self)
    self.logdir = os.path.join(self.root, 'runs')
    self.data_dir = os.path.join(self.root, 'tfds')

  def harness(self, *args, **kwargs):
    return testing.run_harness([f'--logdir={self.logdir}', f'--data_dir={self.data_dir}', *TINY_FLAGS, *args],
                               **kwargs)

  def test_mnist_run_writes_events_flags_and_metrics_and_reruns_from_its_flagfile(self):
    result = self.harness('--task=mnist', '--arch=gru', '--train_steps=20', '--run_name=first')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    run_dir = os.path.join(self.logdir, 'first')
    events = testing.load_run(run_dir)
    self.assertEqual([s for s, _ in testing.scalar_series(events, 'train', 'Metrics/loss')], [5, 10, 15, 20])
    self.assertEqual([s for s, _ in testing.scalar_series(events, 'eval', 'Metrics/accuracy')], [10, 20])
    self.assertIn('gradients/layer_0/recurrent_kernel',
                  events.PluginRunToTagToContent('histograms')['train'])
    metrics = read_json(os.path.join(run_dir, 'metrics.json'))
    self.assertEqual(metrics['step'], 20)
    self.assertAlmostEqual(metrics['eval_accuracy'], testing.scalar_series(events, 'eval', 'Metrics/accuracy')[-1][1])
    if 'mnist_sample' in metrics['data_source']:  # Offline: the shipped sample, said loudly.
      self.assertIn('FULL MNIST IS NOT AVAILABLE', result.stderr)
    with open(os.path.join(run_dir, 'flags.txt')) as f:
      flags_text = f.read()
    self.assertIn(f'# data_source: {metrics["data_source"]}', flags_text)

    again = testing.run_harness([f'--flagfile={os.path.join(run_dir, "flags.txt")}', '--run_name=second'])
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertEqual(read_json(os.path.join(self.logdir, 'second', 'config.json')),
                     {**read_json(os.path.join(run_dir, 'config.json')), 'run_name': 'second'})
    self.assertEqual(read_json(os.path.join(self.logdir, 'second', 'metrics.json'))['eval_loss'],
                     metrics['eval_loss'])  # Same seed, same data order: the same run again.

  def test_sigkill_at_any_moment_then_resume_ends_identical_to_an_uninterrupted_run(self):
    flags = ['--task=sin2cos', '--stateful', '--deterministic', '--train_steps=60', '--checkpoint_every=7']
    whole = self.harness(*flags, '--run_name=whole')
    self.assertEqual(whole.returncode, 0, whole.stderr[-3000:])
    process = testing.start_harness(f'--logdir={self.logdir}', *TINY_FLAGS, *flags, '--run_name=killed')
    for line in process.stderr:
      if 'step 25/60' in line:
        break
    process.send_signal(signal.SIGKILL)
    process.wait()
    metrics_path = os.path.join(self.logdir, 'killed', 'metrics.json')
    self.assertFalse(os.path.exists(metrics_path))
    resumed = self.harness(*flags, '--run_name=killed', '--resume')
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
    # Killed after step 25 was logged: the newest whole checkpoint is one of every 7 steps, at or after 21.
    restored = re.search(r'resumed from .*ckpt-(\d+) at step (\d+)', resumed.stderr)
    self.assertIsNotNone(restored, resumed.stderr[-3000:])
    checkpoint, step = int(restored.group(1)), int(restored.group(2))
    self.assertEqual((checkpoint, step % 7), (step, 0))
    self.assertGreaterEqual(step, 21)
    # Time: this process's wall time and shares, the whole run's training time, each named.
    self.assertRegex(resumed.stdout, r'finished step 60 of 60 this process \(steps \d+-60\) in \d+m\d\ds \(\d+ % '
                                     r'.*training steps.*\); the whole run \d+m\d\ds in training steps; test loss ')
    expected = read_json(os.path.join(self.logdir, 'whole', 'metrics.json'))
    actual = read_json(metrics_path)
    self.assertEqual(actual['step'], 60)
    self.assertEqual(actual['eval_mse'], expected['eval_mse'])
    steps = [s for s, _ in testing.scalar_series(testing.load_run(os.path.join(self.logdir, 'killed')),
                                                   'train', 'Metrics/loss')]
    self.assertEqual(steps, list(range(5, 61, 5)))

  def test_sigterm_and_sigint_checkpoint_and_exit_cleanly(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      process = testing.start_harness(f'--logdir={self.logdir}', *TINY_FLAGS, '--task=sin2cos',
                                      '--train_steps=100000', '--checkpoint_every=100000', f'--run_name={sig.name}')
      for line in process.stderr:
        if 'step 10/' in line:
          break
      process.send_signal(sig)
      stderr = process.stderr.read()
      self.assertEqual(process.wait(timeout=120), 128 + sig)
      self.assertNotIn('Traceback', stderr)
      self.assertIn(f'stopped by {sig.name}', stderr)
      metrics = read_json(os.path.join(self.logdir, sig.name, 'metrics.json'))
      self.assertEqual(metrics['stopped_by'], sig.name)
      checkpoints = os.listdir(os.path.join(self.logdir, sig.name, 'checkpoints'))
      self.assertIn(f'ckpt-{metrics["step"]}.index', checkpoints)

  def test_non_finite_loss_is_a_one_line_error_and_keeps_the_run(self):
    result = self.harness('--task=sin2cos', '--optimizer=sgd', '--learning_rate=1e30', '--lr_schedule=constant',
                          '--train_steps=50', '--summary_every=1', '--checkpoint_every=1', '--run_name=nan')
    self.assertEqual(result.returncode, 2)
    self.assertNotIn('Traceback', result.stderr)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r'^harness.train: error: loss became non-finite \(NaN or inf\) at step \d+; stopped, '
                     r'last good checkpoint kept: .*ckpt-\d+')
    self.assertTrue(os.path.isdir(os.path.join(self.logdir, 'nan', 'checkpoints')))

  def test_two_runs_started_at_once_never_collide(self):
    processes = [testing.start_harness(f'--logdir={self.logdir}', *TINY_FLAGS, '--task=sin2cos', '--train_steps=3')
                 for _ in range(2)]
    for process in processes:
      self.assertEqual(process.wait(timeout=300), 0, process.stderr.read()[-2000:])
    runs = os.listdir(self.logdir)
    self.assertLen(runs, 2)
    for run in runs:
      self.assertEqual(read_json(os.path.join(self.logdir, run, 'metrics.json'))['step'], 3)

  @absltest.skipUnless(os.path.isdir(sources.DEBIAN_FASHION_MNIST_DIR) or os.environ.get('CI'),
                       'needs Debian\'s dataset-fashion-mnist (CI installs it)')
  def test_trains_on_real_fashion_mnist_imported_into_tfds(self):
    result = self.harness('--task=fashion_mnist', '--arch=lstm', '--train_steps=3', '--eval_every=3',
                          '--run_name=fashion', timeout=600)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    metrics = read_json(os.path.join(self.logdir, 'fashion', 'metrics.json'))
    self.assertIn(f'imported from IDX files in {sources.DEBIAN_FASHION_MNIST_DIR}', metrics['data_source'])
    self.assertTrue(os.path.exists(os.path.join(self.data_dir, 'fashion_mnist', '3.0.1', 'dataset_info.json')))
    events = testing.load_run(os.path.join(self.logdir, 'fashion'))
    (step, confusion), = testing.tensor_series(events, 'eval', 'figures/confusion_matrix')
    self.assertEqual(step, 3)


class ConsoleTest(absltest.TestCase):
  """What a user sees: the harness's own lines, no library noise, a useful ending."""

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')

  def test_a_default_verbosity_run_says_each_phase_in_order_and_ends_with_where_to_look(self):
    result = testing.run_harness([f'--logdir={self.logdir}', '--task=mnist', '--units=8', '--train_steps=300',
                                  '--batch_size=16', '--histogram_every=100', '--run_name=quiet'])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    output = result.stderr + result.stdout
    for noise in ('absl::InitializeLog', 'oneDNN custom operations', 'cuda', 'CUDA', 'cpu_feature_guard',
                  'dataset_info.json', 'Sharding callback', '\x1b[', '\r', 'findfont'):
      self.assertNotIn(noise, output)
    lines = output.splitlines()
    self.assertEqual([line for line in lines if re.match(r'^[IWE]\d{4} ', line)], [])  # No absl prefix.
    expected = [r'config: defaults but .*--train_steps=300', r'starting TensorFlow, then the data', r'run folder: ',
                r'data: ', r'model: lstm, ',
                r'probes at step 0, before the first update \(weights, ',
                r'tracing the train step \(once per process',
                r'evaluation on the test split (every \d+ steps and at the last|at the last step only): one takes '
                r'~[\d.]+ s \(estimated from one batch\), the time of ~\d+ steps; .*\(--eval_every=N sets the '
                r'cadence\)$',
                r'step 100/300 \(epoch 0\.2 of 0\.6\)  train, mean of the last 100 steps: loss \d\.\d{4}  '
                r'accuracy \d\.\d{4}  \d+ examples/s  ETA ',
                r'step 300 of 300 reached: probes, evaluation on the whole test split and its figures, checkpoint',
                r'test at step 300 \(2,000 examples\): loss \d\.\d{4}, accuracy \d\.\d{4}$']
    found = [next((i for i, line in enumerate(lines) if re.match(pattern, line)), None) for pattern in expected]
    self.assertNotIn(None, found, output)
    self.assertEqual(found, sorted(found), output)
    last = result.stdout.strip().splitlines()[-2:]
    self.assertRegex(last[0], r'^harness.train: finished step 300 of 300 in \dm\d\ds \((\d+ % [a-z ]+, )+\d+ % '
                              r'start-up and the rest\); test loss \d\.\d{4}, accuracy 0\.\d{4}$')
    self.assertIn('% training steps', last[0])
    self.assertRegex(last[1], f'^harness.train: run folder {os.path.join(self.logdir, "quiet")}; look inside with: '
                              rf'\S*tensorboard --logdir {self.logdir}$')
    events = testing.load_run(os.path.join(self.logdir, 'quiet'))
    self.assertEqual(testing.scalar_series(events, 'eval', 'Metrics/accuracy')[-1][0], 300)

  def test_an_existing_run_name_is_refused_before_tensorflow_starts(self):
    started = os.path.join(self.logdir, 'taken')
    os.makedirs(started)
    with open(os.path.join(started, 'config.json'), 'w') as f:
      f.write('{}')
    command = ('import runpy, sys, time\n'
               'start = time.perf_counter()\n'
               'try:\n'
               '  runpy.run_module("harness.train", run_name="__main__")\n'
               'except SystemExit as e:\n'
               '  print(e.code, "tensorflow" in sys.modules, time.perf_counter() - start)\n')
    result = subprocess.run([sys.executable, '-c', command, f'--logdir={self.logdir}', '--run_name=taken'],
                            capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=60)
    code, imported, seconds = result.stdout.split()
    self.assertEqual((code, imported), ('2', 'False'))
    self.assertLess(float(seconds), 1.0)
    self.assertIn('--run_name=taken: ', result.stderr)
    self.assertIn('already exists; pass --resume', result.stderr)


if __name__ == '__main__':
  absltest.main()

"""Faults that must never lose a run: kills, signals, broken checkpoints, full disks, second processes.

Each test breaks something on purpose and asserts the outcome: the exit
status, one line of error and no traceback, which checkpoint the run resumes
from, and that no earlier checkpoint, event file or metrics file was deleted
or rewritten.
"""

import errno
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from unittest import mock

from absl.testing import absltest
import pytest
import tensorflow as tf

from harness import loop
from harness import runs
from harness import sweep
from harness.errors import EnvironmentFault
from harness.errors import UserError
from harness.tasks import sources
from tests import testing

pytestmark = pytest.mark.slow  # Several runs per test, many in subprocesses.

TINY_FLAGS = ['--task=sin2cos', *testing.TINY_FLAGS, '--batch_size=8', '--histogram_every=0', '--deterministic']


def read(path, mode='r'):
  with open(path, mode) as f:
    return f.read()


def snapshot(workdir):
  """{relative path: bytes} of every file under the run folder but the lock."""
  return {os.path.relpath(p, workdir): read(p, 'rb') for p in glob.glob(os.path.join(workdir, '**'), recursive=True)
          if os.path.isfile(p) and not p.endswith(runs.LOCK_FILE)}


def delete_checkpoints_after(workdir, step):
  """What a kill after the checkpoint of `step` leaves: no later checkpoint, no metrics.json."""
  for path in glob.glob(os.path.join(workdir, 'checkpoints', 'ckpt-*')):
    if int(os.path.basename(path).split('.')[0][5:]) > step:
      os.remove(path)
  if os.path.exists(os.path.join(workdir, 'metrics.json')):
    os.remove(os.path.join(workdir, 'metrics.json'))


def one_error_line(test_case, result, status, expected):
  test_case.assertEqual(result.returncode, status, result.stderr[-3000:])
  test_case.assertNotIn('Traceback', result.stderr)
  lines = [line for line in result.stderr.splitlines() if line.startswith('harness.train:')]
  test_case.assertLen(lines, 1, result.stderr[-3000:])
  test_case.assertIn(expected, lines[0])
  return lines[0]


class CheckpointFaultTest(absltest.TestCase):
  """In-process: broken, missing and unwritable checkpoints."""

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(testing.make_tempdir(self), 'run')
    self.task = testing.learnable_image_task()
    self.checkpoints = os.path.join(self.workdir, 'checkpoints')

  def train(self, **overrides):
    return loop.train_and_evaluate(testing.tiny_config(**{**testing.TINY, 'train_steps': 9, 'checkpoint_every': 3,
                                                          'eval_every': 3, 'deterministic': True, **overrides}),
                                   self.workdir, task=self.task)

  def test_resume_continues_at_the_right_step_and_matches_an_uninterrupted_run(self):
    uninterrupted = self.train()
    delete_checkpoints_after(self.workdir, 3)  # Killed after the checkpoint of step 3.
    resumed = self.train()
    self.assertEqual(resumed['step'], 9)
    self.assertEqual(resumed['weights_sha256'], uninterrupted['weights_sha256'])
    self.assertEqual(resumed['eval_loss'], uninterrupted['eval_loss'])
    steps = [s for s, _ in testing.scalar_series(testing.load_run(self.workdir), 'train', 'Metrics/loss')]
    self.assertEqual(steps, [2, 4, 6, 8, 9])  # The overlap 4..9 was purged and written once more.

  def test_a_truncated_latest_checkpoint_falls_back_to_the_one_before_and_is_kept_aside(self):
    for suffix in ('.data-00000-of-00001', '.index'):
      with self.subTest(suffix=suffix):
        self.train(train_steps=6)
        broken = os.path.join(self.checkpoints, f'ckpt-6{suffix}')
        raw = read(broken, 'rb')
        with open(broken, 'wb') as f:
          f.write(raw[:len(raw) // 2])
        os.remove(os.path.join(self.workdir, 'metrics.json'))
        older = read(os.path.join(self.checkpoints, 'ckpt-3.index'), 'rb')
        with self.assertLogs(level='INFO') as logs:
          resumed = self.train()
        self.assertTrue(any('checkpoint ckpt-6 cannot be restored' in line for line in logs.output), logs.output)
        self.assertTrue(any('resumed from' in line and 'ckpt-3 at step 3' in line for line in logs.output))
        self.assertEqual(resumed['step'], 9)
        self.assertEqual(read(os.path.join(self.checkpoints, 'broken', f'ckpt-6{suffix}'), 'rb'), raw[:len(raw) // 2])
        self.assertEqual(older, read(os.path.join(self.checkpoints, 'ckpt-3.index'), 'rb'))
        self.assertIn('ckpt-9', tf.train.latest_checkpoint(self.checkpoints))
        shutil.rmtree(self.workdir)

  def test_a_deleted_latest_index_never_restarts_from_scratch_nor_loses_older_checkpoints(self):
    self.train(train_steps=9)
    os.remove(os.path.join(self.checkpoints, 'ckpt-9.index'))
    os.remove(os.path.join(self.workdir, 'metrics.json'))
    kept = {name: read(os.path.join(self.checkpoints, name), 'rb') for name in os.listdir(self.checkpoints)
            if name.startswith(('ckpt-3.', 'ckpt-6.'))}
    resumed = self.train(train_steps=12)
    self.assertEqual(resumed['step'], 12)
    self.assertTrue(os.path.exists(os.path.join(self.checkpoints, 'broken', 'ckpt-9.data-00000-of-00001')))
    steps = [s for s, _ in testing.scalar_series(testing.load_run(self.workdir), 'train', 'Metrics/loss')]
    self.assertEqual(steps, [2, 4, 6, 8, 10, 12])  # Resumed at 6, not 0: steps 1..6 are written once.
    # Rotation keeps 3: after saves at 9 and 12 the restored ckpt-6 is still there.
    self.assertIn('ckpt-6.index', os.listdir(self.checkpoints))
    for name, content in kept.items():
      if os.path.exists(os.path.join(self.checkpoints, name)):
        self.assertEqual(read(os.path.join(self.checkpoints, name), 'rb'), content)

  def test_a_run_whose_checkpoints_are_all_broken_is_an_error_not_a_fresh_start(self):
    self.train(train_steps=3)
    for path in glob.glob(os.path.join(self.checkpoints, 'ckpt-3.*')):
      with open(path, 'wb') as f:
        f.write(b'\x00' * 8)
    with self.assertRaisesRegex(UserError, 'no checkpoint of .* restores .*ckpt-3'):
      self.train()
    self.assertTrue(os.path.exists(os.path.join(self.checkpoints, 'broken', 'ckpt-3.index')))

  def test_a_full_disk_is_one_fault_that_names_the_checkpoint_to_resume_from(self):
    self.train(train_steps=3)
    os.makedirs(os.path.join(self.checkpoints, 'ckpt-2_temp'))  # Left by a save that was killed.
    before = snapshot(self.workdir)
    real_save = tf.train.CheckpointManager.save

    def save(manager, checkpoint_number=None, **kwargs):
      if checkpoint_number == 6:
        os.makedirs(os.path.join(manager.directory, 'ckpt-6_temp'))
        raise tf.errors.ResourceExhaustedError(None, None, 'ckpt-6_temp/part-00000; No space left on device')
      return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

    with mock.patch.object(tf.train.CheckpointManager, 'save', save):
      with self.assertRaises(EnvironmentFault) as raised:
        self.train()
    message = str(raised.exception)
    self.assertRegex(message, r'could not write checkpoint ckpt-6 .*No space left on device.*continue from '
                              r'.*ckpt-3 with --run_name=run --resume')
    self.assertNotIn('\n', message)
    self.assertEqual(glob.glob(os.path.join(self.checkpoints, '*_temp*')), [])
    for name in ('ckpt-3.index', 'ckpt-3.data-00000-of-00001', 'metrics.json'):
      relative = name if name == 'metrics.json' else os.path.join('checkpoints', name)
      self.assertEqual(snapshot(self.workdir)[relative], before[relative])
    self.assertEqual(self.train()['step'], 9)


class FinishedRunTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')
    self.workdir = os.path.join(self.logdir, 'done')

  def harness(self, *args):
    return testing.run_harness([f'--logdir={self.logdir}', '--run_name=done', *TINY_FLAGS, '--train_steps=20',
                                *args])

  def test_resuming_a_finished_run_changes_nothing(self):
    first = self.harness()
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    before = snapshot(self.workdir)
    again = self.harness('--resume')
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertIn('is finished (step 20 of 20; test loss', again.stdout)
    self.assertEqual(snapshot(self.workdir), before)
    lower = self.harness('--resume', '--train_steps=10')
    one_error_line(self, lower, 2, '--train_steps=10: the run is already at step 20')
    self.assertEqual(snapshot(self.workdir), before)

  def test_a_kill_before_metrics_json_completes_only_the_final_evaluation(self):
    first = self.harness()
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    metrics = json.loads(read(os.path.join(self.workdir, 'metrics.json')))
    os.remove(os.path.join(self.workdir, 'metrics.json'))
    events = {p: v for p, v in snapshot(self.workdir).items() if 'events.out' in p}
    again = self.harness('--resume')
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    completed = json.loads(read(os.path.join(self.workdir, 'metrics.json')))
    for key in ('step', 'eval_loss', 'eval_mse', 'weights_sha256', 'status'):
      self.assertEqual(completed[key], metrics[key], key)
    self.assertAlmostEqual(completed['train_seconds'], metrics['train_seconds'], places=6)
    self.assertEqual({p: v for p, v in snapshot(self.workdir).items() if 'events.out' in p}, events)


class ProcessFaultTest(absltest.TestCase):
  """Subprocesses killed, signalled, or started twice on one run."""

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')

  def popen(self, *args):
    return testing.start_harness(f'--logdir={self.logdir}', *TINY_FLAGS, *args)

  def wait_for(self, process, text):
    for line in process.stderr:
      if text in line:
        return
    self.fail(f'{text!r} never appeared')

  def test_a_kill_at_start_leaves_a_run_that_can_be_started_or_resumed(self):
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
      with self.subTest(signal=sig.name):
        name = f'start-{sig.name}'
        process = self.popen(f'--run_name={name}', '--train_steps=30')
        self.wait_for(process, 'run folder:')
        process.send_signal(sig)
        stderr = process.stderr.read()
        process.wait(timeout=120)
        self.assertNotIn('Traceback', stderr)
        if sig != signal.SIGKILL:
          # On a loaded machine the tiny run may reach its last step first: then it finishes as usual.
          self.assertIn(process.returncode, (128 + sig, 0))
        again = testing.run_harness([f'--logdir={self.logdir}', *TINY_FLAGS, f'--run_name={name}',
                                     '--train_steps=30'])
        if again.returncode:
          one_error_line(self, again, 2, 'pass --resume to continue it')
          again = testing.run_harness([f'--logdir={self.logdir}', f'--run_name={name}', '--resume'])
        self.assertEqual(again.returncode, 0, again.stderr[-3000:])
        self.assertEqual(json.loads(read(os.path.join(self.logdir, name, 'metrics.json')))['step'], 30)

  def test_a_second_process_on_the_same_run_is_refused_naming_the_holder(self):
    first = self.popen('--run_name=shared', '--train_steps=100000', '--checkpoint_every=100000')
    self.wait_for(first, 'step 5/')
    second = testing.run_harness([f'--logdir={self.logdir}', '--run_name=shared', '--resume'])
    first.send_signal(signal.SIGINT)
    first.wait(timeout=120)
    line = one_error_line(self, second, 2, 'is in use by harness.train pid')
    self.assertIn(str(first.pid), line)

  def test_a_full_disk_on_the_command_line_is_one_line_and_exit_1(self):
    inject = ('import sys, tensorflow as tf\n'
              'def save(self, checkpoint_number=None, **kwargs):\n'
              '  raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")\n'
              'tf.train.CheckpointManager.save = save\n'
              'from harness import train\n'
              'sys.argv[0] = "harness.train"\n'
              'train.run()\n')
    result = subprocess.run([sys.executable, '-c', inject, f'--logdir={self.logdir}', *TINY_FLAGS,
                             '--run_name=full', '--train_steps=20'], capture_output=True, text=True,
                            cwd=testing.REPO_ROOT, timeout=300)
    one_error_line(self, result, 1, 'could not write checkpoint ckpt-10')
    self.assertIn('continue from its start with --run_name=full --resume', result.stderr)


ADDING = ['--task=adding', '--seq_len=10', '--arch=lstm', '--units=8', '--batch_size=16', '--checkpoint_every=20',
          '--histogram_every=0']


class PartThreeTest(absltest.TestCase):
  """Issue 25's items that need a run, a subprocess or a signal."""

  def setUp(self):
    super().setUp()
    self.tmp = testing.make_tempdir(self)
    self.logdir = os.path.join(self.tmp, 'runs')

  def test_item3_a_start_cut_short_before_config_json_can_be_started_again(self):
    config = testing.tiny_config(task='adding', seq_len=10, input_units=0, train_steps=4, histogram_every=0)
    workdir = os.path.join(self.logdir, 'cut')
    with mock.patch.object(runs.RunFolder, 'write_config', side_effect=RuntimeError('killed here')):
      with self.assertRaisesRegex(RuntimeError, 'killed here'):
        loop.train_and_evaluate(config, workdir, fresh=True)
    self.assertIn('baseline', os.listdir(workdir))
    self.assertEqual(runs.run_state(workdir), 'unstarted')
    self.assertEqual(loop.train_and_evaluate(config, workdir, fresh=True)['step'], 4)

  def fake_popen(self, returncodes, signals=None):
    """A Popen stand-in: each process ends with the next of `returncodes` after three polls; counts SIGTERMs."""
    sent = []

    class Process:

      def __init__(process, *args, **kwargs):
        del args, kwargs
        process.returncode, process.polls = None, 0
        process.final = returncodes.pop(0)
        if signals and not returncodes:
          signals.received = 'SIGTERM'  # The sweep is told to stop as soon as its trials run.

      def poll(process):
        process.polls += 1
        if process.polls > 3:
          process.returncode = process.final
        return process.returncode

      def send_signal(process, sig):
        sent.append((process, sig))

    return Process, sent

  def test_item7_item15_a_sweep_signals_each_trial_once_and_names_a_kill(self):
    trials = [types.SimpleNamespace(name=f't{i}') for i in range(2)]
    signals = types.SimpleNamespace(received=None)
    popen, sent = self.fake_popen([-15, -15], signals)
    with mock.patch.object(sweep.subprocess, 'Popen', popen), mock.patch.object(sweep, '_POLL_SECONDS', 0.01), \
         mock.patch.object(sweep.trials_lib, 'trial_command', return_value=['true']):
      self.assertEqual(sweep.run_trials(trials, [], self.tmp, 2, signals), {})
    self.assertLen(sent, 2)  # Once each, though the sweep polled four times.
    self.assertLen({process for process, _ in sent}, 2)
    popen, _ = self.fake_popen([-9, 0])
    with mock.patch.object(sweep.subprocess, 'Popen', popen), mock.patch.object(sweep, '_POLL_SECONDS', 0.01), \
         mock.patch.object(sweep.trials_lib, 'trial_command', return_value=['true']):
      failures = sweep.run_trials(trials, [], self.tmp, 2, types.SimpleNamespace(received=None))
    self.assertEqual(list(failures), ['t0'])
    self.assertRegex(failures['t0'], r'^killed by SIGKILL \(log: .*t0.log\)$')

  def test_item9_sweep_files_and_a_full_disk_are_one_line(self):
    sweep_dir = os.path.join(self.logdir, 'cmp')
    os.makedirs(sweep_dir)
    command = [sys.executable, '-m', 'harness.sweep', '--name=cmp', f'--logdir={self.logdir}', '--grid=arch=lstm,gru',
               '--', '--task=adding', '--seq_len=10', '--units=8', '--train_steps=5']
    for text in ('{}', '[]', '{"grid": [["arch", ["lstm", "gru"]]], "seeds": 1, "fi'):
      with open(os.path.join(sweep_dir, 'sweep.json'), 'w') as f:
        f.write(text)
      result = subprocess.run(command, capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=120)
      self.assertEqual(result.returncode, 2, result.stderr)
      self.assertRegex(result.stderr, rf'^harness.sweep: error: {sweep_dir}/sweep.json: [^\n]*\n$')
    os.remove(os.path.join(sweep_dir, 'sweep.json'))

    def no_space(source, destination):
      raise OSError(errno.ENOSPC, 'No space left on device', destination)

    with mock.patch.object(runs.os, 'replace', no_space):
      with self.assertRaisesRegex(EnvironmentFault, 'cannot write .*sweep.json \\(No space left on device\\)'):
        sweep._claim_sweep(sweep_dir, {'grid': [], 'seeds': 1, 'fixed': []})
    self.assertEqual(os.listdir(sweep_dir), [])  # No sweep.json.tmp-<pid> left.

  def test_item9_a_bad_trial_metrics_and_a_signal_during_aggregation(self):
    sweep_dir = os.path.join(self.logdir, 'cmp')
    os.makedirs(os.path.join(sweep_dir, 'seed=0'))
    with open(os.path.join(sweep_dir, 'sweep.json'), 'w') as f:
      json.dump({'grid': [], 'seeds': 1, 'fixed': ['--task=adding', '--seq_len=10', '--units=8']}, f)
    with open(os.path.join(sweep_dir, 'seed=0', 'metrics.json'), 'w') as f:
      f.write('[1]')
    result = subprocess.run([sys.executable, '-m', 'harness.sweep', 'aggregate', sweep_dir], capture_output=True,
                            text=True, cwd=testing.REPO_ROOT, timeout=300)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertIn(f'harness.sweep: error: {sweep_dir}/seed=0/metrics.json: holds [1], not a JSON object',
                  result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    self.addCleanup(lambda: [signal.signal(sig, handler) for sig, handler in saved.items()])

    def interrupted(sweep_dir):
      del sweep_dir
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(5)

    from harness import aggregate  # pylint: disable=g-import-not-at-top
    with mock.patch.object(aggregate, 'aggregate', interrupted), \
         mock.patch('sys.stderr', new_callable=io.StringIO) as stderr, self.assertRaises(SystemExit) as exited:
      sweep.main(['harness.sweep', 'aggregate', sweep_dir])
    self.assertEqual(exited.exception.code, 130)
    self.assertEqual(stderr.getvalue(), f'harness.sweep: error: stopped by SIGINT; no trial was running. Run the same '
                     f'command to continue, or recompute the aggregates with: python -m harness.sweep aggregate '
                     f'{sweep_dir}\n')

  def test_item12_item14_a_damaged_tfds_copy_is_one_line_naming_it(self):
    idx_dir, data_dir = testing.make_tempdir(self), testing.make_tempdir(self)
    testing.write_idx_dir(idx_dir)
    prepared = sources.import_idx('fashion_mnist', idx_dir, data_dir)
    record = sorted(glob.glob(os.path.join(prepared, '*train.tfrecord*')))[0]
    with open(record, 'r+b') as f:
      f.truncate(os.path.getsize(record) // 2)
    with mock.patch.object(sources, 'host_reachable', return_value=False):
      with self.assertRaisesRegex(UserError, f'^--task=fashion_mnist: the tfds copy at {prepared} cannot be read'):
        sources.load_images('fashion_mnist', data_dir)
      with open(os.path.join(prepared, 'dataset_info.json'), 'w') as f:
        f.write('{"name": ')
      with self.assertRaisesRegex(UserError, f'^--task=fashion_mnist: tfds cannot read its copy in {data_dir}/'
                                  'fashion_mnist .*remove that folder'):
        sources.load_images('fashion_mnist', data_dir)

  def test_item19_sighup_stops_a_run_after_a_checkpoint(self):
    process = subprocess.Popen([sys.executable, '-m', 'harness.train', f'--logdir={self.logdir}', '--run_name=hup',
                                *ADDING, '--train_steps=100000', '--summary_every=5'],
                               cwd=testing.REPO_ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
      if 'step 5/' in line:
        break
    for _ in range(5):  # A flood: handled once, to the process's end (teardown included).
      process.send_signal(signal.SIGHUP)
      time.sleep(0.05)
    stderr = process.stderr.read()
    process.wait(timeout=120)
    self.assertEqual(process.returncode, 129, stderr[-3000:])
    self.assertRegex(stderr, r'harness.train: stopped by SIGHUP at step \d+ of 100000; continue with: ')
    self.assertTrue(runs.checkpoint_steps(os.path.join(self.logdir, 'hup')))

  def test_item19_sigterm_to_a_data_import_leaves_nothing(self):
    idx_dir, data_dir = testing.make_tempdir(self), testing.make_tempdir(self)
    testing.write_idx_dir(idx_dir)
    inject = ('import os, signal, sys, time, tensorflow_datasets as tfds\n'
              'def store(**kwargs):\n'
              '  os.makedirs(os.path.join(kwargs["data_dir"], "fashion_mnist", "incomplete.x"))\n'
              '  os.kill(os.getpid(), signal.SIGTERM)\n'
              '  time.sleep(30)\n'
              'tfds.dataset_builders.store_as_tfds_dataset = store\n'
              'from harness import data\n'
              'sys.argv[0] = "harness.data"\n'
              'data.run()\n')
    result = subprocess.run([sys.executable, '-c', inject, 'import', '--task=fashion_mnist', f'--idx_dir={idx_dir}',
                             f'--data_dir={data_dir}'], capture_output=True, text=True, cwd=testing.REPO_ROOT,
                            timeout=300)
    self.assertEqual(result.returncode, 143, result.stderr[-3000:])
    self.assertTrue(result.stderr.endswith('harness.data: error: stopped by SIGTERM; nothing was imported\n'),
                    result.stderr[-3000:])
    self.assertEqual(os.listdir(data_dir), [])


if __name__ == '__main__':
  absltest.main()

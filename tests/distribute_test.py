"""tf.distribute: mirrored over logical CPU devices, and two workers on 127.0.0.1."""

import glob
import json
import os
import re
import signal
import socket

from absl.testing import absltest
import pytest
import tensorflow as tf

from tests import testing

pytestmark = pytest.mark.slow  # Each test starts TensorFlow in subprocesses.

FLAGS = ['--task=mnist', '--units=8', '--batch_size=16', '--train_steps=8', '--summary_every=1',
         '--eval_every=4', '--checkpoint_every=4', '--histogram_every=0', '--deterministic']


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class DistributeTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')

  def test_mirrored_on_two_cpu_devices_follows_the_single_device_trajectory(self):
    for name, extra in (('one', ['--strategy=default']),
                        ('two', ['--strategy=mirrored', '--num_cpu_devices=2'])):
      result = testing.run_harness([f'--logdir={self.logdir}', f'--run_name={name}', *FLAGS, *extra])
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    one = testing.load_run(os.path.join(self.logdir, 'one'))
    two = testing.load_run(os.path.join(self.logdir, 'two'))
    environment = testing.tensor_series(two, 'eval', 'environment')[0][1].item().decode()
    self.assertIn('MirroredStrategy, 2 replica(s)', environment)
    for run, tag in (('train', 'Metrics/loss'), ('train', 'optimizer/grad_norm'), ('eval', 'Metrics/loss')):
      single = testing.scalar_series(one, run, tag)
      mirrored = testing.scalar_series(two, run, tag)
      self.assertEqual([s for s, _ in single], [s for s, _ in mirrored])
      for (step, a), (_, b) in zip(single, mirrored):
        self.assertAlmostEqual(a, b, delta=1e-5 * max(1.0, abs(a)), msg=f'{run}/{tag} at step {step}')

  def test_batch_that_does_not_split_over_replicas_is_a_usage_error(self):
    result = testing.run_harness([f'--logdir={self.logdir}', *FLAGS, '--batch_size=15',
                                  '--strategy=mirrored', '--num_cpu_devices=2'])
    self.assertEqual(result.returncode, 2)
    self.assertIn('--batch_size=15: must divide evenly over 2 replicas', result.stderr.strip().splitlines()[-1])

  def start_workers(self, *args):
    workers = [f'127.0.0.1:{free_port()}' for _ in range(2)]
    processes = []
    for index in range(2):
      tf_config = json.dumps({'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': index}})
      processes.append(testing.start_harness(f'--logdir={self.logdir}', '--run_name=mw', '--strategy=multi_worker',
                                             *args, env={'TF_CONFIG': tf_config}))
    return processes

  def test_two_workers_finish_with_identical_weights_and_only_the_chief_writes(self):
    processes = self.start_workers(*FLAGS)
    outputs = [p.communicate(timeout=400)[1] for p in processes]
    for process, output in zip(processes, outputs):
      self.assertEqual(process.returncode, 0, output[-3000:])
    fingerprints = [re.findall(r'final weights sha256: (\w+)', output) for output in outputs]
    self.assertLen(fingerprints[0], 1)
    self.assertEqual(fingerprints[0], fingerprints[1])
    run_dir = os.path.join(self.logdir, 'mw')
    event_files = sorted(os.path.relpath(p, run_dir)
                         for p in glob.glob(os.path.join(run_dir, '**', 'events.out.tfevents.*'), recursive=True))
    self.assertEqual(sorted(os.path.dirname(p) for p in event_files), ['eval', 'train'])  # No events at the root.
    self.assertEqual(sorted(os.listdir(run_dir)),
                     ['.lock', 'checkpoints', 'config.json', 'eval', 'flags.txt', 'metrics.json', 'train'])
    self.assertEqual(os.listdir(self.logdir), ['mw'])  # The worker's temporary checkpoints are gone.
    with open(os.path.join(run_dir, 'metrics.json')) as f:
      self.assertEqual(json.load(f)['weights_sha256'], fingerprints[0][0])

  def test_a_signal_to_one_worker_stops_every_worker_at_one_checkpointed_step(self):
    processes = self.start_workers('--task=sin2cos', '--units=8', '--batch_size=8', '--train_steps=300',
                                   '--summary_every=10', '--eval_every=100', '--checkpoint_every=100',
                                   '--histogram_every=0')
    for line in processes[0].stderr:
      if 'step 30/' in line:
        break
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=300)[1] for p in processes]
    stops = []
    for process, output in zip(processes, outputs):
      self.assertEqual(process.returncode, 128 + signal.SIGTERM, output[-3000:])
      self.assertNotIn('Traceback', output)
      stops += re.findall(r'stopped by SIGTERM at step (\d+) of 300; continue with: python -m harness.train '
                          r'--logdir=\S+ --run_name=mw --resume', output)
    self.assertLen(stops, 2)
    self.assertEqual(stops[0], stops[1])  # One step for both: neither waits for the other.
    checkpoints = os.path.join(self.logdir, 'mw', 'checkpoints')
    self.assertIn(f'ckpt-{stops[0]}', tf.train.latest_checkpoint(checkpoints))
    resumed = self.start_workers('--resume')
    outputs = [p.communicate(timeout=400)[1] for p in resumed]
    fingerprints = []
    for process, output in zip(resumed, outputs):
      self.assertEqual(process.returncode, 0, output[-3000:])
      self.assertIn(f'ckpt-{stops[0]} at step {stops[0]}', output)
      fingerprints += re.findall(r'final weights sha256: (\w+)', output)
    self.assertLen(set(fingerprints), 1)
    with open(os.path.join(self.logdir, 'mw', 'metrics.json')) as f:
      self.assertEqual(json.load(f)['step'], 300)


if __name__ == '__main__':
  absltest.main()

"""`python -m harness.bench`: every contender reports a rate on a tiny workload."""

import importlib.util
import json
import os
import subprocess
import sys

from absl.testing import absltest
import pytest

from tests import testing

pytestmark = pytest.mark.slow  # Whole harness runs and Keras fits.


class BenchTest(absltest.TestCase):

  def test_a_tiny_benchmark_reports_every_contender(self):
    out = os.path.join(testing.make_tempdir(self), 'bench.json')
    result = subprocess.run(
        [sys.executable, '-m', 'harness.bench', '--task=adding', '--seq_len=10', '--arch=gru', '--units=8',
         '--batch_size=16', '--steps=6', '--warmup_steps=2', '--rounds=1', '--summary_every=4',
         '--histogram_every=4', '--contenders=harness,harness_no_probes,harness_bf16,keras_fit', f'--out={out}'],
        capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=600)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(out) as f:
      report = json.load(f)
    self.assertEqual(set(report['median_examples_per_sec']),
                     {'harness', 'harness_no_probes', 'harness_bf16', 'keras_fit'})
    self.assertTrue(all(rate > 0 for rate in report['median_examples_per_sec'].values()))
    self.assertEqual(report['rounds_results']['harness'][0]['window_steps'], [4, 8])
    self.assertEqual(report['config']['arch'], 'gru')
    # Every contender beside its floor; bfloat16 products measured in bfloat16.
    self.assertEqual(set(report['floor']), set(report['median_examples_per_sec']))
    self.assertTrue(all(0 < entry['share_reached'] for entry in report['floor'].values()))
    self.assertEqual(report['floor']['harness_bf16']['product_dtype'], 'bfloat16')
    self.assertEqual(report['floor']['harness']['product_dtype'], 'float32')
    self.assertIn('share', result.stdout)

  def test_fewer_steps_than_summary_every_still_times_a_window(self):
    # --steps=3 below the default --summary_every=100: train scalars every 3 steps, not a ZeroDivisionError.
    result = subprocess.run(
        [sys.executable, '-m', 'harness.bench', '--task=adding', '--seq_len=5', '--arch=gru', '--units=4',
         '--batch_size=8', '--steps=3', '--warmup_steps=1', '--rounds=1', '--contenders=harness_no_probes'],
        capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=600)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    report = json.loads(result.stdout[:result.stdout.rindex('}') + 1])
    self.assertEqual(report['rounds_results']['harness_no_probes'][0]['window_steps'], [3, 4])

  def test_a_linear_recurrence_against_its_baselines_and_pytorch(self):
    out = os.path.join(testing.make_tempdir(self), 'bench.json')
    contenders = 'harness_no_probes,harness_lstm,harness_gru' + (',torch' if importlib.util.find_spec('torch') else '')
    result = subprocess.run(
        [sys.executable, '-m', 'harness.bench', '--task=adding', '--seq_len=10', '--arch=minlstm', '--units=8',
         '--mlp_expansion=1', '--batch_size=16', '--steps=4', '--warmup_steps=2', '--rounds=1', '--summary_every=2',
         f'--contenders={contenders}', f'--out={out}'],
        capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=600)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(out) as f:
      report = json.load(f)
    self.assertEqual(set(report['median_examples_per_sec']), set(contenders.split(',')))
    self.assertTrue(all(rate > 0 for rate in report['median_examples_per_sec'].values()))

  def test_bad_contender_is_one_line(self):
    result = subprocess.run([sys.executable, '-m', 'harness.bench', '--contenders=harness,jax'],
                            capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=300)
    self.assertEqual(result.returncode, 2)
    self.assertIn('--contenders: unknown jax', result.stderr.strip().splitlines()[-1])


if __name__ == '__main__':
  absltest.main()

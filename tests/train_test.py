"""The command line: every bad input is one line on stderr, exit 2, and nothing on disk."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import pytest

from tests import testing


class BadInputTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.root = testing.make_tempdir(self)
    self.logdir = os.path.join(self.root, 'runs')

  def assert_usage_error(self, args, expected):
    before = sorted(os.listdir(self.root))
    result = testing.run_harness([f'--logdir={self.logdir}', *args], timeout=120)
    self.assertEqual(result.returncode, 2, result.stderr)
    lines = [l for l in result.stderr.splitlines() if l.startswith('harness.train: error:')]
    self.assertLen(lines, 1, result.stderr)
    self.assertIn(expected, lines[0])
    self.assertNotIn('Traceback', result.stderr)
    self.assertEqual(sorted(os.listdir(self.root)), before)

  # The command-line layer itself: flag parsing, flagfiles, stray arguments, the directory checks made
  # before TensorFlow starts, nothing on disk. The values' own checks are config_test's.
  @parameterized.named_parameters(
      ('unknown_task', ['--task=cifar'], '--task'),
      ('non_integer_batch', ['--batch_size=2.5'], '--batch_size'),
      ('non_integer_units', ['--units=12,x', '--arch=stacked_lstm'], '--units'),
      ('unknown_flag', ['--epochz=3'], 'epochz'),
      ('stray_argument', ['fashion_mnist'], 'unexpected arguments'),
      ('resume_missing_run', ['--resume', '--run_name=nope'], '--resume'),
      ('logdir_in_proc', ['--logdir=/proc'], '--logdir=/proc: cannot write in /proc'),
      ('logdir_in_sys', ['--logdir=/sys/harness-runs'], '--logdir=/sys/harness-runs: cannot write in /sys'),
      ('data_dir_in_proc', ['--data_dir=/proc'], '--data_dir=/proc: cannot write in /proc'),
      ('run_name_too_long', ['--run_name=' + 'a' * 300], '--run_name: 300 characters; at most 200'),
      ('run_name_with_space', ['--run_name=my run'], 'no spaces, accents or slashes'),
      ('eval_examples_not_a_count', ['--eval_examples=10%'],
       "--eval_examples='10%': give auto, all or a positive number of test examples"),
      ('missing_flagfile', ['--flagfile=/nonexistent/flags.txt'],
       '--flagfile=/nonexistent/flags.txt: cannot be read (No such file or directory)'),
      ('param_budget_too_small', ['--param_budget=100', '--run_name=small'],
       '--param_budget=100: too small for --arch=lstm on --task=mnist'),
      ('param_budget_too_large', ['--param_budget=10000000000000', '--task=adding', '--run_name=large'],
       '--param_budget=10000000000000 (--units='),
      ('time_budget_negative', ['--time_budget=-1'], '--time_budget=-1.0: must be 0 or more'),
  )
  def test_bad_flag(self, args, expected):
    self.assert_usage_error(args, expected)

  def test_flagfiles_that_are_binary_or_include_themselves(self):
    binary = os.path.join(self.root, 'binary.txt')
    with open(binary, 'wb') as f:
      f.write(b'\x00\xff\xfe\x89PNG')
    self.assert_usage_error([f'--flagfile={binary}'], f'--flagfile={binary}: not a text file of flags')
    first, second = os.path.join(self.root, 'first.txt'), os.path.join(self.root, 'second.txt')
    with open(first, 'w') as f:
      f.write(f'--units=8\n--flagfile={second}\n')
    with open(second, 'w') as f:
      f.write(f'# a comment\n--flagfile={first}\n')
    self.assert_usage_error([f'--flagfile={first}'], f'includes itself ({first} -> {second} -> {first})')

  def test_help_exits_0_and_creates_nothing(self):
    for flag, shows in (('--help', '--task'), ('--helpfull', '--verbosity')):
      with self.subTest(flag=flag):
        result = testing.run_harness([f'--logdir={self.logdir}', flag], timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(shows, result.stdout)
        self.assertEqual(os.listdir(self.root), [])

  def test_logdir_is_a_file(self):
    path = os.path.join(self.root, 'afile')
    open(path, 'w').close()
    result = testing.run_harness([f'--logdir={path}'], timeout=120)
    self.assertEqual(result.returncode, 2)
    self.assertIn('--logdir', result.stderr.strip().splitlines()[-1])

  def test_data_dir_is_a_file(self):
    path = os.path.join(self.root, 'afile')
    open(path, 'w').close()
    self.assert_usage_error([f'--data_dir={path}'], '--data_dir')

  @pytest.mark.slow
  def test_errors_found_after_the_data_loads_leave_nothing_on_disk(self):
    for args, expected in ((['--batch_size=1000000'], '--batch_size=1000000: larger than the'),
                           (['--units=100000'], 'parameters and needs at least')):
      with self.subTest(args=args):
        self.assert_usage_error(args + ['--task=mnist', '--run_name=late'], expected)

  def test_existing_run_is_never_overwritten(self):
    run_dir = os.path.join(self.logdir, 'taken')
    os.makedirs(run_dir)
    marker = os.path.join(run_dir, 'keep.txt')
    with open(marker, 'w') as f:
      f.write('precious')
    self.assert_usage_error(['--run_name=taken'], 'not a harness run')
    with open(marker) as f:
      self.assertEqual(f.read(), 'precious')
    self.assertEqual(os.listdir(run_dir), ['keep.txt'])


if __name__ == '__main__':
  absltest.main()

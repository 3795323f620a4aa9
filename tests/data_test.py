"""`python -m harness.data import` as a subprocess: imports, refuses a second import, one-line errors."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import pytest

from tests import testing

pytestmark = pytest.mark.slow  # Each test starts TensorFlow in subprocesses.


class ImporterCommandTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.idx_dir = testing.make_tempdir(self)
    self.data_dir = os.path.join(testing.make_tempdir(self), 'tfds')

  def import_command(self):
    return subprocess.run([sys.executable, '-m', 'harness.data', 'import', '--task=fashion_mnist',
                           f'--idx_dir={self.idx_dir}', f'--data_dir={self.data_dir}'],
                          capture_output=True, text=True, cwd=testing.REPO_ROOT, timeout=300)

  def test_import_then_refuse_a_second_import(self):
    testing.write_idx_dir(self.idx_dir)
    result = self.import_command()
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertTrue(json.loads(result.stdout.strip().splitlines()[-1])['tfds_dir'].endswith('fashion_mnist/3.0.1'))
    again = self.import_command()
    self.assertNotEqual(again.returncode, 0)
    self.assertIn('already present', again.stderr.strip().splitlines()[-1])

  def test_corrupted_idx_is_one_line_and_creates_nothing(self):
    testing.write_idx_dir(self.idx_dir)
    path = os.path.join(self.idx_dir, 'train-images-idx3-ubyte.gz')
    with open(path, 'rb') as f:
      raw = f.read()
    with open(path, 'wb') as f:
      f.write(raw[:len(raw) // 2])
    result = self.import_command()
    self.assertNotEqual(result.returncode, 0)
    self.assertNotIn('Traceback', result.stderr)
    self.assertIn('train-images-idx3-ubyte.gz', result.stderr.strip().splitlines()[-1])
    self.assertFalse(os.path.exists(os.path.join(self.data_dir, 'fashion_mnist', '3.0.1', 'dataset_info.json')))


if __name__ == '__main__':
  absltest.main()

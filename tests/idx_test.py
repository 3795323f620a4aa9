"""IDX reading and writing, and the errors for corrupted files."""

import gzip
import os

from absl.testing import absltest
import numpy as np

from harness.tasks import idx
from harness.errors import UserError
from tests import testing


class IdxTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = testing.make_tempdir(self)

  def path(self, name):
    return os.path.join(self.dir, name)

  def write_raw(self, name, raw):
    with gzip.open(self.path(name), 'wb') as f:
      f.write(raw)
    return self.path(name)

  def test_round_trip(self):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    idx.write_idx_gz(self.path('images.gz'), images)
    np.testing.assert_array_equal(idx.read_idx(self.path('images.gz')), images)
    with gzip.open(self.path('images.gz')) as f:
      self.assertEqual(f.read(8), bytes([0, 0, 8, 3, 0, 0, 0, 5]))

  def test_wrong_magic(self):
    path = self.write_raw('bad.gz', b'\x12\x34\x08\x01\x00\x00\x00\x01\x07')
    with self.assertRaisesRegex(UserError, 'bad.gz: not an IDX file'):
      idx.read_idx(path)

  def test_wrong_type(self):
    path = self.write_raw('float.gz', b'\x00\x00\x0d\x01\x00\x00\x00\x01' + b'\x00' * 4)
    with self.assertRaisesRegex(UserError, 'not unsigned byte'):
      idx.read_idx(path)

  def test_truncated_data(self):
    path = self.write_raw('short.gz', b'\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c' + b'\x01' * 100)
    with self.assertRaisesRegex(UserError, r'short.gz: truncated: header \[2, 28, 28\] needs 1568 bytes'):
      idx.read_idx(path)

  def test_truncated_gzip(self):
    idx.write_idx_gz(self.path('cut.gz'), np.zeros((50, 28, 28), np.uint8))
    with open(self.path('cut.gz'), 'rb') as f:
      raw = f.read()
    with open(self.path('cut.gz'), 'wb') as f:
      f.write(raw[:len(raw) // 2])
    with self.assertRaisesRegex(UserError, 'cut.gz: cannot be read as gzip'):
      idx.read_idx(self.path('cut.gz'))

  def test_count_mismatch(self):
    idx.write_idx_gz(self.path('images.gz'), np.zeros((4, 28, 28), np.uint8))
    idx.write_idx_gz(self.path('labels.gz'), np.zeros((3,), np.uint8))
    with self.assertRaisesRegex(UserError, 'holds 4 images but .* holds 3 labels'):
      idx.read_image_label_pair(self.path('images.gz'), self.path('labels.gz'))

  def test_missing_file(self):
    with self.assertRaisesRegex(UserError, 'no such file'):
      idx.read_idx(self.path('absent.gz'))


if __name__ == '__main__':
  absltest.main()

"""The scan kernels traced into a graph (each a trace of forward and backward): slower than scan_test's eager cases."""

from absl.testing import absltest
from absl.testing import parameterized
import pytest

from tests import scan_test

pytestmark = pytest.mark.slow


class LinearScanGraphTest(parameterized.TestCase):

  _check = scan_test.LinearScanTest._check  # pylint: disable=protected-access

  @parameterized.parameters('sequential', 'chunked', 'associative', 'logcumsumexp', 'auto')
  def test_in_a_graph(self, kernel):
    self._check(kernel, 17, complex_=False, positive=True, graph=True)  # 17: chunks of 4, one step over.


if __name__ == '__main__':
  absltest.main()

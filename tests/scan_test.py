"""Every scan kernel against a plain float64 loop: values, gradients, T = 1 and T not a multiple of the chunk."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from harness import scan

_KERNELS = ('sequential', 'chunked', 'associative')  # `auto` runs one of these.
# T = 1; T = 7 is not a multiple of its chunk size (3); T = 16 is one (4).
_STEPS = (1, 7, 16)


def _inputs(steps, complex_, positive=False, seed=0):
  """Random a (|a| <= 1), b and h_0 in float64 / complex128, batch 3, units 4."""
  rng = np.random.default_rng(seed)
  shape = [3, steps, 4]
  if positive:
    return rng.uniform(0.05, 1.0, shape), rng.uniform(0.1, 2.0, shape), rng.uniform(0.0, 1.0, [3, 4])
  if complex_:
    a = rng.uniform(0.0, 1.0, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    return a, rng.normal(size=shape) + 1j * rng.normal(size=shape), rng.normal(size=[3, 4]) + 1j * rng.normal(size=[3, 4])
  return rng.uniform(-1.0, 1.0, shape), rng.normal(size=shape), rng.normal(size=[3, 4])


def _reference_loop(a, b, h):
  """The recurrence as a Python loop of TensorFlow ops (float64), so the tape differentiates it step by step."""
  states = []
  for t in range(a.shape[1]):
    h = a[:, t] * h + b[:, t]
    states.append(h)
  return tf.stack(states, 1)


def _loss(h, weights):
  # A real loss that weights every state's real and imaginary parts differently.
  return tf.reduce_sum(tf.math.real(h * weights)) + 0.5 * tf.reduce_sum(tf.abs(h) ** 2)


def _values_and_gradients(function, a, b, h0, weights):
  a, b, h0, weights = (tf.constant(x) for x in (a, b, h0, weights))
  with tf.GradientTape() as tape:
    tape.watch([a, b, h0])
    h = function(a, b, h0)
    loss = _loss(h, tf.cast(weights, h.dtype))
  return [x.numpy() for x in [h] + tape.gradient(loss, [a, b, h0])]


class LinearScanTest(parameterized.TestCase):

  def _check(self, kernel, steps, complex_, positive=False, graph=False):
    a, b, h0 = _inputs(steps, complex_, positive)
    weights = np.random.default_rng(1).normal(size=a.shape)
    expected = _values_and_gradients(_reference_loop, a, b, h0, weights)
    single = np.complex64 if complex_ else np.float32
    function = lambda a, b, h0: scan.linear_scan(a, b, h0, kernel=kernel)  # pylint: disable=unnecessary-lambda-assignment
    if graph:
      function = tf.function(function)
    actual = _values_and_gradients(function, a.astype(single), b.astype(single), h0.astype(single), weights)
    for name, got, want in zip(('h', 'dL/da', 'dL/db', 'dL/dh0'), actual, expected):
      self.assertEqual(got.dtype, single, name)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f'{kernel} T={steps} {name}')

  @parameterized.product(kernel=_KERNELS, steps=_STEPS, complex_=(False, True))
  def test_matches_float64_loop(self, kernel, steps, complex_):
    self._check(kernel, steps, complex_)

  @parameterized.parameters(*_STEPS)
  def test_logcumsumexp_matches_on_positive_inputs(self, steps):
    self._check('logcumsumexp', steps, complex_=False, positive=True)

  @parameterized.parameters('sequential', 'chunked', 'associative')
  def test_shared_a_matches_float64_loop(self, kernel):
    # a [units], the same at every step and example (the LRU's lambda): dL/da sums over both.
    a, b, h0 = _inputs(7, complex_=True)
    a = a[0, 0]
    weights = np.random.default_rng(1).normal(size=b.shape)
    expected = _values_and_gradients(lambda a, b, h0: _reference_loop(tf.broadcast_to(a, b.shape), b, h0),
                                     a, b, h0, weights)
    cast = lambda x: x.astype(np.complex64)  # pylint: disable=unnecessary-lambda-assignment
    actual = _values_and_gradients(lambda a, b, h0: scan.linear_scan(a, b, h0, kernel=kernel),
                                   cast(a), cast(b), cast(h0), weights)
    for got, want in zip(actual, expected):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  def test_time_major_is_the_transpose(self):
    a, b, h0 = _inputs(5, complex_=False)
    to_time_major = lambda x: np.transpose(x, [1, 0, 2])  # pylint: disable=unnecessary-lambda-assignment
    np.testing.assert_allclose(
        scan.linear_scan(to_time_major(a), to_time_major(b), h0, time_major=True).numpy(),
        to_time_major(_reference_loop(a, b, h0).numpy()), rtol=1e-12)

  def test_no_initial_state_is_zeros(self):
    a, b, _ = _inputs(5, complex_=False)
    np.testing.assert_allclose(scan.linear_scan(a, b).numpy(), _reference_loop(a, b, np.zeros([3, 4])).numpy(),
                               rtol=1e-12)

  def test_underflowing_products_stay_finite(self):
    # a = 1e-30: products over a chunk underflow to 0 in float32; no kernel divides by them.
    a = np.full([2, 50, 3], 1e-30, np.float32)
    b = np.ones([2, 50, 3], np.float32)
    for kernel in ('sequential', 'chunked', 'associative'):
      np.testing.assert_allclose(scan.linear_scan(a, b, kernel=kernel).numpy(), 1.0, rtol=1e-6, err_msg=kernel)

  def test_auto_never_chooses_logcumsumexp(self):
    for steps in (1, 28, 784, 10000):
      for on_gpu in (False, True):
        self.assertNotEqual(scan.choose_kernel(steps, 128, 128, tf.float32, on_gpu), 'logcumsumexp')

  def test_refuses_logcumsumexp_on_complex_and_unknown_kernels(self):
    a, b, _ = _inputs(3, complex_=True)
    with self.assertRaisesRegex(ValueError, 'logcumsumexp'):
      scan.linear_scan(a, b, kernel='logcumsumexp')
    with self.assertRaisesRegex(ValueError, 'unknown kernel'):
      scan.linear_scan(a, b, kernel='fft')


if __name__ == '__main__':
  absltest.main()

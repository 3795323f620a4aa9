"""Every scan kernel against a plain float64 loop: values, gradients, T = 1 and T not a multiple of the chunk."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from harness import fused_ops
from harness import scan
from tests import testing

_KERNELS = ('fused', 'sequential', 'chunked', 'associative')  # `auto` runs one of these.
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
    if kernel == 'fused':
      testing.require_fused_ops(self)
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

  @parameterized.parameters(*_KERNELS)
  def test_shared_a_matches_float64_loop(self, kernel):
    # a [units], the same at every step and example (the LRU's lambda): dL/da sums over both.
    if kernel == 'fused':
      testing.require_fused_ops(self)
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

  @parameterized.product(steps=(1, 2), shared=(False, True), dtype=(np.float32, np.float64, np.complex64))
  def test_fused_op_matches_float64_loop_at_every_thread_split(self, steps, shared, dtype):
    # Batch 40 x units 37 = 1,480 columns, T x columns past the op's parallel threshold at T = 50:
    # the threads' column ranges end inside rows, and the shared a's partial sums are added across threads.
    testing.require_fused_ops(self)
    rng = np.random.default_rng(steps)
    steps = steps * 50
    shape = [40, steps, 37]
    a = rng.uniform(-1.0, 1.0, [37] if shared else shape)
    b, h0 = rng.normal(size=shape), rng.normal(size=[40, 37])
    if dtype == np.complex64:
      a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, a.shape))
      b, h0 = b + 1j * rng.normal(size=shape), h0 + 1j * rng.normal(size=h0.shape)
    weights = rng.normal(size=shape)
    reference = lambda a, b, h0: _reference_loop(tf.broadcast_to(a, b.shape) if shared else a, b, h0)  # pylint: disable=unnecessary-lambda-assignment
    expected = _values_and_gradients(reference, a, b, h0, weights)
    actual = _values_and_gradients(lambda a, b, h0: scan.linear_scan(a, b, h0, kernel='fused'),
                                   *(x.astype(dtype) for x in (a, b, h0)), weights)
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    for name, got, want in zip(('h', 'dL/da', 'dL/db', 'dL/dh0'), actual, expected):
      self.assertEqual(got.dtype, dtype, name)
      # Relative to the largest entry: a shared dL/da sums 10,000 float32 terms that cancel.
      np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * np.abs(want).max(), err_msg=name)

  @parameterized.product(cell=('mingru', 'minlstm'), steps=(1, 60))
  def test_gated_scan_matches_float64_gates_and_loop(self, cell, steps):
    # The gates folded into the op: the same h and dL/dk as the layers' formulas and a float64 loop,
    # with |k| up to ~10 (saturated gates, both branches of g) and T x columns past the parallel threshold.
    testing.require_fused_ops(self)
    rng = np.random.default_rng(steps)
    gates, units = (2 if cell == 'mingru' else 3), 37
    k, h0, weights = rng.normal(size=[steps, 40, gates * units]) * 3, rng.normal(size=[40, units]), rng.normal(
        size=[steps, 40, units])

    def reference(k, h0):
      g = lambda x: tf.where(x >= 0, x + 0.5, tf.sigmoid(x))  # pylint: disable=unnecessary-lambda-assignment
      if cell == 'mingru':
        k_z, k_h = tf.split(k, 2, -1)
        a, b = tf.sigmoid(-k_z), tf.sigmoid(k_z) * g(k_h)
      else:
        k_f, k_i, k_h = tf.split(k, 3, -1)
        log_ratio = tf.nn.softplus(-k_f) - tf.nn.softplus(-k_i)
        a, b = tf.sigmoid(-log_ratio), tf.sigmoid(log_ratio) * g(k_h)
      return tf.transpose(_reference_loop(tf.transpose(a, [1, 0, 2]), tf.transpose(b, [1, 0, 2]), h0), [1, 0, 2])

    def values_and_gradients(function, k, h0):
      k, h0 = tf.constant(k), tf.constant(h0)
      with tf.GradientTape() as tape:
        tape.watch([k, h0])
        h = function(k, h0)
        loss = tf.reduce_sum(h * tf.cast(weights, h.dtype))
      return [x.numpy() for x in [h] + tape.gradient(loss, [k, h0])]

    expected = values_and_gradients(reference, k, h0)
    actual = values_and_gradients(lambda k, h0: scan.gated_scan(cell, k, h0), k.astype(np.float32),
                                  h0.astype(np.float32))
    for name, got, want in zip(('h', 'dL/dk', 'dL/dh0'), actual, expected):
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max(), err_msg=name)

  def test_fused_op_refuses_mismatched_shapes(self):
    testing.require_fused_ops(self)
    module = fused_ops.load()
    b, h0 = tf.zeros([3, 2, 4]), tf.zeros([2, 4])
    for a, h0_, message in ((tf.zeros([3, 2, 5]), h0, 'a must be'), (tf.zeros([4]), tf.zeros([2, 5]), 'h0 must be'),
                            (tf.zeros([4]), h0, None)):
      if message is None:
        self.assertEqual(module.harness_linear_scan(a, b, h0_).shape, [3, 2, 4])
        continue
      with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
        module.harness_linear_scan(a, b, h0_)

  def test_auto_runs_the_fused_op_on_a_cpu_where_it_is_built(self):
    testing.require_fused_ops(self)
    if tf.config.list_logical_devices('GPU'):
      self.skipTest('auto runs associative on a GPU')
    for dtype in (tf.float32, tf.float64, tf.complex64):
      self.assertEqual(scan.choose_kernel(784, 16, 128, dtype, on_gpu=False), 'fused')
    # complex128 has no fused kernel: the rule measured for the TensorFlow kernels.
    self.assertEqual(scan.choose_kernel(784, 16, 64, tf.complex128, on_gpu=False), 'chunked')
    a, b, _ = _inputs(4, complex_=True)  # complex128: `fused` asked for by name runs a TensorFlow kernel.
    np.testing.assert_allclose(scan.linear_scan(a, b, kernel='fused').numpy(),
                               _reference_loop(a, b, np.zeros([3, 4])).numpy(), rtol=1e-12)

  def test_underflowing_products_stay_finite(self):
    # a = 1e-30: products over a chunk underflow to 0 in float32; no kernel divides by them.
    a = np.full([2, 50, 3], 1e-30, np.float32)
    b = np.ones([2, 50, 3], np.float32)
    for kernel in _KERNELS:
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

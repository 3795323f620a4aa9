"""The fused CPU ops against float64 references (values and every gradient); their build and its failures."""

import os
import platform
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from harness import fused_ops
from tests import testing


def _float64_lstm(x, h, c, kernel, recurrent_kernel, bias):
  """The LSTM step by step in float64, plain TensorFlow ops: every h_t and c_t, each [time, batch, units]."""
  hs, cs = [], []
  for x_t in tf.unstack(x):
    i, f, g, o = tf.split(x_t @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    hs.append(h)
    cs.append(c)
  return tf.stack(hs), tf.stack(cs)


def _op_and_reference(op, reference, shapes, scales, seed):
  """Outputs and every input's gradient of `op` in float32 and `reference` in float64, as float64 arrays.

  Both take inputs of `shapes` (random normal times `scales`) and return a tuple of
  [time, batch, units] outputs; the loss weights each output element at random, so
  every output's path counts.
  """
  inputs = [tf.random.stateless_normal(shape, seed=[seed, i], dtype=tf.float64) * scale
            for i, (shape, scale) in enumerate(zip(shapes, scales))]
  results = []
  for dtype, fn in ((tf.float32, op), (tf.float64, reference)):
    values = [tf.cast(v, dtype) for v in inputs]
    with tf.GradientTape() as tape:
      tape.watch(values)
      outputs = fn(*values)
      loss = sum(tf.reduce_sum(tf.cast(o, tf.float64) * tf.random.stateless_normal(
          o.shape, seed=[seed + 1, i], dtype=tf.float64)) for i, o in enumerate(outputs))
    results.append([v.numpy().astype(np.float64) for v in [*outputs, *tape.gradient(loss, values)]])
  return results


class LstmOpTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    testing.require_fused_ops(self)

  # 33 units: rows that end off the vector width; one step; a batch of one; a wide input.
  @parameterized.parameters((7, 3, 5, 33), (1, 2, 3, 4), (6, 1, 2, 8), (5, 4, 40, 16))
  def test_values_and_gradients_match_a_float64_reference(self, time, batch, features, units):
    module = fused_ops.load()
    self.assertIsNotNone(module)
    shapes = ([time, batch, features], [batch, units], [batch, units], [features, 4 * units], [units, 4 * units],
              [4 * units])
    # Large initial cell states and biases: saturated gates and |c| > 3, as a trained LSTM has.
    scales = (1.0, 1.0, 4.0, 0.5, 0.5, 2.0)
    results = _op_and_reference(lambda *a: fused_ops.lstm(module, *a), _float64_lstm, shapes, scales, seed=11)
    self.assertGreater(np.abs(results[1][1]).max(), 3.0)
    for actual, expected in zip(*results):
      np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)

  def test_the_last_state_alone_gets_the_same_gradients(self):
    # Gradients that reach only h_T and c_T (a classifier on the last step): the op's other outputs get none.
    module = fused_ops.load()
    values = [tf.random.stateless_normal(shape, seed=[13, i]) for i, shape in
              enumerate(([5, 2, 3], [2, 4], [2, 4], [3, 16], [4, 16], [16]))]
    results = []
    for fn in (lambda *a: fused_ops.lstm(module, *a), _float64_lstm):
      with tf.GradientTape() as tape:
        tape.watch(values)
        h, c = fn(*values)
        loss = tf.reduce_sum(tf.sin(h[-1])) + tf.reduce_sum(c[-1] ** 2)
      results.append([g.numpy() for g in tape.gradient(loss, values)])
    for actual, expected in zip(*results):
      np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def _float64_gru(x, h, kernel, recurrent_kernel, bias):
  """Keras's GRU (reset_after) step by step in float64, plain TensorFlow ops: every h_t [time, batch, units]."""
  hs = []
  for x_t in tf.unstack(x):
    x_z, x_r, x_h = tf.split(x_t @ kernel + bias[0], 3, axis=-1)
    h_z, h_r, h_h = tf.split(h @ recurrent_kernel + bias[1], 3, axis=-1)
    z, r = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
    h = z * h + (1 - z) * tf.tanh(x_h + r * h_h)
    hs.append(h)
  return tf.stack(hs)


class ShapeCheckTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    testing.require_fused_ops(self)

  def test_weights_of_the_wrong_shape_are_an_error_naming_them(self):
    module = fused_ops.load()
    x, h = tf.zeros([3, 2, 5]), tf.zeros([2, 4])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'kernel must be \[features, 4 \* units\]'):
      module.harness_lstm(x=x, h0=h, c0=h, kernel=tf.zeros([5, 12]), recurrent_kernel=tf.zeros([4, 16]),
                          bias=tf.zeros([16]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'c0 must be \[batch, units\]'):
      module.harness_lstm(x=x, h0=h, c0=tf.zeros([2, 3]), kernel=tf.zeros([5, 16]),
                          recurrent_kernel=tf.zeros([4, 16]), bias=tf.zeros([16]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'recurrent_kernel must be \[units, 3 \* units\]'):
      module.harness_gru(x=x, h0=h, kernel=tf.zeros([5, 12]), recurrent_kernel=tf.zeros([4, 16]),
                         bias=tf.zeros([2, 12]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'bias must be \[2, 3 \* units\]'):
      module.harness_gru(x=x, h0=h, kernel=tf.zeros([5, 12]), recurrent_kernel=tf.zeros([4, 12]),
                         bias=tf.zeros([12]))


class GruOpTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    testing.require_fused_ops(self)

  @parameterized.parameters((7, 3, 5, 33), (1, 2, 3, 4), (6, 1, 2, 8), (5, 4, 40, 16))
  def test_values_and_gradients_match_a_float64_reference(self, time, batch, features, units):
    module = fused_ops.load()
    self.assertIsNotNone(module)
    shapes = ([time, batch, features], [batch, units], [features, 3 * units], [units, 3 * units], [2, 3 * units])
    scales = (1.0, 2.0, 0.5, 0.5, 2.0)  # Saturated gates, as a trained GRU has.
    results = _op_and_reference(lambda *a: (fused_ops.gru(module, *a),), lambda *a: (_float64_gru(*a),), shapes,
                                scales, seed=21)
    for actual, expected in zip(*results):
      np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


class BuildTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if platform.system() != 'Linux' or platform.machine() != 'x86_64':
      self.skipTest('the ops are built on x86-64 Linux only')

  def test_a_missing_compiler_is_one_line_naming_it(self):
    with mock.patch.dict(os.environ, {'CXX': 'no-such-compiler', 'XDG_CACHE_HOME': testing.make_tempdir(self)}):
      with self.assertRaisesRegex(fused_ops.Unavailable, r"no C\+\+ compiler 'no-such-compiler'"):
        fused_ops.library_path()

  def test_a_failing_compile_is_one_line_naming_the_command_and_leaves_nothing(self):
    cache = testing.make_tempdir(self)
    with mock.patch.dict(os.environ, {'CXX': 'false', 'XDG_CACHE_HOME': cache}):
      with self.assertRaisesRegex(fused_ops.Unavailable, r'^false -c \.\.\. failed: no output$'):
        fused_ops.library_path()
    self.assertEmpty(os.listdir(os.path.join(cache, 'harness', 'kernels')))

  def test_a_cache_it_cannot_write_is_a_warning_and_no_ops(self):
    blocker = os.path.join(testing.make_tempdir(self), 'a_file')
    open(blocker, 'w').close()
    with mock.patch.dict(os.environ, {'XDG_CACHE_HOME': blocker}):
      with self.assertLogs(level='WARNING') as logs:
        self.assertIsNone(fused_ops.load.__wrapped__())  # Uncached: load() itself keeps this process's ops.
    self.assertIn('ops are unavailable', logs.output[0])
    self.assertIn(blocker, logs.output[0])

  def test_the_build_is_cached_per_machine(self):
    testing.require_fused_ops(self)
    path = fused_ops.library_path()
    self.assertTrue(path.exists())
    self.assertEqual(fused_ops.library_path(), path)
    self.assertEqual(path.parent, fused_ops._cache_dir())  # pylint: disable=protected-access


if __name__ == '__main__':
  absltest.main()

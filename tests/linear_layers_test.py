"""minGRU, minLSTM and LRU blocks: a float64 numpy loop of their equations, initialisation, training, carry, unroll."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from harness import linear_layers
from harness import linear_specs
from tests import testing

_ERF = np.vectorize(math.erf)


def _build(arch, units=6, width=4, precision='float32', **options):
  layer = linear_layers.BUILDERS[arch](units, 'recurrent_0', {'dtype': keras.DTypePolicy(precision), **options})
  layer(tf.zeros([1, 2, width]))
  return layer


def _randomise(layer, seed=0):
  """Random weights of a size that makes every term count (the LRU's lambda kept inside the unit circle)."""
  rng = np.random.default_rng(seed)
  for weight in layer.trainable_weights:
    if weight.name in ('nu_log', 'theta_log', 'gamma_log'):
      weight.assign(weight.numpy() + rng.normal(0.0, 0.3, weight.shape))
    else:
      weight.assign(rng.normal(0.0, 0.5, weight.shape))


def _weights(layer):
  return {w.path.split('/', 1)[1]: w.numpy().astype(np.float64) for w in layer.weights}


def _dense(w, name, x):
  return x @ w[f'{name}/kernel'] + w[f'{name}/bias']


def _norm(w, name, x):
  centred = x - x.mean(-1, keepdims=True)
  return centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5) * w[f'{name}/gamma'] + w[f'{name}/beta']


def _gelu(x):
  return 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0)))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _g(x):
  return np.where(x >= 0, x + 0.5, _sigmoid(x))


def _reference(arch, layer, inputs, h):
  """The block's equations as a plain float64 loop over time: (outputs [b, t, u], h_T)."""
  w = _weights(layer)
  x = _dense(w, 'encoder', inputs) if 'encoder/kernel' in w else inputs
  normed = _norm(w, 'norm', x)
  outputs = []
  for t in range(inputs.shape[1]):
    n_t = normed[:, t]
    if arch == 'lru':
      lam = np.exp(-np.exp(w['nu_log']) + 1j * np.exp(w['theta_log']))
      h = lam * h + np.exp(w['gamma_log']) * (n_t @ (w['b_re'] + 1j * w['b_im']))
      y = (h @ (w['c_re'] + 1j * w['c_im'])).real + w['d'] * n_t
      y = _gelu(y)
      outputs.append(x[:, t] + _dense(w, 'glu_value', y) * _sigmoid(_dense(w, 'glu_gate', y)))
      continue
    k = _dense(w, 'projection', n_t)
    if arch == 'mingru':
      k_z, k_h = np.split(k, 2, -1)
      z = _sigmoid(k_z)
      h = (1 - z) * h + z * _g(k_h)
    else:
      k_f, k_i, k_h = np.split(k, 3, -1)
      f, i = _sigmoid(k_f), _sigmoid(k_i)
      h = f / (f + i) * h + i / (f + i) * _g(k_h)
    y = x[:, t] + h
    outputs.append(y + _dense(w, 'mlp_out', _gelu(_dense(w, 'mlp_in', _norm(w, 'mlp_norm', y)))))
  return np.stack(outputs, 1), h


def _initial_state(arch, units, seed=3):
  rng = np.random.default_rng(seed)
  if arch == 'lru':
    parts = rng.normal(size=[2, 3, units])
    return [p.astype(np.float32) for p in parts], parts[0] + 1j * parts[1]
  h = rng.uniform(0.0, 1.0, [3, units])  # minGRU/minLSTM states are positive.
  return [h.astype(np.float32)], h


class LinearLayersTest(parameterized.TestCase):

  # Width 4 adds the input projection; logcumsumexp only where its preconditions hold (positive a, b).
  # fused: minGRU's and minLSTM's gates folded into the op (scan.gated_scan), the LRU's plain fused scan.
  @parameterized.parameters(('mingru', 4, 'auto'), ('mingru', 6, 'logcumsumexp'), ('minlstm', 6, 'auto'),
                            ('minlstm', 4, 'logcumsumexp'), ('lru', 4, 'auto'), ('lru', 6, 'chunked'),
                            ('mingru', 4, 'fused'), ('minlstm', 6, 'fused'), ('lru', 4, 'fused'))
  def test_matches_float64_loop(self, arch, width, kernel):
    if kernel == 'fused':
      testing.require_fused_ops(self)
    keras.utils.set_random_seed(1)
    layer = _build(arch, width=width, scan_kernel=kernel)
    _randomise(layer)
    inputs = np.random.default_rng(2).normal(size=[3, 9, width])
    state, h0 = _initial_state(arch, 6)
    outputs, *final = layer(tf.constant(inputs, tf.float32), initial_state=state)
    expected, h_last = _reference(arch, layer, inputs, h0)
    np.testing.assert_allclose(outputs.numpy(), expected, rtol=1e-4, atol=1e-4)
    expected_final = [h_last.real, h_last.imag] if arch == 'lru' else [h_last]
    for actual, want in zip(final, expected_final):
      self.assertEqual(actual.dtype, tf.float32)
      np.testing.assert_allclose(actual.numpy(), want, rtol=1e-4, atol=1e-4)

  @parameterized.parameters('mingru', 'minlstm', 'lru')
  def test_fused_kernel_gradients_match_the_while_loop(self, arch):
    testing.require_fused_ops(self)
    keras.utils.set_random_seed(1)
    layer = _build(arch, width=4)
    _randomise(layer)
    inputs = tf.constant(np.random.default_rng(2).normal(size=[3, 9, 4]), tf.float32)
    state, _ = _initial_state(arch, 6)
    gradients = {}
    for kernel in ('fused', 'sequential'):
      layer.scan_kernel = kernel
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs, *_ = layer(inputs, initial_state=state)
        loss = tf.reduce_sum(outputs * tf.sin(tf.range(6, dtype=tf.float32)))
      gradients[kernel] = tape.gradient(loss, [inputs] + layer.trainable_weights)
    for name, fused, loop in zip(['inputs'] + [w.name for w in layer.trainable_weights], *gradients.values()):
      np.testing.assert_allclose(fused.numpy(), loop.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)

  def test_lru_ring_initialisation(self):
    keras.utils.set_random_seed(0)
    layer = _build('lru', units=256, width=256, lru_r_min=0.4, lru_r_max=0.9, lru_max_phase=math.pi / 10)
    modulus, phase = layer.modulus.numpy(), layer.phase.numpy()
    self.assertTrue(np.all((modulus >= 0.4 - 1e-6) & (modulus <= 0.9 + 1e-6)))
    self.assertLess(modulus.min(), 0.5)
    self.assertGreater(modulus.max(), 0.85)
    self.assertTrue(np.all((phase >= 0) & (phase <= math.pi / 10 + 1e-6)))
    np.testing.assert_allclose(np.exp(layer.gamma_log.numpy()), np.sqrt(1 - modulus ** 2), rtol=1e-5)
    np.testing.assert_allclose(layer.timescale.numpy(), 1 / (1 - modulus), rtol=1e-5)
    _, gates = linear_layers.unroll(layer, tf.random.normal([2, 3, 256]))
    np.testing.assert_allclose(gates['modulus'].numpy()[1, 2], modulus)

  @parameterized.parameters('mingru', 'minlstm')
  def test_gates_in_unit_interval_at_initialisation(self, arch):
    keras.utils.set_random_seed(0)
    layer = _build(arch, width=4)
    _, gates = linear_layers.unroll(layer, tf.random.normal([4, 7, 4]))
    self.assertEqual(list(gates), [name for name, _ in linear_specs.GATES[arch]])
    for name, kind in linear_specs.GATES[arch]:
      values = gates[name].numpy()
      self.assertEqual(values.shape, (4, 7, 6))
      if kind == 'sigmoid':
        self.assertTrue(np.all((values > 0) & (values < 1)), name)
      else:
        self.assertTrue(np.all(values > 0), name)  # g(.) > 0.
    if arch == 'minlstm':
      np.testing.assert_allclose(gates['forget'].numpy() + gates['input'].numpy(), 1.0, rtol=1e-6)

  @parameterized.parameters(*linear_specs.ARCHS)
  def test_one_train_step_changes_every_variable(self, arch):
    keras.utils.set_random_seed(0)
    layer = _build(arch, width=4)
    optimizer = keras.optimizers.Adam(1e-2)
    before = [w.numpy() for w in layer.trainable_weights]
    with tf.GradientTape() as tape:
      outputs = layer(tf.random.normal([3, 5, 4]))
      loss = tf.reduce_sum(tf.square(outputs[0] - 1.0)) + sum(tf.reduce_sum(s) for s in outputs[1:])
    optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights))
    for old, weight in zip(before, layer.trainable_weights):
      self.assertFalse(np.allclose(old, weight.numpy()), weight.path)


if __name__ == '__main__':
  absltest.main()

"""minGRU, minLSTM and LRU blocks, the heavier cases: parameter counts, carry, unroll's gradient, mixed precision."""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import linear_layers
from harness import linear_specs
from tests.linear_layers_test import _build, _initial_state, _randomise

pytestmark = pytest.mark.slow


class LinearLayersSlowTest(parameterized.TestCase):

  @parameterized.parameters(*linear_specs.ARCHS)
  def test_parameter_count_and_state_sizes(self, arch):
    for width, expansion in ((4, 4), (6, 4), (4, 0)):
      layer = _build(arch, width=width, mlp_expansion=expansion)
      options = {'mlp_expansion': expansion}
      self.assertEqual(layer.count_params(), linear_specs.parameter_count(arch, width, 6, options))
      outputs = layer(tf.zeros([2, 3, width]))
      self.assertEqual([o.shape[-1] for o in outputs[1:]], linear_specs.state_sizes(arch, 6))

  @parameterized.parameters(*linear_specs.ARCHS)
  def test_carried_state_continues_the_sequence(self, arch):
    keras.utils.set_random_seed(0)
    layer = _build(arch, width=4)
    inputs = tf.random.normal([2, 11, 4])
    whole, *final = layer(inputs)
    first, *carried = layer(inputs[:, :4])
    second, *final_split = layer(inputs[:, 4:], initial_state=carried)
    np.testing.assert_allclose(tf.concat([first, second], 1).numpy(), whole.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(final_split, final):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)

  @parameterized.parameters(*linear_specs.ARCHS)
  def test_unroll_matches_call_and_perturbation_gradient_is_a_finite_difference(self, arch):
    keras.utils.set_random_seed(0)
    layer = _build(arch, width=4)
    _randomise(layer)
    inputs = tf.random.normal([2, 5, 4], dtype=tf.float32)
    state, _ = _initial_state(arch, 6)
    state = [s[:2] for s in state]
    outputs, _ = linear_layers.unroll(layer, inputs, state)
    np.testing.assert_allclose(outputs.numpy(), layer(inputs, initial_state=state)[0].numpy(), rtol=1e-5, atol=1e-5)
    weights = tf.random.normal(outputs.shape, seed=4)

    def loss(perturbation):
      return tf.reduce_sum(linear_layers.unroll(layer, inputs, state, perturbation)[0] * weights)

    perturbation = tf.zeros([5, 2, 6])
    with tf.GradientTape() as tape:
      tape.watch(perturbation)
      value = loss(perturbation)
    gradient = tape.gradient(value, perturbation).numpy()
    epsilon = 1e-2
    for t, b, n in ((0, 0, 0), (2, 1, 3), (4, 0, 5)):
      step = tf.tensor_scatter_nd_update(perturbation, [[t, b, n]], [epsilon])
      difference = (loss(step) - loss(-step)).numpy() / (2 * epsilon)
      np.testing.assert_allclose(gradient[t, b, n], difference, rtol=1e-2, atol=1e-3)

  @parameterized.parameters(*linear_specs.ARCHS)
  def test_mixed_bfloat16_scans_in_float32(self, arch):
    keras.utils.set_random_seed(0)
    exact = _build(arch, width=4)
    mixed = _build(arch, width=4, precision='mixed_bfloat16')
    for source, target in zip(exact.weights, mixed.weights):
      target.assign(source)
    inputs = tf.random.normal([2, 30, 4])
    expected, *expected_state = exact(inputs)
    outputs, *state = mixed(inputs)
    self.assertEqual(outputs.dtype, tf.bfloat16)
    np.testing.assert_allclose(tf.cast(outputs, tf.float32).numpy(), expected.numpy(), rtol=0.05, atol=0.1)
    for actual, want in zip(state, expected_state):
      self.assertEqual(actual.dtype, tf.float32)
      np.testing.assert_allclose(actual.numpy(), want.numpy(), rtol=0.05, atol=0.05)
    unrolled, _ = linear_layers.unroll(mixed, inputs)
    np.testing.assert_allclose(tf.cast(unrolled, tf.float32).numpy(), tf.cast(outputs, tf.float32).numpy(),
                               rtol=0.02, atol=0.05)


if __name__ == '__main__':
  absltest.main()

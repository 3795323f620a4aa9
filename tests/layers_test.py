"""The fused CPU LSTM (both ops) against Keras's LSTM and a float64 reference: values, gradients, ops, fallbacks."""

import dataclasses
import os
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from harness import fused_ops
from harness import layers
from harness import models
from tests import testing


def _same_weights(fused, reference):
  """Builds both layers on inputs [5, 9, 3] and gives them the same random weights; returns the inputs."""
  inputs = tf.random.stateless_normal([5, 9, 3], seed=[0, 1])
  fused(inputs)
  reference(inputs)
  for i, (fused_weight, reference_weight) in enumerate(zip(fused.weights, reference.weights)):
    value = tf.random.stateless_normal(reference_weight.shape, seed=[2, i])
    fused_weight.assign(value)
    reference_weight.assign(value)
  return inputs


def _outputs_and_gradients(layer, inputs, initial_state):
  """The layer's outputs and the gradients of its weights, inputs and initial state, as arrays."""
  with tf.GradientTape() as tape:
    tape.watch([inputs] + initial_state)
    outputs = layer(inputs, initial_state=initial_state)
    # Weight every output differently so each one's gradient path counts.
    loss = sum((k + 1.0) * tf.reduce_sum(tf.sin(o)) for k, o in enumerate(outputs))
  gradients = tape.gradient(loss, layer.trainable_weights + [inputs] + initial_state)
  return [o.numpy() for o in outputs], [g.numpy() for g in gradients]


def _training_op_types(layer, inputs):
  """The op types of a traced forward and backward pass of the layer."""

  @tf.function
  def loss_and_gradients(inputs):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(layer(inputs)[0])
    return tape.gradient(loss, layer.trainable_weights)

  return {op.type for op in loss_and_gradients.get_concrete_function(inputs).graph.get_operations()}


def _assert_same_outputs_and_gradients(actual, expected):
  for a, e in zip(actual[0], expected[0]):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
  for a, e in zip(actual[1], expected[1]):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


class FusedLSTMTest(parameterized.TestCase):

  def _layer_pair(self, op='harness', **kwargs):
    """A FusedLSTM running `op` and a keras.layers.LSTM holding the same random weights."""
    if op == 'harness':
      testing.require_fused_ops(self)
    fused = layers.FusedLSTM(4, return_state=True, op=op, **kwargs)
    reference = keras.layers.LSTM(4, return_state=True, **kwargs)
    return fused, reference, _same_weights(fused, reference)

  @parameterized.product(return_sequences=(True, False), op=('harness', 'block'))
  def test_matches_keras_lstm_values_and_gradients(self, return_sequences, op):
    fused, reference, inputs = self._layer_pair(op, return_sequences=return_sequences)
    # A large initial cell state kept by open forget gates: cell states beyond 3,
    # where the op would clip by its own default.
    initial_state = [tf.random.stateless_normal([5, 4], seed=[3, i]) * (1.0 + 5.0 * i) for i in range(2)]
    for layer in (fused, reference):
      layer.cell.bias.assign_add(tf.concat([tf.zeros([4]), tf.fill([4], 4.0), tf.zeros([8])], 0))
    actual = _outputs_and_gradients(fused, inputs, initial_state)
    self.assertGreater(np.abs(actual[0][2]).max(), 3.0)  # The cell state.
    _assert_same_outputs_and_gradients(actual, _outputs_and_gradients(reference, inputs, initial_state))

  @parameterized.parameters(('harness', 'HarnessLstm'), ('block', 'BlockLSTM'))
  def test_runs_one_op_per_sequence_on_cpu(self, op, op_type):
    if tf.config.list_logical_devices('GPU'):
      self.skipTest('the CPU kernel only')
    fused, _, inputs = self._layer_pair(op, return_sequences=True)
    op_types = _training_op_types(fused, inputs)
    self.assertContainsSubset({op_type, op_type + 'Grad'}, op_types)
    self.assertNoCommonElements({'While', 'StatelessWhile'}, op_types)

  def test_leaves_a_gpu_to_keras_and_cudnn(self):
    fused, _, inputs = self._layer_pair(return_sequences=True)
    with mock.patch.object(layers, 'gpu_available', return_value=True):
      self.assertFalse(fused._runs_fused_on_cpu(None, training=True))  # pylint: disable=protected-access
      graph = tf.function(lambda x: fused(x)[0]).get_concrete_function(inputs).graph
      # No GPU here, so Keras falls back from cuDNN to its loop; what matters is that neither CPU op is used.
      self.assertNoCommonElements({'HarnessLstm', 'BlockLSTM'}, {op.type for op in graph.get_operations()})

  @parameterized.parameters('harness', 'block')
  def test_odd_batch_of_unknown_size_matches_keras(self, op):
    fused, reference, inputs = self._layer_pair(op, return_sequences=True)
    spec = tf.TensorSpec([None, *inputs.shape[1:]])
    for batch in (5, 4):
      actual = tf.function(lambda x: fused(x)[0], input_signature=[spec])(inputs[:batch])
      np.testing.assert_allclose(actual.numpy(), reference(inputs[:batch])[0].numpy(), rtol=1e-5, atol=1e-5)

  def test_falls_back_to_keras_where_the_op_cannot_follow(self):
    fused, reference, inputs = self._layer_pair(return_sequences=True, go_backwards=True)
    self.assertFalse(fused._runs_fused_on_cpu(None, training=False))  # pylint: disable=protected-access
    np.testing.assert_allclose(fused(inputs)[0].numpy(), reference(inputs)[0].numpy(), rtol=1e-6, atol=1e-6)

  def test_a_folded_input_projection_matches_projection_then_lstm(self):
    if tf.config.list_logical_devices('GPU'):
      self.skipTest('the CPU kernel only')
    testing.require_fused_ops(self)
    inputs = tf.random.stateless_normal([5, 7, 3], seed=[9, 9])
    fused_config = testing.tiny_config(units=(4,), input_units=6)
    folded = models.build_model(fused_config, num_outputs=3, per_step_outputs=False, num_features=3)
    reference = models.build_model(dataclasses.replace(fused_config, lstm_kernel='keras'), num_outputs=3,
                                   per_step_outputs=False, num_features=3)
    for i, (a, b) in enumerate(zip(folded.weights, reference.weights)):
      value = tf.random.stateless_normal(a.shape, seed=[6, i])
      a.assign(value)
      b.assign(value)
    state = [tf.random.stateless_normal([5, 4], seed=[7, i]) for i in range(2)]
    results = []
    for model in (folded, reference):
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs, final_state, sequences = model.forward(inputs, [state], training=True)
        loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(tf.cos(final_state[0][1])) + tf.reduce_sum(sequences[0])
      gradients = tape.gradient(loss, model.trainable_variables + [inputs])
      results.append((outputs.numpy(), sequences[0].numpy(), [g.numpy() for g in gradients]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)
    for actual, expected in zip(results[0][2], results[1][2]):
      np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)

    graph = tf.function(lambda x: folded(x)[0]).get_concrete_function(inputs).graph
    lstm, = [op for op in graph.get_operations() if op.type == 'HarnessLstm']
    self.assertEqual(lstm.inputs[0].shape[-1], 3)  # The raw features: the projection is folded in.

  def test_checkpoints_move_between_kernels(self):
    inputs = tf.random.stateless_normal([2, 5, 3], seed=[4, 5])
    config = testing.tiny_config(arch='stacked_lstm', units=(4, 6))
    fused = models.build_model(config, num_outputs=3, per_step_outputs=False, num_features=3)
    path = tf.train.Checkpoint(model=fused).write(os.path.join(testing.make_tempdir(self), 'ckpt'))
    keras_config = testing.tiny_config(arch='stacked_lstm', units=(4, 6), lstm_kernel='keras')
    reference = models.build_model(keras_config, num_outputs=3, per_step_outputs=False, num_features=3)
    tf.train.Checkpoint(model=reference).read(path).assert_existing_objects_matched()
    np.testing.assert_allclose(reference(inputs)[0].numpy(), fused(inputs)[0].numpy(), rtol=1e-5, atol=1e-6)

  def test_without_the_op_the_layer_runs_block_lstm(self):
    if tf.config.list_logical_devices('GPU'):
      self.skipTest('the CPU kernel only')
    fused = layers.FusedLSTM(4, return_sequences=True)
    inputs = tf.random.stateless_normal([2, 3, 5], seed=[1, 2])
    with mock.patch.object(fused_ops, 'load', return_value=None):
      graph = tf.function(lambda x: fused(x)[0]).get_concrete_function(inputs).graph
    self.assertIn('BlockLSTM', {op.type for op in graph.get_operations()})


  def test_auto_fuses_every_width_where_the_op_is_built_and_keeps_blocklstm_to_128_units(self):
    options = dict(lstm_kernel='auto', forget_bias=1.0, dtype='float32')
    if fused_ops.load() is not None:  # The long-memory table's LSTM(130) ran Keras's loop under the old bound.
      self.assertIsInstance(layers.lstm(130, 'wide', options), layers.FusedLSTM)
      self.assertTrue(models.all_layers_fused(testing.tiny_config(arch='lstm', units=(130,))))
    with mock.patch.object(fused_ops, 'load', return_value=None):
      self.assertNotIsInstance(layers.lstm(130, 'wide', options), layers.FusedLSTM)  # BlockLSTM loses there.
      self.assertIsInstance(layers.lstm(128, 'narrow', options), layers.FusedLSTM)
      self.assertFalse(models.all_layers_fused(testing.tiny_config(arch='lstm', units=(130,))))

class FusedGRUTest(parameterized.TestCase):

  def _layer_pair(self, **kwargs):
    """A FusedGRU and a keras.layers.GRU holding the same random weights."""
    testing.require_fused_ops(self)
    fused = layers.FusedGRU(4, return_state=True, **kwargs)
    reference = keras.layers.GRU(4, return_state=True, **kwargs)
    return fused, reference, _same_weights(fused, reference)

  @parameterized.parameters(True, False)
  def test_matches_keras_gru_values_and_gradients(self, return_sequences):
    fused, reference, inputs = self._layer_pair(return_sequences=return_sequences)
    initial_state = [tf.random.stateless_normal([5, 4], seed=[3, 0])]
    _assert_same_outputs_and_gradients(_outputs_and_gradients(fused, inputs, initial_state),
                                       _outputs_and_gradients(reference, inputs, initial_state))

  def test_runs_one_op_per_sequence_on_cpu(self):
    if tf.config.list_logical_devices('GPU'):
      self.skipTest('the CPU kernel only')
    fused, _, inputs = self._layer_pair(return_sequences=True)
    op_types = _training_op_types(fused, inputs)
    self.assertContainsSubset({'HarnessGru', 'HarnessGruGrad'}, op_types)
    self.assertNoCommonElements({'While', 'StatelessWhile'}, op_types)

  def test_falls_back_to_keras_where_the_op_cannot_follow(self):
    fused, reference, inputs = self._layer_pair(return_sequences=True, go_backwards=True)
    self.assertFalse(fused._runs_fused_on_cpu(None, training=False))  # pylint: disable=protected-access
    np.testing.assert_allclose(fused(inputs)[0].numpy(), reference(inputs)[0].numpy(), rtol=1e-6, atol=1e-6)
    fused, _, _ = self._layer_pair(return_sequences=True)
    with mock.patch.object(fused_ops, 'load', return_value=None):  # No compiler or no oneDNN here.
      self.assertFalse(fused._runs_fused_on_cpu(None, training=False))  # pylint: disable=protected-access


if __name__ == '__main__':
  absltest.main()

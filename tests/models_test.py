"""Model shapes, state structure, the forget-gate bias and the fused LSTM kernel."""

import os
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import archs
from harness import config as config_lib
from harness import fused_ops
from harness import layers
from harness import models
from harness import runfiles
from tests import testing


class ModelsTest(parameterized.TestCase):

  @parameterized.product(
      arch_units=[('rnn', (6,)), ('gru', (4, 6)), ('lstm', (6,)), ('stacked_lstm', (4, 6, 5)), ('rnn', (3, 5))],
      input_units=[0, 3],
  )
  @pytest.mark.slow
  def test_classification_shapes(self, arch_units, input_units):
    arch, units = arch_units
    config = testing.tiny_config(arch=arch, units=units, input_units=input_units)
    model = models.build_model(config, num_outputs=10, per_step_outputs=False, num_features=7)
    outputs, final_state, sequences = model.forward(tf.zeros([2, 5, 7]))
    self.assertEqual(outputs.shape, (2, 10))
    expected_state = [archs.get(arch).state_sizes(n) for n in units]
    self.assertEqual([[s.shape for s in layer] for layer in final_state],
                     [[(2, n) for n in layer] for layer in expected_state])
    self.assertEqual([s.shape for s in sequences], [(2, 5, n) for n in units])
    self.assertEqual(model.input_projection is not None, bool(input_units))

  def test_per_step_head(self):
    config = testing.tiny_config(task='sin2cos', units=(4,))
    model = models.build_model(config, num_outputs=1, per_step_outputs=True, num_features=1)
    outputs, _ = model(tf.zeros([3, 9, 1]))
    self.assertEqual(outputs.shape, (3, 9, 1))

  def test_initial_state_changes_the_output(self):
    config = testing.tiny_config(arch='stacked_lstm', units=(4, 5))
    model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=3)
    inputs = tf.random.stateless_normal([2, 4, 3], seed=[1, 2])
    zero_state_outputs, final_state = model(inputs)
    carried_outputs, _ = model(inputs, initial_state=final_state)
    self.assertGreater(float(tf.reduce_max(tf.abs(zero_state_outputs - carried_outputs))), 1e-4)

  @parameterized.parameters('lstm', 'stacked_lstm')
  def test_forget_bias_initializes_the_forget_gate_only(self, arch):
    units = (3, 4) if arch == 'stacked_lstm' else (3,)
    config = testing.tiny_config(arch=arch, units=units, forget_bias=2.5)
    model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=2)
    for layer, n in zip(model.recurrent_layers, units):
      bias = layer.cell.bias.numpy()
      np.testing.assert_array_equal(bias[n:2 * n], np.full(n, 2.5))
      np.testing.assert_array_equal(np.delete(bias, np.s_[n:2 * n]), np.zeros(3 * n))

  @parameterized.parameters(('auto', 'HarnessLstm fused kernel'), ('fused', 'HarnessLstm fused kernel'),
                            ('block', 'BlockLSTM fused kernel'), ('keras', 'generic LSTM loop'))
  def test_kernel_name_on_cpu(self, lstm_kernel, expected):
    if tf.config.list_logical_devices('GPU'):
      self.skipTest('CPU kernels only')
    if 'Harness' in expected:
      testing.require_fused_ops(self)
    config = testing.tiny_config(lstm_kernel=lstm_kernel)
    model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=2)
    self.assertIn(expected, models.recurrent_kernel_name(model))
    self.assertNotIn('recurrent_0:', models.recurrent_kernel_name(model))  # One name for every layer.

  def test_auto_fuses_every_width_where_the_op_is_built_and_up_to_128_units_where_not(self):
    config = testing.tiny_config(arch='stacked_lstm', units=(128, 129))
    with mock.patch.object(fused_ops, 'load', return_value=None):  # BlockLSTM, which loses above 128 units.
      model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=2)
      self.assertEqual([type(layer) for layer in model.recurrent_layers], [layers.FusedLSTM, keras.layers.LSTM])
      self.assertFalse(models.all_layers_fused(config))
      self.assertTrue(models.all_layers_fused(testing.tiny_config(arch='stacked_lstm', units=(4, 128))))
      self.assertTrue(models.all_layers_fused(testing.tiny_config(units=(512,), lstm_kernel='fused')))
      self.assertTrue(models.all_layers_fused(testing.tiny_config(units=(512,), lstm_kernel='block')))
    self.assertTrue(models.all_layers_fused(testing.tiny_config(arch='gru')))
    self.assertFalse(models.all_layers_fused(testing.tiny_config(arch='rnn')))
    self.assertFalse(models.all_layers_fused(testing.tiny_config(units=(512,), lstm_kernel='keras')))
    if not tf.config.list_logical_devices('GPU'):
      testing.require_fused_ops(self)
      model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=2)
      self.assertEqual([type(layer) for layer in model.recurrent_layers], [layers.FusedLSTM, layers.FusedLSTM])
      self.assertTrue(models.all_layers_fused(config))
      name = models.recurrent_kernel_name(model)
      self.assertTrue(name.startswith('harness HarnessLstm fused kernel'), name)  # One kernel: said once.

  # The layers' auto never takes the fused op (their passes are XLA-compiled): minGRU by choose_kernel's rule, the LRU the while-loop.
  @parameterized.parameters(('mingru', 'auto', 'auto: sequential'), ('mingru', 'chunked', 'chunked'),
                            ('mingru', 'logcumsumexp', 'log-space'), ('lru', 'auto', 'auto: sequential'),
                            ('lru', 'fused', 'fused (the harness'))
  def test_kernel_name_of_a_linear_recurrence(self, arch, scan_kernel, expected):
    config = testing.tiny_config(arch=arch, units=(3, 4), scan_kernel=scan_kernel)
    model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=2)
    name = models.recurrent_kernel_name(model)
    self.assertIn('linear scan', name)
    self.assertIn(expected, name)

  def test_xla_compiles_only_where_no_layer_runs_a_fused_op(self):
    for arch in ('mingru', 'minlstm', 'lru'):
      self.assertTrue(models.xla_compiles(self._linear_model(arch, 'auto')), arch)
      if fused_ops.load() is not None:
        self.assertFalse(models.xla_compiles(self._linear_model(arch, 'fused')), arch)
    self.assertFalse(models.xla_compiles(self._linear_model('lstm', 'auto')))

  def _linear_model(self, arch, scan_kernel):
    config = testing.tiny_config(arch=arch, units=(3,), scan_kernel=scan_kernel)
    return models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=2)

  def test_an_old_stacked_lstm_config_builds_the_lstm_model(self):
    # A config.json written before depth was apart from the cell: arch stacked_lstm.
    config = testing.tiny_config(units=(3, 4))
    workdir = testing.make_tempdir(self)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config_lib.to_json(config).replace('"arch": "lstm"', '"arch": "stacked_lstm"'))
    old = runfiles.read_config(workdir, config.logdir, config.run_name)
    self.assertEqual(old.arch, 'stacked_lstm')
    config_lib.validate(old)
    weights = []
    for config in (old, testing.tiny_config(units=(3, 4))):
      keras.utils.set_random_seed(0)
      model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=3)
      weights.append([(v.path.split('/', 1)[-1], v.numpy()) for v in model.trainable_variables])
    self.assertEqual([name for name, _ in weights[0]], [name for name, _ in weights[1]])
    for (name, a), (_, b) in zip(*weights):
      np.testing.assert_array_equal(a, b, err_msg=name)


if __name__ == '__main__':
  absltest.main()

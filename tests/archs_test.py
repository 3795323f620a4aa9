"""The arch and task tables: TensorFlow-free, and every arch's layer keeps the contract of `harness.archs`."""

import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from harness import archs
from harness import config as config_lib
from harness import task_table
from tests import testing


class TablesTest(absltest.TestCase):

  def test_the_tables_and_the_config_import_no_tensorflow(self):
    code = ('import sys; from harness import archs, cli, config, runs, schedule, task_table, tasks; '
            'print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=testing.REPO_ROOT,
                            check=True)
    self.assertEqual(result.stdout.strip(), '[]')

  def test_arch_entries_name_what_exists(self):
    for name, arch in archs.ARCHS.items():
      with self.subTest(arch=name):
        self.assertEqual(arch.name, name)
        self.assertTrue(arch.kernels and arch.description)
        self.assertLessEqual({kind for _, kind in arch.gates}, {archs.SIGMOID, archs.TANH, archs.NONE})
        self.assertLessEqual(set(arch.options), set(config_lib.FIELDS))
        for reference in (arch.layer, arch.unroll, arch.keras_layer):
          if reference:  # keras_layer is '' where Keras has no such layer.
            self.assertTrue(callable(archs.resolve(reference)), reference)
    self.assertLessEqual(set(archs.ALIASES.values()), set(archs.ARCHS))
    self.assertEqual(config_lib.FIELDS['arch'].metadata['choices'], archs.NAMES)

  def test_task_entries_name_config_fields(self):
    for name, spec in task_table.TASKS.items():
      with self.subTest(task=name):
        self.assertEqual(spec.name, name)
        self.assertLessEqual(set(spec.defaults) | set(spec.flags), set(config_lib.FIELDS))
        self.assertEqual(spec.eval_metrics[0], 'loss')
        self.assertTrue(callable(archs.resolve(spec.builder)))


class LayerContractTest(parameterized.TestCase):
  """What every arch's layer promises (`harness.archs`), checked on each entry."""

  @parameterized.parameters(*archs.ARCHS)
  def test_layer_state_parameters_and_reference(self, name):
    arch = archs.ARCHS[name]
    options = {'dtype': keras.DTypePolicy('float32'), 'forget_bias': 1.0, 'lstm_kernel': 'auto'}
    options.update({field: config_lib.FIELDS[field].default for field in arch.options})
    layer = arch.build_layer(3, 'recurrent_0', options)
    inputs = tf.random.stateless_normal([2, 5, 4], seed=[1, 2])
    outputs, *state = layer(inputs, initial_state=None, training=False)
    self.assertEqual(layer.name, 'recurrent_0')
    self.assertEqual(outputs.shape, (2, 5, 3))
    self.assertEqual([s.shape for s in state], [(2, n) for n in arch.state_sizes(3)])
    self.assertEqual(arch.parameter_count(4, 3, options), sum(int(np.prod(v.shape)) for v in layer.trainable_variables))
    carried = [tf.random.stateless_normal(s.shape, seed=[3, i]) for i, s in enumerate(state)]
    perturbation = tf.zeros([5, 2, arch.state_sizes(3)[0]])
    reference, gates = arch.unroll_layer(layer, inputs, carried, perturbation)
    np.testing.assert_allclose(reference.numpy(), layer(inputs, initial_state=carried)[0].numpy(), rtol=1e-5,
                               atol=1e-5)
    self.assertEqual(tuple(gates), tuple(gate for gate, _ in arch.gates))
    self.assertEqual({g.shape for g in gates.values()}, {(2, 5, arch.state_sizes(3)[0])})


if __name__ == '__main__':
  absltest.main()

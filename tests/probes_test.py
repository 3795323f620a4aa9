"""Probes on the fixed batch: one function each, their tags, shapes and values."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from harness import probes
from harness import steps
from tests import testing


class ProbesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = testing.learnable_image_task()
    self.config = testing.tiny_config(arch='stacked_lstm', units=(4, 6), input_units=3)
    self.state = steps.create_train_state(self.config, self.task, tf.distribute.get_strategy(), total_steps=1)
    self.inputs, self.targets = self.task.probe_batch()

  def test_weights_gradients_and_activations(self):
    arrays = probes.make_probe_step(self.state.model, self.task)(self.inputs, self.targets)
    variables = self.state.model.trainable_variables
    with tf.GradientTape() as tape:
      outputs, _ = self.state.model(self.inputs)
      loss = tf.reduce_mean(self.task.per_example_loss(self.targets, outputs))
    for variable, gradient in zip(variables, tape.gradient(loss, variables)):
      np.testing.assert_array_equal(arrays[f'weights/{variable.path}'], variable.numpy())
      np.testing.assert_allclose(arrays[f'gradients/{variable.path}'], gradient.numpy(), rtol=1e-5, atol=1e-7)
    self.assertEqual(arrays['activations/recurrent_1'].shape, (len(self.inputs), 8, 6))

  def test_only_the_named_probes_run(self):
    arrays = probes.make_probe_step(self.state.model, self.task, names=('activations',))(self.inputs, self.targets)
    self.assertEqual(set(arrays), {'activations/recurrent_0', 'activations/recurrent_1'})


if __name__ == '__main__':
  absltest.main()

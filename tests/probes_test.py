"""Probes: reference recurrences against each layer and numpy, gradient flow against finite differences, tags."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import archs
from harness import config as config_lib
from harness import layers
from harness import loop
from harness import models
from harness import probes
from harness import recurrence
from harness import steps
from harness.tasks import base
from tests import testing


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


_ARCH_OF = {'lstm': 'lstm', 'fused': 'lstm', 'gru': 'gru', 'rnn': 'rnn'}  # random_layer's kinds.


def gate_names(layer):
  kind = 'lstm' if isinstance(layer, keras.layers.LSTM) else 'gru' if isinstance(layer, keras.layers.GRU) else 'rnn'
  return tuple(name for name, _ in archs.ARCHS[kind].gates)


def numpy_recurrence(layer, inputs, perturbation=None):
  """The cell's equations in float64 numpy: (outputs [b, t, u], {gate: [b, t, u]})."""
  cell = layer.cell
  kernel, recurrent = (np.asarray(w, np.float64) for w in (cell.kernel, cell.recurrent_kernel))
  bias = np.asarray(cell.bias, np.float64)
  batch, steps_, _ = inputs.shape
  units = cell.units
  h = np.zeros([batch, units])
  c = np.zeros([batch, units])
  outputs, gates = [], {name: [] for name in gate_names(layer)}
  for t in range(steps_):
    x = inputs[:, t].astype(np.float64)
    if isinstance(layer, keras.layers.LSTM):
      z = x @ kernel + h @ recurrent + bias
      i, f, g, o = sigmoid(z[:, :units]), sigmoid(z[:, units:2 * units]), np.tanh(z[:, 2 * units:3 * units]), \
          sigmoid(z[:, 3 * units:])
      c = f * c + i * g
      h = o * np.tanh(c)
      values = (i, f, g, o, np.abs(c))
    elif isinstance(layer, keras.layers.GRU):
      x_part = x @ kernel + bias[0]
      h_part = h @ recurrent + bias[1]
      z = sigmoid(x_part[:, :units] + h_part[:, :units])
      r = sigmoid(x_part[:, units:2 * units] + h_part[:, units:2 * units])
      candidate = np.tanh(x_part[:, 2 * units:] + r * h_part[:, 2 * units:])
      h = z * h + (1 - z) * candidate
      values = (z, r, candidate)
    else:
      h = np.tanh(x @ kernel + h @ recurrent + bias)
      values = (h,)
    if perturbation is not None:
      h = h + perturbation[t]
    outputs.append(h)
    for name, value in zip(gates, values):
      gates[name].append(value)
  return np.stack(outputs, 1), {name: np.stack(v, 1) for name, v in gates.items()}


def random_layer(kind, units=2, features=3, seed=0):
  layer = {'lstm': keras.layers.LSTM, 'fused': layers.FusedLSTM, 'gru': keras.layers.GRU,
           'rnn': keras.layers.SimpleRNN}[kind](units, return_sequences=True, return_state=True)
  layer(tf.zeros([1, 2, features]))
  for i, weight in enumerate(layer.weights):
    weight.assign(tf.random.stateless_normal(weight.shape, seed=[seed, i]))
  return layer


class RecurrenceTest(parameterized.TestCase):

  @parameterized.parameters('lstm', 'fused', 'gru', 'rnn')
  def test_the_reference_equals_the_layer_and_numpy(self, kind):
    layer = random_layer(kind, units=3)
    inputs = tf.random.stateless_normal([4, 6, 3], seed=[7, 8])
    outputs, gates = archs.ARCHS[_ARCH_OF[kind]].unroll_layer(layer, inputs)
    np.testing.assert_allclose(outputs.numpy(), layer(inputs)[0].numpy(), rtol=1e-5, atol=1e-5)
    expected_outputs, expected_gates = numpy_recurrence(layer, inputs.numpy())
    np.testing.assert_allclose(outputs.numpy(), expected_outputs, rtol=1e-4, atol=1e-5)
    self.assertEqual(tuple(gates), gate_names(layer))
    for name, values in gates.items():
      np.testing.assert_allclose(values.numpy(), expected_gates[name], rtol=1e-4, atol=1e-5, err_msg=name)

  def test_the_reference_starts_from_a_carried_state(self):
    layer = random_layer('fused', units=3)
    inputs = tf.random.stateless_normal([2, 4, 3], seed=[1, 1])
    state = [tf.random.stateless_normal([2, 3], seed=[2, i]) for i in range(2)]
    outputs, _ = recurrence.unroll_lstm(layer, inputs, state)
    np.testing.assert_allclose(outputs.numpy(), layer(inputs, initial_state=state)[0].numpy(), rtol=1e-5, atol=1e-5)


class GradientFlowTest(parameterized.TestCase):

  def model(self, arch):
    config = testing.tiny_config(arch=arch, units=(2,), input_units=0)
    model = models.build_model(config, num_outputs=2, per_step_outputs=False, num_features=3)
    for i, weight in enumerate(model.weights):
      weight.assign(tf.random.stateless_normal(weight.shape, seed=[3, i]))
    return model

  @parameterized.parameters('lstm', 'gru', 'rnn')
  def test_dl_dh_is_the_total_derivative_through_later_steps(self, arch):
    model = self.model(arch)
    task = testing.learnable_image_task()
    inputs = tf.random.stateless_normal([2, 3, 3], seed=[5, 6])
    targets = tf.constant([0, 1])
    reference = probes.ProbeBatch(model, task, inputs, targets).reference
    layer, head = model.recurrent_layers[0], model.head
    head_kernel, head_bias = (np.asarray(w, np.float64) for w in (head.kernel, head.bias))

    def loss(perturbation):
      hidden, _ = numpy_recurrence(layer, inputs.numpy(), perturbation)
      logits = hidden[:, -1] @ head_kernel + head_bias
      log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
      return -log_softmax[np.arange(2), targets.numpy()]  # Per example.

    epsilon = 1e-6
    expected = np.zeros([3, 2])  # [T, batch]: |dL_b/dh_t| of each example's own loss.
    for t in range(3):
      gradient = np.zeros([2, 2])
      for unit in range(2):
        delta = np.zeros([3, 2, 2])
        delta[t, :, unit] = epsilon
        gradient[:, unit] = (loss(delta) - loss(-delta)) / (2 * epsilon)
      expected[t] = np.linalg.norm(gradient, axis=-1)
    np.testing.assert_allclose(reference['flow'][0].numpy(), expected.mean(axis=1), rtol=1e-3, atol=1e-7)
    self.assertGreater(float(reference['flow'][0][0]), 0.0)  # Not only the last step's direct path.

  def test_dl_dx_equals_the_gradient_of_the_model_itself(self):
    model = self.model('lstm')
    task = testing.learnable_image_task()
    inputs = tf.random.stateless_normal([4, 5, 3], seed=[1, 2])
    targets = tf.constant([0, 1, 1, 0])
    reference = probes.ProbeBatch(model, task, inputs, targets).reference
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      loss = tf.reduce_sum(task.per_example_loss(targets, model(inputs)[0]))
    expected = tf.reduce_mean(tf.norm(tape.gradient(loss, inputs), axis=-1), axis=0)
    np.testing.assert_allclose(reference['input_flow'].numpy(), expected.numpy(), rtol=1e-4, atol=1e-7)


class TimescalesTest(parameterized.TestCase):

  def _batch(self, arch, **overrides):
    config = testing.tiny_config(arch=arch, units=(5, 6), input_units=3, **overrides)
    model = models.build_model(config, num_outputs=4, per_step_outputs=False, num_features=8)
    task = testing.learnable_image_task()
    inputs = tf.random.stateless_uniform([3, 7, 8], seed=[1, 2])
    return probes.ProbeBatch(model, task, inputs, tf.constant([0, 1, 2])), model

  def test_lru_timescales_are_its_eigenvalues(self):
    batch, model = self._batch('lru', lru_r_min=0.5, lru_r_max=0.99)
    result = probes.timescales(batch)
    for i, layer in enumerate(model.recurrent_layers):
      expected = np.sort(1 / (1 - layer.modulus.numpy()))
      np.testing.assert_allclose(result['tensors'][f'timescales/layer_{i}'].numpy(), expected, rtol=1e-4)
      self.assertTrue(np.all((expected >= 2 - 1e-4) & (expected <= 100 + 1e-2)))
      np.testing.assert_allclose(result['scalars'][f'timescales/layer_{i}.max'].numpy(), expected[-1], rtol=1e-4)

  @parameterized.parameters(('mingru', 'update', lambda z: 1 / z), ('lstm', 'forget', lambda f: 1 / (1 - f)))
  def test_gated_timescales_are_the_mean_retention(self, arch, gate, steps):
    batch, _ = self._batch(arch)
    result = probes.timescales(batch)
    values = batch.reference['gates'][1][gate].numpy().mean(axis=(0, 1))
    np.testing.assert_allclose(result['tensors']['timescales/layer_1'].numpy(), np.sort(steps(values)), rtol=1e-4)

  def test_an_arch_without_retention_has_none(self):
    batch, _ = self._batch('rnn')
    self.assertEqual(probes.timescales(batch), {'figure_data': {}})

  def test_linear_archs_gates_saturation_where_they_saturate_the_mean_elsewhere(self):
    lru = probes.gates(self._batch('lru')[0])
    self.assertEqual(set(lru['scalars']), {f'gate_mean/layer_{i}.{gate}' for i in (0, 1) for gate in ('modulus', 'phase')})
    self.assertEqual(lru['figure_data']['saturated'], {})  # No gates figure: |lambda| and phase are constant in t.
    minlstm = probes.gates(self._batch('minlstm')[0])
    self.assertEqual(set(minlstm['scalars']), {f'{group}/layer_{i}.{gate}' for i in (0, 1) for group, gate in (
        ('saturation', 'forget'), ('saturation', 'input'), ('gate_mean', 'candidate'))})
    self.assertEqual(minlstm['figure_data']['saturated']['layer_1/forget'].shape, (7,))  # [T]


class SaturationTest(absltest.TestCase):

  def test_thresholds(self):
    values = tf.constant([0.05, 0.5, 0.95, 0.9, 0.1])
    self.assertAlmostEqual(float(probes.saturated(archs.SIGMOID, values)), 0.4)
    self.assertAlmostEqual(float(probes.saturated(archs.TANH, tf.constant([-0.95, 0.2, 0.91, 0.5]))), 0.5)
    self.assertIsNone(probes.saturated(archs.NONE, values))
    by_step = probes.saturated(archs.SIGMOID, tf.constant([[[0.05, 0.5], [0.5, 0.5]]]), axis=[0, 2])
    np.testing.assert_allclose(by_step.numpy(), [0.5, 0.0])

  def test_the_flow_ratio_is_log10_and_finite_when_a_norm_underflows(self):
    self.assertAlmostEqual(float(probes.log10_ratio(tf.constant(1e-9), tf.constant(0.1))), -8.0, places=4)
    self.assertAlmostEqual(float(probes.log10_ratio(tf.constant(0.0), tf.constant(1.0))), -30.0, places=3)


class _Runs:
  """Short runs to read back."""

  def run_tags(self, arch, units, **overrides):
    """Events of a 4-step run, probes every 2 steps; on the tiny image task unless `overrides` name a task."""
    workdir = os.path.join(testing.make_tempdir(self), 'run')
    config = testing.tiny_config(**{'arch': arch, 'units': units, 'input_units': 3, 'train_steps': 4,
                                    'histogram_every': 2, **overrides})
    loop.train_and_evaluate(config, workdir, task=None if 'task' in overrides else testing.learnable_image_task())
    return testing.load_run(workdir), config


class ProbesInARunTest(_Runs, parameterized.TestCase):

  @pytest.mark.slow
  def test_every_probe_writes_at_step_0_and_each_histogram_step_with_position_tags(self):
    events, _ = self.run_tags('stacked_lstm', (4, 5))
    scalars = set(events.PluginRunToTagToContent('scalars')['train'])
    histograms = set(events.PluginRunToTagToContent('histograms')['train'])
    images = set(events.PluginRunToTagToContent('images')['train'])
    self.assertContainsSubset({
        'gradient_flow/layer_0.log10_first_over_last', 'gradient_flow/layer_1.log10_first_over_last',
        'saturation/layer_1.forget', 'saturation/layer_0.candidate', 'gate_mean/layer_0.cell_abs',
        'layers/layer_0.grad_norm', 'layers/head.update_ratio', 'layers/in_proj.weight_norm'}, scalars)
    # Time Series cuts a long card title in its middle but keeps all after the last '/': that part tells cards apart.
    for group in {tag.split('/')[0] for tag in scalars}:
      members = [tag for tag in scalars if tag.startswith(f'{group}/')]
      self.assertLen({tag.rsplit('/', 1)[1] for tag in members}, len(members), group)
    for tag in ('weights/layer_0/recurrent_kernel', 'gradients/head/kernel', 'activations/layer_1',
                'gates/layer_0/input', 'weights/in_proj/kernel'):
      self.assertIn(tag, histograms)
    self.assertEqual(images, {'gradient_flow/norm_by_step', 'gates/saturated_by_step', 'timescales/by_unit'})
    self.assertContainsSubset({'timescales/layer_1.median', 'timescales/layer_0.max'}, scalars)
    self.assertIn('timescales/layer_0.log10', histograms)
    self.assertEqual([s for s, _ in testing.tensor_series(events, 'train', 'weights/layer_0/kernel')], [0, 2, 4])
    self.assertEqual([s for s, _ in testing.scalar_series(events, 'train', 'layers/layer_0.weight_norm')][0], 0)
    for tag in ('gradient_flow/layer_0', 'gradient_flow/layer_1', 'gradient_flow/input'):
      series = testing.tensor_series(events, 'train', tag)
      self.assertEqual([s for s, _ in series], [0, 2, 4])
      self.assertEqual(series[-1][1].shape, (8,))  # [T]: the tiny images have 8 rows.
    every_tag = scalars | histograms | images
    self.assertEmpty([tag for tag in every_tag if any(arch in tag for arch in archs.NAMES)])
    ratio = testing.scalar_series(events, 'train', 'layers/layer_0.update_ratio')
    self.assertTrue(all(0 < value < 1 for _, value in ratio))

  @pytest.mark.slow
  def test_a_stateful_run_with_fewer_streams_than_the_probe_batch_probes_them(self):
    # --task=adding --stateful --batch_size=8: 8 carried streams, a probe batch of PROBE_SIZE.
    events, _ = self.run_tags('gru', (4,), task='adding', seq_len=4, batch_size=8, stateful=True, probes='gates', train_steps=1, eval_every=1, checkpoint_every=1)
    (step, values), = testing.tensor_series(events, 'train', 'gates/layer_0/update')[:1]
    self.assertEqual(step, 0)
    self.assertTrue(np.all(np.isfinite(values)))

  def test_the_probe_batch_reads_the_carried_state(self):
    config = testing.tiny_config(task='sin2cos', units=(3,), batch_size=40, seq_len=4, stateful=True)
    task = loop.tasks.load_task(config)
    state = steps.create_train_state(config, task, tf.distribute.get_strategy(), total_steps=4)
    for variable in state.carried_state[0]:
      variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, 2]))
    inputs, targets = task.probe_batch(step=3)
    np.testing.assert_allclose(inputs, task.windows(3, 1, tf.range(base.PROBE_SIZE))[0])
    carried = [[v[:base.PROBE_SIZE] for v in layer] for layer in state.carried_state]
    batch = probes.ProbeBatch(state.model, task, inputs, targets, carried)
    expected = state.model.forward(inputs, carried)[2][0]
    np.testing.assert_allclose(batch.reference['sequences'][0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
class MoreRunsTest(_Runs, parameterized.TestCase):
  """Probes of stateful runs of every arch (from the carried state), and probe selection."""

  @parameterized.parameters(('rnn', (4,)), ('gru', (4,)), ('lstm', (4,)), ('mingru', (4,)), ('minlstm', (3, 4)),
                            ('lru', (3, 4)))
  def test_stateful_series_probe_from_the_carried_state(self, arch, units):
    events, _ = self.run_tags(arch, units, task='sin2cos', seq_len=5, batch_size=8, stateful=True)
    (step, flow), = testing.tensor_series(events, 'train', 'gradient_flow/layer_0')[-1:]
    self.assertEqual((step, flow.shape), (4, (5,)))
    self.assertTrue(np.all(np.isfinite(flow)))

  def test_a_selection_of_probes_and_none(self):
    events, _ = self.run_tags('gru', (4,), probes='gates')
    self.assertEqual(set(events.PluginRunToTagToContent('histograms')['train']),
                     {'gates/layer_0/update', 'gates/layer_0/reset', 'gates/layer_0/candidate'})
    self.assertNotIn('layers/layer_0.grad_norm', events.PluginRunToTagToContent('scalars')['train'])
    rnn, _ = self.run_tags('rnn', (4,), probes='gates,activations')  # Its activation is its output: drawn once.
    self.assertEqual(set(rnn.PluginRunToTagToContent('histograms')['train']), {'activations/layer_0'})
    quiet, _ = self.run_tags('rnn', (4,), probes='none')
    self.assertNotIn('train', quiet.PluginRunToTagToContent('histograms'))


class NamesTest(absltest.TestCase):

  def test_probe_names_cover_the_config_choices(self):
    self.assertEqual(set(probes.PROBES) | {steps.LAYER_DYNAMICS}, set(config_lib.PROBES))
    self.assertEqual(config_lib.probe_names(testing.tiny_config(probes='gates,weights')), ('weights', 'gates'))
    with self.assertRaisesRegex(config_lib.UserError, '--probes=gates,flow: unknown flow'):
      testing.tiny_config(probes='gates,flow')


if __name__ == '__main__':
  absltest.main()

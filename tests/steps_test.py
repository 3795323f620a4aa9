"""The train state and step functions: every variable moves, loss and norm are right, sub-batches, multi-steps."""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import steps
from harness.tasks import series
from tests import testing


def first_batch(task, config):
  return next(iter(task.train_dataset(config.batch_size, config.seed)))


class StepTest(parameterized.TestCase):

  @parameterized.parameters(('rnn', (6,)), ('gru', (6,)), ('lstm', (6,)), ('stacked_lstm', (4, 5)))
  @pytest.mark.slow
  def test_one_step_changes_every_trainable_variable(self, arch, units):
    config = testing.tiny_config(arch=arch, units=units, input_units=3, clip_norm=1.0)
    task = testing.learnable_image_task()
    strategy = tf.distribute.get_strategy()
    state = steps.create_train_state(config, task, strategy, total_steps=10)
    before = [v.numpy().copy() for v in state.model.trainable_variables]
    steps.make_train_step(state, task, config, strategy)(iter(task.train_dataset(8, 0)))
    self.assertEqual(state.step, 1)
    for variable, old in zip(state.model.trainable_variables, before):
      self.assertFalse(np.allclose(variable.numpy(), old), f'{variable.path} did not change')
    self.assertEqual(float(state.metrics.sums['steps'].numpy()), 1.0)
    self.assertEqual(float(state.metrics.sums['examples'].numpy()), 8.0)

  def test_step_loss_and_norm_match_a_direct_computation(self):
    config = testing.tiny_config(clip_norm=1e-3, optimizer='sgd', lr_schedule='constant')
    task = testing.learnable_image_task()
    strategy = tf.distribute.get_strategy()
    state = steps.create_train_state(config, task, strategy, total_steps=10)
    inputs, labels = first_batch(task, config)
    with tf.GradientTape() as tape:
      logits, _ = state.model(inputs)
      loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    grads = tape.gradient(loss, state.model.trainable_variables)
    before = [v.numpy().copy() for v in state.model.trainable_variables]
    steps.make_train_step(state, task, config, strategy)(iter(task.train_dataset(8, 0)))
    self.assertAlmostEqual(float(state.metrics.sums['loss'].numpy()), float(loss), places=5)
    norm = float(tf.linalg.global_norm(grads))
    self.assertAlmostEqual(float(state.metrics.sums['grad_norm'].numpy()), norm, places=4)
    self.assertEqual(float(state.metrics.sums['clipped'].numpy()), 1.0)
    # SGD applied the gradient clipped to global norm 1e-3.
    moved = np.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(state.model.trainable_variables, before)))
    self.assertAlmostEqual(moved, config.learning_rate * 1e-3, places=7)

  @parameterized.parameters(('lstm', (6,), False), ('stacked_lstm', (4, 5), True))
  @pytest.mark.slow
  def test_sub_batches_make_the_same_update_as_one_batch(self, arch, units, stateful):
    task = series.SeriesTask(8, 5, 0) if stateful else testing.learnable_image_task()
    base = dict(arch=arch, units=units, clip_norm=0.1, stateful=stateful)
    if stateful:
      base.update(task='sin2cos', seq_len=5)
    strategy = tf.distribute.get_strategy()
    results = []
    for splits in (1, 2, 4):
      config = testing.tiny_config(batch_splits=splits, **base)
      keras.utils.set_random_seed(0)
      state = steps.create_train_state(config, task, strategy, total_steps=10)
      step = steps.make_train_step(state, task, config, strategy)
      iterator = iter(task.train_dataset(8, 0))
      step(iterator)
      step(iterator)
      results.append([v.numpy() for v in state.model.trainable_variables]
                     + [float(state.metrics.sums['loss'].numpy()), float(state.metrics.sums['grad_norm'].numpy())]
                     + [v.numpy() for layer in state.carried_state for v in layer])
    for other in results[1:]:
      for expected, actual in zip(results[0], other):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)

  @pytest.mark.slow
  def test_multi_step_runs_count_steps(self):
    task = testing.learnable_image_task()
    config = testing.tiny_config()
    strategy = tf.distribute.get_strategy()
    results = []
    for counts in ([1, 1, 1, 1, 1], [3, 2], [5]):
      keras.utils.set_random_seed(0)
      state = steps.create_train_state(config, task, strategy, total_steps=10)
      train_steps = steps.make_multi_step(steps.make_train_step(state, task, config, strategy))
      iterator = iter(task.train_dataset(8, 0))
      for count in counts:
        train_steps(iterator, tf.constant(count))
      self.assertEqual(int(state.optimizer.iterations.numpy()), 5)
      self.assertEqual(float(state.metrics.sums['steps'].numpy()), 5.0)
      results.append([v.numpy() for v in state.model.trainable_variables])
    for other in results[1:]:
      for expected, actual in zip(results[0], other):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)

  def test_a_call_ends_where_its_seconds_run_out_and_a_time_budget_sets_the_learning_rate(self):
    testing.without_op_determinism(self)
    task = testing.learnable_image_task()
    config = testing.tiny_config(train_steps=0, time_budget=1.0, learning_rate=0.01)  # 60 s.
    strategy = tf.distribute.get_strategy()
    state = steps.create_train_state(config, task, strategy, total_steps=100)
    train_steps = steps.make_multi_step(steps.make_train_step(state, task, config, strategy),
                                        steps.budget_progress(state, budget_seconds=60.0, total_steps=100))
    iterator = iter(task.train_dataset(8, 0))
    self.assertEqual(int(train_steps(iterator, tf.constant(5), tf.constant(0.0, tf.float64))), 0)  # None left.
    self.assertEqual(state.step, 0)
    state.train_seconds.assign(30.0)  # Half the budget spent before this call.
    self.assertEqual(int(train_steps(iterator, tf.constant(3), tf.constant(30.0, tf.float64))), 3)
    self.assertEqual(state.step, 3)
    progress = float(state.progress.numpy())
    self.assertBetween(progress, 0.5, 0.55)  # 30 s and this call's few of 60 s: beyond 2 of 100 steps.
    self.assertAlmostEqual(float(state.optimizer.learning_rate), 0.005 * (1 + np.cos(np.pi * progress)), places=6)
    state.global_step.assign(90)  # The step cap nearer than the budget: its fraction sets the rate.
    train_steps(iterator, tf.constant(1), tf.constant(30.0, tf.float64))
    self.assertAlmostEqual(float(state.progress.numpy()), 0.9, places=6)

  def test_stateful_step_carries_the_final_state(self):
    config = testing.tiny_config(task='sin2cos', units=(5,), batch_size=4, seq_len=6, stateful=True)
    task = series.SeriesTask(4, 6, 0)
    strategy = tf.distribute.get_strategy()
    state = steps.create_train_state(config, task, strategy, total_steps=10)
    inputs, _ = first_batch(task, config)
    _, expected_state = state.model(inputs)
    steps.make_train_step(state, task, config, strategy)(iter(task.train_dataset(4, 0)))
    for variable, expected in zip(state.carried_state[0], expected_state[0]):
      np.testing.assert_allclose(variable.numpy(), expected.numpy(), atol=1e-6)
    second_inputs = task.windows(1, 1, tf.range(4))[0]
    carried, _ = state.model(second_inputs, initial_state=[[v.value() for v in state.carried_state[0]]])
    reset, _ = state.model(second_inputs)
    self.assertGreater(float(tf.reduce_max(tf.abs(carried - reset))), 1e-3)


if __name__ == '__main__':
  absltest.main()

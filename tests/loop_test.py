"""Steps, the loop, checkpoints and resume, the non-finite guard, and what lands in TensorBoard."""

import dataclasses
import glob
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import pytest
import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from harness import archs
from harness import loop
from harness import models
from harness import schedule as schedule_lib
from harness import steps
from harness.tasks import base
from harness.errors import NonFiniteLossError
from harness.errors import UserError
from tests import testing


def next_event(step, total_steps, config, steps_per_epoch):
  schedule = schedule_lib.Schedule(config, steps_per_epoch, total_steps)
  actions = [schedule_lib.Action(name, every, print) for name, every in (
      ('summary', config.summary_every), ('probes', config.histogram_every), ('eval', schedule.eval_every),
      ('checkpoint', config.checkpoint_every))]
  return schedule.steps_to_next_event(step, actions)


class ScheduleTest(absltest.TestCase):

  def test_steps_to_next_event(self):
    config = testing.tiny_config(summary_every=10, eval_every=25, checkpoint_every=40, histogram_every=0)
    self.assertEqual(next_event(0, 100, config, 1000), 10)
    self.assertEqual(next_event(20, 100, config, 1000), 5)  # Eval at 25.
    self.assertEqual(next_event(37, 100, config, 1000), 3)  # Checkpoint at 40.
    self.assertEqual(next_event(97, 99, config, 1000), 2)  # The end.
    self.assertEqual(next_event(
        0, 100, dataclasses.replace(config, histogram_every=4), 1000), 4)
    self.assertEqual(next_event(
        3, 100, dataclasses.replace(config, profile_steps=(5, 7)), 1000), 2)
    self.assertEqual(next_event(
        5, 100, dataclasses.replace(config, profile_steps=(5, 7)), 1000), 2)
    self.assertEqual(next_event(0, 100, dataclasses.replace(config, stateful=True), 6), 6)
    self.assertEqual(next_event(0, 100, config, 6), 10)  # Epochs matter only when stateful.


  def test_default_evaluation_is_about_ten_per_run_and_at_least_once_per_epoch(self):
    config = testing.tiny_config(eval_every=0)
    self.assertEqual(schedule_lib.Schedule(config, 1000, 300).eval_every, 30)
    self.assertEqual(schedule_lib.Schedule(config, 469, 4690).eval_every, 469)  # 10 epochs: one per epoch.
    self.assertEqual(schedule_lib.Schedule(config, 50, 1000).eval_every, 50)  # Short epochs: every epoch.
    self.assertEqual(schedule_lib.Schedule(testing.tiny_config(eval_every=7), 50, 1000).eval_every, 7)


class TrainAndEvaluateTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(testing.make_tempdir(self), 'run')

  def test_loss_falls_and_accuracy_rises_on_a_learnable_problem(self):
    config = testing.tiny_config(train_steps=80, eval_every=80, summary_every=10, histogram_every=0,
                                 checkpoint_every=80, units=(16,), learning_rate=1e-2)
    metrics = loop.train_and_evaluate(config, self.workdir, task=testing.learnable_image_task())
    losses = testing.scalar_series(testing.load_run(self.workdir), 'train', 'Metrics/loss')
    self.assertLess(losses[-1][1], 0.5 * losses[0][1])
    self.assertGreater(metrics['eval_accuracy'], 0.8)

  @pytest.mark.slow
  def test_default_evaluations_follow_their_measured_share_of_the_time(self):
    config = testing.tiny_config(train_steps=12, eval_every=0, summary_every=12, histogram_every=0,
                                 checkpoint_every=12)
    # The cadence is chosen once a timed call gives a step's cost: after the second call. One step per
    # call, so that the second ends at step 2 however fast the machine (else calls grow to the end).
    for share, expected, cadence in ((1e-6, [12], 'at the last step only'),
                                     (0.999, [2, 4, 6, 8, 10, 12], 'every 2 steps and at the last')):
      with self.subTest(share=share), mock.patch.object(schedule_lib, 'EVAL_SHARE', share), \
           mock.patch.object(loop, 'MAX_STEPS_PER_CALL', 1):
        workdir = f'{self.workdir}_{share}'
        with self.assertLogs('absl', 'INFO') as logs:
          metrics = loop.train_and_evaluate(config, workdir, task=testing.learnable_image_task())
        evaluated = testing.scalar_series(testing.load_run(workdir), 'eval', 'Metrics/accuracy')
        self.assertEqual([step for step, _ in evaluated], expected)
        self.assertIn(f'evaluation on the test split {cadence}: one takes', '\n'.join(logs.output))
        self.assertContainsSubset({'train', 'final_eval', 'eval', 'summary', 'checkpoint'},
                                  metrics['this_process']['seconds'])
        self.assertEqual(metrics['this_process']['start_step'], 0)

  def test_evaluations_before_the_last_read_one_fixed_subset_and_the_last_the_whole_split(self):
    task = testing.learnable_image_task(num_test=32)
    config = testing.tiny_config(train_steps=12, eval_every=3, checkpoint_every=3, histogram_every=0,
                                 eval_examples='8')
    read, whole_split = [], task.eval_dataset

    def eval_dataset(batch_size, input_context=None, examples=None):
      read.append(None if examples is None else examples.tolist())
      return whole_split(batch_size, input_context, examples)

    with mock.patch.object(task, 'eval_dataset', eval_dataset):
      metrics = loop.train_and_evaluate(config, self.workdir, task=task)
    subset = base.eval_subset(32, 8).tolist()
    self.assertEqual(read, [subset] * 3 + [None])  # The same 8 examples at steps 3, 6 and 9; all 32 at 12.
    events = testing.load_run(self.workdir)
    curves = {folder: {tag: dict(testing.scalar_series(events, folder, f'Metrics/{tag}'))
                       for tag in ('loss', 'accuracy')} for folder in ('eval', 'eval_subset')}
    self.assertEqual({folder: sorted(curve['accuracy']) for folder, curve in curves.items()},
                     {'eval': [12], 'eval_subset': [3, 6, 9]})
    # Each point is its examples' score: recomputed from the checkpoints of steps 9 (the subset) and 12 (all).
    model = steps.create_train_state(config, task, tf.distribute.get_strategy(), total_steps=12).model
    for step, folder, examples in ((9, 'eval_subset', subset), (12, 'eval', list(range(32)))):
      tf.train.Checkpoint(model=model).read(os.path.join(self.workdir, 'checkpoints', f'ckpt-{step}')).expect_partial()
      logits, _ = model(tf.cast(task.test_images[examples], tf.float32) / 255.0)
      loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(task.test_labels[examples], logits,
                                                                         from_logits=True))
      self.assertAlmostEqual(curves[folder]['loss'][step], float(loss), places=5)
      self.assertAlmostEqual(curves[folder]['accuracy'][step],
                             np.mean(np.argmax(logits, -1) == task.test_labels[examples]), places=6)
    # metrics.json is the whole split's; the figures are drawn for it only, and HParams read eval/ alone.
    self.assertEqual((metrics['eval_loss'], metrics['eval_accuracy']),
                     (curves['eval']['loss'][12], curves['eval']['accuracy'][12]))
    self.assertEqual(set(events.PluginRunToTagToContent('images')), {'eval'})
    self.assertEqual(set(events.PluginRunToTagToContent('hparams')), {'eval'})
    environment = testing.tensor_series(events, 'eval', 'environment')[0][1].item().decode()
    self.assertIn('a fixed subset of 8 of the 32 test examples (eval_subset/)', environment)

  def test_eval_examples_all_reads_the_whole_split_at_every_evaluation(self):
    metrics = loop.train_and_evaluate(testing.tiny_config(eval_examples='all', histogram_every=0), self.workdir,
                                      task=testing.learnable_image_task(num_test=32))
    events = testing.load_run(self.workdir)
    self.assertNotIn('eval_subset', events.Runs())
    accuracy = testing.scalar_series(events, 'eval', 'Metrics/accuracy')
    self.assertEqual([step for step, _ in accuracy], [3, 6])
    self.assertEqual([step for step, _ in testing.tensor_series(events, 'eval', 'figures/confusion_matrix')], [3, 6])
    self.assertEqual(metrics['eval_accuracy'], accuracy[-1][1])

  @pytest.mark.slow
  def test_a_run_of_100_steps_gets_a_subset_curve_from_the_cost_rule(self):
    # The real rule, no share patched: the evaluations of 16 test examples against the run's start-up.
    config = testing.tiny_config(train_steps=100, eval_every=0, summary_every=50, histogram_every=0,
                                 checkpoint_every=100, eval_examples='16')
    with self.assertLogs('absl', 'INFO') as logs:
      metrics = loop.train_and_evaluate(config, self.workdir, task=testing.learnable_image_task(num_test=64))
    events = testing.load_run(self.workdir)
    subset_steps = [step for step, _ in testing.scalar_series(events, 'eval_subset', 'Metrics/accuracy')]
    # >= 5 on an idle machine; a loaded one measures costlier evaluations against the same start-up.
    self.assertGreaterEqual(len(subset_steps), 4, '\n'.join(logs.output))
    self.assertLess(max(subset_steps), 100)
    (step, accuracy), = testing.scalar_series(events, 'eval', 'Metrics/accuracy')
    self.assertEqual((step, metrics['eval_accuracy']), (100, accuracy))
    self.assertIn('test at step 100 (64 examples)', '\n'.join(logs.output))
    self.assertIn(f'test at step {subset_steps[0]} (subset: 16 of 64 examples)', '\n'.join(logs.output))

  def test_every_input_error_comes_before_the_run_folder_which_is_named_only_once_it_exists(self):
    task = testing.learnable_image_task()  # 64 training examples.
    three_replicas = mock.Mock(num_replicas_in_sync=3)
    for overrides, strategy, expected in (
        (dict(batch_size=1000), None, '--batch_size=1000: larger than the 64 training examples'),
        (dict(precision='mixed_float16'), None, '--precision=mixed_float16: float16 is for GPUs'),
        (dict(epochs=2**61, train_steps=0), None, rf'--epochs={2**61}: {2**64} steps'),
        (dict(batch_size=8), three_replicas, '--batch_size=8: must divide evenly over 3 replicas'),
        (dict(batch_size=12, batch_splits=6), three_replicas, '--batch_splits=6: must divide the per-replica batch of 4'),
        (dict(stateful=True, task='sin2cos'), three_replicas, '--stateful: carried state runs on one device only'),
        (dict(units=(10**6,)), None, r'--units=1000000: the model has [\d,]+ parameters and needs'),
    ):
      with self.subTest(expected=expected), mock.patch.object(loop.logging, 'info') as info:
        with self.assertRaisesRegex(UserError, expected):
          loop.train_and_evaluate(testing.tiny_config(**overrides), self.workdir,
                                  task=None if 'task' in overrides else task, strategy=strategy)
        self.assertFalse(os.path.exists(os.path.dirname(self.workdir)) and os.listdir(os.path.dirname(self.workdir)))
        self.assertNotIn('run folder: %s', [call.args[0] for call in info.call_args_list])
    said = []
    with mock.patch.object(loop.logging, 'info', lambda *args: said.append((args, os.path.isdir(self.workdir)))):
      loop.train_and_evaluate(testing.tiny_config(train_steps=1, histogram_every=0), self.workdir, task=task)
    self.assertIn((('run folder: %s', self.workdir), True), said)

  @pytest.mark.slow
  def test_sin2cos_mse_falls(self):
    config = testing.tiny_config(task='sin2cos', units=(8,), batch_size=8, train_steps=120, eval_every=20,
                                 summary_every=20, histogram_every=0, checkpoint_every=120, stateful=True)
    metrics = loop.train_and_evaluate(config, self.workdir)
    events = testing.load_run(self.workdir)
    self.assertEqual(set(events.PluginRunToTagToContent('scalars')['eval']), {'Metrics/loss', 'time/train_minutes'})  # The MSE, once.
    mse = testing.scalar_series(events, 'eval', 'Metrics/loss')
    self.assertEqual([s for s, _ in mse], [20, 40, 60, 80, 100, 120])
    self.assertLess(mse[-1][1], 0.5 * mse[0][1])
    self.assertAlmostEqual(metrics['eval_mse'], mse[-1][1], places=6)
    (step, image), = testing.tensor_series(testing.load_run(self.workdir), 'eval', 'figures/prediction_vs_target')[-1:]
    self.assertEqual(step, 120)
    self.assertEqual(tf.image.decode_png(image[2]).shape[-1], 3)

  def test_non_finite_loss_stops_naming_the_step_and_keeps_a_good_checkpoint(self):
    # Step 1's update makes the regression head ~1e30, so step 2's squared error overflows.
    config = testing.tiny_config(task='sin2cos', train_steps=50, optimizer='sgd', learning_rate=1e30,
                                 lr_schedule='constant', summary_every=1, checkpoint_every=1, eval_every=100,
                                 histogram_every=0)
    with self.assertRaisesRegex(NonFiniteLossError, r'non-finite \(NaN or inf\) at step (\d+)') as raised:
      loop.train_and_evaluate(config, self.workdir)
    bad_step = int(__import__('re').search(r'at step (\d+)', str(raised.exception)).group(1))
    latest = tf.train.latest_checkpoint(os.path.join(self.workdir, 'checkpoints'))
    self.assertIsNotNone(latest)
    self.assertLess(int(latest.rsplit('-', 1)[1]), bad_step)
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
      value = reader.get_tensor(name)
      if np.issubdtype(np.asarray(value).dtype, np.floating):
        self.assertTrue(np.all(np.isfinite(value)), name)
    texts = testing.tensor_series(testing.load_run(self.workdir), 'train', 'non_finite')
    self.assertEqual(texts[0][0], bad_step)


@pytest.mark.slow
class TimeBudgetTest(absltest.TestCase):
  """--time_budget end to end: it ends on time, the learning rate decays to it, a resumed run continues it."""

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(testing.make_tempdir(self), 'run')

  def config(self, **overrides):
    return testing.tiny_config(**{**dict(train_steps=0, time_budget=0.05, eval_every=10**6, checkpoint_every=10**6,
                                         summary_every=50, histogram_every=0), **overrides})  # 3 s; evaluated last.

  def test_a_run_stops_when_its_training_seconds_reach_the_budget_and_records_its_steps(self):
    with self.assertLogs('absl', 'INFO') as logs:
      metrics = loop.train_and_evaluate(self.config(), self.workdir, task=testing.learnable_image_task())
    self.assertEqual((metrics['status'], metrics['total_steps']), ('finished', metrics['step']))
    self.assertGreater(metrics['step'], 1)
    self.assertEqual(metrics['examples'], 8 * metrics['step'])
    self.assertBetween(metrics['train_seconds'], 3.0, 4.5)  # Over by less than a step (and a call's dispatch, slow on a loaded machine).
    with open(os.path.join(self.workdir, 'metrics.json')) as f:
      self.assertEqual(json.load(f)['examples'], metrics['examples'])
    events = testing.load_run(self.workdir)
    self.assertEqual([s for s, _ in testing.scalar_series(events, 'eval', 'Metrics/accuracy')], [metrics['step']])
    rates = testing.scalar_series(events, 'train', 'optimizer/learning_rate')
    self.assertEqual(rates[-1][0], metrics['step'])
    self.assertLess(rates[-1][1], 0.01 * rates[0][1])  # Cosine over the budget: ~0 at its end.
    text = '\n'.join(logs.output)
    self.assertIn('time budget: 0m03s in training steps (the first call\'s tracing included', text)
    self.assertIn(f'time budget spent at step {metrics["step"]} ({metrics["examples"]:,} examples', text)

  def test_a_resumed_run_continues_its_budget_and_ends_at_the_same_total(self):
    task = testing.learnable_image_task()
    first = loop.train_and_evaluate(self.config(train_steps=3), self.workdir, task=task)  # Its step cap first.
    self.assertEqual(first['step'], 3)
    self.assertLess(first['train_seconds'], 3.0)
    resumed = loop.train_and_evaluate(dataclasses.replace(self.config(), resume=True), self.workdir, task=task)
    self.assertEqual(resumed['this_process']['start_step'], 3)
    self.assertGreater(resumed['step'], 3)
    self.assertBetween(resumed['train_seconds'], 3.0, 4.0)
    self.assertEqual(resumed['examples'], 8 * resumed['step'])

  def test_a_deterministic_run_earlier_in_the_process_leaves_no_determinism_to_a_budgeted_run(self):
    from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top
    task = testing.learnable_image_task()
    loop.train_and_evaluate(testing.tiny_config(deterministic=True, train_steps=2, eval_every=2),
                            self.workdir + '_deterministic', task=task)
    self.assertTrue(tf_config.is_op_determinism_enabled())
    metrics = loop.train_and_evaluate(self.config(train_steps=2), self.workdir, task=task)  # Reads the clock.
    self.assertEqual(metrics['step'], 2)
    self.assertFalse(tf_config.is_op_determinism_enabled())


@pytest.mark.slow
class EveryArchTest(parameterized.TestCase):
  """Every arch end to end, stateful."""

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(testing.make_tempdir(self), 'run')

  @parameterized.parameters(('rnn', (4,)), ('gru', (4,)), ('lstm', (4,)), ('stacked_lstm', (3, 4)),
                            ('mingru', (3, 4)), ('minlstm', (4,)), ('lru', (3, 4)))
  def test_every_arch_trains_stateful_sin2cos(self, arch, units):
    config = testing.tiny_config(task='sin2cos', arch=arch, units=units, batch_size=4, seq_len=5,
                                 stateful=True, input_units=3, train_steps=4, eval_every=4)
    metrics = loop.train_and_evaluate(config, self.workdir)
    self.assertEqual(metrics['step'], 4)
    self.assertTrue(np.isfinite(metrics['eval_mse']))
    reader = tf.train.load_checkpoint(os.path.join(self.workdir, 'checkpoints'))
    carried = [name for name in reader.get_variable_to_shape_map() if name.startswith('carried_state/')]
    self.assertLen(carried, sum(len(archs.get(arch).state_sizes(n)) for n in units))


@pytest.mark.slow
class InstrumentationTest(absltest.TestCase):
  """One tiny run, read back plugin by plugin."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.workdir = os.path.join(cls.root, 'run')
    cls.task = testing.learnable_image_task()
    cls.config = testing.tiny_config(arch='stacked_lstm', units=(4, 6), clip_norm=0.5, profile_steps=(2, 4),
                                     probes='weights,gradients,activations')  # probes_test covers the rest.
    cls.metrics = loop.train_and_evaluate(cls.config, cls.workdir, task=cls.task)
    cls.events = testing.load_run(cls.workdir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def tags(self, plugin, run):
    return set(self.events.PluginRunToTagToContent(plugin).get(run, {}))

  def test_run_folder_layout(self):
    self.assertTrue({'train', 'eval', 'checkpoints', 'flags.txt', 'config.json', 'metrics.json'}
                    <= set(os.listdir(self.workdir)))
    with open(os.path.join(self.workdir, 'metrics.json')) as f:
      self.assertEqual(json.load(f)['step'], 6)

  def test_scalars_tags_steps_and_values(self):
    train_tags = self.tags('scalars', 'train')
    self.assertContainsSubset({'Metrics/loss', 'Metrics/accuracy', 'optimizer/learning_rate', 'optimizer/grad_norm',
                               'optimizer/clipped_fraction', 'speed/examples_per_sec', 'speed/train_share',
                               'speed/eval_share', 'speed/probes_share', 'speed/checkpoint_share'}, train_tags)
    self.assertEqual({tag.split('/')[0] for tag in train_tags}, {'Metrics', 'optimizer', 'speed'})
    self.assertEqual(self.tags('scalars', 'eval'), {'Metrics/loss', 'Metrics/accuracy', 'time/train_minutes'})
    self.assertEqual([s for s, _ in testing.scalar_series(self.events, 'train', 'Metrics/loss')], [2, 4, 6])
    self.assertEqual([s for s, _ in testing.scalar_series(self.events, 'eval', 'Metrics/accuracy')], [3, 6])
    minutes = testing.scalar_series(self.events, 'eval', 'time/train_minutes')
    self.assertEqual([s for s, _ in minutes], [3, 6])
    self.assertLess(0, minutes[0][1])
    self.assertLess(minutes[0][1], minutes[1][1])
    self.assertAlmostEqual(minutes[1][1], self.metrics['train_seconds'] / 60, places=5)
    lr = testing.scalar_series(self.events, 'train', 'optimizer/learning_rate')
    self.assertGreater(lr[0][1], lr[-1][1])  # Cosine decay.
    self.assertAlmostEqual(lr[-1][1], 0.0, places=6)

  def test_logged_eval_loss_equals_a_recomputation_from_the_checkpoint(self):
    state = steps.create_train_state(self.config, self.task, tf.distribute.get_strategy(), total_steps=6)
    tf.train.Checkpoint(model=state.model).read(
        tf.train.latest_checkpoint(os.path.join(self.workdir, 'checkpoints'))).expect_partial()
    logits, _ = state.model(tf.cast(self.task.test_images, tf.float32) / 255.0)
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        self.task.test_labels, logits, from_logits=True))
    accuracy = np.mean(np.argmax(logits, -1) == self.task.test_labels)
    (step, logged_loss), = testing.scalar_series(self.events, 'eval', 'Metrics/loss')[-1:]
    self.assertEqual(step, 6)
    self.assertAlmostEqual(logged_loss, float(loss), places=5)
    self.assertAlmostEqual(testing.scalar_series(self.events, 'eval', 'Metrics/accuracy')[-1][1], accuracy, places=6)
    self.assertAlmostEqual(self.metrics['eval_loss'], float(loss), places=5)

  def test_logged_train_loss_equals_the_first_steps(self):
    config = testing.tiny_config(train_steps=1, summary_every=1, histogram_every=0)
    workdir = self.workdir + '_one_step'
    loop.train_and_evaluate(config, workdir, task=self.task)
    keras.utils.set_random_seed(config.seed)  # The loop seeds the same way before building.
    state = steps.create_train_state(config, self.task, tf.distribute.get_strategy(), total_steps=1)
    inputs, labels = next(iter(self.task.train_dataset(config.batch_size, config.seed)))
    logits, _ = state.model(inputs)
    expected = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    (step, logged), = testing.scalar_series(testing.load_run(workdir), 'train', 'Metrics/loss')
    self.assertEqual(step, 1)
    self.assertAlmostEqual(logged, float(expected), places=5)

  def test_histograms_cover_weights_gradients_and_activations_with_full_counts(self):
    model = steps.create_train_state(self.config, self.task, tf.distribute.get_strategy(), 6).model
    sizes = {f'{tag}/{v.path.split("/")[-1]}': int(np.prod(v.shape))
             for tag, layer in model.named_layers() for v in layer.trainable_variables}
    tags = self.tags('histograms', 'train')
    self.assertContainsSubset({f'{kind}/{name}' for kind in ('weights', 'gradients') for name in sizes}
                              | {'activations/layer_0', 'activations/layer_1'}, tags)
    for name, size in sizes.items():
      for kind in ('weights', 'gradients'):
        series = testing.tensor_series(self.events, 'train', f'{kind}/{name}')
        self.assertEqual([s for s, _ in series], [0, 3, 6])
        self.assertAlmostEqual(series[-1][1][:, 2].sum(), size)  # Bucket counts add up to the size.
    activations = testing.tensor_series(self.events, 'train', 'activations/layer_1')[-1][1]
    self.assertAlmostEqual(activations[:, 2].sum(), base.PROBE_SIZE * 8 * 6)

  def test_graph_of_the_train_step_has_nodes(self):
    graph = self.events.Graph('train')
    ops = {node.op for node in graph.node}
    self.assertGreater(len(graph.node), 50)
    self.assertTrue({'IteratorGetNext', 'AssignAddVariableOp'} <= ops, ops)
    self.assertNotIn('train_step', self.tags('graph_run_metadata_graph', 'train'))

  def test_hparams_hold_the_run_values(self):
    # The session is eval/: its metrics are eval's own scalars (group ''), so its task's and no other's.
    content = self.events.PluginRunToTagToContent('hparams')
    self.assertEqual(set(content), {'eval'})  # No folder of the run holds only a description.
    content = content['eval']
    session = plugin_data_pb2.HParamsPluginData.FromString(content['_hparams_/session_start_info'])
    hparams = {k: v.string_value or v.number_value or v.bool_value
               for k, v in session.session_start_info.hparams.items()}
    self.assertEqual(hparams['arch'], 'stacked_lstm')
    self.assertEqual(hparams['units'], '4,6')
    # Integers as text: TensorBoard prints numbers with five digits.
    self.assertEqual((hparams['batch_size'], hparams['seed'], hparams['clip_norm']), ('8', '0', 0.5))
    self.assertEqual(hparams['lstm_kernel'], 'auto')
    self.assertEqual(hparams['data_source'], 'tiny synthetic bars')
    self.assertEqual(session.session_start_info.group_name, 'run')  # The run's name, not a hash.
    self.assertNotIn('seq_len', hparams)  # Images: no dummy value.
    self.assertNotIn('_hparams_/experiment', content)  # TensorBoard reads one, any run's: none is declared.
    self.assertEqual(self.tags('scalars', 'eval'), {'Metrics/loss', 'Metrics/accuracy', 'time/train_minutes'})
    end = plugin_data_pb2.HParamsPluginData.FromString(content['_hparams_/session_end_info'])
    self.assertEqual(end.session_end_info.status, 1)  # STATUS_SUCCESS.

  def test_images_decode_as_png(self):
    for tag in ('figures/confusion_matrix', 'figures/worst_misclassified'):
      (step, value), = testing.tensor_series(self.events, 'eval', tag)[-1:]
      self.assertEqual(step, 6)
      self.assertTrue(value[2].startswith(b'\x89PNG'))
      width, height = int(value[0]), int(value[1])
      self.assertEqual(tf.image.decode_png(value[2]).shape[:2], (height, width))

  def test_profile_steps_write_a_trace_for_the_profile_plugin(self):
    traces = glob.glob(os.path.join(self.workdir, 'train', 'plugins', 'profile', '*', '*.xplane.pb'))
    self.assertLen(traces, 1)
    self.assertGreater(os.path.getsize(traces[0]), 1000)

  def test_text_has_the_config_and_environment(self):
    config_text = testing.tensor_series(self.events, 'eval', 'config')[0][1].item().decode()
    self.assertIn('| `units` | 4,6 |', config_text)
    environment = testing.tensor_series(self.events, 'eval', 'environment')[0][1].item().decode()
    self.assertIn(tf.__version__, environment)
    self.assertIn(models.recurrent_kernel_name(
        steps.create_train_state(self.config, self.task, tf.distribute.get_strategy(), 6).model), environment)


if __name__ == '__main__':
  absltest.main()

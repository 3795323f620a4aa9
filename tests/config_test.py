"""Config validation, task defaults and flagfile round trips."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from harness import archs
from harness import config as config_lib
from harness import recipes
from harness import runfiles
from harness.errors import UserError
from tests import testing


class ConfigTest(parameterized.TestCase):

  def test_task_defaults_apply_unless_overridden(self):
    self.assertEqual(config_lib.make_config(task='sin2cos').batch_size, 50)
    self.assertEqual(config_lib.make_config(task='sin2cos').learning_rate, 6e-3)
    self.assertEqual(config_lib.make_config(task='sin2cos', batch_size=7).batch_size, 7)
    self.assertEqual(config_lib.make_config(task='fashion_mnist').learning_rate, 3e-3)

  @parameterized.named_parameters(
      ('unknown_task', dict(task='cifar'), '--task'),
      ('unknown_arch', dict(arch='transformer'), '--arch'),
      ('unknown_optimizer', dict(optimizer='lamb'), '--optimizer'),
      ('unknown_lstm_kernel', dict(lstm_kernel='cudnn'), '--lstm_kernel'),
      ('zero_batch', dict(batch_size=0), '--batch_size'),
      ('negative_batch', dict(batch_size=-4), '--batch_size'),
      ('float_batch', dict(batch_size=2.5), '--batch_size'),
      ('zero_units', dict(units=(0,)), '--units'),
      ('no_units', dict(units=()), '--units'),
      ('nan_learning_rate', dict(learning_rate=float('nan')), '--learning_rate'),
      ('negative_learning_rate', dict(learning_rate=-0.1), '--learning_rate'),
      ('zero_learning_rate', dict(learning_rate=0.0), '--learning_rate'),
      ('negative_clip', dict(clip_norm=-1.0), '--clip_norm'),
      ('infinite_forget_bias', dict(forget_bias=float('inf')), '--forget_bias'),
      ('negative_input_units', dict(input_units=-1), '--input_units'),
      ('negative_eval_every', dict(eval_every=-1), '--eval_every'),
      ('eval_examples_word', dict(eval_examples='half'), "--eval_examples='half': give auto, all or a positive"),
      ('eval_examples_zero', dict(eval_examples='0'), "--eval_examples='0': give auto, all or a positive"),
      ('eval_examples_negative', dict(eval_examples='-5'), "--eval_examples='-5': give auto, all or a positive"),
      ('eval_examples_fraction', dict(eval_examples='0.2'), "--eval_examples='0.2': give auto, all or a positive"),
      ('profile_backwards', dict(profile_steps=(5, 3)), '--profile_steps'),
      ('run_name_with_slash', dict(run_name='a/b'), '--run_name'),
      ('resume_without_name', dict(resume=True), '--resume'),
      ('item6_data_dir_with_a_line_break', dict(data_dir='/data\n--units=64'), '--data_dir'),
      ('item13_seed_beyond_numpy', dict(seed=2**32), '--seed=4294967296: must be at most 4294967295'),
      ('item13_forget_bias_beyond_float32', dict(forget_bias=1e39), '--forget_bias=1e+39: must be at most 100'),
      ('item13_train_steps_beyond_int64', dict(train_steps=10**19), '--train_steps=10000000000000000000: must be'),
      ('item18_seq_len_beyond_memory', dict(task='adding', seq_len=10**7), '--seq_len=10000000: must be at most'),
      ('unknown_scan_kernel', dict(arch='lru', scan_kernel='fft'), '--scan_kernel'),
      ('lru_ring_inside_out', dict(arch='lru', lru_r_min=0.99, lru_r_max=0.9), '--lru_r_min=0.99: must be at most'),
      ('lru_ring_outside_the_circle', dict(arch='lru', lru_r_max=1.5), '--lru_r_max=1.5: must be at most 1'),
      ('lru_no_phase', dict(arch='lru', lru_max_phase=0.0), '--lru_max_phase=0.0: must be > 0'),
      ('negative_mlp', dict(arch='mingru', mlp_expansion=-1), '--mlp_expansion'),
      ('time_budget_negative', dict(time_budget=-0.5), '--time_budget=-0.5: must be 0 or more'),
      ('time_budget_deterministic', dict(time_budget=1.0, deterministic=True), '--time_budget=1.0: not with '
       '--deterministic'),
      ('time_budget_multi_worker', dict(time_budget=1.0, strategy='multi_worker', run_name='r'),
       '--time_budget=1.0: not with --strategy=multi_worker'),
      ('param_budget_negative', dict(param_budget=-1), '--param_budget=-1: must be 0 or more'),
  )
  def test_bad_value_names_its_flag(self, overrides, flag):
    with self.assertRaises(UserError) as raised:
      config_lib.make_config(**overrides)
    self.assertIn(flag, str(raised.exception))
    self.assertNotIn('\n', str(raised.exception))

  def test_every_recipe_resolves_and_explicit_values_override_it(self):
    for name, recipe in recipes.RECIPES.items():
      with self.subTest(recipe=name):
        config = config_lib.make_config(recipe=name)
        for field, value in recipe['flags'].items():
          self.assertEqual(getattr(config, field), value, field)
        self.assertEqual(config.recipe, name)
    adding_rnn = config_lib.make_config(recipe='adding', arch='rnn', seq_len=50)
    self.assertEqual((adding_rnn.arch, adding_rnn.seq_len, adding_rnn.units), ('rnn', 50, (128,)))
    self.assertIn('adding', recipes.describe())

  def test_the_memory_tasks_train_by_default_as_their_recipes_do(self):
    for task in ('adding', 'copy'):
      with self.subTest(task=task):
        default, recipe = config_lib.make_config(task=task), config_lib.make_config(recipe=task)
        self.assertEqual(default.epochs * 10_000 // default.batch_size, recipe.train_steps)  # 10,000 per epoch.
        self.assertEqual(dataclasses.replace(recipe, recipe='', train_steps=0, epochs=default.epochs), default)

  def test_an_unknown_recipe_lists_the_known_ones(self):
    with self.assertRaisesRegex(UserError, r'--recipe=nope: unknown recipe; choose one of rows_tutorial, .*copy'):
      config_lib.make_config(recipe='nope')

  def test_views_and_sequence_lengths_fit_the_task(self):
    self.assertEqual(config_lib.make_config(task='copy').seq_len, 50)
    self.assertEqual(config_lib.make_config(task='mnist', view='pixels').seq_len, 0)
    with self.assertRaisesRegex(UserError, '--view=pixels: only image tasks'):
      config_lib.make_config(task='adding', view='pixels')
    with self.assertRaisesRegex(UserError, '--seq_len=30: --task=mnist has no sequence-length flag .*--view'):
      config_lib.make_config(task='mnist', seq_len=30)
    with self.assertRaisesRegex(UserError, 'needs T >= 2'):
      config_lib.make_config(task='adding', seq_len=1)

  def test_every_arch_stacks_and_stacked_lstm_is_lstm(self):
    for arch in archs.NAMES:
      with self.subTest(arch=arch):
        self.assertEqual(config_lib.make_config(arch=arch, units=(32, 64)).units, (32, 64))
        self.assertEqual(config_lib.make_config(arch=arch, units=(16,)).units, (16,))
    self.assertIs(archs.get('stacked_lstm'), archs.ARCHS['lstm'])

  def test_only_the_arch_fields_of_its_arch_apply(self):
    lru = config_lib.applicable_fields(config_lib.make_config(arch='lru'))
    self.assertContainsSubset(['scan_kernel', 'lru_r_min', 'lru_r_max', 'lru_max_phase', 'units'], lru)
    self.assertNoCommonElements(['forget_bias', 'lstm_kernel', 'mlp_expansion'], lru)
    lstm = config_lib.applicable_fields(config_lib.make_config(arch='lstm'))
    self.assertContainsSubset(['forget_bias', 'lstm_kernel'], lstm)
    self.assertNoCommonElements(['scan_kernel', 'lru_r_min', 'mlp_expansion'], lstm)
    self.assertIn('mlp_expansion', config_lib.applicable_fields(config_lib.make_config(arch='minlstm')))

  def test_json_round_trip(self):
    config = config_lib.make_config(arch='stacked_lstm', units=(32, 64), profile_steps=(2, 4))
    workdir = testing.make_tempdir(self)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config_lib.to_json(config))
    self.assertEqual(runfiles.read_config(workdir, config.logdir, config.run_name), config)

  def test_item20_a_sweep_name_is_named_as_its_own_flag(self):
    with self.assertRaisesRegex(UserError, "^--name='a b': use only"):
      config_lib.check_run_name('a b', flag='name')

  def test_flagfile_lists_every_field_but_run_identity(self):
    config = config_lib.make_config(arch='stacked_lstm', units=(32, 64), stateful=True, learning_rate=1e-3)
    text = config_lib.to_flagfile(config, comments=['data_source: x'])
    self.assertIn('# data_source: x\n', text)
    self.assertIn('--units=32,64\n', text)
    self.assertIn('--stateful=true\n', text)
    self.assertIn('--learning_rate=0.001\n', text)
    self.assertNotIn('--run_name', text)
    self.assertNotIn('--resume', text)

  def test_the_config_text_lists_only_flags_that_apply(self):
    shown = set(config_lib.applicable_fields(config_lib.make_config(task='adding', arch='gru', train_steps=300)))
    self.assertContainsSubset({'seq_len', 'train_steps', 'units', 'seed'}, shown)
    self.assertEmpty({'view', 'permutation_seed', 'epochs', 'forget_bias', 'lstm_kernel'} & shown)
    images = set(config_lib.applicable_fields(config_lib.make_config(task='fashion_mnist', arch='lstm')))
    self.assertContainsSubset({'view', 'epochs', 'forget_bias'}, images)
    self.assertEmpty({'seq_len', 'permutation_seed'} & images)
    self.assertIn('permutation_seed', config_lib.applicable_fields(config_lib.make_config(view='permuted')))


if __name__ == '__main__':
  absltest.main()

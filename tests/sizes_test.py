"""Model sizes without TensorFlow: the parameter count against the built model, --param_budget's units, memory."""

import dataclasses
import os

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pytest

from harness import archs
from harness import cli
from harness import config as config_lib
from harness import runfiles
from harness import runs
from harness import sizes
from harness import task_table
from harness.errors import UserError
from tests import testing

# (task, view, input_units, units): an image task and a series task, each stacked with an input projection
# and single without.
SHAPES = (('mnist', 'rows', 16, (1, 2)), ('mnist', 'pixels', 0, (32,)), ('adding', 'rows', 0, (3, 5, 4)),
          ('sin2cos', 'rows', 8, (64,)))
# Every arch, and the minRNNs' MLP at another width and none.
ARCH_OPTIONS = [(name, {}) for name in archs.ARCHS] + [('mingru', dict(mlp_expansion=0)),
                                                       ('minlstm', dict(mlp_expansion=2))]


def one_scale(units, ratios):
  """Whether one s gives every layer its units as round(s a_i), at least 1: s lies in all of their intervals."""
  low = max((n - 0.5) / a if n > 1 else 0.0 for n, a in zip(units, ratios))
  return low < min((n + 0.5) / a for n, a in zip(units, ratios))


def budget_config(arch, options, shape, budget):
  task, view, input_units, units = shape
  return config_lib.make_config(task=task, view=view, input_units=input_units, units=units, arch=arch,
                                param_budget=budget, **options)


class ParameterBudgetTest(parameterized.TestCase):

  @parameterized.product(arch_options=ARCH_OPTIONS, shape=SHAPES, budget=(50_000, 500_000))
  def test_the_chosen_units_hit_the_budget_and_keep_the_ratios(self, arch_options, shape, budget):
    config = budget_config(*arch_options, shape, budget)
    count = sizes.task_parameter_count(config)
    self.assertLessEqual(abs(count - budget), sizes.BUDGET_TOLERANCE * budget, config.units)
    self.assertTrue(one_scale(config.units, shape[3]), config.units)
    self.assertEqual(config.param_budget, budget)
    self.assertEqual(config.input_units, shape[2])  # The projection keeps its size.

  @parameterized.parameters(*archs.ARCHS)
  def test_no_other_scale_comes_closer(self, arch):
    config = config_lib.make_config(task='adding', arch=arch, units=(1, 3), param_budget=30_000)
    best = abs(sizes.task_parameter_count(config) - 30_000)
    for s in np.linspace(1, 200, 4000):
      units = tuple(max(1, int(np.floor(s * a + 0.5))) for a in (1, 3))
      other = sizes.task_parameter_count(dataclasses.replace(config, units=units))
      self.assertGreaterEqual(abs(other - 30_000), best, units)

  def test_the_chosen_config_re_runs_from_its_flagfile_and_explicit_flags_beat_the_recipe(self):
    config = config_lib.make_config(recipe='mingru_pixel', param_budget=30_000)
    self.assertEqual((config.arch, config.mlp_expansion, len(set(config.units))), ('mingru', 2, 1))  # 64,64: 1:1.
    flag_values = flags.FlagValues()
    cli.define_config_flags(flag_values=flag_values)
    flag_values(['harness.train', *config_lib.to_flagfile(config).split()])
    self.assertEqual(config_lib.make_config(**cli.config_values(flag_values=flag_values, present_only=True)), config)
    workdir = testing.make_tempdir(self)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config_lib.to_json(config))
    self.assertEqual(runfiles.read_config(workdir, config.logdir, config.run_name), config)  # What --resume reads.
    self.assertIn('--param_budget=30000', cli.changed_flags(config))
    explicit = config_lib.make_config(recipe='mingru_pixel', param_budget=30_000, units=(1, 2))
    self.assertTrue(one_scale(explicit.units, (1, 2)), explicit.units)
    self.assertEqual((explicit.arch, explicit.mlp_expansion), ('mingru', 2))
    for fields in (dict(units=(3, 5)), dict(units=(22, 37)), dict(units=(1, 1, 2))):  # Chosen units choose themselves.
      chosen = config_lib.make_config(task='adding', param_budget=20_000, **fields)
      self.assertEqual(config_lib.make_config(task='adding', param_budget=20_000, units=chosen.units), chosen)

  def test_a_budget_off_or_met_leaves_the_units_and_shows_where_it_applies(self):
    self.assertEqual(config_lib.make_config(units=(7, 9)).units, (7, 9))
    self.assertNotIn('param_budget', config_lib.applicable_fields(config_lib.make_config()))
    config = config_lib.make_config(task='adding', units=(64,), param_budget=17_217)  # LSTM(64) on adding: 17,217.
    self.assertEqual(config.units, (64,))
    self.assertEqual({k: v for k, v in runs.hparams(config, {}).items() if k in ('units', 'param_budget')},
                     {'units': '64', 'param_budget': '17217'})

  @parameterized.named_parameters(
      ('too_small', dict(param_budget=3000), r'^--param_budget=3000: too small for --arch=lstm on --task=mnist with '
       r'its --input_units=128 projection: its smallest model, --units=1, has 4,252 parameters$'),
      ('between_two_sizes', dict(task='adding', units=(1, 1), param_budget=5000),
       r'^--param_budget=5000: no scale of --units=1,1 comes within 2 % for --arch=lstm on --task=adding: '
       r'--units=19,19 gives 4,656 parameters, --units=20,20 5,141; give other ratios or another budget$'),
      ('beyond_memory', dict(task='adding', param_budget=10**13),
       r'^--param_budget=10000000000000 \(--units=\d+\): the model has [\d,]+ parameters and needs at least'),
  )
  def test_a_budget_the_arch_cannot_meet_is_one_line_naming_the_flag(self, fields, message):
    with self.assertRaisesRegex(UserError, message):
      config_lib.make_config(**fields)


class ParameterCountTest(parameterized.TestCase):

  @parameterized.product(arch_options=ARCH_OPTIONS, shape=SHAPES)
  @pytest.mark.slow
  def test_the_count_is_the_built_models(self, arch_options, shape):
    from harness import models  # pylint: disable=g-import-not-at-top  # TensorFlow: only here.
    config = budget_config(*arch_options, shape, 50_000)
    num_features, num_outputs = task_table.TASKS[config.task].io_sizes(config.view)
    model = models.build_model(config, num_outputs, False, num_features)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    self.assertEqual(sizes.task_parameter_count(config), trainable)
    self.assertEqual(model.count_params(), trainable)

  @pytest.mark.slow
  def test_the_table_sizes_are_the_built_tasks(self):
    from harness import tasks  # pylint: disable=g-import-not-at-top
    from harness.tasks import images  # pylint: disable=g-import-not-at-top
    from harness.tasks import sources  # pylint: disable=g-import-not-at-top
    for task in ('sin2cos', 'adding', 'copy'):
      with self.subTest(task=task):
        built = tasks.load_task(config_lib.make_config(task=task))
        self.assertEqual(task_table.TASKS[task].io_sizes('rows'), (built.num_features, built.num_outputs))
    rng = np.random.default_rng(0)
    split = rng.integers(0, 256, (4, 28, 28)).astype(np.uint8), np.arange(4)
    data = sources.image_data(split, split, [str(digit) for digit in range(10)], 'MNIST-shaped')
    for view in config_lib.VIEWS:
      with self.subTest(view=view):
        built = images.ImageTask('mnist', data, view)
        self.assertEqual(task_table.TASKS['mnist'].io_sizes(view), (built.num_features, built.num_outputs))

  def test_a_model_too_big_for_memory_is_refused_naming_the_size_flags(self):
    config = testing.tiny_config(units=(2_000_000,), input_units=0)
    with self.assertRaisesRegex(UserError, r'^--units=2000000: the model has [\d,]+ parameters and needs at least'):
      sizes.check_memory(config, num_features=28, num_outputs=10)
    sizes.check_memory(testing.tiny_config(), num_features=28, num_outputs=10)  # Small: no error.


if __name__ == '__main__':
  absltest.main()

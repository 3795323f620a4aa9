"""Flags generated from Config: one per field, with its type, choices, bounds and per-task defaults."""

import io
import logging as python_logging
import os
import sys
from unittest import mock

from absl import flags
from absl import logging
from absl.testing import absltest

from harness import archs
from harness import cli
from harness import config as config_lib
from harness import task_table
from harness.errors import UserError
from tests import testing


def parse(args, names=None, defaults=None):
  flag_values = flags.FlagValues()
  cli.define_config_flags(names, defaults, flag_values)
  flag_values(['prog', *args])
  return flag_values


class DefineConfigFlagsTest(absltest.TestCase):

  def test_every_field_is_a_flag_that_round_trips_through_the_flagfile(self):
    config = config_lib.make_config(arch='stacked_lstm', units=(32, 64), stateful=True, profile_steps=(3, 5),
                                    learning_rate=1e-3, optimizer='sgd', run_name='r', task='sin2cos')
    flag_values = parse(['--run_name=r'] + config_lib.to_flagfile(config).split())
    self.assertEqual(set(flag_values), set(config_lib.FIELDS))
    self.assertEqual(config_lib.make_config(**cli.config_values(flag_values=flag_values)), config)
    self.assertEqual(config_lib.make_config(**cli.config_values(flag_values=flag_values, present_only=True)), config)

  def test_enum_flags_take_the_field_choices(self):
    flag_values = parse([])
    self.assertEqual(flag_values['task'].parser.enum_values, list(config_lib.TASKS))
    self.assertEqual(flag_values['arch'].parser.enum_values, list(archs.NAMES))
    with self.assertRaisesRegex(flags.IllegalFlagValueError, 'task'):
      parse(['--task=cifar'])

  def test_per_task_fields_stay_unset_so_the_task_default_applies(self):
    values = cli.config_values(flag_values=parse(['--task=sin2cos']))
    self.assertNotIn('batch_size', values)
    self.assertEqual(config_lib.make_config(**values).batch_size, task_table.TASKS['sin2cos'].defaults['batch_size'])
    self.assertIn('mnist, fashion_mnist: 128; sin2cos, adding, copy: 50', parse([])['batch_size'].help)

  def test_a_subset_with_other_defaults(self):
    flag_values = parse([], names=('task', 'units'), defaults={'task': 'fashion_mnist', 'units': (64,)})
    self.assertEqual(set(flag_values), {'task', 'units'})
    self.assertEqual(cli.config_values(('task', 'units'), flag_values), {'task': 'fashion_mnist', 'units': (64,)})

  def test_list_of_non_integers_is_a_user_error_naming_the_flag(self):
    with self.assertRaisesRegex(UserError, '--units=12,x: must be comma-separated integers'):
      cli.config_values(flag_values=parse(['--units=12,x']))

  def test_item20_an_error_is_always_one_line(self):
    with self.assertRaises(SystemExit), mock.patch('sys.stderr', new_callable=io.StringIO) as stderr:
      cli.fail('harness.x', 'first\nsecond')
    self.assertEqual(stderr.getvalue(), 'harness.x: error: first second\n')


class ConsoleTest(absltest.TestCase):

  def test_the_config_line_names_only_what_differs_from_the_task_and_recipe_defaults(self):
    self.assertEqual(cli.changed_flags(config_lib.make_config()), [])
    self.assertEqual(cli.changed_flags(config_lib.make_config(task='fashion_mnist', train_steps=50, run_name='r')),
                     ['--task=fashion_mnist', '--train_steps=50'])
    self.assertEqual(cli.changed_flags(config_lib.make_config(recipe='adding', arch='gru')),
                     ['--recipe=adding', '--arch=gru'])
    self.assertEqual(cli.changed_flags(config_lib.make_config(recipe='sin2cos_tutorial', stateful=False,
                                                              units=(12,))),
                     ['--recipe=sin2cos_tutorial', '--units=12', '--nostateful'])

  def test_the_tensorboard_command_works_from_where_it_is_printed(self):
    root = testing.make_tempdir(self)
    venv = os.path.join(root, '.venv')
    os.makedirs(os.path.join(venv, 'bin'))
    script = os.path.join(venv, 'bin', 'tensorboard')
    with open(script, 'w') as f:
      f.write('#!/bin/sh\n')
    os.chmod(script, 0o755)
    cwd = os.getcwd()
    self.addCleanup(os.chdir, cwd)
    os.chdir(root)
    with mock.patch.object(sys, 'prefix', venv):
      with mock.patch.dict(os.environ, {'PATH': '/usr/bin:/bin'}):  # The Quick start: the venv not activated.
        self.assertEqual(cli.tensorboard_command('runs'), '.venv/bin/tensorboard --logdir runs')
        os.makedirs(os.path.join(root, 'elsewhere'))
        os.chdir(os.path.join(root, 'elsewhere'))
        self.assertEqual(cli.tensorboard_command('my runs'), f"{script} --logdir 'my runs'")
      with mock.patch.dict(os.environ, {'PATH': f'{os.path.join(venv, "bin")}:/usr/bin'}):  # Activated.
        self.assertEqual(cli.tensorboard_command('runs'), 'tensorboard --logdir runs')

  def test_the_harness_lines_are_bare_and_libraries_keep_absl_s_prefix(self):
    formatter = cli._ConsoleFormatter()
    harness_file = os.path.join(os.path.dirname(cli.__file__), 'loop.py')

    def record(pathname, level, message):
      return python_logging.LogRecord('absl', level, pathname, 158, message, (), None)

    self.assertEqual(formatter.format(record(harness_file, python_logging.INFO, 'step 100/4690')), 'step 100/4690')
    self.assertEqual(formatter.format(record(harness_file, python_logging.WARNING, 'FULL MNIST')),
                     'warning: FULL MNIST')
    library = formatter.format(record('/site-packages/tensorflow/x.py', python_logging.ERROR, 'bad'))
    self.assertRegex(library, r'^E\d{4} .* x\.py:158\] bad$')

  def test_matplotlib_debug_lines_stay_hidden_at_verbosity_1(self):
    # Each logger's own level back, not set_verbosity(get_verbosity()): under pytest absl's logger
    # inherits the root's, and setting it back by verbosity would pin it at WARNING for later tests.
    for logger in (logging.get_absl_logger(), python_logging.getLogger(),
                   python_logging.getLogger('matplotlib'), python_logging.getLogger('PIL')):
      self.addCleanup(logger.setLevel, logger.level)
    logging.set_verbosity(logging.DEBUG)
    cli.quiet_console()
    self.assertFalse(python_logging.getLogger('matplotlib.font_manager').isEnabledFor(python_logging.DEBUG))
    self.assertFalse(python_logging.getLogger('matplotlib').isEnabledFor(python_logging.INFO))


if __name__ == '__main__':
  absltest.main()

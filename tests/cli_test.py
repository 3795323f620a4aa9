"""Flags generated from Config: one per field, with its type, choices, bounds and per-task defaults."""

from absl import flags
from absl.testing import absltest

from harness import archs
from harness import cli
from harness import config as config_lib
from harness import task_table
from harness.errors import UserError


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


if __name__ == '__main__':
  absltest.main()

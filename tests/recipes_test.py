"""Every recipe trains, and a recipe run's flags.txt re-runs it exactly."""

import dataclasses
import json
import os

from absl.testing import absltest
import pytest

from harness import config as config_lib
from harness import loop
from harness import recipes
from tests import testing

pytestmark = pytest.mark.slow  # Eight short runs, two of them 784 steps long.


class RecipesTest(absltest.TestCase):

  def test_every_recipe_trains_two_steps(self):
    root = testing.make_tempdir(self)
    for name in recipes.RECIPES:
      with self.subTest(recipe=name):
        config = config_lib.make_config(recipe=name, train_steps=2, eval_every=2, histogram_every=2,
                                        logdir=root, data_dir=os.path.join(root, 'tfds'))
        metrics = loop.train_and_evaluate(config, os.path.join(root, name))
        self.assertEqual(metrics['step'], 2)
        self.assertEqual(metrics['status'], 'finished')
        self.assertEqual({k: v for k, v in metrics.items() if k.startswith('threshold_')},
                         {'adding': {'threshold_mse': 0.01}, 'copy': {'threshold_accuracy': 0.99}}.get(config.task, {}))

  def test_a_recipe_runs_flagfile_re_runs_it_and_explicit_flags_win(self):
    logdir = os.path.join(testing.make_tempdir(self), 'runs')
    first = testing.run_harness([f'--logdir={logdir}', '--recipe=copy', '--seq_len=5', '--units=16',
                                 '--train_steps=4', '--run_name=first'])
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    with open(os.path.join(logdir, 'first', 'config.json')) as f:
      saved = json.load(f)
    self.assertEqual((saved['recipe'], saved['optimizer'], saved['seq_len'], saved['units']),
                     ('copy', 'adam', 5, [16]))
    again = testing.run_harness([f'--flagfile={os.path.join(logdir, "first", "flags.txt")}', '--run_name=second'])
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    with open(os.path.join(logdir, 'second', 'config.json')) as f:
      self.assertEqual(json.load(f), {**saved, 'run_name': 'second'})
    with open(os.path.join(logdir, 'first', 'metrics.json')) as f, \
         open(os.path.join(logdir, 'second', 'metrics.json')) as g:
      self.assertEqual(json.load(f)['eval_loss'], json.load(g)['eval_loss'])

  def test_recipe_list(self):
    result = testing.run_harness(['--recipe=list'])
    self.assertEqual(result.returncode, 0)
    self.assertEqual([line.split()[0] for line in result.stdout.splitlines()], list(recipes.RECIPES))
    self.assertEqual(dataclasses.replace(config_lib.make_config(recipe='adding'), arch='gru').arch, 'gru')


if __name__ == '__main__':
  absltest.main()

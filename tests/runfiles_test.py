"""Reading run and sweep files back: every damaged or hand-edited file is one UserError naming it."""

import json
import os

from absl.testing import absltest
from absl.testing import parameterized

from harness import config as config_lib
from harness import runfiles
from harness import runs
from harness.errors import UserError
from tests import testing


class RunFilesTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = testing.make_tempdir(self)

  def write(self, name, text):
    with open(os.path.join(self.dir, name), 'w') as f:
      f.write(text)

  def test_config_round_trip_and_a_missing_file(self):
    self.assertIsNone(runfiles.read_config(self.dir, 'runs', 'r'))
    config = config_lib.make_config(arch='stacked_lstm', units=(32, 64), profile_steps=(2, 4), run_name='r')
    self.write('config.json', config_lib.to_json(config))
    self.assertEqual(runfiles.read_config(self.dir, config.logdir, 'r'), config)

  @parameterized.parameters(('[]', r'holds \[\], not a JSON object'), ('null', 'holds null'),
                            ('{"units": 5}', '"units" is 5, must be a list of integers'),
                            ('{"units": ["8"]}', "--units='8': must be an integer"),
                            ('{"learning_rate": "x"}', 'must be a finite number'), ('{"arch', 'not valid JSON'))
  def test_item8_a_bad_config_json(self, text, expected):
    self.write('config.json', text)
    with self.assertRaisesRegex(UserError, f'^{self.dir}/config.json: .*{expected}.*; fix it, or start a new run$'):
      runfiles.read_config(self.dir, 'runs', 'r')

  @parameterized.parameters(('[1]', r'holds \[1\]'), ('5', 'holds 5'), ('{"step": 1}', 'has no "total_steps"'),
                            ('{"step": "60", "total_steps": 60}', '"step" is "60", must be an integer >= 0'),
                            ('{"step": null, "total_steps": 60}', '"step" is null'),
                            ('{"step": 6, "total_steps": 6, "eval_loss": "0.5"}', '"eval_loss" is "0.5", must be '
                             'a number'),
                            ('{"step": 6, "total_steps": 6, "status": "done"}', '"status" is "done"'),
                            ('{"step": 6, "total_steps": 6, "stopped_by": "SIGKILL"}', '"stopped_by"'),
                            ('[' * 100_000 + ']' * 100_000, 'not valid JSON'))
  def test_item8_item9_a_bad_metrics_json(self, text, expected):
    self.write('metrics.json', text)
    with self.assertRaisesRegex(UserError, f'^{self.dir}/metrics.json: .*{expected}.*; fix or remove it'):
      runfiles.read_metrics(self.dir)

  def test_good_metrics(self):
    self.assertIsNone(runfiles.read_metrics(self.dir))
    metrics = {'step': 6, 'total_steps': 6, 'status': 'finished', 'eval_loss': 0.5, 'baseline_mse': 1 / 6,
               'train_seconds': 1.5, 'steps_per_epoch': 3, 'weights_sha256': 'ab', 'something_new': [1]}
    self.write('metrics.json', json.dumps(metrics))
    self.assertEqual(runfiles.read_metrics(self.dir), metrics)
    self.assertTrue(runs.is_finished(metrics))

  @parameterized.parameters(('{"grid": [["arch", ["lstm"]]], "seeds": 2, "fixed"', 'not valid JSON'),
                            ('{}', 'has no "grid"'), ('[]', r'holds \[\]'),
                            ('{"grid": [["arch", []]], "seeds": 1, "fixed": []}', '"grid" is'),
                            ('{"grid": [], "seeds": 0, "fixed": []}', '"seeds" is 0'))
  def test_item9_a_bad_sweep_json(self, text, expected):
    self.write('sweep.json', text)
    with self.assertRaisesRegex(UserError, f'^{self.dir}/sweep.json: .*{expected}.*; fix it'):
      runfiles.read_sweep(self.dir)


if __name__ == '__main__':
  absltest.main()

"""The run folder: names, claiming, resuming with the saved config, the files that describe a run."""

import json
import os
import re

from absl.testing import absltest

from harness import config as config_lib
from harness import runs
from harness.errors import UserError
from tests import testing


class RunsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.logdir = os.path.join(testing.make_tempdir(self), 'runs')

  def config(self, **overrides):
    return config_lib.make_config(logdir=self.logdir, **overrides)

  def start(self, **overrides):
    """A claimed run folder with its config files, as a started run leaves it."""
    config = self.config(**overrides)
    workdir = runs.claim_run_dir(config)
    runs.write_config_files(workdir, config, ['a comment'])
    return config, workdir

  def test_default_names_say_task_arch_units_and_never_collide(self):
    config = self.config(task='sin2cos', arch='stacked_lstm', units=(4, 8))
    self.assertRegex(runs.default_run_name(config), r'^sin2cos-stacked_lstm-4x8-\d{8}-\d{6}-[0-9a-f]{4}$')
    names = {os.path.basename(runs.claim_run_dir(config)) for _ in range(20)}
    self.assertLen(names, 20)

  def test_an_explicit_name_that_exists_is_refused(self):
    self.start(run_name='taken')
    with self.assertRaisesRegex(UserError, '--run_name=taken: .* already exists; pass --resume'):
      runs.claim_run_dir(self.config(run_name='taken'))

  def test_config_files_rerun_the_config_and_record_comments(self):
    config, workdir = self.start(run_name='r', arch='gru', learning_rate=0.01)
    with open(os.path.join(workdir, 'config.json')) as f:
      self.assertEqual(config_lib.from_json(f.read()), config)
    with open(os.path.join(workdir, 'flags.txt')) as f:
      text = f.read()
    self.assertTrue(text.startswith('# a comment\n'))
    self.assertIn('--arch=gru\n', text)
    self.assertIn('--learning_rate=0.01\n', text)

  def test_resume_keeps_the_saved_config_and_takes_schedule_flags(self):
    saved, _ = self.start(run_name='r', arch='gru', units=(16,), train_steps=100)
    command_line = self.config(run_name='r', resume=True, train_steps=300, eval_every=7)
    resumed = runs.resumed_config(command_line, ['run_name', 'resume', 'train_steps', 'eval_every'])
    self.assertEqual(resumed.arch, 'gru')  # Not the flag default: the run's own.
    self.assertEqual(resumed.units, (16,))
    self.assertEqual((resumed.train_steps, resumed.eval_every, resumed.resume), (300, 7, True))
    self.assertEqual(saved.train_steps, 100)

  def test_resume_refuses_a_flag_that_defines_the_model(self):
    self.start(run_name='r', arch='gru')
    for flag, value in (('arch', 'lstm'), ('learning_rate', 0.5), ('seed', 3)):
      with self.subTest(flag=flag):
        with self.assertRaisesRegex(UserError, f'--{flag}=.*differs from the resumed run'):
          runs.resumed_config(self.config(run_name='r', resume=True, **{flag: value}), [flag])

  def test_resume_of_a_run_that_does_not_exist(self):
    with self.assertRaisesRegex(UserError, '--resume: no run'):
      runs.resumed_config(self.config(run_name='nope', resume=True), ['run_name', 'resume'])

  def test_metrics_file(self):
    _, workdir = self.start(run_name='r')
    runs.write_metrics(workdir, {'step': 3, 'eval_loss': 0.5})
    with open(os.path.join(workdir, 'metrics.json')) as f:
      self.assertEqual(json.load(f), {'step': 3, 'eval_loss': 0.5})

  def test_hparams_leave_out_what_does_not_apply(self):
    gru = runs.hparams(self.config(arch='gru'), {}, {'params': 10})
    self.assertNotIn('forget_bias', gru)
    self.assertEqual(gru['params'], 10)
    lstm = runs.hparams(self.config(task='sin2cos'), {'seq_len': 20}, {})
    self.assertEqual((lstm['forget_bias'], lstm['seq_len']), (1.0, 20))
    self.assertTrue(all(re.match(r'^[a-z_]+$', name) for name in lstm))


if __name__ == '__main__':
  absltest.main()

"""A sweep's trials: the grid, names and flags."""

from absl.testing import absltest

from harness import trials as trials_lib
from harness.errors import UserError


class TrialsTest(absltest.TestCase):

  def test_names_and_flags(self):
    grid = trials_lib.parse_grid(['arch=rnn,gru', 'units=8,16x8'])
    names = [t.name for t in trials_lib.make_trials(grid, 2)]
    self.assertEqual(names[:3], ['arch=rnn,units=8,seed=0', 'arch=rnn,units=8,seed=1', 'arch=rnn,units=16x8,seed=0'])
    self.assertLen(names, 8)
    trial = trials_lib.make_trials(grid, 1)[1]
    self.assertEqual(trial.flags(['--task=copy']), ['--task=copy', '--arch=rnn', '--units=16,8', '--seed=0'])
    with self.assertRaisesRegex(UserError, 'appears twice'):
      trials_lib.parse_grid(['arch=rnn', 'arch=gru'])


if __name__ == '__main__':
  absltest.main()

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

  def test_item4_a_grid_point_given_twice_is_refused(self):
    with self.assertRaisesRegex(UserError, '^--grid=arch=lstm,lstm: lstm appears twice; give each value once$'):
      trials_lib.parse_grid(['arch=lstm,lstm'])
    grid = trials_lib.parse_grid(['learning_rate=1e-3,0.001'])  # Two spellings of one value.
    with self.assertRaisesRegex(UserError, r'^--grid: trials learning_rate=1e-3,seed=0 and learning_rate=0.001,seed=0 '
                                'are the same run'):
      trials_lib.check_trials(trials_lib.make_trials(grid, 1), ['--task=adding'], '/tmp/sweep')

  def test_item20_a_grid_value_with_a_line_break_is_one_line(self):
    with self.assertRaisesRegex(UserError, r"^--grid='arch=lstm\\nx': holds a line break") as raised:
      trials_lib.parse_grid(['arch=lstm\nx'])
    self.assertNotIn('\n', str(raised.exception))

  def test_time_left_counts_work_not_rounds(self):
    self.assertIsNone(trials_lib.seconds_left([], 3, [10.0], 2))
    # Mean 60 s: two waiting (120 s) and two running that lack 30 s and 50 s, over two slots.
    self.assertEqual(trials_lib.seconds_left([50.0, 70.0], 2, [30.0, 10.0], 2), 100.0)
    # A trial finishing at the mean and the next one starting leave the estimate where it was.
    before = trials_lib.seconds_left([60.0], 3, [59.0, 30.0], 2)
    after = trials_lib.seconds_left([60.0, 60.0], 2, [0.0, 31.0], 2)
    self.assertAlmostEqual(before, after, delta=1.0)
    self.assertEqual(trials_lib.seconds_left([60.0], 0, [20.0], 4), 40.0)  # The last trial: its own time left.


if __name__ == '__main__':
  absltest.main()

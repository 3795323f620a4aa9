"""The schedule's table of actions and the timer's breakdown of wall time (no TensorFlow)."""

from absl.testing import absltest

from harness import schedule as schedule_lib
from tests import testing


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class ScheduleTest(absltest.TestCase):

  def test_the_actions_table_sets_both_the_call_length_and_what_is_due(self):
    config = testing.tiny_config(summary_every=10, eval_every=25, checkpoint_every=40, histogram_every=0)
    schedule = schedule_lib.Schedule(config, steps_per_epoch=1000, total_steps=100)
    actions = [schedule_lib.Action('summary', 10, print), schedule_lib.Action('extra', 7, print)]
    self.assertEqual(schedule.steps_to_next_event(0, actions), 7)  # A new action shortens the calls...
    self.assertEqual(schedule.steps_to_next_event(7, actions), 3)
    due = [a.name for a in actions if schedule.due(14, a.every)]
    self.assertEqual(due, ['extra'])  # ...and is dispatched from the same table.
    self.assertEqual([a.name for a in actions if schedule.due(100, a.every)], ['summary', 'extra'])  # The end.


class TimerTest(absltest.TestCase):

  def test_shares_of_wall_time_and_speed_without_the_first_call(self):
    clock = FakeClock()
    timer = schedule_lib.Timer(clock)
    for kind, seconds, steps in (('train', 4.0, 10), ('train', 2.0, 10), ('eval', 1.0, 0), ('probes', 0.5, 0)):
      with timer.timed(kind):
        clock.now += seconds
      if steps:
        timer.train_call(steps, seconds)
    clock.now += 0.5  # Outside every timed block: the remainder.
    shares, steps_per_second = timer.read_and_reset()
    self.assertEqual(shares, {'train': 0.75, 'eval': 0.125, 'probes': 0.0625, 'checkpoint': 0.0})
    self.assertEqual(steps_per_second, 5.0)  # The first call (tracing) is not timed.
    self.assertEqual(timer.eta(100), 20.0)
    clock.now += 1.0
    self.assertEqual(timer.read_and_reset(), ({'train': 0.0, 'eval': 0.0, 'probes': 0.0, 'checkpoint': 0.0}, None))

  def test_format_seconds(self):
    self.assertEqual(schedule_lib.format_seconds(65), '1m05s')
    self.assertEqual(schedule_lib.format_seconds(7389), '2h03m09s')


if __name__ == '__main__':
  absltest.main()

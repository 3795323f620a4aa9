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


  def test_default_evaluation_is_sparser_where_it_would_cost_more_than_its_share(self):
    schedule = schedule_lib.Schedule(testing.tiny_config(eval_every=0), 469, 4690)
    self.assertEqual(schedule.sparse_eval_every(eval_seconds=0.5, step_seconds=0.05), 469)  # Cheap: every epoch.
    # Fashion-MNIST's ~12 s test split against 0.05 s steps: every 4 epochs (3 would keep the share too,
    # but only powers of two nest across runs).
    every = schedule.sparse_eval_every(eval_seconds=12.0, step_seconds=0.05)
    self.assertEqual(every, 4 * 469)
    self.assertLessEqual(12.0 / (12.0 + every * 0.05), schedule_lib.EVAL_SHARE)
    self.assertGreater(12.0 / (12.0 + 2 * 469 * 0.05), schedule_lib.EVAL_SHARE)  # The densest power that keeps it.
    # Two seeds that measured different costs evaluate at nested steps: the sparser run's steps are the denser's.
    dense, sparse = (schedule.sparse_eval_every(eval_seconds, step_seconds=0.05) for eval_seconds in (7.0, 15.0))
    self.assertEqual((dense // 469, sparse // 469), (2, 4))
    short = schedule_lib.Schedule(testing.tiny_config(eval_every=0), 469, 50)
    self.assertEqual(short.sparse_eval_every(eval_seconds=12.0, step_seconds=0.05), 50)  # The last step only.

  def test_an_action_s_interval_is_replaced_in_the_table(self):
    actions = (schedule_lib.Action('summary', 10, print), schedule_lib.Action('eval', 100, print, last_name='final'))
    changed = schedule_lib.with_every(actions, 'eval', 30)
    self.assertEqual([(a.name, a.every) for a in changed], [('summary', 10), ('eval', 30)])
    self.assertEqual((changed[1].timer_kind(False), changed[1].timer_kind(True)), ('eval', 'final'))
    self.assertEqual(changed[0].timer_kind(True), 'summary')


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

  def test_every_kind_timed_is_totalled_for_the_process(self):
    clock = FakeClock()
    timer = schedule_lib.Timer(clock)
    self.assertIsNone(timer.step_seconds())
    for kind, seconds in (('train', 3.0), ('final_eval', 2.0), ('eval', 1.0)):
      with timer.timed(kind):
        clock.now += seconds
    timer.train_call(10, 3.0)  # The first call: traced, not timed.
    timer.train_call(10, 1.0)
    timer.read_and_reset()
    self.assertEqual(timer.totals, {'train': 3.0, 'final_eval': 2.0, 'eval': 1.0})  # Not reset by a read.
    self.assertEqual(timer.step_seconds(), 0.1)

  def test_format_seconds(self):
    self.assertEqual(schedule_lib.format_seconds(65), '1m05s')
    self.assertEqual(schedule_lib.format_seconds(7389), '2h03m09s')


class TimeSummaryTest(absltest.TestCase):

  def test_the_time_summary_names_this_process_and_after_a_resume_the_whole_run(self):
    seconds = {'train': 40.0, 'eval': 6.0, 'probes': 0.1}
    fresh = {'step': 50, 'train_seconds': 40.0, 'this_process': {'start_step': 0, 'seconds': seconds}}
    self.assertEqual(schedule_lib.time_summary(fresh, 80.0),
                     'in 1m20s (50 % training steps, 8 % evaluation, 42 % start-up and the rest)')
    resumed = {'step': 3000, 'train_seconds': 90.0, 'this_process': {'start_step': 2000, 'seconds': seconds}}
    self.assertEqual(schedule_lib.time_summary(resumed, 52.0),
                     'this process (steps 2001-3000) in 0m52s (77 % training steps, 12 % evaluation, 11 % start-up '
                     'and the rest); the whole run 1m30s in training steps')
    completed = {'step': 3000, 'train_seconds': 90.0,
                 'this_process': {'start_step': 3000, 'seconds': {'final_eval': 5.0}}}
    self.assertEqual(schedule_lib.time_summary(completed, 10.0),
                     'this process (no step left to train) in 0m10s (50 % final evaluation, 50 % start-up and the '
                     'rest); the whole run 1m30s in training steps')


if __name__ == '__main__':
  absltest.main()

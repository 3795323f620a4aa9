"""The schedule's table of actions and the timer's breakdown of wall time (no TensorFlow)."""

import math

from absl.testing import absltest

from harness import config as config_lib
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
    steps_only = dict(step_seconds=0.05, other_seconds=0.0, steps=4690)  # Nothing but its steps.
    self.assertEqual(schedule.sparse_eval_every(eval_seconds=0.5, **steps_only), 469)  # Cheap: every epoch.
    # A ~12 s test split against 0.05 s steps: every 4 epochs (3 would keep the share too, but only powers of
    # two nest across runs).
    every = schedule.sparse_eval_every(eval_seconds=12.0, **steps_only)
    self.assertEqual(every, 4 * 469)
    self.assertLessEqual(12.0 / (12.0 + every * 0.05), schedule_lib.EVAL_SHARE)
    self.assertGreater(12.0 / (12.0 + 2 * 469 * 0.05), schedule_lib.EVAL_SHARE)  # The densest power that keeps it.
    # Two seeds that measured different costs evaluate at nested steps: the sparser run's steps are the denser's.
    dense, sparse = (schedule.sparse_eval_every(eval_seconds, **steps_only) for eval_seconds in (7.0, 15.0))
    self.assertEqual((dense // 469, sparse // 469), (2, 4))
    short = schedule_lib.Schedule(testing.tiny_config(eval_every=0), 469, 50)
    self.assertEqual(short.sparse_eval_every(12.0, 0.05, other_seconds=0.0, steps=50), 50)  # The last step only.

  def test_a_short_run_s_start_up_and_final_evaluation_count_in_its_time(self):
    # Fashion-MNIST, LSTM(16), batch 32, 300 steps on 2 cores: ~1.5 ms steps, ~0.12 s to evaluate 2,000 test
    # examples, ~10 s of start-up, probes and final evaluation, which a run evaluating only at its end spends too.
    schedule = schedule_lib.Schedule(testing.tiny_config(eval_every=0), 1875, 300)
    self.assertEqual(schedule.sparse_eval_every(0.12, 0.0015, other_seconds=0.0, steps=300), 300)  # Steps alone.
    every = schedule.sparse_eval_every(0.12, 0.0015, other_seconds=10.0, steps=300)
    self.assertEqual(every, 30)  # Ten evaluations; the nine before the last within their share:
    self.assertLessEqual(9 * 0.12 / (9 * 0.12 + 300 * 0.0015 + 10.0), schedule_lib.EVAL_SHARE)
    # Spread over fewer steps (a resumed process's), the same other time allows at least as many.
    self.assertEqual(schedule.sparse_eval_every(0.12, 0.0015, other_seconds=10.0, steps=100), 30)

  def test_auto_eval_examples_are_sized_to_the_run_and_a_small_split_is_read_whole(self):
    def examples(split, steps, batch_size, **overrides):
      config = testing.tiny_config(task='fashion_mnist', batch_size=batch_size, **overrides)
      return schedule_lib.Schedule(config, 1875, steps).eval_examples(split)

    self.assertEqual(examples(10_000, 300, 32), 1_024)  # 960 examples trained between evaluations: the floor,
    self.assertEqual(examples(10_000, 500, 32), 1_600)  # in whole batches.
    self.assertEqual(examples(10_000, 4690, 128), 1_920)  # The default job: the ceiling.
    self.assertEqual(examples(10_000, 300, 4096), 4096)  # One batch at least.
    self.assertIsNone(examples(2_000, 300, 32))  # The generated tasks' test sets, the MNIST sample's: whole.
    self.assertIsNone(examples(10_000, 300, 32, eval_examples='all'))
    self.assertEqual(examples(10_000, 300, 32, eval_examples='500'), 500)

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
    clock.now += 0.5
    # All but the timed training call and the evaluations before the last: the traced first call, the final
    # evaluation and the rest; from the process's start where it is given.
    self.assertEqual(timer.other_seconds(), 6.5 - 1.0 - 1.0)
    self.assertEqual(schedule_lib.Timer(clock, started=clock.now - 4.0).other_seconds(), 4.0)

  def test_format_seconds(self):
    self.assertEqual(schedule_lib.format_seconds(65), '1m05s')
    self.assertEqual(schedule_lib.format_seconds(7389), '2h03m09s')


class TimeBudgetTest(absltest.TestCase):

  def test_a_budget_counts_training_seconds_and_its_schedule_ends_where_it_runs_out(self):
    config = testing.tiny_config(train_steps=0, time_budget=0.5)
    schedule = schedule_lib.Schedule(config, steps_per_epoch=50, total_steps=config_lib.MAX_STEPS)
    self.assertEqual(schedule.budget_seconds, 30.0)
    self.assertEqual((schedule.seconds_left(12.5), schedule.seconds_left(30.4)), (17.5, 0.0))
    self.assertEqual(schedule.position(120, 12.4, epochs=True),
                     'step 120, 0m12s of 0m30s in training steps (epoch 2.4)')
    actions = [schedule_lib.Action(name, every, print) for name, every in (
        ('summary', 100), ('announce', schedule.total_steps), ('eval', 50), ('checkpoint', 1000))]
    self.assertEqual([a.name for a in actions if schedule.due(137, a.every)], [])
    ended = schedule.ending_at(137)
    self.assertEqual([a.name for a in actions if ended.due(137, a.every)], [a.name for a in actions])
    self.assertEqual(ended.steps_to_next_event(130, actions), 7)
    capped = schedule_lib.Schedule(testing.tiny_config(train_steps=500, time_budget=0.5), 50, 500)
    self.assertEqual(capped.position(120, 12.4), 'step 120/500, 0m12s of 0m30s in training steps')

  def test_a_budget_s_evaluations_are_spaced_by_the_steps_it_fits_in_powers_of_two(self):
    config = testing.tiny_config(train_steps=0, time_budget=10.0, eval_every=0)
    schedule = schedule_lib.Schedule(config, steps_per_epoch=938, total_steps=config_lib.MAX_STEPS)
    # 600 s left at 0.5 s a step: 1,200 steps, a tenth of which rounds up to 128.
    self.assertEqual(schedule.steps_left(0, 0.0, 0.5), 1200)
    self.assertEqual(schedule.steps_left(1000, 300.0, 0.5), 600)
    self.assertEqual(schedule.sparse_eval_every(1.0, 0.5, other_seconds=0.0, steps=1200), 128)
    self.assertEqual(schedule.sparse_eval_every(1.0, 0.05, other_seconds=0.0, steps=12000), 1024)  # An epoch, 938, rounded up.
    # A faster run's interval is a power-of-two multiple of a slower one's: their evaluations nest.
    self.assertEqual(schedule.sparse_eval_every(1.0, 0.25, other_seconds=0.0, steps=2400), 256)
    self.assertEqual(schedule.sparse_eval_every(30.0, 0.5, other_seconds=0.0, steps=1200), 512)  # Costly: sparser.
    capped = schedule_lib.Schedule(testing.tiny_config(train_steps=500, time_budget=10.0), 938, 500)
    self.assertEqual(capped.steps_left(0, 0.0, 0.5), 500)

  def test_without_a_budget_the_steps_say_where_a_run_is(self):
    schedule = schedule_lib.Schedule(testing.tiny_config(train_steps=300), steps_per_epoch=500, total_steps=300)
    self.assertEqual(schedule.seconds_left(1e9), math.inf)
    self.assertEqual(schedule.position(100, 5.0, epochs=True), 'step 100/300 (epoch 0.2 of 0.6)')
    self.assertEqual(schedule.position(100, 5.0), 'step 100/300')


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

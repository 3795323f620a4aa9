"""When the loop has work, and where its wall time goes; free of TensorFlow.

The loop's periodic work is one table of `Action`s (every N steps -> what to
do), read both for the length of the next training call (`Schedule.
steps_to_next_event`) and for the dispatch after it (`Schedule.due`), as in
Orbit's `train_actions` and CLU's `PeriodicAction`. `Timer` splits the wall
time into training steps, evaluation, probes and checkpoints (Orbit's
`StepTimer`, CLU's `timed`), and `time_summary` says where a process's went.
"""

import collections
import contextlib
import dataclasses
import math
import time
from typing import Callable

EVALUATIONS_PER_RUN = 10
# --eval_examples=auto: the evaluations before the last step read one test
# example per example the run trains on between two of them, in whole batches
# within these bounds (accuracy's sd at most 1.6 points at 1,000, 1.1 at
# 2,000); a split of at most the upper bound (the generated tasks' 2,000
# sequences, sin2cos's windows, the MNIST sample's 2,000 digits) whole, as
# before, so that their curves and a sweep's steps to a threshold still read
# the whole split.
AUTO_EVAL_EXAMPLES = (1_000, 2_000)
# With --eval_every=0, the evaluations before the last step take at most this
# share of the run's time: an evaluation can cost more than a short run's
# training (Fashion-MNIST's whole test split at batch 32: ~0.6 s, the time of
# ~130 steps of LSTM(16) on 2 cores), though little beside its start-up.
EVAL_SHARE = 0.15
PROGRESS_SECONDS = 10.0  # At most this long without a console line while training.


@dataclasses.dataclass(frozen=True)
class Action:
  """Periodic work: `run(step)` after the call that reaches a multiple of `every` (0 = never) or the last step.

  `name` is also what `Timer` files its time under (`last_name`, if given, at
  the last step); `on_stop`: it runs too when a signal stops the run.
  """
  name: str
  every: int
  run: Callable[[int], None]
  on_stop: bool = False
  last_name: str = ''

  def timer_kind(self, last):
    return (last and self.last_name) or self.name


def with_every(actions, name, every):
  """The table `actions` with the action `name` run every `every` steps."""
  return tuple(dataclasses.replace(a, every=every) if a.name == name else a for a in actions)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the loop has work: at multiples of each action's interval, and at the last step.

  Under --time_budget the last step is the one at which the training seconds reach the budget, known only
  then: until then `total_steps` is the step cap (--train_steps, else none: MAX_STEPS), and the loop ends
  the schedule where the budget runs out (`ending_at`), which makes every action due there.
  """
  config: object  # harness.config.Config
  steps_per_epoch: int
  total_steps: int

  @property
  def eval_every(self):
    """--eval_every, or for 0 at most about ten evaluations per run and one per epoch (see `sparse_eval_every`)."""
    return self.config.eval_every or self.default_eval_every(self.total_steps)

  def default_eval_every(self, run_steps):
    """About ten evaluations in a run of `run_steps`, and at least one per epoch."""
    return min(-(-run_steps // EVALUATIONS_PER_RUN), self.steps_per_epoch)

  def steps_left(self, step, train_seconds, step_seconds):
    """Steps from `step` to the last: to `total_steps`, or under a time budget those that the `train_seconds`
    spent leave room for at `step_seconds` each (at most to the cap): the last step is known only when the
    budget runs out."""
    left = self.total_steps - step
    if not self.budget_seconds:
      return left
    return min(left, max(1, math.ceil(self.seconds_left(train_seconds) / max(step_seconds, 1e-9))))

  def eval_examples(self, num_test_examples):
    """How many of a split's `num_test_examples` the evaluations before the last step read; None: all of them.

    --eval_examples: all, N, or auto (AUTO_EVAL_EXAMPLES): a function of the
    config alone, so the run's evaluations, its resumes and a sweep's seeds
    read the same examples, and never of a measured cost. Whole batches: a
    last, smaller one would trace the eval step once more, in the first
    evaluation, whose cost then sets the cadence.
    """
    value, batch_size = self.config.eval_examples, self.config.batch_size
    if value != 'auto':
      return None if value == 'all' else int(value)
    low, high = AUTO_EVAL_EXAMPLES
    if num_test_examples <= high:
      return None
    batches = min(high // batch_size, self.total_steps // EVALUATIONS_PER_RUN)
    return max(-(-low // batch_size), batches) * batch_size

  def sparse_eval_every(self, eval_seconds, step_seconds, other_seconds, steps):
    """For --eval_every=0: `eval_every` times the least power of two whose evaluations take <= EVAL_SHARE of the time.

    The time is the run's as it would be with only its last evaluation: its
    `steps` steps (this process's) at `step_seconds`, and `other_seconds` that
    such a run spends too (start-up, tracing, probes, the final evaluation),
    spread over the steps. So n steps between evaluations take n (step_seconds
    + other_seconds / steps) + eval_seconds, and the share is at most
    EVAL_SHARE where n >= eval_seconds (1 - EVAL_SHARE) / (EVAL_SHARE
    (step_seconds + other_seconds / steps)). Against its steps alone a short
    run could afford no evaluation before the last, though its start-up
    alone takes longer than ten of them. Powers of two, so that the
    evaluation steps of runs that measured different costs (a sweep's seeds)
    nest, and a sweep's mean over seeds has a point at every step of its
    sparsest run. At most the run's length: then only the last step
    evaluates.

    Under a time budget `steps` are those the budget is expected to fit
    (`steps_left`), and the interval that the power of two multiplies is
    itself the power of two at or above a tenth of them, so that the
    evaluations of runs at different speeds nest too.
    """
    run_step_seconds = step_seconds + other_seconds / max(steps, 1)
    needed = eval_seconds * (1 - EVAL_SHARE) / (EVAL_SHARE * max(run_step_seconds, 1e-9))
    every = self.eval_every
    if self.budget_seconds and not self.config.eval_every:
      every = 2 ** math.ceil(math.log2(self.default_eval_every(steps)))
    multiple = 2 ** max(0, math.ceil(math.log2(max(needed / every, 1.0))))
    return min(self.total_steps, every * multiple)

  def due(self, step, every):
    return bool(every) and (step % every == 0 or step == self.total_steps)

  def steps_to_next_event(self, step, actions):
    """Steps from `step` to the next step after which an action is due, or a call must end.

    A call also ends at the profile window's edges (the profiler starts and
    stops between calls) and, when stateful, at each epoch start (the carried
    state is reset before the next call).
    """
    intervals = [action.every for action in actions if action.every]
    if self.config.stateful:
      intervals.append(self.steps_per_epoch)
    next_steps = [self.total_steps] + [(step // n + 1) * n for n in intervals]
    next_steps += [s for s in self.config.profile_steps if s > step]
    return min(next_steps) - step

  @property
  def budget_seconds(self):
    """--time_budget in seconds; 0: none."""
    return 60.0 * self.config.time_budget

  def seconds_left(self, train_seconds):
    """Training seconds the time budget has left after `train_seconds`; inf without a budget."""
    return max(0.0, self.budget_seconds - train_seconds) if self.budget_seconds else math.inf

  def ending_at(self, step):
    """This schedule for a run whose time budget ran out at `step`."""
    return dataclasses.replace(self, total_steps=step)

  def position(self, step, train_seconds, epochs=False):
    """Where the run is, for a progress line: 'step 120/6000', with `epochs` ' (epoch 0.6 of 30)'; under a time
    budget 'step 120, 0m06s of 0m12s in training steps' (of the step cap '120/6000' where one is set)."""
    epoch = step / self.steps_per_epoch
    if not self.budget_seconds:
      text = f'step {step}/{self.total_steps}'
      return text + (f' (epoch {epoch:.2g} of {self.total_steps / self.steps_per_epoch:.2g})' if epochs else '')
    spent = f'{format_seconds(train_seconds)} of {format_seconds(self.budget_seconds)} in training steps'
    text = f'step {step}{f"/{self.total_steps}" if self.config.train_steps else ""}, {spent}'
    return text + (f' (epoch {epoch:.2g})' if epochs else '')


class Timer:
  """Wall time by kind of work, and the training calls' speed, since the last `read_and_reset`.

  The time outside every `timed` block (summaries, the loop itself) is the
  remainder of the shares. Steps per second and the ETA time the training
  calls of this process only, and not its first call, which traces the step.
  `totals` holds this process's seconds by every kind timed (`time_summary`).
  """
  KINDS = ('train', 'eval', 'probes', 'checkpoint')

  def __init__(self, clock=time.perf_counter, started=None):
    """started: the `clock` reading at which this process's work began (`other_seconds` counts from it; now if None)."""
    self.clock = clock
    self.start = clock()
    self.started = self.start if started is None else started
    self.seconds = dict.fromkeys(self.KINDS, 0.0)
    self.totals = collections.Counter()
    self.first_call = True
    self.interval_steps, self.interval_seconds = 0, 0.0  # Since the last read.
    self.timed_steps, self.timed_seconds = 0, 0.0  # Since this process started training.

  @contextlib.contextmanager
  def timed(self, kind):
    start = self.clock()
    try:
      yield
    finally:
      seconds = self.clock() - start
      self.totals[kind] += seconds
      if kind in self.seconds:
        self.seconds[kind] += seconds

  def train_call(self, steps, seconds):
    """Counts a training call of `steps` steps that took `seconds` (timed by the caller, inside `timed('train')`)."""
    if not self.first_call:
      self.interval_steps += steps
      self.interval_seconds += seconds
      self.timed_steps += steps
      self.timed_seconds += seconds
    self.first_call = False

  def step_seconds(self):
    """Seconds per step of this process's timed calls, or None before it has one."""
    return self.timed_seconds / self.timed_steps if self.timed_steps else None

  def other_seconds(self):
    """This process's wall time so far outside its timed training calls and its evaluations before the last.

    What a run that evaluates only at its end spends as well: start-up (from
    `started`), the first call (tracing), probes, summaries, checkpoints.
    """
    return self.clock() - self.started - self.timed_seconds - self.totals['eval']

  def eta(self, steps_left):
    """Seconds for `steps_left` more steps at this process's speed so far, or None before it has one."""
    return steps_left * self.step_seconds() if self.timed_steps else None

  def this_process(self, start_step):
    """What metrics.json keeps of this process's time (`time_summary` reads it)."""
    return {'start_step': start_step, 'seconds': {kind: round(seconds, 3) for kind, seconds in self.totals.items()}}

  def read_and_reset(self):
    """({kind: share of the wall time since the last call, in [0, 1]}, steps per second or None)."""
    now = self.clock()
    wall = max(now - self.start, 1e-9)
    shares = {kind: seconds / wall for kind, seconds in self.seconds.items()}
    speed = self.interval_steps / max(self.interval_seconds, 1e-9) if self.interval_steps else None
    self.start, self.seconds = now, dict.fromkeys(self.KINDS, 0.0)
    self.interval_steps, self.interval_seconds = 0, 0.0
    return shares, speed


def format_seconds(seconds):
  """1m05s, 2h03m09s."""
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s' if hours else f'{minutes}m{seconds:02d}s'


# How the closing line names the kinds of work `Timer.totals` holds.
_KIND_NAMES = {'train': 'training steps', 'eval': 'evaluation', 'final_eval': 'final evaluation', 'probes': 'probes',
               'checkpoint': 'checkpoints', 'summary': 'summaries'}


def time_summary(metrics, wall_seconds):
  """Where this process's `wall_seconds` went, by share; after a resume, also the whole run's training time.

  From metrics.json's `this_process` ({'start_step', 'seconds': {kind: s}}).
  A resumed run's `train_seconds` counts every process's training steps: it is
  named as the whole run's, never set beside this process's wall time alone.
  """
  process = metrics.get('this_process', {})
  wall = max(wall_seconds, 1e-9)
  seconds = sorted(process.get('seconds', {}).items(), key=lambda item: -item[1])
  shares = [f'{100 * value / wall:.0f} % {_KIND_NAMES.get(kind, kind)}' for kind, value in seconds
            if value >= 0.005 * wall]
  rest = 100 * (1 - sum(value for _, value in seconds) / wall)
  summary = f'in {format_seconds(wall_seconds)} ({", ".join(shares + [f"{rest:.0f} % start-up and the rest"])})'
  start = process.get('start_step', 0)
  if not start:
    return summary
  steps = f'steps {start + 1}-{metrics["step"]}' if start < metrics['step'] else 'no step left to train'
  return f'this process ({steps}) {summary}; the whole run {format_seconds(metrics["train_seconds"])} in training steps'

"""When the loop has work, and where its wall time goes; free of TensorFlow.

The loop's periodic work is one table of `Action`s (every N steps -> what to
do), read both for the length of the next training call (`Schedule.
steps_to_next_event`) and for the dispatch after it (`Schedule.due`), as in
Orbit's `train_actions` and CLU's `PeriodicAction`. `Timer` splits the wall
time into training steps, evaluation, probes and checkpoints (Orbit's
`StepTimer`, CLU's `timed`).
"""

import contextlib
import dataclasses
import time
from typing import Callable

EVALUATIONS_PER_RUN = 10


@dataclasses.dataclass(frozen=True)
class Action:
  """Periodic work: `run(step)` after the call that reaches a multiple of `every` (0 = never) or the last step.

  `name` is also what `Timer` files its time under; `on_stop`: it runs too when a signal stops the run.
  """
  name: str
  every: int
  run: Callable[[int], None]
  on_stop: bool = False


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the loop has work: at multiples of each action's interval, and at the last step."""
  config: object  # harness.config.Config
  steps_per_epoch: int
  total_steps: int

  @property
  def eval_every(self):
    """--eval_every, or for 0 about ten evaluations per run and at least one per epoch."""
    return self.config.eval_every or min(-(-self.total_steps // EVALUATIONS_PER_RUN), self.steps_per_epoch)

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


class Timer:
  """Wall time by kind of work, and the training calls' speed, since the last `read_and_reset`.

  The time outside every `timed` block (summaries, the loop itself) is the
  remainder of the shares. Steps per second and the ETA time the training
  calls of this process only, and not its first call, which traces the step.
  """
  KINDS = ('train', 'eval', 'probes', 'checkpoint')

  def __init__(self, clock=time.perf_counter):
    self.clock = clock
    self.start = clock()
    self.seconds = dict.fromkeys(self.KINDS, 0.0)
    self.first_call = True
    self.interval_steps, self.interval_seconds = 0, 0.0  # Since the last read.
    self.timed_steps, self.timed_seconds = 0, 0.0  # Since this process started training.

  @contextlib.contextmanager
  def timed(self, kind):
    start = self.clock()
    try:
      yield
    finally:
      if kind in self.seconds:
        self.seconds[kind] += self.clock() - start

  def train_call(self, steps, seconds):
    """Counts a training call of `steps` steps that took `seconds` (timed by the caller, inside `timed('train')`)."""
    if not self.first_call:
      self.interval_steps += steps
      self.interval_seconds += seconds
      self.timed_steps += steps
      self.timed_seconds += seconds
    self.first_call = False

  def eta(self, steps_left):
    """Seconds for `steps_left` more steps at this process's speed so far, or None before it has one."""
    return steps_left * self.timed_seconds / self.timed_steps if self.timed_steps else None

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

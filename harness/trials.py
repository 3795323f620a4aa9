"""The trials of a sweep: the grid, each trial's name, flags, command and config; the time left.

Shared by `harness.sweep` (which runs them) and `harness.aggregate` (which reads them back).
"""

import dataclasses
import itertools
import os
import sys

from absl import flags

from harness import cli
from harness import config as config_lib
from harness import runs
from harness.errors import UserError

# Flags a sweep sets itself, or that would make trials share a folder or resume each other.
NOT_GRIDDED = ('seed', 'logdir', 'run_name', 'resume')


@dataclasses.dataclass(frozen=True)
class Trial:
  name: str  # The run name: the varying values, then the seed.
  group: str  # The name without the seed: trials that differ only in seed share it.
  values: tuple  # ((flag, value text), ...) of the grid, in grid order.
  seed: int

  def flags(self, fixed):
    """The trial's harness.train flags: the fixed ones, then its grid values (units 32x64 -> --units=32,64)."""
    return [*fixed, *(f'--{flag}={value.replace("x", ",") if flag == "units" else value}'
                      for flag, value in self.values), f'--seed={self.seed}']


def parse_grid(specs):
  """[(flag, [value texts])] from FLAG=V1,V2 strings.

  Raises:
    UserError: a spec is malformed, names no harness.train flag, or names a
      flag or a value twice (a point run twice would count twice in its mean).
  """
  grid = []
  for spec in specs:
    if any(ord(c) < 32 for c in spec):
      raise UserError(f'--grid={spec!r}: holds a line break or another control character')
    flag, _, values = spec.partition('=')
    flag = flag.strip().lstrip('-')
    texts = [v.strip() for v in values.split(',') if v.strip()]
    if not flag or not texts:
      raise UserError(f'--grid={spec}: give FLAG=V1,V2,... (e.g. --grid=arch=rnn,gru,lstm)')
    if flag not in config_lib.FIELDS or flag in NOT_GRIDDED:
      raise UserError(f'--grid={spec}: {flag} is not a flag a sweep can vary (seeds: --seeds; not '
                      f'{", ".join(NOT_GRIDDED)})')
    if flag in [f for f, _ in grid]:
      raise UserError(f'--grid={spec}: {flag} appears twice')
    repeated = sorted({v for v in texts if texts.count(v) > 1})
    if repeated:
      raise UserError(f'--grid={spec}: {", ".join(repeated)} appears twice; give each value once')
    grid.append((flag, texts))
  return grid


def make_trials(grid, seeds):
  """Every combination of the grid's values (the first flag varying slowest), times every seed."""
  trials = []
  for combination in itertools.product(*[[(flag, value) for value in values] for flag, values in grid]):
    group = ','.join(f'{flag}={value}' for flag, value in combination) or 'all'
    for seed in range(seeds):
      trials.append(Trial(name=f'{group},seed={seed}' if combination else f'seed={seed}', group=group,
                          values=tuple(combination), seed=seed))
  return trials


def check_trials(trials, fixed, sweep_dir):
  """Builds every trial's config as harness.train would, so a bad value fails before anything runs.

  Returns:
    {trial name: Config}.

  Raises:
    UserError: a trial's flags do not parse or validate, or two trials are
      one run (values that differ only in how they are written, as 1e-3 and
      0.001): each would count in the group's mean.
  """
  fixed_flags = flags.FlagValues()
  cli.define_config_flags(flag_values=fixed_flags)
  try:
    fixed_flags(['harness.train', *fixed])
  except flags.Error as e:
    raise UserError(f'the flags after --: {e}') from None
  taken = [name for name in NOT_GRIDDED if fixed_flags[name].present]
  if taken:
    raise UserError(f'--{taken[0]} after --: the sweep sets it for each trial (seeds: --seeds, folder: --logdir '
                    'and --name)')
  configs = {}
  for trial in trials:
    flag_values = flags.FlagValues()
    cli.define_config_flags(flag_values=flag_values)
    try:
      flag_values(['harness.train', *trial.flags(fixed)])
    except flags.Error as e:
      raise UserError(f'trial {trial.name}: {e}') from None
    values = cli.config_values(flag_values=flag_values, present_only=True)
    configs[trial.name] = config_lib.make_config(**values, logdir=sweep_dir, run_name=trial.name)
  seen = {}
  for name, config in configs.items():
    same = seen.setdefault(dataclasses.replace(config, run_name=''), name)
    if same != name:
      raise UserError(f'--grid: trials {same} and {name} are the same run; give each value once')
  return configs


def trial_command(trial, fixed, sweep_dir):
  """The harness.train command of a trial: a fresh run, or --resume of one that started."""
  command = [sys.executable, '-m', 'harness.train', f'--logdir={sweep_dir}', f'--run_name={trial.name}',
             *trial.flags(fixed)]
  if runs.run_state(os.path.join(sweep_dir, trial.name)) == 'started':
    command = [sys.executable, '-m', 'harness.train', f'--logdir={sweep_dir}', f'--run_name={trial.name}',
               '--resume']
  return command


def seconds_left(durations, waiting, running_elapsed, parallel):
  """Seconds left, or None before a trial has finished: the work left over the `parallel` slots.

  The work left is the mean trial time for each waiting trial, plus what each
  running trial lacks of it, shared by the slots that still have a trial.
  Counting work rather than rounds of `parallel` trials keeps the estimate
  from jumping when a round fills or empties.
  """
  if not durations:
    return None
  mean = sum(durations) / len(durations)
  work = mean * waiting + sum(max(mean - elapsed, 0.0) for elapsed in running_elapsed)
  return work / max(1, min(parallel, waiting + len(running_elapsed)))

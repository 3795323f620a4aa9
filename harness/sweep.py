"""Sweeps: a grid of `harness.train` runs times seeds, run in parallel, compared as mean ± sd.

  python -m harness.sweep --name=cmp --grid=arch=rnn,gru,lstm --grid=learning_rate=1e-3,3e-3 --seeds=3 \\
      --parallel=2 --logdir=runs -- --task=fashion_mnist --train_steps=2000
  python -m harness.sweep aggregate runs/cmp            # recompute the aggregates
  python -m harness.sweep ... --print_commands          # one harness.train command per trial (cluster jobs)
  python -m harness.sweep ... --trial_index=N           # run trial N only (e.g. N=$SLURM_ARRAY_TASK_ID)

Every trial is an ordinary run, <logdir>/<name>/<trial>, named from the values
that vary (`arch=gru,learning_rate=0.001,seed=2`), with its own flags.txt: it
can be re-run or resumed alone. Everything after `--` goes to every trial.
Running the same sweep again skips finished trials, resumes interrupted ones
and starts missing ones; a changed grid, seed count or fixed flag is an error.
A failing trial is reported (its error line and log) and the others go on; the
sweep then exits with status 1. At the end (and with `aggregate`) the sweep
writes results.csv, summary.csv and summary.md and its TensorBoard aggregates
(see `harness.aggregate`).
"""

import ctypes
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from absl import flags
from absl import logging

from harness import cli
from harness import config as config_lib
from harness import runfiles
from harness import runs
from harness import signals as signals_lib
from harness import trials as trials_lib
from harness.errors import UserError

_NAME = flags.DEFINE_string('name', None, 'The sweep\'s folder under --logdir.')
_GRID = flags.DEFINE_multi_string('grid', [], 'FLAG=V1,V2,...: a harness.train flag and its values (repeatable); '
                                  'stacked units as 32x64.')
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Seeds per grid point: --seed=0 .. N-1.', lower_bound=1)
_PARALLEL = flags.DEFINE_integer('parallel', 0, 'Trials at once, each on its share of the CPU cores (0 = one per '
                                 'core).', lower_bound=0)
_LOGDIR = flags.DEFINE_string('logdir', 'runs', 'Folder that holds the sweep\'s folder.')
_TRIAL_INDEX = flags.DEFINE_integer('trial_index', -1, 'Run only this trial (0-based; for array jobs).',
                                    lower_bound=-1)
_PRINT_COMMANDS = flags.DEFINE_bool('print_commands', False, 'Print one harness.train command per trial and exit.')
_PROGRAM = 'harness.sweep'
_POLL_SECONDS = 1.0
_PROGRESS_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _claim_sweep(sweep_dir, identity):
  """Writes sweep.json on the first start; later, refuses a sweep that differs from it."""
  identity = json.loads(json.dumps(identity))  # As it reads back: lists, not tuples.
  saved = runfiles.read_sweep(sweep_dir)
  if saved is not None:
    changed = [key for key in identity if saved.get(key) != identity[key]]
    if changed:
      raise UserError(f'{sweep_dir} holds a sweep with another {" and ".join(changed)} '
                      f'({"; ".join(f"{k}: {saved.get(k)}" for k in changed)}); use another --name, or the same '
                      'grid, seeds and fixed flags to continue it')
    return
  os.makedirs(sweep_dir, exist_ok=True)
  # Array jobs may race here: the content is the same.
  runs.write_whole(os.path.join(sweep_dir, 'sweep.json'), json.dumps(identity, indent=2))


def _core_shares(parallel):
  """`parallel` disjoint lists of this process's cores (one trial's threads stay on its share)."""
  cores = sorted(os.sched_getaffinity(0))
  return [cores[i::parallel] for i in range(parallel)] if parallel <= len(cores) else [cores] * parallel


def _start_trial(cores):
  """In the trial's process, before harness.train starts: its share of the cores, and SIGTERM if the sweep dies.

  SIGTERM makes a trial checkpoint and stop, so a sweep killed by any means
  leaves its trials resumable rather than running on unwatched.
  """
  os.sched_setaffinity(0, cores)
  ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _last_error_line(log_path):
  try:
    with open(log_path, errors='replace') as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return 'no log'
  errors = [line for line in lines if line.startswith(('harness.train:', 'Traceback')) or 'Error' in line]
  return (errors or lines or ['no output'])[-1][:300]


def run_trials(trials, fixed, sweep_dir, parallel, signals):
  """Runs the trials that are not finished, `parallel` at a time.

  A stop signal to the sweep (`signals.received`) stops starting trials and
  passes SIGTERM to each running one, once: it checkpoints and stops.

  Returns:
    {trial name: error line and log path} of the trials that failed.
  """
  todo = [t for t in trials if not runs.is_finished(runfiles.read_metrics(os.path.join(sweep_dir, t.name)))]
  done_before = len(trials) - len(todo)
  if done_before:
    logging.info('sweep: %d of %d trials already finished', done_before, len(trials))
  os.makedirs(os.path.join(sweep_dir, 'logs'), exist_ok=True)
  free, running, failures, durations, signalled = _core_shares(parallel), {}, {}, [], set()
  last_progress = 0.0
  while (todo and not signals.received) or running:
    while todo and free and not signals.received:
      trial, share = todo.pop(0), free.pop(0)
      log_path = os.path.join(sweep_dir, 'logs', f'{trial.name}.log')
      with open(log_path, 'a') as log:
        process = subprocess.Popen(trials_lib.trial_command(trial, fixed, sweep_dir), stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=functools.partial(_start_trial, share))
      running[process] = (trial, share, time.time(), log_path)
    time.sleep(_POLL_SECONDS)
    if signals.received:
      for process in set(running) - signalled:
        process.send_signal(signal.SIGTERM)
        signalled.add(process)
    for process in [p for p in running if p.poll() is not None]:
      trial, share, started, log_path = running.pop(process)
      free.append(share)
      durations.append(time.time() - started)
      if process.returncode and not signals.received:
        code = process.returncode
        cause = f'killed by {_signal_name(-code)}' if code < 0 else _last_error_line(log_path)
        failures[trial.name] = f'{cause} (log: {log_path})'
        logging.warning('sweep: trial %s failed: %s', trial.name, failures[trial.name])
      last_progress = 0.0
    if time.time() - last_progress > _PROGRESS_SECONDS:
      finished = done_before + len(durations) - len(failures)
      elapsed = [time.time() - started for _, _, started, _ in running.values()]
      eta = trials_lib.seconds_left(durations, len(todo), elapsed, parallel)
      logging.info('sweep %s: %d/%d done, %d running, %d failed%s', os.path.basename(sweep_dir), finished,
                   len(trials), len(running), len(failures),
                   f', ETA {_format_seconds(eta)}' if eta is not None else '')
      last_progress = time.time()
  return failures


def _signal_name(number):
  try:
    return signal.Signals(number).name
  except ValueError:
    return f'signal {number}'


def _format_seconds(seconds):
  minutes, seconds = divmod(int(seconds), 60)
  return f'{minutes // 60}h{minutes % 60:02d}m' if minutes >= 60 else f'{minutes}m{seconds:02d}s'


def _aggregate(sweep_dir, signals):
  """The aggregates; a stop signal raises `signals_lib.Stopped` (they are derived: recomputed whole)."""
  with cli.native_output_filtered():
    from harness import aggregate  # pylint: disable=g-import-not-at-top  # TensorFlow: only now.
  signals.interrupt = True
  try:
    return aggregate.aggregate(sweep_dir)
  finally:
    signals.interrupt = False


def _summarize(sweep_dir, signals):
  """Aggregates the sweep; prints its summary table, where it lies, and how to look at it."""
  print(_aggregate(sweep_dir, signals))
  print(f'{_PROGRAM}: sweep folder {sweep_dir}; summary table {os.path.join(sweep_dir, "summary.md")}; look inside '
        f'with: {cli.tensorboard_command(sweep_dir)}')


def main(argv):
  cli.quiet_console()
  # To the end of the process: a stop signal before the trials or during the
  # aggregation (derived, recomputed whole) stops it at once; during the
  # trials, run_trials passes it on to them.
  signals = signals_lib.SignalCatcher(interrupt=True).install()
  failures = {}
  try:
    if argv[1:2] == ['aggregate']:
      if len(argv) != 3:
        raise UserError('usage: python -m harness.sweep aggregate <logdir>/<sweep>')
      _summarize(argv[2], signals)
      return
    failures = _sweep(argv[1:], signals)
  except signals_lib.Stopped as e:
    _report(failures)
    cli.fail(_PROGRAM, f'stopped by {e.signal}; no trial was running. Run the same command to continue, or '
             f'recompute the aggregates with: python -m harness.sweep aggregate {_sweep_dir(argv)}',
             status=128 + getattr(signal, e.signal).value)
  _report(failures)
  if failures:
    sys.exit(1)


def _sweep(fixed, signals):
  """Checks the grid, claims the sweep folder, runs the trials and aggregates; returns the failures."""
  if not _NAME.value:
    raise UserError('--name: give the sweep a name (its folder under --logdir)')
  config_lib.check_run_name(_NAME.value, flag='name')
  stray = [arg for arg in fixed if not arg.startswith('-')]
  if stray:
    raise UserError(f'unexpected arguments {" ".join(stray)}: trial flags go after --, as --name=value')
  runs.check_directory('logdir', _LOGDIR.value)
  sweep_dir = os.path.join(_LOGDIR.value, _NAME.value)
  grid = trials_lib.parse_grid(_GRID.value)
  trials = trials_lib.make_trials(grid, _SEEDS.value)
  trials_lib.check_trials(trials, fixed, sweep_dir)
  if _PRINT_COMMANDS.value:
    for trial in trials:
      print(shlex.join(['python', '-m', 'harness.train', f'--logdir={sweep_dir}', f'--run_name={trial.name}',
                        *trial.flags(fixed)]))
    return {}
  if _TRIAL_INDEX.value >= len(trials):
    raise UserError(f'--trial_index={_TRIAL_INDEX.value}: the sweep has {len(trials)} trials (0..{len(trials) - 1})')
  _claim_sweep(sweep_dir, {'grid': grid, 'seeds': _SEEDS.value, 'fixed': fixed})
  if _TRIAL_INDEX.value >= 0:
    trials = [trials[_TRIAL_INDEX.value]]
    parallel = 1
  else:
    parallel = _PARALLEL.value or len(os.sched_getaffinity(0))
  with signals_lib.SignalCatcher() as trial_signals:
    failures = run_trials(trials, fixed, sweep_dir, min(parallel, len(trials)), trial_signals)
  if trial_signals.received:
    _report(failures)
    print(f'{_PROGRAM}: stopped by {trial_signals.received}; the running trials checkpointed. Run the same command '
          'to continue.', file=sys.stderr)
    sys.exit(128 + getattr(signal, trial_signals.received).value)
  if _TRIAL_INDEX.value < 0:
    _summarize(sweep_dir, signals)
  return failures


def _sweep_dir(argv):
  return argv[2] if argv[1:2] == ['aggregate'] else os.path.join(_LOGDIR.value, _NAME.value or '<name>')


def _report(failures):
  for name, line in failures.items():
    print(f'{_PROGRAM}: trial {name} failed: {line}', file=sys.stderr)


def run():
  """Console-script entry point (`harness-sweep`)."""
  cli.run(main, _PROGRAM)


if __name__ == '__main__':
  run()

"""Train a recurrent network on a sequence task and record it for TensorBoard.

  python -m harness.train                                          # LSTM(128) on MNIST rows, 10 epochs
  python -m harness.train --task=fashion_mnist --arch=gru --clip_norm=1
  python -m harness.train --task=sin2cos --units=10 --stateful --train_steps=400
  python -m harness.train --recipe=adding --arch=rnn                # a known system, one flag changed
  python -m harness.train --recipe=list                            # the recipes
  python -m harness.train --flagfile=runs/<run>/flags.txt          # the same config, as a new run
  python -m harness.train --run_name=<run> --resume                # continue a run
  tensorboard --logdir runs

Every flag: --helpfull. A bad flag, file or value is one line on stderr and
exit status 2; an existing run is never overwritten. SIGTERM, SIGINT or SIGHUP
(a closed terminal) stops a run after a checkpoint.
"""

import os
import signal
import sys
import time

from absl import flags
from absl import logging

from harness import cli
from harness import config as config_lib
from harness import recipes
from harness import runs
from harness import schedule
from harness import signals as signals_lib
from harness import sizes

cli.define_config_flags()
flags.adopt_module_key_flags(cli)  # --help lists them.
FLAGS = flags.FLAGS
_PROGRAM = 'harness.train'


def config_from_flags():
  """Builds and validates the config from FLAGS; checks the run folder, before TensorFlow starts."""
  config = config_lib.make_config(**cli.config_values(present_only=True))
  runs.check_directories(config)
  if config.resume:
    return runs.resumed_config(config, [name for name in config_lib.FIELDS if FLAGS[name].present])
  if config.strategy != 'multi_worker':  # Every worker names the same run; only the chief claims it.
    runs.check_new_run(config)
  return config


def main(argv):
  if len(argv) > 1:
    cli.fail(_PROGRAM, f'unexpected arguments {" ".join(argv[1:])} (flags look like --name=value)')
  if FLAGS.recipe == 'list':
    print(recipes.describe())
    return
  started = time.perf_counter()
  # To the end of the process: before training a stop signal interrupts the
  # start; the loop's own catcher then takes over, and this one only records.
  signals_lib.SignalCatcher(interrupt=True).install()
  cli.quiet_console()
  where = {}  # The run folder, once known.
  try:
    with cli.exit_codes(_PROGRAM, workdir=lambda: where.get('workdir')):
      config, metrics = _train(where, started)
  except signals_lib.Stopped as e:
    cli.fail(_PROGRAM, f'stopped by {e.signal} before training started{_resume_hint(where.get("workdir"))}',
             status=128 + getattr(signal, e.signal).value)
  workdir = where['workdir']
  if 'stopped_by' in metrics:
    print(f'{_PROGRAM}: stopped by {metrics["stopped_by"]} at {_reached(config, metrics)}; '
          f'continue with: python -m harness.train {_run_flags(config, workdir)} --resume', file=sys.stderr)
    sys.exit(128 + getattr(signal, metrics['stopped_by']).value)
  scores = ', '.join(f'{name[5:]} {value:.4f}' for name, value in metrics.items() if name.startswith('eval_'))
  print(f'{_PROGRAM}: finished {_reached(config, metrics)} '
        f'{schedule.time_summary(metrics, time.perf_counter() - started)}; test {scores}')
  print(f'{_PROGRAM}: run folder {workdir}; look inside with: {cli.tensorboard_command(config.logdir)}')


def _train(where, started):
  """The config from the flags, then the run: (config, final metrics); where['workdir'] is set once known.

  `started`: the command's start (`time.perf_counter()`), which the run's time counts from.
  """
  config = config_from_flags()
  changed = cli.changed_flags(config)
  logging.info('config: %s (every value: flags.txt in the run folder)',
               f'defaults but {" ".join(changed)}' if changed else 'the defaults')
  if config.param_budget:
    count = sizes.task_parameter_count(config)
    logging.info('parameter budget %s: --units=%s, %s parameters (%+.1f %%)', f'{config.param_budget:,}',
                 config_lib.flag_value(config.units), f'{count:,}', 100 * (count / config.param_budget - 1))
  logging.info('starting TensorFlow, then the data and the model (can take a minute) ...')
  # Heavy imports after the flags are known good, so usage errors come back at once.
  with cli.native_output_filtered():
    from harness import loop  # pylint: disable=g-import-not-at-top
    from harness import runtime  # pylint: disable=g-import-not-at-top
    from harness import tasks  # pylint: disable=g-import-not-at-top
    runtime.configure_threads(config)  # Before TensorFlow's runtime starts.
    strategy = runtime.make_strategy(config)
  task = tasks.load_task(config)
  where['workdir'] = runs.run_dir(config)  # The loop names it once it is claimed.
  return config, loop.train_and_evaluate(config, where['workdir'], task=task, strategy=strategy,
                                         fresh=not config.resume, started=started)


def _reached(config, metrics):
  """'step 50 of 6000'; under a time budget 'step 50 (2,500 examples; 0m06s of its 0m12s time budget)'."""
  if not config.time_budget:
    return f'step {metrics["step"]} of {metrics["total_steps"]}'
  spent, budget = schedule.format_seconds(metrics['train_seconds']), schedule.format_seconds(60 * config.time_budget)
  return f'step {metrics["step"]} ({metrics["examples"]:,} examples; {spent} of its {budget} time budget)'


def _run_flags(config, workdir):
  logdir = '' if config.logdir == config_lib.Config.logdir else f'--logdir={config.logdir} '
  return f'{logdir}--run_name={os.path.basename(workdir)}'


def _resume_hint(workdir):
  state = runs.run_state(workdir) if workdir else 'absent'
  if state == 'started':
    return f'; continue with --run_name={os.path.basename(workdir)} --resume'
  if state == 'unstarted':
    return f'; {workdir} holds no checkpoint yet: run the same command again to start it'
  return '; nothing was written'


def run():
  """Console-script entry point (`harness-train`)."""
  cli.run(main, _PROGRAM)


if __name__ == '__main__':
  run()

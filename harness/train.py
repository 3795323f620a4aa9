"""Train a recurrent network on a sequence task and record it for TensorBoard.

  python -m harness.train                                          # LSTM(128) on MNIST rows, 10 epochs
  python -m harness.train --task=fashion_mnist --arch=gru --clip_norm=1
  python -m harness.train --task=sin2cos --units=10 --stateful --train_steps=400
  python -m harness.train --flagfile=runs/<run>/flags.txt          # the same config, as a new run
  python -m harness.train --run_name=<run> --resume                # continue a run
  tensorboard --logdir runs

Every flag: --helpfull. A bad flag, file or value is one line on stderr and
exit status 2; an existing run is never overwritten.
"""

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging

from harness import cli
from harness import config as config_lib
from harness import runs
from harness.errors import NonFiniteLossError
from harness.errors import UserError

cli.define_config_flags()
FLAGS = flags.FLAGS
_PROGRAM = 'harness.train'


def config_from_flags():
  """Builds and validates the config from FLAGS. Unset per-task flags take the task's defaults."""
  config = config_lib.make_config(**cli.config_values())
  if config.resume:
    config = runs.resumed_config(config, [name for name in config_lib.FIELDS if FLAGS[name].present])
  elif config.run_name and config.strategy != 'multi_worker' and os.path.exists(
      os.path.join(config.logdir, config.run_name)):
    runs.claim_run_dir(config)  # Raises the "already exists" error before TensorFlow starts.
  return config


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    cli.fail(_PROGRAM, e)


def main(argv):
  if len(argv) > 1:
    cli.fail(_PROGRAM, f'unexpected arguments {" ".join(argv[1:])} (flags look like --name=value)')
  try:
    config = config_from_flags()
    # Heavy imports after the flags are known good, so usage errors come back at once.
    from harness import loop  # pylint: disable=g-import-not-at-top
    from harness import runtime  # pylint: disable=g-import-not-at-top
    from harness import tasks  # pylint: disable=g-import-not-at-top
    runtime.configure_threads(config)  # Before TensorFlow's runtime starts.
    strategy = runtime.make_strategy(config)
    chief = runtime.is_chief(strategy)
    task = tasks.load_task(config)
    # Only the chief creates the run folder; other workers write nothing in it.
    workdir = runs.claim_run_dir(config) if chief else os.path.join(config.logdir, config.run_name)
    logging.info('run folder: %s', workdir)
    metrics = loop.train_and_evaluate(config, workdir, task=task, strategy=strategy)
  except (UserError, NonFiniteLossError) as e:
    cli.fail(_PROGRAM, e)
  if 'stopped_by' in metrics:
    print(f'{_PROGRAM}: stopped by {metrics["stopped_by"]} at step {metrics["step"]}; '
          f'continue with --run_name={os.path.basename(workdir)} --resume', file=sys.stderr)
    sys.exit(128 + getattr(signal, metrics['stopped_by']).value)


def run():
  """Console-script entry point (`harness-train`)."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()

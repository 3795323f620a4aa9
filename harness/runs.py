"""The run folder: its name, claiming it, and the files that describe the run.

  <logdir>/<run>/flags.txt      an absl flagfile that re-runs the config as a new run
  <logdir>/<run>/config.json    the exact config (read by --resume)
  <logdir>/<run>/metrics.json   final step, eval metrics, data source, weights checksum

Nothing here imports TensorFlow, so the command line can check a run folder
before paying for TensorFlow's start.
"""

import dataclasses
import datetime
import json
import os
import secrets

from harness import config as config_lib
from harness.errors import UserError


def default_run_name(config):
  """Readable and unique: task, arch, units, time, and a random suffix against same-second starts."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  units = 'x'.join(map(str, config.units))
  return f'{config.task}-{config.arch}-{units}-{stamp}-{secrets.token_hex(2)}'


def resumed_config(config, explicit_flags):
  """The config a resumed run continues with: its saved config.json, plus schedule overrides.

  Args:
    config: the config built from this command's flags.
    explicit_flags: names of the flags given on this command line.

  Raises:
    UserError: the run does not exist, or a flag that defines the run
      (model, data, optimizer) differs from the saved value.
  """
  workdir = os.path.join(config.logdir, config.run_name)
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise UserError(f'--resume: no run {workdir} to resume (no {path})')
  with open(path) as f:
    saved = config_lib.from_json(f.read())
  changes = {}
  for name in explicit_flags:
    if not hasattr(saved, name) or getattr(saved, name) == getattr(config, name):
      continue
    if name not in config_lib.RESUMABLE_OVERRIDES:
      raise UserError(f'--{name}={config_lib.flag_value(getattr(config, name))}: differs from the resumed run\'s '
                      f'{config_lib.flag_value(getattr(saved, name))}; a resumed run keeps its model, data and '
                      'optimizer (start a new run to change them)')
    changes[name] = getattr(config, name)
  changes.update(logdir=config.logdir, run_name=config.run_name, resume=True)
  resumed = dataclasses.replace(saved, **changes)
  config_lib.validate(resumed)
  return resumed


def claim_run_dir(config):
  """Creates the run folder atomically and returns its path; never reuses one unless resuming.

  A derived name that collides (two runs started in the same second) draws a
  new suffix; an explicit `--run_name` that exists is refused.
  """
  if config.resume:
    return os.path.join(config.logdir, config.run_name)
  os.makedirs(config.logdir, exist_ok=True)
  for _ in range(100):
    name = config.run_name or default_run_name(config)
    workdir = os.path.join(config.logdir, name)
    try:
      os.mkdir(workdir)
      return workdir
    except FileExistsError:
      if config.run_name:
        raise UserError(f'--run_name={name}: {workdir} already exists; pass --resume to continue it, '
                        'or choose another name') from None
  raise UserError(f'--logdir={config.logdir}: could not find a free run name')


def write_config_files(workdir, config, comments):
  """flags.txt (re-runs the config as a new run, with `comments` on top) and config.json."""
  with open(os.path.join(workdir, 'flags.txt'), 'w') as f:
    f.write(config_lib.to_flagfile(config, comments))
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config_lib.to_json(config))


def write_metrics(workdir, metrics):
  with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
    json.dump(metrics, f, indent=2, sort_keys=True)


def hparams(config, task_hparams, extra):
  """The run's hyperparameters for the HParams dashboard: what defines the model, data and optimizer.

  Args:
    config: the run's Config.
    task_hparams: the task's own settings ({name: value}).
    extra: facts known once the run starts ({name: value}: replicas, sub-batches, data source, parameters).
  """
  values = {
      'task': config.task, 'arch': config.arch, 'units': config_lib.flag_value(config.units),
      'input_units': config.input_units, 'batch_size': config.batch_size, 'optimizer': config.optimizer,
      'learning_rate': config.learning_rate, 'lr_schedule': config.lr_schedule, 'clip_norm': config.clip_norm,
      'seed': config.seed, 'stateful': config.stateful,
  }
  if config.arch in ('lstm', 'stacked_lstm'):
    values.update(forget_bias=config.forget_bias, lstm_kernel=config.lstm_kernel)
  values.update(task_hparams)
  values.update(extra)
  return values

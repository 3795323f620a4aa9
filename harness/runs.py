"""Run folders under --logdir: unique names, no overwrites, resuming with the saved config."""

import dataclasses
import datetime
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
